//! The run registry: which koko runs have a journal on disk, and whether
//! their process is still alive.
//!
//! Every run that changes something (a one-shot command, a script, a REPL
//! session) keeps its journal in a file `/run/koko/RUNID.journal` while it
//! runs (see [`crate::journal`] for what is in it). `/run` is a tmpfs: the
//! files go at reboot, exactly like the namespaces and links they describe.
//! The directory is made mode 0700: a journal names what root made.
//!
//! A run is identified by its process: the pid, and the process's start
//! time (field 22 of `/proc/PID/stat`, in clock ticks since boot). A pid is
//! reused once its process is gone, but never with the same start time, so
//! the pair tells "this run is still going" from "another process got its
//! pid". The run id is `PID-STARTTIME` (`PID-STARTTIME-N` for a further
//! run of one process): unique for the life of the machine's boot, which is
//! as long as a record can exist.
//!
//! A run that ends normally removes its file (what it undid is gone, what it
//! kept is the user's now, marks and all); a file that outlives its process
//! is the journal of a run that died (SIGKILL, a crash, an abort), and
//! `koko undo RUN` / `koko undo --dead` undo it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the journals of running (and dead) runs live.
pub const RUN_DIR: &str = "/run/koko";

/// What sort of run wrote a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Oneshot,
    Script,
    Repl,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Oneshot => "oneshot",
            RunKind::Script => "script",
            RunKind::Repl => "repl",
        }
    }
}

/// The first line of a journal file: who is running.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunHeader {
    pub id: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (/proc/PID/stat).
    pub start_time: u64,
    pub kind: RunKind,
    /// The command line (argv).
    pub command: Vec<String>,
    /// Wall time the run started, seconds since the Unix epoch.
    pub started: u64,
}

impl RunHeader {
    /// The header of this process's run.
    pub fn this_process(kind: RunKind) -> Result<RunHeader> {
        let pid = std::process::id();
        let start_time = start_time(pid).ok_or_else(|| {
            Error::Internal(format!(
                "cannot read koko's own start time from /proc/{pid}/stat"
            ))
        })?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // A process normally has one run; a second one (a library user
        // running several) gets a numbered id of its own.
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = match n {
            0 => run_id(pid, start_time),
            n => format!("{}-{n}", run_id(pid, start_time)),
        };
        Ok(RunHeader {
            id,
            pid,
            start_time,
            kind,
            command: std::env::args().collect(),
            started,
        })
    }

    /// Whether the process that wrote this header is still running (its
    /// pid exists and started when the header says).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// The mark the run's links and namespaces carry.
    pub fn mark(&self) -> String {
        mark_of(&self.id)
    }
}

/// `PID-STARTTIME`.
pub fn run_id(pid: u32, start_time: u64) -> String {
    format!("{pid}-{start_time}")
}

/// The ownership mark of run `id`: the alias its links (and its
/// namespaces' `lo`) carry.
pub fn mark_of(id: &str) -> String {
    format!("koko:{id}")
}

/// The run id in an ownership mark, if `alias` is one.
pub fn run_of_mark(alias: &str) -> Option<&str> {
    alias.strip_prefix("koko:")
}

/// Whether `id` has the shape of a run id, `PID-STARTTIME` or
/// `PID-STARTTIME-N` (so it can be a file name).
pub fn valid_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The start time of process `pid` (clock ticks since boot), if it exists.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a /proc/PID/stat line. The second field, the command name,
/// is in parentheses and may itself hold spaces and parentheses: count
/// from the last ')'.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; the start time is field 22, the 20th of them.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The directory of journals (not created).
pub fn dir() -> PathBuf {
    PathBuf::from(RUN_DIR)
}

/// The journal file of run `id`.
pub fn path_of(id: &str) -> PathBuf {
    dir().join(format!("{id}.journal"))
}

/// Make the run directory (mode 0700) if it is missing.
pub fn ensure_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
        Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
    }
}

/// The ids of every journal on disk, sorted.
pub fn ids() -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir()) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {RUN_DIR}"), e)),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_suffix(".journal")?;
            valid_id(id).then(|| id.to_string())
        })
        .collect();
    ids.sort();
    Ok(ids)
}

/// Whether `path` exists.
pub fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_even_with_odd_command_names() {
        let stat = "4242 (we ird) (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let mut h = RunHeader::this_process(RunKind::Script).unwrap();
        let other = RunHeader::this_process(RunKind::Script).unwrap();
        assert_ne!(h.id, other.id, "two runs of one process have two ids");
        assert!(valid_id(&other.id));
        assert!(h.alive());
        assert!(valid_id(&h.id));
        assert_eq!(run_of_mark(&h.mark()), Some(h.id.as_str()));
        h.start_time += 1;
        assert!(!h.alive(), "a reused pid is not the run");
    }

    #[test]
    fn run_ids_are_file_names() {
        assert!(valid_id("12-34"));
        assert!(valid_id("12-34-2"));
        for bad in ["", "12", "-3", "3-", "1-2-3-4", "1--2", "../1-2", "a-1"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}

//! The journal: what a run created, and how to undo it.
//!
//! Every object koko creates is recorded together with its inverse. If a
//! one-shot command fails half-way, or a script fails (or asks for
//! `cleanup()`), the journal is undone newest-first. Undo is best-effort and
//! thorough: it keeps going past failures and returns every error, because a
//! teardown that stops at the first problem leaves the most behind. Objects
//! that are already gone (a veth end that went with its peer, a namespace
//! deleted by someone else) count as undone.
//!
//! # On disk: surviving the death of koko
//!
//! A run's journal ([`Journal::for_run`]) is also a file,
//! `/run/koko/RUNID.journal` (see [`crate::runs`]), so that a run killed by
//! SIGKILL, a crash or an abort can still be undone later by another koko
//! (`koko undo RUN`, `koko undo --dead`). The file is JSON lines, each
//! appended with a single write(2) as it happens (a tmpfs needs no fsync;
//! a reader sees whole lines, and ignores a torn last one):
//!
//! * `{"run": {...}}` first: the run id, pid, process start time, kind,
//!   command line, wall-clock start;
//! * `{"intent": {"seq": N, "make": ...}}` BEFORE koko asks the kernel for
//!   a link or a named namespace: the name it will make, and where;
//! * `{"step": {"seq": N, "what": ..., "undo": ...}}` once it is made (or
//!   changed), with its inverse; a step settles the intent for the same
//!   object;
//! * `{"undone": N}` when step N was undone (or taken back by the run);
//! * `"kept"` when the run kept what it had made (nothing before it is
//!   koko's to undo any more).
//!
//! A run that ends normally removes its file ([`Journal::close`], also on
//! drop): what it undid is gone, what it kept is the user's.
//!
//! Intents close the window between the kernel's creation and the step
//! line: a run that dies there leaves an object its journal only names as
//! an intent. The **ownership marks** tell whether that object is the
//! run's: every link created while a run's journal is on disk carries the
//! alias `koko:RUNID` (set by [`crate::net::link`] right after the
//! creation; for a veth pair made in bulk, the recorded first end at once
//! and its peer with the pipelined requests that follow), and
//! every named namespace the run creates carries it on its `lo`
//! ([`mark_netns`]). An intent whose object carries the run's mark is
//! undone; anything else is left alone, and the undo says so. (A namespace
//! has a short window of its own, between its creation and its mark: a run
//! killed exactly there leaves an unmarked namespace that recovery names
//! and leaves alone.)
//!
//! Steps that live only inside the process (a traffic responder, a
//! flapping thread) are written as such (`"undo": null`): they died with
//! it.
//!
//! # Identity: undo touches only what the run made
//!
//! Names are not identities: a namespace `x` the run made may be deleted by
//! someone else and a new `x`, with their own links, made in its place. So
//! undo acts on an object only if it is the very one:
//!
//! * a named namespace only if `/run/netns/NAME` still refers to the
//!   namespace recorded (its device and inode, [`NsId`]) and, for a run on
//!   disk, its `lo` carries the run's mark (an inode number is reused once
//!   its namespace is gone);
//! * a link only inside the very namespace recorded (a [`Namespace`]
//!   handle checks its identity on every use) and, for a run on disk, only
//!   if it carries the run's mark;
//!
//! everything else is left alone, reported as "left alone: it is not the
//! one this run created". In-memory journals ([`Journal::new`], unit
//! tests) check namespace identities only.

use std::io::Write;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Object, Result};
use crate::net::route::{self, RouteRequest};
use crate::net::{addr, impair, link, sysctl, tc, Session};
use crate::ns::{named, Namespace, NsId};
use crate::runs::{self, RunHeader, RunKind};

/// How to undo one step.
///
/// It serialises, for the journal on disk; the steps that only exist in
/// the process ([`Undo::StopServer`], [`Undo::StopFlap`]) do not (see
/// [`Undo::in_process`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undo {
    /// Delete a link (for a veth, its peer goes too).
    DeleteLink { ns: Namespace, name: String },
    /// Delete a veth pair by its end `name` in `ns`; its peer is in
    /// `peer_ns` (so a batched teardown knows whether the pair dies with the
    /// namespaces it deletes).
    DeleteVeth {
        ns: Namespace,
        name: String,
        peer_ns: Namespace,
    },
    /// Remove an address from a link.
    DeleteAddress {
        ns: Namespace,
        link: String,
        addr: IpNet,
    },
    /// Delete a named namespace this run created.
    DeleteNamespace { name: String },
    /// Put a sysctl back to its old value.
    RestoreSysctl {
        ns: Namespace,
        key: String,
        value: String,
    },
    /// Stop a traffic responder koko started.
    #[serde(skip)]
    StopServer(std::sync::Arc<std::sync::Mutex<crate::probe::HttpServer>>),
    /// Remove koko's mirror filters on link `source` that copy to the link
    /// with ifindex `target_index` (and the clsact qdisc, if koko added it
    /// and nothing else is left on it).
    DeleteMirror {
        ns: Namespace,
        source: String,
        target_index: u32,
        remove_qdisc: bool,
    },
    /// Delete a route this run added.
    DeleteRoute { ns: Namespace, route: RouteRequest },
    /// Put back a route this run replaced (`ip route replace` of an existing one).
    RestoreRoute { ns: Namespace, route: RouteRequest },
    /// Put a link's state (up/down, MTU) back; when that brings it back
    /// up, also the routes and IPv6 addresses the kernel flushed when this
    /// run set it down (empty otherwise).
    RestoreLink {
        ns: Namespace,
        link: String,
        change: link::LinkChange,
        routes: Vec<RouteRequest>,
        addrs: Vec<IpNet>,
    },
    /// Put a link's tc state (root qdisc, koko's drop filters, clsact)
    /// back as it was before an impairment.
    RestoreTc {
        ns: Namespace,
        snapshot: impair::TcSnapshot,
    },
    /// End a blackhole: koko's drop-all filter on `hook` goes, and the
    /// clsact qdisc too if koko added it and nothing is left on it.
    Unblackhole {
        ns: Namespace,
        snapshot: impair::TcSnapshot,
        hook: tc::Hook,
    },
    /// Take away the ifb koko made to shape what link `ifindex` (`link`)
    /// receives, with its redirect.
    RemoveIfb {
        ns: Namespace,
        link: String,
        ifindex: u32,
    },
    /// Stop a flapping link (it is left up, as it began).
    #[serde(skip)]
    StopFlap(std::sync::Arc<std::sync::Mutex<crate::impair::Flap>>),
    /// Plug an unplugged link back: up, with the routes (and IPv6
    /// addresses) the kernel dropped when it went down.
    Plug {
        ns: Namespace,
        link: String,
        routes: Vec<RouteRequest>,
        addrs: Vec<IpNet>,
    },
}

impl Undo {
    /// A step whose inverse lives only in this process (a thread, a
    /// server): it cannot be written to disk, and dies with the process.
    pub fn in_process(&self) -> bool {
        matches!(self, Undo::StopServer(_) | Undo::StopFlap(_))
    }
}

/// What a run is about to ask the kernel to create: written to the journal
/// on disk before the request (see the module doc).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// A link `name` in `ns` (for a veth pair, its first end).
    Link { ns: Namespace, name: String },
    /// A named namespace (`/run/netns/NAME`).
    Netns { name: String },
}

impl Intent {
    /// Whether the step `undo` is the record of this intent's object.
    fn settled_by(&self, undo: &Undo) -> bool {
        match (self, undo) {
            (
                Intent::Link { ns, name },
                Undo::DeleteLink { ns: n, name: m } | Undo::DeleteVeth { ns: n, name: m, .. },
            ) => ns == n && name == m,
            (Intent::Netns { name }, Undo::DeleteNamespace { name: m }) => name == m,
            _ => false,
        }
    }
}

impl std::fmt::Display for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Intent::Link { ns, name } => write!(f, "link '{name}' in {ns}"),
            Intent::Netns { name } => write!(f, "netns '{name}'"),
        }
    }
}

/// One recorded step: a description for reports, and its inverse.
#[derive(Debug, Clone)]
pub struct Entry {
    pub what: String,
    pub undo: Undo,
    /// For [`Undo::DeleteNamespace`]: the identity of the namespace the
    /// run made, read when the step was recorded (right after creating it).
    pub netns_id: Option<NsId>,
    seq: u64,
}

/// One line of a journal file (short-lived: boxing the big variants would
/// only add noise).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
enum Line {
    Run(RunHeader),
    Intent {
        seq: u64,
        make: Intent,
    },
    Step {
        seq: u64,
        what: String,
        /// None: a step that lived only in the process.
        undo: Option<Undo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netns_id: Option<NsId>,
    },
    Undone(u64),
    Kept,
}

/// A journal's file on disk.
#[derive(Debug)]
struct RunFile {
    header: RunHeader,
    path: PathBuf,
    file: std::fs::File,
    /// Whether this process owns the run (sets the owner mark, removes
    /// the file when it ends), or is undoing a dead run's journal.
    own: bool,
    /// A write failed once (said once; the run goes on).
    failed: bool,
}

impl RunFile {
    fn append(&mut self, line: &Line) -> Result<()> {
        let mut text = serde_json::to_string(line)
            .map_err(|e| Error::Internal(format!("writing the journal: {e}")))?;
        text.push('\n');
        // One write(2) of the whole line, O_APPEND: a reader sees the line
        // whole or not at all.
        match (&self.file).write(text.as_bytes()) {
            Ok(n) if n == text.len() => Ok(()),
            Ok(_) => Err(Error::Internal(format!(
                "the journal {} took a short write",
                self.path.display()
            ))),
            Err(e) => Err(Error::io(
                format!("writing the journal {}", self.path.display()),
                e,
            )),
        }
    }

    /// Append, and say so (once) if the disk refuses: the run itself goes on.
    fn append_or_warn(&mut self, line: &Line) {
        if let Err(e) = self.append(line) {
            if !self.failed {
                eprintln!("koko: warning: {e}; a crash now could not be undone by `koko undo`");
                self.failed = true;
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Journal {
    entries: Vec<Entry>,
    next_seq: u64,
    /// Intents not yet settled by a step (only kept for runs on disk).
    pending: Vec<(u64, Intent)>,
    run: Option<RunFile>,
}

/// What undoing a journal did, step by step.
#[derive(Debug, Default)]
pub struct UndoReport {
    /// What was undone (or found already gone).
    pub undone: Vec<String>,
    /// Objects left alone because they are not the ones the run made.
    pub left_alone: Vec<Error>,
    /// Steps that lived in a dead run's process and died with it.
    pub died: Vec<String>,
    /// What could not be undone.
    pub errors: Vec<Error>,
}

impl UndoReport {
    /// Everything that needs saying as errors: the failures, then what was
    /// left alone (the form `undo_all` returns).
    fn into_errors(self) -> Vec<Error> {
        let mut all = self.errors;
        all.extend(self.left_alone);
        all
    }
}

/// "left netns 'x' alone: it is not the one this run created (...)".
fn left_alone(object: Object, why: &str) -> Error {
    Error::NotFound {
        object,
        place: None,
        cause: Some(format!(
            "left alone: it is not the one this run created ({why})"
        )),
    }
}

/// Outcome of one identity-checked step.
enum Done {
    Undone,
    LeftAlone(Error),
}

impl Journal {
    /// An in-memory journal (nothing on disk, no ownership marks): unit
    /// tests, and work whose caller decides everything in-process.
    pub fn new() -> Journal {
        Journal::default()
    }

    /// The journal of this process's run, on disk under `/run/koko`
    /// (see the module doc). From now on every link koko creates carries
    /// the run's mark. Ends with [`Journal::close`] (or drop).
    pub fn for_run(kind: RunKind) -> Result<Journal> {
        let header = RunHeader::this_process(kind)?;
        runs::ensure_dir()?;
        let path = runs::path_of(&header.id);
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| Error::io(format!("creating the journal {}", path.display()), e))?
        };
        let mut run = RunFile {
            header: header.clone(),
            path,
            file,
            own: true,
            failed: false,
        };
        run.append(&Line::Run(header.clone()))?;
        link::set_owner_mark(Some(header.mark()));
        Ok(Journal {
            entries: Vec::new(),
            next_seq: 0,
            pending: Vec::new(),
            run: Some(run),
        })
    }

    /// The id of the run this journal is on disk for.
    pub fn run_id(&self) -> Option<&str> {
        self.run.as_ref().map(|r| r.header.id.as_str())
    }

    /// The ownership mark of this journal's run (None in memory).
    pub fn mark(&self) -> Option<String> {
        self.run.as_ref().map(|r| r.header.mark())
    }

    /// Say, before asking the kernel, what is about to be created. For a
    /// journal on disk this must be written first: an error here means
    /// "do not create it". In memory it does nothing.
    pub fn intend(&mut self, make: Intent) -> Result<()> {
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        run.append(&Line::Intent {
            seq,
            make: make.clone(),
        })?;
        self.pending.push((seq, make));
        Ok(())
    }

    pub fn record(&mut self, what: impl Into<String>, undo: Undo) {
        let what = what.into();
        let netns_id = match &undo {
            Undo::DeleteNamespace { name } => Namespace::netns(name).ok().map(|ns| ns.id()),
            _ => None,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(run) = self.run.as_mut() {
            self.pending.retain(|(_, i)| !i.settled_by(&undo));
            let line = Line::Step {
                seq,
                what: what.clone(),
                undo: (!undo.in_process()).then(|| undo.clone()),
                netns_id,
            };
            run.append_or_warn(&line);
        }
        self.entries.push(Entry {
            what,
            undo,
            netns_id,
            seq,
        });
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn write_undone(&mut self, seq: u64) {
        if let Some(run) = self.run.as_mut() {
            run.append_or_warn(&Line::Undone(seq));
        }
    }

    /// Remove and return the newest entry whose undo matches `pred` (an
    /// operation that ends what an earlier one started: plug after unplug,
    /// restore after blackhole).
    pub fn take_last(&mut self, pred: impl Fn(&Undo) -> bool) -> Option<Entry> {
        let at = self.entries.iter().rposition(|e| pred(&e.undo))?;
        let entry = self.entries.remove(at);
        self.write_undone(entry.seq);
        Some(entry)
    }

    /// Forget everything recorded (the run keeps what it built).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.pending.clear();
        if let Some(run) = self.run.as_mut() {
            run.append_or_warn(&Line::Kept);
        }
    }

    /// End the run's journal on disk: the file goes (what is left in the
    /// journal is kept: the user's now, marks and all) and links created
    /// from now on are not marked. Nothing for an in-memory journal.
    /// Called on drop too, except while unwinding from a panic: a journal
    /// whose process panicked stays for `koko undo`.
    pub fn close(&mut self) {
        if let Some(run) = self.run.take() {
            if run.own {
                link::set_owner_mark(None);
            }
            let _ = std::fs::remove_file(&run.path);
        }
        self.pending.clear();
    }

    /// End this process's part in the run but leave its journal on disk,
    /// whole, for a later `koko undo RUN` (a lab kept wired and kept with
    /// `--keep`). Links made from now on are not marked. Returns the run id.
    pub fn leave_on_disk(&mut self) -> Option<String> {
        let run = self.run.take()?;
        if run.own {
            link::set_owner_mark(None);
        }
        self.entries.clear();
        self.pending.clear();
        Some(run.header.id.clone())
    }

    /// Undo everything, newest first, and empty the journal. Returns every
    /// error met on the way (an empty list means all is undone), and names
    /// what was left alone because it is not what the run made.
    pub fn undo_all(&mut self, session: &Session) -> Vec<Error> {
        let mut report = UndoReport::default();
        let mark = self.mark();
        let mut progress = crate::progress::Progress::counted("undoing", self.entries.len());
        while let Some(entry) = self.entries.pop() {
            progress.add(1);
            self.undo_checked(session, &entry, mark.as_deref(), &mut report);
        }
        report.into_errors()
    }

    /// Undo one entry with the identity checks, write it down, report it.
    fn undo_checked(
        &mut self,
        session: &Session,
        entry: &Entry,
        mark: Option<&str>,
        report: &mut UndoReport,
    ) {
        match undo_identified(session, entry, mark) {
            Ok(Done::Undone) => {
                self.write_undone(entry.seq);
                report.undone.push(entry.what.clone());
            }
            Ok(Done::LeftAlone(e)) => {
                self.write_undone(entry.seq);
                report.left_alone.push(e);
            }
            Err(e) => report.errors.push(e),
        }
    }

    /// Undo everything like [`Journal::undo_all`], in as few kernel
    /// requests as it allows: the namespaces this run created are deleted
    /// (the kernel tears a namespace down with everything in it, many
    /// namespaces in one batch, paying its RCU grace periods once instead of
    /// once per link), and the steps that only touched those namespaces are
    /// skipped, since they go with them. Every other step (anything in a
    /// namespace the run did not create, a veth with an end outside, links
    /// whose peer is not known, servers) is undone one by one, newest first,
    /// before the namespaces go. Returns every error met, and names what was
    /// left alone because it is not what the run made.
    ///
    /// The kernel finishes tearing a deleted namespace down asynchronously;
    /// nothing outside the deleted namespaces is left waiting on that.
    pub fn undo_all_batched(&mut self, session: &Session) -> Vec<Error> {
        self.undo_batched_report(session).into_errors()
    }

    /// [`Journal::undo_all_batched`], reporting each step.
    pub fn undo_batched_report(&mut self, session: &Session) -> UndoReport {
        use std::collections::HashSet;
        let mark = self.mark();
        let mut report = UndoReport::default();
        // The namespaces that are still the run's own: only those are
        // deleted wholesale (a replaced one is left alone, below).
        let doomed: Vec<(Namespace, u64)> = self
            .entries
            .iter()
            .filter_map(|e| match &e.undo {
                Undo::DeleteNamespace { name } => {
                    let ns = Namespace::netns(name).ok()?;
                    netns_is_ours(session, &ns, e.netns_id, mark.as_deref())
                        .ok()
                        .map(|()| (ns, e.seq))
                }
                _ => None,
            })
            .collect();
        let ids: HashSet<_> = doomed.iter().map(|(ns, _)| ns.id()).collect();
        let dies = |ns: &Namespace| ids.contains(&ns.id());
        let mut deleting = Vec::new();
        // One step per entry, and one per namespace deleted at the end.
        let mut progress =
            crate::progress::Progress::counted("undoing", self.entries.len() + doomed.len());
        while let Some(entry) = self.entries.pop() {
            progress.add(1);
            let skip = match &entry.undo {
                Undo::DeleteNamespace { .. } => {
                    if doomed.iter().any(|(_, seq)| *seq == entry.seq) {
                        deleting.push(entry.clone());
                        true
                    } else {
                        // Gone, or not the run's any more: said below.
                        false
                    }
                }
                Undo::DeleteVeth { ns, peer_ns, .. } => dies(ns) && dies(peer_ns),
                Undo::DeleteAddress { ns, .. }
                | Undo::RestoreSysctl { ns, .. }
                | Undo::DeleteMirror { ns, .. }
                | Undo::DeleteRoute { ns, .. }
                | Undo::RestoreRoute { ns, .. }
                | Undo::RestoreLink { ns, .. }
                | Undo::RestoreTc { ns, .. }
                | Undo::Unblackhole { ns, .. }
                | Undo::RemoveIfb { ns, .. }
                | Undo::Plug { ns, .. } => dies(ns),
                // A plain link's peer (a veth made by other means) or UDP
                // socket (vxlan) may be outside: delete it explicitly.
                Undo::DeleteLink { .. } | Undo::StopServer(_) | Undo::StopFlap(_) => false,
            };
            if skip {
                if !matches!(entry.undo, Undo::DeleteNamespace { .. }) {
                    self.write_undone(entry.seq);
                    report.undone.push(entry.what.clone());
                }
            } else {
                self.undo_checked(session, &entry, mark.as_deref(), &mut report);
            }
        }
        for (ns, _) in &doomed {
            session.forget(ns);
        }
        // Newest first, as recorded.
        for entry in deleting {
            progress.add(1);
            let Undo::DeleteNamespace { name } = &entry.undo else {
                continue;
            };
            match named::delete(name) {
                Ok(()) => {
                    self.write_undone(entry.seq);
                    report.undone.push(entry.what.clone());
                }
                Err(e) if e.is_namespace_not_found() => {
                    self.write_undone(entry.seq);
                    report.undone.push(entry.what.clone());
                }
                Err(e) => report.errors.push(e),
            }
        }
        report
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // A panic leaves the file for `koko undo`; a dead run being undone
        // keeps its file unless the undo finished (see `undo_dead`).
        let own = self.run.as_ref().is_some_and(|r| r.own);
        if own && !std::thread::panicking() {
            self.close();
        }
    }
}

/// Whether the named namespace `ns` (looked up now) is the one a run made:
/// the identity recorded, and the run's mark on its `lo` when it has one.
fn netns_is_ours(
    session: &Session,
    ns: &Namespace,
    recorded: Option<NsId>,
    mark: Option<&str>,
) -> std::result::Result<(), String> {
    if let Some(id) = recorded {
        if ns.id() != id {
            return Err("its name now refers to another namespace".into());
        }
    }
    if let Some(mark) = mark {
        let t = session.target(ns).map_err(|e| e.to_string())?;
        let lo = session
            .block_on(link::get(&t, "lo"))
            .map_err(|e| e.to_string())?;
        if lo.and_then(|l| l.alias).as_deref() != Some(mark) {
            // Do not keep a socket open in a namespace that is not ours.
            session.forget(ns);
            return Err(format!("its lo does not carry the mark {mark}"));
        }
    }
    Ok(())
}

/// Whether link `name` in `ns` is one the run made: with a mark, it must
/// carry it. `Ok(None)`: there is no such link (any more).
fn link_is_ours(
    session: &Session,
    ns: &Namespace,
    name: &str,
    mark: Option<&str>,
) -> Result<Option<std::result::Result<(), String>>> {
    let Some(mark) = mark else {
        return Ok(Some(Ok(())));
    };
    let t = session.target(ns)?;
    Ok(session.block_on(link::get(&t, name))?.map(|l| {
        if l.alias.as_deref() == Some(mark) {
            Ok(())
        } else {
            Err(match l.alias {
                Some(a) => format!("it carries the alias '{a}', not {mark}"),
                None => format!("it does not carry the mark {mark}"),
            })
        }
    }))
}

/// Undo one entry, acting only on what the run made (see the module doc).
fn undo_identified(session: &Session, entry: &Entry, mark: Option<&str>) -> Result<Done> {
    match &entry.undo {
        Undo::DeleteNamespace { name } => {
            let ns = match Namespace::netns(name) {
                Ok(ns) => ns,
                Err(e) if e.is_namespace_not_found() => {
                    // Not there, or not a namespace file (someone else's
                    // file): nothing of the run's is left to delete.
                    if runs::exists(&std::path::Path::new(crate::ns::NETNS_RUN_DIR).join(name)) {
                        return Ok(Done::LeftAlone(left_alone(
                            Object::netns(name.as_str()),
                            "the name is now something else",
                        )));
                    }
                    return Ok(Done::Undone);
                }
                Err(e) => return Err(e),
            };
            match netns_is_ours(session, &ns, entry.netns_id, mark) {
                Ok(()) => {
                    session.forget(&ns);
                    undo_one(session, &entry.undo).map(|()| Done::Undone)
                }
                Err(why) => Ok(Done::LeftAlone(left_alone(Object::netns(name.as_str()), &why))),
            }
        }
        Undo::DeleteLink { ns, name } | Undo::DeleteVeth { ns, name, .. } if ns.exists() => {
            match link_is_ours(session, ns, name, mark)? {
                None => Ok(Done::Undone),
                Some(Ok(())) => undo_one(session, &entry.undo).map(|()| Done::Undone),
                Some(Err(why)) => Ok(Done::LeftAlone(Error::NotFound {
                    object: Object::link(name.as_str()),
                    place: Some(ns.to_string()),
                    cause: Some(format!(
                        "the link there now is left alone: it is not the one this run created ({why})"
                    )),
                })),
            }
        }
        undo => undo_one(session, undo).map(|()| Done::Undone),
    }
}

/// A dead run's journal, read back from its file.
#[derive(Debug)]
pub struct DeadRun {
    pub header: RunHeader,
    /// The steps still to undo, oldest first.
    pub steps: Vec<Entry>,
    /// Steps that lived only in the dead process.
    pub died: Vec<String>,
    /// Intents no step settled: objects that may exist, unrecorded.
    pub intents: Vec<Intent>,
}

/// Read the journal file of run `id`.
pub fn read_run(id: &str) -> Result<DeadRun> {
    let path = runs::path_of(id);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                object: Object::new("run", id),
                place: Some(runs::RUN_DIR.into()),
                cause: None,
            }
        } else {
            Error::io(format!("reading {}", path.display()), e)
        }
    })?;
    parse_run(id, &text)
}

/// Rebuild a run's state from its journal lines (a torn last line, from a
/// write cut short, is ignored).
fn parse_run(id: &str, text: &str) -> Result<DeadRun> {
    let bad = |why: String| Error::Invalid(format!("the journal of run {id} is damaged: {why}"));
    let mut header = None;
    let mut steps: Vec<Entry> = Vec::new();
    let mut died: Vec<(u64, String)> = Vec::new();
    let mut intents: Vec<(u64, Intent)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let parsed: Line = match serde_json::from_str(line) {
            Ok(l) => l,
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => return Err(bad(format!("line {}: {e}", i + 1))),
        };
        match parsed {
            Line::Run(h) => header = Some(h),
            Line::Intent { seq, make } => intents.push((seq, make)),
            Line::Step {
                seq,
                what,
                undo,
                netns_id,
            } => match undo {
                Some(undo) => {
                    intents.retain(|(_, i)| !i.settled_by(&undo));
                    steps.push(Entry {
                        what,
                        undo,
                        netns_id,
                        seq,
                    });
                }
                None => died.push((seq, what)),
            },
            Line::Undone(seq) => {
                steps.retain(|e| e.seq != seq);
                died.retain(|(s, _)| *s != seq);
            }
            Line::Kept => {
                steps.clear();
                died.clear();
                intents.clear();
            }
        }
    }
    let header = header.ok_or_else(|| bad("it has no run line".into()))?;
    Ok(DeadRun {
        header,
        steps,
        died: died.into_iter().map(|(_, w)| w).collect(),
        intents: intents.into_iter().map(|(_, i)| i).collect(),
    })
}

/// Undo the journal of run `id`, whose process is dead, with the same
/// identity checks as a live undo, then the objects its unsettled intents
/// name if they carry its mark. The journal file goes once everything is
/// undone; if something could not be, it stays (with what was undone
/// written down) for another try.
pub fn undo_dead(session: &Session, id: &str) -> Result<UndoReport> {
    use nix::fcntl::{Flock, FlockArg};
    let dead = read_run(id)?;
    if dead.header.alive() {
        return Err(Error::Invalid(format!(
            "run {id} is still running (pid {}): stop that koko (Ctrl-C or kill {}) and it undoes its own work",
            dead.header.pid, dead.header.pid
        )));
    }
    let path = runs::path_of(id);
    let open = || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))
    };
    // Two `koko undo` at once must not both work on one run: the lock is
    // held until this function returns.
    let _lock = Flock::lock(open()?, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        Error::kernel(
            format!("undoing run {id} (another koko is undoing it)"),
            errno,
        )
    })?;
    let file = open()?;
    let mark = dead.header.mark();
    let mut journal = Journal {
        next_seq: dead.steps.iter().map(|e| e.seq + 1).max().unwrap_or(0),
        entries: dead.steps,
        pending: Vec::new(),
        run: Some(RunFile {
            header: dead.header.clone(),
            path: path.clone(),
            file,
            own: false,
            failed: false,
        }),
    };
    let mut report = journal.undo_batched_report(session);
    report.died = dead.died;
    for intent in dead.intents.iter().rev() {
        match undo_intent(session, intent, &mark) {
            Ok(Some(Done::Undone)) => report.undone.push(intent.to_string()),
            Ok(Some(Done::LeftAlone(e))) => report.left_alone.push(e),
            Ok(None) => {}
            Err(e) => report.errors.push(e),
        }
    }
    if report.errors.is_empty() {
        journal.run = None;
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
    }
    Ok(report)
}

/// An object a dead run was about to create: delete it if it exists and
/// carries the run's mark. `None`: it does not exist (never made).
fn undo_intent(session: &Session, intent: &Intent, mark: &str) -> Result<Option<Done>> {
    match intent {
        Intent::Link { ns, name } => {
            if !ns.exists() {
                return Ok(None);
            }
            match link_is_ours(session, ns, name, Some(mark))? {
                None => Ok(None),
                Some(Ok(())) => {
                    let t = session.target(ns)?;
                    match session.block_on(link::delete(&t, name)) {
                        Ok(()) => Ok(Some(Done::Undone)),
                        Err(e) if e.is_link_not_found() => Ok(Some(Done::Undone)),
                        Err(e) => Err(e),
                    }
                }
                Some(Err(why)) => Ok(Some(Done::LeftAlone(Error::NotFound {
                    object: Object::link(name.as_str()),
                    place: Some(ns.to_string()),
                    cause: Some(format!(
                        "left alone: nothing says this run created it ({why})"
                    )),
                }))),
            }
        }
        Intent::Netns { name } => {
            let Ok(ns) = Namespace::netns(name) else {
                return Ok(None);
            };
            match netns_is_ours(session, &ns, None, Some(mark)) {
                Ok(()) => {
                    session.forget(&ns);
                    named::delete(name).map(|()| Some(Done::Undone))
                }
                Err(why) => Ok(Some(Done::LeftAlone(Error::NotFound {
                    object: Object::netns(name.as_str()),
                    place: None,
                    cause: Some(format!(
                        "left alone: nothing says this run created it ({why})"
                    )),
                }))),
            }
        }
    }
}

/// [`mark_netns`] for many namespaces, pipelined (a chain's nodes).
pub fn mark_netns_many(
    session: &Session,
    journal: &Journal,
    namespaces: &[Namespace],
) -> Result<()> {
    use crate::net::batch::{self, Op, Request};
    let Some(mark) = journal.mark() else {
        return Ok(());
    };
    let mut requests = Vec::with_capacity(namespaces.len());
    for ns in namespaces {
        requests.push(Request {
            target: session.target(ns)?,
            op: Op::SetAlias {
                name: "lo".into(),
                alias: mark.clone(),
            },
        });
    }
    let answers = session.block_on(batch::run(requests));
    for (ns, answer) in namespaces.iter().zip(answers) {
        if let Err(errno) = answer {
            return Err(Error::kernel(
                format!("marking {ns} as koko's ('{mark}')"),
                errno,
            ));
        }
    }
    Ok(())
}

/// Give a named namespace the run just created the run's mark (on its
/// `lo`), so that a later koko can recognise it. Nothing without a mark.
pub fn mark_netns(session: &Session, journal: &Journal, ns: &Namespace) -> Result<()> {
    let Some(mark) = journal.mark() else {
        return Ok(());
    };
    let t = session.target(ns)?;
    session.block_on(link::set_alias(&t, "lo", &mark))
}

/// Whether `error`, met while undoing `undo`, only says that the object is
/// already gone (with its namespace, its link, or removed by someone else):
/// then the step counts as undone. Kept apart from the kernel calls so the
/// rule is testable on its own.
pub fn already_gone(undo: &Undo, error: &Error) -> bool {
    use nix::errno::Errno;
    let errno = match error {
        Error::Kernel { errno, .. } => *errno,
        _ => None,
    };
    match undo {
        Undo::DeleteLink { .. }
        | Undo::DeleteVeth { .. }
        | Undo::RestoreLink { .. }
        | Undo::Plug { .. } => error.is_link_not_found(),
        Undo::DeleteAddress { .. } => {
            error.is_link_not_found() || errno == Some(Errno::EADDRNOTAVAIL)
        }
        Undo::DeleteRoute { .. } => {
            error.is_link_not_found() || matches!(errno, Some(Errno::ESRCH | Errno::ENOENT))
        }
        Undo::DeleteNamespace { .. } => error.is_namespace_not_found(),
        Undo::RestoreSysctl { .. }
        | Undo::StopServer(_)
        | Undo::StopFlap(_)
        | Undo::DeleteMirror { .. }
        | Undo::RestoreRoute { .. }
        | Undo::RestoreTc { .. }
        | Undo::Unblackhole { .. }
        | Undo::RemoveIfb { .. } => false,
    }
}

/// Carry out one undo step; something already gone counts as undone.
pub fn undo_one(session: &Session, undo: &Undo) -> Result<()> {
    match undo_step(session, undo) {
        Err(e) if already_gone(undo, &e) => Ok(()),
        other => other,
    }
}

/// Carry out one inverse step. A step in a namespace that no longer exists
/// is done: everything in it went with it.
fn undo_step(session: &Session, undo: &Undo) -> Result<()> {
    match undo {
        Undo::DeleteLink { ns, name } | Undo::DeleteVeth { ns, name, .. } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(link::delete(&t, name))
        }
        Undo::DeleteAddress {
            ns,
            link: name,
            addr: a,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(addr::del(&t, name, *a))
        }
        Undo::DeleteNamespace { name } => {
            if let Ok(ns) = Namespace::netns(name) {
                session.forget(&ns);
            }
            named::delete(name)
        }
        Undo::RestoreSysctl { ns, key, value } => {
            if !ns.exists() {
                return Ok(());
            }
            sysctl::write(ns, key, value).map(drop)
        }
        Undo::StopServer(server) => {
            if let Ok(mut s) = server.lock() {
                s.stop();
            }
            Ok(())
        }
        Undo::DeleteMirror {
            ns,
            source,
            target_index,
            remove_qdisc,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            let Some(src) = session.block_on(link::get(&t, source))? else {
                return Ok(()); // the source is gone, and its filters with it
            };
            let policy = if *remove_qdisc {
                tc::QdiscPolicy::RemoveIfEmpty
            } else {
                // A clsact that an earlier mirror of koko's added (its
                // filters say so) goes with koko's last filter.
                tc::QdiscPolicy::IfKokos
            };
            session
                .block_on(tc::remove_mirror_filters(
                    &t,
                    src.index,
                    *target_index,
                    policy,
                ))
                .map(drop)
        }
        Undo::DeleteRoute { ns, route: r } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(route::del(&t, r))
        }
        Undo::RestoreRoute { ns, route: r } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(route::replace(&t, r))
        }
        Undo::RestoreLink {
            ns,
            link: name,
            change,
            routes,
            addrs,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(link::set(&t, name, *change))?;
            restore_flushed(session, &t, name, addrs, routes)
        }
        Undo::StopFlap(flap) => match flap.lock() {
            Ok(mut f) => f.stop(),
            Err(_) => Ok(()),
        },
        Undo::RestoreTc { ns, snapshot } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(impair::restore(&t, snapshot))
        }
        Undo::RemoveIfb {
            ns,
            link: name,
            ifindex,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            match session.block_on(link::get(&t, name))? {
                // The link koko shaped: its redirect, the ifb, a clsact
                // koko added.
                Some(l) if l.index == *ifindex => {
                    session.block_on(impair::remove_ifb(&t, *ifindex))
                }
                // The link went (its filters with it): the ifb, named
                // after its ifindex, is all that is left of koko's.
                _ => match session.block_on(link::delete(&t, &impair::ifb_name(*ifindex))) {
                    Err(e) if e.is_link_not_found() => Ok(()),
                    other => other,
                },
            }
        }
        Undo::Unblackhole { ns, snapshot, hook } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(impair::unblackhole(&t, snapshot, *hook))
        }
        Undo::Plug {
            ns,
            link: name,
            routes,
            addrs,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            let up = link::LinkChange {
                up: Some(true),
                mtu: None,
            };
            session.block_on(link::set(&t, name, up))?;
            restore_flushed(session, &t, name, addrs, routes)
        }
    }
}

/// Put back what the kernel flushed when a link went down (see
/// `addr::flushed_by_down`, `route::flushed_by_down`): addresses first
/// (an IPv6 gateway is only reachable through its prefix), then routes.
/// Both are idempotent: an address already back counts as restored, and a
/// route is replaced.
pub fn restore_flushed(
    session: &Session,
    t: &crate::net::Target,
    link_name: &str,
    addrs: &[IpNet],
    routes: &[RouteRequest],
) -> Result<()> {
    for a in addrs {
        match session.block_on(addr::add(t, link_name, *a)) {
            Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {}
            other => other?,
        }
    }
    for r in routes {
        session.block_on(route::replace(t, r))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Object;
    use nix::errno::Errno;

    fn kernel(errno: Errno) -> Error {
        Error::kernel("undoing", errno)
    }

    #[test]
    fn undoing_what_is_already_gone_is_done() {
        let ns = Namespace::current().unwrap();
        let link_gone = Error::link_not_found("link1", &ns);
        let delete_link = Undo::DeleteLink {
            ns: ns.clone(),
            name: "link1".into(),
        };
        assert!(already_gone(&delete_link, &link_gone));
        assert!(!already_gone(&delete_link, &kernel(Errno::EPERM)));

        let delete_addr = Undo::DeleteAddress {
            ns: ns.clone(),
            link: "link1".into(),
            addr: "10.0.0.1/24".parse().unwrap(),
        };
        assert!(already_gone(&delete_addr, &link_gone));
        assert!(already_gone(&delete_addr, &kernel(Errno::EADDRNOTAVAIL)));
        assert!(!already_gone(&delete_addr, &kernel(Errno::EBUSY)));

        let delete_route = Undo::DeleteRoute {
            ns: ns.clone(),
            route: RouteRequest::to("10.0.3.0/24".parse().unwrap()),
        };
        assert!(already_gone(&delete_route, &kernel(Errno::ESRCH)));
        assert!(already_gone(&delete_route, &kernel(Errno::ENOENT)));
        assert!(!already_gone(&delete_route, &kernel(Errno::EINVAL)));

        let delete_ns = Undo::DeleteNamespace { name: "a".into() };
        let ns_gone = Error::namespace_not_found(Object::namespace(&ns), "is gone");
        assert!(already_gone(&delete_ns, &ns_gone));
        assert!(!already_gone(&delete_ns, &link_gone));
    }

    #[test]
    fn putting_something_back_is_never_silently_skipped() {
        let ns = Namespace::current().unwrap();
        let restore = Undo::RestoreSysctl {
            ns: ns.clone(),
            key: "net.ipv4.ip_forward".into(),
            value: "0".into(),
        };
        let missing = Error::NotFound {
            object: Object::sysctl("net.ipv4.ip_forward"),
            place: None,
            cause: None,
        };
        assert!(!already_gone(&restore, &missing));
        let restore_route = Undo::RestoreRoute {
            ns,
            route: RouteRequest::to("10.0.3.0/24".parse().unwrap()),
        };
        assert!(!already_gone(&restore_route, &kernel(Errno::ESRCH)));
    }

    /// Every kind of step that can be written, as a dead run's journal
    /// would hold it.
    fn every_disk_step() -> Vec<Undo> {
        let ns = Namespace::current().unwrap();
        let route = RouteRequest {
            dest: "10.0.3.0/24".parse().unwrap(),
            via: Some("10.0.1.1".parse().unwrap()),
            dev: Some("link1".into()),
            metric: Some(7),
            table: Some(100),
        };
        vec![
            Undo::DeleteLink {
                ns: ns.clone(),
                name: "vx0".into(),
            },
            Undo::DeleteVeth {
                ns: ns.clone(),
                name: "l1".into(),
                peer_ns: ns.clone(),
            },
            Undo::DeleteAddress {
                ns: ns.clone(),
                link: "l1".into(),
                addr: "2001:db8::1/64".parse().unwrap(),
            },
            Undo::DeleteNamespace { name: "a".into() },
            Undo::RestoreSysctl {
                ns: ns.clone(),
                key: "net.ipv4.ip_forward".into(),
                value: "0".into(),
            },
            Undo::DeleteMirror {
                ns: ns.clone(),
                source: "eth0".into(),
                target_index: 4,
                remove_qdisc: true,
            },
            Undo::DeleteRoute {
                ns: ns.clone(),
                route: route.clone(),
            },
            Undo::RestoreRoute {
                ns: ns.clone(),
                route: route.clone(),
            },
            Undo::RestoreLink {
                ns: ns.clone(),
                link: "l1".into(),
                change: link::LinkChange {
                    up: Some(false),
                    mtu: Some(1400),
                },
                routes: vec![route.clone()],
                addrs: vec!["2001:db8::1/64".parse().unwrap()],
            },
            Undo::RestoreTc {
                ns: ns.clone(),
                snapshot: snapshot(),
            },
            Undo::Unblackhole {
                ns: ns.clone(),
                snapshot: snapshot(),
                hook: tc::Hook::Egress,
            },
            Undo::RemoveIfb {
                ns: ns.clone(),
                link: "l1".into(),
                ifindex: 9,
            },
            Undo::Plug {
                ns,
                link: "l1".into(),
                routes: vec![route],
                addrs: vec!["2001:db8::1/64".parse().unwrap()],
            },
        ]
    }

    fn snapshot() -> impair::TcSnapshot {
        impair::sample_snapshot()
    }

    #[test]
    fn every_step_survives_the_trip_to_disk_and_back() {
        let steps = every_disk_step();
        let mut text = String::new();
        let header = RunHeader::this_process(RunKind::Script).unwrap();
        text += &serde_json::to_string(&Line::Run(header.clone())).unwrap();
        text.push('\n');
        for (seq, undo) in steps.iter().enumerate() {
            let line = Line::Step {
                seq: seq as u64,
                what: format!("step {seq}"),
                undo: Some(undo.clone()),
                netns_id: None,
            };
            text += &serde_json::to_string(&line).unwrap();
            text.push('\n');
        }
        let run = parse_run(&header.id, &text).unwrap();
        assert_eq!(run.header, header);
        assert_eq!(run.steps.len(), steps.len());
        for (back, undo) in run.steps.iter().zip(&steps) {
            // Debug shows every field (a TcMessage included).
            assert_eq!(format!("{:?}", back.undo), format!("{undo:?}"));
        }
        // The handle read back names the same namespace, by identity.
        let Undo::DeleteLink { ns, .. } = &run.steps[0].undo else {
            panic!("order kept");
        };
        assert!(ns.exists());
    }

    #[test]
    fn a_dead_runs_journal_reads_back_what_is_left_to_undo() {
        let ns = Namespace::current().unwrap();
        let header = RunHeader::this_process(RunKind::Oneshot).unwrap();
        let link = |name: &str| Undo::DeleteLink {
            ns: ns.clone(),
            name: name.into(),
        };
        let intent = |name: &str| Intent::Link {
            ns: ns.clone(),
            name: name.into(),
        };
        let lines = [
            Line::Run(header.clone()),
            Line::Intent {
                seq: 0,
                make: intent("gone"),
            },
            Line::Step {
                seq: 1,
                what: "gone".into(),
                undo: Some(link("gone")),
                netns_id: None,
            },
            Line::Step {
                seq: 2,
                what: "kept".into(),
                undo: Some(link("kept")),
                netns_id: None,
            },
            Line::Kept,
            Line::Intent {
                seq: 3,
                make: intent("a"),
            },
            Line::Step {
                seq: 4,
                what: "a".into(),
                undo: Some(link("a")),
                netns_id: None,
            },
            Line::Step {
                seq: 5,
                what: "server".into(),
                undo: None,
                netns_id: None,
            },
            Line::Step {
                seq: 6,
                what: "b".into(),
                undo: Some(link("b")),
                netns_id: None,
            },
            Line::Undone(6),
            Line::Intent {
                seq: 7,
                make: intent("c"),
            },
        ];
        let mut text: String = lines
            .iter()
            .map(|l| serde_json::to_string(l).unwrap() + "\n")
            .collect();
        // A write cut short by the crash: ignored.
        text += "{\"step\":{\"seq\":8,";
        let run = parse_run(&header.id, &text).unwrap();
        let left: Vec<&str> = run.steps.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(
            left,
            vec!["a"],
            "kept and undone steps are not the run's to undo"
        );
        assert_eq!(run.died, vec!["server"]);
        let intents: Vec<String> = run.intents.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            intents,
            vec![format!("link 'c' in {ns}")],
            "'a' is settled by its step"
        );
        // A damaged line in the middle is an error, not a silent skip.
        let damaged = text.replacen("\"kept\"", "\"kep", 1);
        assert!(parse_run(&header.id, &damaged).is_err());
    }

    #[test]
    fn undoing_a_namespace_that_never_existed_is_done() {
        let session = Session::new().unwrap();
        let mut journal = Journal::new();
        journal.record(
            "netns 'koko-unit-never-there'",
            Undo::DeleteNamespace {
                name: "koko-unit-never-there".into(),
            },
        );
        assert!(journal.undo_all(&session).is_empty());
        assert!(journal.is_empty());
    }
}

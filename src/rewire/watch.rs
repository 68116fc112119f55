//! What tells a kept lab that its places changed.
//!
//! * Docker/Podman: the engine's event stream (`GET /events`, type
//!   container), read by a helper thread with a small runtime of its own
//!   (the engine client is async; the run's own runtime lives on the script
//!   thread and must not be entered from another). The thread never enters
//!   a namespace. It hands each event over a channel and writes a byte to a
//!   pipe, so the script thread's `poll(2)` — the one `watch(ms)` and the
//!   final keep-wired wait sit in — wakes at once. Repairs run on the
//!   script thread, where the run's session and journal live.
//! * `ip netns` namespaces: inotify on /run/netns. `ip netns add x` creates
//!   the file /run/netns/x (then mounts the namespace on it), so a name
//!   made again is a new namespace.
//! * CRI pods: nothing here. containerd before 1.7 (1.6 on Debian 12) has
//!   no CRI event stream (`GetContainerEvents`), so the kept lab looks for
//!   a down pod's new sandbox in the runtime's list on each pass
//!   ([`super::Lab::ask_runtime`]).
//!
//! The stream is asked for the events since the moment the watcher was
//! opened: the engine replays what happened between that moment and the
//! subscription, so a restart right after `keep_wired()` is not missed.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, Inotify};

use crate::error::{Error, Result};
use crate::ns::docker::ContainerEvent;

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Die,
    /// Removed (`docker rm`): it will not come back.
    Destroy,
}

impl Action {
    /// The engine's word (Docker's, or Podman's compat API's).
    pub fn parse(word: &str) -> Option<Action> {
        match word {
            "start" | "restart" => Some(Action::Start),
            "die" | "died" | "stop" | "kill" => Some(Action::Die),
            "destroy" | "remove" => Some(Action::Destroy),
            _ => None,
        }
    }
}

/// One engine event, as the lab needs it.
#[derive(Debug, Clone)]
pub struct EngineEvent {
    pub action: Action,
    pub id: String,
    pub name: String,
    /// The engine's time of the event, ms since the epoch.
    pub time_ms: f64,
}

/// What the watchers saw since the last look.
#[derive(Debug, Default)]
pub struct Seen {
    pub engine: Vec<EngineEvent>,
    /// When a named namespace was last made or deleted (ms since epoch).
    pub netns_ms: Option<f64>,
}

/// The engine thread's side.
struct EngineThread {
    rx: mpsc::Receiver<std::result::Result<ContainerEvent, String>>,
    stop: Arc<AtomicBool>,
}

/// The watchers of a kept lab.
pub struct Watcher {
    inotify: Inotify,
    /// Readable when the engine thread handed something over.
    wake_rx: OwnedFd,
    wake_tx: Arc<Mutex<Option<OwnedFd>>>,
    engine: Option<EngineThread>,
    /// When the watcher was opened (seconds since the epoch): the engine
    /// replays events from then on.
    since_secs: f64,
    failure: Option<String>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two fds we then own.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(Error::io(
            "making the keep-wired wake-up pipe",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: both fds were just created and are ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Watcher {
    pub fn open() -> Result<Watcher> {
        let inotify = crate::net::monitor::watch_netns_dir(
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_ATTRIB,
        )?;
        let (wake_rx, wake_tx) = pipe()?;
        Ok(Watcher {
            inotify,
            wake_rx,
            wake_tx: Arc::new(Mutex::new(Some(wake_tx))),
            engine: None,
            since_secs: crate::probe::epoch_ms() / 1000.0,
            failure: None,
        })
    }

    /// Start reading the engine's events (once).
    pub fn want_engine(&mut self) {
        if self.engine.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let wake = self.wake_tx.clone();
        let since = self.since_secs;
        let stopping = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("koko-engine-events".into())
            .spawn(move || engine_thread(since, tx, wake, stopping));
        match spawned {
            Ok(_) => self.engine = Some(EngineThread { rx, stop }),
            Err(e) => self.failure = Some(format!("cannot start the engine watcher: {e}")),
        }
    }

    /// A problem of the engine watcher, said once.
    pub fn engine_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.inotify.as_fd(), self.wake_rx.as_fd()]
    }

    /// Everything seen since the last call (never blocks).
    pub fn drain(&mut self) -> Seen {
        let mut seen = Seen::default();
        let mut buf = [0u8; 256];
        // SAFETY: reading into our own buffer from our own non-blocking fd.
        while unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.wake_rx),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        } > 0
        {}
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            seen.netns_ms = Some(crate::probe::epoch_ms());
        }
        if let Some(engine) = &self.engine {
            while let Ok(item) = engine.rx.try_recv() {
                match item {
                    Ok(ev) => {
                        if let Some(action) = Action::parse(&ev.action) {
                            seen.engine.push(EngineEvent {
                                action,
                                id: ev.id,
                                name: ev.name,
                                time_ms: ev.time_ms,
                            });
                        }
                    }
                    Err(e) => self.failure = Some(e),
                }
            }
        }
        seen
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(engine) = &self.engine {
            engine.stop.store(true, Ordering::SeqCst);
        }
        // The thread may outlive us for up to one tick; it writes nowhere
        // once the pipe's write end is gone.
        if let Ok(mut w) = self.wake_tx.lock() {
            *w = None;
        }
    }
}

/// The engine thread: connect, subscribe, forward until told to stop. A
/// lost connection is retried (the engine restarting is no reason to stop
/// keeping the lab), and said once.
fn engine_thread(
    since: f64,
    tx: mpsc::Sender<std::result::Result<ContainerEvent, String>>,
    wake: Arc<Mutex<Option<OwnedFd>>>,
    stop: Arc<AtomicBool>,
) {
    let poke = || {
        if let Ok(w) = wake.lock() {
            if let Some(fd) = w.as_ref() {
                // SAFETY: a one-byte write to our own non-blocking pipe.
                unsafe {
                    libc::write(std::os::fd::AsRawFd::as_raw_fd(fd), b"!".as_ptr().cast(), 1);
                }
            }
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        let _ = tx.send(Err("cannot start the engine watcher's runtime".into()));
        poke();
        return;
    };
    let mut said = false;
    let mut since = since;
    while !stop.load(Ordering::SeqCst) {
        let outcome: std::result::Result<(), String> = rt.block_on(async {
            use futures::StreamExt;
            let engine = crate::ns::docker::Engine::connect("the lab's containers")
                .await
                .map_err(|e| e.to_string())?;
            let mut events = std::pin::pin!(engine.container_events(since));
            loop {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                match tokio::time::timeout(Duration::from_millis(200), events.next()).await {
                    Err(_) => continue,
                    Ok(None) => return Err("the engine ended its event stream".into()),
                    Ok(Some(Err(e))) => return Err(e.to_string()),
                    Ok(Some(Ok(ev))) => {
                        since = since.max(ev.time_ms / 1000.0);
                        if tx.send(Ok(ev)).is_err() {
                            return Ok(());
                        }
                        poke();
                    }
                }
            }
        });
        if let Err(e) = outcome {
            if !said {
                said = true;
                let _ = tx.send(Err(format!(
                    "the container engine's events: {e} (trying again)"
                )));
                poke();
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_podman_words_for_what_happened() {
        assert_eq!(Action::parse("start"), Some(Action::Start));
        assert_eq!(Action::parse("die"), Some(Action::Die));
        assert_eq!(Action::parse("died"), Some(Action::Die));
        assert_eq!(Action::parse("destroy"), Some(Action::Destroy));
        assert_eq!(Action::parse("remove"), Some(Action::Destroy));
        assert_eq!(Action::parse("exec_start: sh"), None);
    }
}

//! Signals that stop a run: SIGINT (Ctrl-C), SIGTERM and SIGHUP.
//!
//! koko promises that a stopped run leaves nothing half-built: whatever it
//! created is undone (unless the user asked to `--keep` it) and the exit
//! code says the run did not finish. A signal's default action would kill
//! the process on the spot, between two netlink requests, so koko installs
//! a handler instead. A handler may do almost nothing (only
//! async-signal-safe work), so it only records *which* signal arrived in an
//! atomic; the code that loops or waits checks [`check`] (or [`pending`])
//! and returns [`Error::Interrupted`], which unwinds the run through its
//! normal error path: the journal is undone and the process exits with
//! 128 + the signal's number, as a shell reports a process killed by it.
//!
//! The handler is installed without `SA_RESTART`, so a blocking system call
//! (poll, sleep, waitpid) returns EINTR when a signal arrives and the caller
//! gets to look at the flag at once instead of after its timeout.
//!
//! Everywhere koko waits, it waits in slices ([`sleep`]) or with a poll
//! that the signal cuts short; a long pause is never a single `sleep(2)`.
//! A second signal while the undo runs is recorded too, but the undo goes
//! on: stopping it half-way would leave exactly what the undo is for.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::error::{Error, Result};

/// The signal that arrived (its number), or 0 for none.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// The signals that stop a run.
pub const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

extern "C" fn on_signal(signo: libc::c_int) {
    if signo == libc::SIGINT {
        // Ctrl-C may be cleared (the REPL goes on): it never hides another.
        let _ = PENDING.compare_exchange(0, signo, Ordering::SeqCst, Ordering::SeqCst);
    } else {
        // SIGTERM and SIGHUP end even the REPL: they win over a Ctrl-C.
        PENDING.store(signo, Ordering::SeqCst);
    }
    let hook = REPL_HOOK.load(Ordering::SeqCst);
    if hook >= 0 && signo != libc::SIGINT {
        // A line editor waiting at a prompt restarts its read on EINTR and
        // would never see the flag: give it end-of-file instead (dup2 is
        // async-signal-safe), so the prompt returns and the REPL undoes.
        // SAFETY: dup2 on fds this process owns; no allocation, no locks.
        unsafe {
            libc::dup2(hook, 0);
        }
    }
}

/// An fd of /dev/null to put on stdin when SIGTERM/SIGHUP reach a REPL
/// waiting at its prompt (-1: not at a prompt). See [`at_prompt`].
static REPL_HOOK: AtomicI32 = AtomicI32::new(-1);

/// Route SIGINT, SIGTERM and SIGHUP to the flag instead of killing the
/// process. Safe to call more than once.
pub fn install() {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        // No SA_RESTART: blocking calls return EINTR so the flag is seen.
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in STOP_SIGNALS {
        // SAFETY: the handler only touches atomics and calls dup2.
        unsafe {
            let _ = sigaction(signal, &action);
        }
    }
}

/// While `devnull` is Some, SIGTERM and SIGHUP also put `devnull` on the
/// process's stdin, so a line editor blocked reading it gets end-of-file.
/// The REPL sets it around its prompt and clears it (None) afterwards.
pub fn at_prompt(devnull: Option<std::os::fd::RawFd>) {
    REPL_HOOK.store(devnull.unwrap_or(-1), Ordering::SeqCst);
}

/// The signal that arrived and was not yet cleared.
pub fn pending() -> Option<Signal> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// Forget a signal that was handled (the REPL goes on after Ctrl-C).
pub fn clear() {
    PENDING.store(0, Ordering::SeqCst);
}

/// `Err(Error::Interrupted)` if a stop signal arrived.
pub fn check() -> Result<()> {
    match pending() {
        Some(signal) => Err(Error::Interrupted { signal }),
        None => Ok(()),
    }
}

/// Sleep for `d`, in short slices, returning early with
/// [`Error::Interrupted`] when a stop signal arrives.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        // The handler cuts the sleep short (EINTR); the slice bounds the
        // wait should the signal land just before the sleep starts.
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// The words for a signal in messages: "SIGINT (Ctrl-C)", "SIGTERM".
pub fn describe(signal: Signal) -> String {
    match signal {
        Signal::SIGINT => "SIGINT (Ctrl-C)".to_string(),
        other => other.as_str().to_string(),
    }
}

/// Test-only hook, not a user option: with `KOKO_TEST_PAUSE_<POINT>_MS=N`
/// koko announces on stderr that it reached `point`, then pauses N ms
/// (interruptibly), so a test can deliver a signal (or kill a container)
/// exactly there. `point` is e.g. "AFTER_RESOLVE", "AFTER_LINK".
pub fn test_pause(point: &str) -> Result<()> {
    let var = format!("KOKO_TEST_PAUSE_{point}_MS");
    if let Some(ms) = std::env::var(&var).ok().and_then(|v| v.parse::<u64>().ok()) {
        crate::say!(
            "koko: test hook: {}, pausing {ms} ms",
            point.to_lowercase().replace('_', " ")
        );
        sleep(Duration::from_millis(ms))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The flag is process-wide: raising it here would stop whatever other
    // test of this binary runs at the same time under `cargo test`. The
    // integration tests deliver real signals instead (tests/signals.rs).
    #[test]
    fn an_interruption_names_its_signal_and_exits_128_plus_its_number() {
        for (signal, code) in [
            (Signal::SIGINT, 130),
            (Signal::SIGTERM, 143),
            (Signal::SIGHUP, 129),
        ] {
            let e = Error::Interrupted { signal };
            assert_eq!(e.exit_code(), code);
            assert!(e.to_string().contains(signal.as_str()), "{e}");
            assert_eq!(e.to_json()["signal"], signal.as_str());
        }
        assert_eq!(
            Error::Interrupted {
                signal: Signal::SIGINT
            }
            .to_string(),
            "interrupted by SIGINT (Ctrl-C)"
        );
    }
}

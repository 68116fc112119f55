//! Writing to standard output without panicking.
//!
//! Rust's `println!` panics when the write fails, and two failures are
//! ordinary on a command line: the reader went away (`koko ... | head -1`:
//! EPIPE, since Rust ignores SIGPIPE) and the disk is full (`> /dev/full`:
//! ENOSPC). A panic is exit 101, and a panic in the middle of a script skips
//! its undo. So every line koko prints goes through [`line()`],
//! which returns the failure as an [`Error::Io`] for the caller to handle
//! like any other: a one-shot command undoes its work, a script stops and
//! undoes.
//!
//! Script `print` calls cannot return an error through Rhai's print
//! callback, so a failed write there is remembered ([`failed`]) and the
//! runner's progress callback stops the script at the next operation.
//!
//! Messages to stderr go through [`say!`](crate::say): `eprintln!` panics
//! too when stderr is a closed pipe (`2>&1 | head -1`), and the message
//! that panics is usually the one just before an undo.
//!
//! Numbers a person reads — durations, RTTs — are rounded by one rule,
//! [`round_ms`] / [`fmt_ms`]: three significant digits, never finer than a
//! microsecond, whole milliseconds from 100 ms up (`20.2 ms`, `0.122 ms`,
//! `1503 ms`). A measurement finer than that is noise (scheduling, timer
//! slack), and `20.237548828125 ms` only hides the number that matters.
//! Only text for people is rounded: `--json` output and the values scripts
//! compute with keep every digit.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// `eprintln!` that never panics: a message to stderr, dropped if stderr
/// is gone (`koko run s.rhai 2>&1 | head -1`). `eprintln!` would panic
/// there — before the undo that follows the message.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::progress::clear_line();
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use crate::error::{Error, Result};

/// The first write that failed in a script's print callback, and a flag
/// for it: the runner asks after every operation, so asking must be one
/// atomic load.
static FAILED: Mutex<Option<String>> = Mutex::new(None);
static HAS_FAILED: AtomicBool = AtomicBool::new(false);

/// Write `s` and a newline to stdout, and flush.
pub fn line(s: &str) -> Result<()> {
    crate::progress::clear_line();
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush())
        .map_err(write_error)
}

fn write_error(e: std::io::Error) -> Error {
    Error::io("writing to standard output", e)
}

/// Is this the reader having gone away (EPIPE)? Not worth a message: the
/// user closed the pipe on purpose (`| head`).
pub fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// A script's `print`: write the line, or remember why it could not be.
pub fn script_line(s: &str) {
    if failed().is_some() {
        return;
    }
    if let Err(e) = line(s) {
        *FAILED.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        HAS_FAILED.store(true, Ordering::SeqCst);
    }
}

/// Why a script's output could not be written, if it could not.
pub fn failed() -> Option<String> {
    if !HAS_FAILED.load(Ordering::SeqCst) {
        return None;
    }
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The stdout failure of a script as an error (for the runner).
pub fn check() -> Result<()> {
    match failed() {
        Some(why) => Err(Error::Io {
            what: "the script's output".into(),
            source: std::io::Error::other(why),
        }),
        None => Ok(()),
    }
}

/// How many decimals a number of milliseconds is shown with: three
/// significant digits, at most three decimals (a microsecond), none from
/// 100 ms up.
fn ms_decimals(ms: f64) -> usize {
    match ms.abs() {
        m if m >= 100.0 => 0,
        m if m >= 10.0 => 1,
        m if m >= 1.0 => 2,
        _ => 3,
    }
}

/// `ms` rounded to the precision [`fmt_ms`] shows (for values displayed as
/// numbers, such as the REPL's view of a map).
pub fn round_ms(ms: f64) -> f64 {
    if !ms.is_finite() {
        return ms;
    }
    let scale = 10f64.powi(ms_decimals(ms) as i32);
    (ms * scale).round() / scale
}

/// A number of milliseconds for a person: `20.2`, `0.122`, `1503` (no
/// unit: callers write `{} ms`).
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return ms.to_string();
    }
    format!("{:.*}", ms_decimals(ms), ms)
}

/// A duration in seconds for a person, by the same rule: `3.20 s`, `12.5 s`.
pub fn fmt_secs(d: std::time::Duration) -> String {
    format!("{} s", fmt_ms(d.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_get_three_significant_digits_at_most_microseconds() {
        assert_eq!(fmt_ms(20.237548828125), "20.2");
        assert_eq!(fmt_ms(0.12152800000000001), "0.122");
        assert_eq!(fmt_ms(1.5), "1.50");
        assert_eq!(fmt_ms(1503.4), "1503");
        assert_eq!(fmt_ms(0.0000004), "0.000");
        assert_eq!(fmt_ms(-2.5123), "-2.51");
        assert_eq!(round_ms(0.12152800000000001).to_string(), "0.122");
        assert_eq!(round_ms(20.237548828125).to_string(), "20.2");
        assert_eq!(fmt_secs(std::time::Duration::from_millis(3217)), "3.22 s");
    }
}

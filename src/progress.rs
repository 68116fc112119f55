//! Progress of long work, on a terminal only.
//!
//! Building or tearing down hundreds of namespaces takes seconds, and a long
//! `watch(ms)` is silent by nature; a person at a terminal wants to see that
//! koko is moving. A program reading koko's output does not: the display
//! goes to **stderr**, and only when stderr is a terminal (`isatty`), so
//! pipes, files, CI logs and `2>&1 | tee` stay exactly as they were, and
//! stdout (the report, `--json`) never carries any of it.
//!
//! The display is one line, rewritten in place: `\r`, the text, and "erase
//! to the end of the line" (`ESC [ K`, so a shorter text leaves no tail of
//! the longer one). It is redrawn at most [`MAX_RATE`] times a second (a
//! terminal is slow, and a chain of 1000 links would otherwise write 1000
//! lines in a blink), and erased when the work ends — also when it ends
//! early with an error or a signal ([`Drop`]), so the error message that
//! follows starts on a clean line.
//!
//! Output of the work itself (a hook's `print` during a `watch`, a message
//! on stderr) must not land at the end of the progress text on the same
//! line of the terminal: [`crate::output::line`] and [`say!`](crate::say)
//! erase a drawn line first ([`clear_line`]); the next update draws it
//! again below what was printed.
//!
//! Short work shows nothing: a count below [`MIN_ITEMS`] or a wait shorter
//! than [`MIN_WAIT`] would only flicker.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether a progress line stands on the terminal now (any [`Progress`]).
static ON_SCREEN: AtomicBool = AtomicBool::new(false);

/// Erase the progress line, if one is drawn, so that a line printed next
/// starts at the left margin. Cheap when none is (one atomic load).
pub fn clear_line() {
    if ON_SCREEN.swap(false, Ordering::SeqCst) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}

/// At most this many redraws a second.
pub const MAX_RATE: u32 = 10;

/// Counted work below this many items shows no progress.
pub const MIN_ITEMS: usize = 20;

/// A wait shorter than this shows no progress.
pub const MIN_WAIT: Duration = Duration::from_secs(1);

/// A progress line on stderr; inert when stderr is not a terminal.
pub struct Progress {
    what: String,
    total: usize,
    done: usize,
    enabled: bool,
    last_draw: Option<Instant>,
    drawn: bool,
}

/// Is stderr a terminal? (Asked once per [`Progress`], not per update.)
fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

impl Progress {
    /// Progress of `total` items of work called `what` ("creating
    /// namespaces"): shown as `what: done/total`.
    pub fn counted(what: impl Into<String>, total: usize) -> Progress {
        Progress {
            what: what.into(),
            total,
            done: 0,
            enabled: total >= MIN_ITEMS && on_terminal(),
            last_draw: None,
            drawn: false,
        }
    }

    /// Progress whose text the caller writes each time ([`Progress::show`]),
    /// for work that takes `expected` (a `watch`).
    pub fn timed(expected: Duration) -> Progress {
        Progress {
            what: String::new(),
            total: 0,
            done: 0,
            enabled: expected >= MIN_WAIT && on_terminal(),
            last_draw: None,
            drawn: false,
        }
    }

    /// Whether anything is shown at all (callers may skip formatting).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `n` more items are done.
    pub fn add(&mut self, n: usize) {
        self.set(self.done + n);
    }

    /// `done` items are done.
    pub fn set(&mut self, done: usize) {
        self.done = done.min(self.total);
        if self.due() {
            let text = format!("{}: {}/{}", self.what, self.done, self.total);
            self.draw(&text);
        }
    }

    /// Show the text `line()` makes, if a redraw is due (the closure is
    /// not called otherwise).
    pub fn show(&mut self, line: impl FnOnce() -> String) {
        if self.due() {
            let text = line();
            self.draw(&text);
        }
    }

    /// Enabled, and the last redraw long enough ago (the first one is
    /// immediate).
    fn due(&self) -> bool {
        self.enabled
            && self
                .last_draw
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1) / MAX_RATE)
    }

    fn draw(&mut self, text: &str) {
        self.last_draw = Some(Instant::now());
        self.drawn = true;
        // A failed write (stderr gone) is not worth stopping the work for.
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{text}\x1b[K");
        let _ = err.flush();
        ON_SCREEN.store(true, Ordering::SeqCst);
    }

    /// Erase the line (also done on drop).
    pub fn finish(&mut self) {
        if self.drawn {
            self.drawn = false;
            clear_line();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_work_and_short_waits_show_nothing() {
        assert!(!Progress::counted("x", MIN_ITEMS - 1).enabled());
        assert!(!Progress::timed(MIN_WAIT / 2).enabled());
    }

    #[test]
    fn the_count_never_passes_the_total() {
        let mut p = Progress::counted("x", 3);
        p.add(5);
        assert_eq!(p.done, 3);
    }
}

//! Packet capture without tcpdump: a packet socket inside the link's
//! namespace, read on a thread of its own, written as a pcap file.
//!
//! [`Capture::start`] opens an AF_PACKET socket in the link's namespace
//! (see [`socket`] for how it is set up and what the kernel does when the
//! link goes), creates the output, writes the pcap header ([`pcap`]) and
//! starts a thread that reads packets and appends them as records, with the
//! kernel's own timestamps. It returns at once with a handle; the capture
//! runs while the caller goes on (a script keeps scripting, the command
//! line waits).
//!
//! A capture ends when
//! * it has `count` packets, or `duration` has passed;
//! * its handle asks it to ([`Capture::stop`], or dropping the handle);
//! * a stop signal arrives (SIGINT, SIGTERM, SIGHUP), if
//!   [`Options::stop_on_signal`] (the command line: Ctrl-C ends a capture
//!   normally, as in tcpdump);
//! * the link vanishes: it was deleted, moved away, or its namespace was
//!   deleted (checked every [`CHECK_EVERY`]: the socket itself keeps a
//!   deleted namespace alive, so koko must notice and let go);
//! * the output cannot be written (a full disk; a reader that went away).
//!
//! Whatever ends it, the records written so far are flushed and the file
//! is closed: a capture file is always a complete pcap file. The file is
//! what the user asked for, not state koko changed, so it is not journaled
//! and an undo never removes it; nor is there anything in the kernel to
//! undo (the socket goes with the process).
//!
//! Records are flushed after every burst the socket had queued, so a file
//! (or a pipe into `tcpdump -r -`) shows packets as they come.

pub mod pcap;
pub mod socket;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::ns::Namespace;

use pcap::{PcapWriter, MAX_SNAPLEN};
use socket::{Batch, PacketSocket, Read};

/// How often the loop looks at its stop flag, the signal flag and whether
/// the link and its namespace still exist, when no packet wakes it.
pub const CHECK_EVERY: Duration = Duration::from_millis(50);

/// How long a busy capture lets packets queue up between reads.
const COALESCE: Duration = Duration::from_millis(1);

/// Which packets of the link to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Received by the link.
    In,
    /// Sent by the link.
    Out,
    #[default]
    Both,
}

impl Direction {
    pub fn parse(text: &str) -> Result<Direction> {
        match text {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            "both" => Ok(Direction::Both),
            other => Err(Error::Invalid(format!(
                "capture direction '{other}': expected in, out or both"
            ))),
        }
    }
}

/// What a capture keeps, and when it stops by itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    pub dir: Direction,
    /// Bytes kept of each packet (1..=262144).
    pub snaplen: u32,
    /// End the capture when SIGINT, SIGTERM or SIGHUP arrives. The command
    /// line sets it; scripts do not (a signal stops the script, which then
    /// stops its captures).
    pub stop_on_signal: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            count: None,
            duration: None,
            dir: Direction::Both,
            snaplen: MAX_SNAPLEN,
            stop_on_signal: false,
        }
    }
}

impl Options {
    /// Refuse values that make no sense (exit 2, nothing started).
    pub fn validate(&self) -> Result<()> {
        if self.count == Some(0) {
            return Err(Error::Invalid(
                "capture count must be at least 1 packet".into(),
            ));
        }
        if self.duration == Some(Duration::ZERO) {
            return Err(Error::Invalid(
                "capture duration must be longer than 0".into(),
            ));
        }
        if self.snaplen == 0 || self.snaplen > MAX_SNAPLEN {
            return Err(Error::Invalid(format!(
                "capture snaplen {}: expected 1 to {MAX_SNAPLEN} bytes",
                self.snaplen
            )));
        }
        Ok(())
    }
}

/// Where the pcap stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// A file, created (or truncated) once the socket is ready.
    File(PathBuf),
    /// koko's standard output (`-w -`).
    Stdout,
}

impl Sink {
    /// How messages name it.
    pub fn describe(&self) -> String {
        match self {
            Sink::File(p) => p.display().to_string(),
            Sink::Stdout => "standard output".into(),
        }
    }
}

/// Why a capture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// It had the packets it was asked for.
    Count,
    /// Its duration passed.
    Duration,
    /// Its handle stopped it.
    Stopped,
    /// A stop signal arrived.
    Signal(Signal),
    /// The link was deleted or moved away.
    Vanished,
    /// The link's namespace was deleted (its name is gone).
    NamespaceGone,
    /// The reader of standard output went away (EPIPE).
    OutputClosed,
    /// Reading or writing failed: the cause.
    Failed(String),
}

impl EndReason {
    /// A stable word for scripts and JSON.
    pub fn word(&self) -> &'static str {
        match self {
            EndReason::Count => "count",
            EndReason::Duration => "duration",
            EndReason::Stopped => "stopped",
            EndReason::Signal(_) => "signal",
            EndReason::Vanished | EndReason::NamespaceGone => "vanished",
            EndReason::OutputClosed => "output_closed",
            EndReason::Failed(_) => "failed",
        }
    }

    /// Did the capture end other than as asked (count, duration, a stop,
    /// a signal)?
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            EndReason::Vanished | EndReason::NamespaceGone | EndReason::Failed(_)
        )
    }
}

/// What a capture did, once it ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Packets written.
    pub packets: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// Packets the kernel dropped because koko's receive buffer was full.
    pub dropped: u64,
    /// The file written ("-" for standard output).
    pub file: String,
    /// count, duration, stopped, signal, vanished, output_closed, failed.
    pub reason: &'static str,
    /// The summary as a sentence.
    pub message: String,
    #[serde(skip)]
    pub end: EndReason,
}

/// Counters the capture thread shares with its handle.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    packets: AtomicU64,
}

/// A running (or ended) capture. Dropping it stops it.
pub struct Capture {
    shared: Arc<Shared>,
    ended: mpsc::Receiver<Summary>,
    thread: Option<std::thread::JoinHandle<()>>,
    summary: Option<Summary>,
    label: String,
    file: String,
}

impl Capture {
    /// Start capturing on `link` in `ns` into `sink`. Returns once the
    /// socket is bound and the file's header written; errors (no such
    /// namespace or link, an output that cannot be created) leave no file.
    pub fn start(ns: &Namespace, link: &str, sink: Sink, opts: Options) -> Result<Capture> {
        opts.validate()?;
        let socket = PacketSocket::open(ns, link, opts.dir, opts.snaplen)?;
        let file = match &sink {
            Sink::File(p) => p.display().to_string(),
            Sink::Stdout => "-".into(),
        };
        let writer = open_sink(&sink, opts.snaplen)?;
        let label = format!("{}/{link}", ns.name());
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let job = Job {
            socket,
            writer,
            opts,
            shared: shared.clone(),
            ns: ns.clone(),
            label: label.clone(),
            sink: sink.describe(),
            file: file.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("capture-{link}"))
            .spawn(move || {
                let _ = tx.send(job.run());
            })
            .map_err(|e| Error::io(format!("starting the capture on {label}"), e))?;
        Ok(Capture {
            shared,
            ended: rx,
            thread: Some(thread),
            summary: None,
            label,
            file,
        })
    }

    /// "ns/link", as messages name the capture.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.shared.packets.load(Ordering::SeqCst)
    }

    /// The summary, if the capture has ended (without waiting).
    pub fn ended(&mut self) -> Option<&Summary> {
        self.receive(Some(Duration::ZERO));
        self.summary.as_ref()
    }

    /// Stop the capture (if it still runs), close the file, and return the
    /// summary.
    pub fn stop(&mut self) -> Summary {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.receive(None);
        self.summary.clone().expect("received")
    }

    /// Wait until the capture ends by itself (count, duration, the link
    /// vanishing, a signal if it stops on one).
    pub fn join(&mut self) -> Summary {
        self.receive(None);
        self.summary.clone().expect("received")
    }

    /// [`Capture::join`], but a stop signal to koko ends the wait (the
    /// capture goes on) with [`Error::Interrupted`].
    pub fn wait(&mut self) -> Result<Summary> {
        loop {
            crate::interrupt::check()?;
            if self.receive(Some(Duration::from_millis(20))) {
                return Ok(self.summary.clone().expect("received"));
            }
        }
    }

    /// Take the thread's summary if it has ended within `timeout` (None:
    /// as long as it takes). True once there is one.
    fn receive(&mut self, timeout: Option<Duration>) -> bool {
        if self.summary.is_some() {
            return true;
        }
        let got = match timeout {
            None => self.ended.recv().map_err(|_| true),
            Some(t) => self
                .ended
                .recv_timeout(t)
                .map_err(|e| matches!(e, mpsc::RecvTimeoutError::Disconnected)),
        };
        let summary = match got {
            Ok(summary) => summary,
            Err(false) => return false,
            // The thread ended without a summary: it panicked (a bug).
            Err(true) => {
                let why = "internal error: the capture thread stopped".to_string();
                Summary {
                    packets: self.packets(),
                    bytes: 0,
                    dropped: 0,
                    file: self.file.clone(),
                    reason: "failed",
                    message: format!("capture on {} failed: {why}", self.label),
                    end: EndReason::Failed(why),
                }
            }
        };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.summary = Some(summary);
        true
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.summary.is_none() {
            self.stop();
        }
    }
}

/// Create the output and write the pcap header. A file koko created that
/// cannot be written to the end of its header is removed again.
fn open_sink(sink: &Sink, snaplen: u32) -> Result<PcapWriter<BufWriter<Box<dyn Write + Send>>>> {
    let (out, path): (Box<dyn Write + Send>, Option<&Path>) = match sink {
        Sink::File(path) => {
            // Only a file koko creates is removed again on failure: an
            // existing path may be a device or a FIFO (`-w /dev/full`).
            let existed = std::fs::symlink_metadata(path).is_ok();
            let file = File::create(path).map_err(|e| {
                Error::io(
                    format!("cannot write the capture file {}", path.display()),
                    e,
                )
            })?;
            (Box::new(file), (!existed).then_some(path.as_path()))
        }
        Sink::Stdout => {
            // A copy of fd 1 of its own: the writes bypass Rust's
            // line-buffered stdout.
            let fd = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("writing the capture to standard output", e))?;
            (Box::new(File::from(fd)), None)
        }
    };
    let written = PcapWriter::new(BufWriter::with_capacity(1 << 20, out), snaplen)
        .and_then(|mut w| w.flush().map(|_| w));
    written.map_err(|e| {
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
        Error::io(
            format!("cannot write the capture to {}", sink.describe()),
            e,
        )
    })
}

/// Everything the capture thread owns.
struct Job {
    socket: PacketSocket,
    writer: PcapWriter<BufWriter<Box<dyn Write + Send>>>,
    opts: Options,
    shared: Arc<Shared>,
    ns: Namespace,
    label: String,
    sink: String,
    file: String,
}

impl Job {
    fn run(mut self) -> Summary {
        let deadline = self.opts.duration.map(|d| Instant::now() + d);
        let mut buf = Batch::new(self.opts.snaplen);
        let mut dropped = 0u64;
        let mut last_check = Instant::now();
        let mut link_down = false;
        let end = loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                break EndReason::Stopped;
            }
            if self.opts.stop_on_signal {
                if let Some(signal) = crate::interrupt::pending() {
                    break EndReason::Signal(signal);
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break EndReason::Duration;
            }
            let before = self.writer.packets();
            match self.drain(&mut buf, &mut link_down) {
                Ok(Some(end)) => break end,
                Ok(None) => {}
                Err(end) => break end,
            }
            let busy = self.writer.packets() > before;
            if link_down || last_check.elapsed() >= CHECK_EVERY {
                last_check = Instant::now();
                if let Ok((_, drops)) = self.socket.take_stats() {
                    dropped += drops;
                }
                if !self.ns.exists() {
                    break EndReason::NamespaceGone;
                }
                if !self.socket.link_exists() {
                    break EndReason::Vanished;
                }
                link_down = false;
            }
            if busy {
                // Packets are flowing: let more of them queue up before the
                // next read (what TPACKET_V3's block timeout does for
                // tcpdump). Waking for every packet costs a poll, reads
                // and a write each; 1 ms later the same calls carry a
                // whole batch. The file lags the link by at most that.
                std::thread::sleep(COALESCE);
                continue;
            }
            // Sleep until a packet comes (or the next check is due). A
            // signal cuts the poll short (EINTR): the loop looks at once.
            let mut wait = CHECK_EVERY;
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.socket.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(ms));
        };
        // The last packets the socket had when the end came (a vanished
        // link's queue is still readable); a count stop wants no more.
        let end = if matches!(end, EndReason::Count) {
            end
        } else {
            match self.drain(&mut buf, &mut link_down) {
                Ok(Some(EndReason::Count)) | Ok(None) => end,
                Ok(Some(_)) => end,
                Err(failed) => failed,
            }
        };
        if let Ok((_, drops)) = self.socket.take_stats() {
            dropped += drops;
        }
        let end = match self.writer.flush() {
            Err(e) if !matches!(end, EndReason::Failed(_) | EndReason::OutputClosed) => {
                write_failure(e)
            }
            _ => end,
        };
        // Close the socket now, before the summary: it holds the namespace.
        drop(self.socket);
        let packets = self.writer.packets();
        let bytes = self.writer.bytes();
        let message = message(&self.label, &self.sink, &end, packets, bytes, dropped);
        Summary {
            packets,
            bytes,
            dropped,
            file: self.file,
            reason: end.word(),
            message,
            end,
        }
    }

    /// Read every packet the socket has queued and write it. `Ok(Some)`
    /// when the capture must end (count reached); `Err` when it failed.
    /// Sets `link_down` on ENETDOWN (the caller then checks the link).
    fn drain(
        &mut self,
        batch: &mut Batch,
        link_down: &mut bool,
    ) -> std::result::Result<Option<EndReason>, EndReason> {
        let mut wrote = false;
        let outcome = 'read: loop {
            if self.opts.count.is_some_and(|c| self.writer.packets() >= c) {
                break Ok(Some(EndReason::Count));
            }
            match self.socket.read(batch) {
                Ok(Read::Packets) => {}
                Ok(Read::Empty) => break Ok(None),
                Ok(Read::LinkDown) => {
                    *link_down = true;
                    continue;
                }
                Err(errno) => {
                    break Err(EndReason::Failed(format!(
                        "reading packets: {}",
                        crate::error::explain_errno(errno)
                    )))
                }
            }
            for (frame, data) in batch.packets() {
                if self.opts.count.is_some_and(|c| self.writer.packets() >= c) {
                    break 'read Ok(Some(EndReason::Count));
                }
                // The filter already chose the direction; this guards
                // against a kernel that ignored it.
                let wanted = match self.opts.dir {
                    Direction::Both => true,
                    Direction::In => !frame.outgoing,
                    Direction::Out => frame.outgoing,
                };
                if !wanted {
                    continue;
                }
                let written = match frame.vlan {
                    Some((tpid, tci)) => {
                        let mut tagged = data.to_vec();
                        pcap::insert_vlan_tag(&mut tagged, tpid, tci);
                        self.writer.record(frame.ts, frame.orig_len + 4, &tagged)
                    }
                    None => self.writer.record(frame.ts, frame.orig_len, data),
                };
                if let Err(e) = written {
                    break 'read Err(write_failure(e));
                }
                wrote = true;
            }
            self.shared
                .packets
                .store(self.writer.packets(), Ordering::SeqCst);
        };
        self.shared
            .packets
            .store(self.writer.packets(), Ordering::SeqCst);
        if wrote {
            if let Err(e) = self.writer.flush() {
                return Err(write_failure(e));
            }
        }
        outcome
    }
}

fn write_failure(e: std::io::Error) -> EndReason {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        EndReason::OutputClosed
    } else {
        EndReason::Failed(format!("writing the capture: {e}"))
    }
}

/// The summary sentence.
fn message(
    label: &str,
    sink: &str,
    end: &EndReason,
    packets: u64,
    bytes: u64,
    dropped: u64,
) -> String {
    let drops = if dropped > 0 {
        format!("; the kernel dropped {dropped} (koko's receive buffer was full)")
    } else {
        String::new()
    };
    let plural = if packets == 1 { "" } else { "s" };
    match end {
        EndReason::Vanished => format!(
            "capture on {label} ended: the link vanished after {packets} packet{plural}; \
             {sink} holds them{drops}"
        ),
        EndReason::NamespaceGone => format!(
            "capture on {label} ended: the link vanished (its namespace was deleted) after \
             {packets} packet{plural}; {sink} holds them{drops}"
        ),
        EndReason::Failed(why) => format!(
            "capture on {label} failed after {packets} packet{plural}: {why}; {sink} holds \
             what was captured{drops}"
        ),
        other => {
            let why = match other {
                EndReason::Count => "count reached".to_string(),
                EndReason::Duration => "duration over".to_string(),
                EndReason::Stopped => "stopped".to_string(),
                EndReason::Signal(s) => format!("{} received", crate::interrupt::describe(*s)),
                EndReason::OutputClosed => "the reader of standard output went away".to_string(),
                _ => unreachable!("handled above"),
            };
            format!(
                "capture on {label}: {packets} packet{plural} ({bytes} bytes) written to \
                 {sink}, {dropped} dropped by the kernel ({why})"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_parse_and_unknown_ones_are_usage_errors() {
        assert_eq!(Direction::parse("in").unwrap(), Direction::In);
        assert_eq!(Direction::parse("out").unwrap(), Direction::Out);
        assert_eq!(Direction::parse("both").unwrap(), Direction::Both);
        let e = Direction::parse("sideways").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("in, out or both"), "{e}");
    }

    #[test]
    fn options_out_of_range_are_usage_errors() {
        let bad = [
            Options {
                count: Some(0),
                ..Options::default()
            },
            Options {
                duration: Some(Duration::ZERO),
                ..Options::default()
            },
            Options {
                snaplen: 0,
                ..Options::default()
            },
            Options {
                snaplen: MAX_SNAPLEN + 1,
                ..Options::default()
            },
        ];
        for o in bad {
            assert_eq!(o.validate().unwrap_err().exit_code(), 2, "{o:?}");
        }
        assert!(Options::default().validate().is_ok());
    }

    /// The filter keeps what the direction wants: it tests the skb's
    /// pkttype against PACKET_OUTGOING and returns the snaplen or 0.
    #[test]
    fn the_filter_tests_pkttype_and_returns_the_snaplen() {
        let both = socket::filter(Direction::Both, 96);
        assert_eq!(both.len(), 1);
        assert_eq!((both[0].code, both[0].k), (0x06, 96));
        let out = socket::filter(Direction::Out, 96);
        let inn = socket::filter(Direction::In, 96);
        for f in [&out, &inn] {
            assert_eq!(
                f[0].k,
                (-0x1000i32 + 4) as u32,
                "SKF_AD_OFF + SKF_AD_PKTTYPE"
            );
            assert_eq!((f[1].code, f[1].k), (0x15, 4));
            assert_eq!((f[2].code, f[2].k), (0x06, 96));
            assert_eq!((f[3].code, f[3].k), (0x06, 0));
        }
        // out: outgoing jumps to "keep"; in: outgoing jumps to "drop".
        assert_eq!((out[1].jt, out[1].jf), (0, 1));
        assert_eq!((inn[1].jt, inn[1].jf), (1, 0));
    }

    #[test]
    fn the_vanished_message_says_what_the_file_holds() {
        let m = message("a/link1", "out.pcap", &EndReason::Vanished, 5, 500, 0);
        assert_eq!(
            m,
            "capture on a/link1 ended: the link vanished after 5 packets; out.pcap holds them"
        );
        let m = message("a/link1", "x", &EndReason::Count, 1, 60, 2);
        assert!(m.contains("1 packet (60 bytes)"), "{m}");
        assert!(m.contains("2 dropped by the kernel"), "{m}");
    }
}

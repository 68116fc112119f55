//! `koko capture TARGET DEV -w FILE [-c N] [--duration S] [--dir in|out|both]
//! [--snaplen N]`: packet capture into a pcap file, without tcpdump.
//!
//! The words become a [`crate::capture::Options`] and a sink; the capture
//! itself is [`crate::capture::Capture`], the same one scripts start with
//! `link.capture(...)`. This module parses, waits and prints.

use std::time::Duration;

use crate::capture::{Capture, Direction, Options, Sink};
use crate::error::{Error, Result};
use crate::net::Session;
use crate::ns::{self, NsSpec};

pub const HELP: &str = "\
koko capture: record a link's packets into a pcap file (no tcpdump needed)

Usage:
  koko capture TARGET DEV -w FILE [-c N] [--duration S] [--dir in|out|both] [--snaplen N]

TARGET:
  docker NAME      a Docker (or Podman) container, by name or id
  cri ID           a CRI (containerd, CRI-O) container or pod sandbox
  netns PATH       a namespace file, e.g. /run/netns/blue or /proc/42/ns/net
  ipnetns NAME     an `ip netns` namespace (/run/netns/NAME)
  pid PID          the network namespace of process PID
  host | current   koko's own namespace
DEV: the link to capture on, in that namespace.

Options:
  -w FILE          the pcap file to write (created or truncated; relative to the
                   current directory); `-w -` writes the pcap stream to standard
                   output (`koko capture ... -w - | tcpdump -r -`), and the summary
                   goes to standard error
  -c N             stop after N packets
  --duration S     stop after S seconds (e.g. 10, 2.5, 500ms, 1m)
  --dir D          in (received by DEV), out (sent by DEV) or both (default)
  --snaplen N      keep at most N bytes of each packet (1-262144, default 262144);
                   the file still records each packet's full length

The file is a classic pcap file (Ethernet, nanosecond timestamps taken by the
kernel) that tcpdump -r, tshark and Wireshark open. An 802.1Q tag the kernel
took out of a frame is put back. The summary says how many packets were
written and how many the kernel dropped (koko's receive buffer full).

Ending: the capture runs until -c or --duration is reached, or until Ctrl-C
(SIGINT), SIGTERM or SIGHUP. Like tcpdump, a signal ends the capture normally:
the file is completed, the summary printed, and the exit status is 0. If the
link (or its namespace) vanishes during the capture, the file is closed with
what was captured, the message says so, and the exit status is 1.

Exit status: 0 done; 1 the capture could not start or ended early (no such
namespace or link, an output that cannot be written, the link vanished);
2 the request is wrong (a bad -c, --duration, --dir or --snaplen).
";

/// What the command line asked for.
#[derive(Debug)]
struct Request {
    target: NsSpec,
    dev: String,
    sink: Sink,
    opts: Options,
}

pub fn main(args: &[String]) -> i32 {
    if matches!(args.first().map(String::as_str), Some("-h" | "--help")) {
        return super::finish(
            Ok(super::Output {
                lines: vec![HELP.trim_end().into()],
                json: serde_json::json!({"ok": true, "help": HELP}),
            }),
            false,
        );
    }
    match parse(args).and_then(run) {
        // An early end (the link vanished) was reported with the summary.
        Ok(ended_early) => i32::from(ended_early),
        Err(e) => super::finish_printed(Err(e), false),
    }
}

fn usage(what: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("koko capture: {what} (see koko capture -h)"))
}

/// Split the words into options and positional words (TARGET, DEV).
fn parse(args: &[String]) -> Result<Request> {
    let mut words = Vec::new();
    let mut file = None;
    let mut opts = Options {
        stop_on_signal: true,
        ..Options::default()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // `--name=value` and `--name value` alike.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |flag: &str| -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| usage(format!("{flag} needs a value"))),
            }
        };
        match name {
            "-w" => file = Some(value("-w")?),
            "-c" => opts.count = Some(count(&value("-c")?)?),
            "--duration" => opts.duration = Some(duration(&value("--duration")?)?),
            "--dir" => {
                opts.dir = Direction::parse(&value("--dir")?).map_err(usage)?;
            }
            "--snaplen" => {
                let v = value("--snaplen")?;
                opts.snaplen = v
                    .parse()
                    .map_err(|_| usage(format!("--snaplen '{v}' is not a number of bytes")))?;
            }
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(usage(format!("unknown option '{flag}'")))
            }
            _ => words.push(arg.clone()),
        }
    }
    opts.validate().map_err(usage)?;
    let (target, rest) = crate::plan::koro::parse_target(&words).map_err(usage)?;
    let dev = match rest {
        [dev] => dev.clone(),
        [] => return Err(usage("missing DEV (the link to capture on)")),
        [_, extra, ..] => return Err(usage(format!("unexpected word '{extra}' after DEV"))),
    };
    let file = file.ok_or_else(|| usage("missing -w FILE (or -w - for standard output)"))?;
    let sink = if file == "-" {
        Sink::Stdout
    } else if file.is_empty() {
        return Err(usage("-w needs a file name"));
    } else {
        Sink::File(file.into())
    };
    Ok(Request {
        target,
        dev,
        sink,
        opts,
    })
}

fn count(text: &str) -> Result<u64> {
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(usage(format!(
            "-c '{text}' is not a number of packets (1 or more)"
        ))),
    }
}

/// Seconds (`10`, `2.5`), or a number with a unit: `500ms`, `2s`, `1m`.
fn duration(text: &str) -> Result<Duration> {
    let bad = || {
        usage(format!(
            "--duration '{text}' is not a duration (seconds, or e.g. 500ms, 2s, 1m)"
        ))
    };
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = value * scale;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Capture until the end; true if it ended early (reported already).
fn run(request: Request) -> Result<bool> {
    ns::check_privileges()?;
    crate::interrupt::install();
    let ns = {
        let session = Session::new()?;
        session.resolve(&request.target)?
    };
    let to_stdout = request.sink == Sink::Stdout;
    let sink_name = request.sink.describe();
    let mut capture = Capture::start(&ns, &request.dev, request.sink, request.opts)?;
    crate::say!(
        "koko: capturing on {} into {sink_name} (Ctrl-C ends it)",
        capture.label()
    );
    let summary = capture.join();
    if summary.end.is_failure() {
        crate::say!("koko: {}", summary.message);
        return Ok(true);
    }
    if to_stdout {
        crate::say!("koko: {}", summary.message);
    } else {
        crate::output::line(&summary.message)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_full_command_line_parses() {
        let r = parse(&words(
            "ipnetns a link1 -w out.pcap -c 5 --duration 2.5 --dir in --snaplen 96",
        ))
        .unwrap();
        assert_eq!(r.target, NsSpec::Netns("a".into()));
        assert_eq!(r.dev, "link1");
        assert_eq!(r.sink, Sink::File("out.pcap".into()));
        assert_eq!(r.opts.count, Some(5));
        assert_eq!(r.opts.duration, Some(Duration::from_millis(2500)));
        assert_eq!(r.opts.dir, Direction::In);
        assert_eq!(r.opts.snaplen, 96);
        assert!(r.opts.stop_on_signal);
        let r = parse(&words("-w - --dir=out pid 42 eth0")).unwrap();
        assert_eq!(r.target, NsSpec::Pid(42));
        assert_eq!(r.sink, Sink::Stdout);
        assert_eq!(r.opts.dir, Direction::Out);
    }

    #[test]
    fn durations_take_seconds_or_a_unit() {
        assert_eq!(duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(duration("1m").unwrap(), Duration::from_secs(60));
        for bad in ["0", "-1", "x", "1h", "", "inf", "NaN"] {
            assert_eq!(duration(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn bad_words_are_usage_errors() {
        for line in [
            "ipnetns a link1",
            "ipnetns a -w x",
            "ipnetns a link1 extra -w x",
            "ipnetns a link1 -w x -c 0",
            "ipnetns a link1 -w x -c ten",
            "ipnetns a link1 -w x --dir up",
            "ipnetns a link1 -w x --snaplen 0",
            "ipnetns a link1 -w x --snaplen 300000",
            "ipnetns a link1 -w x --bogus",
            "ipnetns a link1 -w",
            "nowhere a link1 -w x",
        ] {
            let e = parse(&words(line)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{line}: {e}");
        }
    }
}

//! Probes and traffic from inside a namespace, without external binaries:
//! `ns.ping(ip)`, `ns.tcp(ip, port, ms)`, `ns.serve_http(port, body)`,
//! `ns.http_get(url)`, `ns.exec([cmd, args...])`. Results are the
//! library's own types ([`probe::PingResult`], [`probe::ExecResult`]) as
//! maps.
//!
//! `exec` runs the program in its own process group, killed with it on a
//! stop signal, on too much output (the run's `max_exec_output`) and when
//! koko dies (see [`probe::exec_capped`]).
//!
//! Each probe checks for Ctrl-C after it returns: the signal cuts its
//! `poll` short, and that must stop the script rather than look like a
//! timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::{Array, Engine, Map};
use serde::Deserialize;

use super::api::{fail, invalid, ms, parse_ip, stop_if_interrupted, to_map, NsRef, R};
use super::options::from_map;
use super::SharedWorld;
use crate::journal::Undo;
use crate::ns::Namespace;
use crate::probe;

/// The options of `ns.ping(ip, #{...})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PingOpts {
    count: u32,
    timeout_ms: u64,
}

impl Default for PingOpts {
    fn default() -> Self {
        PingOpts {
            count: 1,
            timeout_ms: 1000,
        }
    }
}

/// `count` echo requests, one at a time, so Ctrl-C stops a long series
/// within one timeout instead of after all of them.
fn ping(ns: &Namespace, ip: IpAddr, opts: &PingOpts) -> R<Map> {
    let timeout = Duration::from_millis(opts.timeout_ms);
    let mut total = probe::PingResult {
        ok: false,
        sent: 0,
        received: 0,
        rtt_ms: None,
    };
    for _ in 0..opts.count.max(1) {
        stop_if_interrupted()?;
        let r = probe::ping(ns, ip, 1, timeout).map_err(fail)?;
        stop_if_interrupted()?;
        total.sent += r.sent;
        total.received += r.received;
        if r.rtt_ms.is_some() {
            total.rtt_ms = r.rtt_ms;
        }
    }
    total.ok = total.received > 0;
    Ok(to_map(&total))
}

fn http_get(ns: &Namespace, url: &str, timeout: Duration) -> R<String> {
    let r = probe::http_get(ns, url, timeout);
    stop_if_interrupted()?;
    r.map_err(fail)
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    // Durations and RTTs for a person: the results keep every digit (a
    // script computes with them), printing rounds them (crate::output).
    func!(
        engine,
        "fmt_ms",
        /// a number of milliseconds as text for people: 3 significant digits, at most µs, whole ms from 100 up ("20.2", "0.122", "1503")
        |ms: f64| -> String { crate::output::fmt_ms(ms) }
    );
    func!(
        engine,
        "fmt_ms",
        /// a whole number of milliseconds as text ("1503")
        |ms: i64| -> String { ms.to_string() }
    );
    func!(
        engine,
        "fmt_ms",
        /// no measurement (a ping that got no reply has rtt_ms ()): "-"
        |none: ()| -> String {
            let () = none;
            "-".to_string()
        }
    );
    sys!(
        engine,
        "ping",
        /// one ICMP echo from inside the namespace (1 s timeout): #{ok, rtt_ms, sent, received}
        |ns: &mut NsRef, ip: &str| -> R<Map> {
            ping(&ns.0, parse_ip(ip)?, &PingOpts::default())
        }
    );
    sys!(
        engine,
        "ping",
        /// ICMP echoes with options #{count, timeout_ms}: #{ok, rtt_ms, sent, received}
        |ns: &mut NsRef, ip: &str, opts: Map| -> R<Map> {
            let ip = parse_ip(ip)?;
            ping(&ns.0, ip, &from_map("ping", &opts)?)
        }
    );
    sys!(
        engine,
        "tcp",
        /// true if a TCP connection to ip:port opens within timeout_ms
        |ns: &mut NsRef, ip: &str, port: i64, timeout_ms: i64| -> R<bool> {
            let to = SocketAddr::new(parse_ip(ip)?, super::api::port(port)?);
            let r = probe::tcp_check(&ns.0, to, ms(timeout_ms, "tcp timeout")?);
            stop_if_interrupted()?;
            r.map_err(fail)
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "serve_http",
        /// a tiny HTTP responder in the namespace, answering body, until cleanup
        move |ns: &mut NsRef, port: i64, body: &str| -> R<()> {
            let p = super::api::port(port)?;
            let server = probe::serve_http(&ns.0, p, body).map_err(fail)?;
            w.borrow_mut().journal.record(
                format!("HTTP responder on port {p} in {}", ns.0),
                Undo::StopServer(Arc::new(Mutex::new(server))),
            );
            Ok(())
        }
    );
    sys!(
        engine,
        "http_get",
        /// GET from inside the namespace (2 s timeout): the body; error if unreachable
        |ns: &mut NsRef, url: &str| -> R<String> {
            http_get(&ns.0, url, Duration::from_millis(2000))
        }
    );
    sys!(
        engine,
        "http_get",
        /// GET from inside the namespace within timeout_ms: the body; error if unreachable
        |ns: &mut NsRef, url: &str, timeout_ms: i64| -> R<String> {
            http_get(&ns.0, url, ms(timeout_ms, "http_get timeout")?)
        }
    );
    sys!(
        engine,
        "exec",
        /// run a host program inside the namespace: #{code, out, err}
        |ns: &mut NsRef, argv: Array| -> R<Map> {
            let argv: Vec<String> = rhai::serde::from_dynamic(&argv.into())
                .map_err(|_| invalid("exec(): the command must be an array of strings"))?;
            let cap = super::EXEC_OUTPUT_CAP.load(std::sync::atomic::Ordering::SeqCst);
            let r = probe::exec_capped(&ns.0, &argv, cap);
            stop_if_interrupted()?;
            r.map(|r| to_map(&r)).map_err(fail)
        }
    );
}

//! Keep-wired benchmark (issue 19): the seed's service chain with four
//! Docker containers, kept wired by `koko run --keep-wired
//! scripts/keep-wired.rhai`; the firewall container is restarted 20 times
//! (`docker restart -t 0`). For each restart it measures, from the
//! engine's start event (its `timeNano`):
//!
//! * repair: until koko's repair is done (koko's own repair line, which
//!   times it from the same event);
//! * traffic: until a TCP connection from the client container to the
//!   webserver's HTTP port opens again (a prober in the client's namespace
//!   tries every millisecond): the end of the first successful attempt
//!   begun after the start event that the next 10 attempts confirm.
//!   (The old namespace of the firewall outlives its process for a moment
//!   — the kernel tears it down in a worker — and forwards traffic until
//!   then: a success through it is not a recovery.)
//!
//! and the outage the prober saw (first failure to recovery).
//!
//! Prints p50/p95 of both (goal: repair p50 <= 50 ms) and a JSON line. Needs
//! the Docker engine and the test image of tests/setup/docker.sh. Runs
//! inside a private network + mount namespace of its own; the containers
//! are removed at the end (also when it fails).
//!
//!     cargo bench --bench rewire [-- RESTARTS]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod sandbox;

const IMAGE: &str = "koko-test/busybox:1";

fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// The containers, removed on drop (also on panic).
struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "-f", c])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
}

/// One connection attempt: begun, ended (ms since the epoch), succeeded.
type Attempt = (f64, f64, bool);

/// A thread in `ns_path` that tries a TCP connection to `to` every ms and
/// records each attempt.
fn prober(ns_path: String, to: SocketAddr, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<Attempt>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let file = std::fs::File::open(&ns_path).unwrap();
    std::thread::spawn(move || {
        // SAFETY: plain syscall on a valid fd, on this thread alone.
        assert_eq!(unsafe { setns(file.as_raw_fd(), 0x4000_0000) }, 0);
        while !stop.load(Ordering::SeqCst) {
            let begun = epoch_ms();
            let ok = TcpStream::connect_timeout(&to, Duration::from_millis(20)).is_ok();
            sink.lock().unwrap().push((begun, epoch_ms(), ok));
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    log
}

fn main() {
    let restarts = sandbox::rounds_arg(20);
    sandbox::enter(&[restarts.to_string()]);
    let tag = std::process::id();
    let names: Vec<String> = ["client", "firewall", "router", "web"]
        .iter()
        .map(|r| format!("koko-bench-rw-{r}-{tag}"))
        .collect();
    let _guard = Containers(names.clone());
    for n in &names {
        docker(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            n,
            IMAGE,
            "sleep",
            "100000",
        ]);
    }
    let (client, fw, web) = (&names[0], &names[1], &names[3]);

    let koko = env!("CARGO_BIN_EXE_koko");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/keep-wired.rhai");
    let mut child = Command::new(koko)
        .args(["run", "--keep-wired", script, "--"])
        .args(&names)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let sink = lines.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
    }
    let wait_line = |pred: &dyn Fn(&str) -> bool, what: &str| -> String {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_line(&|l| l.contains("keeping the lab wired"), "the lab");
    docker(&[
        "exec",
        web,
        "sh",
        "-c",
        "echo pickle-nginx > /tmp/index.html && httpd -p 80 -h /tmp",
    ]);
    let client_pid = docker(&["inspect", "-f", "{{.State.Pid}}", client]);
    let stop = Arc::new(AtomicBool::new(false));
    let probes = prober(
        format!("/proc/{client_pid}/ns/net"),
        "10.0.3.2:80".parse().unwrap(),
        stop.clone(),
    );

    let (mut repair, mut traffic, mut outage) = (Vec::new(), Vec::new(), Vec::new());
    let fw_line = format!("koko: rewired container '{fw}'");
    for i in 0..restarts {
        // Traffic flows before each restart.
        let before = epoch_ms();
        let end = Instant::now() + Duration::from_secs(30);
        while !probes.lock().unwrap().iter().any(|a| a.2 && a.0 >= before) {
            assert!(Instant::now() < end, "restart {i}: no traffic before it");
            std::thread::sleep(Duration::from_millis(2));
        }
        let t0 = epoch_ms();
        let since = format!("{:.3}", t0 / 1000.0);
        docker(&["restart", "-t", "0", fw]);
        let until = format!("{:.3}", epoch_ms() / 1000.0 + 1.0);
        let start_ns: f64 = docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            &format!("container={fw}"),
            "--filter",
            "event=start",
            "--format",
            "{{.TimeNano}}",
        ])
        .lines()
        .last()
        .expect("a start event")
        .parse()
        .unwrap();
        let start_ms = start_ns / 1e6;
        // The (i+1)-th repair line of the firewall: koko's own time.
        let end = Instant::now() + Duration::from_secs(30);
        let nth = loop {
            let found: Vec<String> = lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with(&fw_line))
                .cloned()
                .collect();
            if found.len() > i {
                break found[i].clone();
            }
            assert!(Instant::now() < end, "restart {i}: no repair line");
            std::thread::sleep(Duration::from_millis(2));
        };
        let ms: f64 = nth
            .rsplit_once(" in ")
            .and_then(|(_, t)| t.split_whitespace().next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no time in {nth:?}"));
        repair.push(ms);
        // Recovery: the first success begun after the start event that the
        // next 10 attempts confirm (a lone failure later, an attempt that
        // timed out on these busy cores, is not the outage).
        let end = Instant::now() + Duration::from_secs(30);
        let (back, out) = loop {
            std::thread::sleep(Duration::from_millis(50));
            let log: Vec<Attempt> = probes.lock().unwrap().clone();
            let first_fail = log
                .iter()
                .filter(|a| a.0 >= t0 && !a.2)
                .map(|a| a.0)
                .fold(f64::MAX, f64::min);
            let recovered = (0..log.len()).find(|&k| {
                log[k].0 >= start_ms && log.len() > k + 10 && log[k..=k + 10].iter().all(|a| a.2)
            });
            if let Some(k) = recovered {
                let out = if first_fail == f64::MAX {
                    0.0
                } else {
                    log[k].1 - first_fail
                };
                break (log[k].1, out);
            }
            assert!(Instant::now() < end, "restart {i}: traffic never came back");
        };
        if std::env::var_os("KOKO_BENCH_VERBOSE").is_some() {
            let log: Vec<Attempt> = probes.lock().unwrap().clone();
            let mut fails: Vec<String> = log
                .iter()
                .filter(|a| a.0 >= t0 && !a.2)
                .map(|a| format!("{:.0}", a.0 - start_ms))
                .collect();
            let first = fails.first().cloned();
            fails.drain(..fails.len().saturating_sub(3));
            fails.insert(0, format!("{first:?}.."));
            eprintln!(
                "restart {i}: repair {ms:.1} ms, traffic {:.1} ms, failures at {:?} ms from start",
                back - start_ms,
                fails
            );
        }
        traffic.push(back - start_ms);
        outage.push(out);
    }
    stop.store(true, Ordering::SeqCst);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "koko ends with SIGTERM");

    println!(
        "keep-wired: {restarts} restarts of the firewall container (docker restart -t 0) in client -> firewall -> router -> webserver"
    );
    println!(
        "{:<52} {:>8} {:>8}   goal",
        "from the engine's start event", "p50 ms", "p95 ms"
    );
    for (name, v, goal) in [
        ("to koko's repair done", &mut repair, "p50 <= 50"),
        (
            "to TCP client -> webserver:80 flowing again",
            &mut traffic,
            "",
        ),
        ("outage seen by a 1 ms TCP prober", &mut outage, ""),
    ] {
        println!(
            "{name:<52} {:>8.1} {:>8.1}   {goal}",
            pct(v, 50.0),
            pct(v, 95.0)
        );
    }
    println!(
        "{{\"bench\":\"rewire\",\"restarts\":{restarts},\"repair_p50\":{:.1},\"repair_p95\":{:.1},\"traffic_p50\":{:.1},\"traffic_p95\":{:.1},\"outage_p50\":{:.1},\"outage_p95\":{:.1}}}",
        pct(&mut repair, 50.0),
        pct(&mut repair, 95.0),
        pct(&mut traffic, 50.0),
        pct(&mut traffic, 95.0),
        pct(&mut outage, 50.0),
        pct(&mut outage, 95.0)
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

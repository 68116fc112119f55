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
//!   tries every millisecond; the first attempt *begun* after the start
//!   event that succeeds, at its end).
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

/// A thread in `ns_path` that tries a TCP connection to `to` every ms and
/// records (start, end, ok) of each attempt, in ms since the epoch.
fn prober(ns_path: String, to: SocketAddr, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<(f64, f64)>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let file = std::fs::File::open(&ns_path).unwrap();
    std::thread::spawn(move || {
        // SAFETY: plain syscall on a valid fd, on this thread alone.
        assert_eq!(unsafe { setns(file.as_raw_fd(), 0x4000_0000) }, 0);
        while !stop.load(Ordering::SeqCst) {
            let begun = epoch_ms();
            if TcpStream::connect_timeout(&to, Duration::from_millis(20)).is_ok() {
                sink.lock().unwrap().push((begun, epoch_ms()));
            }
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

    let (mut repair, mut traffic) = (Vec::new(), Vec::new());
    for i in 0..restarts {
        // Traffic flows before each restart.
        let end = Instant::now() + Duration::from_secs(30);
        let before = epoch_ms();
        while !probes.lock().unwrap().iter().any(|(b, _)| *b >= before) {
            assert!(Instant::now() < end, "restart {i}: no traffic before it");
            std::thread::sleep(Duration::from_millis(2));
        }
        let since = format!("{:.3}", epoch_ms() / 1000.0);
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
        let n = i + 1;
        // The n-th repair line of the firewall.
        let end = Instant::now() + Duration::from_secs(30);
        let nth = loop {
            let found: Vec<String> = lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with(&format!("koko: rewired container '{fw}'")))
                .cloned()
                .collect();
            if found.len() >= n {
                break found[n - 1].clone();
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
        let end = Instant::now() + Duration::from_secs(30);
        let back = loop {
            let first = probes
                .lock()
                .unwrap()
                .iter()
                .filter(|(b, _)| *b >= start_ms)
                .map(|(_, e)| *e)
                .next();
            if let Some(t) = first {
                break t;
            }
            assert!(Instant::now() < end, "restart {i}: traffic never came back");
            std::thread::sleep(Duration::from_millis(2));
        };
        traffic.push(back - start_ms);
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
    ] {
        println!(
            "{name:<52} {:>8.1} {:>8.1}   {goal}",
            pct(v, 50.0),
            pct(v, 95.0)
        );
    }
    println!(
        "{{\"bench\":\"rewire\",\"restarts\":{restarts},\"repair_p50\":{:.1},\"repair_p95\":{:.1},\"traffic_p50\":{:.1},\"traffic_p95\":{:.1}}}",
        pct(&mut repair, 50.0),
        pct(&mut repair, 95.0),
        pct(&mut traffic, 50.0),
        pct(&mut traffic, 95.0)
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

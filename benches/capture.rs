//! Packet capture: `koko capture` against `tcpdump -w` on the same link, the
//! same burst, interleaved round by round.
//!
//! Two namespaces joined by a veth (IPv6 off, static neighbours: nothing but
//! the burst crosses); each round, for each capturer in turn: start it on
//! `a`'s end for outgoing packets with an 8 MiB buffer, wait until it says it
//! listens, send N small UDP datagrams from `a` as fast as one thread can,
//! stop it with SIGINT, and count the records in its file. Figures: the
//! share of the burst each one kept, and the CPU time (user + system, from
//! wait4) it spent per packet kept; the ratio koko / tcpdump.
//!
//!     cargo bench --bench capture [-- ROUNDS] [--packets N]

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Instant;

mod sandbox;
use sandbox::sh;

const DIR: &str = "/tmp/koko-capture-bench";

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Records in a pcap file (either byte order of the usual magics).
fn records(path: &str) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let le = match &bytes[..4] {
        [0x4d, 0x3c, 0xb2, 0xa1] | [0xd4, 0xc3, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0x3c, 0x4d] | [0xa1, 0xb2, 0xc3, 0xd4] => false,
        other => panic!("{path}: not a pcap file ({other:?})"),
    };
    let (mut at, mut n) = (24, 0);
    while at + 16 <= bytes.len() {
        let f: [u8; 4] = bytes[at + 8..at + 12].try_into().unwrap();
        let incl = if le {
            u32::from_le_bytes(f)
        } else {
            u32::from_be_bytes(f)
        };
        at += 16 + incl as usize;
        n += 1;
    }
    n
}

/// Send `n` datagrams from namespace `a` to 10.8.0.2:9 (a socket is bound
/// there, so no ICMP error comes back).
fn burst(n: usize) -> f64 {
    let ns = std::fs::File::open("/run/netns/a").unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        let payload = [0x6bu8; 64];
        let t = Instant::now();
        let mut sent = 0;
        while sent < n {
            // A full tx path answers ENOBUFS: try again.
            if s.send_to(&payload, "10.8.0.2:9").is_ok() {
                sent += 1;
            }
        }
        t.elapsed().as_secs_f64()
    })
    .join()
    .unwrap()
}

/// Run one capturer (`argv`, which prints `ready` on stderr once it
/// listens) over a burst of `n`: (packets kept, CPU seconds).
// The child is reaped by wait4, which also returns its CPU time.
#[allow(clippy::zombie_processes)]
fn one(argv: &[&str], ready: &str, file: &str, n: usize) -> (u64, f64) {
    let _ = std::fs::remove_file(file);
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains(ready) {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "{argv:?} ended early"
        );
    }
    burst(n);
    let pid = child.id() as i32;
    // Let the capturer drain its buffer before it is stopped: wait until
    // its file stops growing.
    let mut last = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if size == last && size > 0 {
            break;
        }
        last = size;
    }
    // SAFETY: signalling and reaping our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    unsafe {
        libc::kill(pid, libc::SIGINT);
        libc::wait4(pid, &mut status, 0, &mut usage);
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (records(file), cpu(usage.ru_utime) + cpu(usage.ru_stime))
}

fn main() {
    let rounds = sandbox::rounds_arg(5);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--packets")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(200_000);
    sandbox::enter(&args);
    if Command::new("tcpdump").arg("--version").output().is_err() {
        eprintln!(
            "tcpdump is not installed (tests/setup/tools.sh installs it): nothing to compare"
        );
        std::process::exit(1);
    }
    sh(&format!(
        "mkdir -p {DIR} && mount -t tmpfs koko-capture-bench {DIR} && \
         for n in a b; do ip netns add $n; \
           ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; done && \
         ip link add la netns a address 02:00:00:00:00:01 type veth peer lb netns b address 02:00:00:00:00:02 && \
         ip -n a addr add 10.8.0.1/24 dev la && ip -n b addr add 10.8.0.2/24 dev lb && \
         ip -n a neigh add 10.8.0.2 lladdr 02:00:00:00:00:02 dev la nud permanent && \
         ip -n a link set la up && ip -n b link set lb up && \
         until ip -n a link show la | grep -q 'state UP'; do sleep 0.05; done"
    ));
    // A sink in b, so the burst draws no ICMP errors.
    let ns_b = std::fs::File::open("/run/netns/b").unwrap();
    let sink = std::thread::spawn(move || {
        nix::sched::setns(&ns_b, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        UdpSocket::bind("10.8.0.2:9").unwrap()
    })
    .join()
    .unwrap();
    let _keep = sink.as_raw_fd();

    let koko = env!("CARGO_BIN_EXE_koko");
    let kfile = format!("{DIR}/koko.pcap");
    let tfile = format!("{DIR}/tcpdump.pcap");
    let (mut kk, mut tk, mut kc, mut tc) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (kept, cpu) = one(
            &[
                koko, "capture", "ipnetns", "a", "la", "-w", &kfile, "--dir", "out",
            ],
            "capturing on",
            &kfile,
            n,
        );
        kk.push(kept as f64 / n as f64);
        kc.push(cpu * 1e9 / kept.max(1) as f64);
        let (kept, cpu) = one(
            &[
                "ip", "netns", "exec", "a", "tcpdump", "-i", "la", "-w", &tfile, "-Q", "out", "-n",
                "-B", "8192", "-s", "262144",
            ],
            "listening on",
            &tfile,
            n,
        );
        tk.push(kept as f64 / n as f64);
        tc.push(cpu * 1e9 / kept.max(1) as f64);
    }
    let (kk, tk, kc, tc) = (
        median(&mut kk),
        median(&mut tk),
        median(&mut kc),
        median(&mut tc),
    );
    println!("capture of a burst of {n} 106-byte frames, median of {rounds} rounds:");
    println!("| capturer | kept | CPU ns per packet kept |");
    println!("| --- | --- | --- |");
    println!("| koko capture | {:.1} % | {kc:.0} |", kk * 100.0);
    println!("| tcpdump -w | {:.1} % | {tc:.0} |", tk * 100.0);
    println!("CPU per packet, koko / tcpdump: {:.2}", kc / tc);
    println!(
        "{}",
        serde_json::json!({"bench": "capture", "packets": n, "rounds": rounds,
            "koko_kept": kk, "tcpdump_kept": tk, "koko_cpu_ns": kc, "tcpdump_cpu_ns": tc,
            "cpu_ratio": kc / tc})
    );
}

//! Packet capture (issue 18): `koko capture` and `link.capture(...)` write
//! pcap files from a packet socket inside the link's namespace.
//!
//! Every test builds two namespaces joined by a veth (`a`/l1 10.0.0.1,
//! `b`/l2 10.0.0.2) with IPv6 off and static neighbour entries, so the
//! only packets on the link are the ones the test sends (no ARP, no
//! IPv6 router or listener chatter): counts and orders are then exact.
//! Results are checked by parsing the pcap file here (global header,
//! records, Ethernet / IPv4 / TCP / UDP) and by `tcpdump -r`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::script::{tmp_dir, write_script};
use crate::support::{koko_bin, wait_until, Run, Running, Sandbox};

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

// ------------------------------------------------------------ the pcap file

/// One record of a pcap file.
#[derive(Debug, Clone)]
struct Record {
    ts_sec: u32,
    ts_nsec: u32,
    incl_len: u32,
    orig_len: u32,
    data: Vec<u8>,
}

/// A whole pcap file: its header's snaplen and linktype, and the records.
#[derive(Debug)]
struct Pcap {
    snaplen: u32,
    linktype: u32,
    records: Vec<Record>,
}

/// Parse a classic pcap file (either magic, little-endian as koko writes
/// it). Errors say what is wrong, so a test can wait for a file that is
/// still being written.
fn parse_pcap(bytes: &[u8]) -> Result<Pcap, String> {
    let u32_at = |at: usize| -> Result<u32, String> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| format!("file ends at {} inside a field at {at}", bytes.len()))
    };
    let magic = u32_at(0)?;
    let nanos = match magic {
        0xa1b2_3c4d => true,
        0xa1b2_c3d4 => false,
        other => return Err(format!("bad magic {other:#x}")),
    };
    assert!(nanos, "koko writes nanosecond pcap files");
    let version = (
        u16::from_le_bytes([bytes[4], bytes[5]]),
        u16::from_le_bytes([bytes[6], bytes[7]]),
    );
    if version != (2, 4) {
        return Err(format!("bad version {version:?}"));
    }
    let snaplen = u32_at(16)?;
    let linktype = u32_at(20)?;
    let mut records = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let incl_len = u32_at(at + 8)?;
        let start = at + 16;
        let data = bytes
            .get(start..start + incl_len as usize)
            .ok_or_else(|| format!("record at {at} is cut short"))?
            .to_vec();
        records.push(Record {
            ts_sec: u32_at(at)?,
            ts_nsec: u32_at(at + 4)?,
            incl_len,
            orig_len: u32_at(at + 12)?,
            data,
        });
        at = start + incl_len as usize;
    }
    Ok(Pcap {
        snaplen,
        linktype,
        records,
    })
}

fn read_pcap(path: &Path) -> Pcap {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_pcap(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the test cares about in one Ethernet frame.
#[derive(Debug, Clone, PartialEq)]
struct Packet {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// 6 TCP, 17 UDP.
    proto: u8,
    sport: u16,
    dport: u16,
    /// TCP flags (0 for UDP).
    flags: u8,
    payload: Vec<u8>,
    /// 14 + the IPv4 total length: the frame's length on the wire.
    wire_len: usize,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// Decode Ethernet / IPv4 / TCP or UDP (None for anything else). The
/// payload is what the frame holds of it (less if the record was cut).
fn decode(frame: &[u8]) -> Option<Packet> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let proto = ip[9];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = ip.get(ihl..)?;
    let end = total.min(ip.len());
    let (flags, header) = match proto {
        6 => (l4[13], usize::from(l4[12] >> 4) * 4),
        17 => (0, 8),
        _ => return None,
    };
    Some(Packet {
        src,
        dst,
        proto,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        flags,
        payload: ip.get(ihl + header..end).unwrap_or_default().to_vec(),
        wire_len: 14 + total,
    })
}

fn packets(pcap: &Pcap) -> Vec<Packet> {
    pcap.records
        .iter()
        .map(|r| decode(&r.data).unwrap_or_else(|| panic!("not IPv4 TCP/UDP: {r:?}")))
        .collect()
}

/// Every record: lengths consistent, timestamps never going back among
/// the frames of one sender.
///
/// Per sender, not across the whole file: the kernel stamps a received
/// frame when it enters the receive backlog (net.core.netdev_tstamp_prequeue)
/// and an outgoing one when it is handed to the taps, so a frame sent on
/// another CPU in that window can be queued to the socket in between with
/// a stamp a few microseconds later — tcpdump's files show the same.
#[track_caller]
fn assert_records_sane(pcap: &Pcap) {
    assert_eq!(pcap.linktype, 1, "LINKTYPE_ETHERNET");
    let mut last = std::collections::HashMap::new();
    for r in &pcap.records {
        assert_eq!(r.incl_len as usize, r.data.len());
        assert!(r.incl_len <= pcap.snaplen, "{r:?}");
        assert!(r.orig_len >= r.incl_len, "{r:?}");
        assert!(r.ts_nsec < 1_000_000_000, "{r:?}");
        let ts = (r.ts_sec, r.ts_nsec);
        let sender = r.data.get(6..12).map(<[u8]>::to_vec);
        let before = last.insert(sender, ts).unwrap_or_default();
        assert!(ts >= before, "timestamps go back: {before:?} then {ts:?}");
    }
    // Kernel timestamps of this very day, not zeros.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    if let Some(first) = pcap.records.first() {
        assert!(now.abs_diff(first.ts_sec) < 3600, "{first:?} vs {now}");
    }
}

// ------------------------------------------------------------ the link

/// Two namespaces `a` and `b` with a veth l1 (10.0.0.1) -- l2 (10.0.0.2):
/// IPv6 off before the links exist, neighbours static, so nothing but the
/// test's own traffic crosses.
fn two_namespaces() -> Sandbox {
    let sb = Sandbox::new();
    sb.sh(
        "for n in a b; do ip netns add $n; \
           ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; \
         done; \
         ip link add l1 netns a address 02:00:00:00:00:01 type veth peer l2 netns b address 02:00:00:00:00:02; \
         ip -n a addr add 10.0.0.1/24 dev l1; ip -n b addr add 10.0.0.2/24 dev l2; \
         ip -n a neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev l1 nud permanent; \
         ip -n b neigh add 10.0.0.1 lladdr 02:00:00:00:00:01 dev l2 nud permanent; \
         ip -n a link set l1 up; ip -n b link set l2 up",
    );
    // Until the kernel's link watcher has seen both carriers, a link's
    // qdisc is noop and drops what is sent (it is never handed to a tap):
    // wait for operstate UP, which the watcher sets at the same time.
    for (ns, link) in [("a", "l1"), ("b", "l2")] {
        wait_until(
            &format!("{link} in {ns} is operationally up"),
            Duration::from_secs(10),
            || {
                sb.link(Some(ns), link)
                    .is_some_and(|l| l["operstate"] == "UP")
            },
        );
    }
    sb
}

/// Run `f` on a thread that entered the network namespace at `ns`.
fn in_ns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(ns).unwrap_or_else(|e| panic!("open {}: {e}", ns.display()));
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .unwrap()
}

/// `n` UDP datagrams of `payload` from `from` to `to` (a socket listens
/// there, in `to_ns`, so no ICMP error comes back); returns once every one
/// has arrived.
fn udp(from: &Path, to_ns: &Path, to: SocketAddr, payload: &[u8], n: usize) {
    let receiver = in_ns(to_ns, move || UdpSocket::bind(to).unwrap());
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let payload = payload.to_vec();
    in_ns(from, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..n {
            s.send_to(&payload, to).unwrap();
        }
    });
    let mut buf = vec![0u8; 65536];
    for _ in 0..n {
        receiver.recv(&mut buf).expect("the datagram arrives");
    }
}

/// A TCP exchange: a listener on 10.0.0.2:port in `b`, the client in `a`
/// sends `hello`, the server answers `reply`; both close. Returns the
/// client's port.
fn tcp_exchange(sb: &Sandbox, port: u16, hello: &'static [u8], reply: &'static [u8]) -> u16 {
    let addr = SocketAddr::from((B_IP, port));
    let listener = in_ns(&sb.netns_path("b"), move || {
        TcpListener::bind(addr).unwrap()
    });
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; hello.len()];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(buf, hello);
        conn.write_all(reply).unwrap();
    });
    let mut client = in_ns(&sb.netns_path("a"), move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap()
    });
    let client_port = client.local_addr().unwrap().port();
    client.write_all(hello).unwrap();
    let mut got = Vec::new();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, reply);
    server.join().unwrap();
    client_port
}

// ------------------------------------------------------------ running koko

/// `koko capture ipnetns a l1 -w FILE EXTRA...` running in the sandbox.
fn capture_l1(sb: &Sandbox, file: &Path, extra: &[&str]) -> Running {
    let mut args = vec![
        "capture",
        "ipnetns",
        "a",
        "l1",
        "-w",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Running::koko(sb, &args, &[])
}

/// Wait until koko says the socket is bound and the file started.
fn wait_capturing(koko: &Running) {
    koko.err
        .wait_for_text("koko: capturing on", Duration::from_secs(10));
}

/// Wait for a capture's exit: (code, stdout, stderr).
fn capture_exit(koko: Running) -> (i32, String, String) {
    koko.exit("koko capture", Duration::from_secs(10))
}

/// A fresh file path for a capture (the sandbox shares this machine's
/// files; only /run/netns is private).
fn pcap_path(tag: &str) -> PathBuf {
    tmp_dir(tag).join("out.pcap")
}

fn tcpdump(file: &Path) -> Run {
    tcpdump_with(file, &[])
}

fn tcpdump_with(file: &Path, extra: &[&str]) -> Run {
    let mut cmd = std::process::Command::new("tcpdump");
    cmd.args(["-r"]).arg(file).arg("-nn").args(extra);
    Run::of(
        &mut cmd,
        format!("tcpdump -r {} -nn {}", file.display(), extra.join(" ")),
    )
}

/// The packet count in a summary line ("... 7 packets (...) written ...",
/// "... after 7 packets; ...").
fn count_in(summary: &str) -> usize {
    let words: Vec<&str> = summary.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.starts_with("packet"))
        .unwrap_or_else(|| panic!("no packet count in {summary:?}"));
    words[at - 1]
        .parse()
        .unwrap_or_else(|_| panic!("no packet count in {summary:?}"))
}

// ------------------------------------------------------------ tests

/// A known TCP exchange, captured on the client's link and ended with
/// Ctrl-C: the file holds the handshake, both payloads and the close, with
/// the right addresses, ports, lengths and rising kernel timestamps; SIGINT
/// is a normal end (exit 0, summary on stdout); tcpdump reads the file and
/// names the same flow.
#[test]
fn capture_records_a_tcp_exchange_and_sigint_ends_it_cleanly() {
    let sb = two_namespaces();
    let file = pcap_path("tcp");
    let koko = capture_l1(&sb, &file, &[]);
    wait_capturing(&koko);
    let port = tcp_exchange(&sb, 8080, b"hello koko", b"hello client");
    // Records are flushed as they come: the file shows the close before
    // the capture ends.
    wait_until(
        "the file holds the server's FIN",
        Duration::from_secs(10),
        || {
            parse_pcap(&std::fs::read(&file).unwrap()).is_ok_and(|p| {
                p.records
                    .iter()
                    .filter_map(|r| decode(&r.data))
                    .any(|p| p.src == B_IP && p.flags & FIN != 0)
            })
        },
    );
    koko.signal("INT");
    let (code, out, err) = capture_exit(koko);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("SIGINT"), "{out}");

    let pcap = read_pcap(&file);
    assert_eq!(pcap.snaplen, 262_144);
    assert_records_sane(&pcap);
    let pkts = packets(&pcap);
    assert_eq!(count_in(&out), pkts.len(), "{out}");
    for (p, r) in pkts.iter().zip(&pcap.records) {
        assert_eq!(p.wire_len, r.orig_len as usize, "{p:?}");
        assert_eq!(r.orig_len, r.incl_len, "nothing cut at the default snaplen");
        let client_to_server = (p.src, p.sport, p.dst, p.dport) == (A_IP, port, B_IP, 8080);
        let server_to_client = (p.src, p.sport, p.dst, p.dport) == (B_IP, 8080, A_IP, port);
        assert!(
            client_to_server || server_to_client,
            "a stray packet: {p:?}"
        );
        assert_eq!(p.proto, 6);
    }
    // The handshake, in order, first.
    assert_eq!(pkts[0].src, A_IP);
    assert_eq!(pkts[0].flags & (SYN | ACK), SYN, "SYN: {:?}", pkts[0]);
    assert_eq!(pkts[1].src, B_IP);
    assert_eq!(
        pkts[1].flags & (SYN | ACK),
        SYN | ACK,
        "SYN-ACK: {:?}",
        pkts[1]
    );
    assert_eq!(pkts[2].src, A_IP);
    assert_eq!(pkts[2].flags & (SYN | ACK), ACK, "ACK: {:?}", pkts[2]);
    // Both payloads, each in its direction, byte for byte.
    let sent: Vec<u8> = pkts
        .iter()
        .filter(|p| p.src == A_IP)
        .flat_map(|p| p.payload.clone())
        .collect();
    let answered: Vec<u8> = pkts
        .iter()
        .filter(|p| p.src == B_IP)
        .flat_map(|p| p.payload.clone())
        .collect();
    assert_eq!(sent, b"hello koko");
    assert_eq!(answered, b"hello client");
    assert!(pkts.iter().any(|p| p.src == A_IP && p.flags & FIN != 0));

    // tcpdump opens the file and sees the same flow.
    let dump = tcpdump(&file);
    dump.ok();
    let flow = format!("10.0.0.1.{port} > 10.0.0.2.8080: Flags [S]");
    dump.stdout_has(&flow)
        .stdout_has(&format!("10.0.0.2.8080 > 10.0.0.1.{port}: Flags [S.]"))
        .stdout_has("length 10")
        .stdout_has("length 12");
    assert_eq!(dump.stdout.lines().count(), pkts.len(), "{}", dump.stdout);
}

/// `-c 3` on a fresh connection stops after exactly the handshake, by
/// itself, exit 0.
#[test]
fn capture_count_stops_after_exactly_the_handshake() {
    let sb = two_namespaces();
    let file = pcap_path("count");
    let koko = capture_l1(&sb, &file, &["-c", "3"]);
    wait_capturing(&koko);
    let port = tcp_exchange(&sb, 8081, b"ping", b"pong");
    let (code, out, err) = capture_exit(koko);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("3 packets") && out.contains("count reached"),
        "{out}"
    );
    let pcap = read_pcap(&file);
    assert_records_sane(&pcap);
    let flags: Vec<(Ipv4Addr, u16, u8)> = packets(&pcap)
        .iter()
        .map(|p| (p.src, p.sport, p.flags & (SYN | ACK)))
        .collect();
    assert_eq!(
        flags,
        vec![
            (A_IP, port, SYN),
            (B_IP, 8081, SYN | ACK),
            (A_IP, port, ACK)
        ]
    );
}

/// `--dir in` keeps only what l1 received, `--dir out` only what it sent:
/// two captures at once, traffic both ways.
#[test]
fn capture_dir_in_and_out_keep_one_direction_each() {
    let sb = two_namespaces();
    let (fin, fout) = (pcap_path("dir-in"), pcap_path("dir-out"));
    let cap_in = capture_l1(&sb, &fin, &["--dir", "in", "-c", "4"]);
    let cap_out = capture_l1(&sb, &fout, &["--dir=out", "-c", "5"]);
    wait_capturing(&cap_in);
    wait_capturing(&cap_out);
    let (a, b) = (sb.netns_path("a"), sb.netns_path("b"));
    udp(&a, &b, SocketAddr::from((B_IP, 5001)), b"from a", 5);
    udp(&b, &a, SocketAddr::from((A_IP, 5002)), b"from b", 4);
    for (cap, file, from, to, port, n, payload) in [
        (cap_in, &fin, B_IP, A_IP, 5002, 4, &b"from b"[..]),
        (cap_out, &fout, A_IP, B_IP, 5001, 5, &b"from a"[..]),
    ] {
        let (code, out, err) = capture_exit(cap);
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        let pcap = read_pcap(file);
        assert_records_sane(&pcap);
        let pkts = packets(&pcap);
        assert_eq!(pkts.len(), n, "{pkts:?}");
        for p in pkts {
            assert_eq!(
                (p.src, p.dst, p.dport, p.proto),
                (from, to, port, 17),
                "{p:?}"
            );
            assert_eq!(p.payload, payload);
        }
    }
}

/// `--snaplen 64`: each record holds 64 bytes, and says the frame was
/// 1042 bytes on the wire; tcpdump reads the cut frames.
#[test]
fn capture_snaplen_cuts_records_and_keeps_the_wire_length() {
    let sb = two_namespaces();
    let file = pcap_path("snaplen");
    let koko = capture_l1(&sb, &file, &["--snaplen", "64", "-c", "3", "--dir", "out"]);
    wait_capturing(&koko);
    let (a, b) = (sb.netns_path("a"), sb.netns_path("b"));
    udp(&a, &b, SocketAddr::from((B_IP, 5003)), &[0x6b; 1000], 3);
    let (code, out, err) = capture_exit(koko);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let pcap = read_pcap(&file);
    assert_eq!(pcap.snaplen, 64);
    assert_records_sane(&pcap);
    assert_eq!(pcap.records.len(), 3);
    for r in &pcap.records {
        // 14 Ethernet + 20 IPv4 + 8 UDP + 1000.
        assert_eq!((r.incl_len, r.orig_len), (64, 1042), "{r:?}");
        let p = decode(&r.data).unwrap();
        assert_eq!((p.src, p.dport, p.wire_len), (A_IP, 5003, 1042));
        assert!(p.payload.iter().all(|&b| b == 0x6b));
    }
    tcpdump(&file)
        .ok()
        .stdout_has("10.0.0.1")
        .stdout_has("UDP, length 1000");
}

/// `-w -` streams the pcap to stdout: `koko capture ... -w - | tcpdump -r -`
/// shows the handshake; the summary goes to stderr.
#[test]
fn capture_to_stdout_pipes_into_tcpdump() {
    let sb = two_namespaces();
    let mut cmd = sb.command("sh");
    cmd.arg("-c").arg(format!(
        "{} capture ipnetns a l1 -w - -c 3 | tcpdump -r - -nn",
        koko_bin().display()
    ));
    let pipe = Running::spawn(cmd);
    wait_capturing(&pipe);
    let port = tcp_exchange(&sb, 8082, b"ping", b"pong");
    let (code, out, err) = capture_exit(pipe);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains(&format!("10.0.0.1.{port} > 10.0.0.2.8082: Flags [S]")),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(err.contains("koko: capture on a/l1: 3 packets"), "{err}");
}

/// The link vanishes during the capture (its peer's namespace is deleted,
/// taking the veth pair with it): koko closes the file with what it had,
/// says so, and exits 1; the file parses and holds the packets before.
#[test]
fn capture_ends_cleanly_when_the_link_vanishes() {
    let sb = two_namespaces();
    let file = pcap_path("vanish");
    let koko = capture_l1(&sb, &file, &[]);
    wait_capturing(&koko);
    let (a, b) = (sb.netns_path("a"), sb.netns_path("b"));
    udp(&a, &b, SocketAddr::from((B_IP, 5004)), b"before", 3);
    sb.sh("ip netns del b");
    let (code, out, err) = capture_exit(koko);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let message = format!(
        "capture on a/l1 ended: the link vanished after 3 packets; {} holds them",
        file.display()
    );
    assert!(err.contains(&message), "{err}");
    let pcap = read_pcap(&file);
    assert_records_sane(&pcap);
    let pkts = packets(&pcap);
    assert_eq!(pkts.len(), 3);
    assert!(pkts.iter().all(|p| p.payload == b"before" && p.src == A_IP));
    tcpdump(&file).ok().stdout_has("10.0.0.1");
}

/// The capture's own namespace is deleted: the socket would keep it
/// alive, so koko must notice the name is gone, end the capture and let
/// go — the namespace then dies, and the veth end in `b` goes with it.
#[test]
fn capture_lets_go_of_a_deleted_namespace() {
    let sb = two_namespaces();
    let file = pcap_path("ns-gone");
    let koko = capture_l1(&sb, &file, &[]);
    wait_capturing(&koko);
    let (a, b) = (sb.netns_path("a"), sb.netns_path("b"));
    udp(&b, &a, SocketAddr::from((A_IP, 5005)), b"to a", 2);
    sb.sh("ip netns del a");
    let (code, out, err) = capture_exit(koko);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains(
            "capture on a/l1 ended: the link vanished (its namespace was deleted) after 2 packets"
        ),
        "{err}"
    );
    assert_eq!(read_pcap(&file).records.len(), 2);
    wait_until(
        "l2 in b vanished with a's namespace",
        crate::support::TEARDOWN,
        || sb.link(Some("b"), "l2").is_none(),
    );
}

/// A link going down and up again is not the link vanishing (the kernel
/// reports ENETDOWN for both): the capture goes on and records what
/// crosses after the flap.
#[test]
fn capture_survives_the_link_going_down_and_up() {
    let sb = two_namespaces();
    let file = pcap_path("flap");
    let koko = capture_l1(&sb, &file, &["-c", "4", "--dir", "out"]);
    wait_capturing(&koko);
    let (a, b) = (sb.netns_path("a"), sb.netns_path("b"));
    udp(&a, &b, SocketAddr::from((B_IP, 5006)), b"first", 2);
    sb.sh("ip -n a link set l1 down && ip -n a link set l1 up");
    // The route comes back with the link; the static neighbour with it.
    wait_until("l1 is up again", Duration::from_secs(10), || {
        sb.link(Some("a"), "l1")
            .is_some_and(|l| l["operstate"] == "UP")
    });
    sb.sh("ip -n a neigh replace 10.0.0.2 lladdr 02:00:00:00:00:02 dev l1 nud permanent");
    udp(&a, &b, SocketAddr::from((B_IP, 5006)), b"second", 2);
    let (code, out, err) = capture_exit(koko);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let payloads: Vec<Vec<u8>> = packets(&read_pcap(&file))
        .into_iter()
        .map(|p| p.payload)
        .collect();
    assert_eq!(
        payloads,
        vec![
            b"first".to_vec(),
            b"first".to_vec(),
            b"second".to_vec(),
            b"second".to_vec()
        ]
    );
}

/// A frame with an 802.1Q tag arrives on l1: the kernel takes the tag out
/// into the packet's metadata, and koko puts it back, as it was on the
/// wire (and tcpdump shows the VLAN).
#[test]
fn capture_puts_back_the_vlan_tag_the_kernel_took_out() {
    let sb = two_namespaces();
    let file = pcap_path("vlan");
    let koko = capture_l1(&sb, &file, &["-c", "1", "--dir", "in"]);
    wait_capturing(&koko);
    // A tagged frame (VLAN 100, priority 1) sent raw on l2 in b.
    let mut frame = vec![
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0x20, 0x64, 0x88, 0xb5,
    ];
    frame.extend_from_slice(b"koko vlan test, padded to a minimum frame");
    let sent = frame.clone();
    in_ns(&sb.netns_path("b"), move || send_raw("l2", &sent));
    let (code, out, err) = capture_exit(koko);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let pcap = read_pcap(&file);
    assert_records_sane(&pcap);
    assert_eq!(pcap.records.len(), 1);
    let r = &pcap.records[0];
    assert_eq!(r.data, frame, "the frame as sent, tag included");
    assert_eq!(r.orig_len as usize, frame.len());
    tcpdump_with(&file, &["-e"]).ok().stdout_has("vlan 100");
}

/// Send one raw Ethernet frame out of `link` (this thread's namespace).
fn send_raw(link: &str, frame: &[u8]) {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let name = std::ffi::CString::new(link).unwrap();
    // SAFETY: sockaddr_ll is plain data; the pointers are valid for the call.
    unsafe {
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        addr.sll_halen = 6;
        let n = libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(
            n,
            frame.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

/// `link.capture(...)` runs while the script makes traffic: `.packets`
/// grows, `.stop()` returns a summary that matches the file; a capture the
/// script leaves running is stopped (file complete) when it ends; a
/// relative path is relative to the current directory.
#[test]
fn script_capture_runs_while_the_script_goes_on() {
    let sb = Sandbox::new();
    let dir = tmp_dir("script-capture");
    let script = write_script(
        "script-capture",
        "cap.rhai",
        r#"
        let a = netns("a");  let b = netns("b");
        let l = veth(a, "l1", b, "l2", #{a_addrs: ["10.0.0.1/24"], b_addrs: ["10.0.0.2/24"]});
        b.serve_http(80, "captured body");
        let cap = l.capture("main.pcap", #{dir: "both"});
        let left = l.capture("left.pcap", #{dir: "out", snaplen: 128});
        if !cap.running { throw "not running"; }
        let before = cap.packets;
        print(`body: ${a.http_get("http://10.0.0.2/")}`);
        // The capture thread writes what the socket has: wait for it.
        let t = now_ms();
        while cap.packets < 6 && now_ms() - t < 10000 { sleep(5); }
        let mid = cap.packets;
        if mid <= before { throw `packets did not grow: ${before} then ${mid}`; }
        let s = cap.stop();
        if cap.running { throw "still running after stop()"; }
        print(`summary: ${s.packets} ${s.reason} ${s.file} ${s.dropped}`);
        print(`after stop: ${cap.packets}`);
        "#,
    );
    // nsenter -m starts koko at the sandbox's root: cd there first.
    let mut cmd = sb.command("sh");
    cmd.arg("-c").arg(format!(
        "cd {} && exec {} run {}",
        dir.display(),
        koko_bin().display(),
        script.display()
    ));
    let run = Run::of(&mut cmd, "koko run cap.rhai");
    run.ok().stdout_has("body: captured body");
    let summary = run.line("summary: ");
    let words: Vec<&str> = summary.split_whitespace().collect();
    let (n, reason, file, dropped) = (words[1], words[2], words[3], words[4]);
    assert_eq!(
        (reason, file, dropped),
        ("stopped", "main.pcap", "0"),
        "{summary}"
    );
    assert_eq!(run.line("after stop: "), format!("after stop: {n}"));

    let pcap = read_pcap(&dir.join("main.pcap"));
    assert_records_sane(&pcap);
    assert_eq!(
        pcap.records.len().to_string(),
        n,
        "the summary's count is the file's"
    );
    let all: Vec<u8> = pcap
        .records
        .iter()
        .filter_map(|r| decode(&r.data))
        .filter(|p| p.proto == 6)
        .flat_map(|p| p.payload)
        .collect();
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("GET / HTTP"), "{text}");
    assert!(text.contains("captured body"), "{text}");

    // The capture left running was stopped at the end, its file complete.
    run.stderr_has("stopped at the end of the script: capture on a/l1");
    let left = read_pcap(&dir.join("left.pcap"));
    assert_eq!(left.snaplen, 128);
    assert_records_sane(&left);
    let sent = left
        .records
        .iter()
        .filter_map(|r| decode(&r.data))
        .collect::<Vec<_>>();
    assert!(
        sent.iter().any(|p| p.src == A_IP && p.dport == 80),
        "the GET's packets: {sent:?}"
    );
    assert!(sent.iter().all(|p| p.src == A_IP), "dir out: {sent:?}");
}

/// Bad input: an output that cannot be written (exit 1, the path and the
/// cause named, no file left), an unknown link or namespace (exit 1, no
/// file), bad -c / --duration / --dir / --snaplen (exit 2).
#[test]
fn capture_bad_inputs_fail_and_leave_no_file() {
    let sb = two_namespaces();
    let dir = tmp_dir("capture-bad");
    let missing_dir = dir.join("no-such-dir/out.pcap");
    sb.koko(&[
        "capture",
        "ipnetns",
        "a",
        "l1",
        "-w",
        missing_dir.to_str().unwrap(),
    ])
    .fails(
        1,
        &format!("cannot write the capture file {}", missing_dir.display()),
    )
    .stderr_has("No such file or directory");
    assert!(!missing_dir.exists());
    sb.koko(&["capture", "ipnetns", "a", "l1", "-w", dir.to_str().unwrap()])
        .fails(1, "Is a directory");
    // A device that refuses the header: the error says why, and the
    // device is not removed (only a file koko created would be).
    sb.koko(&["capture", "ipnetns", "a", "l1", "-w", "/dev/full"])
        .fails(1, "cannot write the capture to /dev/full")
        .stderr_has("No space left on device");
    assert!(Path::new("/dev/full").exists());

    let file = dir.join("x.pcap");
    let f = file.to_str().unwrap();
    sb.koko(&["capture", "ipnetns", "a", "nope", "-w", f])
        .fails(1, "no link 'nope' in netns 'a'");
    sb.koko(&["capture", "ipnetns", "ghost", "l1", "-w", f])
        .fails(1, "netns 'ghost'");
    for (args, needle) in [
        (vec!["-c", "0"], "-c '0'"),
        (vec!["-c", "many"], "-c 'many'"),
        (vec!["--duration", "soon"], "--duration 'soon'"),
        (vec!["--duration", "0"], "--duration '0'"),
        (vec!["--dir", "sideways"], "in, out or both"),
        (vec!["--snaplen", "0"], "snaplen 0"),
        (vec!["--bogus"], "unknown option '--bogus'"),
    ] {
        let mut line = vec!["capture", "ipnetns", "a", "l1", "-w", f];
        line.extend(args);
        sb.koko(&line).fails(2, needle);
    }
    sb.koko(&["capture", "ipnetns", "a", "l1"])
        .fails(2, "missing -w FILE");
    assert!(!file.exists(), "a refused capture left {}", file.display());
    // `koko capture -h` is its own help.
    sb.koko(&["capture", "-h"]).ok().stdout_has(
        "koko capture TARGET DEV -w FILE [-c N] [--duration S] [--dir in|out|both] [--snaplen N]",
    );
}

/// `--duration` ends the capture by itself, with what crossed meanwhile.
#[test]
fn capture_duration_ends_it_by_itself() {
    let sb = two_namespaces();
    let file = pcap_path("duration");
    let run = sb.koko(&[
        "capture",
        "ipnetns",
        "a",
        "l1",
        "-w",
        file.to_str().unwrap(),
        "--duration",
        "300ms",
    ]);
    run.ok().stdout_has("0 packets").stdout_has("duration over");
    let pcap = read_pcap(&file);
    assert!(pcap.records.is_empty());
}

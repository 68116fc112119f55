//! Traffic between namespaces the test created: a thread of this test
//! process enters a namespace (setns on that thread alone) and opens a
//! socket there. Nothing is sent anywhere else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use super::poll;

/// Run `f` on a new thread that has entered the namespace at `ns_path`.
fn in_netns<T: Send + 'static>(
    ns_path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let file =
        std::fs::File::open(ns_path).unwrap_or_else(|e| panic!("open {}: {e}", ns_path.display()));
    std::thread::spawn(move || {
        // SAFETY: plain syscall on a valid fd; this thread is ours alone.
        let rc = unsafe { libc_setns(file.as_raw_fd(), 0x4000_0000) };
        assert_eq!(rc, 0, "setns failed");
        f()
    })
}

extern "C" {
    #[link_name = "setns"]
    fn libc_setns(fd: i32, nstype: i32) -> i32;
}

/// Prove TCP traffic flows: a listener in `server_ns` on `addr`, a client in
/// `client_ns` connects, sends a line and reads the echo.
pub fn tcp_roundtrip(
    server_ns: &Path,
    client_ns: &Path,
    addr: SocketAddr,
) -> Result<String, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = in_netns(server_ns, move || -> Result<(), String> {
        // A new IPv6 address is "tentative" until duplicate address
        // detection finishes (~1-2 s); binding to it fails until then.
        let listener = poll(Duration::from_secs(5), || {
            TcpListener::bind(addr).map_err(|e| e.to_string())
        })
        .map_err(|e| format!("bind {addr}: {e}"))?;
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
        conn.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        Ok(())
    });
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        return Err(match server.join() {
            Ok(Err(e)) => e,
            _ => "server did not start".to_string(),
        });
    }
    let client = in_netns(client_ns, move || -> Result<String, String> {
        // IPv6 addresses may still be tentative (DAD) for a moment.
        let mut s = poll(Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())
        })
        .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"hello koko").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    let reply = client.join().unwrap();
    if reply.is_err() {
        // Unblock the server's accept so its thread can end.
        drop(server);
        return reply;
    }
    server.join().unwrap()?;
    reply
}

/// Assert that TCP flows from `client_ns` to a listener on `addr` (like
/// "10.0.0.2:8080" or "[2001:db8::2]:8080") in `server_ns`: the line sent
/// comes back.
#[track_caller]
pub fn assert_tcp(server_ns: impl AsRef<Path>, client_ns: impl AsRef<Path>, addr: &str) {
    let parsed: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
    let reply = tcp_roundtrip(server_ns.as_ref(), client_ns.as_ref(), parsed);
    assert_eq!(reply.as_deref(), Ok("hello koko"), "TCP to {addr}");
}

/// Prove that no TCP connection to `addr` opens from `client_ns` within 1 s.
pub fn tcp_blocked(client_ns: &Path, addr: SocketAddr) -> bool {
    in_netns(client_ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
    })
    .join()
    .unwrap()
}

/// Send `n` UDP datagrams from namespace `from` to `to` in `to_ns`, and
/// receive every one there (a socket listens, so no ICMP comes back): when
/// this returns, the datagrams have crossed the link.
pub fn send_udp(from: &Path, to_ns: &Path, to: SocketAddr, n: usize) {
    let receiver = in_netns(to_ns, move || UdpSocket::bind(to).unwrap())
        .join()
        .unwrap();
    in_netns(from, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..n {
            s.send_to(b"koko mirror test", to).unwrap();
        }
    })
    .join()
    .unwrap();
    // Generous: under software emulation (the stock-kernel lane) delivery
    // lags far behind native.
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..n {
        receiver.recv(&mut buf).expect("the datagram arrives");
    }
}

/// The number of [`udp_stream`]'s priming datagrams.
const PRIME: u32 = u32::MAX;

/// What a numbered UDP stream delivered (see [`udp_stream`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub sent: u32,
    /// Datagrams that arrived at least once.
    pub distinct: u32,
    /// Every arrival, duplicates included.
    pub total: u32,
    /// Arrivals numbered below one that arrived before them.
    pub out_of_order: u32,
}

/// Send `n` numbered UDP datagrams of `len` bytes (at least 4) from
/// namespace `from` to `to` (a socket listens there, in `to_ns`), `gap`
/// apart, and count what arrived. For loss, duplication and reordering
/// measurements: the pacing and a large receive buffer keep the receiver
/// from dropping anything itself.
pub fn udp_stream(
    from: &Path,
    to_ns: &Path,
    to: SocketAddr,
    n: u32,
    gap: Duration,
    len: usize,
) -> Delivery {
    let receiver = in_netns(to_ns, move || {
        let s = UdpSocket::bind(to).unwrap();
        // Room for the whole stream: it is read only once it was sent.
        // SO_RCVBUFFORCE (33, root) is not capped by net.core.rmem_max,
        // which is small on a stock kernel (SO_RCVBUF, 8, is the fallback).
        let size: libc_int = 64 << 20;
        for option in [33, 8] {
            // SAFETY: setsockopt with a pointer to an int and its size.
            let rc = unsafe {
                libc_setsockopt(
                    s.as_raw_fd(),
                    1,
                    option,
                    &size as *const libc_int as *const u8,
                    4,
                )
            };
            if rc == 0 {
                break;
            }
        }
        s
    })
    .join()
    .unwrap();
    let len = len.max(4);
    // A socket belongs to the namespace it was made in, whichever thread
    // uses it later.
    let sender = in_netns(from, || UdpSocket::bind("0.0.0.0:0").unwrap())
        .join()
        .unwrap();
    // Prime the path first: until the sender's neighbour entry for `to` is
    // resolved, the kernel holds only a few packets and drops the rest —
    // and on an impaired link the ARP exchange itself may be lost. Up to a
    // second of "prime" datagrams (numbered u32::MAX, not counted), until
    // one arrives (never, through a blackhole).
    let mut buf = vec![0u8; len.max(16)];
    receiver
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    for _ in 0..20 {
        sender.send_to(&PRIME.to_be_bytes(), to).unwrap();
        if matches!(receiver.recv(&mut buf), Ok(4) if buf[..4] == PRIME.to_be_bytes()) {
            break;
        }
    }
    let mut packet = vec![0x6bu8; len];
    for i in 0..n {
        packet[..4].copy_from_slice(&i.to_be_bytes());
        sender.send_to(&packet, to).unwrap();
        std::thread::sleep(gap);
    }
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    let (mut total, mut out_of_order, mut highest) = (0, 0, None::<u32>);
    while let Ok(got) = receiver.recv(&mut buf) {
        if got < 4 {
            continue;
        }
        let i = u32::from_be_bytes(buf[..4].try_into().unwrap());
        if i == PRIME {
            continue;
        }
        total += 1;
        seen.insert(i);
        if highest.is_some_and(|h| i < h) {
            out_of_order += 1;
        }
        highest = highest.max(Some(i));
    }
    Delivery {
        sent: n,
        distinct: seen.len() as u32,
        total,
        out_of_order,
    }
}

/// [`udp_stream`] of small datagrams: how many distinct ones arrived.
pub fn udp_delivered(from: &Path, to_ns: &Path, to: SocketAddr, n: u32, gap: Duration) -> u32 {
    udp_stream(from, to_ns, to, n, gap, 4).distinct
}

/// Round-trip times (ms) of `n` UDP echoes from `client_ns` to an echo
/// socket on `to` in `server_ns`, one at a time; a lost one counts as
/// nothing (1 s timeout).
pub fn udp_rtts(client_ns: &Path, server_ns: &Path, to: SocketAddr, n: u32) -> Vec<f64> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = in_netns(server_ns, move || {
        let s = UdpSocket::bind(to).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok((len, peer)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..len], peer);
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let rtts = in_netns(client_ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut rtts = Vec::new();
        let mut buf = [0u8; 64];
        for i in 0..n {
            let t = std::time::Instant::now();
            s.send_to(&i.to_be_bytes(), to).unwrap();
            // Take the echo of this probe (skip a late one of an earlier).
            while let Ok(len) = s.recv(&mut buf) {
                if len == 4 && buf[..4] == i.to_be_bytes() {
                    rtts.push(t.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
        }
        rtts
    })
    .join()
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    echo.join().unwrap();
    rtts
}

/// How long [`tcp_goodput`] lets a connection settle before it counts.
const WARM_UP: Duration = Duration::from_millis(500);

/// TCP goodput from `client_ns` to a listener on `addr` in `server_ns`:
/// the client sends as fast as it can for `duration`; the result is the
/// bytes the server read per second of that time, in bits per second.
pub fn tcp_goodput(
    server_ns: &Path,
    client_ns: &Path,
    addr: SocketAddr,
    duration: Duration,
) -> f64 {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = in_netns(server_ns, move || -> (u64, Duration) {
        let listener = TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        let mut start: Option<std::time::Instant> = None;
        let mut last = std::time::Instant::now();
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            // The steady state only: from WARM_UP after the first byte
            // (TCP's slow start overshooting a shaped link, and the
            // connection's set-up, are not the rate) to the last byte.
            let now = std::time::Instant::now();
            let begin = *start.get_or_insert(now + WARM_UP);
            if now >= begin {
                total += n as u64;
            }
            last = now;
        }
        let begin = start.unwrap_or(last);
        (total, last.saturating_duration_since(begin))
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    in_netns(client_ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        let chunk = vec![0x6bu8; 1 << 14];
        let end = std::time::Instant::now() + duration;
        while std::time::Instant::now() < end {
            s.write_all(&chunk).unwrap();
        }
    })
    .join()
    .unwrap();
    let (bytes, took) = server.join().unwrap();
    bytes as f64 * 8.0 / took.as_secs_f64().max(1e-6)
}

#[allow(non_camel_case_types)]
type libc_int = i32;

extern "C" {
    #[link_name = "setsockopt"]
    fn libc_setsockopt(fd: i32, level: i32, name: i32, value: *const u8, len: u32) -> i32;
}

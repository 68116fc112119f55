//! Probes and traffic inside a namespace, with no external binaries: ICMP
//! echo, TCP connect with a timeout, a tiny HTTP responder, an HTTP GET, and
//! running a host program inside a namespace.
//!
//! Like netlink sockets, an IP socket belongs to the namespace it was created
//! in. So each probe creates its socket inside a short setns window and does
//! the rest (connect, send, wait) from home. Only `exec` runs something
//! inside a namespace, and only in the forked child, before it executes the
//! program.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrStorage,
};

use crate::error::{Error, Result};
use crate::ns::{with_netns, Namespace};

fn family(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Create a socket inside `ns`.
fn socket_in(
    ns: &Namespace,
    fam: AddressFamily,
    ty: SockType,
    proto: Option<SockProtocol>,
) -> Result<OwnedFd> {
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    with_netns(ns, || socket::socket(fam, ty, flags, proto))?
        .map_err(|errno| Error::kernel(format!("creating a socket in {ns}"), errno))
}

/// Wait until `fd` is ready for `events`, at most until `deadline`.
fn wait(fd: &OwnedFd, events: PollFlags, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), events)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

/// Open a TCP connection from `ns` to `addr` within `timeout`.
pub fn tcp_connect(ns: &Namespace, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let what = || format!("TCP connection from {ns} to {addr}");
    let fd = socket_in(ns, family(&addr.ip()), SockType::Stream, None)?;
    let deadline = Instant::now() + timeout;
    match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) => {}
        Err(Errno::EINPROGRESS) => {
            if !wait(&fd, PollFlags::POLLOUT, deadline) {
                return Err(Error::Kernel {
                    what: what(),
                    cause: format!("timed out after {} ms", timeout.as_millis()),
                    errno: Some(Errno::ETIMEDOUT),
                });
            }
            let err = socket::getsockopt(&fd, sockopt::SocketError)
                .map_err(|errno| Error::kernel(what(), errno))?;
            if err != 0 {
                return Err(Error::kernel(what(), Errno::from_raw(err)));
            }
        }
        Err(errno) => return Err(Error::kernel(what(), errno)),
    }
    let stream = TcpStream::from(fd);
    stream
        .set_nonblocking(false)
        .map_err(|e| Error::io(what(), e))?;
    Ok(stream)
}

/// Whether a TCP connection from `ns` to `addr` opens within `timeout`.
/// Errors only if the probe itself cannot run (e.g. the namespace is gone).
pub fn tcp_check(ns: &Namespace, addr: SocketAddr, timeout: Duration) -> Result<bool> {
    match tcp_connect(ns, addr, timeout) {
        Ok(_) => Ok(true),
        Err(Error::Kernel { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The outcome of [`ping`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PingResult {
    pub ok: bool,
    pub sent: u32,
    pub received: u32,
    /// Round-trip time of the last reply (ms), if any.
    pub rtt_ms: Option<f64>,
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP (or ICMPv6) echo request.
fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut pkt = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"koko-ping-payload-0123456789abcd");
    if !v6 {
        // ICMPv6 checksums are computed by the kernel on raw sockets.
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    pkt
}

/// Is `buf` (as read from the raw socket) the echo reply to (id, seq)?
fn is_reply(v6: bool, buf: &[u8], id: u16, seq: u16) -> bool {
    // IPv4 raw sockets deliver the IP header too; IPv6 ones do not.
    let icmp = if v6 {
        buf
    } else {
        let ihl = usize::from(buf.first().map(|b| b & 0x0f).unwrap_or(0)) * 4;
        match buf.get(ihl..) {
            Some(rest) => rest,
            None => return false,
        }
    };
    icmp.len() >= 8
        && icmp[0] == if v6 { 129 } else { 0 }
        && u16::from_be_bytes([icmp[4], icmp[5]]) == id
        && u16::from_be_bytes([icmp[6], icmp[7]]) == seq
}

/// Send `count` ICMP echo requests from `ns` to `ip`, waiting up to `timeout`
/// for each reply. `ok` if any reply came back.
pub fn ping(ns: &Namespace, ip: IpAddr, count: u32, timeout: Duration) -> Result<PingResult> {
    let v6 = ip.is_ipv6();
    let proto = if v6 {
        SockProtocol::IcmpV6
    } else {
        SockProtocol::Icmp
    };
    let fd = socket_in(ns, family(&ip), SockType::Raw, Some(proto))?;
    let id: u16 =
        (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16) ^ 0x6b6b;
    let dest = SockaddrStorage::from(SocketAddr::new(ip, 0));
    let mut result = PingResult {
        ok: false,
        sent: 0,
        received: 0,
        rtt_ms: None,
    };
    for seq in 1..=count.max(1) {
        let seq = seq as u16;
        let start = Instant::now();
        let sent = socket::sendto(
            fd.as_raw_fd(),
            &echo_request(v6, id, seq),
            &dest,
            socket::MsgFlags::empty(),
        );
        result.sent += 1;
        if sent.is_err() {
            // e.g. ENETUNREACH: no route. That is an answer, not a failure.
            continue;
        }
        let deadline = start + timeout;
        let mut buf = [0u8; 1500];
        while wait(&fd, PollFlags::POLLIN, deadline) {
            match socket::recv(fd.as_raw_fd(), &mut buf, socket::MsgFlags::empty()) {
                Ok(n) if is_reply(v6, &buf[..n], id, seq) => {
                    result.received += 1;
                    result.rtt_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                _ => {}
            }
        }
    }
    result.ok = result.received > 0;
    Ok(result)
}

/// A tiny HTTP responder running on its own thread; stops on drop or
/// [`HttpServer::stop`].
pub struct HttpServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub port: u16,
    pub ns: Namespace,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpServer(port {} in {})", self.port, self.ns)
    }
}

impl HttpServer {
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serve `body` to every HTTP request on `port` (all addresses, IPv4 and
/// IPv6) inside `ns`, until stopped.
pub fn serve_http(ns: &Namespace, port: u16, body: &str) -> Result<HttpServer> {
    let what = format!("HTTP responder on port {port} in {ns}");
    let fd = socket_in(ns, AddressFamily::Inet6, SockType::Stream, None)?;
    // One dual-stack socket answers IPv4 too.
    let _ = socket::setsockopt(&fd, sockopt::Ipv6V6Only, &false);
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| Error::kernel(&what, e))?;
    let any = SockaddrStorage::from(SocketAddr::new(
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        port,
    ));
    socket::bind(fd.as_raw_fd(), &any).map_err(|errno| match errno {
        Errno::EADDRINUSE => Error::Kernel {
            what: what.clone(),
            cause: "port already in use in that namespace".into(),
            errno: Some(errno),
        },
        _ => Error::kernel(&what, errno),
    })?;
    socket::listen(&fd, Backlog::new(64).expect("valid backlog"))
        .map_err(|e| Error::kernel(&what, e))?;
    let listener = TcpListener::from(fd);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let body = body.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("http-{port}"))
        .spawn(move || serve_loop(listener, flag, body))
        .map_err(|e| Error::io(&what, e))?;
    Ok(HttpServer {
        stop,
        thread: Some(thread),
        port,
        ns: ns.clone(),
    })
}

fn serve_loop(listener: TcpListener, stop: Arc<AtomicBool>, body: String) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut conn, _)) => {
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = conn.write_all(reply.as_bytes());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// `http://HOST[:PORT][/PATH]` split into its parts.
fn parse_url(url: &str) -> Result<(String, u16, String)> {
    let bad = |why: &str| Error::Invalid(format!("URL '{url}': {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => 80,
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
            None => (hostport.to_string(), 80),
        }
    };
    Ok((host, port, path.to_string()))
}

/// GET `url` from inside `ns`; returns the body of a 2xx answer.
pub fn http_get(ns: &Namespace, url: &str, timeout: Duration) -> Result<String> {
    let (host, port, path) = parse_url(url)?;
    let ip: IpAddr = host.parse().map_err(|_| {
        Error::Invalid(format!(
            "URL '{url}': the host must be an IP address (koko does not resolve names)"
        ))
    })?;
    let mut stream = tcp_connect(ns, SocketAddr::new(ip, port), timeout)?;
    let what = || format!("GET {url} from {ns}");
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| Error::io(what(), e))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: koko\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| Error::io(what(), e))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| Error::io(what(), e))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(Error::Probe {
            what: what(),
            cause: format!(
                "server answered '{}'",
                head.lines().next().unwrap_or("nothing")
            ),
        });
    }
    Ok(body.to_string())
}

/// What [`exec`] returns.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecResult {
    pub code: i32,
    pub out: String,
    pub err: String,
}

/// Run a host program inside `ns` (network namespace only) and collect its
/// output, at most 16 MiB of it (see [`exec_capped`]).
pub fn exec(ns: &Namespace, argv: &[String]) -> Result<ExecResult> {
    exec_capped(ns, argv, 16 << 20)
}

/// Run a host program inside `ns` and collect its output, keeping at most
/// `max_output` bytes of stdout and stderr together.
///
/// The program must never outlive koko or keep koko's namespaces alive:
/// * it runs in a process group of its own, and every way out of this
///   function that leaves it running (a stop signal, too much output)
///   kills the whole group, grandchildren included;
/// * it gets `PR_SET_PDEATHSIG` = SIGKILL, so the kernel kills it when
///   koko dies, even by SIGKILL (a grandchild is then orphaned, but its
///   group is the child's, which a process supervisor can kill as one).
///   The kernel sends it when the *thread* that forked exits: call this
///   from a thread that lives as long as the run (scripts' main thread).
///
/// The output is read as it comes (poll on both pipes, in slices of at
/// most 50 ms), so a stop signal is seen at once and a program that
/// writes forever is stopped at the cap with [`Error::Limit`] instead of
/// exhausting koko's memory.
pub fn exec_capped(ns: &Namespace, argv: &[String], max_output: usize) -> Result<ExecResult> {
    use std::os::unix::process::CommandExt;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::Invalid("exec needs a program to run".into()))?;
    let what = || format!("running '{program}' in {ns}");
    let fd = ns.open()?;
    let raw = fd.as_raw_fd();
    // The child checks that its parent is still the process that forked
    // it: koko may die between fork and prctl, and then no signal comes.
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    // SAFETY: setns, prctl, getppid and kill are async-signal-safe; the
    // closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| Error::io(what(), e))?;
    // The namespace fd was only for the child's setns.
    drop(fd);
    let kill_group = |child: &std::process::Child| {
        // Stop the program and everything it started.
        // SAFETY: kill on the child's own process group (its pid).
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
    };
    let mut collected = collect_output(&mut child, max_output);
    if collected.is_err() {
        kill_group(&child);
    }
    // Reap it. A program that closed its output and runs on is waited for
    // in slices: waitpid restarts after a signal and would not let go.
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(what(), e)),
        }
        if collected.is_ok() {
            if let Err(e) = crate::interrupt::check() {
                kill_group(&child);
                collected = Err(e);
            }
        }
        // Usually the program exits with its output: look again soon,
        // then less and less often.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let (out, err) = collected.map_err(|e| match e {
        Error::Limit { limit, cause, .. } => Error::Limit {
            limit,
            what: what(),
            cause,
        },
        other => other,
    })?;
    Ok(ExecResult {
        code: status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }),
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// Read a child's stdout and stderr until both close, at most `max`
/// bytes together; stops early with an error on a stop signal or the cap.
fn collect_output(child: &mut std::process::Child, max: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut pipes = [
        child.stdout.take().map(OwnedFd::from),
        child.stderr.take().map(OwnedFd::from),
    ];
    let mut bufs = [Vec::new(), Vec::new()];
    for fd in pipes.iter().flatten() {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| Error::kernel("reading a program's output", e))?;
    }
    let mut chunk = vec![0u8; 64 << 10];
    while pipes.iter().any(Option::is_some) {
        crate::interrupt::check()?;
        let mut fds: Vec<PollFd> = pipes
            .iter()
            .flatten()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(50u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::kernel("waiting for a program's output", e)),
        }
        drop(fds);
        for (slot, buf) in pipes.iter_mut().zip(bufs.iter_mut()) {
            let Some(fd) = slot else { continue };
            loop {
                match nix::unistd::read(&*fd, &mut chunk) {
                    Ok(0) => {
                        *slot = None;
                        break;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => break,
                    Err(e) => return Err(Error::kernel("reading a program's output", e)),
                }
                if buf.len() > max {
                    break;
                }
            }
        }
        if bufs[0].len() + bufs[1].len() > max {
            return Err(Error::Limit {
                limit: "exec output",
                what: String::new(),
                cause: format!(
                    "the program wrote more than {} (stdout and stderr together); it was stopped",
                    crate::memory::human(max)
                ),
            });
        }
    }
    let [out, err] = bufs;
    Ok((out, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // Echo request with zero checksum field: known value.
        let pkt = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let c = checksum(&pkt);
        let mut with = pkt;
        with[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&with), 0);
    }

    #[test]
    fn replies_are_matched_by_id_and_seq() {
        let mut reply = echo_request(true, 7, 3);
        reply[0] = 129;
        assert!(is_reply(true, &reply, 7, 3));
        assert!(!is_reply(true, &reply, 7, 4));
        let mut v4 = vec![0x45u8; 20];
        let mut icmp = echo_request(false, 9, 1);
        icmp[0] = 0;
        v4.extend(icmp);
        assert!(is_reply(false, &v4, 9, 1));
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://10.0.3.2/").unwrap(),
            ("10.0.3.2".into(), 80, "/".into())
        );
        assert_eq!(
            parse_url("http://10.0.3.2:8080").unwrap(),
            ("10.0.3.2".into(), 8080, "/".into())
        );
        assert_eq!(
            parse_url("http://[fd00::2]:81/x").unwrap(),
            ("fd00::2".into(), 81, "/x".into())
        );
        assert!(parse_url("https://x/").is_err());
    }
}

/// What an [`OutageProbe`] saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutageReport {
    /// Probes sent and how many failed.
    pub sent: u64,
    pub lost: u64,
    /// Wall-clock times (ms since the Unix epoch) of the first failed probe
    /// and of the first success after it.
    pub first_failure_ms: Option<f64>,
    pub first_recovery_ms: Option<f64>,
    /// first_recovery - first_failure.
    pub outage_ms: Option<f64>,
}

/// One probe attempt.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Sample {
    /// When it started (ms since the epoch).
    pub at_ms: f64,
    pub ok: bool,
    /// How long the connection took to open (successful probes).
    pub rtt_ms: f64,
}

/// The quality a probe measured over a recent window: for hooks that fire
/// when a path degrades (grey failures), not only when it breaks.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct WindowStats {
    pub window_ms: f64,
    pub sent: u64,
    pub lost: u64,
    /// lost / sent, in percent (0 with no probe in the window).
    pub loss_pct: f64,
    /// Median connection time of the successful probes (None: none).
    pub rtt_p50_ms: Option<f64>,
}

impl WindowStats {
    /// The stats of the samples that started in the last `window_ms`
    /// before `now_ms`.
    pub fn of<'a>(
        samples: impl IntoIterator<Item = &'a Sample>,
        now_ms: f64,
        window_ms: f64,
    ) -> WindowStats {
        let recent: Vec<&Sample> = samples
            .into_iter()
            .filter(|s| s.at_ms > now_ms - window_ms && s.at_ms <= now_ms)
            .collect();
        let sent = recent.len() as u64;
        let lost = recent.iter().filter(|s| !s.ok).count() as u64;
        let mut rtts: Vec<f64> = recent.iter().filter(|s| s.ok).map(|s| s.rtt_ms).collect();
        rtts.sort_by(f64::total_cmp);
        WindowStats {
            window_ms,
            sent,
            lost,
            loss_pct: if sent == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / sent as f64
            },
            rtt_p50_ms: rtts.get(rtts.len() / 2).copied(),
        }
    }
}

/// How many samples a probe keeps (at the default 5 ms interval, over
/// five minutes).
const MAX_SAMPLES: usize = 60_000;

/// Keeps opening TCP connections from a namespace to an address at a fixed
/// interval, on its own thread, and measures the outage: first failure,
/// first recovery, lost probes; and, over any recent window, the loss and
/// the connection time.
pub struct OutageProbe {
    stop: Arc<AtomicBool>,
    report: Arc<std::sync::Mutex<OutageReport>>,
    /// Every attempt, oldest first (at most [`MAX_SAMPLES`]).
    samples: Arc<std::sync::Mutex<std::collections::VecDeque<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Milliseconds since the Unix epoch, with sub-millisecond precision.
pub fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

impl OutageProbe {
    pub fn start(
        ns: &Namespace,
        addr: SocketAddr,
        interval: Duration,
        timeout: Duration,
    ) -> OutageProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(std::sync::Mutex::new(OutageReport::default()));
        let samples = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let (flag, shared, ns, log) = (stop.clone(), report.clone(), ns.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let started = epoch_ms();
                let tick = Instant::now();
                // A namespace that is gone counts as a failed probe.
                let ok = tcp_check(&ns, addr, timeout).unwrap_or(false);
                let rtt_ms = tick.elapsed().as_secs_f64() * 1000.0;
                {
                    let mut log = log.lock().expect("probe samples");
                    if log.len() == MAX_SAMPLES {
                        log.pop_front();
                    }
                    log.push_back(Sample {
                        at_ms: started,
                        ok,
                        rtt_ms,
                    });
                }
                {
                    let mut r = shared.lock().expect("probe report");
                    r.sent += 1;
                    if ok {
                        if r.first_failure_ms.is_some() && r.first_recovery_ms.is_none() {
                            r.first_recovery_ms = Some(started);
                            r.outage_ms = r.first_failure_ms.map(|f| started - f);
                        }
                    } else {
                        r.lost += 1;
                        if r.first_failure_ms.is_none() {
                            r.first_failure_ms = Some(started);
                        }
                    }
                }
                // In slices, so stop() never waits for a long interval.
                while !flag.load(Ordering::SeqCst) {
                    match interval.checked_sub(tick.elapsed()) {
                        Some(rest) if !rest.is_zero() => {
                            std::thread::sleep(rest.min(Duration::from_millis(10)))
                        }
                        _ => break,
                    }
                }
            }
        });
        OutageProbe {
            stop,
            report,
            samples,
            thread: Some(thread),
        }
    }

    /// The start time of the first successful probe that started at or
    /// after `t` (ms since the epoch), if any yet. An outage shorter than
    /// the probe interval fails no probe; this still tells when traffic
    /// was seen flowing after an event.
    pub fn first_success_after(&self, t: f64) -> Option<f64> {
        self.samples
            .lock()
            .expect("probe samples")
            .iter()
            .find(|s| s.ok && s.at_ms >= t)
            .map(|s| s.at_ms)
    }

    /// Loss and connection time over the last `window_ms`.
    pub fn window(&self, window_ms: f64) -> WindowStats {
        let samples = self.samples.lock().expect("probe samples");
        // Newest last: walk back only as far as the window reaches.
        let now = epoch_ms();
        let start = samples.partition_point(|s| s.at_ms <= now - window_ms);
        WindowStats::of(samples.range(start..), now, window_ms)
    }

    /// Whether the probe is still probing (not stopped).
    pub fn is_running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    /// What the probe has seen so far.
    pub fn report(&self) -> OutageReport {
        self.report.lock().expect("probe report").clone()
    }

    /// Stop probing and return the final report. The thread finishes its
    /// current attempt first (at most the probe's timeout); a stop signal
    /// ends the wait at once and leaves the thread to finish on its own.
    pub fn stop(&mut self) -> OutageReport {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                if crate::interrupt::pending().is_some() {
                    return self.report();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let _ = t.join();
        }
        self.report()
    }
}

impl Drop for OutageProbe {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    fn sample(at_ms: f64, ok: bool, rtt_ms: f64) -> Sample {
        Sample { at_ms, ok, rtt_ms }
    }

    #[test]
    fn a_window_counts_only_recent_probes() {
        let samples = [
            sample(100.0, false, 100.0),
            sample(900.0, true, 1.0),
            sample(950.0, false, 100.0),
            sample(980.0, true, 3.0),
            sample(990.0, true, 2.0),
        ];
        let w = WindowStats::of(&samples, 1000.0, 200.0);
        assert_eq!((w.sent, w.lost), (4, 1));
        assert_eq!(w.loss_pct, 25.0);
        assert_eq!(w.rtt_p50_ms, Some(2.0));
        let empty = WindowStats::of(&samples, 5000.0, 100.0);
        assert_eq!(
            (empty.sent, empty.loss_pct, empty.rtt_p50_ms),
            (0, 0.0, None)
        );
    }
}

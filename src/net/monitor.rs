//! Event sources: link changes in a namespace, named namespaces going away,
//! and processes (containers) exiting. No polling of state: each source is
//! a file descriptor the kernel makes readable when something happens, so a
//! caller can wait on all of them with one `poll(2)`.
//!
//! * [`LinkMonitor`]: a netlink socket in the namespace, subscribed to the
//!   RTNLGRP_LINK multicast group: RTM_NEWLINK (state changes) and
//!   RTM_DELLINK (a link deleted, e.g. a veth end whose peer's namespace
//!   died).
//! * [`NetnsDirWatch`]: inotify on /run/netns, so `ip netns del` elsewhere
//!   is noticed at once.
//! * [`ProcessWatch`]: a pidfd, readable when the process exits (a
//!   container's init dies with the container).
//!
//! Careful: a monitor socket is a reference to its namespace. The owner of
//! these watches must drop the monitor (and koko's other sockets there) as
//! soon as the namespace is reported gone, or the namespace lives on and its
//! veth ends never vanish.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use std::collections::HashMap;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::socket::{recv, MsgFlags};

use crate::error::{Error, Result};
use crate::ns::{with_netns, Namespace, NETNS_RUN_DIR};

/// A change of one link, as the kernel announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    pub index: u32,
    pub name: String,
    /// The link was deleted.
    pub gone: bool,
    /// Administratively up and with carrier (IFF_UP and IFF_LOWER_UP).
    pub running: bool,
}

/// Link notifications from one namespace.
///
/// The kernel queues notifications in the socket's receive buffer; if
/// koko does not read for a while (a script busy building hundreds of
/// links while a hook waits), the buffer fills, the kernel drops what does
/// not fit and the next read fails with ENOBUFS. A dropped notification
/// may be exactly the link-down a failover hook waits for. So the monitor
/// remembers the links it knows of, and after an overrun it
/// resynchronises: it dumps the namespace's links and reports every
/// difference — links that vanished meanwhile as gone, links whose state
/// changed with their new state. What a dump cannot recover is a link that
/// went down and came back up entirely inside the lost stretch; a large
/// receive buffer makes that stretch rare.
pub struct LinkMonitor {
    socket: netlink_sys::Socket,
    pub ns: Namespace,
    /// ifindex -> the link's last known state.
    known: HashMap<u32, LinkEvent>,
    seq: u32,
    /// How many times notifications were lost and the monitor resynchronised.
    pub resyncs: u32,
}

const RTMGRP_LINK: u32 = 1;

/// The receive buffer asked for: room for thousands of notifications.
const RECEIVE_BUFFER: usize = 4 << 20;

/// How long a resynchronising dump may take before the monitor gives up.
const DUMP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl LinkMonitor {
    pub fn open(ns: &Namespace) -> Result<LinkMonitor> {
        let mut socket = with_netns(ns, || {
            netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)
        })?
        .map_err(|e| Error::io(format!("opening a link monitor in {ns}"), e))?;
        socket
            .bind(&netlink_sys::SocketAddr::new(0, RTMGRP_LINK))
            .and_then(|_| socket.set_non_blocking(true))
            .map_err(|e| Error::io(format!("subscribing to link changes in {ns}"), e))?;
        set_receive_buffer(&socket, receive_buffer_size());
        let mut monitor = LinkMonitor {
            socket,
            ns: ns.clone(),
            known: HashMap::new(),
            seq: 0,
            resyncs: 0,
        };
        // Learn the links there are now, so a later resync can tell which
        // ones vanished.
        monitor.resync()?;
        monitor.resyncs = 0;
        Ok(monitor)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the socket outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.socket.as_raw_fd()) }
    }

    /// Read every pending notification (never blocks, except for a
    /// resynchronising dump after lost notifications).
    pub fn drain(&mut self) -> Result<Vec<LinkEvent>> {
        let mut events = Vec::new();
        let mut overrun = false;
        let mut buf = vec![0u8; 65536];
        loop {
            match recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Ok(n) => {
                    for message in parse_messages(&buf[..n]) {
                        if let Message::Link(ev) = message {
                            self.note(&ev);
                            events.push(ev);
                        }
                    }
                }
                // The kernel dropped notifications; it says so once, and
                // what is still queued can be read on.
                Err(Errno::ENOBUFS) => overrun = true,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    return Err(Error::kernel(
                        format!("reading link changes in {}", self.ns),
                        e,
                    ))
                }
            }
        }
        if overrun {
            if std::env::var_os("KOKO_DEBUG_EVENTS").is_some() {
                crate::say!("monitor {}: notifications lost, resynchronising", self.ns);
            }
            events.extend(self.resync()?);
        }
        if std::env::var_os("KOKO_DEBUG_EVENTS").is_some() && !events.is_empty() {
            crate::say!("monitor {}: {events:?}", self.ns);
        }
        Ok(events)
    }

    fn note(&mut self, ev: &LinkEvent) {
        if ev.gone {
            self.known.remove(&ev.index);
        } else {
            self.known.insert(ev.index, ev.clone());
        }
    }

    /// Dump the namespace's links and return how they differ from what the
    /// monitor knew: vanished links as gone, changed ones with their state.
    /// Notifications that arrive during the dump are applied in order.
    fn resync(&mut self) -> Result<Vec<LinkEvent>> {
        self.resyncs += 1;
        let ns = self.ns.clone();
        let what = || format!("resynchronising link changes in {ns}");
        // Overruns during the dump (a flood still going on) restart it.
        'dump: for _ in 0..10 {
            self.seq = self.seq.wrapping_add(1);
            let request = dump_request(self.seq);
            self.socket
                .send(&request, 0)
                .map_err(|e| Error::io(what(), e))?;
            let mut events = Vec::new();
            let mut present: HashMap<u32, LinkEvent> = HashMap::new();
            let mut buf = vec![0u8; 65536];
            let deadline = std::time::Instant::now() + DUMP_TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(Error::Kernel {
                        what: what(),
                        cause: "the kernel did not finish the link dump".into(),
                        errno: Some(Errno::ETIMEDOUT),
                    });
                }
                let mut fds = [PollFd::new(self.fd(), PollFlags::POLLIN)];
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let _ = poll(&mut fds, PollTimeout::from(ms));
                let n = match recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                    Ok(n) => n,
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
                    Err(Errno::ENOBUFS) => continue 'dump,
                    Err(e) => return Err(Error::kernel(what(), e)),
                };
                for message in parse_messages(&buf[..n]) {
                    match message {
                        Message::DumpedLink(seq, ev) if seq == self.seq => {
                            present.insert(ev.index, ev);
                        }
                        Message::DumpedLink(..) | Message::Other => {}
                        // A notification racing the dump.
                        Message::Link(ev) => {
                            self.note(&ev);
                            events.push(ev);
                        }
                        Message::Done(seq) if seq == self.seq => {
                            events.extend(differences(&self.known, &present));
                            self.known = present;
                            return Ok(events);
                        }
                        Message::Done(_) => {}
                        Message::Error(seq, errno) if seq == self.seq => {
                            return Err(Error::kernel(what(), errno));
                        }
                        Message::Error(..) => {}
                    }
                }
            }
        }
        Err(Error::Kernel {
            what: what(),
            cause: "notifications kept overflowing the monitor during the dump".into(),
            errno: Some(Errno::ENOBUFS),
        })
    }
}

/// What changed between the links a monitor knew (`before`) and a dump
/// (`now`): links missing from the dump are gone; links whose state
/// differs (or that are new) are reported with their state. In ifindex
/// order, so the result is deterministic.
fn differences(before: &HashMap<u32, LinkEvent>, now: &HashMap<u32, LinkEvent>) -> Vec<LinkEvent> {
    let mut out: Vec<LinkEvent> = before
        .iter()
        .filter(|(index, _)| !now.contains_key(index))
        .map(|(_, ev)| LinkEvent {
            gone: true,
            running: false,
            ..ev.clone()
        })
        .collect();
    out.extend(
        now.iter()
            .filter(|(index, ev)| before.get(index) != Some(ev))
            .map(|(_, ev)| ev.clone()),
    );
    out.sort_by_key(|ev| (ev.index, !ev.gone));
    out
}

/// How much receive buffer a monitor asks for. `KOKO_TEST_MONITOR_RCVBUF`
/// (a test hook, not a user option) makes it tiny so tests can force the
/// overrun path.
fn receive_buffer_size() -> usize {
    std::env::var("KOKO_TEST_MONITOR_RCVBUF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RECEIVE_BUFFER)
}

/// Ask for `size` bytes of receive buffer: SO_RCVBUFFORCE (root may exceed
/// net.core.rmem_max), else SO_RCVBUF (capped by rmem_max). Best effort: a
/// smaller buffer only makes resynchronisation more frequent.
fn set_receive_buffer(socket: &netlink_sys::Socket, size: usize) {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with a pointer to a c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// A GETLINK dump request with sequence number `seq`, serialised.
fn dump_request(seq: u32) -> Vec<u8> {
    let mut message = NetlinkMessage::from(RouteNetlinkMessage::GetLink(LinkMessage::default()));
    message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    message.header.sequence_number = seq;
    message.finalize();
    let mut buf = vec![0u8; message.buffer_len()];
    message.serialize(&mut buf);
    buf
}

/// One message of a datagram, as the monitor cares about it.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    /// A notification (sequence number 0).
    Link(LinkEvent),
    /// A link in the answer to the dump with this sequence number.
    DumpedLink(u32, LinkEvent),
    Done(u32),
    Error(u32, Errno),
    Other,
}

/// Parse a datagram of netlink messages.
fn parse_messages(mut data: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        let message = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[..len]) {
            Ok(msg) => {
                let seq = msg.header.sequence_number;
                match msg.payload {
                    NetlinkPayload::Done(_) => Message::Done(seq),
                    NetlinkPayload::Error(e) => match e.code {
                        Some(code) => Message::Error(seq, Errno::from_raw(-code.get())),
                        None => Message::Other,
                    },
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                        let ev = link_event(&l, false);
                        if seq == 0 {
                            Message::Link(ev)
                        } else {
                            Message::DumpedLink(seq, ev)
                        }
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
                        Message::Link(link_event(&l, true))
                    }
                    _ => Message::Other,
                }
            }
            Err(_) => Message::Other,
        };
        out.push(message);
        let step = (len + 3) & !3;
        data = &data[step.min(data.len())..];
    }
    out
}

fn link_event(l: &LinkMessage, gone: bool) -> LinkEvent {
    let name = l
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let flags = l.header.flags;
    LinkEvent {
        index: l.header.index,
        name,
        gone,
        running: !gone && flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
    }
}

/// Parse a datagram of netlink notifications into link events.
pub fn parse_link_events(data: &[u8]) -> Vec<LinkEvent> {
    parse_messages(data)
        .into_iter()
        .filter_map(|m| match m {
            Message::Link(ev) | Message::DumpedLink(_, ev) => Some(ev),
            _ => None,
        })
        .collect()
}

/// inotify on /run/netns: readable when a named namespace is deleted.
pub struct NetnsDirWatch {
    inotify: Inotify,
}

/// A non-blocking inotify watching /run/netns (made if missing) for
/// `events`.
pub fn watch_netns_dir(events: AddWatchFlags) -> Result<Inotify> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(|e| Error::kernel("watching /run/netns", e))?;
    let _ = std::fs::create_dir_all(NETNS_RUN_DIR);
    inotify
        .add_watch(NETNS_RUN_DIR, events)
        .map_err(|e| Error::kernel("watching /run/netns", e))?;
    Ok(inotify)
}

impl NetnsDirWatch {
    pub fn open() -> Result<NetnsDirWatch> {
        let inotify = watch_netns_dir(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_UNMOUNT)?;
        Ok(NetnsDirWatch { inotify })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// The names deleted since the last call (never blocks).
    pub fn drain(&self) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            names.extend(
                events
                    .into_iter()
                    .filter_map(|e| e.name.and_then(|n| n.into_string().ok())),
            );
        }
        names
    }
}

/// A pidfd: readable once the process has exited.
pub struct ProcessWatch {
    fd: OwnedFd,
    pub pid: u32,
}

impl ProcessWatch {
    pub fn open(pid: u32) -> Result<ProcessWatch> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(Error::kernel(
                format!("watching process {pid}"),
                nix::errno::Errno::last(),
            ));
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(ProcessWatch {
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
            pid,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Has the process exited? (A pidfd polls readable then.)
    pub fn exited(&self) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;

    fn datagram(msgs: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            let mut nl =
                NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(m));
            nl.finalize();
            let mut buf = vec![0u8; nl.buffer_len()];
            nl.serialize(&mut buf);
            while buf.len() % 4 != 0 {
                buf.push(0);
            }
            out.extend(buf);
        }
        out
    }

    #[test]
    fn parses_new_and_del_link_notifications() {
        let mut up = LinkMessage::default();
        up.header.index = 4;
        up.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        up.attributes.push(LinkAttribute::IfName("link1".into()));
        let mut down = up.clone();
        down.header.flags = LinkFlags::Up;
        let gone = up.clone();
        let events = parse_link_events(&datagram(vec![
            RouteNetlinkMessage::NewLink(up),
            RouteNetlinkMessage::NewLink(down),
            RouteNetlinkMessage::DelLink(gone),
        ]));
        assert_eq!(events.len(), 3);
        assert!(events[0].running && !events[0].gone);
        assert!(!events[1].running, "carrier lost counts as down");
        assert!(events[2].gone && !events[2].running);
        assert_eq!(events[2].name, "link1");
    }
}

#[cfg(test)]
mod resync_tests {
    use super::*;

    fn ev(index: u32, name: &str, running: bool) -> LinkEvent {
        LinkEvent {
            index,
            name: name.into(),
            gone: false,
            running,
        }
    }

    #[test]
    fn links_missing_from_the_dump_are_reported_gone() {
        let before: HashMap<u32, LinkEvent> =
            [(1, ev(1, "lo", true)), (5, ev(5, "link1", true))].into();
        let now: HashMap<u32, LinkEvent> = [(1, ev(1, "lo", true))].into();
        let out = differences(&before, &now);
        assert_eq!(out.len(), 1);
        assert!(out[0].gone && !out[0].running && out[0].name == "link1");
    }

    #[test]
    fn state_changes_and_new_links_are_reported_unchanged_ones_are_not() {
        let before: HashMap<u32, LinkEvent> =
            [(1, ev(1, "lo", true)), (5, ev(5, "link1", true))].into();
        let now: HashMap<u32, LinkEvent> = [
            (1, ev(1, "lo", true)),
            (5, ev(5, "link1", false)),
            (7, ev(7, "link2", true)),
        ]
        .into();
        let out = differences(&before, &now);
        assert_eq!(out, vec![ev(5, "link1", false), ev(7, "link2", true)]);
    }

    #[test]
    fn a_name_reused_by_a_new_link_is_the_old_one_gone_and_a_new_one() {
        let before: HashMap<u32, LinkEvent> = [(5, ev(5, "link1", true))].into();
        let now: HashMap<u32, LinkEvent> = [(9, ev(9, "link1", true))].into();
        let out = differences(&before, &now);
        assert_eq!(out.len(), 2);
        assert!(out[0].gone && out[0].index == 5);
        assert!(!out[1].gone && out[1].index == 9);
    }

    #[test]
    fn dump_answers_are_told_from_notifications() {
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewLink({
            let mut l = LinkMessage::default();
            l.header.index = 3;
            l.attributes.push(LinkAttribute::IfName("x".into()));
            l
        }));
        request.header.sequence_number = 7;
        request.finalize();
        let mut buf = vec![0u8; request.buffer_len()];
        request.serialize(&mut buf);
        let parsed = parse_messages(&buf);
        assert!(matches!(&parsed[..], [Message::DumpedLink(7, e)] if e.name == "x"));
        let dump = dump_request(9);
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&dump).unwrap();
        assert_eq!(back.header.sequence_number, 9);
        assert_eq!(back.header.flags, NLM_F_REQUEST | NLM_F_DUMP);
    }
}

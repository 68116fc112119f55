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

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkFlags};
use netlink_packet_route::RouteNetlinkMessage;
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
pub struct LinkMonitor {
    socket: netlink_sys::Socket,
    pub ns: Namespace,
}

const RTMGRP_LINK: u32 = 1;

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
        Ok(LinkMonitor {
            socket,
            ns: ns.clone(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the socket outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.socket.as_raw_fd()) }
    }

    /// Read every pending notification (never blocks).
    pub fn drain(&self) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            if n == 0 {
                break;
            }
            events.extend(parse_link_events(&buf[..n]));
            if std::env::var_os("KOKO_DEBUG_EVENTS").is_some() {
                eprintln!(
                    "monitor {}: {n} bytes -> {:?}",
                    self.ns,
                    parse_link_events(&buf[..n])
                );
            }
        }
        events
    }
}

/// Parse a datagram of netlink messages into link events.
pub fn parse_link_events(mut data: &[u8]) -> Vec<LinkEvent> {
    let mut events = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[..len]) {
            let (link, gone) = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => (Some(l), false),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => (Some(l), true),
                _ => (None, false),
            };
            if let Some(l) = link {
                let name = l
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let flags = l.header.flags;
                events.push(LinkEvent {
                    index: l.header.index,
                    name,
                    gone,
                    running: !gone
                        && flags.contains(LinkFlags::Up)
                        && flags.contains(LinkFlags::LowerUp),
                });
            }
        }
        let step = (len + 3) & !3;
        data = &data[step.min(data.len())..];
    }
    events
}

/// inotify on /run/netns: readable when a named namespace is deleted.
pub struct NetnsDirWatch {
    inotify: Inotify,
}

impl NetnsDirWatch {
    pub fn open() -> Result<NetnsDirWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| Error::kernel("watching /run/netns", e))?;
        let _ = std::fs::create_dir_all(NETNS_RUN_DIR);
        inotify
            .add_watch(
                NETNS_RUN_DIR,
                AddWatchFlags::IN_DELETE | AddWatchFlags::IN_UNMOUNT,
            )
            .map_err(|e| Error::kernel("watching /run/netns", e))?;
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
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::link::LinkMessage;

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

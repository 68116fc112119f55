//! The packet socket a capture reads: AF_PACKET, SOCK_RAW, bound to one
//! link. Raw system calls (libc), kept in this one file.
//!
//! Like every socket, a packet socket belongs to the network namespace it
//! was created in, for its whole life: it is created inside koko's short
//! setns window ([`crate::ns::with_netns`]), and the link's index is looked
//! up in the same window; everything after that (options, bind, reads) runs
//! from home. The socket also *holds* its namespace: while it is open, an
//! `ip netns del` does not destroy the namespace. So the capture loop asks
//! [`crate::ns::Namespace::exists`] now and then and closes the socket once
//! the namespace's name is gone, letting it die.
//!
//! What the socket is set up with, and why:
//! * created with protocol 0 (it receives nothing), configured, and only
//!   then bound with ETH_P_ALL to the link's ifindex: no packet of another
//!   link, and none before the filter is in place, ever reaches it;
//! * a classic BPF filter that returns the snaplen: the kernel copies at
//!   most that many bytes of each packet into the socket (long frames cost
//!   no buffer space), and for `dir out`/`dir in` it keeps only packets
//!   whose `pkttype` is (or is not) PACKET_OUTGOING; `dir in` also sets
//!   PACKET_IGNORE_OUTGOING, so outgoing packets are not even cloned;
//! * SO_TIMESTAMPNS: each packet comes with the kernel's receive timestamp
//!   (nanoseconds) as a control message — the time the packet was seen,
//!   not the time koko got round to reading it;
//! * PACKET_AUXDATA: each packet comes with its length on the wire
//!   (`tp_len`, before the filter cut it to the snaplen) and any 802.1Q tag
//!   the kernel took out of the frame (`tp_vlan_tci`), which koko puts back;
//! * a large receive buffer (SO_RCVBUFFORCE, 8 MiB, which root may set
//!   above `net.core.rmem_max`): a burst waits there while the file is
//!   written. Packets that do not fit are counted by the kernel and read
//!   back with PACKET_STATISTICS ("dropped" in the summary).
//!
//! When the link goes away, the kernel's packet notifier (net/packet/
//! af_packet.c, `packet_notifier`) unhooks the socket and sets its error
//! to ENETDOWN, which the next read returns once (the packets still queued
//! can be read after it). It does exactly the same when the link is only
//! set *down* (NETDEV_DOWN), and hooks the socket back on NETDEV_UP. So
//! ENETDOWN alone does not mean "gone": the capture asks whether the
//! ifindex still exists in the socket's namespace ([`PacketSocket::link_exists`],
//! SIOCGIFNAME) and goes on capturing through a down/up flap.
//!
//! Verified on this project's kernel (6.18), reading a bound packet socket
//! after each event: `ip link set l1 down` -> ENETDOWN, then EAGAIN;
//! `ip link set l1 up` -> packets again; the veth *peer* set down (l1 only
//! loses its carrier) -> nothing, EAGAIN; `ip link del l1` -> ENETDOWN,
//! then the packets that were still queued, then EAGAIN. And `ip netns del`
//! of the link's namespace does not remove the link while the socket is
//! open (the socket holds the namespace): koko sees the name gone within
//! [`super::CHECK_EVERY`], closes the socket, and the namespace (with its
//! veth ends) dies then.

use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};
use crate::ns::{with_netns, Namespace};

use super::pcap::Timestamp;
use super::Direction;

/// ETH_P_ALL in network byte order: every protocol.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();
/// The receive buffer asked for.
const RCVBUF: libc::c_int = 8 << 20;
/// sll_pkttype of a packet the link sent.
const PACKET_OUTGOING: u8 = 4;
/// Control messages of one packet: a timespec and a tpacket_auxdata, with
/// their headers and padding, fit in far less.
const CMSG_BUF_WORDS: usize = 32;

/// One packet read from the socket.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// Bytes read into the buffer (at most the snaplen).
    pub len: usize,
    /// Length on the wire (before the snaplen cut).
    pub orig_len: u32,
    pub ts: Timestamp,
    pub outgoing: bool,
    /// The 802.1Q tag the kernel took out of the frame: (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
}

/// What a read returned.
#[derive(Debug)]
pub enum Read {
    /// Packets, in the batch.
    Packets,
    /// Nothing queued (EAGAIN), or the read was cut short by a signal.
    Empty,
    /// ENETDOWN: the link went down or away (see the module's notes).
    LinkDown,
}

/// A packet socket bound to one link.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: libc::c_int,
}

impl PacketSocket {
    /// Open a socket in `ns`, bound to `link`, for `dir`, keeping at most
    /// `snaplen` bytes of each packet.
    pub fn open(ns: &Namespace, link: &str, dir: Direction, snaplen: u32) -> Result<PacketSocket> {
        let what = || format!("capturing on link '{link}' in {ns}");
        let name = std::ffi::CString::new(link)
            .map_err(|_| Error::Invalid(format!("link name {link:?} contains a NUL byte")))?;
        // Inside the namespace: the socket, and the link's index there.
        let (fd, ifindex) = with_netns(ns, || {
            // SAFETY: plain syscalls; the fd is owned at once.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    0,
                )
            };
            if raw < 0 {
                return Err(last_errno());
            }
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            Ok((fd, index as libc::c_int))
        })?
        .map_err(|errno| Error::kernel(what(), errno))?;
        if ifindex == 0 {
            return Err(Error::link_not_found(link, ns));
        }
        let socket = PacketSocket { fd, ifindex };
        socket.check_ethernet(link, ns)?;
        // A receive buffer as large as root may have; the plain option
        // (capped by net.core.rmem_max) if that is refused.
        if socket
            .set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF)
            .is_err()
        {
            socket
                .set(libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF)
                .map_err(|e| Error::kernel(what(), e))?;
        }
        socket
            .set(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
            .map_err(|e| Error::kernel(what(), e))?;
        socket
            .set(libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
            .map_err(|e| Error::kernel(what(), e))?;
        if dir == Direction::In {
            // Kernel 4.20+; the filter below keeps `in` right without it.
            let _ = socket.set(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
        }
        socket
            .attach_filter(&filter(dir, snaplen))
            .map_err(|e| Error::kernel(what(), e))?;
        socket.bind().map_err(|errno| match errno {
            nix::errno::Errno::ENODEV => Error::link_not_found(link, ns),
            _ => Error::kernel(what(), errno),
        })?;
        // Counters start now (reading them resets them).
        let _ = socket.take_stats();
        Ok(socket)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Only links whose frames start with an Ethernet header can go into
    /// a LINKTYPE_ETHERNET file (veth, bridge, macvlan, vxlan, tap; lo has
    /// a zeroed one, as tcpdump also assumes). A tun device carries bare IP.
    fn check_ethernet(&self, link: &str, ns: &Namespace) -> Result<()> {
        // SAFETY: ifreq is plain data; SIOCGIFHWADDR fills it for a name.
        let mut req: libc::ifreq = unsafe { zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(link.bytes()) {
            *dst = src as libc::c_char;
        }
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
        if rc < 0 {
            return Err(Error::kernel(
                format!("reading the type of link '{link}' in {ns}"),
                last_errno(),
            ));
        }
        let family = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
        if family == libc::ARPHRD_ETHER || family == libc::ARPHRD_LOOPBACK {
            Ok(())
        } else {
            Err(Error::NotSupported(format!(
                "capture on link '{link}' in {ns}: koko writes Ethernet captures, and this link \
                 has no Ethernet header (hardware type {family}, e.g. a tun device)"
            )))
        }
    }

    fn set(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> SysResult<()> {
        // SAFETY: a pointer to an int and its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                &value as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    fn attach_filter(&self, program: &[libc::sock_filter]) -> SysResult<()> {
        let prog = libc::sock_fprog {
            len: program.len() as libc::c_ushort,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the kernel copies the program during the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &prog as *const libc::sock_fprog as *const libc::c_void,
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    fn bind(&self) -> SysResult<()> {
        // SAFETY: sockaddr_ll is plain data.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL_BE;
        addr.sll_ifindex = self.ifindex;
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    /// Read up to a batch of packets into `batch` (without waiting): one
    /// recvmmsg(2) call. A system call per packet is what a capture spends
    /// most of its time on (more so on these machines' nested
    /// virtualisation); a batch pays it once for many.
    pub fn read(&self, batch: &mut Batch) -> SysResult<Read> {
        let slots = batch.frames.len();
        let slot = batch.slot;
        // SAFETY: every pointer handed to recvmmsg points into the batch's
        // own vectors (not resized during the call), each with its true
        // size; the control messages are read only within the
        // msg_controllen the kernel returned, through the CMSG_* helpers.
        unsafe {
            let mut iovs: Vec<libc::iovec> = (0..slots)
                .map(|i| libc::iovec {
                    iov_base: batch.data.as_mut_ptr().add(i * slot) as *mut libc::c_void,
                    iov_len: slot,
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = (0..slots)
                .map(|i| {
                    let mut m: libc::mmsghdr = zeroed();
                    m.msg_hdr.msg_name = &mut batch.from[i] as *mut libc::sockaddr_ll as *mut _;
                    m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                    m.msg_hdr.msg_iov = &mut iovs[i];
                    m.msg_hdr.msg_iovlen = 1;
                    m.msg_hdr.msg_control = batch.control[i].as_mut_ptr() as *mut libc::c_void;
                    m.msg_hdr.msg_controllen = size_of::<[u64; CMSG_BUF_WORDS]>();
                    m
                })
                .collect();
            let n = libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            );
            if n < 0 {
                batch.count = 0;
                return match last_errno() {
                    nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR => Ok(Read::Empty),
                    nix::errno::Errno::ENETDOWN => Ok(Read::LinkDown),
                    errno => Err(errno),
                };
            }
            batch.count = n as usize;
            for (i, m) in msgs.iter().take(batch.count).enumerate() {
                batch.frames[i] = frame_of(&m.msg_hdr, &batch.from[i], m.msg_len as usize);
            }
            Ok(if batch.count == 0 {
                Read::Empty
            } else {
                Read::Packets
            })
        }
    }

    /// The kernel's counters since the last call: (packets that reached
    /// the socket, packets dropped because the receive buffer was full).
    /// Reading them resets them.
    pub fn take_stats(&self) -> SysResult<(u64, u64)> {
        // SAFETY: tpacket_stats is plain data of the size given.
        let mut stats: libc::tpacket_stats = unsafe { zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut stats as *mut libc::tpacket_stats as *mut libc::c_void,
                &mut len,
            )
        };
        if rc < 0 {
            return Err(last_errno());
        }
        Ok((u64::from(stats.tp_packets), u64::from(stats.tp_drops)))
    }

    /// Does the link the socket was bound to still exist in the socket's
    /// namespace? (SIOCGIFNAME on its ifindex: ENODEV once it is gone.)
    pub fn link_exists(&self) -> bool {
        // SAFETY: ifreq is plain data; the kernel fills in the name.
        let mut req: libc::ifreq = unsafe { zeroed() };
        req.ifr_ifru.ifru_ifindex = self.ifindex;
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFNAME, &mut req) };
        rc == 0 || last_errno() != nix::errno::Errno::ENODEV
    }
}

/// Room for a batch of packets: their bytes (one snaplen-sized slot
/// each), addresses and control messages, and what the last read put
/// there.
pub struct Batch {
    slot: usize,
    data: Vec<u8>,
    from: Vec<libc::sockaddr_ll>,
    control: Vec<[u64; CMSG_BUF_WORDS]>,
    frames: Vec<Frame>,
    count: usize,
}

impl Batch {
    /// Slots of `snaplen` bytes: up to 64, within 4 MiB (so a batch of
    /// full-size 262144-byte slots is 16 packets).
    pub fn new(snaplen: u32) -> Batch {
        let slot = snaplen as usize;
        let slots = ((4 << 20) / slot).clamp(1, 64);
        Batch {
            slot,
            data: vec![0; slot * slots],
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            from: vec![unsafe { zeroed() }; slots],
            control: vec![[0; CMSG_BUF_WORDS]; slots],
            frames: vec![
                Frame {
                    len: 0,
                    orig_len: 0,
                    ts: Timestamp::default(),
                    outgoing: false,
                    vlan: None,
                };
                slots
            ],
            count: 0,
        }
    }

    /// The packets the last read returned, with their bytes.
    pub fn packets(&self) -> impl Iterator<Item = (&Frame, &[u8])> {
        self.frames[..self.count]
            .iter()
            .enumerate()
            .map(|(i, f)| (f, &self.data[i * self.slot..i * self.slot + f.len]))
    }
}

/// A packet's metadata from its address and control messages.
///
/// # Safety
/// `msg` must be a header recvmsg/recvmmsg filled in, whose control
/// buffer is still alive.
unsafe fn frame_of(msg: &libc::msghdr, from: &libc::sockaddr_ll, len: usize) -> Frame {
    let mut frame = Frame {
        len,
        orig_len: len as u32,
        ts: Timestamp::default(),
        outgoing: from.sll_pkttype == PACKET_OUTGOING,
        vlan: None,
    };
    let mut have_ts = false;
    let mut cmsg = libc::CMSG_FIRSTHDR(msg);
    while !cmsg.is_null() {
        let level = (*cmsg).cmsg_level;
        let kind = (*cmsg).cmsg_type;
        let data = libc::CMSG_DATA(cmsg);
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
            let ts: libc::timespec = std::ptr::read_unaligned(data as *const libc::timespec);
            frame.ts = Timestamp {
                sec: ts.tv_sec as u64,
                nsec: ts.tv_nsec as u32,
            };
            have_ts = true;
        } else if level == libc::SOL_PACKET && kind == libc::PACKET_AUXDATA {
            let aux: libc::tpacket_auxdata =
                std::ptr::read_unaligned(data as *const libc::tpacket_auxdata);
            frame.orig_len = aux.tp_len.max(len as u32);
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    0
                };
                frame.vlan = Some((tpid, aux.tp_vlan_tci));
            }
        }
        cmsg = libc::CMSG_NXTHDR(msg, cmsg);
    }
    if !have_ts {
        // Not expected with SO_TIMESTAMPNS on; better a time than none.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        frame.ts = Timestamp {
            sec: now.as_secs(),
            nsec: now.subsec_nanos(),
        };
    }
    frame
}

type SysResult<T> = std::result::Result<T, nix::errno::Errno>;

fn last_errno() -> nix::errno::Errno {
    nix::errno::Errno::last()
}

/// The classic BPF program for `dir`: keep at most `snaplen` bytes of
/// each packet the direction wants, drop the others (return 0).
pub fn filter(dir: Direction, snaplen: u32) -> Vec<libc::sock_filter> {
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // The packet's pkttype, an ancillary field of the skb.
    let pkttype = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
    let outgoing = u32::from(PACKET_OUTGOING);
    match dir {
        Direction::Both => vec![op(RET_K, 0, 0, snaplen)],
        Direction::Out => vec![
            op(LD_B_ABS, 0, 0, pkttype),
            op(JEQ_K, 0, 1, outgoing),
            op(RET_K, 0, 0, snaplen),
            op(RET_K, 0, 0, 0),
        ],
        Direction::In => vec![
            op(LD_B_ABS, 0, 0, pkttype),
            op(JEQ_K, 1, 0, outgoing),
            op(RET_K, 0, 0, snaplen),
            op(RET_K, 0, 0, 0),
        ],
    }
}

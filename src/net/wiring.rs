//! The raw material of `koko graph`: every link of a namespace with what
//! ties it to another link (a veth's peer, a vxlan/macvlan/vlan's parent,
//! a bridge port's master), and every address — read from the namespace's
//! own socket, or from another namespace's socket *by nsid*.
//!
//! Reading by nsid (IFLA_TARGET_NETNSID on RTM_GETLINK, IFA_TARGET_NETNSID
//! on RTM_GETADDR, kernel 4.20+) is how koko sees a namespace it has no
//! handle on: one with no name and no process, held only by a bind mount
//! somewhere, or by a socket. The kernel answers from the namespace that
//! the *asking* socket's namespace calls `nsid`, and reports every
//! IFLA_LINK_NETNSID in the answer in the *asker's* numbering (not the
//! target's), so a link found that way can be matched to its own peers
//! from the same viewpoint.
//!
//! The dump is separate from [`super::link::list`] because the graph needs
//! more of each message (MAC address, master, the vxlan's parent and
//! remote), and [`super::link::LinkState`] is shared by many callers.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::Target;
use crate::error::{Error, Result};

/// One link, with everything the graph draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireLink {
    pub index: u32,
    pub name: String,
    /// "veth", "vxlan", "bridge", ...; None for lo or a NIC.
    pub kind: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// RFC 2863 operational state in `ip`'s words: "up", "down",
    /// "lowerlayerdown", "unknown", ...
    pub oper: String,
    pub mtu: u32,
    /// The MAC address, `aa:bb:..`, if the link has one.
    pub mac: Option<String>,
    /// IFLA_LINK: a veth's peer, a macvlan/vlan's parent (ifindex, in the
    /// namespace of `link_netnsid` if given, else in this one).
    pub link_index: Option<u32>,
    /// IFLA_LINK_NETNSID, in the numbering of the namespace that asked.
    pub link_netnsid: Option<i32>,
    /// A vxlan's parent (IFLA_VXLAN_LINK), in the namespace it was created
    /// in (`link_netnsid` when it was moved).
    pub vxlan_parent: Option<u32>,
    /// A vxlan's VNI and remote (unicast) or group address.
    pub vxlan_id: Option<u32>,
    pub vxlan_remote: Option<IpAddr>,
    /// IFLA_MASTER: the bridge this link is a port of (same namespace).
    pub master: Option<u32>,
    /// IFLA_IFALIAS; koko marks its links `koko:RUNID`.
    pub alias: Option<String>,
}

impl WireLink {
    /// The parent a vxlan, macvlan or vlan hangs off (ifindex), if any.
    /// (A veth's IFLA_LINK is its peer, not a parent.)
    pub fn parent(&self) -> Option<u32> {
        match self.kind.as_deref() {
            Some("vxlan") => self.vxlan_parent,
            Some("veth") => None,
            // macvlan, macvtap, vlan, ipvlan: IFLA_LINK is the lower device;
            // a device without a lower one reports IFLA_LINK = itself.
            _ => self.link_index.filter(|&i| i != self.index && i != 0),
        }
    }

    /// Made by koko (its alias carries a run's mark).
    pub fn is_kokos(&self) -> bool {
        self.alias
            .as_deref()
            .is_some_and(|a| crate::runs::run_of_mark(a).is_some())
    }
}

/// "up", "down", ... as `ip link` prints the operational state.
fn oper_word(state: &State) -> String {
    match state {
        State::Up => "up".into(),
        State::Down => "down".into(),
        State::LowerLayerDown => "lowerlayerdown".into(),
        State::Dormant => "dormant".into(),
        State::Testing => "testing".into(),
        State::NotPresent => "notpresent".into(),
        State::Unknown => "unknown".into(),
        State::Other(n) => format!("state {n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn parse_link(msg: &LinkMessage) -> WireLink {
    let mut l = WireLink {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        oper: "unknown".into(),
        mtu: 0,
        mac: None,
        link_index: None,
        link_netnsid: None,
        vxlan_parent: None,
        vxlan_id: None,
        vxlan_remote: None,
        master: None,
        alias: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(m) => l.mtu = *m,
            LinkAttribute::OperState(s) => l.oper = oper_word(s),
            LinkAttribute::Link(i) => l.link_index = Some(*i),
            LinkAttribute::LinkNetNsId(id) if *id >= 0 => l.link_netnsid = Some(*id),
            LinkAttribute::Controller(m) => l.master = Some(*m),
            LinkAttribute::IfAlias(a) if !a.is_empty() => l.alias = Some(a.clone()),
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                l.mac = Some(
                    bytes
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                )
            }
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => l.kind = Some(kind.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(data)) => {
                            for d in data {
                                match d {
                                    InfoVxlan::Link(p) if *p != 0 => l.vxlan_parent = Some(*p),
                                    InfoVxlan::Id(id) => l.vxlan_id = Some(*id),
                                    InfoVxlan::Group(ip) => l.vxlan_remote = Some((*ip).into()),
                                    InfoVxlan::Group6(ip) => l.vxlan_remote = Some((*ip).into()),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// The RTM_GETLINK dump request, for `t`'s own namespace or (with
/// `target`) for the namespace it calls nsid `target`.
pub(in crate::net) fn links_request(target: Option<i32>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    if let Some(id) = target {
        // IFLA_TARGET_NETNSID has the number of IFLA_IF_NETNSID (46).
        msg.attributes.push(LinkAttribute::IfNetnsId(id));
    }
    msg
}

/// The RTM_GETADDR dump request, own namespace or by nsid.
pub(in crate::net) fn addrs_request(target: Option<i32>) -> AddressMessage {
    let mut msg = AddressMessage::default();
    if let Some(id) = target {
        msg.attributes.push(AddressAttribute::TargetNetNsId(id));
    }
    msg
}

fn place(t: &Target, target: Option<i32>) -> String {
    match target {
        None => t.ns.to_string(),
        Some(id) => format!("the namespace {} calls nsid {id}", t.ns),
    }
}

/// Every link of `t`'s namespace (or of the one it calls nsid `target`),
/// in ifindex order.
pub async fn links(t: &Target, target: Option<i32>) -> Result<Vec<WireLink>> {
    let answers = t
        .socket
        .dump(RouteNetlinkMessage::GetLink(links_request(target)))
        .await
        .map_err(|errno| Error::kernel(format!("listing links of {}", place(t, target)), errno))?;
    let mut out: Vec<WireLink> = answers
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
            _ => None,
        })
        .collect();
    out.sort_by_key(|l| l.index);
    Ok(out)
}

/// Every address (ifindex, ADDR/PREFIX) of `t`'s namespace, or of the one
/// it calls nsid `target`. IPv6 link-local addresses are left out: every
/// link has one and they say nothing about the wiring.
pub async fn addresses(t: &Target, target: Option<i32>) -> Result<Vec<(u32, IpNet)>> {
    let request = RouteNetlinkMessage::GetAddress(addrs_request(target));
    let answered = match target {
        None => t.socket.dump(request).await,
        Some(_) => strict_dump(t, request).await,
    };
    let answers = match answered {
        Ok(a) => a,
        // A namespace without any IPv6 (disable_ipv6) still answers; a
        // vanished nsid is ENOENT/EINVAL: no addresses to show.
        Err(Errno::ENOENT) if target.is_some() => return Ok(Vec::new()),
        Err(errno) => {
            return Err(Error::kernel(
                format!("listing addresses of {}", place(t, target)),
                errno,
            ))
        }
    };
    let mut out = Vec::new();
    for m in answers {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        let Some(net) = super::addr::own_address(&a) else {
            continue;
        };
        if let IpAddr::V6(v6) = net.addr() {
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                continue;
            }
        }
        out.push((a.header.index, net));
    }
    Ok(out)
}

/// A dump on a socket of its own in `t`'s namespace with strict checking
/// on (NETLINK_GET_STRICT_CHK). The kernel reads IFA_TARGET_NETNSID of an
/// address dump only in strict mode; without it, it silently ignores the
/// attribute and answers with the asker's own addresses. koko's shared
/// sockets stay lenient (strict mode refuses dumps with header fields set
/// that other requests rely on), so this one socket lives for one dump.
async fn strict_dump(
    t: &Target,
    request: RouteNetlinkMessage,
) -> std::result::Result<Vec<RouteNetlinkMessage>, Errno> {
    use rtnetlink::sys::AsyncSocket;
    let (mut connection, handle, _) = crate::ns::with_netns(&t.ns, rtnetlink::new_connection)
        .map_err(|_| Errno::EIO)?
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))?;
    connection
        .socket_mut()
        .socket_mut()
        .set_netlink_get_strict_chk(true)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))?;
    let task = tokio::spawn(connection);
    let socket = super::Socket { handle };
    let answers = socket.dump(request).await;
    // Close the fd now (awaiting the aborted task drops it): it keeps
    // its namespace alive.
    drop(socket);
    task.abort();
    let _ = task.await;
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_dump_carries_the_nsid_and_nothing_else() {
        assert!(links_request(None).attributes.is_empty());
        assert_eq!(
            links_request(Some(3)).attributes,
            vec![LinkAttribute::IfNetnsId(3)]
        );
        assert_eq!(
            addrs_request(Some(4)).attributes,
            vec![AddressAttribute::TargetNetNsId(4)]
        );
    }

    #[test]
    fn parents_come_from_the_right_attribute() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.attributes = vec![
            LinkAttribute::IfName("vx0".into()),
            LinkAttribute::Link(7),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(netlink_packet_route::link::InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![InfoVxlan::Link(2), InfoVxlan::Id(42)])),
            ]),
        ];
        let l = parse_link(&msg);
        assert_eq!(l.parent(), Some(2));
        assert_eq!(l.vxlan_id, Some(42));

        let mut veth = msg.clone();
        veth.attributes = vec![
            LinkAttribute::Link(9),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                netlink_packet_route::link::InfoKind::Veth,
            )]),
        ];
        assert_eq!(
            parse_link(&veth).parent(),
            None,
            "a veth's link is its peer"
        );
    }
}

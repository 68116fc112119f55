//! What is in a namespace: links, addresses and routes, read from the kernel
//! (`koko show`, and later scripts' `ns.links()` / `ns.routes()`).
//!
//! For a veth the kernel tells where the peer is: its ifindex (IFLA_LINK)
//! and, when it lives in another namespace, that namespace's *nsid* as seen
//! from here (IFLA_LINK_NETNSID). An nsid is a small number local to the
//! namespace that reports it, not a name. To put a name on it, koko asks the
//! kernel (RTM_GETNSID with a namespace fd) which nsid each namespace it
//! knows about has from here: every `ip netns` namespace and koko's own. A
//! match gives the namespace, and an index lookup there gives the peer's
//! name. A peer in a namespace koko cannot name (a container's, say) is
//! shown as "ifindex N in nsid M".

use std::os::fd::AsRawFd;

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::net::route::RouteState;
use crate::net::{addr, link, route, Session, Target};
use crate::ns::{named, Namespace};

/// One namespace's network configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NsReport {
    /// The namespace's name (netns name, pid, path, "host", container).
    pub namespace: String,
    pub kind: &'static str,
    pub links: Vec<LinkReport>,
    pub addresses: Vec<AddrReport>,
    pub routes: Vec<RouteState>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkReport {
    pub ifindex: u32,
    pub name: String,
    /// "veth", "vxlan", ...; None for a device without a kind (lo, a NIC).
    pub kind: Option<String>,
    /// "up" or "down" (administrative state).
    pub state: &'static str,
    /// Carrier present.
    pub carrier: bool,
    pub mtu: u32,
    /// The peer of a veth (or the parent of a vlan/macvlan), as far as the
    /// kernel tells.
    pub peer: Option<PeerReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerReport {
    pub ifindex: u32,
    /// The peer namespace's nsid as seen from this one (None: same namespace).
    pub nsid: Option<i32>,
    /// The peer's namespace in words, e.g. "netns 'router'", when koko found it.
    pub namespace: Option<String>,
    /// Its short name (netns name, "host", ...), when found.
    pub namespace_name: Option<String>,
    /// The peer link's name, when found.
    pub name: Option<String>,
}

impl PeerReport {
    /// "link2 in netns 'b'", "link2 (same namespace)", "ifindex 5 in nsid 0".
    pub fn describe(&self) -> String {
        match (&self.name, &self.namespace, self.nsid) {
            (Some(name), _, None) => format!("{name} (same namespace)"),
            (Some(name), Some(ns), _) => format!("{name} in {ns}"),
            (None, Some(ns), _) => format!("ifindex {} in {ns}", self.ifindex),
            (_, None, Some(id)) => format!("ifindex {} in nsid {id}", self.ifindex),
            (None, None, None) => format!("ifindex {}", self.ifindex),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AddrReport {
    pub link: String,
    pub ifindex: u32,
    /// ADDR/PREFIX.
    pub address: String,
    /// "inet" or "inet6".
    pub family: &'static str,
}

/// Read everything `koko show` reports about `ns`.
pub fn inspect(session: &Session, ns: &Namespace) -> Result<NsReport> {
    let t = session.target(ns)?;
    let links = session.block_on(link::list(&t))?;
    let addrs = session.block_on(addr::list(&t))?;
    let routes = session.block_on(route::list(&t))?;
    let name_of = |index: u32| {
        links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
    };

    let mut candidates: Option<Vec<Namespace>> = None;
    let mut link_reports = Vec::new();
    for l in &links {
        let peer = match (l.link_index, l.link_netnsid) {
            (None, _) => None,
            (Some(i), None) => Some(PeerReport {
                ifindex: i,
                nsid: None,
                namespace: None,
                namespace_name: None,
                name: name_of(i),
            }),
            (Some(i), Some(id)) => {
                let known = candidates.get_or_insert_with(known_namespaces);
                Some(resolve_peer(session, &t, known, i, id))
            }
        };
        link_reports.push(LinkReport {
            ifindex: l.index,
            name: l.name.clone(),
            kind: l.kind.clone(),
            state: l.state_word(),
            carrier: l.lower_up,
            mtu: l.mtu,
            peer,
        });
    }
    let addresses = addrs
        .iter()
        .map(|a| AddrReport {
            link: name_of(a.index).unwrap_or_else(|| format!("#{}", a.index)),
            ifindex: a.index,
            address: a.addr.to_string(),
            family: if a.addr.addr().is_ipv6() {
                "inet6"
            } else {
                "inet"
            },
        })
        .collect();
    Ok(NsReport {
        namespace: ns.name().to_string(),
        kind: ns.kind().as_str(),
        links: link_reports,
        addresses,
        routes,
    })
}

/// The namespaces koko can name: every `ip netns` one and its own.
fn known_namespaces() -> Vec<Namespace> {
    let mut out: Vec<Namespace> = named::list()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| Namespace::netns(n).ok())
        .collect();
    if let Ok(me) = Namespace::current() {
        out.push(me);
    }
    out
}

fn resolve_peer(
    session: &Session,
    t: &Target,
    known: &[Namespace],
    ifindex: u32,
    nsid: i32,
) -> PeerReport {
    let mut report = PeerReport {
        ifindex,
        nsid: Some(nsid),
        namespace: None,
        namespace_name: None,
        name: None,
    };
    for ns in known {
        if *ns == t.ns {
            continue;
        }
        if session.block_on(nsid_of(t, ns)).ok().flatten() != Some(nsid) {
            continue;
        }
        report.namespace = Some(ns.to_string());
        report.namespace_name = Some(ns.name().to_string());
        if let Ok(peer_t) = session.target(ns) {
            report.name = session.block_on(link_name(&peer_t, ifindex)).ok().flatten();
        }
        break;
    }
    report
}

/// The nsid `other` has as seen from `t`'s namespace (None if unassigned).
pub async fn nsid_of(t: &Target, other: &Namespace) -> Result<Option<i32>> {
    let fd = other.open()?;
    let mut msg = NsidMessage::default();
    msg.attributes
        .push(NsidAttribute::Fd(fd.as_raw_fd() as u32));
    let answers = t
        .socket
        .request(RouteNetlinkMessage::GetNsId(msg), 0)
        .await
        .map_err(|errno| {
            Error::kernel(format!("asking {} for the nsid of {other}", t.ns), errno)
        })?;
    drop(fd);
    Ok(answers.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewNsId(n) => n.attributes.iter().find_map(|a| match a {
            NsidAttribute::Id(id) if *id >= 0 => Some(*id),
            _ => None,
        }),
        _ => None,
    }))
}

/// The name of link `index` in `t`'s namespace.
async fn link_name(t: &Target, index: u32) -> Result<Option<String>> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    let answers = t
        .socket
        .request(RouteNetlinkMessage::GetLink(msg), 0)
        .await
        .map_err(|errno| Error::kernel(format!("looking up ifindex {index} in {}", t.ns), errno))?;
    Ok(answers.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        }),
        _ => None,
    }))
}

impl NsReport {
    /// Human-readable lines, `ip`-like.
    pub fn lines(&self, title: &str) -> Vec<String> {
        let mut out = vec![title.to_string(), "links:".to_string()];
        for l in &self.links {
            let mut line = format!(
                "  {}: {} {} {} mtu {}",
                l.ifindex,
                l.name,
                l.kind.as_deref().unwrap_or("device"),
                l.state,
                l.mtu
            );
            if l.state == "up" && !l.carrier {
                line += " (no carrier)";
            }
            if let Some(p) = &l.peer {
                let word = if l.kind.as_deref() == Some("veth") {
                    "peer"
                } else {
                    "parent"
                };
                line += &format!(" {word} {}", p.describe());
            }
            out.push(line);
        }
        out.push("addresses:".into());
        for a in &self.addresses {
            out.push(format!("  {} {} {}", a.link, a.family, a.address));
        }
        out.push("routes:".into());
        for r in &self.routes {
            out.push(format!("  {}", r.line()));
        }
        out
    }
}

//! What is in a namespace: links, addresses and routes, read from the kernel
//! (`koko show`, and later scripts' `ns.links()` / `ns.routes()`).
//!
//! For a veth (or a vlan/macvlan) the kernel tells where the peer (or
//! parent) is: its ifindex and, when it lives in another namespace, that
//! namespace's nsid as seen from here. [`crate::net::nsid`] puts a name on
//! the nsid, searching the same namespaces that link deletion searches
//! (`ip netns` ones, koko's own, those of running processes), so `koko
//! show` and `koko -D` always agree about a peer. A peer in a namespace
//! none of those is (one held only by a bind mount elsewhere, say) is shown
//! as "ifindex N in nsid M".

use crate::error::Result;
use crate::net::route::RouteState;
use crate::net::{addr, link, nsid, route, Session, Target};
use crate::ns::Namespace;

pub use crate::net::nsid::nsid_of;

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
    /// What koko set on this link to degrade it, read from the kernel
    /// (None: nothing of koko's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impairment: Option<ImpairmentReport>,
    /// The koko run that created this link, from the ownership mark the
    /// kernel keeps for it (its alias `koko:RUNID`); on `lo`, the run that
    /// created the namespace. None: not koko's (or made before marks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub koko_run: Option<String>,
}

/// koko's impairments found on one link: what shapes what it sends (its
/// root qdisc), and what drops or shapes what it receives (filters on its
/// ingress, its ifb's root qdisc).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImpairmentReport {
    pub backend: &'static str,
    pub sends: crate::impair::Impairment,
    pub receives: crate::impair::Impairment,
    pub blackhole: bool,
}

impl ImpairmentReport {
    /// "sends delay 20ms loss 1%; receives loss 5%; blackhole".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.sends.is_none() {
            parts.push(format!("sends {}", self.sends));
        }
        if !self.receives.is_none() {
            parts.push(format!("receives {}", self.receives));
        }
        if self.blackhole {
            parts.push("blackhole".into());
        }
        parts.join("; ")
    }
}

/// Read koko's impairments on link `index` of `t`'s namespace.
pub fn impairment_of(
    session: &Session,
    t: &Target,
    index: u32,
) -> Result<Option<ImpairmentReport>> {
    use crate::net::impair::{self as kernel, Drop};
    use crate::net::tc::Hook;
    let root = session
        .block_on(kernel::root(t, index))?
        .and_then(|r| r.koko);
    let ingress = session.block_on(kernel::drop_filters(t, index, Hook::Ingress))?;
    let egress = session.block_on(kernel::drop_filters(t, index, Hook::Egress))?;
    let blackhole = ingress.contains(&Drop::All) || egress.contains(&Drop::All);
    let ifb = session.block_on(kernel::ifb_root(t, index))?;
    let receives = crate::impair::Impairment::read(ifb.as_ref(), &ingress);
    let sends = crate::impair::Impairment::read(root.as_ref(), &[]);
    if sends.is_none() && receives.is_none() && !blackhole {
        return Ok(None);
    }
    Ok(Some(ImpairmentReport {
        backend: crate::impair::Backend::detect().as_str(),
        sends,
        receives,
        blackhole,
    }))
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
                let known = candidates.get_or_insert_with(|| nsid::candidates().collect());
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
            impairment: impairment_of(session, &t, l.index)?,
            koko_run: l
                .alias
                .as_deref()
                .and_then(crate::runs::run_of_mark)
                .map(str::to_string),
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

fn resolve_peer(
    session: &Session,
    t: &Target,
    known: &[Namespace],
    ifindex: u32,
    id: i32,
) -> PeerReport {
    let mut report = PeerReport {
        ifindex,
        nsid: Some(id),
        namespace: None,
        namespace_name: None,
        name: None,
    };
    if let Some(ns) = nsid::find(session, t, known.iter().cloned(), id) {
        report.namespace = Some(ns.to_string());
        report.namespace_name = Some(ns.name().to_string());
        if let Ok(peer_t) = session.target(&ns) {
            report.name = session
                .block_on(link::get_by_index(&peer_t, ifindex))
                .ok()
                .flatten()
                .map(|l| l.name);
        }
    }
    report
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
            if let Some(i) = &l.impairment {
                line += &format!(" impaired: {}", i.describe());
            }
            if let Some(run) = &l.koko_run {
                line += &format!(" (koko run {run})");
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

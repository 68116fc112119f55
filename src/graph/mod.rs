//! `koko graph`: the live wiring, read from the kernel.
//!
//! Not from a journal or a topology file: what is there now. The nodes are
//! network namespaces, one per namespace (device+inode of its nsfs file,
//! however many names it has): koko's own ("host"), every `ip netns`
//! namespace, every running container of the engines that answer (Docker,
//! Podman, CRI pod sandboxes), process namespaces that hold a link koko
//! made (alias `koko:RUNID`), and namespaces koko has no handle on at all.
//!
//! The edges are the links that tie two namespaces (or two links of one):
//! a veth pair, and a vxlan/macvlan/vlan to its parent.
//!
//! ## Finding a peer
//!
//! The kernel tells, for a veth end, its peer's ifindex (IFLA_LINK) and the
//! peer's namespace as an *nsid* (IFLA_LINK_NETNSID): a small number that
//! only means something inside the namespace that reported it. To put a
//! namespace on it, koko asks that namespace's socket (RTM_GETNSID with a
//! namespace fd) which nsid each *plausible* candidate has — a namespace
//! holding a veth with that ifindex whose own peer index points back — so
//! a graph of N namespaces costs about one question per link, not N².
//!
//! A namespace that is none of the known ones (no name, no process koko
//! can see: held by a bind mount in some directory, or by a socket) can
//! still be read *through* the namespace that sees it, by nsid
//! ([`crate::net::wiring`]). It becomes a node named "netns nsid K (seen
//! from X)". Two such sightings of one namespace from two places are
//! merged when their links are identical (ifindex, name, MAC).
//!
//! A veth whose peer cannot be found at all goes to a small "unknown peer"
//! node; links with no peer by nature (a bridge, a NIC, a vxlan without a
//! parent) are listed on their node.
//!
//! Discovery opens a socket in each namespace it reads; a socket keeps its
//! namespace alive, so those koko did not already hold are closed before
//! [`discover`] returns (a script's later `docker kill` must still work).

pub mod render;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::inspect::ImpairmentReport;
use crate::net::wiring::{self, WireLink};
use crate::net::{nsid, Session, Target};
use crate::ns::docker::{Engine, EngineHost};
use crate::ns::{named, Namespace, NsId, NsKind, NsSpec};

/// The JSON schema's name and version: bumped on any incompatible change.
pub const SCHEMA: &str = "koko-graph/1";

/// Where Podman serves its Docker-compatible API when run as a service.
const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The container runtimes that were asked, and what came of it.
    pub engines: Vec<EngineReport>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// One container runtime koko consulted.
#[derive(Debug, Clone, Serialize)]
pub struct EngineReport {
    /// "docker", "podman" or "cri".
    pub kind: &'static str,
    /// Its socket, `unix:///...` (or `tcp://...`).
    pub address: String,
    /// It answered; its running containers (or ready pods) are nodes.
    pub answered: bool,
    /// How many of its containers (pod sandboxes) became nodes.
    pub containers: usize,
    /// Why it did not answer ("no such socket", the engine's error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// koko's own namespace.
    Host,
    /// An `ip netns` namespace.
    Netns,
    /// A Docker container.
    Docker,
    /// A Podman container.
    Podman,
    /// A CRI pod sandbox (containerd, CRI-O).
    Cri,
    /// A process's namespace (no name, no container).
    Pid,
    /// A namespace file given as a target (`netns PATH`).
    Path,
    /// A namespace koko has no handle on, read through another by nsid.
    Nsid,
    /// The far end of a link whose peer could not be found.
    Unknown,
}

/// A network namespace (or an unknown peer).
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Unique in the graph and stable between runs while the namespace
    /// stays: "host", "netns:NAME", "docker:NAME", "podman:NAME",
    /// "cri:NAME", "pid:PID", "path:PATH", "nsid:VIEWER:K", "unknown:...".
    pub id: String,
    pub kind: NodeKind,
    /// The name a person reads: the netns or container name, a pid, ...
    pub name: String,
    /// Other names of the same namespace (a netns also named otherwise, a
    /// container sharing another's network).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The namespace's identity (device and inode of its nsfs file); None
    /// for nsid and unknown nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<NsId>,
    /// Every link but `lo`, in ifindex order.
    pub links: Vec<Link>,
}

/// One link of a node.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub name: String,
    pub ifindex: u32,
    /// "veth", "vxlan", "bridge", ...; None for a device without a kind.
    pub kind: Option<String>,
    /// Operational state as `ip link` says it: "up", "down",
    /// "lowerlayerdown" (its veth peer is down), "unknown".
    pub state: String,
    /// Administratively up.
    pub up: bool,
    pub mtu: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// ADDR/PREFIX, IPv4 and IPv6 (link-local IPv6 left out).
    pub addresses: Vec<String>,
    /// The bridge this link is a port of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// A vxlan's VNI and remote (or group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// koko's impairment on this link, read back from tc.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impairment: Option<ImpairmentReport>,
    /// koko's mirrors of this link's traffic (its tc filters with a mirred
    /// action carrying koko's cookie).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
    /// The koko run that made it (its alias `koko:RUNID`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub koko_run: Option<String>,
    /// Part of an edge (false: listed on its node only).
    pub wired: bool,
}

/// A copy of a link's traffic in one direction, sent out through another
/// link of the same namespace (`koko ... mirror:DIR:IFACE`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mirror {
    /// "ingress" (what the link receives) or "egress" (what it sends).
    pub direction: &'static str,
    /// The link the copies leave through.
    pub to: String,
}

impl Mirror {
    /// "mirrors ingress to mir0".
    pub fn describe(&self) -> String {
        format!("mirrors {} to {}", self.direction, self.to)
    }
}

/// A link between two nodes: a veth pair (`a` and `b` are its ends), or a
/// vxlan/macvlan/vlan (`a`) and its parent (`b`).
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    /// "veth", or the child's kind ("vxlan", "macvlan", "vlan", ...).
    pub kind: String,
    pub a: End,
    pub b: End,
}

/// One end of an edge.
#[derive(Debug, Clone, Serialize)]
pub struct End {
    /// The node's id.
    pub node: String,
    /// The link's name (for an unknown peer: "ifindex N").
    pub link: String,
    pub ifindex: u32,
    pub addresses: Vec<String>,
    pub state: String,
    pub mtu: u32,
    /// koko's impairment on this end, in words ("sends rate 1mbit"), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impairment: Option<String>,
    /// koko's mirrors of this end's traffic.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
}

/// What to draw: everything, or some namespaces and their neighbours.
#[derive(Debug, Clone, Default)]
pub enum Scope {
    #[default]
    All,
    /// These namespaces and every node one edge away.
    Targets(Vec<NsSpec>),
    /// The same, for namespaces already looked up (a script's handles).
    Namespaces(Vec<Namespace>),
}

// ------------------------------------------------------------ discovery

/// A namespace being read: a handle, or a sighting by nsid from another.
struct Place {
    ns: Option<Namespace>,
    /// Read through place `.0`'s socket as its nsid `.1`.
    via: Option<(usize, i32)>,
    kind: NodeKind,
    id: String,
    name: String,
    aliases: Vec<String>,
    links: Vec<WireLink>,
    addrs: Vec<(u32, String)>,
    /// Drawn (a known namespace, or found as a neighbour).
    shown: bool,
    /// Its links have been followed to their peers.
    expanded: bool,
}

impl Place {
    fn handle(ns: Namespace, kind: NodeKind, id: String, name: String) -> Place {
        Place {
            ns: Some(ns),
            via: None,
            kind,
            id,
            name,
            aliases: Vec::new(),
            links: Vec::new(),
            addrs: Vec::new(),
            shown: false,
            expanded: false,
        }
    }

    fn link(&self, index: u32) -> Option<usize> {
        self.links.iter().position(|l| l.index == index)
    }
}

/// Where a link's other end is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Far {
    Found(usize, usize),
    /// Its namespace could not be read (nothing to point at).
    Lost,
}

struct Discovery<'a> {
    session: &'a Session,
    places: Vec<Place>,
    by_id: HashMap<NsId, usize>,
    /// (asking place, nsid) → the place it means (None: none readable).
    nsids: HashMap<(usize, i32), Option<usize>>,
    /// (asking place, candidate place) → the candidate's nsid there.
    asked: HashMap<(usize, usize), Option<i32>>,
    /// Every place read so far by its links' fingerprint (made on first
    /// use, after all known places are loaded).
    prints: Option<HashMap<Fingerprint, usize>>,
    engines: Vec<EngineReport>,
}

impl<'a> Discovery<'a> {
    /// Add a namespace, or a name to the place it already is.
    fn add(&mut self, ns: Namespace, kind: NodeKind, id: String, name: String) -> usize {
        if let Some(&i) = self.by_id.get(&ns.id()) {
            let p = &mut self.places[i];
            if p.name != name && !p.aliases.contains(&name) {
                p.aliases.push(name);
            }
            return i;
        }
        self.by_id.insert(ns.id(), self.places.len());
        self.places.push(Place::handle(ns, kind, id, name));
        self.places.len() - 1
    }

    /// Read links and addresses of place `i` from its own socket.
    fn load(&mut self, i: usize) -> Result<()> {
        let ns = self.places[i].ns.clone().expect("a handle");
        let t = self.session.target(&ns)?;
        let links = self.session.block_on(wiring::links(&t, None))?;
        let addrs = self.session.block_on(wiring::addresses(&t, None))?;
        let p = &mut self.places[i];
        p.links = links;
        p.addrs = addrs.into_iter().map(|(i, a)| (i, a.to_string())).collect();
        Ok(())
    }

    /// The socket to ask for place `i`'s nsids: its own, or the one it was
    /// seen through (the kernel numbers a by-nsid dump's nsids as the
    /// asker does).
    fn frame(&self, i: usize) -> usize {
        match self.places[i].via {
            Some((viewer, _)) => viewer,
            None => i,
        }
    }

    fn target(&self, i: usize) -> Result<Target> {
        self.session
            .target(self.places[i].ns.as_ref().expect("a frame has a handle"))
    }

    /// The nsid candidate place `c` has as seen from place `frame`.
    fn nsid_of(&mut self, frame: usize, c: usize) -> Option<i32> {
        if let Some(&known) = self.asked.get(&(frame, c)) {
            return known;
        }
        let id = match (self.target(frame), self.places[c].ns.clone()) {
            (Ok(t), Some(ns)) => self.session.block_on(nsid::nsid_of(&t, &ns)).ok().flatten(),
            _ => None,
        };
        self.asked.insert((frame, c), id);
        id
    }

    /// Where link `l` of place `p` leads (`index` in the namespace
    /// `netnsid` names, or in `p` itself).
    fn far_end(&mut self, p: usize, l: usize, index: u32, netnsid: Option<i32>) -> Far {
        let Some(k) = netnsid else {
            return match self.places[p].link(index) {
                Some(j) => Far::Found(p, j),
                None => Far::Lost,
            };
        };
        let frame = self.frame(p);
        let place = match self.nsids.get(&(frame, k)) {
            Some(&known) => known,
            None => {
                let found = self.place_of_nsid(p, l, frame, k, index);
                self.nsids.insert((frame, k), found);
                found
            }
        };
        match place.and_then(|q| self.places[q].link(index).map(|j| (q, j))) {
            Some((q, j)) => Far::Found(q, j),
            None => Far::Lost,
        }
    }

    /// Which place `frame` calls nsid `k`. First the cheap way: read that
    /// namespace's links through `frame` by nsid and look them up among
    /// the namespaces already read (ifindex, name and MAC of every link:
    /// veth MACs are random, so this is as good as an identity), then
    /// confirm with one RTM_GETNSID. Failing that, ask about every
    /// plausible known namespace (one holding a link `index` that fits).
    /// Failing that too, it is a namespace koko has no handle on: a new
    /// sighting, read through `frame`.
    fn place_of_nsid(
        &mut self,
        p: usize,
        l: usize,
        frame: usize,
        k: i32,
        index: u32,
    ) -> Option<usize> {
        let seen = self
            .target(frame)
            .ok()
            .and_then(|t| self.session.block_on(wiring::links(&t, Some(k))).ok())
            .filter(|links| !links.is_empty());
        if let Some(links) = &seen {
            let print = fingerprint(links);
            if self.prints.is_none() {
                let mut all = HashMap::new();
                for (i, q) in self.places.iter().enumerate() {
                    if !q.links.is_empty() {
                        all.entry(fingerprint(&q.links)).or_insert(i);
                    }
                }
                self.prints = Some(all);
            }
            let known = self.prints.as_ref().and_then(|m| m.get(&print).copied());
            if let Some(q) = known.filter(|&q| q != p) {
                // Seen by nsid before (no handle): the same sighting.
                if self.places[q].ns.is_none() || self.nsid_of(frame, q) == Some(k) {
                    return Some(q);
                }
            }
        }
        let me = &self.places[p].links[l];
        let (my_index, veth) = (me.index, me.kind.as_deref() == Some("veth"));
        let plausible: Vec<usize> = (0..self.places.len())
            // A sighting's peer may be in the namespace it is seen from.
            .filter(|&q| q != p && self.places[q].ns.is_some())
            .filter(|&q| {
                self.places[q].links.iter().any(|o| {
                    o.index == index
                        && (!veth
                            || (o.kind.as_deref() == Some("veth")
                                && o.link_index == Some(my_index)))
                })
            })
            .collect();
        for q in plausible {
            if self.nsid_of(frame, q) == Some(k) {
                return Some(q);
            }
        }
        let links = seen?;
        let t = self.target(frame).ok()?;
        let addrs = self
            .session
            .block_on(wiring::addresses(&t, Some(k)))
            .unwrap_or_default();
        let viewer = &self.places[frame];
        let (viewer_id, viewer_name) = (viewer.id.clone(), viewer.name.clone());
        let print = fingerprint(&links);
        self.places.push(Place {
            ns: None,
            via: Some((frame, k)),
            kind: NodeKind::Nsid,
            id: format!("nsid:{viewer_id}:{k}"),
            name: format!("netns nsid {k} (seen from {viewer_name})"),
            aliases: Vec::new(),
            links,
            addrs: addrs.into_iter().map(|(i, a)| (i, a.to_string())).collect(),
            shown: false,
            expanded: false,
        });
        let q = self.places.len() - 1;
        if let Some(m) = self.prints.as_mut() {
            m.entry(print).or_insert(q);
        }
        Some(q)
    }
}

/// What tells one namespace's links from another's: every link's ifindex,
/// name and MAC address.
type Fingerprint = Vec<(u32, String, Option<String>)>;

fn fingerprint(links: &[WireLink]) -> Fingerprint {
    links
        .iter()
        .map(|l| (l.index, l.name.clone(), l.mac.clone()))
        .collect()
}

/// The namespaces and containers koko knows by name, then the rest.
fn gather(d: &mut Discovery) -> Result<()> {
    let host = Namespace::current()?;
    d.add(host, NodeKind::Host, "host".into(), "host".into());
    for name in named::list().unwrap_or_default() {
        if let Ok(ns) = Namespace::netns(&name) {
            d.add(ns, NodeKind::Netns, format!("netns:{name}"), name);
        }
    }
    containers(d)?;
    pods(d);
    processes(d);
    Ok(())
}

/// Running Docker (and Podman) containers. An engine that is not there is
/// simply absent: the report says it was asked and did not answer. (Only
/// a stop signal while waiting for an engine is an error.)
fn containers(d: &mut Discovery) -> Result<()> {
    let mut hosts = Vec::new();
    match EngineHost::from_env() {
        Ok(h) => hosts.push(h),
        Err(e) => d.engines.push(EngineReport {
            kind: "docker",
            address: std::env::var("DOCKER_HOST").unwrap_or_default(),
            answered: false,
            containers: 0,
            note: Some(e.to_string()),
        }),
    }
    let podman = EngineHost::Unix(PODMAN_SOCKET.into());
    if !hosts.contains(&podman) && Path::new(PODMAN_SOCKET).exists() {
        hosts.push(podman);
    }
    // Ask every engine at once: each answers in its own time (Podman's
    // service is slow to list), and the graph waits for the slowest only.
    let asks = hosts.iter().map(|host| async move {
        if let EngineHost::Unix(path) = host {
            if !path.exists() {
                return Err("no such socket".to_string());
            }
        }
        let listed = async { Engine::connect_to(host.clone()).await?.running().await };
        listed.await.map_err(engine_note)
    });
    let answers = d
        .session
        .block_on_interruptible(async { Ok(futures::future::join_all(asks).await) })?;
    for (host, answer) in hosts.into_iter().zip(answers) {
        let kind = match &host {
            EngineHost::Unix(p) if p.to_string_lossy().contains("podman") => NodeKind::Podman,
            _ => NodeKind::Docker,
        };
        let word = if kind == NodeKind::Podman {
            "podman"
        } else {
            "docker"
        };
        let mut report = EngineReport {
            kind: word,
            address: host.to_string(),
            answered: false,
            containers: 0,
            note: None,
        };
        match answer {
            Ok(list) => {
                report.answered = true;
                for c in list {
                    if let Ok(ns) = Namespace::for_container(NsKind::Docker, &c.name, c.pid) {
                        d.add(ns, kind, format!("{word}:{}", c.name), c.name.clone());
                        report.containers += 1;
                    }
                }
            }
            Err(note) => report.note = Some(note),
        }
        d.engines.push(report);
    }
    Ok(())
}

/// Ready CRI pod sandboxes, when a CRI runtime answers.
fn pods(d: &mut Discovery) {
    let mut report = EngineReport {
        kind: "cri",
        address: String::new(),
        answered: false,
        containers: 0,
        note: None,
    };
    let listed = d.session.block_on(async {
        let rt = crate::ns::cri::Runtime::connect("(every pod sandbox)").await?;
        let address = format!("unix://{}", rt.socket().display());
        Ok::<_, Error>((address, rt.sandboxes().await?))
    });
    match listed {
        Ok((address, pods)) => {
            report.address = address;
            report.answered = true;
            for (name, ns) in pods {
                let id = format!("cri:{name}");
                d.add(ns, NodeKind::Cri, id, name);
                report.containers += 1;
            }
        }
        Err(e) => report.note = Some(engine_note(e)),
    }
    d.engines.push(report);
}

/// Why an engine did not answer, without the "looking up ..." that the
/// engine clients put first (they were looking up nothing in particular).
fn engine_note(e: Error) -> String {
    match e {
        Error::Engine { cause, .. } => cause,
        other => other.to_string(),
    }
}

/// The namespace of every process koko can see, once each (by device and
/// inode), that is not already known: candidates for peers, and shown by
/// themselves when they hold a link koko made.
fn processes(d: &mut Discovery) {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    pids.sort_unstable();
    let mut seen: HashSet<NsId> = d.by_id.keys().copied().collect();
    for pid in pids {
        // A cheap stat first: most processes share a few namespaces.
        let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        let id = NsId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        if !seen.insert(id) {
            continue;
        }
        if let Ok(ns) = Namespace::pid(pid) {
            d.add(ns, NodeKind::Pid, format!("pid:{pid}"), pid.to_string());
        }
    }
}

/// Read the live wiring. `scope` narrows it to some namespaces and their
/// neighbours.
pub fn discover(session: &Session, scope: &Scope) -> Result<Topology> {
    let held: HashSet<NsId> = session.open_namespaces().iter().map(|n| n.id()).collect();
    let outcome = discover_inner(session, scope);
    // Close the sockets this opened: each keeps its namespace alive.
    for ns in session.open_namespaces() {
        if !held.contains(&ns.id()) {
            session.forget(&ns);
        }
    }
    outcome
}

fn discover_inner(session: &Session, scope: &Scope) -> Result<Topology> {
    let mut d = Discovery {
        session,
        places: Vec::new(),
        by_id: HashMap::new(),
        nsids: HashMap::new(),
        asked: HashMap::new(),
        prints: None,
        engines: Vec::new(),
    };
    gather(&mut d)?;
    // The targets, resolved as the rest of koko resolves them (a target
    // that does not exist is an error naming it).
    let handles = match scope {
        Scope::All => Vec::new(),
        Scope::Targets(specs) => specs
            .iter()
            .map(|spec| session.resolve(spec))
            .collect::<Result<Vec<_>>>()?,
        Scope::Namespaces(list) => list.clone(),
    };
    let mut targets = Vec::new();
    {
        for ns in handles {
            let (kind, id) = match ns.kind() {
                NsKind::Netns => (NodeKind::Netns, format!("netns:{}", ns.name())),
                NsKind::Host => (NodeKind::Host, "host".into()),
                NsKind::Docker => (NodeKind::Docker, format!("docker:{}", ns.name())),
                NsKind::Cri => (NodeKind::Cri, format!("cri:{}", ns.name())),
                NsKind::Pid => (NodeKind::Pid, format!("pid:{}", ns.name())),
                NsKind::Path => (NodeKind::Path, format!("path:{}", ns.name())),
            };
            let name = ns.name().to_string();
            targets.push(d.add(ns, kind, id, name));
        }
    }
    // Every place's links (a namespace that vanished meanwhile is dropped).
    let mut gone = Vec::new();
    for i in 0..d.places.len() {
        if let Err(e) = d.load(i) {
            if e.is_namespace_not_found() || i != 0 {
                gone.push(i);
            } else {
                return Err(e);
            }
        }
    }
    for &i in &gone {
        d.places[i].shown = false;
        d.places[i].ns = None;
        d.places[i].links.clear();
    }
    // What is shown to begin with.
    let mut queue: Vec<usize> = match scope {
        Scope::All => (0..d.places.len())
            .filter(|&i| d.places[i].ns.is_some())
            .filter(|&i| {
                let p = &d.places[i];
                p.kind != NodeKind::Pid || p.links.iter().any(WireLink::is_kokos)
            })
            .collect(),
        Scope::Targets(_) | Scope::Namespaces(_) => targets.clone(),
    };
    for &i in &queue {
        d.places[i].shown = true;
    }
    // Follow links; with All, every newly shown place is followed too.
    let mut pairs: Vec<(String, (usize, usize), Far)> = Vec::new();
    let mut done: HashSet<(usize, usize)> = HashSet::new();
    // In order (a queue, not a stack), so the graph reads in discovery
    // order: host, named namespaces, containers, then what they lead to.
    let mut next = 0;
    while next < queue.len() {
        let p = queue[next];
        next += 1;
        if d.places[p].expanded {
            continue;
        }
        d.places[p].expanded = true;
        for l in 0..d.places[p].links.len() {
            if done.contains(&(p, l)) {
                continue;
            }
            let link = d.places[p].links[l].clone();
            let (kind, far) = if link.kind.as_deref() == Some("veth") {
                let Some(index) = link.link_index else {
                    continue;
                };
                (
                    "veth".to_string(),
                    d.far_end(p, l, index, link.link_netnsid),
                )
            } else if let Some(parent) = link.parent() {
                // A vxlan's parent is in its creation namespace, which is
                // its link-netns when it was moved.
                let kind = link.kind.clone().unwrap_or_default();
                (kind, d.far_end(p, l, parent, link.link_netnsid))
            } else {
                continue;
            };
            done.insert((p, l));
            if let Far::Found(q, j) = far {
                if kind == "veth" {
                    done.insert((q, j));
                }
                if !d.places[q].shown {
                    d.places[q].shown = true;
                    if matches!(scope, Scope::All) {
                        queue.push(q);
                    }
                }
            }
            pairs.push((kind, (p, l), far));
        }
    }
    // Impairments of the links drawn, from tc.
    let mut impairments: HashMap<(usize, usize), ImpairmentReport> = HashMap::new();
    let mut mirrors: HashMap<(usize, usize), Vec<Mirror>> = HashMap::new();
    for (i, p) in d.places.iter().enumerate() {
        let Some(ns) = (p.shown).then_some(p.ns.as_ref()).flatten() else {
            continue;
        };
        let Ok(t) = session.target(ns) else { continue };
        for (j, l) in p.links.iter().enumerate() {
            if l.name == "lo" {
                continue;
            }
            if let Ok(Some(r)) = crate::inspect::impairment_of(session, &t, l.index) {
                impairments.insert((i, j), r);
            }
            let found = mirrors_of(session, &t, &p.links, l.index);
            if !found.is_empty() {
                mirrors.insert((i, j), found);
            }
        }
    }
    Ok(build(&d, pairs, &impairments, &mirrors))
}

/// koko's mirrors on link `index`: its filters, on either clsact hook,
/// whose mirred action carries koko's cookie (an impairment's redirect to
/// its ifb carries another, and is not a mirror).
fn mirrors_of(session: &Session, t: &Target, links: &[WireLink], index: u32) -> Vec<Mirror> {
    use crate::net::tc::{self, Hook};
    let mut out = Vec::new();
    for hook in Hook::ALL {
        let Ok(filters) = session.block_on(tc::filters(t, index, hook)) else {
            continue;
        };
        for f in filters {
            let Some(&(_, to)) = f.mirreds.first() else {
                continue;
            };
            if !f.is_kokos_mirror_to(to) {
                continue;
            }
            let mirror = Mirror {
                direction: hook.as_str(),
                to: links
                    .iter()
                    .find(|l| l.index == to)
                    .map(|l| l.name.clone())
                    .unwrap_or_else(|| format!("ifindex {to}")),
            };
            if !out.contains(&mirror) {
                out.push(mirror);
            }
        }
    }
    out
}

/// Turn the places and pairs into the typed topology.
fn build(
    d: &Discovery,
    pairs: Vec<(String, (usize, usize), Far)>,
    impairments: &HashMap<(usize, usize), ImpairmentReport>,
    mirrors: &HashMap<(usize, usize), Vec<Mirror>>,
) -> Topology {
    let wired: HashSet<(usize, usize)> = pairs
        .iter()
        .flat_map(|(_, a, far)| {
            let mut v = vec![*a];
            if let Far::Found(q, j) = far {
                v.push((*q, *j));
            }
            v
        })
        .collect();
    let addresses = |p: usize, index: u32| -> Vec<String> {
        d.places[p]
            .addrs
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, a)| a.clone())
            .collect()
    };
    let mut nodes = Vec::new();
    for (i, p) in d.places.iter().enumerate() {
        if !p.shown {
            continue;
        }
        let links = p
            .links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.name != "lo")
            .map(|(j, l)| Link {
                name: l.name.clone(),
                ifindex: l.index,
                kind: l.kind.clone(),
                state: l.oper.clone(),
                up: l.up,
                mtu: l.mtu,
                mac: l.mac.clone(),
                addresses: addresses(i, l.index),
                master: l
                    .master
                    .and_then(|m| p.link(m).map(|k| p.links[k].name.clone())),
                vni: l.vxlan_id,
                remote: l.vxlan_remote.map(|r| r.to_string()),
                impairment: impairments.get(&(i, j)).cloned(),
                mirrors: mirrors.get(&(i, j)).cloned().unwrap_or_default(),
                koko_run: l
                    .alias
                    .as_deref()
                    .and_then(crate::runs::run_of_mark)
                    .map(str::to_string),
                wired: wired.contains(&(i, j)),
            })
            .collect();
        nodes.push(Node {
            id: p.id.clone(),
            kind: p.kind,
            name: p.name.clone(),
            aliases: p.aliases.clone(),
            inode: p.ns.as_ref().map(Namespace::id),
            links,
        });
    }
    let end = |p: usize, j: usize| -> End {
        let l = &d.places[p].links[j];
        End {
            node: d.places[p].id.clone(),
            link: l.name.clone(),
            ifindex: l.index,
            addresses: addresses(p, l.index),
            state: l.oper.clone(),
            mtu: l.mtu,
            impairment: impairments.get(&(p, j)).map(ImpairmentReport::describe),
            mirrors: mirrors.get(&(p, j)).cloned().unwrap_or_default(),
        }
    };
    let mut edges = Vec::new();
    for (kind, (p, l), far) in pairs {
        let a = end(p, l);
        let b = match far {
            Far::Found(q, j) => end(q, j),
            Far::Lost => {
                let link = &d.places[p].links[l];
                let index = link.link_index.or(link.vxlan_parent).unwrap_or(0);
                let id = format!("unknown:{}:{}", d.places[p].id, link.name);
                nodes.push(Node {
                    id: id.clone(),
                    kind: NodeKind::Unknown,
                    name: match link.link_netnsid {
                        Some(k) => format!("unknown peer (nsid {k})"),
                        None => "unknown peer".into(),
                    },
                    aliases: Vec::new(),
                    inode: None,
                    links: Vec::new(),
                });
                End {
                    node: id,
                    link: format!("ifindex {index}"),
                    ifindex: index,
                    addresses: Vec::new(),
                    state: "unknown".into(),
                    mtu: 0,
                    impairment: None,
                    mirrors: Vec::new(),
                }
            }
        };
        edges.push(Edge { kind, a, b });
    }
    Topology {
        schema: SCHEMA,
        engines: d.engines.clone(),
        nodes,
        edges,
    }
}

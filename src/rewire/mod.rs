//! Links that survive restarts: keeping a lab wired while its containers
//! and namespaces come and go (`koko run --keep-wired`, `keep_wired()`).
//!
//! A veth end lives in a network namespace and dies with it. When Docker
//! restarts a container, the container gets a *new* network namespace: the
//! old one is destroyed with every link end in it, and the other end of
//! each of those veths (in the peers) dies too, taking the peer side's
//! addresses and the routes through it along. Nothing comes back by itself.
//!
//! # The desired state: a [`Lab`] of [`Wire`]s
//!
//! Everything a run built is in its [`Journal`] — as *inverses* (delete
//! this veth, remove that address). Rewiring needs the *forward* recipe, per
//! endpoint. [`Lab::fold`] builds it from the journal's steps, reading what
//! the steps do not say from the kernel while the objects exist (the peer's
//! name and the MTU of a veth, the addresses on its ends, the value a
//! sysctl was set to, the route a `replace` installed):
//!
//! * an [`Endpoint`] is a place identified by what survives a restart: a
//!   container's name (Docker/Podman), a netns NAME (`ip netns`), a CRI
//!   pod's Kubernetes namespace and name (a re-created sandbox has a new id,
//!   `uid` and `attempt`: see [`Lab::ask_runtime`]) — never the
//!   namespace's inode, which is new after a restart. Other places (koko's
//!   own namespace, a pid, a path) are fixed: they do not restart.
//! * a [`Wire`] is a veth the run made: both ends (endpoint, name) and the
//!   MTU;
//! * each endpoint has the addresses, routes, sysctls and mirrors the run
//!   set there; each wire, the impairments the run set on it.
//!
//! The journal is folded incrementally (steps recorded after the last fold),
//! so a script that calls `keep_wired()` first and builds afterwards is
//! covered, and so is what a hook builds later.
//!
//! # Repair: converging, not replaying
//!
//! When an endpoint comes back with a new namespace ([`watch`] says when),
//! it is marked *dirty*, and so are its wire peers (their ends of its veths
//! died with it). [`Lab::converge`] then makes the desired state true for
//! the dirty endpoints, idempotently: a wire whose two ends exist is left
//! alone, one with a leftover end (the peer end of a veth whose namespace
//! is still being torn down: it carries the run's mark) has it removed and
//! is made again with [`connect::veth`] (same names, MTU, addresses);
//! addresses, routes and sysctls are added only where missing. Everything
//! it makes is recorded in the same journal (and marked), so the final
//! undo removes it too. A wire whose other end is down waits: it is made by
//! the repair of that end, as soon as both exist. A repair that fails half
//! way (the namespace vanished again: a restart during a repair) leaves the
//! endpoint dirty and the next pass converges again — so back-to-back and
//! simultaneous restarts end in the full lab.
//!
//! Mirrors and impairments on the run's links come back too: the mirror
//! steps name the target by ifindex, so its name and the direction are read
//! from koko's own tc filters when the step is folded; a wire's impairments
//! are read back (`impair::impairments`) after each change the run made,
//! and re-applied with the same calls as `link.impair()` / `blackhole()`
//! when the wire is made again. What is not re-created (said once when the
//! watch starts): links other than veth pairs (vxlan/macvlan need their
//! parent), impairments on other links. A container that is *removed* (not restarted) is reported and its wires
//! are dropped from the lab. Nothing the run did not build is touched: the
//! only deletion is of a leftover end carrying the run's own mark.

pub mod watch;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::connect::{self, EndRequest, MirrorRequest, VethRequest};
use crate::error::{Error, Result};
use crate::impair::{self, End, Impairments, LinkPair};
use crate::journal::{Journal, Undo};
use crate::net::link::{self, VethOptions};
use crate::net::route::{self, RouteRequest};
use crate::net::tc::{self, Hook, MirrorDir};
use crate::net::{addr, sysctl, Session};
use crate::ns::cri::PodKey;
use crate::ns::{Namespace, NsId, NsKind, NsSpec};

/// What identifies an endpoint across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    /// A Docker/Podman container, by the name the script used.
    Container(String),
    /// An `ip netns` namespace, by name.
    Netns(String),
    /// A CRI pod (the sandbox, or a container in it), by its Kubernetes
    /// namespace and name: a re-created sandbox has a new id.
    Pod(PodKey),
    /// A namespace that does not restart (koko's own, a pid's, a path).
    Fixed(NsId),
}

impl Place {
    fn of(ns: &Namespace) -> Place {
        match ns.kind() {
            NsKind::Docker => Place::Container(ns.name().to_string()),
            NsKind::Netns => Place::Netns(ns.name().to_string()),
            _ => Place::Fixed(ns.id()),
        }
    }
}

/// A repair under way: when the endpoint's new namespace appeared, and what
/// was rebuilt for it so far.
#[derive(Debug, Clone, Default)]
struct Repair {
    /// The engine's start event (or the moment koko saw the namespace),
    /// in ms since the epoch.
    since_epoch_ms: f64,
    counts: Counts,
}

/// What one repair rebuilt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub links: usize,
    pub addresses: usize,
    pub routes: usize,
    pub sysctls: usize,
    pub mirrors: usize,
    pub impairments: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.links += o.links;
        self.addresses += o.addresses;
        self.routes += o.routes;
        self.sysctls += o.sysctls;
        self.mirrors += o.mirrors;
        self.impairments += o.impairments;
    }
}

/// One place of the lab and what the run built there.
#[derive(Debug)]
pub struct Endpoint {
    pub place: Place,
    /// What the user called it ("firewall", "x").
    pub name: String,
    pub kind: NsKind,
    /// The namespace it has now; None while it is down.
    current: Option<Namespace>,
    /// Removed for good (a container destroyed): never rewired.
    removed: bool,
    /// Addresses the run set, on which link.
    addrs: Vec<(String, IpNet)>,
    routes: Vec<RouteRequest>,
    /// sysctl key and the value the run set.
    sysctls: Vec<(String, String)>,
    /// Mirrors the run installed here: source link, direction, target link.
    mirrors: Vec<(String, MirrorDir, String)>,
    /// Its state must be made true again (it, or a wire peer, came back).
    dirty: bool,
    repair: Option<Repair>,
    /// Passes that failed in a row (a retry limit, and one message).
    failures: u32,
    /// Work done in the current pass, reported by the repair it serves.
    pass: Counts,
}

impl Endpoint {
    /// "container 'firewall'", "netns 'x'".
    pub fn describe(&self) -> String {
        match &self.place {
            Place::Container(n) => format!("container '{n}'"),
            Place::Netns(n) => format!("netns '{n}'"),
            Place::Pod(k) => format!("CRI pod '{k}'"),
            Place::Fixed(_) => self
                .current
                .as_ref()
                .map(|ns| ns.to_string())
                .unwrap_or_else(|| self.name.clone()),
        }
    }
}

/// A veth the run made: (endpoint index, link name) at each end.
#[derive(Debug, Clone)]
pub struct Wire {
    pub a: (usize, String),
    pub b: (usize, String),
    pub mtu: u32,
    /// The impairments the run set on it (as the kernel had them after
    /// the run's last change), if it set any.
    pub impairments: Option<Impairments>,
}

impl Wire {
    fn same_ends(&self, o: &Wire) -> bool {
        self.a == o.a && self.b == o.b
    }

    fn has_end(&self, i: usize, name: &str) -> bool {
        (self.a.0 == i && self.a.1 == name) || (self.b.0 == i && self.b.1 == name)
    }
}

/// What a finished repair reports (printed, and given to `on_rewired`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rewired {
    /// "rewired" (a repair), or "removed" (a container removed for good).
    pub kind: &'static str,
    /// The container's or namespace's name; for a CRI pod,
    /// "k8s-namespace/pod-name".
    pub namespace: String,
    /// "docker", "netns" or "cri".
    pub ns_kind: &'static str,
    /// What it rebuilt (for "removed": `links` only, the links dropped).
    #[serde(flatten)]
    pub counts: Counts,
    /// From the engine's start event (or the namespace's appearance) to
    /// the end of the repair, rounded to 0.1 ms.
    pub ms_after_start: f64,
    /// When the repair ended, ms since the epoch.
    pub time: f64,
}

impl Rewired {
    /// The line koko prints for it.
    pub fn line(&self) -> String {
        let what = match self.ns_kind {
            "netns" => format!("netns '{}'", self.namespace),
            "cri" => format!("CRI pod '{}'", self.namespace),
            _ => format!("container '{}'", self.namespace),
        };
        if self.kind == "removed" {
            return format!(
                "koko: {what} was removed: its {} link(s) are not re-created",
                self.counts.links
            );
        }
        let since = match self.ns_kind {
            "netns" => "after its namespace appeared",
            "cri" => "after its sandbox was created",
            _ => "after its start event",
        };
        let mut tc = String::new();
        if self.counts.mirrors > 0 {
            tc.push_str(&format!(", {} mirror(s)", self.counts.mirrors));
        }
        if self.counts.impairments > 0 {
            tc.push_str(&format!(", {} impairment(s)", self.counts.impairments));
        }
        format!(
            "koko: rewired {what}: {} link(s), {} address(es), {} route(s), {} sysctl(s){tc} in {:.1} ms {since}",
            self.counts.links, self.counts.addresses, self.counts.routes, self.counts.sysctls, self.ms_after_start
        )
    }
}

/// How many failed passes in a row before a repair gives up (a pass runs
/// at most every few tens of ms while something is dirty).
const MAX_FAILURES: u32 = 100;

/// The desired state of a run's lab, and its repairs.
#[derive(Debug, Default)]
pub struct Lab {
    pub endpoints: Vec<Endpoint>,
    pub wires: Vec<Wire>,
    /// How many journal entries are folded in.
    folded: usize,
    /// What the lab holds that a restart would lose and koko does not
    /// re-create (said once).
    pub unsupported: Vec<String>,
    said_unsupported: usize,
    /// CRI namespaces met in the journal (by identity): their pod and its
    /// sandbox's namespace (see [`Lab::place_of`]).
    pods: HashMap<NsId, (Place, Namespace)>,
    /// The last question to the CRI runtime failed (said once).
    runtime_failed: bool,
    /// Journal entries (by index) whose veth was recorded again through
    /// its pod's namespace (see [`Lab::rehold_pod_links`]).
    reheld: std::collections::HashSet<usize>,
}

/// ms since the epoch now.
pub fn epoch_ms() -> f64 {
    crate::probe::epoch_ms()
}

impl Lab {
    pub fn new() -> Lab {
        Lab::default()
    }

    /// Whether any endpoint is a container (the engine's events are needed).
    pub fn has_containers(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| matches!(e.place, Place::Container(_)) && !e.removed)
    }

    /// Whether a repair is waiting for another pass.
    pub fn busy(&self) -> bool {
        self.endpoints.iter().any(|e| e.dirty && !e.removed)
    }

    /// Whether an endpoint is a CRI pod that is down (the runtime must be
    /// asked whether it has a new sandbox).
    pub fn has_pods_down(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| matches!(e.place, Place::Pod(_)) && e.current.is_none() && !e.removed)
    }

    /// Where `ns` is in the lab, and the namespace handle to keep for it.
    ///
    /// A CRI endpoint (a sandbox's id or a container's) is its pod: the
    /// handle kept is the *sandbox's* namespace (its pause process), which
    /// lives as long as the pod's network does. A container's own handle
    /// would go with the container's process, and a container restarted
    /// inside the pod — same namespace, nothing lost — would look like a
    /// pod that went down. A CRI id whose pod cannot be read any more is a
    /// fixed place (it cannot be followed).
    fn place_of(&mut self, session: &Session, ns: &Namespace) -> (Place, Namespace) {
        if ns.kind() == NsKind::Cri {
            if let Some(known) = self.pods.get(&ns.id()) {
                return known.clone();
            }
            let pod = session.cri(ns.name()).and_then(|rt| {
                let pod = session.block_on(rt.pod_of(ns.name()))?;
                let sandbox = session.block_on(rt.resolve(&pod.id))?;
                Ok((Place::Pod(pod.key), sandbox))
            });
            if let Ok(known) = pod {
                self.pods.insert(ns.id(), known.clone());
                return known;
            }
        }
        (Place::of(ns), ns.clone())
    }

    fn endpoint_for(&mut self, session: &Session, ns: &Namespace) -> usize {
        let (place, ns) = self.place_of(session, ns);
        let ns = &ns;
        if let Some(i) = self.endpoints.iter().position(|e| e.place == place) {
            if self.endpoints[i].current.is_none() && ns.exists() {
                self.endpoints[i].current = Some(ns.clone());
            }
            return i;
        }
        let name = match &place {
            Place::Pod(k) => k.to_string(),
            _ => ns.name().to_string(),
        };
        self.endpoints.push(Endpoint {
            place,
            name,
            kind: ns.kind(),
            current: ns.exists().then(|| ns.clone()),
            removed: false,
            addrs: Vec::new(),
            routes: Vec::new(),
            sysctls: Vec::new(),
            mirrors: Vec::new(),
            dirty: false,
            repair: None,
            failures: 0,
            pass: Counts::default(),
        });
        self.endpoints.len() - 1
    }

    /// Fold the journal's steps recorded since the last fold into the
    /// desired state (see the module doc). Objects already gone are
    /// skipped: the lab is what exists of the run's work now.
    pub fn fold(&mut self, session: &Session, journal: &Journal) {
        let entries = journal.entries();
        if entries.len() < self.folded {
            // Steps were taken back (cleanup(), a plug after an unplug):
            // start again from what is recorded now.
            let unsupported = std::mem::take(&mut self.unsupported);
            *self = Lab {
                unsupported,
                said_unsupported: self.said_unsupported,
                ..Lab::default()
            };
        }
        for entry in &entries[self.folded..] {
            // Best effort: a step whose objects cannot be read any more
            // (its namespace went meanwhile) is simply not in the lab.
            let _ = self.take(session, &entry.undo);
        }
        self.folded = entries.len();
    }

    /// Mark the journal's current length as folded: the repairs' own steps
    /// are already the lab's state.
    fn skip_own_steps(&mut self, journal: &Journal) {
        self.folded = journal.entries().len();
    }

    fn take(&mut self, session: &Session, undo: &Undo) -> Result<()> {
        match undo {
            Undo::DeleteVeth { ns, name, peer_ns } => {
                let ta = session.target(ns)?;
                let Some(la) = session.block_on(link::get(&ta, name))? else {
                    return Ok(());
                };
                let tb = session.target(peer_ns)?;
                let Some(peer_index) = la.link_index else {
                    return Ok(());
                };
                let Some(lb) = session.block_on(link::get_by_index(&tb, peer_index))? else {
                    return Ok(());
                };
                let a = self.endpoint_for(session, ns);
                let b = self.endpoint_for(session, peer_ns);
                let wire = Wire {
                    a: (a, name.clone()),
                    b: (b, lb.name.clone()),
                    mtu: la.mtu,
                    impairments: None,
                };
                if !self.wires.iter().any(|w| w.same_ends(&wire)) {
                    self.wires.push(wire);
                }
                for (i, t, l) in [(a, &ta, &la), (b, &tb, &lb)] {
                    for x in session.block_on(addr::list(t))? {
                        if x.index == l.index && !is_link_local(&x.addr) {
                            self.add_addr(i, &l.name, x.addr);
                        }
                    }
                }
            }
            Undo::DeleteAddress { ns, link, addr } => {
                let i = self.endpoint_for(session, ns);
                self.add_addr(i, link, *addr);
            }
            Undo::DeleteRoute { ns, route } => {
                let i = self.endpoint_for(session, ns);
                self.add_route(i, route.clone());
            }
            Undo::RestoreRoute { ns, route } => {
                // The step holds the route that was replaced; the one the
                // run installed is in the kernel under the same key.
                let t = session.target(ns)?;
                if let Some(now) = session.block_on(route::find_same_key(&t, route))? {
                    let i = self.endpoint_for(session, ns);
                    self.add_route(i, now.as_request());
                }
            }
            Undo::RestoreSysctl { ns, key, .. } => {
                let value = sysctl::read(ns, key)?;
                let i = self.endpoint_for(session, ns);
                let e = &mut self.endpoints[i];
                match e.sysctls.iter_mut().find(|(k, _)| k == key) {
                    Some(slot) => slot.1 = value,
                    None => e.sysctls.push((key.clone(), value)),
                }
            }
            // A leftover end a repair moved out of the way (see ensure_wire).
            Undo::DeleteLink { name, .. } if name.starts_with("kkold") => {}
            Undo::DeleteLink { ns, name } => {
                self.unsupported
                    .push(format!("link '{name}' in {ns} (not a veth pair)"));
            }
            Undo::DeleteMirror {
                ns,
                source,
                target_index,
                ..
            } => {
                // The step names the target by ifindex and not the
                // direction: both are read from the kernel.
                let t = session.target(ns)?;
                let Some(src) = session.block_on(link::get(&t, source))? else {
                    return Ok(());
                };
                let Some(target) = session.block_on(link::get_by_index(&t, *target_index))? else {
                    return Ok(());
                };
                let on = |hook| -> Result<bool> {
                    Ok(session
                        .block_on(tc::filters(&t, src.index, hook))?
                        .iter()
                        .any(|f| f.is_kokos_mirror_to(*target_index)))
                };
                let dir = match (on(Hook::Ingress)?, on(Hook::Egress)?) {
                    (true, true) => MirrorDir::Both,
                    (true, false) => MirrorDir::Ingress,
                    (false, true) => MirrorDir::Egress,
                    (false, false) => return Ok(()),
                };
                let i = self.endpoint_for(session, ns);
                let m = (source.clone(), dir, target.name);
                let e = &mut self.endpoints[i];
                e.mirrors.retain(|(s, _, t)| !(s == &m.0 && t == &m.2));
                e.mirrors.push(m);
            }
            Undo::RestoreTc { ns, snapshot } | Undo::Unblackhole { ns, snapshot, .. } => {
                self.note_impairments(session, ns, &snapshot.link)?;
            }
            Undo::RemoveIfb { ns, link, .. } => {
                self.note_impairments(session, ns, link)?;
            }
            Undo::RestoreLink { .. }
            | Undo::Plug { .. }
            | Undo::DeleteNamespace { .. }
            | Undo::StopServer(_)
            | Undo::StopFlap(_) => {}
        }
        Ok(())
    }

    /// The run changed the tc state of `link` in `ns`: if it is an end of a
    /// wire, read the wire's impairments as they are now.
    fn note_impairments(&mut self, session: &Session, ns: &Namespace, link: &str) -> Result<()> {
        if link.starts_with("kkifb") {
            return Ok(()); // the ifb of a link: its RemoveIfb step names the link
        }
        let i = self.endpoint_for(session, ns);
        let Some(w) = self.wires.iter().position(|w| w.has_end(i, link)) else {
            self.unsupported.push(format!(
                "an impairment on '{link}' in {ns} (not a veth pair koko made)"
            ));
            return Ok(());
        };
        let (wa, wb) = (self.wires[w].a.clone(), self.wires[w].b.clone());
        let (Some(na), Some(nb)) = (
            self.endpoints[wa.0].current.clone(),
            self.endpoints[wb.0].current.clone(),
        ) else {
            return Ok(());
        };
        let pair = LinkPair {
            end: End::new(&na, &wa.1),
            peer: Some(End::new(&nb, &wb.1)),
        };
        let now = impair::impairments(session, &pair)?;
        let none = now.egress.is_none()
            && now.ingress.as_ref().is_none_or(|i| i.is_none())
            && !now.blackhole;
        self.wires[w].impairments = (!none).then_some(now);
        Ok(())
    }

    fn add_addr(&mut self, i: usize, link: &str, a: IpNet) {
        let e = &mut self.endpoints[i];
        if !e.addrs.iter().any(|(l, x)| l == link && *x == a) {
            e.addrs.push((link.to_string(), a));
        }
    }

    fn add_route(&mut self, i: usize, r: RouteRequest) {
        let e = &mut self.endpoints[i];
        if !e.routes.contains(&r) {
            e.routes.push(r);
        }
    }

    /// The not-re-created objects not said yet ("koko: keep-wired: ...").
    pub fn unsaid_unsupported(&mut self) -> Vec<String> {
        let new = self.unsupported[self.said_unsupported..].to_vec();
        self.said_unsupported = self.unsupported.len();
        new
    }

    /// The container endpoint the engine's name or id refers to.
    fn container(&self, name: &str, id: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| match &e.place {
            Place::Container(n) => {
                !e.removed && (n == name || (n.len() >= 4 && id.starts_with(n.as_str())))
            }
            _ => false,
        })
    }

    /// A container of the lab started (the engine's start event at
    /// `event_ms`): if it has a new namespace, repair it.
    pub fn container_started(&mut self, session: &Session, name: &str, id: &str, event_ms: f64) {
        let Some(i) = self.container(name, id) else {
            return;
        };
        let spec = NsSpec::Docker(self.endpoints[i].name.clone());
        match session.resolve(&spec) {
            Ok(ns) => self.came_back(session, i, ns, event_ms),
            Err(e) if e.is_namespace_not_found() => {} // stopped again already
            Err(e) => crate::say!(
                "koko: keep-wired: looking up {}: {e}",
                self.endpoints[i].describe()
            ),
        }
    }

    /// A container of the lab was removed for good: report it, and drop
    /// its wires (their other ends died with its namespace).
    pub fn container_removed(
        &mut self,
        session: &Session,
        name: &str,
        id: &str,
    ) -> Option<Rewired> {
        let i = self.container(name, id)?;
        Some(self.remove(session, i))
    }

    fn remove(&mut self, session: &Session, i: usize) -> Rewired {
        let e = &mut self.endpoints[i];
        e.removed = true;
        e.dirty = false;
        e.repair = None;
        if let Some(ns) = e.current.take() {
            session.forget(&ns);
        }
        let before = self.wires.len();
        self.wires.retain(|w| w.a.0 != i && w.b.0 != i);
        let e = &self.endpoints[i];
        Rewired {
            kind: "removed",
            namespace: e.name.clone(),
            ns_kind: e.kind.as_str(),
            counts: Counts {
                links: before - self.wires.len(),
                ..Counts::default()
            },
            ms_after_start: 0.0,
            time: epoch_ms(),
        }
    }

    /// Endpoint `i` has namespace `ns` now: if it is a new one, the
    /// endpoint and its wire peers must be made whole again.
    fn came_back(&mut self, session: &Session, i: usize, ns: Namespace, since_epoch_ms: f64) {
        let e = &mut self.endpoints[i];
        if e.current.as_ref() == Some(&ns) {
            return;
        }
        if let Some(old) = e.current.take() {
            session.forget(&old);
        }
        e.current = Some(ns);
        e.dirty = true;
        e.failures = 0;
        // A second restart before the first repair ended: time from the
        // latest start.
        e.repair = Some(Repair {
            since_epoch_ms,
            counts: Counts::default(),
        });
        for w in &self.wires {
            for (x, y) in [(w.a.0, w.b.0), (w.b.0, w.a.0)] {
                if x == i {
                    self.endpoints[y].dirty = true;
                }
            }
        }
    }

    /// Look at every endpoint's namespace: forget the ones that are gone
    /// (so the kernel can destroy them), and notice named namespaces that
    /// were made again. `seen_ms` is when the last sign of change came
    /// (an inotify event), for the report.
    pub fn check_places(&mut self, session: &Session, seen_ms: f64) {
        for i in 0..self.endpoints.len() {
            let e = &mut self.endpoints[i];
            if e.removed {
                continue;
            }
            if let Some(ns) = &e.current {
                if !ns.exists() {
                    session.forget(ns);
                    e.current = None;
                }
            }
            if e.current.is_some() {
                continue;
            }
            if let Place::Netns(name) = &e.place {
                let path = std::path::Path::new(crate::ns::NETNS_RUN_DIR).join(name);
                if crate::runs::exists(&path) {
                    if let Ok(ns) = Namespace::netns(name) {
                        self.came_back(session, i, ns, seen_ms);
                    }
                }
            }
        }
    }

    /// For each lab container that is down: ask the engine whether it runs
    /// again (with a new namespace) or is gone for good. The fallback for
    /// an event that was missed (the engine's stream restarting): a repair
    /// found this way is timed from the moment koko saw it.
    pub fn ask_engine(&mut self, session: &Session) -> Vec<Rewired> {
        let mut out = Vec::new();
        let down: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| {
                let e = &self.endpoints[i];
                !e.removed && e.current.is_none() && matches!(e.place, Place::Container(_))
            })
            .collect();
        for i in down {
            let spec = NsSpec::Docker(self.endpoints[i].name.clone());
            match session.resolve(&spec) {
                Ok(ns) => self.came_back(session, i, ns, epoch_ms()),
                Err(Error::NotFound { cause: Some(c), .. }) if c.contains("no such container") => {
                    out.push(self.remove(session, i));
                }
                Err(_) => {}
            }
        }
        out
    }

    /// A link the run made in a CRI *container's* namespace was journaled
    /// with a handle on that container's process. When the container is
    /// restarted inside its pod, the namespace — and the link — stay, but
    /// the handle is gone, and the final undo would skip the link as gone
    /// with its namespace. So such a step is recorded again through the
    /// pod's sandbox (the same namespace, held by its pause process): the
    /// undo deletes the link through it, and the first step finds nothing
    /// left to do.
    fn rehold_pod_links(&mut self, journal: &mut Journal) {
        let mut again = Vec::new();
        for (k, entry) in journal.entries().iter().enumerate() {
            let Undo::DeleteVeth { ns, name, peer_ns } = &entry.undo else {
                continue;
            };
            if ns.kind() != NsKind::Cri || self.reheld.contains(&k) || ns.exists() {
                continue;
            }
            let pod = self.endpoints.iter().find_map(|e| {
                e.current
                    .as_ref()
                    .filter(|c| c.id() == ns.id() && matches!(e.place, Place::Pod(_)))
                    .map(|c| (c.clone(), e.describe()))
            });
            if let Some((pod_ns, pod)) = pod.filter(|(c, _)| c.exists()) {
                again.push((
                    k,
                    format!("veth {name} in {pod} (held through its pod: its container restarted)"),
                    Undo::DeleteVeth {
                        ns: pod_ns,
                        name: name.clone(),
                        peer_ns: peer_ns.clone(),
                    },
                ));
            }
        }
        for (k, what, undo) in again {
            self.reheld.insert(k);
            journal.record(what, undo);
        }
    }

    /// For each lab pod that is down: ask the CRI runtime (one
    /// `ListPodSandbox`) for a READY sandbox with the pod's namespace and
    /// name — the kubelet's new sandbox for it — and repair into its
    /// namespace, timed from the sandbox's creation. A pod with no such
    /// sandbox is waited for, like a stopped container: the old sandbox
    /// being removed is what the kubelet does before every re-creation, so
    /// it does not tell a pod gone for good.
    pub fn ask_runtime(&mut self, session: &Session) {
        let down: Vec<(usize, PodKey)> = self
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.place {
                Place::Pod(k) if !e.removed && e.current.is_none() => Some((i, k.clone())),
                _ => None,
            })
            .collect();
        if down.is_empty() {
            return;
        }
        let listed = session
            .cri(&down[0].1.name)
            .and_then(|rt| Ok((session.block_on(rt.pod_sandboxes())?, rt)));
        let (pods, rt) = match listed {
            Ok(x) => x,
            Err(e) => {
                // Said once per pass is too much when the runtime is away
                // for a while: say it on the first failure only.
                if !self.runtime_failed {
                    crate::say!("koko: keep-wired: asking the CRI runtime: {e}");
                }
                self.runtime_failed = true;
                return;
            }
        };
        self.runtime_failed = false;
        for (i, key) in down {
            // The newest ready sandbox of the pod (the kubelet runs one at
            // a time; the newest is the one it keeps).
            let Some(pod) = pods
                .iter()
                .filter(|p| p.ready && p.key == key)
                .max_by(|a, b| a.created_ms.total_cmp(&b.created_ms))
            else {
                continue;
            };
            // Not found: it stopped again already (or is not set up yet);
            // the next pass asks again.
            if let Ok(ns) = session.block_on(rt.resolve(&pod.id)) {
                self.came_back(session, i, ns, pod.created_ms);
            }
        }
    }

    /// Make the desired state true for every dirty endpoint that is up
    /// (see the module doc); returns the repairs that finished.
    pub fn converge(&mut self, session: &Session, journal: &mut Journal) -> Vec<Rewired> {
        if !self.busy() {
            return Vec::new();
        }
        let mut failed: HashMap<usize, Error> = HashMap::new();
        for e in &mut self.endpoints {
            e.pass = Counts::default();
        }
        // 1. Wires touching a dirty endpoint, both ends up.
        for w in self.wires.clone() {
            let (ea, eb) = (&self.endpoints[w.a.0], &self.endpoints[w.b.0]);
            if !(ea.dirty || eb.dirty) {
                continue;
            }
            let (Some(na), Some(nb)) = (ea.current.clone(), eb.current.clone()) else {
                continue; // the other end is down: made when it is back
            };
            match self.ensure_wire(session, journal, &w, &na, &nb) {
                Ok(made) => {
                    if made {
                        for i in [w.a.0, w.b.0] {
                            if self.endpoints[i].repair.is_some() {
                                self.endpoints[i].pass.links += 1;
                            }
                        }
                    }
                }
                Err(e) => {
                    failed.entry(w.a.0).or_insert(e);
                }
            }
        }
        // 2. Each dirty endpoint's addresses, sysctls and routes.
        for i in 0..self.endpoints.len() {
            let e = &self.endpoints[i];
            if !e.dirty || e.removed || failed.contains_key(&i) {
                continue;
            }
            let Some(ns) = e.current.clone() else {
                continue;
            };
            if let Err(err) = self.ensure_state(session, journal, i, &ns) {
                failed.insert(i, err);
            }
        }
        // 3. Finished repairs, and retries.
        let mut done = Vec::new();
        let peers_of = |lab: &Lab, i: usize| -> Vec<usize> {
            lab.wires
                .iter()
                .filter_map(|w| {
                    if w.a.0 == i {
                        Some(w.b.0)
                    } else if w.b.0 == i {
                        Some(w.a.0)
                    } else {
                        None
                    }
                })
                .collect()
        };
        for i in 0..self.endpoints.len() {
            let mut pass = self.endpoints[i].pass;
            if self.endpoints[i].repair.is_some() {
                for p in peers_of(self, i) {
                    if self.endpoints[p].repair.is_none() {
                        let peer = self.endpoints[p].pass;
                        pass.add(Counts { links: 0, ..peer });
                    }
                }
            }
            let e = &mut self.endpoints[i];
            if let Some(r) = e.repair.as_mut() {
                r.counts.add(pass);
            }
        }
        let now = epoch_ms();
        for i in 0..self.endpoints.len() {
            let e = &mut self.endpoints[i];
            if !e.dirty || e.current.is_none() {
                continue;
            }
            // A peer's failure is this repair's too (both converge again).
            let failure = failed.remove(&i);
            match failure {
                Some(err) => {
                    e.failures += 1;
                    if e.failures == 1 {
                        crate::say!("koko: rewiring {}: {err} (trying again)", e.describe());
                    }
                    if e.failures >= MAX_FAILURES {
                        crate::say!("koko: rewiring {}: giving up: {err}", e.describe());
                        e.dirty = false;
                        e.repair = None;
                    }
                }
                None => {
                    e.dirty = false;
                    e.failures = 0;
                    if let Some(r) = e.repair.take() {
                        done.push(Rewired {
                            kind: "rewired",
                            namespace: e.name.clone(),
                            ns_kind: e.kind.as_str(),
                            counts: r.counts,
                            ms_after_start: ((now - r.since_epoch_ms) * 10.0).round() / 10.0,
                            time: now,
                        });
                    }
                }
            }
        }
        // A wire failure was filed under its first end: keep its peer
        // dirty too, so the pair converges together.
        for (i, _) in failed {
            self.endpoints[i].dirty = true;
        }
        self.skip_own_steps(journal);
        done
    }

    /// Make wire `w` exist between `na` and `nb`; Ok(true) if it was made.
    fn ensure_wire(
        &mut self,
        session: &Session,
        journal: &mut Journal,
        w: &Wire,
        na: &Namespace,
        nb: &Namespace,
    ) -> Result<bool> {
        let ta = session.target(na)?;
        let tb = session.target(nb)?;
        let la = session.block_on(link::get(&ta, &w.a.1))?;
        let lb = session.block_on(link::get(&tb, &w.b.1))?;
        let mark = journal.mark();
        match (&la, &lb) {
            (Some(_), Some(_)) => {
                // Both there: the wire stands; its addresses may not (a
                // repair cut short).
                for (i, t, name) in [(w.a.0, &ta, &w.a.1), (w.b.0, &tb, &w.b.1)] {
                    self.ensure_addrs(session, journal, i, t, Some(name))?;
                }
                return Ok(false);
            }
            (None, Some(stale)) | (Some(stale), None) => {
                // One end only: the other died with its namespace, and
                // this one is a leftover the kernel has not torn down yet.
                // It is ours if it carries the run's mark; anything else
                // is someone's link under that name, left alone.
                let (t, name) = if la.is_some() {
                    (&ta, &w.a.1)
                } else {
                    (&tb, &w.b.1)
                };
                if mark.is_some() && stale.alias != mark {
                    return Err(Error::Invalid(format!(
                        "link '{name}' in {} is in the way and is not this run's: left alone",
                        t.ns
                    )));
                }
                // Deleting it would wait for an RCU grace period (~20 ms
                // per link here); the kernel deletes it anyway with its
                // peer's dying namespace. So it is only moved out of the
                // way: down, under a name of its own, journaled so an undo
                // takes it should it still be there.
                let parked = format!("kkold{}", stale.index);
                match session.block_on(link::rename(t, stale.index, &parked)) {
                    Ok(()) => journal.record(
                        format!("leftover veth end {parked} (was {name}) in {}", t.ns),
                        Undo::DeleteLink {
                            ns: t.ns.clone(),
                            name: parked,
                        },
                    ),
                    // Gone meanwhile (the kernel's teardown was first).
                    Err(_) if session.block_on(link::get(t, name))?.is_none() => {}
                    Err(e) => return Err(e),
                }
            }
            (None, None) => {}
        }
        let addrs_of = |i: usize, name: &str| -> Vec<IpNet> {
            self.endpoints[i]
                .addrs
                .iter()
                .filter(|(l, _)| l == name)
                .map(|(_, a)| *a)
                .collect()
        };
        let req = VethRequest {
            a: EndRequest {
                ns: na.clone(),
                name: w.a.1.clone(),
                addrs: addrs_of(w.a.0, &w.a.1),
            },
            b: EndRequest {
                ns: nb.clone(),
                name: w.b.1.clone(),
                addrs: addrs_of(w.b.0, &w.b.1),
            },
            options: VethOptions {
                mtu: w.mtu,
                ..VethOptions::default()
            },
        };
        connect::veth(session, journal, &req)?;
        // connect::veth adds the ends' addresses and records the pair
        // (deleting it also takes its addresses): count them here.
        self.endpoints[w.a.0].pass.addresses += req.a.addrs.len();
        self.endpoints[w.b.0].pass.addresses += req.b.addrs.len();
        if let Some(imp) = &w.impairments {
            // The same library calls as `link.impair()` / `blackhole()`,
            // journaled the same way.
            let pair = LinkPair {
                end: End::new(na, &w.a.1),
                peer: Some(End::new(nb, &w.b.1)),
            };
            if !imp.egress.is_none() {
                impair::impair(session, journal, &pair, MirrorDir::Egress, &imp.egress)?;
            }
            if let Some(ingress) = imp.ingress.as_ref().filter(|i| !i.is_none()) {
                impair::impair(session, journal, &pair, MirrorDir::Ingress, ingress)?;
            }
            if imp.blackhole {
                impair::blackhole(session, journal, &pair)?;
            }
            self.endpoints[w.a.0].pass.impairments += 1;
        }
        Ok(true)
    }

    /// Add the run's addresses on `only` (or on every link it set one on)
    /// where they are missing; a link that is not there is skipped.
    fn ensure_addrs(
        &mut self,
        session: &Session,
        journal: &mut Journal,
        i: usize,
        t: &crate::net::Target,
        only: Option<&str>,
    ) -> Result<()> {
        let wanted: Vec<(String, IpNet)> = self.endpoints[i]
            .addrs
            .iter()
            .filter(|(l, _)| only.is_none_or(|o| o == l))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let have = session.block_on(addr::list(t))?;
        for (name, a) in wanted {
            let Some(l) = session.block_on(link::get(t, &name))? else {
                continue;
            };
            if have.iter().any(|x| x.index == l.index && x.addr == a) {
                continue;
            }
            session.block_on(addr::add(t, &name, a))?;
            journal.record(
                format!("address {a} on {name} in {} (rewired)", t.ns),
                Undo::DeleteAddress {
                    ns: t.ns.clone(),
                    link: name.clone(),
                    addr: a,
                },
            );
            self.endpoints[i].pass.addresses += 1;
        }
        Ok(())
    }

    /// An endpoint's own state: addresses on its links, sysctls (only where
    /// it restarted: a peer's were not lost), routes.
    fn ensure_state(
        &mut self,
        session: &Session,
        journal: &mut Journal,
        i: usize,
        ns: &Namespace,
    ) -> Result<()> {
        let t = session.target(ns)?;
        self.ensure_addrs(session, journal, i, &t, None)?;
        if self.endpoints[i].repair.is_some() {
            for (key, value) in self.endpoints[i].sysctls.clone() {
                if sysctl::read(ns, &key)? != value {
                    let old = sysctl::write(ns, &key, &value)?;
                    journal.record(
                        format!("sysctl {key} in {ns} (rewired)"),
                        Undo::RestoreSysctl {
                            ns: ns.clone(),
                            key: key.clone(),
                            value: old,
                        },
                    );
                    self.endpoints[i].pass.sysctls += 1;
                }
            }
        }
        for (source, dir, target) in self.endpoints[i].mirrors.clone() {
            let (Some(src), Some(dst)) = (
                session.block_on(link::get(&t, &source))?,
                session.block_on(link::get(&t, &target))?,
            ) else {
                continue; // a link that waits for its other end
            };
            let mut there = true;
            for hook in dir.hooks() {
                there &= session
                    .block_on(tc::filters(&t, src.index, hook))?
                    .iter()
                    .any(|f| f.is_kokos_mirror_to(dst.index));
            }
            if !there {
                let req = MirrorRequest {
                    ns: ns.clone(),
                    source,
                    dir,
                    target,
                };
                connect::mirror(session, journal, &req)?;
                self.endpoints[i].pass.mirrors += 1;
            }
        }
        let waiting = self.waits_for_a_peer(i);
        for r in self.endpoints[i].routes.clone() {
            if let Some(dev) = &r.dev {
                if session.block_on(link::get(&t, dev))?.is_none() {
                    continue; // through a wire whose other end is down
                }
            }
            if session.block_on(route::find_same_key(&t, &r))?.is_some() {
                continue;
            }
            match session.block_on(route::add(&t, &r)) {
                Ok(()) => {
                    journal.record(
                        format!("route {} in {ns} (rewired)", r.dest),
                        Undo::DeleteRoute {
                            ns: ns.clone(),
                            route: r.clone(),
                        },
                    );
                    self.endpoints[i].pass.routes += 1;
                }
                // A gateway reachable only through a wire that waits for
                // its other end: the route comes with that end's repair.
                Err(_) if waiting => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether a wire of endpoint `i` waits for its other end to come up.
    fn waits_for_a_peer(&self, i: usize) -> bool {
        self.wires.iter().any(|w| {
            let other = if w.a.0 == i {
                w.b.0
            } else if w.b.0 == i {
                w.a.0
            } else {
                return false;
            };
            self.endpoints[other].current.is_none()
        })
    }
}

fn is_link_local(a: &IpNet) -> bool {
    match a.addr() {
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        std::net::IpAddr::V4(_) => false,
    }
}

/// A lab being kept wired: its desired state and what watches its places.
pub struct Keeper {
    pub lab: Lab,
    watch: watch::Watcher,
    /// When the engine was last asked about down containers.
    asked: Instant,
}

/// How often the engine is asked about lab containers that are down, in
/// case an event was missed (the events stream is the fast path).
const ASK_EVERY: Duration = Duration::from_secs(1);

impl Keeper {
    /// Start keeping: the watchers are set up now, and the engine's events
    /// are read from this moment on (events between now and the stream's
    /// start are replayed by the engine).
    pub fn start() -> Result<Keeper> {
        Ok(Keeper {
            lab: Lab::new(),
            watch: watch::Watcher::open()?,
            asked: Instant::now(),
        })
    }

    /// The fds to poll: readable when something may have changed.
    pub fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.watch.fds()
    }

    /// How soon to come back even if nothing is readable.
    pub fn timeout(&self) -> Duration {
        if self.lab.busy() {
            Duration::from_millis(10)
        } else if self.lab.has_pods_down() {
            // No event tells of a pod's new sandbox (see `step`): its
            // repair waits for the next look at the runtime's list.
            Duration::from_millis(20)
        } else {
            Duration::from_millis(50)
        }
    }

    /// One pass: fold new journal steps into the lab, take in what the
    /// watchers saw, converge. Prints each finished repair and returns
    /// them (for the script's `on_rewired` hooks).
    pub fn step(&mut self, session: &Session, journal: &mut Journal) -> Vec<Rewired> {
        self.lab.fold(session, journal);
        for what in self.lab.unsaid_unsupported() {
            crate::say!("koko: keep-wired: {what} is not re-created after a restart");
        }
        if self.lab.has_containers() {
            self.watch.want_engine();
        }
        let mut out = Vec::new();
        let seen = self.watch.drain();
        // `docker restart` says "start" then "restart": one look at the
        // engine per container and batch, timed from its first start.
        let mut started: Vec<&watch::EngineEvent> = Vec::new();
        for ev in &seen.engine {
            match ev.action {
                watch::Action::Start => {
                    if !started.iter().any(|s| s.id == ev.id) {
                        started.push(ev);
                    }
                }
                watch::Action::Die => {}
                watch::Action::Destroy => {
                    started.retain(|s| s.id != ev.id);
                    out.extend(self.lab.container_removed(session, &ev.name, &ev.id))
                }
            }
        }
        for ev in started {
            self.lab
                .container_started(session, &ev.name, &ev.id, ev.time_ms);
        }
        if let Some(e) = self.watch.engine_failure() {
            crate::say!("koko: keep-wired: {e}");
        }
        let seen_ms = seen.netns_ms.unwrap_or_else(epoch_ms);
        self.lab.check_places(session, seen_ms);
        self.lab.rehold_pod_links(journal);
        // CRI pods: containerd before 1.7 has no event stream
        // (GetContainerEvents), so a pod that is down is looked for in the
        // sandbox list on every pass (every 20 ms while it is down: one
        // local gRPC call, 1-3 ms here).
        self.lab.ask_runtime(session);
        if self.asked.elapsed() >= ASK_EVERY {
            self.asked = Instant::now();
            out.extend(self.lab.ask_engine(session));
        }
        out.extend(self.lab.converge(session, journal));
        for r in &out {
            crate::say!("{}", r.line());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repair_line_names_the_place_the_counts_and_the_time() {
        let r = Rewired {
            kind: "rewired",
            namespace: "firewall".into(),
            ns_kind: "docker",
            counts: Counts {
                links: 2,
                addresses: 4,
                routes: 2,
                sysctls: 2,
                ..Counts::default()
            },
            ms_after_start: 12.34,
            time: 0.0,
        };
        assert_eq!(
            r.line(),
            "koko: rewired container 'firewall': 2 link(s), 4 address(es), 2 route(s), 2 sysctl(s) in 12.3 ms after its start event"
        );
        let gone = Rewired {
            kind: "removed",
            counts: Counts {
                links: 1,
                ..Counts::default()
            },
            ..r
        };
        assert!(gone
            .line()
            .contains("was removed: its 1 link(s) are not re-created"));
    }

    #[test]
    fn a_cri_pod_s_repair_line_names_the_pod_and_its_sandbox() {
        let r = Rewired {
            kind: "rewired",
            namespace: "default/web-0".into(),
            ns_kind: "cri",
            counts: Counts {
                links: 1,
                addresses: 3,
                routes: 1,
                ..Counts::default()
            },
            ms_after_start: 20.04,
            time: 0.0,
        };
        assert_eq!(
            r.line(),
            "koko: rewired CRI pod 'default/web-0': 1 link(s), 3 address(es), 1 route(s), 0 sysctl(s) in 20.0 ms after its sandbox was created"
        );
    }

    #[test]
    fn link_local_addresses_are_the_kernel_s_not_the_run_s() {
        assert!(is_link_local(&"fe80::1/64".parse().unwrap()));
        assert!(!is_link_local(&"fd00::1/64".parse().unwrap()));
        assert!(!is_link_local(&"10.0.0.1/24".parse().unwrap()));
    }
}

//! What the CNI operations do to the kernel.
//!
//! **Ownership.** Every link the plugin creates carries the mark
//! `koko-cni:CONTAINERID` (its alias, IFLA_IFALIAS, which the kernel keeps
//! for it), naming the sandbox whose namespace it lives in. DEL deletes the
//! links of its sandbox by that mark, not by re-reading the topology (which
//! may have changed since); GC deletes every marked link whose sandbox is
//! not among the runtime's valid attachments; CHECK accepts only links
//! carrying the sandbox's own mark. The mark differs from a koko run's
//! (`koko:RUNID`), so `koko undo --dead` never takes a pod's links.
//!
//! **Pairs on one node.** A veth needs both namespaces, so whichever pod of
//! a pair arrives second creates it: each ADD records its pod (name,
//! sandbox id, namespace path) under the state directory, and wires every
//! link whose peer pod is already recorded there. A pod is its Kubernetes
//! namespace and name (see [`topology`]): records are keyed by both, and a
//! peer is looked up in the pod's own namespace only, so two pods named
//! alike in two namespaces never see each other. A lock file in the state
//! directory serialises ADD/DEL/GC, so two pods arriving at once cannot
//! both miss each other or both create the pair. When a pod restarts (a
//! new sandbox, a new namespace), its peer's old end is gone with the old
//! namespace, or still tied to the old sandbox: the new ADD removes that
//! stale end (it carries the peer's mark, and this pod has no end) and
//! wires the pair again.
//!
//! **Pairs across nodes.** When the topology places the peer pod on another
//! node, each side creates its own vxlan end in its pod (VNI `vniBase +
//! uid`, remote = the peer's node, parent = the network config's
//! `underlay`), so nothing has to wait for the other side and no daemon is
//! on the data path.
//!
//! **Impairments.** A record's `impair` degrades what its pod's end sends.
//! The ADD that creates a same-node pair applies both records' impairments
//! (this pod's to its end, the peer's record of the same uid to the peer's
//! end), so either arrival order gives the same result; a cross-node end
//! gets its own. They are applied inside the same journal as the links, so
//! a refused impairment leaves nothing half-built.
//!
//! **DEL is idempotent.** A missing namespace, a repeated DEL or a DEL
//! without ADD all succeed: there is simply nothing marked left to delete.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::topology::{self, LinkRecord, Source};
use super::{Added, CniError, CniResult, Env, NetConf};
use crate::connect::{self, EndRequest, TunnelRequest, VethRequest};
use crate::error::{Error, Result};
use crate::impair::{self, End, Impairment, LinkPair};
use crate::journal::Journal;
use crate::net::link::{self, LinkState, VethOptions};
use crate::net::tc::MirrorDir as Direction;
use crate::net::tunnel::{TunnelKind, VxlanOptions};
use crate::net::{addr, Session};
use crate::ns::Namespace;

/// The prefix of the plugin's ownership marks.
pub const MARK_PREFIX: &str = "koko-cni:";

/// The mark of the links in sandbox `container_id`'s namespace.
pub fn mark_of(container_id: &str) -> String {
    format!("{MARK_PREFIX}{container_id}")
}

/// What the state directory knows of a pod on this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodRecord {
    /// The pod's Kubernetes namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub pod: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub netns: String,
}

fn default_namespace() -> String {
    "default".to_string()
}

fn pods_dir(conf: &NetConf) -> PathBuf {
    conf.state_dir.join("pods")
}

fn record_path(conf: &NetConf, ns: &str, pod: &str) -> PathBuf {
    // Names are DNS labels and subdomains; anything else is escaped so it
    // cannot leave the directory. The escaped names never contain '+', so
    // "NAMESPACE+POD" names one pod only.
    let safe = |name: &str| -> String {
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    pods_dir(conf).join(format!("{}+{}.json", safe(ns), safe(pod)))
}

fn read_record(conf: &NetConf, ns: &str, pod: &str) -> Result<Option<PodRecord>> {
    let path = record_path(conf, ns, pod);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(serde_json::from_str(&text)
            .ok()
            .filter(|r: &PodRecord| r.pod == pod && r.namespace == ns)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

fn all_records(conf: &NetConf) -> Result<Vec<(PathBuf, PodRecord)>> {
    let dir = pods_dir(conf);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut all = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(r) = serde_json::from_str::<PodRecord>(&text) {
                all.push((path, r));
            }
        }
    }
    Ok(all)
}

fn write_record(conf: &NetConf, record: &PodRecord) -> Result<()> {
    let path = record_path(conf, &record.namespace, &record.pod);
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string(record).expect("a record serialises");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Hold the state directory's lock (released on drop): ADD, DEL and GC run
/// one at a time per node.
fn lock(conf: &NetConf) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    std::fs::create_dir_all(pods_dir(conf))
        .map_err(|e| Error::io(format!("creating {}", pods_dir(conf).display()), e))?;
    let path = conf.state_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
        Error::io(
            format!("locking {}", path.display()),
            std::io::Error::from_raw_os_error(errno as i32),
        )
    })
}

/// The sandbox's namespace; a namespace that is not there is the spec's
/// "container unknown" (code 3).
fn sandbox_ns(netns: &str) -> CniResult<Namespace> {
    Namespace::path(Path::new(netns)).map_err(|e| CniError::new(3, e.to_string()))
}

fn find<'a>(links: &'a [LinkState], name: &str) -> Option<&'a LinkState> {
    links.iter().find(|l| l.name == name)
}

/// The peer's node, if the topology puts it on another node than this one.
fn remote_node(conf: &NetConf, source: &Source, ns: &str, peer: &str) -> Result<Option<IpAddr>> {
    let Some(node) = source.node_of(ns, peer)? else {
        return Ok(None);
    };
    if conf.node_ip.as_deref() == Some(node.as_str()) {
        return Ok(None);
    }
    node.parse().map(Some).map_err(|_| {
        Error::Invalid(format!(
            "topology: the node of pod '{peer}' is not an IP address: '{node}'"
        ))
    })
}

/// ADD: wire every link of the pod whose other side can be wired now.
/// Returns the pod's interfaces that exist after it (for the result).
pub fn add(conf: &NetConf, source: &Source, env: &Env) -> CniResult<Vec<Added>> {
    let _lock = lock(conf)?;
    let pod = env.pod();
    let kns = env.pod_namespace();
    let topo = source.pod(&kns, &pod)?;
    topology::validate(&pod, &topo.links)?;
    let ns = sandbox_ns(&env.netns)?;
    let session = Session::new()?;
    let mark = mark_of(&env.container_id);
    let t = session.target(&ns)?;
    let existing = session.block_on(link::list(&t))?;

    let mut veths = Vec::new();
    let mut peer_marks = Vec::new();
    let mut tunnels = Vec::new();
    // (the sending end, its veth peer if any, what it sends degraded)
    let mut impairs: Vec<(End, Option<End>, Impairment)> = Vec::new();
    for l in &topo.links {
        if let Some(have) = find(&existing, &l.local_intf) {
            if have.alias.as_deref() == Some(mark.as_str()) {
                continue; // wired by an earlier ADD of this sandbox
            }
            return Err(Error::link_exists(&l.local_intf, &ns).into());
        }
        let local = EndRequest {
            ns: ns.clone(),
            name: l.local_intf.clone(),
            addrs: l.local_addr()?.into_iter().collect(),
        };
        let mtu = l.mtu.or(conf.mtu);
        if let Some(remote) = remote_node(conf, source, &kns, &l.peer_pod)? {
            let underlay = conf.underlay.clone().ok_or_else(|| {
                CniError::new(
                    7,
                    format!(
                        "link {} of pod '{pod}' crosses nodes, but the network config names no \"underlay\" interface",
                        l.uid
                    ),
                )
            })?;
            let mut vx = VxlanOptions::new(remote, conf.vni_base + l.uid);
            vx.mtu = mtu;
            vx.local = conf.node_ip.as_deref().and_then(|ip| ip.parse().ok());
            if let Some(what) = l.impairment()? {
                impairs.push((End::new(&ns, &l.local_intf), None, what));
            }
            tunnels.push(TunnelRequest {
                parent_ns: Namespace::current()?,
                parent: underlay,
                end: local,
                kind: TunnelKind::Vxlan(vx),
            });
            continue;
        }
        // Same node: only if the peer is here already (else it wires the
        // pair when it arrives).
        let Some(peer) = read_record(conf, &kns, &l.peer_pod)? else {
            continue;
        };
        let Ok(peer_ns) = Namespace::path(Path::new(&peer.netns)) else {
            continue; // its sandbox is gone; its next ADD wires the pair
        };
        let pt = session.target(&peer_ns)?;
        let peer_mark = mark_of(&peer.container_id);
        if let Some(stale) = session.block_on(link::get(&pt, &l.peer_intf))? {
            if stale.alias.as_deref() != Some(peer_mark.as_str()) {
                return Err(Error::link_exists(&l.peer_intf, &peer_ns).into());
            }
            // The peer's end of this link, tied to an older sandbox of this
            // pod (this sandbox has no end yet): re-wire.
            session.block_on(link::delete(&pt, &l.peer_intf))?;
        }
        // This pod creates the pair, so it applies both records'
        // impairments: its own to its end, the peer's to the peer's end.
        let here = End::new(&ns, &l.local_intf);
        let there = End::new(&peer_ns, &l.peer_intf);
        if let Some(what) = l.impairment()? {
            impairs.push((here.clone(), Some(there.clone()), what));
        }
        if let Some(what) =
            peer_link(source, &kns, &pod, l)?.and_then(|p| p.impairment().transpose())
        {
            impairs.push((there, Some(here), what?));
        }
        veths.push(VethRequest {
            a: local,
            b: EndRequest {
                ns: peer_ns,
                name: l.peer_intf.clone(),
                addrs: l.peer_addr()?.into_iter().collect(),
            },
            options: VethOptions {
                mtu: mtu.unwrap_or(1500),
                ..VethOptions::default()
            },
        });
        peer_marks.push((pt, l.peer_intf.clone(), peer_mark));
    }

    choose_indexes(&session, &existing, &mut veths)?;
    let mut journal = Journal::new();
    link::set_owner_mark(Some(mark.clone()));
    let wired = (|| -> Result<()> {
        if !veths.is_empty() {
            connect::veth_many(&session, &mut journal, &veths)?;
        }
        for (pt, name, peer_mark) in &peer_marks {
            session.block_on(link::set_alias(pt, name, peer_mark))?;
        }
        for req in &tunnels {
            connect::tunnel(&session, &mut journal, req)?;
        }
        for (end, peer, what) in &impairs {
            let pair = LinkPair {
                end: end.clone(),
                peer: peer.clone(),
            };
            impair::impair(&session, &mut journal, &pair, Direction::Egress, what)?;
        }
        Ok(())
    })();
    link::set_owner_mark(None);
    if let Err(e) = wired {
        // Leave nothing half-built behind (the runtime will DEL too).
        let _ = journal.undo_all(&session);
        return Err(e.into());
    }
    write_record(
        conf,
        &PodRecord {
            namespace: kns.clone(),
            pod: pod.clone(),
            container_id: env.container_id.clone(),
            netns: env.netns.clone(),
        },
    )?;

    let now = session.block_on(link::list(&t))?;
    // Podman rejects a result interface without a MAC address.
    let macs = session.block_on(link::hardware_addresses(&t))?;
    let mut added = Vec::new();
    for l in &topo.links {
        if let Some(state) = find(&now, &l.local_intf) {
            if state.alias.as_deref() == Some(mark.as_str()) {
                added.push(Added {
                    name: l.local_intf.clone(),
                    mac: macs
                        .iter()
                        .find(|(n, _)| *n == l.local_intf)
                        .map(|(_, m)| m.clone()),
                    addrs: l.local_addr()?.into_iter().collect(),
                });
            }
        }
    }
    Ok(added)
}

/// The peer pod's record of link `l` (same uid), if its topology has one.
fn peer_link(source: &Source, ns: &str, pod: &str, l: &LinkRecord) -> Result<Option<LinkRecord>> {
    let peer = source.pod(ns, &l.peer_pod)?;
    topology::validate(&l.peer_pod, &peer.links)?;
    Ok(peer
        .links
        .into_iter()
        .find(|p| p.uid == l.uid && p.peer_pod == pod))
}

/// Give each new pair's ends ifindexes of their own, unused in every
/// namespace involved. In fresh namespaces the kernel would give both ends
/// of a pair the same index, and a veth whose ifindex equals its peer's
/// has its carrier change handled late by the kernel's linkwatch (up to a
/// second without traffic); see `connect::veth`.
fn choose_indexes(session: &Session, own: &[LinkState], veths: &mut [VethRequest]) -> Result<()> {
    let mut top = own.iter().map(|l| l.index).max().unwrap_or(1);
    let mut seen = HashSet::new();
    for v in veths.iter() {
        if seen.insert(v.b.ns.id()) {
            let t = session.target(&v.b.ns)?;
            let links = session.block_on(link::list(&t))?;
            top = top.max(links.iter().map(|l| l.index).max().unwrap_or(1));
        }
    }
    for v in veths.iter_mut() {
        v.options.index = top + 1;
        v.options.peer_index = top + 2;
        top += 2;
    }
    Ok(())
}

/// The link group the plugin moves doomed links into before deleting them
/// in one request (see [`link::delete_many`]): an unusual number, so no
/// other link of a pod is in it.
const DOOMED_GROUP: u32 = 0x4b4f_4b4f;

/// Delete every link in `ns` carrying a mark `doomed` accepts, at once;
/// returns how many.
fn delete_marked(
    session: &Session,
    ns: &Namespace,
    doomed: impl Fn(&str) -> bool,
) -> Result<usize> {
    let t = session.target(ns)?;
    let links = session.block_on(link::list(&t))?;
    let names: Vec<String> = links
        .into_iter()
        .filter(|l| {
            l.alias
                .as_deref()
                .is_some_and(|a| a.starts_with(MARK_PREFIX) && doomed(a))
        })
        .map(|l| l.name)
        .collect();
    session.block_on(link::delete_many(&t, &names, DOOMED_GROUP))?;
    session.forget(ns);
    Ok(names.len())
}

/// DEL: remove the sandbox's links (by mark) and its record. Succeeds when
/// there is nothing to remove.
pub fn del(conf: &NetConf, env: &Env) -> CniResult<()> {
    let _lock = lock(conf)?;
    let records = all_records(conf)?;
    let mine: Vec<_> = records
        .iter()
        .filter(|(_, r)| r.container_id == env.container_id)
        .collect();
    let mut places: Vec<String> = mine.iter().map(|(_, r)| r.netns.clone()).collect();
    if !env.netns.is_empty() {
        places.push(env.netns.clone());
    }
    places.dedup();
    let mark = mark_of(&env.container_id);
    let session = Session::new()?;
    for place in places {
        // A namespace that is gone took its links with it.
        if let Ok(ns) = Namespace::path(Path::new(&place)) {
            delete_marked(&session, &ns, |alias| alias == mark)?;
        }
    }
    for (path, _) in mine {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// CHECK: every link of the pod that should exist now does, carries the
/// sandbox's mark, is up and has its address.
pub fn check(conf: &NetConf, source: &Source, env: &Env) -> CniResult<()> {
    let pod = env.pod();
    let kns = env.pod_namespace();
    let topo = source.pod(&kns, &pod)?;
    let ns = sandbox_ns(&env.netns)?;
    let session = Session::new()?;
    let t = session.target(&ns)?;
    let links = session.block_on(link::list(&t))?;
    let addrs = session.block_on(addr::list(&t))?;
    let mark = mark_of(&env.container_id);
    let missing = |what: String| CniError::new(101, what);
    for l in &topo.links {
        let expected = remote_node(conf, source, &kns, &l.peer_pod)?.is_some()
            || read_record(conf, &kns, &l.peer_pod)?
                .is_some_and(|p| Namespace::path(Path::new(&p.netns)).is_ok());
        if !expected {
            continue; // its peer is not here yet
        }
        let Some(state) = find(&links, &l.local_intf) else {
            return Err(missing(format!(
                "link {} of pod '{pod}': no '{}' in {ns}",
                l.uid, l.local_intf
            )));
        };
        if state.alias.as_deref() != Some(mark.as_str()) {
            return Err(missing(format!(
                "'{}' in {ns} is not this sandbox's (its mark is {:?})",
                l.local_intf, state.alias
            )));
        }
        if !state.up {
            return Err(missing(format!("'{}' in {ns} is down", l.local_intf)));
        }
        if let Some(want) = l.impairment()? {
            check_impairment(&session, &ns, l, &want).map_err(|e| missing(e.to_string()))?;
        }
        if let Some(want) = l.local_addr()? {
            if !addrs
                .iter()
                .any(|a| a.index == state.index && a.addr == want)
            {
                return Err(missing(format!(
                    "'{}' in {ns} has lost its address {want}",
                    l.local_intf
                )));
            }
        }
    }
    Ok(())
}

/// Is what `l`'s end sends still degraded as its record says? Read back
/// from the kernel; on the tc-bpf backend loss is a filter on the
/// receiver, readable only when the veth peer can be found.
fn check_impairment(
    session: &Session,
    ns: &Namespace,
    l: &LinkRecord,
    want: &Impairment,
) -> Result<()> {
    let pair = LinkPair::resolve(session, End::new(ns, &l.local_intf), None)?;
    let got = impair::impairments(session, &pair)?.egress;
    let mut want = want.clone();
    if pair.peer.is_none() && impair::Backend::detect() == impair::Backend::TcBpf {
        want.loss_pct = got.loss_pct;
    }
    if got != want {
        return Err(Error::Invalid(format!(
            "'{}' in {ns} sends degraded by {got}, not by {want} as link {} says",
            l.local_intf, l.uid
        )));
    }
    Ok(())
}

/// STATUS: the state directory is usable and the underlay (if any) exists.
pub fn status(conf: &NetConf) -> Result<()> {
    std::fs::create_dir_all(pods_dir(conf))
        .map_err(|e| Error::io(format!("creating {}", pods_dir(conf).display()), e))?;
    if let Some(underlay) = &conf.underlay {
        let session = Session::new()?;
        let t = session.target(&Namespace::current()?)?;
        session.block_on(link::require(&t, underlay))?;
    }
    Ok(())
}

/// GC: delete every marked link whose sandbox is not among `valid`, in the
/// namespaces of the recorded pods and the named namespaces of this node,
/// and forget those pods.
pub fn gc(conf: &NetConf, valid: &[String]) -> CniResult<()> {
    let _lock = lock(conf)?;
    let valid: HashSet<String> = valid.iter().map(|id| mark_of(id)).collect();
    let records = all_records(conf)?;
    let mut places: Vec<PathBuf> = records
        .iter()
        .map(|(_, r)| PathBuf::from(&r.netns))
        .collect();
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        places.extend(entries.flatten().map(|e| e.path()));
    }
    places.sort();
    places.dedup();
    let session = Session::new()?;
    let mut seen = HashSet::new();
    let mut errors = Vec::new();
    for place in places {
        let Ok(ns) = Namespace::path(&place) else {
            continue;
        };
        if !seen.insert(ns.id()) {
            continue;
        }
        if let Err(e) = delete_marked(&session, &ns, |alias| !valid.contains(alias)) {
            errors.push(e); // keep going: GC is best effort, reports all
        }
    }
    for (path, r) in records {
        if !valid.contains(&mark_of(&r.container_id)) {
            let _ = std::fs::remove_file(path);
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0).into()),
        _ => Err(Error::Undo(errors).into()),
    }
}

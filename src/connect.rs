//! Connecting namespaces: the operations the CLI (through
//! [`crate::plan`]), the koro grammar and scripts share — a veth pair (one
//! at a time, or many pipelined for chains), a vxlan/vlan/macvlan, a mirror,
//! deleting a link, forwarding. Each one records what it changes in a
//! [`Journal`] so the caller can roll back (the CLI always does on failure;
//! scripts decide), and reports what it made as [`EndReport`] /
//! [`MirrorReport`], built in one place each. Messages are net's business:
//! this module asks [`crate::net`] for typed operations.

use ipnet::IpNet;

use crate::error::{Error, Object, Result};
use crate::journal::{Intent, Journal, Undo};
use crate::net::link::{self, VethError, VethOptions};
use crate::net::tc::{self, MirrorDir};
use crate::net::tunnel::{self, TunnelKind};
use crate::net::{addr, nsid, sysctl, Session};
use crate::ns::Namespace;

/// One end of a veth pair to create.
#[derive(Debug, Clone)]
pub struct EndRequest {
    pub ns: Namespace,
    pub name: String,
    pub addrs: Vec<IpNet>,
}

/// A veth pair to create.
#[derive(Debug, Clone)]
pub struct VethRequest {
    pub a: EndRequest,
    pub b: EndRequest,
    pub options: VethOptions,
}

/// One end as created (read back from the kernel).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndReport {
    pub namespace: String,
    pub kind: &'static str,
    pub link: String,
    pub ifindex: u32,
    pub addresses: Vec<String>,
    /// The namespace in words ("netns 'a'"), for text output only.
    #[serde(skip)]
    pub place: String,
}

impl EndReport {
    /// The report of end `end`, created with ifindex `ifindex`: the one
    /// place an endpoint's report is built (veth, veth_many, tunnel).
    pub fn new(end: &EndRequest, ifindex: u32) -> EndReport {
        EndReport {
            namespace: end.ns.name().to_string(),
            kind: end.ns.kind().as_str(),
            link: end.name.clone(),
            ifindex,
            addresses: end.addrs.iter().map(|a| a.to_string()).collect(),
            place: end.ns.to_string(),
        }
    }
}

/// Create a veth pair with both ends up and their addresses. On error,
/// whatever was created is in `journal` (the caller rolls back).
pub fn veth(session: &Session, journal: &mut Journal, req: &VethRequest) -> Result<[EndReport; 2]> {
    let (a, b) = (&req.a, &req.b);
    validate_veth(req)?;
    let ta = session.target(&a.ns)?;
    let tb = session.target(&b.ns)?;
    // Choose the two ends' ifindexes so they differ. In fresh namespaces the
    // kernel would give both ends index 2, and a veth whose ifindex equals
    // its peer's ("iflink") has its carrier changes treated as non-urgent
    // by the kernel's linkwatch: its qdisc is activated up to a second
    // later, and the first packets (ARP) are dropped. Distinct indexes make
    // the link usable the moment it exists.
    let mut options = req.options.clone();
    if options.index == 0 && options.peer_index == 0 {
        let top = |t| {
            session
                .block_on(link::list(t))
                .map(|l| l.iter().map(|x| x.index).max().unwrap_or(1))
        };
        let next = top(&ta)?.max(top(&tb)?) + 1;
        options.index = next;
        options.peer_index = next + 1;
    }
    journal.intend(Intent::Link {
        ns: a.ns.clone(),
        name: a.name.clone(),
    })?;
    let mut created = session.block_on(link::create_veth(&ta, &a.name, &tb, &b.name, &options));
    if options.index != req.options.index
        && matches!(
            created,
            Err(VethError::Kernel(
                nix::errno::Errno::EBUSY | nix::errno::Errno::EEXIST
            ))
        )
    {
        // Another process (a second koko wiring the same container) took
        // one of those indexes meanwhile: let the kernel choose. Kernels
        // before 6.5 say EBUSY for a taken ifindex, later ones EEXIST, the
        // same as for a taken name: if the name is what is taken, the
        // retry fails with EEXIST again and is explained as such.
        created = session.block_on(link::create_veth(&ta, &a.name, &tb, &b.name, &req.options));
    }
    match created {
        Ok(()) => {
            record_veth(journal, req);
            // Test hook: a signal delivered here finds a veth without its
            // addresses, the half-built state an undo must take away.
            crate::interrupt::test_pause("AFTER_LINK")?;
        }
        Err(VethError::Namespace(e)) => return Err(e),
        Err(VethError::Kernel(errno)) => {
            return Err(explain_veth_failure(session, req, errno));
        }
    }

    let mut reports = Vec::with_capacity(2);
    for (end, t) in [(a, &ta), (b, &tb)] {
        let mut state = session.block_on(link::require(t, &end.name))?;
        if !state.up {
            // The peer is born down (see link::veth_request).
            session.block_on(link::set(
                t,
                &end.name,
                link::LinkChange {
                    up: Some(true),
                    mtu: None,
                },
            ))?;
            state.up = true;
        }
        for cidr in &end.addrs {
            session.block_on(addr::add(t, &end.name, *cidr))?;
        }
        reports.push(EndReport::new(end, state.index));
    }
    // "Both ends up" means usable: wait for linkwatch to have activated
    // both (normally a few ms; never fails the request).
    for (end, t) in [(a, &ta), (b, &tb)] {
        session.block_on(link::wait_oper_up(
            t,
            &end.name,
            std::time::Duration::from_secs(1),
        ))?;
    }
    let b_report = reports.pop().expect("two ends");
    let a_report = reports.pop().expect("two ends");
    Ok([a_report, b_report])
}

/// Check a veth request before anything is sent: names, MTU, two ends of
/// the same name in one namespace.
fn validate_veth(req: &VethRequest) -> Result<()> {
    let (a, b) = (&req.a, &req.b);
    link::validate_name(&a.name)?;
    link::validate_name(&b.name)?;
    if a.ns == b.ns && a.name == b.name {
        return Err(Error::Invalid(format!(
            "both ends are named '{}' in {}: a namespace cannot hold two links of the same name",
            a.name, a.ns
        )));
    }
    link::check_mtu(req.options.mtu)?;
    for cidr in a.addrs.iter().chain(&b.addrs) {
        addr::check_assignable(*cidr)?;
    }
    Ok(())
}

/// Record a created veth pair: deleting either end removes both; knowing the
/// peer's namespace lets a batched teardown skip pairs that die with their
/// namespaces.
fn record_veth(journal: &mut Journal, req: &VethRequest) {
    let (a, b) = (&req.a, &req.b);
    journal.record(
        format!("veth {} in {} <-> {} in {}", a.name, a.ns, b.name, b.ns),
        Undo::DeleteVeth {
            ns: a.ns.clone(),
            name: a.name.clone(),
            peer_ns: b.ns.clone(),
        },
    );
}

/// Create many veth pairs, both ends up, with their addresses, in as few
/// round trips as the kernel allows:
///
/// 1. every pair's `RTM_NEWLINK` (one per pair, each end born in its
///    namespace, as in [`veth`]) is sent on its first namespace's socket,
///    all pipelined (see [`batch`](crate::net::batch));
/// 2. one link dump per namespace involved learns the ifindexes (instead of
///    one lookup per end);
/// 3. the peers' "up" and every address are sent pipelined, each on its own
///    namespace's socket.
///
/// Sockets come from the session (one per namespace, reused across the
/// run); no thread ever switches namespace per item. Each pair created is in
/// `journal` before the next phase starts. On failure the error names the
/// request that failed (the first one, in request order); the others may
/// have succeeded and are in the journal, for the caller to roll back.
pub fn veth_many(
    session: &Session,
    journal: &mut Journal,
    reqs: &[VethRequest],
) -> Result<Vec<[EndReport; 2]>> {
    use crate::net::batch::{self, Answer, Op, Request};
    use crate::net::Target;
    use crate::ns::NsId;
    use std::collections::hash_map::Entry;
    use std::collections::{HashMap, HashSet};
    use std::os::fd::AsRawFd;

    // Everything that can be checked without the kernel, first.
    let mut names = HashSet::new();
    for req in reqs {
        validate_veth(req)?;
        for end in [&req.a, &req.b] {
            if !names.insert((end.ns.id(), end.name.as_str())) {
                return Err(Error::Invalid(format!(
                    "link '{}' in {} is asked for twice in one request",
                    end.name, end.ns
                )));
            }
        }
    }
    let mut targets: HashMap<NsId, Target> = HashMap::new();
    for req in reqs {
        for end in [&req.a, &req.b] {
            if let Entry::Vacant(slot) = targets.entry(end.ns.id()) {
                slot.insert(session.target(&end.ns)?);
            }
        }
    }

    // 1. Create the pairs, a chunk at a time (the peers' namespace fds only
    //    live until their chunk is answered).
    for chunk in reqs.chunks(batch::CHUNK) {
        let mut fds = HashMap::new();
        for req in chunk {
            journal.intend(Intent::Link {
                ns: req.a.ns.clone(),
                name: req.a.name.clone(),
            })?;
            if let Entry::Vacant(slot) = fds.entry(req.b.ns.id()) {
                slot.insert(req.b.ns.open()?);
            }
        }
        let requests = chunk
            .iter()
            .map(|req| Request {
                target: targets[&req.a.ns.id()].clone(),
                op: Op::CreateVeth {
                    name: req.a.name.clone(),
                    peer: req.b.name.clone(),
                    peer_ns_fd: fds[&req.b.ns.id()].as_raw_fd(),
                    options: req.options.clone(),
                },
            })
            .collect();
        let answers = session.block_on(batch::run(requests));
        drop(fds);
        let mut failed = None;
        for (req, answer) in chunk.iter().zip(answers) {
            match answer {
                Ok(_) => record_veth(journal, req),
                Err(errno) => {
                    failed.get_or_insert((req, errno));
                }
            }
        }
        if let Some((req, errno)) = failed {
            return Err(explain_veth_failure(session, req, errno));
        }
    }

    // 2. One dump per namespace: name -> (ifindex, up).
    let order: Vec<NsId> = targets.keys().copied().collect();
    let dumps = session.block_on(batch::run(
        order
            .iter()
            .map(|id| Request {
                target: targets[id].clone(),
                op: Op::ListLinks,
            })
            .collect(),
    ));
    let mut index: HashMap<(NsId, String), (u32, bool)> = HashMap::new();
    for (id, dump) in order.iter().zip(dumps) {
        let answer = dump.map_err(|errno| {
            Error::kernel(format!("listing links of {}", targets[id].ns), errno)
        })?;
        if let Answer::Links(links) = answer {
            for l in links {
                index.insert((*id, l.name), (l.index, l.up));
            }
        }
    }
    let lookup = |end: &EndRequest| -> Result<(u32, bool)> {
        index
            .get(&(end.ns.id(), end.name.clone()))
            .copied()
            .ok_or_else(|| Error::link_not_found(end.name.clone(), &end.ns))
    };

    // 3. Peers up and addresses, pipelined; each request remembers what it
    //    was for.
    let mut requests = Vec::new();
    let mut purposes: Vec<(String, Option<IpNet>)> = Vec::new();
    let mark = journal.mark();
    for req in reqs {
        if let Some(mark) = &mark {
            // The first end got the run's mark with its creation; the peer
            // gets it here, pipelined with the rest (see net::link).
            requests.push(Request {
                target: targets[&req.b.ns.id()].clone(),
                op: Op::SetAlias {
                    name: req.b.name.clone(),
                    alias: mark.clone(),
                },
            });
            purposes.push((
                format!("marking '{}' in {} as koko's", req.b.name, req.b.ns),
                None,
            ));
        }
        for end in [&req.a, &req.b] {
            let (ifindex, up) = lookup(end)?;
            let target = &targets[&end.ns.id()];
            if !up {
                let change = link::LinkChange {
                    up: Some(true),
                    mtu: None,
                };
                requests.push(Request {
                    target: target.clone(),
                    op: Op::SetLink {
                        index: ifindex,
                        change,
                    },
                });
                purposes.push((link::describe_change(&end.name, &end.ns, change), None));
            }
            for cidr in &end.addrs {
                if cidr.addr().is_ipv6() {
                    sysctl::enable_ipv6_on(&end.ns, &end.name)?;
                }
                requests.push(Request {
                    target: target.clone(),
                    op: Op::AddAddress {
                        index: ifindex,
                        addr: *cidr,
                    },
                });
                purposes.push((
                    format!("adding address {cidr} to '{}' in {}", end.name, end.ns),
                    Some(*cidr),
                ));
            }
        }
    }
    let answers = session.block_on(batch::run(requests));
    for ((what, cidr), answer) in purposes.into_iter().zip(answers) {
        if let Err(errno) = answer {
            return Err(match (errno, cidr) {
                (nix::errno::Errno::EEXIST, Some(c)) => Error::Kernel {
                    what: format!("address {c}"),
                    cause: format!("{what}: it is already there"),
                    errno: Some(errno),
                },
                _ => Error::kernel(what, errno),
            });
        }
    }

    let mut reports = Vec::with_capacity(reqs.len());
    for req in reqs {
        reports.push([
            EndReport::new(&req.a, lookup(&req.a)?.0),
            EndReport::new(&req.b, lookup(&req.b)?.0),
        ]);
    }
    Ok(reports)
}

/// Turn the kernel's refusal of a veth creation into words: which name clashes
/// where, or which namespace went away.
fn explain_veth_failure(session: &Session, req: &VethRequest, errno: nix::errno::Errno) -> Error {
    use nix::errno::Errno;
    if errno == Errno::EEXIST {
        for end in [&req.a, &req.b] {
            if let Ok(t) = session.target(&end.ns) {
                if let Ok(Some(_)) = session.block_on(link::get(&t, &end.name)) {
                    return Error::link_exists(end.name.clone(), &end.ns);
                }
            }
        }
    }
    for end in [&req.a, &req.b] {
        if !end.ns.exists() {
            return Error::namespace_not_found(Object::namespace(&end.ns), "is gone");
        }
    }
    Error::kernel(
        format!(
            "creating veth {} in {} <-> {} in {}",
            req.a.name, req.a.ns, req.b.name, req.b.ns
        ),
        errno,
    )
}

/// A link hung off a parent (vxlan, vlan, macvlan), put into `end`'s
/// namespace under `end.name`.
#[derive(Debug, Clone)]
pub struct TunnelRequest {
    /// Where the parent lives (the CLI: koko's own namespace, as the
    /// original; scripts may name another).
    pub parent_ns: Namespace,
    pub parent: String,
    pub end: EndRequest,
    pub kind: TunnelKind,
}

/// Create a vxlan/vlan/macvlan: born in the target namespace under its final
/// name in one request (see [`crate::net::tunnel`]), then up, then
/// its addresses. On error, whatever was created is in `journal`.
pub fn tunnel(session: &Session, journal: &mut Journal, req: &TunnelRequest) -> Result<EndReport> {
    let end = &req.end;
    link::validate_name(&end.name)?;
    link::validate_name(&req.parent)?;
    req.kind.validate()?;
    let pt = session.target(&req.parent_ns)?;
    let t = session.target(&end.ns)?;
    journal.intend(Intent::Link {
        ns: end.ns.clone(),
        name: end.name.clone(),
    })?;
    session.block_on(tunnel::create(&pt, &req.parent, &t, &end.name, &req.kind))?;
    journal.record(
        format!(
            "{} {} on {} in {}",
            req.kind.kind_name(),
            end.name,
            req.parent,
            end.ns
        ),
        Undo::DeleteLink {
            ns: end.ns.clone(),
            name: end.name.clone(),
        },
    );
    crate::interrupt::test_pause("AFTER_LINK")?;
    let state = session.block_on(link::require(&t, &end.name))?;
    if let TunnelKind::Vxlan(tunnel::VxlanOptions {
        mtu: Some(asked), ..
    }) = &req.kind
    {
        // The kernel silently clamps a vxlan's MTU to what its parent
        // allows (parent MTU minus the 50/70-byte vxlan header); say so
        // instead of leaving a link with an MTU nobody asked for.
        if state.mtu != *asked {
            return Err(Error::Kernel {
                what: format!("creating vxlan '{}' in {} with MTU {asked}", end.name, end.ns),
                cause: format!(
                    "the parent '{}' allows at most MTU {} for a vxlan on it (the kernel clamped it)",
                    req.parent, state.mtu
                ),
                errno: None,
            });
        }
    }
    let up = session.block_on(link::set(
        &t,
        &end.name,
        link::LinkChange {
            up: Some(true),
            mtu: None,
        },
    ));
    if let Err(e) = up {
        // A vxlan opens its UDP socket (in the parent's namespace) when it
        // goes up: a port held by something else fails only here.
        return Err(match (&req.kind, e.errno()) {
            (TunnelKind::Vxlan(v), Some(nix::errno::Errno::EADDRINUSE)) => Error::Kernel {
                what: format!("bringing vxlan '{}' in {} up", end.name, end.ns),
                cause: format!("UDP port {} is already in use in {}", v.port, req.parent_ns),
                errno: e.errno(),
            },
            _ => e,
        });
    }
    for cidr in &end.addrs {
        session.block_on(addr::add(&t, &end.name, *cidr))?;
    }
    Ok(EndReport::new(end, state.index))
}

/// Copy the traffic of link `source` (direction `dir`) out through link
/// `target`, both in `ns` (see [`crate::net::tc`]).
#[derive(Debug, Clone)]
pub struct MirrorRequest {
    pub ns: Namespace,
    pub source: String,
    pub dir: MirrorDir,
    pub target: String,
}

/// A mirror as installed, for reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MirrorReport {
    pub namespace: String,
    pub source: String,
    pub direction: &'static str,
    pub target: String,
    /// The namespace in words, for text output only.
    #[serde(skip)]
    pub place: String,
}

impl MirrorReport {
    /// "Mirror both of eth0 to link1 in netns 'a'...done"
    pub fn line(&self) -> String {
        format!(
            "Mirror {} of {} to {} in {}...done",
            self.direction, self.source, self.target, self.place
        )
    }
}

impl MirrorRequest {
    /// What a report says about this mirror once installed.
    pub fn report(&self) -> MirrorReport {
        MirrorReport {
            namespace: self.ns.name().to_string(),
            source: self.source.clone(),
            direction: self.dir.as_str(),
            target: self.target.clone(),
            place: self.ns.to_string(),
        }
    }
}

/// Install a mirror; recorded in `journal` (the clsact qdisc too, if koko
/// had to add it).
pub fn mirror(session: &Session, journal: &mut Journal, req: &MirrorRequest) -> Result<()> {
    link::validate_name(&req.source)?;
    link::validate_name(&req.target)?;
    if req.source == req.target {
        return Err(Error::Invalid(format!(
            "cannot mirror '{}' onto itself",
            req.source
        )));
    }
    let t = session.target(&req.ns)?;
    let src = session
        .block_on(link::get(&t, &req.source))?
        .ok_or_else(|| Error::NotFound {
            object: Object::link(req.source.clone()),
            place: Some(req.ns.to_string()),
            cause: Some("the mirror source must be in the same namespace as the link".into()),
        })?;
    let dst = session.block_on(link::require(&t, &req.target))?;
    let created = session.block_on(tc::ensure_clsact(&t, &req.source, src.index, req.dir))?;
    // Whether the clsact is koko's (made now, or by an earlier mirror of
    // koko's): the filters carry it, so deleting the last mirror removes
    // koko's clsact and never a user's own.
    let owns_qdisc = created || session.block_on(tc::clsact_is_kokos(&t, src.index))?;
    journal.record(
        format!(
            "mirror {} of {} to {} in {}",
            req.dir.as_str(),
            req.source,
            req.target,
            req.ns
        ),
        Undo::DeleteMirror {
            ns: req.ns.clone(),
            source: req.source.clone(),
            target_index: dst.index,
            remove_qdisc: created,
        },
    );
    session.block_on(tc::add_mirror_filters(
        &t,
        &req.source,
        src.index,
        req.dir,
        &req.target,
        dst.index,
        owns_qdisc,
    ))
}

/// What [`set_forwarding`] did: the families it set ("IPv4", "IPv6"; a
/// kernel without IPv6 has only the first).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Forwarding {
    pub on: bool,
    pub families: Vec<&'static str>,
}

/// Turn IPv4 and IPv6 forwarding on or off in `ns`: the one implementation
/// behind koro's `forwarding on|off`, scripts' `ns.forwarding(bool)` and the
/// inner nodes of a chain. A kernel without IPv6 is not an error (there is
/// nothing to forward). Only a value that actually changed is journaled, so
/// an undo never "restores" what this run did not touch. The session is
/// taken like every operation's here; sysctls need no socket.
pub fn set_forwarding(
    _session: &Session,
    journal: &mut Journal,
    ns: &Namespace,
    on: bool,
) -> Result<Forwarding> {
    let value = if on { "1" } else { "0" };
    let mut families = Vec::with_capacity(2);
    for (key, old) in sysctl::set_forwarding(ns, on)? {
        if old != value {
            journal.record(
                format!("sysctl {key} in {ns}"),
                Undo::RestoreSysctl {
                    ns: ns.clone(),
                    key: key.into(),
                    value: old,
                },
            );
        }
        families.push(if key.contains("ipv4") { "IPv4" } else { "IPv6" });
    }
    Ok(Forwarding { on, families })
}

impl Forwarding {
    /// "IPv4 and IPv6 forwarding on in netns 'r'" (koro's summary line).
    pub fn line(&self, ns: &Namespace) -> String {
        let word = if self.on { "on" } else { "off" };
        format!("{} forwarding {word} in {ns}", self.families.join(" and "))
    }
}

/// Delete link `name` in `ns` (a veth's peer goes with it). First removes
/// the mirror filters koko installed that copy to this link, in `ns` (a
/// mirror's source is always in the same namespace as its target), and for a
/// veth also those that copy to its peer, in the peer's namespace: so no
/// filter is left pointing at a dead interface.
pub fn delete_link(session: &Session, ns: &Namespace, name: &str) -> Result<()> {
    link::validate_name(name)?;
    let t = session.target(ns)?;
    if let Some(l) = session.block_on(link::get(&t, name))? {
        session.block_on(tc::remove_mirrors_to(&t, l.index))?;
        if l.kind.as_deref() == Some("veth") {
            if let Some(peer_index) = l.link_index {
                let peer_ns = match l.link_netnsid {
                    None => Some(ns.clone()),
                    Some(id) => nsid::find(session, &t, nsid::candidates(), id),
                };
                if let Some(peer_ns) = peer_ns {
                    let pt = session.target(&peer_ns)?;
                    session.block_on(tc::remove_mirrors_to(&pt, peer_index))?;
                }
            }
        }
    }
    session.block_on(link::delete(&t, name))
}

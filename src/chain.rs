//! A linear chain of namespaces built in bulk (the engine behind the
//! `chain` stdlib module): node i and node i+1 are joined by a veth
//! `link{2i+1}` <-> `link{2i+2}` on subnet `BASE.{START+i}.0/24` (left end
//! .1, right end .2); inner nodes forward; the ends get a default route into
//! the chain and inner nodes a route to every subnet not adjacent to them.
//!
//! Built for hundreds of nodes: the missing namespaces are created by one
//! helper thread, inner nodes get forwarding through
//! [`connect::set_forwarding`], the links go through
//! [`connect::veth_many`] and the routes through pipelined
//! [`batch`] operations, a window of links at a time so that only a window's
//! sockets are open at once (memory and fds stay flat whatever the length).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use crate::connect::{self, EndRequest, VethRequest};
use crate::error::{Error, Result};
use crate::journal::{Journal, Undo};
use crate::net::batch::{self, Op, Request};
use crate::net::link::VethOptions;
use crate::net::route::{self, RouteOp, RouteRequest};
use crate::net::{sysctl, Session};
use crate::ns::{named, Namespace};

/// How many links are built before the sockets of finished nodes are closed.
pub const WINDOW: usize = 128;

#[derive(Debug, Clone)]
pub struct ChainOptions {
    /// The first two octets, "10.0".
    pub base: String,
    /// The third octet of the first subnet.
    pub start: u32,
    pub mtu: u32,
    pub routes: bool,
    /// IFLA_GROUP for every link (0: the default group).
    pub group: u32,
}

impl Default for ChainOptions {
    fn default() -> Self {
        ChainOptions {
            base: "10.0".into(),
            start: 1,
            mtu: 1500,
            routes: true,
            group: 0,
        }
    }
}

/// The network of link i's subnet. `BASE.{START+i}.0/24` as long as that is
/// an octet; beyond, it carries into the second octet (10.0.255.0/24 is
/// followed by 10.1.0.0/24), so chains longer than 255 links work.
pub fn subnet(opts: &ChainOptions, i: usize) -> Result<Ipv4Addr> {
    let bad = || {
        Error::Invalid(format!(
            "chain base '{}' must be two octets, like \"10.0\"",
            opts.base
        ))
    };
    let octets: Vec<u32> = opts
        .base
        .split('.')
        .map(|o| o.parse::<u8>().map(u32::from).map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let [a, b] = octets[..] else {
        return Err(bad());
    };
    let net = ((a << 24) | (b << 16)) as u64 + ((opts.start as u64 + i as u64) << 8);
    if net > u32::MAX as u64 || (net >> 24) != a as u64 {
        return Err(Error::Invalid(format!(
            "a chain of this length does not fit in {}.0.0/8 from subnet {}",
            a, opts.start
        )));
    }
    Ok(Ipv4Addr::from(net as u32))
}

fn host(net: Ipv4Addr, h: u8) -> Ipv4Addr {
    let o = net.octets();
    Ipv4Addr::new(o[0], o[1], o[2], h)
}

fn cidr(net: Ipv4Addr, h: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new(host(net, h), 24).expect("prefix 24"))
}

/// The chain as built: its nodes in order.
#[derive(Debug, Clone)]
pub struct Chain {
    pub nodes: Vec<Namespace>,
}

/// Link names of pair i: `link{2i+1}` (on node i) and `link{2i+2}` (on node i+1).
pub fn link_names(i: usize) -> (String, String) {
    (format!("link{}", 2 * i + 1), format!("link{}", 2 * i + 2))
}

/// Build the chain. Namespaces that exist are used as they are; the others
/// are created (and recorded). Everything made is in `journal`.
pub fn build(
    session: &Session,
    journal: &mut Journal,
    names: &[String],
    opts: &ChainOptions,
) -> Result<Chain> {
    if names.len() < 2 {
        return Err(Error::Invalid(format!(
            "a chain needs at least two namespaces, got {}",
            names.len()
        )));
    }
    let last = names.len() - 1;
    // Check the addressing before touching anything.
    subnet(opts, last - 1)?;
    raise_fd_limit();

    // Namespaces: create the missing ones in one go.
    let mut nodes: Vec<Option<Namespace>> = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Namespace::netns(name) {
            Ok(ns) => nodes.push(Some(ns)),
            Err(e) if e.is_namespace_not_found() => {
                nodes.push(None);
                missing.push(i);
            }
            Err(e) => return Err(e),
        }
    }
    let missing_names: Vec<String> = missing.iter().map(|&i| names[i].clone()).collect();
    // A namespace created here gets forwarding while the helper thread is
    // inside it (no extra namespace switch: hundreds of nodes would pay two
    // setns each otherwise); undo deletes the namespace, so nothing to
    // journal.
    for name in &missing_names {
        journal.intend(crate::journal::Intent::Netns { name: name.clone() })?;
    }
    let created = named::create_many(&missing_names, |k| {
        let i = missing[k];
        if i == 0 || i == last {
            Ok(())
        } else {
            sysctl::set_forwarding_here(true)
        }
    })?;
    // Marked first, then recorded (see crate::journal).
    if let Err(e) = crate::journal::mark_netns_many(session, journal, &created) {
        for (ns, name) in created.iter().zip(&missing_names) {
            session.forget(ns);
            let _ = named::delete(name);
        }
        return Err(e);
    }
    for (k, ns) in created.into_iter().enumerate() {
        journal.record(
            format!("netns '{}'", missing_names[k]),
            Undo::DeleteNamespace {
                name: missing_names[k].clone(),
            },
        );
        nodes[missing[k]] = Some(ns);
    }
    let nodes: Vec<Namespace> = nodes.into_iter().map(|n| n.expect("every node")).collect();
    // Forwarding on the inner nodes that existed already (journaled, put
    // back on undo).
    for (i, ns) in nodes.iter().enumerate().take(last).skip(1) {
        if missing.binary_search(&i).is_err() {
            connect::set_forwarding(session, journal, ns, true)?;
        }
    }

    // Links and routes, a window at a time. ifindex of each node's left
    // (towards i-1) and right (towards i+1) link.
    let mut left = vec![0u32; nodes.len()];
    let mut right = vec![0u32; nodes.len()];
    let options = VethOptions {
        mtu: opts.mtu,
        group: opts.group,
        ..VethOptions::default()
    };
    let mut k = 0;
    let mut progress = crate::progress::Progress::counted("wiring the chain: links", last);
    while k < last {
        progress.set(k);
        // A long chain stops between windows on a stop signal; what it
        // built so far is in the journal, for the caller's undo.
        crate::interrupt::check()?;
        let e = (k + WINDOW).min(last);
        let mut reqs = Vec::with_capacity(e - k);
        for i in k..e {
            let net = subnet(opts, i)?;
            let (na, nb) = link_names(i);
            reqs.push(VethRequest {
                a: EndRequest {
                    ns: nodes[i].clone(),
                    name: na,
                    addrs: vec![cidr(net, 1)],
                },
                b: EndRequest {
                    ns: nodes[i + 1].clone(),
                    name: nb,
                    addrs: vec![cidr(net, 2)],
                },
                options: options.clone(),
            });
        }
        let reports = connect::veth_many(session, journal, &reqs)?;
        for (i, [a, b]) in (k..e).zip(reports) {
            right[i] = a.ifindex;
            left[i + 1] = b.ifindex;
        }
        // Nodes k..e have all their links now (node e's right one comes
        // with the next window, unless e is the last node).
        let done = if e == last { k..=e } else { k..=e - 1 };
        if opts.routes {
            add_routes(session, &nodes, done.clone(), last, &left, &right, opts)?;
        }
        for i in done {
            session.forget(&nodes[i]);
        }
        k = e;
    }
    Ok(Chain { nodes })
}

/// The routes of nodes `range`, pipelined.
fn add_routes(
    session: &Session,
    nodes: &[Namespace],
    range: std::ops::RangeInclusive<usize>,
    last: usize,
    left: &[u32],
    right: &[u32],
    opts: &ChainOptions,
) -> Result<()> {
    let mut requests = Vec::new();
    let mut what = Vec::new();
    for i in range {
        let t = session.target(&nodes[i])?;
        let mut routes: Vec<(RouteRequest, u32)> = Vec::new();
        let via = |net: Ipv4Addr, h: u8, dest: IpNet, dev: String| -> RouteRequest {
            let mut r = RouteRequest::to(dest);
            r.via = Some(IpAddr::V4(host(net, h)));
            r.dev = Some(dev);
            r
        };
        let default: IpNet = "0.0.0.0/0".parse().expect("default");
        if i == 0 {
            routes.push((via(subnet(opts, 0)?, 2, default, link_names(0).0), right[0]));
        } else if i == last {
            routes.push((
                via(subnet(opts, last - 1)?, 1, default, link_names(last - 1).1),
                left[last],
            ));
        } else {
            for j in 0..last {
                let dest = IpNet::V4(Ipv4Net::new(subnet(opts, j)?, 24).expect("24"));
                if j + 1 < i {
                    routes.push((
                        via(subnet(opts, i - 1)?, 1, dest, link_names(i - 1).1),
                        left[i],
                    ));
                } else if j > i {
                    routes.push((via(subnet(opts, i)?, 2, dest, link_names(i).0), right[i]));
                }
            }
        }
        for (r, oif) in routes {
            requests.push(Request {
                target: t.clone(),
                op: Op::AddRoute {
                    route: r.clone(),
                    oif,
                },
            });
            what.push((r, t.clone()));
        }
    }
    let answers = session.block_on(batch::run(requests));
    for ((r, t), answer) in what.into_iter().zip(answers) {
        if let Err(errno) = answer {
            return Err(route::explain(&t.ns, &r, RouteOp::Add, errno));
        }
    }
    Ok(())
}

/// A long chain holds a socket and a namespace fd per node at times: lift
/// the soft limit on open files to the hard one (as Go programs do).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Delete many named namespaces (the bulk `ip netns del`): the kernel tears
/// them down together, in one batch. Every name is looked up first, so a
/// missing one (a typo) destroys nothing. Sockets koko holds in them are
/// closed first (they would keep them alive). Then every one is deleted;
/// the errors met are returned.
pub fn destroy_namespaces(session: &Session, names: &[String]) -> Vec<Error> {
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        match Namespace::netns(name) {
            Ok(ns) => found.push(ns),
            Err(Error::NotFound {
                object,
                place,
                cause,
            }) => {
                return vec![Error::NotFound {
                    object,
                    place,
                    cause: Some(format!(
                        "{}; nothing was destroyed",
                        cause.unwrap_or_else(|| "does not exist".into())
                    )),
                }]
            }
            Err(e) => return vec![e],
        }
    }
    let mut errors = Vec::new();
    let mut progress = crate::progress::Progress::counted("deleting namespaces", found.len());
    for ns in &found {
        progress.add(1);
        session.forget(ns);
        if let Err(e) = named::delete(ns.name()) {
            errors.push(e);
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_follow_the_stdlib_and_carry_past_255() {
        let o = ChainOptions::default();
        assert_eq!(subnet(&o, 0).unwrap(), Ipv4Addr::new(10, 0, 1, 0));
        assert_eq!(subnet(&o, 254).unwrap(), Ipv4Addr::new(10, 0, 255, 0));
        assert_eq!(subnet(&o, 255).unwrap(), Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(subnet(&o, 998).unwrap(), Ipv4Addr::new(10, 3, 231, 0));
        let bad = ChainOptions {
            base: "10".into(),
            ..ChainOptions::default()
        };
        assert!(subnet(&bad, 0)
            .unwrap_err()
            .to_string()
            .contains("two octets"));
        let edge = ChainOptions {
            base: "10.255".into(),
            start: 255,
            ..ChainOptions::default()
        };
        assert!(subnet(&edge, 1).is_err());
    }
}

//! The journal: what a run created, and how to undo it.
//!
//! Every object koko creates is recorded together with its inverse. If a
//! one-shot command fails half-way, or a script fails (or asks for
//! `cleanup()`), the journal is undone newest-first. Undo is best-effort and
//! thorough: it keeps going past failures and returns every error, because a
//! teardown that stops at the first problem leaves the most behind. Objects
//! that are already gone (a veth end that went with its peer, a namespace
//! deleted by someone else) count as undone.

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::net::route::{self, RouteRequest};
use crate::net::{addr, impair, link, sysctl, tc, Session};
use crate::ns::{named, Namespace};

/// How to undo one step.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Delete a link (for a veth, its peer goes too).
    DeleteLink { ns: Namespace, name: String },
    /// Delete a veth pair by its end `name` in `ns`; its peer is in
    /// `peer_ns` (so a batched teardown knows whether the pair dies with the
    /// namespaces it deletes).
    DeleteVeth {
        ns: Namespace,
        name: String,
        peer_ns: Namespace,
    },
    /// Remove an address from a link.
    DeleteAddress {
        ns: Namespace,
        link: String,
        addr: IpNet,
    },
    /// Delete a named namespace this run created.
    DeleteNamespace { name: String },
    /// Put a sysctl back to its old value.
    RestoreSysctl {
        ns: Namespace,
        key: String,
        value: String,
    },
    /// Stop a traffic responder koko started.
    StopServer(std::sync::Arc<std::sync::Mutex<crate::probe::HttpServer>>),
    /// Remove koko's mirror filters on link `source` that copy to the link
    /// with ifindex `target_index` (and the clsact qdisc, if koko added it
    /// and nothing else is left on it).
    DeleteMirror {
        ns: Namespace,
        source: String,
        target_index: u32,
        remove_qdisc: bool,
    },
    /// Delete a route this run added.
    DeleteRoute { ns: Namespace, route: RouteRequest },
    /// Put back a route this run replaced (`ip route replace` of an existing one).
    RestoreRoute { ns: Namespace, route: RouteRequest },
    /// Put a link's state (up/down, MTU) back; when that brings it back
    /// up, also the routes and IPv6 addresses the kernel flushed when this
    /// run set it down (empty otherwise).
    RestoreLink {
        ns: Namespace,
        link: String,
        change: link::LinkChange,
        routes: Vec<RouteRequest>,
        addrs: Vec<IpNet>,
    },
    /// Put a link's tc state (root qdisc, koko's drop filters, clsact)
    /// back as it was before an impairment.
    RestoreTc {
        ns: Namespace,
        snapshot: impair::TcSnapshot,
    },
    /// End a blackhole: koko's drop-all filter on `hook` goes, and the
    /// clsact qdisc too if koko added it and nothing is left on it.
    Unblackhole {
        ns: Namespace,
        snapshot: impair::TcSnapshot,
        hook: tc::Hook,
    },
    /// Take away the ifb koko made to shape what link `ifindex` (`link`)
    /// receives, with its redirect.
    RemoveIfb {
        ns: Namespace,
        link: String,
        ifindex: u32,
    },
    /// Stop a flapping link (it is left up, as it began).
    StopFlap(std::sync::Arc<std::sync::Mutex<crate::impair::Flap>>),
    /// Plug an unplugged link back: up, with the routes (and IPv6
    /// addresses) the kernel dropped when it went down.
    Plug {
        ns: Namespace,
        link: String,
        routes: Vec<RouteRequest>,
        addrs: Vec<IpNet>,
    },
}

/// One recorded step: a description for reports, and its inverse.
#[derive(Debug, Clone)]
pub struct Entry {
    pub what: String,
    pub undo: Undo,
}

#[derive(Debug, Default)]
pub struct Journal {
    entries: Vec<Entry>,
}

impl Journal {
    pub fn new() -> Journal {
        Journal::default()
    }

    pub fn record(&mut self, what: impl Into<String>, undo: Undo) {
        self.entries.push(Entry {
            what: what.into(),
            undo,
        });
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remove and return the newest entry whose undo matches `pred` (an
    /// operation that ends what an earlier one started: plug after unplug,
    /// restore after blackhole).
    pub fn take_last(&mut self, pred: impl Fn(&Undo) -> bool) -> Option<Entry> {
        let at = self.entries.iter().rposition(|e| pred(&e.undo))?;
        Some(self.entries.remove(at))
    }

    /// Forget everything recorded (the run keeps what it built).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Undo everything, newest first, and empty the journal. Returns every
    /// error met on the way (an empty list means all is undone).
    pub fn undo_all(&mut self, session: &Session) -> Vec<Error> {
        let mut errors = Vec::new();
        while let Some(entry) = self.entries.pop() {
            if let Err(e) = undo_one(session, &entry.undo) {
                errors.push(e);
            }
        }
        errors
    }

    /// Undo everything like [`Journal::undo_all`], in as few kernel
    /// requests as it allows: the namespaces this run created are deleted
    /// (the kernel tears a namespace down with everything in it, many
    /// namespaces in one batch, paying its RCU grace periods once instead of
    /// once per link), and the steps that only touched those namespaces are
    /// skipped, since they go with them. Every other step (anything in a
    /// namespace the run did not create, a veth with an end outside, links
    /// whose peer is not known, servers) is undone one by one, newest first,
    /// before the namespaces go. Returns every error met.
    ///
    /// The kernel finishes tearing a deleted namespace down asynchronously;
    /// nothing outside the deleted namespaces is left waiting on that.
    pub fn undo_all_batched(&mut self, session: &Session) -> Vec<Error> {
        use std::collections::HashSet;
        let doomed: Vec<Namespace> = self
            .entries
            .iter()
            .filter_map(|e| match &e.undo {
                Undo::DeleteNamespace { name } => Namespace::netns(name).ok(),
                _ => None,
            })
            .collect();
        let ids: HashSet<_> = doomed.iter().map(|ns| ns.id()).collect();
        let dies = |ns: &Namespace| ids.contains(&ns.id());
        let mut errors = Vec::new();
        let mut names = Vec::new();
        while let Some(entry) = self.entries.pop() {
            let skip = match &entry.undo {
                Undo::DeleteNamespace { name } => {
                    names.push(name.clone());
                    true
                }
                Undo::DeleteVeth { ns, peer_ns, .. } => dies(ns) && dies(peer_ns),
                Undo::DeleteAddress { ns, .. }
                | Undo::RestoreSysctl { ns, .. }
                | Undo::DeleteMirror { ns, .. }
                | Undo::DeleteRoute { ns, .. }
                | Undo::RestoreRoute { ns, .. }
                | Undo::RestoreLink { ns, .. }
                | Undo::RestoreTc { ns, .. }
                | Undo::Unblackhole { ns, .. }
                | Undo::RemoveIfb { ns, .. }
                | Undo::Plug { ns, .. } => dies(ns),
                // A plain link's peer (a veth made by other means) or UDP
                // socket (vxlan) may be outside: delete it explicitly.
                Undo::DeleteLink { .. } | Undo::StopServer(_) | Undo::StopFlap(_) => false,
            };
            if !skip {
                if let Err(e) = undo_one(session, &entry.undo) {
                    errors.push(e);
                }
            }
        }
        // Newest first, as recorded (names were pushed newest first).
        for ns in &doomed {
            session.forget(ns);
        }
        for name in names {
            match named::delete(&name) {
                Ok(()) => {}
                Err(e) if e.is_namespace_not_found() => {}
                Err(e) => errors.push(e),
            }
        }
        errors
    }
}

/// Whether `error`, met while undoing `undo`, only says that the object is
/// already gone (with its namespace, its link, or removed by someone else):
/// then the step counts as undone. Kept apart from the kernel calls so the
/// rule is testable on its own.
pub fn already_gone(undo: &Undo, error: &Error) -> bool {
    use nix::errno::Errno;
    let errno = match error {
        Error::Kernel { errno, .. } => *errno,
        _ => None,
    };
    match undo {
        Undo::DeleteLink { .. }
        | Undo::DeleteVeth { .. }
        | Undo::RestoreLink { .. }
        | Undo::Plug { .. } => error.is_link_not_found(),
        Undo::DeleteAddress { .. } => {
            error.is_link_not_found() || errno == Some(Errno::EADDRNOTAVAIL)
        }
        Undo::DeleteRoute { .. } => {
            error.is_link_not_found() || matches!(errno, Some(Errno::ESRCH | Errno::ENOENT))
        }
        Undo::DeleteNamespace { .. } => error.is_namespace_not_found(),
        Undo::RestoreSysctl { .. }
        | Undo::StopServer(_)
        | Undo::StopFlap(_)
        | Undo::DeleteMirror { .. }
        | Undo::RestoreRoute { .. }
        | Undo::RestoreTc { .. }
        | Undo::Unblackhole { .. }
        | Undo::RemoveIfb { .. } => false,
    }
}

/// Carry out one undo step; something already gone counts as undone.
pub fn undo_one(session: &Session, undo: &Undo) -> Result<()> {
    match undo_step(session, undo) {
        Err(e) if already_gone(undo, &e) => Ok(()),
        other => other,
    }
}

/// Carry out one inverse step. A step in a namespace that no longer exists
/// is done: everything in it went with it.
fn undo_step(session: &Session, undo: &Undo) -> Result<()> {
    match undo {
        Undo::DeleteLink { ns, name } | Undo::DeleteVeth { ns, name, .. } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(link::delete(&t, name))
        }
        Undo::DeleteAddress {
            ns,
            link: name,
            addr: a,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(addr::del(&t, name, *a))
        }
        Undo::DeleteNamespace { name } => {
            if let Ok(ns) = Namespace::netns(name) {
                session.forget(&ns);
            }
            named::delete(name)
        }
        Undo::RestoreSysctl { ns, key, value } => {
            if !ns.exists() {
                return Ok(());
            }
            sysctl::write(ns, key, value).map(drop)
        }
        Undo::StopServer(server) => {
            if let Ok(mut s) = server.lock() {
                s.stop();
            }
            Ok(())
        }
        Undo::DeleteMirror {
            ns,
            source,
            target_index,
            remove_qdisc,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            let Some(src) = session.block_on(link::get(&t, source))? else {
                return Ok(()); // the source is gone, and its filters with it
            };
            let policy = if *remove_qdisc {
                tc::QdiscPolicy::RemoveIfEmpty
            } else {
                // A clsact that an earlier mirror of koko's added (its
                // filters say so) goes with koko's last filter.
                tc::QdiscPolicy::IfKokos
            };
            session
                .block_on(tc::remove_mirror_filters(
                    &t,
                    src.index,
                    *target_index,
                    policy,
                ))
                .map(drop)
        }
        Undo::DeleteRoute { ns, route: r } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(route::del(&t, r))
        }
        Undo::RestoreRoute { ns, route: r } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(route::replace(&t, r))
        }
        Undo::RestoreLink {
            ns,
            link: name,
            change,
            routes,
            addrs,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(link::set(&t, name, *change))?;
            restore_flushed(session, &t, name, addrs, routes)
        }
        Undo::StopFlap(flap) => match flap.lock() {
            Ok(mut f) => f.stop(),
            Err(_) => Ok(()),
        },
        Undo::RestoreTc { ns, snapshot } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(impair::restore(&t, snapshot))
        }
        Undo::RemoveIfb {
            ns,
            link: name,
            ifindex,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            match session.block_on(link::get(&t, name))? {
                // The link koko shaped: its redirect, the ifb, a clsact
                // koko added.
                Some(l) if l.index == *ifindex => {
                    session.block_on(impair::remove_ifb(&t, *ifindex))
                }
                // The link went (its filters with it): the ifb, named
                // after its ifindex, is all that is left of koko's.
                _ => match session.block_on(link::delete(&t, &impair::ifb_name(*ifindex))) {
                    Err(e) if e.is_link_not_found() => Ok(()),
                    other => other,
                },
            }
        }
        Undo::Unblackhole { ns, snapshot, hook } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            session.block_on(impair::unblackhole(&t, snapshot, *hook))
        }
        Undo::Plug {
            ns,
            link: name,
            routes,
            addrs,
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            let up = link::LinkChange {
                up: Some(true),
                mtu: None,
            };
            session.block_on(link::set(&t, name, up))?;
            restore_flushed(session, &t, name, addrs, routes)
        }
    }
}

/// Put back what the kernel flushed when a link went down (see
/// `addr::flushed_by_down`, `route::flushed_by_down`): addresses first
/// (an IPv6 gateway is only reachable through its prefix), then routes.
/// Both are idempotent: an address already back counts as restored, and a
/// route is replaced.
pub fn restore_flushed(
    session: &Session,
    t: &crate::net::Target,
    link_name: &str,
    addrs: &[IpNet],
    routes: &[RouteRequest],
) -> Result<()> {
    for a in addrs {
        match session.block_on(addr::add(t, link_name, *a)) {
            Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {}
            other => other?,
        }
    }
    for r in routes {
        session.block_on(route::replace(t, r))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Object;
    use nix::errno::Errno;

    fn kernel(errno: Errno) -> Error {
        Error::kernel("undoing", errno)
    }

    #[test]
    fn undoing_what_is_already_gone_is_done() {
        let ns = Namespace::current().unwrap();
        let link_gone = Error::link_not_found("link1", &ns);
        let delete_link = Undo::DeleteLink {
            ns: ns.clone(),
            name: "link1".into(),
        };
        assert!(already_gone(&delete_link, &link_gone));
        assert!(!already_gone(&delete_link, &kernel(Errno::EPERM)));

        let delete_addr = Undo::DeleteAddress {
            ns: ns.clone(),
            link: "link1".into(),
            addr: "10.0.0.1/24".parse().unwrap(),
        };
        assert!(already_gone(&delete_addr, &link_gone));
        assert!(already_gone(&delete_addr, &kernel(Errno::EADDRNOTAVAIL)));
        assert!(!already_gone(&delete_addr, &kernel(Errno::EBUSY)));

        let delete_route = Undo::DeleteRoute {
            ns: ns.clone(),
            route: RouteRequest::to("10.0.3.0/24".parse().unwrap()),
        };
        assert!(already_gone(&delete_route, &kernel(Errno::ESRCH)));
        assert!(already_gone(&delete_route, &kernel(Errno::ENOENT)));
        assert!(!already_gone(&delete_route, &kernel(Errno::EINVAL)));

        let delete_ns = Undo::DeleteNamespace { name: "a".into() };
        let ns_gone = Error::namespace_not_found(Object::namespace(&ns), "is gone");
        assert!(already_gone(&delete_ns, &ns_gone));
        assert!(!already_gone(&delete_ns, &link_gone));
    }

    #[test]
    fn putting_something_back_is_never_silently_skipped() {
        let ns = Namespace::current().unwrap();
        let restore = Undo::RestoreSysctl {
            ns: ns.clone(),
            key: "net.ipv4.ip_forward".into(),
            value: "0".into(),
        };
        let missing = Error::NotFound {
            object: Object::sysctl("net.ipv4.ip_forward"),
            place: None,
            cause: None,
        };
        assert!(!already_gone(&restore, &missing));
        let restore_route = Undo::RestoreRoute {
            ns,
            route: RouteRequest::to("10.0.3.0/24".parse().unwrap()),
        };
        assert!(!already_gone(&restore_route, &kernel(Errno::ESRCH)));
    }

    #[test]
    fn undoing_a_namespace_that_never_existed_is_done() {
        let session = Session::new().unwrap();
        let mut journal = Journal::new();
        journal.record(
            "netns 'koko-unit-never-there'",
            Undo::DeleteNamespace {
                name: "koko-unit-never-there".into(),
            },
        );
        assert!(journal.undo_all(&session).is_empty());
        assert!(journal.is_empty());
    }
}

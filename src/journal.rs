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
    /// Put a link's state (up/down, MTU) back.
    RestoreLink {
        ns: Namespace,
        link: String,
        change: link::LinkChange,
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
    /// Stop a flapping link (it is left up, as it began).
    StopFlap(std::sync::Arc<std::sync::Mutex<crate::impair::Flap>>),
    /// Plug an unplugged link back: up, with the routes the kernel dropped
    /// when it went down.
    Plug {
        ns: Namespace,
        link: String,
        routes: Vec<RouteRequest>,
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

/// Carry out one undo step. Something already gone (its namespace, its
/// link) counts as undone.
pub fn undo_one(session: &Session, undo: &Undo) -> Result<()> {
    match undo {
        Undo::DeleteLink { ns, name } | Undo::DeleteVeth { ns, name, .. } => {
            if !ns.exists() {
                return Ok(()); // the namespace, and the link with it, is gone
            }
            let t = session.target(ns)?;
            match session.block_on(link::delete(&t, name)) {
                Err(e) if e.is_link_not_found() => Ok(()),
                other => other,
            }
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
            match session.block_on(addr::del(&t, name, *a)) {
                Err(e) if e.is_link_not_found() => Ok(()),
                Err(Error::Kernel {
                    errno: Some(nix::errno::Errno::EADDRNOTAVAIL),
                    ..
                }) => Ok(()),
                other => other,
            }
        }
        Undo::DeleteNamespace { name } => {
            if let Ok(ns) = Namespace::netns(name) {
                session.forget(&ns);
            }
            match named::delete(name) {
                Err(e) if e.is_namespace_not_found() => Ok(()),
                other => other,
            }
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
                tc::QdiscPolicy::Keep
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
            match session.block_on(route::del(&t, r)) {
                // Gone already: with its link, or deleted by someone else.
                Err(e) if e.is_link_not_found() => Ok(()),
                Err(Error::Kernel { errno: Some(e), .. })
                    if e == nix::errno::Errno::ESRCH || e == nix::errno::Errno::ENOENT =>
                {
                    Ok(())
                }
                other => other,
            }
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
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            match session.block_on(link::set(&t, name, *change)) {
                Err(e) if e.is_link_not_found() => Ok(()),
                other => other,
            }
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
        } => {
            if !ns.exists() {
                return Ok(());
            }
            let t = session.target(ns)?;
            let up = link::LinkChange {
                up: Some(true),
                mtu: None,
            };
            match session.block_on(link::set(&t, name, up)) {
                Err(e) if e.is_link_not_found() => return Ok(()),
                other => other?,
            }
            // Routes the kernel flushed when the link went down; replace
            // is idempotent if one is back already.
            for r in routes {
                session.block_on(route::replace(&t, r))?;
            }
            Ok(())
        }
    }
}

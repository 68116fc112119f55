//! nsids: how one namespace numbers another.
//!
//! For a veth the kernel tells where the peer is: its ifindex (IFLA_LINK)
//! and, when it lives in another namespace, that namespace's *nsid* as seen
//! from here (IFLA_LINK_NETNSID). An nsid is a small number local to the
//! namespace that reports it, not a name. To put a name on it, koko asks
//! the kernel (RTM_GETNSID carrying a namespace fd) which nsid each
//! namespace it can reach has from here, and takes the one that matches.
//!
//! The namespaces koko can reach are [`candidates`]: every `ip netns`
//! namespace, koko's own, and the namespace of every running process
//! (which covers containers). `koko show` (naming a peer) and link deletion
//! (finding the peer's namespace to remove mirrors that copy to it) both use
//! [`find`], so they always agree about the same peer.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::{Session, Target};
use crate::error::{Error, Result};
use crate::ns::{named, Namespace};

/// The RTM_GETNSID message asking for the nsid of the namespace behind `fd`.
pub(in crate::net) fn get_request(fd: RawFd) -> NsidMessage {
    let mut msg = NsidMessage::default();
    msg.attributes.push(NsidAttribute::Fd(fd as u32));
    msg
}

/// The nsid in an RTM_NEWNSID answer (None: the kernel assigned none, -1).
fn id_of(answers: &[RouteNetlinkMessage]) -> Option<i32> {
    answers.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewNsId(n) => n.attributes.iter().find_map(|a| match a {
            NsidAttribute::Id(id) if *id >= 0 => Some(*id),
            _ => None,
        }),
        _ => None,
    })
}

/// The nsid `other` has as seen from `t`'s namespace (None if unassigned).
pub async fn nsid_of(t: &Target, other: &Namespace) -> Result<Option<i32>> {
    // The fd only has to live until the kernel answered.
    let fd = other.open()?;
    let answers = t
        .socket
        .request(RouteNetlinkMessage::GetNsId(get_request(fd.as_raw_fd())), 0)
        .await
        .map_err(|errno| {
            Error::kernel(format!("asking {} for the nsid of {other}", t.ns), errno)
        })?;
    drop(fd);
    Ok(id_of(&answers))
}

/// Every namespace koko can name, each once: the `ip netns` namespaces
/// first (their names read best), then koko's own, then those of running
/// processes in pid order. Lazy, so a search stops at its match; unreadable
/// entries are skipped (this is a search, not an inventory).
pub fn candidates() -> impl Iterator<Item = Namespace> {
    let named = named::list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| Namespace::netns(&n).ok());
    let own = Namespace::current().ok();
    // /proc lists processes in pid order; read it lazily.
    let processes = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| Namespace::pid(pid).ok());
    let mut seen = HashSet::new();
    named
        .chain(own)
        .chain(processes)
        .filter(move |ns| seen.insert(ns.id()))
}

/// The namespace that `t`'s namespace calls `nsid`, among `candidates`
/// (normally [`candidates`]); None if it is none of them.
pub fn find(
    session: &Session,
    t: &Target,
    candidates: impl IntoIterator<Item = Namespace>,
    nsid: i32,
) -> Option<Namespace> {
    candidates
        .into_iter()
        .filter(|c| c.id() != t.ns.id())
        .find(|c| session.block_on(nsid_of(t, c)).ok().flatten() == Some(nsid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_the_fd_and_nothing_else() {
        let msg = get_request(7);
        assert_eq!(msg.attributes, vec![NsidAttribute::Fd(7)]);
    }

    #[test]
    fn an_unassigned_nsid_is_none() {
        let answer = |id| {
            let mut msg = NsidMessage::default();
            msg.attributes.push(NsidAttribute::Id(id));
            RouteNetlinkMessage::NewNsId(msg)
        };
        assert_eq!(id_of(&[answer(3)]), Some(3));
        assert_eq!(id_of(&[answer(-1)]), None);
        assert_eq!(id_of(&[]), None);
    }
}

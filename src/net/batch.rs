//! Pipelining: many requests in flight at once.
//!
//! A socket hands a request to its connection task as soon as the request
//! future is first polled, so polling many of them together (`join_all`)
//! puts them all on the wire before the first acknowledgement is read: one
//! round trip's latency for the whole batch instead of one per request. The
//! kernel still answers each request on its own (in order, per socket), so
//! every result is attributed to the request that caused it; the caller,
//! who knows what each request was for, turns an errno into an error naming
//! its object.
//!
//! Callers outside `net` say *what* to do with a typed [`Op`]; the netlink
//! message is built here, by the same pure builders the one-at-a-time
//! functions use (`link::veth_request`, `link::set_request`,
//! `addr::address_message`, `route::route_message`), and link dumps
//! are parsed by [`LinkState`]'s own parser.
//!
//! Requests may go to many sockets (namespaces) at once; each socket keeps
//! its own order. Batches are cut into chunks so the acknowledgements of one
//! chunk never overflow a socket's receive buffer.

use std::os::fd::RawFd;

use futures::future::join_all;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::link::{self, LinkChange, LinkState, VethOptions};
use super::route::{self, RouteOp, RouteRequest};
use super::{addr, Target};

/// How many requests are in flight at most.
pub const CHUNK: usize = 256;

/// What one request of a batch does.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create a veth pair: `name` in the target's namespace, `peer` in the
    /// namespace behind `peer_ns_fd` (which must stay open until the batch
    /// is answered). See `link::veth_request`.
    CreateVeth {
        name: String,
        peer: String,
        peer_ns_fd: RawFd,
        options: VethOptions,
    },
    /// Change link `index` (up/down, MTU).
    SetLink { index: u32, change: LinkChange },
    /// Add an address to link `index` (EEXIST if it is there).
    AddAddress { index: u32, addr: IpNet },
    /// Add a route leaving through link `oif`.
    AddRoute { route: RouteRequest, oif: u32 },
    /// Dump every link of the namespace.
    ListLinks,
    /// Set link `name`'s alias (koko's ownership mark).
    SetAlias { name: String, alias: String },
}

/// One request of a batch: an operation in a namespace.
#[derive(Clone)]
pub struct Request {
    pub target: Target,
    pub op: Op,
}

/// What a request returned: nothing but the ack, or a link dump.
#[derive(Debug, Clone)]
pub enum Answer {
    Done,
    Links(Vec<LinkState>),
}

/// The result of each request, in the order given.
pub type Answers = Vec<Result<Answer, Errno>>;

/// The message and netlink flags of `op`.
pub(in crate::net) fn message(op: &Op) -> (RouteNetlinkMessage, u16) {
    match op {
        Op::CreateVeth {
            name,
            peer,
            peer_ns_fd,
            options,
        } => (
            RouteNetlinkMessage::NewLink(link::veth_request(name, peer, *peer_ns_fd, options)),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        ),
        Op::SetLink { index, change } => (
            RouteNetlinkMessage::SetLink(link::set_request(*index, *change)),
            NLM_F_ACK,
        ),
        Op::AddAddress { index, addr } => (
            RouteNetlinkMessage::NewAddress(addr::address_message(*index, *addr)),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        ),
        Op::AddRoute { route, oif } => (
            RouteNetlinkMessage::NewRoute(route::route_message(route, Some(*oif), RouteOp::Add)),
            RouteOp::Add.flags() | NLM_F_ACK,
        ),
        Op::ListLinks => (
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        ),
        Op::SetAlias { name, alias } => (
            RouteNetlinkMessage::SetLink(link::alias_request(name, alias)),
            NLM_F_ACK,
        ),
    }
}

async fn one(request: Request) -> Result<Answer, Errno> {
    let (msg, flags) = message(&request.op);
    let answers = request.target.socket.request(msg, flags).await?;
    if let Op::CreateVeth { name, .. } = &request.op {
        // The first end carries the owner mark (it is the end a run
        // records and deletes; the peer goes with it).
        link::mark_new(&request.target, name).await?;
    }
    Ok(match request.op {
        Op::ListLinks => Answer::Links(
            answers
                .iter()
                .filter_map(|m| match m {
                    RouteNetlinkMessage::NewLink(l) => Some(LinkState::from_message(l)),
                    _ => None,
                })
                .collect(),
        ),
        _ => Answer::Done,
    })
}

/// Send every request, many at a time, and collect each one's answer.
pub async fn run(requests: Vec<Request>) -> Answers {
    let mut out = Vec::with_capacity(requests.len());
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        let chunk: Vec<Request> = requests.by_ref().take(CHUNK).collect();
        out.extend(join_all(chunk.into_iter().map(one)).await);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::AddressAttribute;
    use netlink_packet_route::link::LinkAttribute;

    #[test]
    fn creations_are_exclusive_and_acknowledged() {
        for op in [
            Op::CreateVeth {
                name: "a".into(),
                peer: "b".into(),
                peer_ns_fd: 5,
                options: VethOptions::default(),
            },
            Op::AddAddress {
                index: 4,
                addr: "10.0.0.1/24".parse().unwrap(),
            },
        ] {
            let (_, flags) = message(&op);
            assert_eq!(
                flags & (NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK),
                NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
                "{op:?}"
            );
        }
        let (_, flags) = message(&Op::ListLinks);
        assert_eq!(flags, NLM_F_DUMP);
    }

    #[test]
    fn each_op_builds_its_own_message() {
        let (msg, _) = message(&Op::SetLink {
            index: 9,
            change: LinkChange {
                up: None,
                mtu: Some(1400),
            },
        });
        let RouteNetlinkMessage::SetLink(l) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(l.header.index, 9);
        assert_eq!(l.attributes, vec![LinkAttribute::Mtu(1400)]);

        let (msg, _) = message(&Op::AddAddress {
            index: 4,
            addr: "10.0.0.1/24".parse().unwrap(),
        });
        let RouteNetlinkMessage::NewAddress(a) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(a.header.index, 4);
        assert_eq!(a.header.prefix_len, 24);
        assert!(a
            .attributes
            .contains(&AddressAttribute::Local("10.0.0.1".parse().unwrap())));

        let mut r = RouteRequest::to("10.0.3.0/24".parse().unwrap());
        r.via = Some("10.0.1.2".parse().unwrap());
        let (msg, _) = message(&Op::AddRoute { route: r, oif: 7 });
        assert!(matches!(msg, RouteNetlinkMessage::NewRoute(_)), "{msg:?}");
        assert!(format!("{msg:?}").contains("Oif(7)"), "{msg:?}");
    }
}

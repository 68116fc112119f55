//! Pipelining: many requests in flight at once.
//!
//! [`Socket::request`](super::Socket::request) hands its message to the
//! connection task as soon as it is first polled, so polling many request
//! futures together (`join_all`) puts them all on the wire before the first
//! acknowledgement is read: one round trip's latency for the whole batch
//! instead of one per request. The kernel still answers each request on its
//! own (in order, per socket), so every result is attributed to the request
//! that caused it; the caller, who knows what each request was for, turns an
//! errno into an error naming its object.
//!
//! Requests may go to many sockets (namespaces) at once; each socket keeps
//! its own order. Batches are cut into chunks so the acknowledgements of one
//! chunk never overflow a socket's receive buffer.

use futures::future::join_all;
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::Socket;

/// How many requests are in flight at most.
pub const CHUNK: usize = 256;

/// One request of a batch.
pub struct Request {
    pub socket: Socket,
    pub message: RouteNetlinkMessage,
    /// Netlink flags (NLM_F_REQUEST is added; add NLM_F_ACK for an ack).
    pub flags: u16,
}

/// The result of each request, in the order given.
pub type Answers = Vec<Result<Vec<RouteNetlinkMessage>, Errno>>;

/// Send every request, many at a time, and collect each one's answer.
pub async fn run(requests: Vec<Request>) -> Answers {
    let mut out = Vec::with_capacity(requests.len());
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() {
        let chunk: Vec<Request> = requests.by_ref().take(CHUNK).collect();
        let answers = join_all(
            chunk
                .into_iter()
                .map(|r| async move { r.socket.request(r.message, r.flags).await }),
        )
        .await;
        out.extend(answers);
    }
    out
}

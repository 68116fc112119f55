//! Netlink, one socket per namespace.
//!
//! A netlink socket talks to the network stack of the namespace it was
//! *created* in, for its whole life, whatever namespace the thread is in
//! later. So koko opens one socket per namespace inside a short
//! [`NetnsGuard`](crate::ns::NetnsGuard) window and does all the work from
//! home. A [`Session`] owns the async runtime and caches one socket per
//! namespace for a whole run; requests to the same namespace are pipelined on
//! its socket.
//!
//! This module is the only place in koko that builds or parses netlink
//! messages: the submodules turn typed requests ([`link`], [`addr`],
//! [`route`], [`tunnel`] for vxlan/vlan/macvlan, [`tc`] for mirroring,
//! [`nsid`] for naming a peer's namespace) into messages with pure builders,
//! send them, parse the answers into plain structs, and translate the
//! kernel's errno into errors that name the object. [`batch`] pipelines many
//! typed operations at once. The socket's raw request API is private to
//! `net`; everything above asks for operations, never for messages.

pub mod addr;
pub mod batch;
pub mod bpf;
pub mod impair;
pub mod link;
pub mod monitor;
pub mod nsid;
pub mod route;
pub mod sysctl;
pub mod tc;
pub mod tunnel;
pub mod wiring;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::ns::cri::Runtime as CriRuntime;
use crate::ns::docker::Engine;
use crate::ns::{with_netns, Namespace, NsId, NsSpec};

/// Resolves when a stop signal has arrived (checked every 20 ms: the
/// signal handler cannot wake a future itself).
async fn stop_signal() -> nix::sys::signal::Signal {
    loop {
        if let Some(signal) = crate::interrupt::pending() {
            return signal;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A route-netlink socket bound (by birth) to one namespace.
#[derive(Clone)]
pub struct Socket {
    handle: rtnetlink::Handle,
}

impl Socket {
    /// Open a socket inside `ns`. Must be called inside the runtime's context
    /// (see [`Session::socket`]): the connection task is spawned on it.
    fn open(ns: &Namespace) -> Result<(Socket, tokio::task::JoinHandle<()>)> {
        let (connection, handle, _unsolicited) = with_netns(ns, rtnetlink::new_connection)?
            .map_err(|e| Error::io(format!("opening a netlink socket in {ns}"), e))?;
        let task = tokio::spawn(connection);
        Ok((Socket { handle }, task))
    }

    /// Send one request and wait for its acknowledgement.
    pub(in crate::net) async fn ack(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), Errno> {
        self.request(message, flags | NLM_F_ACK).await.map(drop)
    }

    /// Send a dump request and collect every answer.
    pub(in crate::net) async fn dump(
        &self,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, Errno> {
        self.request(message, NLM_F_DUMP).await
    }

    /// Send one request with `flags` (NLM_F_REQUEST is added) and collect the
    /// messages it returns until the kernel's ACK, DONE or error.
    pub(in crate::net) async fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Errno> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | flags;
        let mut handle = self.handle.clone();
        let mut responses = handle.request(request).map_err(|_| Errno::EIO)?;
        let mut answers = Vec::new();
        while let Some(message) = responses.next().await {
            match message.payload {
                NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                NetlinkPayload::Error(err) => {
                    if let Some(code) = err.code {
                        return Err(Errno::from_raw(-code.get()));
                    }
                }
                _ => {}
            }
        }
        Ok(answers)
    }
}

/// A namespace together with its socket: what every `net::` operation takes,
/// so errors can name the namespace they happened in.
#[derive(Clone)]
pub struct Target {
    /// Only `net` sends on it: the rest of koko asks for typed operations.
    pub(in crate::net) socket: Socket,
    pub ns: Namespace,
}

/// A cached socket: its namespace, the handle, and the task owning the fd.
type OpenSocket = (Namespace, Socket, tokio::task::JoinHandle<()>);

/// One run's access to the kernel: the async runtime and a socket per
/// namespace, opened on first use and reused until [`Session::forget`].
pub struct Session {
    runtime: tokio::runtime::Runtime,
    /// The socket of each namespace, and the task that owns its fd.
    sockets: RefCell<HashMap<NsId, OpenSocket>>,
    /// The container engine's client, connected on first use.
    engine: RefCell<Option<Rc<Engine>>>,
    /// The CRI runtime's client, connected on first use.
    cri: RefCell<Option<Rc<CriRuntime>>>,
}

impl Session {
    pub fn new() -> Result<Session> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting koko's runtime", e))?;
        Ok(Session {
            runtime,
            sockets: RefCell::new(HashMap::new()),
            engine: RefCell::new(None),
            cri: RefCell::new(None),
        })
    }

    /// The container engine's client: connected (and its API version
    /// negotiated) the first time a run needs it, then reused. A failed
    /// connection is not kept, so a later call tries again.
    pub fn engine(&self, for_container: &str) -> Result<Rc<Engine>> {
        if let Some(engine) = self.engine.borrow().as_ref() {
            return Ok(engine.clone());
        }
        let engine = Rc::new(self.block_on_interruptible(Engine::connect(for_container))?);
        *self.engine.borrow_mut() = Some(engine.clone());
        Ok(engine)
    }

    /// The CRI runtime's client (containerd, CRI-O): connected and its API
    /// version negotiated the first time a run needs it, then reused. A
    /// failed connection is not kept.
    pub fn cri(&self, for_id: &str) -> Result<Rc<CriRuntime>> {
        if let Some(cri) = self.cri.borrow().as_ref() {
            return Ok(cri.clone());
        }
        let cri = Rc::new(self.block_on(CriRuntime::connect(for_id))?);
        *self.cri.borrow_mut() = Some(cri.clone());
        Ok(cri)
    }

    /// Stop the pod a CRI id belongs to, through the runtime.
    pub fn stop_cri_pod(&self, id: &str) -> Result<()> {
        let cri = self.cri(id)?;
        self.block_on(cri.stop_pod(id))
    }

    /// Resolve a namespace spec; containers are looked up through the
    /// session's engine client, CRI ids through its CRI client.
    pub fn resolve(&self, spec: &NsSpec) -> Result<Namespace> {
        match spec {
            NsSpec::Docker(name) => {
                let engine = self.engine(name)?;
                self.block_on_interruptible(engine.resolve(name))
            }
            NsSpec::Cri(id) => {
                crate::ns::cri::validate_id(id)?;
                let cri = self.cri(id)?;
                self.block_on(cri.resolve(id))
            }
            other => Namespace::resolve(other),
        }
    }

    /// Kill a container (SIGKILL) and wait until the engine reports it
    /// stopped.
    pub fn kill_container(&self, name: &str) -> Result<()> {
        let engine = self.engine(name)?;
        self.block_on_interruptible(engine.kill(name))
    }

    /// The socket for `ns`, opened on first use.
    ///
    /// A cached socket keeps its namespace alive, so it would happily keep
    /// serving a namespace that was deleted from outside (`ip netns del`,
    /// `docker kill`) — and keep it from dying. Before reusing one, check
    /// that the namespace's file still refers to it; if not, drop the
    /// socket (the namespace can then die) and report it gone.
    pub fn socket(&self, ns: &Namespace) -> Result<Socket> {
        let cached = self
            .sockets
            .borrow()
            .get(&ns.id())
            .map(|(_, socket, _)| socket.clone());
        if let Some(socket) = cached {
            if ns.exists() {
                return Ok(socket);
            }
            drop(socket);
            self.forget(ns);
            // open() says why: gone, or its name now another namespace.
            ns.open()?;
            return Err(Error::namespace_not_found(
                crate::error::Object::namespace(ns),
                "is gone",
            ));
        }
        let _context = self.runtime.enter();
        let (socket, task) = Socket::open(ns)?;
        self.sockets
            .borrow_mut()
            .insert(ns.id(), (ns.clone(), socket.clone(), task));
        Ok(socket)
    }

    /// The namespace with its socket, ready for `net::` operations.
    pub fn target(&self, ns: &Namespace) -> Result<Target> {
        Ok(Target {
            socket: self.socket(ns)?,
            ns: ns.clone(),
        })
    }

    /// Close the socket of `ns` (if open), so koko no longer keeps the
    /// namespace alive. The fd lives in the connection task: dropping the
    /// handle is not enough (a current-thread runtime only notices when it
    /// runs next), so the task is aborted and awaited here, and the fd is
    /// closed when this returns.
    pub fn forget(&self, ns: &Namespace) {
        let entry = self.sockets.borrow_mut().remove(&ns.id());
        if let Some((_, socket, task)) = entry {
            drop(socket);
            task.abort();
            let _ = self.runtime.block_on(task);
        }
    }

    /// The namespaces koko holds a socket in (and so keeps alive).
    pub fn open_namespaces(&self) -> Vec<Namespace> {
        self.sockets
            .borrow()
            .values()
            .map(|(ns, _, _)| ns.clone())
            .collect()
    }

    /// Close every socket (see [`Session::forget`]).
    pub fn forget_all(&self) {
        let entries: Vec<_> = self.sockets.borrow_mut().drain().collect();
        for (_, (_, socket, task)) in entries {
            drop(socket);
            task.abort();
            let _ = self.runtime.block_on(task);
        }
    }

    /// Run a future to completion on this session's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Run a future that may wait long (a container engine's answer, up
    /// to its timeouts) to completion, or until a stop signal arrives
    /// ([`Error::Interrupted`]; the future is dropped, which cancels it).
    /// Netlink requests, answered at once, need not be interruptible.
    pub fn block_on_interruptible<T>(&self, future: impl Future<Output = Result<T>>) -> Result<T> {
        self.runtime.block_on(async {
            tokio::select! {
                outcome = future => outcome,
                signal = stop_signal() => Err(Error::Interrupted { signal }),
            }
        })
    }
}

//! The script API (the v1 contract of shared/script-api.md), registered into
//! a Rhai engine, one file per kind of object:
//!
//! | file | what |
//! | --- | --- |
//! | [`api_namespaces`](super::api_namespaces) | `netns`, `docker`, `cri`, `pid`, `host`; `ns.forwarding`, `ns.sysctl`, `ns.destroy` |
//! | [`api_links`](super::api_links) | `veth`, `ns.link`, `ns.links`; a link's properties, state, MTU, addresses |
//! | [`api_ip`](super::api_ip) | `ns.ip(...)`, `ns.route_add/del/replace`, `ns.routes`, `ns.addrs` |
//! | [`api_probes`](super::api_probes) | `ns.ping`, `ns.tcp`, `ns.serve_http`, `ns.http_get`, `ns.exec` |
//! | [`api_tunnels`](super::api_tunnels) | `vxlan`, `vlan`, `macvlan`, `link.mirror` |
//! | [`api_capture`](super::api_capture) | `link.capture` and its `Capture` handle: `.stop()`, `.wait()`, `.packets`, `.running` |
//! | [`api_bulk`](super::api_bulk) | `chain_build`, `chain_subnet`, `destroy_all` |
//! | [`api_compat`](super::api_compat) | `koko(...)`, `koro(...)`, `cleanup`, `sleep`, `now_ms` |
//! | [`events`](super::events) | hooks, `watch`, the outage probe |
//!
//! Every function is a thin binding: it turns Rhai values into a typed
//! request (options maps through [`options`](super::options)), calls the
//! library (the same functions the command line uses), records what it
//! created in the run's journal, and turns a result into a Rhai value with
//! [`to_value`] and an error into a catchable map `#{kind, message, ...}`
//! with [`fail`]. Its documentation is its doc comment (see
//! [`docs`](super::docs)).

use std::net::IpAddr;
use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, Position};

use super::SharedWorld;
use crate::error::Error;
use crate::ns::Namespace;

pub(crate) type R<T> = Result<T, Box<EvalAltResult>>;

/// A namespace as scripts see it.
#[derive(Debug, Clone)]
pub struct NsRef(pub Namespace);

/// A link as scripts see it: a name in a namespace, and its peer if koko
/// knows it.
#[derive(Debug, Clone)]
pub struct LinkRef {
    pub ns: Namespace,
    pub name: String,
    pub peer: Option<(Namespace, String)>,
}

pub use super::events::{Events, Hook, HookKind};

/// Turn a koko error into a catchable Rhai error: a map of the error's
/// fields (kind, message, object, place, cause...) a script can inspect.
pub fn fail(e: Error) -> Box<EvalAltResult> {
    // A stop signal or a limit ends the run: a termination, which a
    // script's `try`/`catch` cannot swallow.
    if matches!(e, Error::Interrupted { .. } | Error::Limit { .. }) {
        return EvalAltResult::ErrorTerminated(e.to_string().into(), Position::NONE).into();
    }
    EvalAltResult::ErrorRuntime(to_value(&e.to_json()), Position::NONE).into()
}

/// A usage error as a catchable script error.
pub(crate) fn invalid(msg: impl Into<String>) -> Box<EvalAltResult> {
    fail(Error::Invalid(msg.into()))
}

/// Any serialisable value (a library report, a kernel state, JSON) as a
/// Rhai value: structs become maps, `None` becomes `()`, addresses strings.
pub fn to_value<T: serde::Serialize + ?Sized>(value: &T) -> Dynamic {
    // Serialising plain data into a Dynamic cannot fail; an error here is
    // a bug, shown as such rather than hidden.
    rhai::serde::to_dynamic(value)
        .unwrap_or_else(|e| format!("internal error: cannot show a result: {e}").into())
}

/// A serialisable struct as a Rhai map (its fields as keys).
pub fn to_map<T: serde::Serialize + ?Sized>(value: &T) -> rhai::Map {
    to_value(value).try_cast::<rhai::Map>().unwrap_or_default()
}

/// A number of milliseconds given by a script.
pub(crate) fn ms(n: i64, what: &str) -> R<Duration> {
    u64::try_from(n)
        .map(Duration::from_millis)
        .map_err(|_| invalid(format!("{what}: {n} is not a number of milliseconds")))
}

pub(crate) fn parse_ip(text: &str) -> R<IpAddr> {
    text.parse()
        .map_err(|_| invalid(format!("'{text}' is not an IP address")))
}

/// A TCP port given by a script.
pub(crate) fn port(n: i64) -> R<u16> {
    u16::try_from(n).map_err(|_| invalid(format!("{n} is not a TCP port")))
}

/// "ADDR/PREFIX" strings, parsed the way the whole of koko parses them.
pub(crate) fn cidrs(list: &[String]) -> R<Vec<ipnet::IpNet>> {
    list.iter()
        .map(|s| crate::net::addr::parse_cidr(s).map_err(fail))
        .collect()
}

/// Run `f` with the run's session and journal borrowed (never across a
/// call back into the script).
pub(crate) fn with_world<T>(
    world: &SharedWorld,
    f: impl FnOnce(&mut crate::net::Session, &mut crate::journal::Journal) -> crate::error::Result<T>,
) -> R<T> {
    let mut w = world.borrow_mut();
    let super::World {
        session, journal, ..
    } = &mut *w;
    f(session, journal).map_err(fail)
}

/// Ask the kernel something in `ns`, over the run's socket there.
pub(crate) fn query<T>(
    world: &SharedWorld,
    ns: &Namespace,
    ask: impl AsyncFnOnce(&crate::net::Target) -> crate::error::Result<T>,
) -> R<T> {
    let world = world.borrow();
    let t = world.session.target(ns).map_err(fail)?;
    world.session.block_on(ask(&t)).map_err(fail)
}

/// Stop the script if it must stop (a stop signal, the memory budget, a
/// dead stdout: see [`super::stop_reason`]). A probe cut short by a signal
/// (its poll returns EINTR) must not look like a timeout. The error is a
/// termination, which `try`/`catch` cannot swallow.
pub(crate) fn stop_if_interrupted() -> R<()> {
    match super::stop_reason() {
        Some(e) => Err(EvalAltResult::ErrorTerminated(e.to_string().into(), Position::NONE).into()),
        None => Ok(()),
    }
}

/// Sleep in short slices so a stop signal is noticed.
pub fn interruptible_sleep(d: Duration) -> R<()> {
    let end = std::time::Instant::now() + d;
    loop {
        stop_if_interrupted()?;
        let now = std::time::Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(10)));
    }
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    engine.register_type_with_name::<NsRef>("Ns");
    engine.register_type_with_name::<LinkRef>("Link");
    super::api_namespaces::register(engine, world);
    super::api_links::register(engine, world);
    super::api_ip::register(engine, world);
    super::api_probes::register(engine, world);
    super::api_tunnels::register(engine, world);
    super::api_capture::register(engine, world);
    super::api_impair::register(engine, world);
    super::api_bulk::register(engine, world);
    super::api_compat::register(engine, world);
    super::api_graph::register(engine, world);
    super::events::register(engine, world);
}

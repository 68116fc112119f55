//! The script API (the v1 contract of shared/script-api.md), registered into
//! a Rhai engine. Every function here is a thin binding: it converts Rhai
//! values into typed requests, calls the library (the same functions the
//! command line uses), records what it created in the run's journal, and
//! turns errors into a catchable map `#{kind, message}`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, Position};

use super::SharedWorld;
use crate::connect::{self, EndRequest, VethRequest};
use crate::error::Error;
use crate::journal::Undo;
use crate::net::addr::parse_cidr;
use crate::net::link::{self, LinkChange, VethOptions};
use crate::net::{addr, sysctl};
use crate::ns::{named, Namespace, NsKind, NsSpec};
use crate::probe;

type R<T> = Result<T, Box<EvalAltResult>>;

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

/// The API's names, signatures and one-line docs: the REPL's `:help`, the
/// README's table and "expected ..." hints in error messages come from here.
pub const DOCS: &[(&str, &str, &str)] = &[
    (
        "netns",
        "netns(name) -> Ns",
        "an `ip netns` namespace; created (visible to `ip netns list`) if missing",
    ),
    (
        "docker",
        "docker(name_or_id) -> Ns",
        "a running container's namespace (Docker, or Podman via DOCKER_HOST)",
    ),
    (
        "pid",
        "pid(pid) -> Ns",
        "the network namespace of a process",
    ),
    ("host", "host() -> Ns", "koko's own namespace"),
    ("name", "ns.name / link.name", "\"client\", \"link1\""),
    (
        "kind",
        "ns.kind",
        "\"netns\" / \"docker\" / \"pid\" / \"host\" / \"path\"",
    ),
    (
        "forwarding",
        "ns.forwarding(on: bool)",
        "IPv4 and IPv6 forwarding on/off inside the namespace",
    ),
    (
        "sysctl",
        "ns.sysctl(key[, value])",
        "read or set any net.* sysctl inside the namespace",
    ),
    (
        "destroy",
        "ns.destroy()",
        "failure drill: delete a netns (it dies once nothing holds it) or kill a container",
    ),
    (
        "veth",
        "veth(a: Ns, name_a, b: Ns, name_b[, #{mtu, a_addrs, b_addrs}]) -> Link",
        "veth pair, both ends up; returns the end in a",
    ),
    (
        "vxlan",
        "vxlan(ns, name, #{parent, remote, vni[, port, mtu, parent_ns, local, ttl, learning, addrs]}) -> Link",
        "vxlan on a parent link (in koko's namespace unless parent_ns), put in ns, up",
    ),
    (
        "vlan",
        "vlan(ns, name, #{parent, id[, parent_ns, addrs]}) -> Link",
        "802.1Q vlan on a parent link, put in ns, up",
    ),
    (
        "macvlan",
        "macvlan(ns, name, #{parent[, mode, parent_ns, addrs]}) -> Link",
        "macvlan on a parent link (mode: bridge, private, vepa, passthru), put in ns, up",
    ),
    (
        "mirror",
        "link.mirror(\"ingress\"|\"egress\"|\"both\", source: Link)",
        "copy the source link's traffic out through link (same namespace)",
    ),
    ("link", "ns.link(name) -> Link", "an existing link"),
    (
        "links",
        "ns.links() -> [map]",
        "links of the namespace, read from the kernel",
    ),
    (
        "addrs",
        "ns.addrs() -> [map]",
        "addresses of the namespace, read from the kernel",
    ),
    (
        "routes",
        "ns.routes() -> [map]",
        "routes of the namespace, read from the kernel",
    ),
    ("ns", "link.ns -> Ns", "the namespace a link is in"),
    (
        "peer",
        "link.peer -> Link or ()",
        "the other end of a veth koko created",
    ),
    ("state", "link.state", "\"up\" / \"down\" / \"gone\""),
    ("up", "link.up()", "set the link up"),
    ("down", "link.down()", "set the link down"),
    ("set_mtu", "link.set_mtu(n)", "change the link's MTU"),
    (
        "delete",
        "link.delete()",
        "delete the link (a veth's peer goes too)",
    ),
    (
        "add_addr",
        "link.add_addr(\"10.0.1.1/24\")",
        "add an address (IPv4 or IPv6)",
    ),
    (
        "del_addr",
        "link.del_addr(\"10.0.1.1/24\")",
        "remove an address",
    ),
    (
        "ping",
        "ns.ping(ip[, #{count, timeout_ms}]) -> #{ok, rtt_ms, sent, received}",
        "ICMP echo from inside the namespace",
    ),
    (
        "tcp",
        "ns.tcp(ip, port, timeout_ms) -> bool",
        "true if a TCP connection opens in time",
    ),
    (
        "serve_http",
        "ns.serve_http(port, body)",
        "a tiny HTTP responder in the namespace until cleanup",
    ),
    (
        "http_get",
        "ns.http_get(url[, timeout_ms]) -> string",
        "GET from inside the namespace; error if unreachable",
    ),
    (
        "exec",
        "ns.exec([cmd, args...]) -> #{code, out, err}",
        "run a host program inside the namespace",
    ),
    (
        "koko",
        "koko(\"-n a,l1,10.0.1.1/24 -n b,l2,10.0.1.2/24\") -> map",
        "the one-shot grammar, same parser as the CLI",
    ),
    (
        "ip",
        "ns.ip(\"address add 10.0.1.1/24 dev link1\") -> string",
        "an `ip`-style command (address, route, link set), run natively in the namespace",
    ),
    (
        "route_add",
        "ns.route_add(dest[, #{via, dev, metric, table}])",
        "add a route (dest \"10.0.3.0/24\" or \"default\")",
    ),
    (
        "route_del",
        "ns.route_del(dest[, #{via, dev, metric, table}])",
        "delete a route",
    ),
    (
        "route_replace",
        "ns.route_replace(dest[, #{via, dev, metric, table}])",
        "add or replace a route (the old one comes back on undo)",
    ),
    (
        "koro",
        "koro(\"ipnetns client route add default via 10.0.1.2 dev link1\") -> string",
        "the koro grammar: a target (docker NAME, ipnetns NAME, netns PATH, pid N, host), then an `ip`-style command",
    ),
    (
        "on_link_down",
        "on_link_down(ns, link_name, |ev| { ... })  or  on_link_down(link, |ev| ...)",
        "run when the link goes down or disappears (its peer's namespace died); ev = #{kind, namespace, link, time}",
    ),
    (
        "on_link_up",
        "on_link_up(ns, link_name, |ev| { ... })",
        "run when the link comes up (with carrier)",
    ),
    (
        "on_container_exit",
        "on_container_exit(name, |ev| { ... })",
        "run when a container stops",
    ),
    (
        "watch",
        "watch(ms[, #{stop_on_error}]) -> int",
        "dispatch events for up to ms (or until stop_watch()); returns how many hooks ran",
    ),
    (
        "stop_watch",
        "stop_watch()",
        "end the current watch() (call it from a hook)",
    ),
    (
        "probe_start",
        "probe_start(ns, ip, port, #{interval_ms, timeout_ms}) -> Probe",
        "keep opening TCP connections from ns to ip:port in the background, to measure an outage",
    ),
    (
        "report",
        "probe.report() -> map",
        "#{sent, lost, first_failure_ms, first_recovery_ms, outage_ms} so far",
    ),
    (
        "stop",
        "probe.stop() -> map",
        "stop the probe; the final report",
    ),
    (
        "wait_success_after",
        "probe.wait_success_after(t_ms, timeout_ms) -> float or ()",
        "wait for the first successful probe started at or after t (ms since the epoch)",
    ),
    (
        "wait_recovery",
        "probe.wait_recovery(ms) -> bool",
        "wait until the probe saw traffic recover after a failure",
    ),
    (
        "cleanup",
        "cleanup()",
        "undo everything this run created, newest first",
    ),
    ("sleep", "sleep(ms)", "wait (Ctrl-C stops it)"),
    (
        "chain_build",
        "chain_build(names, #{base, start, mtu, routes, group}) -> map",
        "a chain of namespaces in bulk (what chain::build uses): pipelined links, addresses, routes",
    ),
    (
        "chain_subnet",
        "chain_subnet(opts, i) -> string",
        "the first three octets of a chain's link i subnet (\"10.0.3\")",
    ),
    (
        "destroy_all",
        "destroy_all(names)",
        "delete many netns namespaces at once (the kernel tears them down in one batch)",
    ),
    (
        "now_ms",
        "now_ms() -> int",
        "milliseconds since the Unix epoch",
    ),
];

/// The documented signature of an API function, for error hints.
pub fn signature_of(name: &str) -> Option<&'static str> {
    DOCS.iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, sig, _)| *sig)
}

/// Turn a koko error into a catchable Rhai error `#{kind, message}`.
pub fn fail(e: Error) -> Box<EvalAltResult> {
    // The error's fields (kind, message, object, place, cause...) as a map
    // a script can catch and inspect.
    EvalAltResult::ErrorRuntime(json_to_dynamic(&e.to_json()), Position::NONE).into()
}

fn invalid(msg: impl Into<String>) -> Box<EvalAltResult> {
    fail(Error::Invalid(msg.into()))
}

fn ms(n: i64, what: &str) -> R<Duration> {
    u64::try_from(n)
        .map(Duration::from_millis)
        .map_err(|_| invalid(format!("{what}: {n} is not a number of milliseconds")))
}

fn parse_ip(text: &str) -> R<IpAddr> {
    text.parse()
        .map_err(|_| invalid(format!("'{text}' is not an IP address")))
}

/// Convert JSON (from a CLI outcome) into a Rhai value.
pub fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    match v {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => (*b).into(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(0.0).into(),
        },
        serde_json::Value::String(s) => s.clone().into(),
        serde_json::Value::Array(a) => a.iter().map(json_to_dynamic).collect::<Array>().into(),
        serde_json::Value::Object(o) => {
            let mut m = Map::new();
            for (k, v) in o {
                m.insert(k.as_str().into(), json_to_dynamic(v));
            }
            m.into()
        }
    }
}

/// Sleep in short slices so Ctrl-C is noticed.
pub fn interruptible_sleep(d: Duration) -> R<()> {
    let end = std::time::Instant::now() + d;
    loop {
        if super::interrupted() {
            return Err(EvalAltResult::ErrorTerminated(
                "interrupted (Ctrl-C)".into(),
                Position::NONE,
            )
            .into());
        }
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
    register_namespaces(engine, world);
    register_links(engine, world);
    register_probes(engine, world);
    register_routes(engine, world);
    register_misc(engine, world);
    super::events::register(engine, world);
    super::api_tunnels::register(engine, world);
    super::api_bulk::register(engine, world);
}

/// Run one `ip`-style command in `ns` with the run's session and journal.
fn apply_ip(world: &SharedWorld, ns: &Namespace, cmd: &crate::ipcmd::IpCommand) -> R<String> {
    let mut w = world.borrow_mut();
    let super::World {
        session, journal, ..
    } = &mut *w;
    crate::ipcmd::apply(session, journal, ns, cmd).map_err(fail)
}

/// `route_add("10.0.3.0/24", #{via, dev, metric, table})` as a typed request.
fn route_from(dest: &str, opts: &Map) -> R<crate::net::route::RouteRequest> {
    use crate::net::route::{parse_destination, RouteRequest};
    let mut via = None;
    let mut dev = None;
    let mut metric = None;
    let mut table = None;
    for (k, v) in opts {
        let text = || v.to_string();
        let int = || -> R<u32> {
            v.as_int()
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "route option {k}: expected a non-negative integer, found {v}"
                    ))
                })
        };
        match k.as_str() {
            "via" => via = Some(parse_ip(&text())?),
            "dev" => dev = Some(text()),
            "metric" => metric = Some(int()?),
            "table" => table = Some(int()?),
            other => {
                return Err(invalid(format!(
                    "route: unknown option '{other}' (known: via, dev, metric, table)"
                )))
            }
        }
    }
    let v6 = via
        .map(|ip: IpAddr| ip.is_ipv6())
        .unwrap_or(dest.contains(':'));
    let mut route = RouteRequest::to(parse_destination(dest, v6).map_err(fail)?);
    route.via = via;
    route.dev = dev;
    route.metric = metric;
    route.table = table;
    Ok(route)
}

fn register_routes(engine: &mut Engine, world: &SharedWorld) {
    use crate::ipcmd::{self, IpCommand};
    use crate::net::route::{self, RouteOp};
    let w = world.clone();
    sys!(engine, "ip", move |ns: &mut NsRef,
                             command: &str|
          -> R<String> {
        let cmd = ipcmd::parse(command).map_err(fail)?;
        apply_ip(&w, &ns.0, &cmd)
    });
    for (name, op) in [
        ("route_add", RouteOp::Add),
        ("route_del", RouteOp::Del),
        ("route_replace", RouteOp::Replace),
    ] {
        let w = world.clone();
        sys!(engine, name, move |ns: &mut NsRef,
                                 dest: &str,
                                 opts: Map|
              -> R<String> {
            let cmd = IpCommand::Route {
                op,
                route: route_from(dest, &opts)?,
            };
            apply_ip(&w, &ns.0, &cmd)
        });
        let w = world.clone();
        sys!(engine, name, move |ns: &mut NsRef,
                                 dest: &str|
              -> R<String> {
            let cmd = IpCommand::Route {
                op,
                route: route_from(dest, &Map::new())?,
            };
            apply_ip(&w, &ns.0, &cmd)
        });
    }
    let w = world.clone();
    sys!(engine, "routes", move |ns: &mut NsRef| -> R<Array> {
        let world = w.borrow();
        let t = world.session.target(&ns.0).map_err(fail)?;
        let routes = world.session.block_on(route::list(&t)).map_err(fail)?;
        Ok(routes
            .into_iter()
            .map(|r| {
                let mut m = Map::new();
                let dest = if r.dest.prefix_len() == 0 {
                    "default".to_string()
                } else {
                    r.dest.to_string()
                };
                m.insert("dest".into(), dest.into());
                m.insert(
                    "via".into(),
                    r.via
                        .map(|v| Dynamic::from(v.to_string()))
                        .unwrap_or(Dynamic::UNIT),
                );
                m.insert(
                    "dev".into(),
                    r.dev.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
                );
                m.insert(
                    "metric".into(),
                    r.metric
                        .map(|v| Dynamic::from(v as i64))
                        .unwrap_or(Dynamic::UNIT),
                );
                m.insert("table".into(), (r.table as i64).into());
                m.insert("family".into(), r.family.into());
                m.insert("line".into(), r.line().into());
                m.into()
            })
            .collect())
    });
    let w = world.clone();
    sys!(engine, "koro", move |line: &str| -> R<String> {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let mut world = w.borrow_mut();
        let super::World {
            session, journal, ..
        } = &mut *world;
        let report = crate::plan::run_koro(session, journal, &words).map_err(fail)?;
        Ok(report.lines().join("\n"))
    });
}

fn register_namespaces(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(engine, "netns", move |name: &str| -> R<NsRef> {
        let (ns, created) = named::ensure(name).map_err(fail)?;
        if created {
            w.borrow_mut().journal.record(
                format!("netns '{name}'"),
                Undo::DeleteNamespace {
                    name: name.to_string(),
                },
            );
        }
        Ok(NsRef(ns))
    });
    sys!(engine, "pid", |pid: i64| -> R<NsRef> {
        let pid = u32::try_from(pid).map_err(|_| invalid(format!("{pid} is not a process id")))?;
        Namespace::pid(pid).map(NsRef).map_err(fail)
    });
    sys!(engine, "host", || -> R<NsRef> {
        Namespace::current().map(NsRef).map_err(fail)
    });
    sys!(engine, "docker", |name: &str| -> R<NsRef> {
        Namespace::resolve(&NsSpec::Docker(name.to_string()))
            .map(NsRef)
            .map_err(fail)
    });

    engine.register_get("name", |ns: &mut NsRef| ns.0.name().to_string());
    engine.register_get("kind", |ns: &mut NsRef| ns.0.kind().as_str().to_string());
    engine.register_fn("to_string", |ns: &mut NsRef| ns.0.to_string());
    engine.register_fn("to_debug", |ns: &mut NsRef| format!("Ns({})", ns.0));
    engine.register_fn("==", |a: NsRef, b: NsRef| a.0 == b.0);
    engine.register_fn("!=", |a: NsRef, b: NsRef| a.0 != b.0);

    let w = world.clone();
    sys!(engine, "forwarding", move |ns: &mut NsRef,
                                     on: bool|
          -> R<()> {
        let v = if on { "1" } else { "0" };
        for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
            set_sysctl(&w, &ns.0, key, v)?;
        }
        Ok(())
    });
    let w = world.clone();
    sys!(engine, "sysctl", move |ns: &mut NsRef,
                                 key: &str,
                                 value: &str|
          -> R<()> {
        set_sysctl(&w, &ns.0, key, value)
    });
    let w = world.clone();
    sys!(engine, "sysctl", move |ns: &mut NsRef,
                                 key: &str,
                                 value: i64|
          -> R<()> {
        set_sysctl(&w, &ns.0, key, &value.to_string())
    });
    let w = world.clone();
    sys!(engine, "sysctl", move |ns: &mut NsRef,
                                 key: &str,
                                 value: bool|
          -> R<()> {
        set_sysctl(&w, &ns.0, key, if value { "1" } else { "0" })
    });
    sys!(engine, "sysctl", |ns: &mut NsRef, key: &str| -> R<String> {
        sysctl::read(&ns.0, key).map_err(fail)
    });

    let w = world.clone();
    sys!(engine, "destroy", move |ns: &mut NsRef| -> R<()> {
        // Let go of what koko holds in it first: its netlink socket and its
        // HTTP responders' sockets would keep the namespace (and its veth
        // ends) alive.
        w.borrow().session.forget(&ns.0);
        for entry in w.borrow().journal.entries() {
            if let Undo::StopServer(server) = &entry.undo {
                if let Ok(mut s) = server.lock() {
                    if s.ns == ns.0 {
                        s.stop();
                    }
                }
            }
        }
        match ns.0.kind() {
            NsKind::Netns => named::delete(ns.0.name()).map_err(fail),
            NsKind::Docker => crate::ns::docker::kill(ns.0.name()).map_err(fail),
            kind => Err(fail(Error::NotSupported(format!(
                "destroy() works on netns namespaces and containers, not on a {} namespace ({})",
                kind.as_str(),
                ns.0
            )))),
        }
    });

    let w = world.clone();
    sys!(engine, "link", move |ns: &mut NsRef,
                               name: &str|
          -> R<LinkRef> {
        let t = w.borrow().session.target(&ns.0).map_err(fail)?;
        w.borrow()
            .session
            .block_on(link::require(&t, name))
            .map_err(fail)?;
        Ok(LinkRef {
            ns: ns.0.clone(),
            name: name.to_string(),
            peer: None,
        })
    });
    let w = world.clone();
    sys!(engine, "links", move |ns: &mut NsRef| -> R<Array> {
        let world = w.borrow();
        let t = world.session.target(&ns.0).map_err(fail)?;
        let links = world.session.block_on(link::list(&t)).map_err(fail)?;
        Ok(links
            .into_iter()
            .map(|l| {
                let mut m = Map::new();
                m.insert("name".into(), l.name.clone().into());
                m.insert("index".into(), (l.index as i64).into());
                m.insert(
                    "kind".into(),
                    l.kind.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
                );
                m.insert("state".into(), l.state_word().into());
                m.insert("mtu".into(), (l.mtu as i64).into());
                m.into()
            })
            .collect())
    });
    let w = world.clone();
    sys!(engine, "addrs", move |ns: &mut NsRef| -> R<Array> {
        let world = w.borrow();
        let t = world.session.target(&ns.0).map_err(fail)?;
        let links = world.session.block_on(link::list(&t)).map_err(fail)?;
        let addrs = world.session.block_on(addr::list(&t)).map_err(fail)?;
        Ok(addrs
            .into_iter()
            .map(|a| {
                let name = links
                    .iter()
                    .find(|l| l.index == a.index)
                    .map(|l| l.name.clone())
                    .unwrap_or_default();
                let mut m = Map::new();
                m.insert("link".into(), name.into());
                m.insert("addr".into(), a.addr.to_string().into());
                m.insert(
                    "family".into(),
                    if a.addr.addr().is_ipv4() {
                        "inet"
                    } else {
                        "inet6"
                    }
                    .into(),
                );
                m.into()
            })
            .collect())
    });
}

fn set_sysctl(world: &SharedWorld, ns: &Namespace, key: &str, value: &str) -> R<()> {
    let old = sysctl::write(ns, key, value).map_err(fail)?;
    if old != value {
        world.borrow_mut().journal.record(
            format!("sysctl {key}={value} in {ns}"),
            Undo::RestoreSysctl {
                ns: ns.clone(),
                key: key.to_string(),
                value: old,
            },
        );
    }
    Ok(())
}

fn strings(list: &Array, what: &str) -> R<Vec<String>> {
    list.iter()
        .map(|v| {
            v.clone()
                .into_string()
                .map_err(|t| invalid(format!("{what}: expected strings, found {t}")))
        })
        .collect()
}

fn cidrs(list: &Array, what: &str) -> R<Vec<ipnet::IpNet>> {
    strings(list, what)?
        .iter()
        .map(|s| parse_cidr(s).map_err(fail))
        .collect()
}

fn veth_with(
    world: &SharedWorld,
    a: &NsRef,
    na: &str,
    b: &NsRef,
    nb: &str,
    opts: &Map,
) -> R<LinkRef> {
    let mut options = VethOptions::default();
    let mut a_addrs = Vec::new();
    let mut b_addrs = Vec::new();
    for (key, value) in opts {
        match key.as_str() {
            "mtu" => {
                let m = value.as_int().map_err(|t| {
                    invalid(format!("veth option mtu: expected an integer, found {t}"))
                })?;
                options.mtu = u32::try_from(m)
                    .map_err(|_| invalid(format!("veth option mtu: {m} is out of range")))?;
            }
            "a_addrs" | "b_addrs" => {
                let list = value.clone().into_array().map_err(|t| {
                    invalid(format!(
                        "veth option {key}: expected an array of \"ADDR/PREFIX\", found {t}"
                    ))
                })?;
                let parsed = cidrs(&list, key)?;
                if key == "a_addrs" {
                    a_addrs = parsed
                } else {
                    b_addrs = parsed
                }
            }
            other => {
                return Err(invalid(format!(
                    "veth: unknown option '{other}' (known: mtu, a_addrs, b_addrs)"
                )))
            }
        }
    }
    let req = VethRequest {
        a: EndRequest {
            ns: a.0.clone(),
            name: na.to_string(),
            addrs: a_addrs,
        },
        b: EndRequest {
            ns: b.0.clone(),
            name: nb.to_string(),
            addrs: b_addrs,
        },
        options,
    };
    let mut w = world.borrow_mut();
    let super::World {
        session, journal, ..
    } = &mut *w;
    connect::veth(session, journal, &req).map_err(fail)?;
    Ok(LinkRef {
        ns: a.0.clone(),
        name: na.to_string(),
        peer: Some((b.0.clone(), nb.to_string())),
    })
}

fn register_links(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(engine, "veth", move |a: NsRef,
                               na: &str,
                               b: NsRef,
                               nb: &str|
          -> R<LinkRef> {
        veth_with(&w, &a, na, &b, nb, &Map::new())
    });
    let w = world.clone();
    sys!(engine, "veth", move |a: NsRef,
                               na: &str,
                               b: NsRef,
                               nb: &str,
                               opts: Map|
          -> R<LinkRef> {
        veth_with(&w, &a, na, &b, nb, &opts)
    });

    engine.register_get("name", |l: &mut LinkRef| l.name.clone());
    engine.register_get("ns", |l: &mut LinkRef| NsRef(l.ns.clone()));
    engine.register_get("peer", |l: &mut LinkRef| match &l.peer {
        Some((ns, name)) => Dynamic::from(LinkRef {
            ns: ns.clone(),
            name: name.clone(),
            peer: Some((l.ns.clone(), l.name.clone())),
        }),
        None => Dynamic::UNIT,
    });
    engine.register_fn("to_string", |l: &mut LinkRef| {
        format!("{} in {}", l.name, l.ns)
    });
    engine.register_fn("to_debug", |l: &mut LinkRef| {
        format!("Link({} in {})", l.name, l.ns)
    });
    let w = world.clone();
    engine.register_get("state", move |l: &mut LinkRef| -> String {
        if !l.ns.exists() {
            return "gone".into();
        }
        let world = w.borrow();
        let Ok(t) = world.session.target(&l.ns) else {
            return "gone".into();
        };
        match world.session.block_on(link::get(&t, &l.name)) {
            Ok(Some(s)) => s.state_word().into(),
            _ => "gone".into(),
        }
    });

    for (name, up) in [("up", true), ("down", false)] {
        let w = world.clone();
        sys!(engine, name, move |l: &mut LinkRef| -> R<()> {
            change(
                &w,
                l,
                LinkChange {
                    up: Some(up),
                    mtu: None,
                },
            )
        });
    }
    let w = world.clone();
    sys!(engine, "set_mtu", move |l: &mut LinkRef,
                                  mtu: i64|
          -> R<()> {
        let mtu = u32::try_from(mtu).map_err(|_| invalid(format!("MTU {mtu} is out of range")))?;
        change(
            &w,
            l,
            LinkChange {
                up: None,
                mtu: Some(mtu),
            },
        )
    });
    let w = world.clone();
    sys!(engine, "delete", move |l: &mut LinkRef| -> R<()> {
        let world = w.borrow();
        connect::delete_link(&world.session, &l.ns, &l.name).map_err(fail)
    });
    // Addresses go through the same executor as `ns.ip("address add ...")`,
    // so both are journaled alike.
    for (name, op) in [
        ("add_addr", crate::ipcmd::AddrOp::Add),
        ("del_addr", crate::ipcmd::AddrOp::Del),
    ] {
        let w = world.clone();
        sys!(engine, name, move |l: &mut LinkRef, cidr: &str| -> R<()> {
            let cmd = crate::ipcmd::IpCommand::Address {
                op,
                addr: parse_cidr(cidr).map_err(fail)?,
                dev: l.name.clone(),
            };
            apply_ip(&w, &l.ns, &cmd).map(|_| ())
        });
    }
}

/// `link.up()`, `.down()`, `.set_mtu(n)`: the same executor as
/// `ns.ip("link set ...")`, so the old state is journaled and put back on
/// undo (this matters for links the run did not create).
fn change(world: &SharedWorld, l: &LinkRef, c: LinkChange) -> R<()> {
    let cmd = crate::ipcmd::IpCommand::LinkSet {
        dev: l.name.clone(),
        change: c,
    };
    apply_ip(world, &l.ns, &cmd).map(|_| ())
}

fn ping_map(r: probe::PingResult) -> Map {
    let mut m = Map::new();
    m.insert("ok".into(), r.ok.into());
    m.insert(
        "rtt_ms".into(),
        r.rtt_ms.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    m.insert("sent".into(), (r.sent as i64).into());
    m.insert("received".into(), (r.received as i64).into());
    m
}

/// Stop with "interrupted (Ctrl-C)" if Ctrl-C was pressed. A probe cut short
/// by the signal (its poll returns EINTR) must not look like a timeout.
fn stop_if_interrupted() -> R<()> {
    if super::interrupted() {
        return Err(
            EvalAltResult::ErrorTerminated("interrupted (Ctrl-C)".into(), Position::NONE).into(),
        );
    }
    Ok(())
}

/// `count` echo requests, one at a time, so Ctrl-C stops a long series
/// within one timeout instead of after all of them.
fn ping_interruptible(ns: &Namespace, ip: IpAddr, count: u32, timeout: Duration) -> R<Map> {
    let mut total = probe::PingResult {
        ok: false,
        sent: 0,
        received: 0,
        rtt_ms: None,
    };
    for _ in 0..count.max(1) {
        stop_if_interrupted()?;
        let r = probe::ping(ns, ip, 1, timeout).map_err(fail)?;
        stop_if_interrupted()?;
        total.sent += r.sent;
        total.received += r.received;
        if r.rtt_ms.is_some() {
            total.rtt_ms = r.rtt_ms;
        }
    }
    total.ok = total.received > 0;
    Ok(ping_map(total))
}

fn register_probes(engine: &mut Engine, world: &SharedWorld) {
    sys!(engine, "ping", |ns: &mut NsRef, ip: &str| -> R<Map> {
        let ip = parse_ip(ip)?;
        ping_interruptible(&ns.0, ip, 1, Duration::from_millis(1000))
    });
    sys!(engine, "ping", |ns: &mut NsRef,
                          ip: &str,
                          opts: Map|
     -> R<Map> {
        let ip = parse_ip(ip)?;
        let mut count = 1u32;
        let mut timeout = Duration::from_millis(1000);
        for (k, v) in &opts {
            let n = v
                .as_int()
                .map_err(|t| invalid(format!("ping option {k}: expected an integer, found {t}")))?;
            match k.as_str() {
                "count" => {
                    count = u32::try_from(n)
                        .map_err(|_| invalid(format!("ping count {n} is out of range")))?
                }
                "timeout_ms" => timeout = ms(n, "ping timeout_ms")?,
                other => {
                    return Err(invalid(format!(
                        "ping: unknown option '{other}' (known: count, timeout_ms)"
                    )))
                }
            }
        }
        ping_interruptible(&ns.0, ip, count, timeout)
    });
    sys!(engine, "tcp", |ns: &mut NsRef,
                         ip: &str,
                         port: i64,
                         timeout_ms: i64|
     -> R<bool> {
        let ip = parse_ip(ip)?;
        let port = u16::try_from(port).map_err(|_| invalid(format!("{port} is not a TCP port")))?;
        let r = probe::tcp_check(
            &ns.0,
            SocketAddr::new(ip, port),
            ms(timeout_ms, "tcp timeout")?,
        );
        stop_if_interrupted()?;
        r.map_err(fail)
    });
    let w = world.clone();
    sys!(engine, "serve_http", move |ns: &mut NsRef,
                                     port: i64,
                                     body: &str|
          -> R<()> {
        let port = u16::try_from(port).map_err(|_| invalid(format!("{port} is not a TCP port")))?;
        let server = probe::serve_http(&ns.0, port, body).map_err(fail)?;
        w.borrow_mut().journal.record(
            format!("HTTP responder on port {port} in {}", ns.0),
            Undo::StopServer(Arc::new(Mutex::new(server))),
        );
        Ok(())
    });
    sys!(engine, "http_get", |ns: &mut NsRef,
                              url: &str|
     -> R<String> {
        let r = probe::http_get(&ns.0, url, Duration::from_millis(2000));
        stop_if_interrupted()?;
        r.map_err(fail)
    });
    sys!(engine, "http_get", |ns: &mut NsRef,
                              url: &str,
                              timeout_ms: i64|
     -> R<String> {
        let r = probe::http_get(&ns.0, url, ms(timeout_ms, "http_get timeout")?);
        stop_if_interrupted()?;
        r.map_err(fail)
    });
    sys!(engine, "exec", |ns: &mut NsRef, argv: Array| -> R<Map> {
        let argv = strings(&argv, "exec")?;
        let r = probe::exec(&ns.0, &argv).map_err(fail)?;
        let mut m = Map::new();
        m.insert("code".into(), (r.code as i64).into());
        m.insert("out".into(), r.out.into());
        m.insert("err".into(), r.err.into());
        Ok(m)
    });
}

fn register_misc(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(engine, "koko", move |line: &str| -> R<Dynamic> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let mut world = w.borrow_mut();
        let super::World {
            session, journal, ..
        } = &mut *world;
        let report = crate::plan::run_oneshot(session, journal, &args).map_err(fail)?;
        Ok(json_to_dynamic(&report.to_json()))
    });
    let w = world.clone();
    sys!(engine, "cleanup", move || -> R<()> {
        let errors = super::undo_world(&w);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(fail(Error::Undo(errors)))
        }
    });
    sys!(engine, "sleep", |n: i64| -> R<()> {
        interruptible_sleep(ms(n, "sleep")?)
    });
    sys!(engine, "now_ms", || -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    });
}

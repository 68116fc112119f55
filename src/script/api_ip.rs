//! Addresses and routes in scripts: the `ip`-style command
//! (`ns.ip("route add default via 10.0.1.2 dev link1")`), the structured
//! route calls (`ns.route_add(dest, #{via, dev, metric, table})`), and the
//! kernel's tables as arrays of maps (`ns.routes()`, `ns.addrs()`).
//!
//! Every change goes through [`crate::ipcmd::apply`], the executor the
//! koro grammar uses too, which journals the previous state.

use std::net::IpAddr;

use rhai::{Array, Engine, Map};
use serde::{Deserialize, Serialize};

use super::api::{fail, parse_ip, query, to_value, NsRef, R};
use super::api_links::apply_ip;
use super::options::from_map;
use super::SharedWorld;
use crate::ipcmd::{self, IpCommand};
use crate::net::route::{self, parse_destination, RouteOp, RouteRequest, RouteState};
use crate::net::{addr, link};

/// The options of `route_add` / `route_del` / `route_replace`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RouteOpts {
    via: Option<String>,
    dev: Option<String>,
    metric: Option<u32>,
    table: Option<u32>,
}

/// `route_add("10.0.3.0/24", #{...})` as a typed request.
fn route_request(function: &str, dest: &str, opts: &Map) -> R<RouteRequest> {
    let o: RouteOpts = from_map(function, opts)?;
    let via = o.via.as_deref().map(parse_ip).transpose()?;
    let v6 = via.map(|ip| ip.is_ipv6()).unwrap_or(dest.contains(':'));
    let mut route = RouteRequest::to(parse_destination(dest, v6).map_err(fail)?);
    route.via = via;
    route.dev = o.dev;
    route.metric = o.metric;
    route.table = o.table;
    Ok(route)
}

/// One entry of `ns.routes()`.
#[derive(Serialize)]
struct RouteEntry<'a> {
    /// "default" for a default route, else "10.0.3.0/24".
    dest: String,
    via: Option<IpAddr>,
    dev: Option<&'a str>,
    metric: Option<u32>,
    table: u32,
    family: &'static str,
    protocol: &'a str,
    scope: &'a str,
    src: Option<IpAddr>,
    /// As `ip route` prints it.
    line: String,
}

impl<'a> From<&'a RouteState> for RouteEntry<'a> {
    fn from(r: &'a RouteState) -> Self {
        RouteEntry {
            dest: if r.dest.prefix_len() == 0 {
                "default".to_string()
            } else {
                r.dest.to_string()
            },
            via: r.via,
            dev: r.dev.as_deref(),
            metric: r.metric,
            table: r.table,
            family: r.family,
            protocol: &r.protocol,
            scope: &r.scope,
            src: r.src,
            line: r.line(),
        }
    }
}

/// One entry of `ns.addrs()`.
#[derive(Serialize)]
struct AddrEntry {
    /// The name of the link it is on.
    link: String,
    addr: ipnet::IpNet,
    /// "inet" or "inet6".
    family: &'static str,
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(
        engine,
        "ip",
        /// an `ip`-style command (address, route, link set) run natively in the namespace: "address add 10.0.1.1/24 dev link1"
        move |ns: &mut NsRef, command: &str| -> R<String> {
            let cmd = ipcmd::parse(command).map_err(fail)?;
            apply_ip(&w, &ns.0, &cmd)
        }
    );
    // One doc per operation: `#[doc = doc]` hands the macro the text of
    // the loop's entry (it becomes the registration's doc comment).
    for (name, op, doc) in [
        ("route_add", RouteOp::Add, " add a route to dest (\"10.0.3.0/24\" or \"default\"); opts #{via, dev, metric, table}"),
        ("route_del", RouteOp::Del, " delete the route to dest; opts #{via, dev, metric, table} pick which"),
        ("route_replace", RouteOp::Replace, " add or replace the route to dest (the old one comes back on undo); opts #{via, dev, metric, table}"),
    ] {
        let w = world.clone();
        sys!(
            engine,
            name,
            #[doc = doc]
            move |ns: &mut NsRef, dest: &str, opts: Map| -> R<String> {
                let route = route_request(name, dest, &opts)?;
                apply_ip(&w, &ns.0, &IpCommand::Route { op, route })
            }
        );
        let w = world.clone();
        sys!(
            engine,
            name,
            #[doc = doc]
            move |ns: &mut NsRef, dest: &str| -> R<String> {
                let route = route_request(name, dest, &Map::new())?;
                apply_ip(&w, &ns.0, &IpCommand::Route { op, route })
            }
        );
    }
    let w = world.clone();
    sys!(
        engine,
        "routes",
        /// routes of the namespace, read from the kernel: [#{dest, via, dev, metric, table, family, line, ...}]
        move |ns: &mut NsRef| -> R<Array> {
            let routes = query(&w, &ns.0, async |t| route::list(t).await)?;
            Ok(routes.iter().map(|r| to_value(&RouteEntry::from(r))).collect())
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "addrs",
        /// addresses of the namespace, read from the kernel: [#{link, addr, family}]
        move |ns: &mut NsRef| -> R<Array> {
            let (links, addrs) = query(&w, &ns.0, async |t| {
                Ok((link::list(t).await?, addr::list(t).await?))
            })?;
            Ok(addrs
                .into_iter()
                .map(|a| {
                    let link = links
                        .iter()
                        .find(|l| l.index == a.index)
                        .map(|l| l.name.clone())
                        .unwrap_or_default();
                    let family = if a.addr.addr().is_ipv4() { "inet" } else { "inet6" };
                    to_value(&AddrEntry {
                        link,
                        addr: a.addr,
                        family,
                    })
                })
                .collect())
        }
    );
}

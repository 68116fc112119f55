//! Routes (IPv4 and IPv6), like `ip route add|del|replace|show`.
//!
//! A [`RouteRequest`] is the typed form of `PREFIX|default [via GW] [dev IF]
//! [metric N] [table N]`. It is validated before anything is sent (host bits
//! in the destination, a gateway of the other family, a route with neither
//! gateway nor device are usage errors), turned into one `RTM_NEWROUTE` /
//! `RTM_DELROUTE` by the pure `route_message`, and the kernel's errno is
//! translated into words that name the route and the namespace: the kernel
//! says `ENETUNREACH`, koko says "gateway is not reachable from any address
//! on netns 'client'".

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::{link, Target};
use crate::error::{Error, Result};
use crate::ns::Namespace;

/// The main routing table (what `ip route` shows and changes by default).
pub const TABLE_MAIN: u32 = 254;
/// The kernel's table of local and broadcast addresses.
pub const TABLE_LOCAL: u32 = 255;

/// A route to add, delete or replace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteRequest {
    /// Destination network; `0.0.0.0/0` or `::/0` for `default`.
    pub dest: IpNet,
    pub via: Option<IpAddr>,
    pub dev: Option<String>,
    /// The route's priority (`metric N`); None lets the kernel choose.
    pub metric: Option<u32>,
    /// None means the main table.
    pub table: Option<u32>,
}

impl RouteRequest {
    /// A route to `dest` with nothing else set.
    pub fn to(dest: IpNet) -> RouteRequest {
        RouteRequest {
            dest,
            via: None,
            dev: None,
            metric: None,
            table: None,
        }
    }

    pub fn is_default(&self) -> bool {
        self.dest.prefix_len() == 0
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self.dest, IpNet::V6(_))
    }

    /// Check what can be checked without the kernel. `for_add` also
    /// requires a gateway or a device (a route must lead somewhere).
    pub fn validate(&self, for_add: bool) -> Result<()> {
        if let Some(via) = self.via {
            // `via 0.0.0.0` is taken by the kernel as "no gateway": it adds
            // a device route and says "done", so koko would report a
            // gateway that is not there. `via ::` and multicast gateways are
            // refused with a bare EINVAL.
            if via.is_unspecified() {
                return Err(Error::Invalid(format!(
                    "route {self}: gateway '{via}' is the unspecified address (for a route with no gateway, give 'dev IF' alone)"
                )));
            }
            if via.is_multicast() {
                return Err(Error::Invalid(format!(
                    "route {self}: gateway '{via}' is a multicast address; a gateway is one neighbour's unicast address"
                )));
            }
            if via.is_ipv6() != self.is_ipv6() {
                return Err(Error::Invalid(format!(
                    "route {self}: gateway '{via}' is an {} address but the destination is {}",
                    family_word(via.is_ipv6()),
                    family_word(self.is_ipv6())
                )));
            }
        }
        if for_add && self.via.is_none() && self.dev.is_none() {
            return Err(Error::Invalid(format!(
                "route {self}: give a gateway ('via GW'), a device ('dev IF'), or both"
            )));
        }
        if let Some(dev) = &self.dev {
            link::validate_name(dev)?;
        }
        if let Some(t) = self.table {
            if t == 0 {
                return Err(Error::Invalid(format!(
                    "route {self}: table 0 is not a routing table"
                )));
            }
        }
        Ok(())
    }

    fn family(&self) -> AddressFamily {
        if self.is_ipv6() {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        }
    }
}

fn family_word(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

impl fmt::Display for RouteRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_default() {
            write!(f, "default")?;
            if self.is_ipv6() {
                write!(f, " (IPv6)")?;
            }
        } else {
            write!(f, "{}", self.dest)?;
        }
        write!(f, "{}", self.options_text())
    }
}

impl RouteRequest {
    /// Everything after the destination, as `ip route` takes it:
    /// " via GW dev IF metric N table T" (empty if nothing is set). The one
    /// wording of a route's options, for messages and koro's canonical form.
    pub fn options_text(&self) -> String {
        let mut s = String::new();
        if let Some(via) = self.via {
            s += &format!(" via {via}");
        }
        if let Some(dev) = &self.dev {
            s += &format!(" dev {dev}");
        }
        if let Some(m) = self.metric {
            s += &format!(" metric {m}");
        }
        if let Some(t) = self.table {
            s += &format!(" table {t}");
        }
        s
    }
}

/// Parse a route destination: `default` (IPv4 unless `v6`), `PREFIX/LEN`, or
/// a bare address (a host route, /32 or /128, as `ip route` takes it). Host
/// bits set below the prefix length are refused: `10.90.1.5/16` is almost
/// always a typo for an address, and the kernel would refuse it anyway.
pub fn parse_destination(text: &str, v6: bool) -> Result<IpNet> {
    if text == "default" || text == "all" || text == "any" {
        return Ok(if v6 {
            "::/0".parse().unwrap()
        } else {
            "0.0.0.0/0".parse().unwrap()
        });
    }
    let net: IpNet = match text.split_once('/') {
        None => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(Error::Invalid(format!(
                    "route destination '{text}' is not 'default', an address, or a prefix like 10.0.3.0/24"
                )))
            }
        },
        Some((addr, len)) => {
            super::addr::parse_prefix(addr, len, &format!("route destination '{text}'"))?
        }
    };
    if net.addr() != net.network() {
        return Err(Error::Invalid(format!(
            "route destination '{text}' has host bits set (did you mean {}?)",
            net.trunc()
        )));
    }
    Ok(net)
}

/// What a request is for: the flags and scope differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    Add,
    Del,
    Replace,
}

impl RouteOp {
    pub fn word(self) -> &'static str {
        match self {
            RouteOp::Add => "add",
            RouteOp::Del => "del",
            RouteOp::Replace => "replace",
        }
    }

    /// The netlink flags of the request (NLM_F_REQUEST and ACK are added by
    /// the socket).
    pub fn flags(self) -> u16 {
        match self {
            RouteOp::Add => NLM_F_CREATE | NLM_F_EXCL,
            RouteOp::Replace => NLM_F_CREATE | NLM_F_REPLACE,
            RouteOp::Del => 0,
        }
    }
}

/// The RTM_NEWROUTE / RTM_DELROUTE body for `route`, with the device
/// already looked up (`oif`). Mirrors what `ip route` sends: protocol boot,
/// scope link for a route without gateway, table in the header when it fits
/// in a byte and always in RTA_TABLE. A delete uses scope "nowhere" and no
/// protocol so it matches the route whatever made it.
pub(in crate::net) fn route_message(
    route: &RouteRequest,
    oif: Option<u32>,
    op: RouteOp,
) -> RouteMessage {
    let table = route.table.unwrap_or(TABLE_MAIN);
    let mut msg = RouteMessage::default();
    msg.header.address_family = route.family();
    msg.header.destination_prefix_length = route.dest.prefix_len();
    msg.header.table = if table < 256 {
        table as u8
    } else {
        RouteHeader::RT_TABLE_UNSPEC
    };
    msg.header.kind = RouteType::Unicast;
    if op == RouteOp::Del {
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
    } else {
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if route.via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
    }
    if route.dest.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                route.dest.network(),
            )));
    }
    if let Some(via) = route.via {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(via)));
    }
    if let Some(index) = oif {
        msg.attributes.push(RouteAttribute::Oif(index));
    }
    if let Some(metric) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    msg.attributes.push(RouteAttribute::Table(table));
    msg
}

/// Send `op` for `route` in `t`'s namespace.
pub async fn apply(t: &Target, route: &RouteRequest, op: RouteOp) -> Result<()> {
    route.validate(op != RouteOp::Del)?;
    let oif = match &route.dev {
        Some(dev) => Some(link::require(t, dev).await?.index),
        None => None,
    };
    let msg = route_message(route, oif, op);
    let request = match op {
        RouteOp::Del => RouteNetlinkMessage::DelRoute(msg),
        _ => RouteNetlinkMessage::NewRoute(msg),
    };
    t.socket
        .ack(request, op.flags())
        .await
        .map_err(|errno| explain(&t.ns, route, op, errno))
}

/// Add a route (fails if the same route exists).
pub async fn add(t: &Target, route: &RouteRequest) -> Result<()> {
    apply(t, route, RouteOp::Add).await
}

/// Delete a route.
pub async fn del(t: &Target, route: &RouteRequest) -> Result<()> {
    apply(t, route, RouteOp::Del).await
}

/// Add a route, or replace the one with the same destination, table and
/// metric.
pub async fn replace(t: &Target, route: &RouteRequest) -> Result<()> {
    apply(t, route, RouteOp::Replace).await
}

/// The kernel's refusal in words that name the route and the namespace
/// (the one translation of a route errno, for single and batched requests).
pub fn explain(ns: &Namespace, route: &RouteRequest, op: RouteOp, errno: Errno) -> Error {
    let what = format!("route {route}");
    let cause = match (op, errno) {
        (_, Errno::ENETUNREACH) | (_, Errno::EHOSTUNREACH) if route.via.is_some() => {
            format!("gateway is not reachable from any address on {}", ns)
        }
        (RouteOp::Add, Errno::EEXIST) => format!("already exists in {}", ns),
        (RouteOp::Del, Errno::ESRCH) | (RouteOp::Del, Errno::ENOENT) => {
            format!("no such route in {}", ns)
        }
        (_, Errno::ENODEV) => match &route.dev {
            Some(dev) => return Error::link_not_found(dev.clone(), ns),
            None => format!("no device for it in {}", ns),
        },
        (_, Errno::ENETDOWN) => format!("its device is down in {}", ns),
        (_, Errno::EAFNOSUPPORT) | (_, Errno::EOPNOTSUPP) | (_, Errno::EACCES)
            if route.is_ipv6() =>
        {
            format!("IPv6 is disabled in {}", ns)
        }
        (_, Errno::EINVAL) if route.via.is_some() => format!(
            "the kernel refused the gateway in {} (is it one of the namespace's own addresses?)",
            ns
        ),
        _ => {
            return Error::kernel(format!("{} route {route} in {}", op_verb(op), ns), errno);
        }
    };
    Error::Kernel {
        what,
        cause,
        errno: Some(errno),
    }
}

fn op_verb(op: RouteOp) -> &'static str {
    match op {
        RouteOp::Add => "adding",
        RouteOp::Del => "deleting",
        RouteOp::Replace => "replacing",
    }
}

/// One route as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteState {
    /// "inet" or "inet6".
    pub family: &'static str,
    pub dest: IpNet,
    pub via: Option<IpAddr>,
    /// ifindex of the outgoing device.
    pub oif: Option<u32>,
    /// Its name (filled in by [`list`]).
    pub dev: Option<String>,
    pub metric: Option<u32>,
    pub table: u32,
    /// "kernel", "boot", "static", ...
    pub protocol: String,
    /// "universe", "link", "host", ...
    pub scope: String,
    /// The preferred source address, if set.
    pub src: Option<IpAddr>,
}

impl RouteState {
    fn from_message(m: &RouteMessage) -> Option<RouteState> {
        let v6 = match m.header.address_family {
            AddressFamily::Inet => false,
            AddressFamily::Inet6 => true,
            _ => return None,
        };
        let mut state = RouteState {
            family: if v6 { "inet6" } else { "inet" },
            dest: if v6 {
                "::/0".parse().unwrap()
            } else {
                "0.0.0.0/0".parse().unwrap()
            },
            via: None,
            oif: None,
            dev: None,
            metric: None,
            table: m.header.table as u32,
            protocol: m.header.protocol.to_string(),
            scope: m.header.scope.to_string(),
            src: None,
        };
        for attr in &m.attributes {
            match attr {
                RouteAttribute::Destination(a) => {
                    if let Some(ip) = route_ip(a) {
                        state.dest = IpNet::new(ip, m.header.destination_prefix_length).ok()?;
                    }
                }
                RouteAttribute::Gateway(a) => state.via = route_ip(a),
                RouteAttribute::PrefSource(a) => state.src = route_ip(a),
                RouteAttribute::Oif(i) => state.oif = Some(*i),
                RouteAttribute::Priority(p) => state.metric = Some(*p),
                RouteAttribute::Table(t) => state.table = *t,
                _ => {}
            }
        }
        Some(state)
    }

    /// `ip route`-style one line.
    pub fn line(&self) -> String {
        let mut s = if self.dest.prefix_len() == 0 {
            "default".to_string()
        } else {
            self.dest.to_string()
        };
        if let Some(via) = self.via {
            s += &format!(" via {via}");
        }
        match (&self.dev, self.oif) {
            (Some(dev), _) => s += &format!(" dev {dev}"),
            (None, Some(i)) => s += &format!(" dev #{i}"),
            _ => {}
        }
        if self.table != TABLE_MAIN {
            s += &format!(" table {}", self.table);
        }
        if self.protocol != "boot" && self.protocol != "unspec" {
            s += &format!(" proto {}", self.protocol);
        }
        if self.scope != "universe" {
            s += &format!(" scope {}", self.scope);
        }
        if let Some(src) = self.src {
            s += &format!(" src {src}");
        }
        if let Some(m) = self.metric {
            s += &format!(" metric {m}");
        }
        s
    }

    /// The request that would (re)create this route.
    pub fn as_request(&self) -> RouteRequest {
        RouteRequest {
            dest: self.dest,
            via: self.via,
            dev: self.dev.clone(),
            metric: self.metric,
            table: (self.table != TABLE_MAIN).then_some(self.table),
        }
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The unicast routes of every table except `local` (both families), with
/// device names filled in, in the kernel's order.
pub async fn list(t: &Target) -> Result<Vec<RouteState>> {
    let links = link::list(t).await?;
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        let answers = match t.socket.dump(RouteNetlinkMessage::GetRoute(msg)).await {
            Ok(a) => a,
            // A kernel without IPv6 has no IPv6 routes to show.
            Err(Errno::EAFNOSUPPORT) if family == AddressFamily::Inet6 => continue,
            Err(errno) => return Err(Error::kernel(format!("listing routes of {}", t.ns), errno)),
        };
        for m in answers {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            if r.header.kind != RouteType::Unicast {
                continue;
            }
            let Some(mut state) = RouteState::from_message(&r) else {
                continue;
            };
            if state.table == TABLE_LOCAL {
                continue;
            }
            state.dev = state
                .oif
                .and_then(|i| links.iter().find(|l| l.index == i).map(|l| l.name.clone()));
            out.push(state);
        }
    }
    Ok(out)
}

/// The routes through link `ifindex` that the kernel flushes when the link
/// goes down and does not bring back when it comes up again: every route
/// whose outgoing device is the link, except the ones the kernel itself
/// made for the link's addresses (protocol "kernel"), which return with
/// the addresses. Saved before a link is set down, so that putting it back
/// up (an undo, a `plug`) can restore them.
pub async fn flushed_by_down(t: &Target, ifindex: u32) -> Result<Vec<RouteRequest>> {
    Ok(list(t)
        .await?
        .into_iter()
        .filter(|r| r.oif == Some(ifindex) && r.protocol != "kernel")
        .map(|r| r.as_request())
        .collect())
}

/// The route `ip route replace` would overwrite for `route`: same
/// destination, table and metric. Without a metric the kernel uses 0 for
/// IPv4 (and reports none) and 1024 for IPv6.
pub async fn find_same_key(t: &Target, route: &RouteRequest) -> Result<Option<RouteState>> {
    let table = route.table.unwrap_or(TABLE_MAIN);
    let metric = route
        .metric
        .unwrap_or(if route.is_ipv6() { 1024 } else { 0 });
    Ok(list(t)
        .await?
        .into_iter()
        .find(|r| r.dest == route.dest && r.table == table && r.metric.unwrap_or(0) == metric))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(dest: &str) -> RouteRequest {
        RouteRequest::to(parse_destination(dest, false).unwrap())
    }

    #[test]
    fn destinations() {
        assert_eq!(
            parse_destination("default", false).unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            parse_destination("default", true).unwrap().to_string(),
            "::/0"
        );
        assert_eq!(
            parse_destination("10.0.3.0/24", false).unwrap().to_string(),
            "10.0.3.0/24"
        );
        assert_eq!(
            parse_destination("10.0.3.7", false).unwrap().to_string(),
            "10.0.3.7/32"
        );
        assert_eq!(
            parse_destination("2001:db8::/32", false)
                .unwrap()
                .to_string(),
            "2001:db8::/32"
        );
        let e = parse_destination("10.90.1.5/16", false).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)));
        let e = e.to_string();
        assert!(
            e.contains("'10.90.1.5/16'") && e.contains("host bits") && e.contains("10.90.0.0/16"),
            "{e}"
        );
        let e = parse_destination("10.0.0.0/33", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'33'"), "{e}");
        assert!(parse_destination("foo", false)
            .unwrap_err()
            .to_string()
            .contains("'foo'"));
    }

    #[test]
    fn validation() {
        let mut r = req("10.0.0.0/8");
        assert!(r.validate(false).is_ok());
        let e = r.validate(true).unwrap_err().to_string();
        assert!(e.contains("via") && e.contains("dev"), "{e}");
        r.via = Some("fd00::1".parse().unwrap());
        let e = r.validate(true).unwrap_err().to_string();
        assert!(
            e.contains("'fd00::1'") && e.contains("IPv6") && e.contains("IPv4"),
            "{e}"
        );
        r.via = Some("10.0.0.1".parse().unwrap());
        assert!(r.validate(true).is_ok());
    }

    #[test]
    fn add_message_like_ip_route() {
        let mut r = req("10.0.3.0/24");
        r.via = Some("10.0.2.2".parse().unwrap());
        r.metric = Some(100);
        let m = route_message(&r, Some(7), RouteOp::Add);
        assert_eq!(m.header.address_family, AddressFamily::Inet);
        assert_eq!(m.header.destination_prefix_length, 24);
        assert_eq!(m.header.table, 254);
        assert_eq!(m.header.scope, RouteScope::Universe);
        assert_eq!(m.header.protocol, RouteProtocol::Boot);
        assert_eq!(m.header.kind, RouteType::Unicast);
        assert!(m
            .attributes
            .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                "10.0.3.0".parse().unwrap()
            ))));
        assert!(m
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::Inet(
                "10.0.2.2".parse().unwrap()
            ))));
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(m.attributes.contains(&RouteAttribute::Priority(100)));
        assert!(m.attributes.contains(&RouteAttribute::Table(254)));
    }

    #[test]
    fn default_route_has_no_destination_and_link_scope_without_gateway() {
        let mut r = req("default");
        r.dev = Some("link1".into());
        let m = route_message(&r, Some(3), RouteOp::Replace);
        assert_eq!(m.header.destination_prefix_length, 0);
        assert!(!m
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))));
        assert_eq!(m.header.scope, RouteScope::Link);
        assert_eq!(RouteOp::Replace.flags(), NLM_F_CREATE | NLM_F_REPLACE);
        assert_eq!(RouteOp::Add.flags(), NLM_F_CREATE | NLM_F_EXCL);
    }

    #[test]
    fn big_tables_go_in_the_attribute_only() {
        let mut r = req("10.0.0.0/8");
        r.dev = Some("x".into());
        r.table = Some(1000);
        let m = route_message(&r, Some(1), RouteOp::Add);
        assert_eq!(m.header.table, 0);
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
        r.table = Some(100);
        assert_eq!(route_message(&r, Some(1), RouteOp::Add).header.table, 100);
    }

    #[test]
    fn delete_matches_any_scope_and_protocol() {
        let m = route_message(&req("10.0.0.0/8"), None, RouteOp::Del);
        assert_eq!(m.header.scope, RouteScope::NoWhere);
        assert_eq!(m.header.protocol, RouteProtocol::Unspec);
    }

    #[test]
    fn ipv6_route() {
        let mut r = RouteRequest::to(parse_destination("default", true).unwrap());
        r.via = Some("fd00::1".parse().unwrap());
        let m = route_message(&r, None, RouteOp::Add);
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert!(m
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::Inet6(
                "fd00::1".parse().unwrap()
            ))));
        assert_eq!(r.to_string(), "default (IPv6) via fd00::1");
    }

    #[test]
    fn display() {
        let mut r = req("10.9.0.0/24");
        r.via = Some("10.0.5.1".parse().unwrap());
        assert_eq!(r.to_string(), "10.9.0.0/24 via 10.0.5.1");
        r.dev = Some("link1".into());
        r.metric = Some(5);
        r.table = Some(100);
        assert_eq!(
            r.to_string(),
            "10.9.0.0/24 via 10.0.5.1 dev link1 metric 5 table 100"
        );
    }

    #[test]
    fn errnos_become_sentences_about_the_users_objects() {
        let ns = Namespace::current().unwrap();
        let mut r = RouteRequest::to("10.0.3.0/24".parse().unwrap());
        r.via = Some("10.0.1.2".parse().unwrap());
        r.dev = Some("link1".into());
        let e = explain(&ns, &r, RouteOp::Add, Errno::ENETUNREACH);
        assert!(
            e.to_string()
                .contains("route 10.0.3.0/24 via 10.0.1.2 dev link1")
                && e.to_string().contains("gateway is not reachable"),
            "{e}"
        );
        assert_eq!(e.errno(), Some(Errno::ENETUNREACH));
        let e = explain(&ns, &r, RouteOp::Add, Errno::EEXIST);
        assert!(e.to_string().contains("already exists"), "{e}");
        // A missing device is the link's own not-found error (exit 1).
        let e = explain(&ns, &r, RouteOp::Add, Errno::ENODEV);
        assert!(e.is_link_not_found(), "{e:?}");
        assert_eq!(e.exit_code(), 1);
        let e = explain(&ns, &r, RouteOp::Del, Errno::ESRCH);
        assert!(e.to_string().contains("no such route"), "{e}");
        // Anything else still names the operation and the route.
        let e = explain(&ns, &r, RouteOp::Replace, Errno::EPERM);
        assert!(e.to_string().contains("replacing route 10.0.3.0/24"), "{e}");
    }
}

//! The `ip`-style command language of koro, `koko ip` and scripts' `ns.ip()`.
//!
//! ```text
//! address add|del ADDR/PREFIX dev IF
//! route add|del|replace PREFIX|default [via GW] [dev IF] [metric N] [table N]
//! link set IF up|down|mtu N
//! link impair IF [delay T] [jitter T] [loss P%] [rate R] [duplicate P%] [corrupt P%]
//!      [reorder P%] [limit N] [dir egress|ingress|both] | link impair IF clear
//! link blackhole IF on|off
//! sysctl net.KEY=VALUE
//! forwarding on|off
//! ```
//!
//! Objects may be abbreviated as `ip` allows (`a`, `addr`, `r`, `ro`, `l`).
//! [`parse`] turns the words into a typed [`IpCommand`], checking everything
//! that can be checked without the kernel; an error quotes the offending word
//! and what came before it. [`apply`] carries a command out in one namespace
//! and records its inverse in the [`Journal`]. Both are shared by every front
//! end, so a command behaves the same typed on the command line or in a
//! script.

use std::fmt;

use ipnet::IpNet;

use crate::connect;
use crate::error::{Error, Result};
use crate::impair::{self, Impairment, Rate};
use crate::journal::{Journal, Undo};
use crate::net::link::{self, LinkChange};
use crate::net::route::{self, RouteOp, RouteRequest};
use crate::net::tc::MirrorDir as Direction;
use crate::net::{addr, sysctl, Session};
use crate::ns::Namespace;

/// One `ip`-style command, typed and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum IpCommand {
    Address {
        op: AddrOp,
        addr: IpNet,
        dev: String,
    },
    Route {
        op: RouteOp,
        route: RouteRequest,
    },
    LinkSet {
        dev: String,
        change: LinkChange,
    },
    Sysctl {
        key: String,
        value: String,
    },
    /// IPv4 and IPv6 forwarding for the whole namespace.
    Forwarding(bool),
    /// Degrade a link: set the whole impairment of `dir` (see
    /// [`crate::impair::impair`]), or with `what` None clear every
    /// impairment koko set on it.
    LinkImpair {
        dev: String,
        what: Option<Impairment>,
        dir: Direction,
    },
    /// Drop everything both ways while the link stays up, or stop that.
    LinkBlackhole {
        dev: String,
        on: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrOp {
    Add,
    Del,
}

impl IpCommand {
    /// A short name for the action ("route add", "address del", ...).
    pub fn action(&self) -> String {
        match self {
            IpCommand::Address {
                op: AddrOp::Add, ..
            } => "address add".into(),
            IpCommand::Address {
                op: AddrOp::Del, ..
            } => "address del".into(),
            IpCommand::Route { op, .. } => format!("route {}", op.word()),
            IpCommand::LinkSet { .. } => "link set".into(),
            IpCommand::LinkImpair { .. } => "link impair".into(),
            IpCommand::LinkBlackhole { .. } => "link blackhole".into(),
            IpCommand::Sysctl { .. } => "sysctl".into(),
            IpCommand::Forwarding(_) => "forwarding".into(),
        }
    }
}

impl fmt::Display for IpCommand {
    /// The command in canonical form (parses back to itself).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpCommand::Address { op, addr, dev } => {
                let verb = if *op == AddrOp::Add { "add" } else { "del" };
                write!(f, "address {verb} {addr} dev {dev}")
            }
            IpCommand::Route { op, route } => {
                // `default` reads back as IPv4 unless the gateway says IPv6.
                if route.is_default() && (!route.is_ipv6() || route.via.is_some()) {
                    write!(f, "route {} default", op.word())?;
                } else {
                    write!(f, "route {} {}", op.word(), route.dest)?;
                }
                write!(f, "{}", route.options_text())
            }
            IpCommand::LinkSet { dev, change } => {
                write!(f, "link set {dev} {}", change.words().join(" "))
            }
            IpCommand::Sysctl { key, value } => write!(f, "sysctl {key}={value}"),
            IpCommand::Forwarding(on) => write!(f, "forwarding {}", if *on { "on" } else { "off" }),
            IpCommand::LinkImpair {
                dev, what: None, ..
            } => write!(f, "link impair {dev} clear"),
            IpCommand::LinkImpair {
                dev,
                what: Some(what),
                dir,
            } => {
                write!(f, "link impair {dev} {what}")?;
                if *dir != Direction::Egress {
                    write!(f, " dir {}", dir.as_str())?;
                }
                Ok(())
            }
            IpCommand::LinkBlackhole { dev, on } => {
                write!(f, "link blackhole {dev} {}", if *on { "on" } else { "off" })
            }
        }
    }
}

/// The usage summary, for error messages and help.
pub const USAGE: &str = "\
address add|del ADDR/PREFIX dev IF
route add|del|replace PREFIX|default [via GW] [dev IF] [metric N] [table N]
link set IF up|down|mtu N
link impair IF [delay T] [jitter T] [loss P%] [rate R] [duplicate P%] [corrupt P%]
     [reorder P%] [limit N] [dir egress|ingress|both] | link impair IF clear
link blackhole IF on|off
sysctl net.KEY=VALUE
forwarding on|off";

/// The keys of `link impair DEV ...`, in the order the help lists them.
pub const IMPAIR_KEYS: [&str; 9] = [
    "delay",
    "jitter",
    "loss",
    "rate",
    "duplicate",
    "corrupt",
    "reorder",
    "limit",
    "dir",
];

/// Parse one command given as a single string (split on whitespace).
pub fn parse(text: &str) -> Result<IpCommand> {
    let words: Vec<&str> = text.split_whitespace().collect();
    parse_words(&words)
}

/// Parse one command given as words (as on a command line).
pub fn parse_words<S: AsRef<str>>(words: &[S]) -> Result<IpCommand> {
    let words: Vec<&str> = words.iter().map(|w| w.as_ref()).collect();
    // `-6 route del default` as with `ip`: the family of `default`.
    let (family, words) = match words.first() {
        Some(&"-6") => (Some(true), &words[1..]),
        Some(&"-4") => (Some(false), &words[1..]),
        _ => (None, &words[..]),
    };
    let mut w = Words {
        words,
        pos: 0,
        last: String::new(),
    };
    let Some(object) = w.next() else {
        return Err(Error::Invalid(format!(
            "empty command: expected 'address', 'route', 'link' or 'sysctl'\n{USAGE}"
        )));
    };
    if is_abbrev(object, "address", 1) {
        parse_address(&mut w, family)
    } else if is_abbrev(object, "route", 1) {
        parse_route(&mut w, family)
    } else if is_abbrev(object, "link", 1) {
        parse_link(&mut w)
    } else if object == "sysctl" {
        parse_sysctl(&mut w)
    } else if object == "forwarding" {
        parse_forwarding(&mut w)
    } else {
        Err(Error::Invalid(format!(
            "unknown object '{object}': expected 'address', 'route', 'link', 'sysctl' or 'forwarding'"
        )))
    }
}

/// `word` is `full` or an abbreviation of it at least `min` long (as `ip`
/// accepts `a`, `addr` for `address` and `r`, `ro` for `route`).
fn is_abbrev(word: &str, full: &str, min: usize) -> bool {
    word.len() >= min && full.starts_with(word)
}

/// A cursor over the words that remembers the last clause, so errors can
/// say where they are.
struct Words<'a> {
    words: &'a [&'a str],
    pos: usize,
    last: String,
}

impl<'a> Words<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.pos).copied();
        if let Some(w) = w {
            self.pos += 1;
            if self.pos == 1 {
                self.last = w.to_string();
            }
        }
        w
    }

    /// The value after keyword `key`; an error if there is none.
    fn value(&mut self, key: &str, wanted: &str) -> Result<&'a str> {
        match self.words.get(self.pos).copied() {
            Some(v) => {
                self.pos += 1;
                self.last = format!("{key} {v}");
                Ok(v)
            }
            None => Err(Error::Invalid(format!("'{key}' at the end needs {wanted}"))),
        }
    }

    fn clause(&mut self, text: impl Into<String>) {
        self.last = text.into();
    }

    fn unexpected(&self, word: &str) -> Error {
        Error::Invalid(format!("unexpected word '{word}' after '{}'", self.last))
    }

    fn once<T>(&self, slot: &Option<T>, key: &str) -> Result<()> {
        if slot.is_some() {
            Err(Error::Invalid(format!(
                "'{key}' given twice (after '{}')",
                self.last
            )))
        } else {
            Ok(())
        }
    }
}

fn parse_number(key: &str, text: &str) -> Result<u32> {
    text.parse()
        .map_err(|_| Error::Invalid(format!("'{key} {text}': '{text}' is not a whole number")))
}

fn parse_address(w: &mut Words, family: Option<bool>) -> Result<IpCommand> {
    let op = match w.next() {
        Some("add") => AddrOp::Add,
        Some("del" | "delete") => AddrOp::Del,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "unknown address command '{other}': expected 'add' or 'del'"
            )))
        }
        None => return Err(Error::Invalid("'address' needs 'add' or 'del'".into())),
    };
    w.clause(format!(
        "address {}",
        if op == AddrOp::Add { "add" } else { "del" }
    ));
    let mut address: Option<IpNet> = None;
    let mut dev: Option<String> = None;
    while let Some(word) = w.next() {
        match word {
            "dev" => {
                w.once(&dev, "dev")?;
                let d = w.value("dev", "an interface name")?;
                link::validate_name(d)?;
                dev = Some(d.to_string());
            }
            "local" => {
                w.once(&address, "local")?;
                address = Some(addr::parse_cidr(
                    w.value("local", "an address like 10.0.1.1/24")?,
                )?);
            }
            _ if address.is_none()
                && (word.contains('/') || word.parse::<std::net::IpAddr>().is_ok()) =>
            {
                address = Some(addr::parse_cidr(word)?);
                w.clause(word);
            }
            _ => return Err(w.unexpected(word)),
        }
    }
    let addr = address
        .ok_or_else(|| Error::Invalid("address: missing ADDR/PREFIX (e.g. 10.0.1.1/24)".into()))?;
    if let Some(want_v6) = family.filter(|v6| *v6 != addr.addr().is_ipv6()) {
        return Err(Error::Invalid(format!(
            "'{}' asks for an {} address, but '{addr}' is not one",
            if want_v6 { "-6" } else { "-4" },
            if want_v6 { "IPv6" } else { "IPv4" }
        )));
    }
    if op == AddrOp::Add {
        addr::check_assignable(addr)?;
    }
    let dev = dev
        .ok_or_else(|| Error::Invalid(format!("address {addr}: missing 'dev IF' (which link?)")))?;
    Ok(IpCommand::Address { op, addr, dev })
}

fn parse_route(w: &mut Words, family: Option<bool>) -> Result<IpCommand> {
    let op = match w.next() {
        Some("add") => RouteOp::Add,
        Some("del" | "delete") => RouteOp::Del,
        Some("replace") => RouteOp::Replace,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "unknown route command '{other}': expected 'add', 'del' or 'replace'"
            )))
        }
        None => {
            return Err(Error::Invalid(
                "'route' needs 'add', 'del' or 'replace'".into(),
            ))
        }
    };
    w.clause(format!("route {}", op.word()));
    let mut dest: Option<&str> = None;
    let mut via: Option<std::net::IpAddr> = None;
    let mut dev: Option<String> = None;
    let mut metric: Option<u32> = None;
    let mut table: Option<u32> = None;
    while let Some(word) = w.next() {
        match word {
            "via" | "gw" => {
                w.once(&via, word)?;
                let v = w.value(word, "a gateway address")?;
                via = Some(v.parse().map_err(|_| {
                    Error::Invalid(format!(
                        "'{word} {v}': '{v}' is not an IPv4 or IPv6 address"
                    ))
                })?);
            }
            "dev" | "oif" => {
                w.once(&dev, "dev")?;
                let d = w.value(word, "an interface name")?;
                link::validate_name(d)?;
                dev = Some(d.to_string());
            }
            "metric" | "priority" | "preference" => {
                w.once(&metric, "metric")?;
                metric = Some(parse_number(word, w.value(word, "a number")?)?);
            }
            "table" => {
                w.once(&table, "table")?;
                let t = w.value("table", "a table number or 'main'")?;
                table = Some(match t {
                    "main" => route::TABLE_MAIN,
                    "local" => route::TABLE_LOCAL,
                    "default" => 253,
                    _ => parse_number("table", t)?,
                });
            }
            "to" => {
                w.once(&dest, "to")?;
                dest = Some(w.value("to", "a destination")?);
            }
            _ if dest.is_none() => {
                dest = Some(word);
                w.clause(format!("route {} {word}", op.word()));
            }
            _ => return Err(w.unexpected(word)),
        }
    }
    let dest = dest.ok_or_else(|| {
        Error::Invalid(format!(
            "route {}: missing destination (a prefix like 10.0.3.0/24, or 'default')",
            op.word()
        ))
    })?;
    // `default` takes the family of -4/-6, else of the gateway, like `ip
    // route` does. An explicit family that the gateway or the destination
    // contradicts is refused: `-6 route add default via 10.0.0.1` must not
    // quietly add an IPv4 route.
    let v6 = family.or(via.map(|v| v.is_ipv6())).unwrap_or(false);
    let dest_net = route::parse_destination(dest, v6)?;
    if let Some(want_v6) = family {
        let flag = if want_v6 { "-6" } else { "-4" };
        let fam = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
        if let Some(v) = via.filter(|v| v.is_ipv6() != want_v6) {
            return Err(Error::Invalid(format!(
                "'{flag}' asks for an {} route, but gateway '{v}' is an {} address",
                fam(want_v6),
                fam(v.is_ipv6())
            )));
        }
        if matches!(dest_net, IpNet::V6(_)) != want_v6 {
            return Err(Error::Invalid(format!(
                "'{flag}' asks for an {} route, but destination '{dest}' is {}",
                fam(want_v6),
                fam(!want_v6)
            )));
        }
    }
    let route = RouteRequest {
        dest: dest_net,
        via,
        dev,
        metric,
        table,
    };
    route.validate(op != RouteOp::Del)?;
    Ok(IpCommand::Route { op, route })
}

fn parse_link(w: &mut Words) -> Result<IpCommand> {
    match w.next() {
        Some("set") => {}
        Some("impair") => return parse_impair(w),
        Some("blackhole") => return parse_blackhole(w),
        Some(other) => {
            return Err(Error::Invalid(format!(
                "unknown link command '{other}': expected 'set', 'impair' or 'blackhole'"
            )))
        }
        None => return Err(Error::Invalid("'link' needs 'set IF up|down|mtu N'".into())),
    }
    w.clause("link set");
    let mut dev: Option<String> = None;
    let mut change = LinkChange::default();
    while let Some(word) = w.next() {
        match word {
            "up" | "down" => {
                if change.up.is_some() {
                    return Err(Error::Invalid(format!(
                        "'{word}': the state is given twice"
                    )));
                }
                change.up = Some(word == "up");
                w.clause(word);
            }
            "mtu" => {
                w.once(&change.mtu, "mtu")?;
                let m = parse_number("mtu", w.value("mtu", "a number")?)?;
                if !link::MTU_RANGE.contains(&m) {
                    return Err(Error::Invalid(format!(
                        "'mtu {m}': an MTU is from {} to {}",
                        link::MTU_RANGE.start(),
                        link::MTU_RANGE.end()
                    )));
                }
                change.mtu = Some(m);
            }
            "dev" => {
                w.once(&dev, "dev")?;
                let d = w.value("dev", "an interface name")?;
                link::validate_name(d)?;
                dev = Some(d.to_string());
            }
            _ if dev.is_none() => {
                link::validate_name(word)?;
                dev = Some(word.to_string());
                w.clause(format!("link set {word}"));
            }
            _ => return Err(w.unexpected(word)),
        }
    }
    let dev = dev.ok_or_else(|| Error::Invalid("link set: missing the interface name".into()))?;
    if change == LinkChange::default() {
        return Err(Error::Invalid(format!(
            "link set {dev}: nothing to change (up, down or mtu N)"
        )));
    }
    Ok(IpCommand::LinkSet { dev, change })
}

/// The device after `link impair` / `link blackhole`.
fn link_dev(w: &mut Words, command: &str) -> Result<String> {
    let dev = w
        .next()
        .ok_or_else(|| Error::Invalid(format!("'link {command}' needs the interface name")))?;
    link::validate_name(dev)?;
    w.clause(format!("link {command} {dev}"));
    Ok(dev.to_string())
}

/// A time: `20ms`, `1.5s`, `250us`, or a bare number of milliseconds.
fn parse_time_ms(key: &str, text: &str) -> Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v * scale)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "'{key} {text}': not a time (e.g. 20ms, 1.5s, 250us)"
            ))
        })
}

/// A percentage: `1%`, `0.5%`, or a bare number.
fn parse_percent(key: &str, text: &str) -> Result<f64> {
    text.strip_suffix('%')
        .unwrap_or(text)
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| Error::Invalid(format!("'{key} {text}': not a percentage (e.g. 1%)")))
}

fn parse_impair(w: &mut Words) -> Result<IpCommand> {
    let dev = link_dev(w, "impair")?;
    let mut what = Impairment::default();
    let mut dir = None;
    let mut seen: Vec<&str> = Vec::new();
    let mut clear = false;
    while let Some(word) = w.next() {
        if word == "clear" {
            clear = true;
            w.clause("clear");
            continue;
        }
        let Some(key) = IMPAIR_KEYS.iter().copied().find(|k| *k == word) else {
            return Err(w.unexpected(word));
        };
        if seen.contains(&key) {
            return Err(Error::Invalid(format!(
                "'{key}' given twice (after '{}')",
                w.last
            )));
        }
        seen.push(key);
        let value = w.value(key, "a value")?;
        match key {
            "dir" => dir = Some(value.parse::<Direction>()?),
            _ => set_impair_value(&mut what, key, value)?,
        }
    }
    if clear {
        if !seen.is_empty() {
            return Err(Error::Invalid(format!(
                "link impair {dev}: 'clear' takes nothing else (it removes every impairment)"
            )));
        }
        return Ok(IpCommand::LinkImpair {
            dev,
            what: None,
            dir: Direction::Both,
        });
    }
    if what.is_none() {
        return Err(Error::Invalid(format!(
            "link impair {dev}: nothing to do (delay, jitter, loss, rate, duplicate, corrupt, reorder, or clear)"
        )));
    }
    what.validate(&format!("link impair {dev}"))?;
    Ok(IpCommand::LinkImpair {
        dev,
        what: Some(what),
        dir: dir.unwrap_or(Direction::Egress),
    })
}

/// Set one impairment value from its `link impair` word and text
/// (`delay 20ms`, `loss 1%`, `rate 10mbit`, ...). Shared with the CNI
/// plugin's link records, so both take the same words and units.
pub fn set_impair_value(what: &mut Impairment, key: &str, value: &str) -> Result<()> {
    match key {
        "delay" => what.delay_ms = parse_time_ms(key, value)?,
        "jitter" => what.jitter_ms = parse_time_ms(key, value)?,
        "loss" => what.loss_pct = parse_percent(key, value)?,
        "duplicate" => what.duplicate_pct = parse_percent(key, value)?,
        "corrupt" => what.corrupt_pct = parse_percent(key, value)?,
        "reorder" => what.reorder_pct = parse_percent(key, value)?,
        "rate" => what.rate = Some(value.parse::<Rate>()?),
        "limit" => what.limit = parse_number(key, value)?,
        other => {
            return Err(Error::Invalid(format!(
                "unknown impairment '{other}': expected delay, jitter, loss, rate, duplicate, corrupt, reorder or limit"
            )))
        }
    }
    Ok(())
}

fn parse_blackhole(w: &mut Words) -> Result<IpCommand> {
    let dev = link_dev(w, "blackhole")?;
    let on = match w.next() {
        Some("on") => true,
        Some("off") => false,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "link blackhole {dev} '{other}': expected 'on' or 'off'"
            )))
        }
        None => {
            return Err(Error::Invalid(format!(
                "link blackhole {dev}: expected 'on' or 'off'"
            )))
        }
    };
    w.clause(format!(
        "link blackhole {dev} {}",
        if on { "on" } else { "off" }
    ));
    if let Some(extra) = w.next() {
        return Err(w.unexpected(extra));
    }
    Ok(IpCommand::LinkBlackhole { dev, on })
}

fn parse_sysctl(w: &mut Words) -> Result<IpCommand> {
    let mut word = w.next();
    if word == Some("-w") {
        word = w.next();
    }
    let Some(word) = word else {
        return Err(Error::Invalid("'sysctl' needs net.KEY=VALUE".into()));
    };
    let (key, value) = match word.split_once('=') {
        Some((k, v)) if !v.is_empty() => (k.to_string(), v.to_string()),
        _ => {
            return Err(Error::Invalid(format!(
                "sysctl '{word}': write it as KEY=VALUE, e.g. net.ipv4.ip_forward=1"
            )))
        }
    };
    sysctl::key_path(&key)?;
    w.clause(word);
    if let Some(extra) = w.next() {
        return Err(w.unexpected(extra));
    }
    Ok(IpCommand::Sysctl { key, value })
}

fn parse_forwarding(w: &mut Words) -> Result<IpCommand> {
    let on = match w.next() {
        Some("on" | "1" | "yes") => true,
        Some("off" | "0" | "no") => false,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "forwarding '{other}': expected 'on' or 'off'"
            )))
        }
        None => return Err(Error::Invalid("'forwarding' needs 'on' or 'off'".into())),
    };
    w.clause(format!("forwarding {}", if on { "on" } else { "off" }));
    if let Some(extra) = w.next() {
        return Err(w.unexpected(extra));
    }
    Ok(IpCommand::Forwarding(on))
}

/// Carry out `cmd` in `ns`, recording its inverse in `journal`. Returns a
/// one-line summary of what was done.
///
/// Additions (addresses, routes), replacements, link changes and sysctls are
/// journaled, so a rollback or a script's cleanup puts things back. Deletions
/// are not: undoing them would re-create what the user asked to remove.
pub fn apply(
    session: &Session,
    journal: &mut Journal,
    ns: &Namespace,
    cmd: &IpCommand,
) -> Result<String> {
    match cmd {
        IpCommand::Address { op, addr: a, dev } => {
            let t = session.target(ns)?;
            match op {
                AddrOp::Add => {
                    session.block_on(addr::add(&t, dev, *a))?;
                    journal.record(
                        format!("address {a} on {dev} in {ns}"),
                        Undo::DeleteAddress {
                            ns: ns.clone(),
                            link: dev.clone(),
                            addr: *a,
                        },
                    );
                    Ok(format!("added address {a} to {dev} in {ns}"))
                }
                AddrOp::Del => {
                    session.block_on(addr::del(&t, dev, *a))?;
                    Ok(format!("removed address {a} from {dev} in {ns}"))
                }
            }
        }
        IpCommand::Route { op, route: r } => {
            let t = session.target(ns)?;
            match op {
                RouteOp::Add => {
                    session.block_on(route::add(&t, r))?;
                    journal.record(
                        format!("route {r} in {ns}"),
                        Undo::DeleteRoute {
                            ns: ns.clone(),
                            route: r.clone(),
                        },
                    );
                    Ok(format!("added route {r} in {ns}"))
                }
                RouteOp::Del => {
                    session.block_on(route::del(&t, r))?;
                    Ok(format!("deleted route {r} in {ns}"))
                }
                RouteOp::Replace => {
                    let old = session.block_on(route::find_same_key(&t, r))?;
                    session.block_on(route::replace(&t, r))?;
                    let undo = match &old {
                        Some(old) if old.dev.is_some() || old.via.is_some() => Undo::RestoreRoute {
                            ns: ns.clone(),
                            route: old.as_request(),
                        },
                        _ => Undo::DeleteRoute {
                            ns: ns.clone(),
                            route: r.clone(),
                        },
                    };
                    journal.record(format!("route {r} in {ns}"), undo);
                    Ok(match old {
                        Some(old) => format!("replaced route {} with {r} in {ns}", old.line()),
                        None => format!("added route {r} in {ns} (there was none to replace)"),
                    })
                }
            }
        }
        IpCommand::LinkSet { dev, change } => {
            let t = session.target(ns)?;
            let before = session.block_on(link::require(&t, dev))?;
            // Setting a link down makes the kernel flush its routes (and
            // its IPv6 addresses); save them so the undo, which puts the
            // link back up, puts them back too.
            let (routes, addrs) = if change.up == Some(false) && before.up {
                (
                    session.block_on(route::flushed_by_down(&t, before.index))?,
                    session.block_on(addr::flushed_by_down(&t, before.index))?,
                )
            } else {
                (Vec::new(), Vec::new())
            };
            session.block_on(link::set(&t, dev, *change))?;
            let restore = LinkChange {
                up: change.up.map(|_| before.up),
                mtu: change.mtu.map(|_| before.mtu),
            };
            journal.record(
                format!("link {dev} in {ns}"),
                Undo::RestoreLink {
                    ns: ns.clone(),
                    link: dev.clone(),
                    change: restore,
                    routes,
                    addrs,
                },
            );
            let mut done = change.words();
            if let (Some(_), Some(last)) = (change.mtu, done.last_mut()) {
                // The MTU is always the last word.
                *last += &format!(" (was {})", before.mtu);
            }
            Ok(format!("set link {dev} in {ns} {}", done.join(", ")))
        }
        IpCommand::Sysctl { key, value } => {
            let old = sysctl::write(ns, key, value)?;
            journal.record(
                format!("sysctl {key} in {ns}"),
                Undo::RestoreSysctl {
                    ns: ns.clone(),
                    key: key.clone(),
                    value: old.clone(),
                },
            );
            Ok(format!("set {key}={value} in {ns} (was {old})"))
        }
        IpCommand::Forwarding(on) => {
            Ok(connect::set_forwarding(session, journal, ns, *on)?.line(ns))
        }
        IpCommand::LinkImpair { dev, what, dir } => {
            let pair = impair::LinkPair::resolve(session, impair::End::new(ns, dev), None)?;
            let got = match what {
                Some(what) => impair::impair(session, journal, &pair, *dir, what)?,
                None => impair::clear(session, journal, &pair)?,
            };
            let done = if what.is_some() {
                "impaired"
            } else {
                "cleared"
            };
            Ok(format!("{done} {dev} in {ns}: {}", got.summary()))
        }
        IpCommand::LinkBlackhole { dev, on } => {
            let pair = impair::LinkPair::resolve(session, impair::End::new(ns, dev), None)?;
            if *on {
                impair::blackhole(session, journal, &pair)?;
                Ok(format!(
                    "blackholed {dev} in {ns}: every packet dropped both ways, both ends up"
                ))
            } else {
                let lifted = impair::restore(session, journal, &pair)?;
                Ok(format!(
                    "lifted the blackhole of {dev} in {ns} ({lifted} drop filter(s) removed)"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{text}: {e:?}");
        e.to_string()
    }

    #[test]
    fn address_commands_and_abbreviations() {
        for text in [
            "address add 10.0.1.1/24 dev link1",
            "addr add 10.0.1.1/24 dev link1",
            "a add 10.0.1.1/24 dev link1",
            "a add dev link1 10.0.1.1/24",
        ] {
            let cmd = parse(text).unwrap();
            assert_eq!(
                cmd,
                IpCommand::Address {
                    op: AddrOp::Add,
                    addr: "10.0.1.1/24".parse().unwrap(),
                    dev: "link1".into()
                },
                "{text}"
            );
            assert_eq!(cmd.to_string(), "address add 10.0.1.1/24 dev link1");
        }
        let cmd = parse("address del 2001:db8::1/64 dev link2").unwrap();
        assert!(matches!(
            cmd,
            IpCommand::Address {
                op: AddrOp::Del,
                ..
            }
        ));
    }

    #[test]
    fn route_commands_of_the_service_chaining_post() {
        let cmd = parse("route add default via 10.0.1.2 dev link1").unwrap();
        let IpCommand::Route { op, route } = &cmd else {
            panic!()
        };
        assert_eq!(*op, RouteOp::Add);
        assert!(route.is_default() && !route.is_ipv6());
        assert_eq!(route.via, Some("10.0.1.2".parse().unwrap()));
        assert_eq!(route.dev.as_deref(), Some("link1"));
        assert_eq!(parse(&cmd.to_string()).unwrap(), cmd, "round trip");

        let cmd = parse("ro add 10.0.3.0/24 via 10.0.2.2 dev link3").unwrap();
        let IpCommand::Route { route, .. } = &cmd else {
            panic!()
        };
        assert_eq!(route.dest.to_string(), "10.0.3.0/24");

        let cmd = parse("r replace default via 10.0.4.2 dev link7 metric 10 table 100").unwrap();
        let IpCommand::Route { op, route } = &cmd else {
            panic!()
        };
        assert_eq!(*op, RouteOp::Replace);
        assert_eq!((route.metric, route.table), (Some(10), Some(100)));
        assert_eq!(parse(&cmd.to_string()).unwrap(), cmd);
    }

    #[test]
    fn link_impair_and_blackhole_commands() {
        let cmd = parse("link impair eth1 delay 20ms jitter 5ms loss 1% rate 10mbit dir ingress")
            .unwrap();
        let IpCommand::LinkImpair {
            dev,
            what: Some(what),
            dir,
        } = &cmd
        else {
            panic!("{cmd:?}")
        };
        assert_eq!(dev, "eth1");
        assert_eq!(
            (what.delay_ms, what.jitter_ms, what.loss_pct),
            (20.0, 5.0, 1.0)
        );
        assert_eq!(what.rate, Some(Rate(10_000_000)));
        assert_eq!(*dir, Direction::Ingress);
        assert_eq!(
            cmd.to_string(),
            "link impair eth1 delay 20ms jitter 5ms loss 1% rate 10mbit dir ingress"
        );
        assert_eq!(parse(&cmd.to_string()).unwrap(), cmd, "round trip");
        let cmd = parse("link impair eth1 delay 1.5s duplicate 0.5 limit 100").unwrap();
        let IpCommand::LinkImpair { what: Some(w), .. } = &cmd else {
            panic!()
        };
        assert_eq!((w.delay_ms, w.duplicate_pct, w.limit), (1500.0, 0.5, 100));
        assert_eq!(parse(&cmd.to_string()).unwrap(), cmd);
        assert_eq!(
            parse("link impair eth1 clear").unwrap(),
            IpCommand::LinkImpair {
                dev: "eth1".into(),
                what: None,
                dir: Direction::Both
            }
        );
        assert_eq!(
            parse("link blackhole eth1 on").unwrap(),
            IpCommand::LinkBlackhole {
                dev: "eth1".into(),
                on: true
            }
        );
    }

    #[test]
    fn bad_impairments_are_usage_errors_naming_the_value() {
        for (text, needle) in [
            ("link impair eth1", "nothing to do"),
            ("link impair eth1 loss 150%", "loss_pct 150"),
            ("link impair eth1 delay -1ms", "delay_ms -1"),
            ("link impair eth1 delay soon", "'delay soon': not a time"),
            ("link impair eth1 rate 10bananas", "rate '10bananas'"),
            ("link impair eth1 jitter 5ms", "jitter_ms needs a delay_ms"),
            ("link impair eth1 loss 1% loss 2%", "'loss' given twice"),
            ("link impair eth1 loss", "'loss' at the end"),
            (
                "link impair eth1 clear loss 1%",
                "'clear' takes nothing else",
            ),
            ("link impair eth1 dir sideways loss 1%", "'sideways'"),
            ("link impair eth1 wobble 3", "unexpected word 'wobble'"),
            ("link blackhole eth1 maybe", "expected 'on' or 'off'"),
            ("link blackhole", "needs the interface name"),
        ] {
            assert!(err(text).contains(needle), "{text}: {}", err(text));
        }
    }

    #[test]
    fn default_takes_the_gateways_family() {
        let IpCommand::Route { route, .. } = parse("route add default via fd00::1").unwrap() else {
            panic!()
        };
        assert!(route.is_ipv6());
        assert_eq!(route.dest.to_string(), "::/0");
    }

    #[test]
    fn route_delete_needs_only_the_destination() {
        let IpCommand::Route { op, route } = parse("route del 10.0.3.0/24").unwrap() else {
            panic!()
        };
        assert_eq!(op, RouteOp::Del);
        assert_eq!(route, RouteRequest::to("10.0.3.0/24".parse().unwrap()));
    }

    #[test]
    fn link_set() {
        assert_eq!(
            parse("link set link1 up").unwrap(),
            IpCommand::LinkSet {
                dev: "link1".into(),
                change: LinkChange {
                    up: Some(true),
                    mtu: None
                }
            }
        );
        assert_eq!(
            parse("l set dev link1 down mtu 1400").unwrap(),
            IpCommand::LinkSet {
                dev: "link1".into(),
                change: LinkChange {
                    up: Some(false),
                    mtu: Some(1400)
                }
            }
        );
        assert!(err("link set link1").contains("nothing to change"));
        assert!(err("link set link1 mtu 10").contains("'mtu 10'"));
        assert!(err("link set link1 mtu big").contains("'big'"));
        assert!(err("link set link1 up foo").contains("unexpected word 'foo' after 'up'"));
    }

    #[test]
    fn sysctl() {
        assert_eq!(
            parse("sysctl net.ipv4.ip_forward=1").unwrap(),
            IpCommand::Sysctl {
                key: "net.ipv4.ip_forward".into(),
                value: "1".into()
            }
        );
        assert!(parse("sysctl -w net.ipv4.ip_forward=1").is_ok());
        assert!(err("sysctl kernel.hostname=x").contains("net.*"));
        assert!(err("sysctl net.ipv4.ip_forward").contains("KEY=VALUE"));
    }

    #[test]
    fn forwarding_and_family_options() {
        assert_eq!(parse("forwarding on").unwrap(), IpCommand::Forwarding(true));
        assert_eq!(
            parse("forwarding off").unwrap(),
            IpCommand::Forwarding(false)
        );
        assert!(err("forwarding maybe").contains("'maybe'"));
        assert!(err("forwarding on now").contains("unexpected word 'now' after 'forwarding on'"));
        let IpCommand::Route { route, .. } = parse("-6 route del default").unwrap() else {
            panic!()
        };
        assert_eq!(route.dest.to_string(), "::/0");
        let IpCommand::Route { route, .. } = parse("-4 route del default").unwrap() else {
            panic!()
        };
        assert_eq!(route.dest.to_string(), "0.0.0.0/0");
    }

    #[test]
    fn an_explicit_family_is_never_overridden() {
        let e = err("-6 route add default via 10.0.0.1");
        assert!(
            e.contains("'-6'") && e.contains("'10.0.0.1' is an IPv4"),
            "{e}"
        );
        let e = err("-4 route add default via fd00::1");
        assert!(e.contains("'-4'") && e.contains("IPv6"), "{e}");
        let e = err("-6 route add 10.0.0.0/8 dev l1");
        assert!(e.contains("destination '10.0.0.0/8' is IPv4"), "{e}");
        let e = err("-6 address add 10.0.0.1/24 dev l1");
        assert!(e.contains("asks for an IPv6 address"), "{e}");
        // -6 with a matching gateway, or none, is fine.
        let IpCommand::Route { route, .. } = parse("-6 route add default via fd00::1").unwrap()
        else {
            panic!()
        };
        assert_eq!(route.dest.to_string(), "::/0");
        let IpCommand::Route { route, .. } = parse("-6 route add default dev l1").unwrap() else {
            panic!()
        };
        assert!(route.is_ipv6());
    }

    #[test]
    fn addresses_and_gateways_the_kernel_would_not_honour_are_refused() {
        for (text, needle) in [
            ("address add 0.0.0.0/0 dev l1", "silently ignores"),
            ("address add 0.0.0.0/24 dev l1", "0.0.0.0"),
            ("address add ::/64 dev l1", "unspecified address ::"),
            ("address add ff02::1/64 dev l1", "multicast"),
            ("route add default via 0.0.0.0 dev l1", "unspecified"),
            ("route add default via :: dev l1", "unspecified"),
            ("route add 10.0.0.0/8 via 224.0.0.1", "multicast"),
        ] {
            assert!(err(text).contains(needle), "{text}: {}", err(text));
        }
        // Deleting such an address is not refused (the kernel says it is
        // not there).
        assert!(parse("address del 0.0.0.0/0 dev l1").is_ok());
    }

    #[test]
    fn errors_point_at_the_word() {
        let e = err("route add 10.0.3.0/24 dev link1 foo");
        assert!(e.contains("unexpected word 'foo' after 'dev link1'"), "{e}");
        let e = err("address add 10.0.1.1/24 dev link1 bar");
        assert!(e.contains("unexpected word 'bar' after 'dev link1'"), "{e}");
        let e = err("route add 10.90.1.5/16 dev link1");
        assert!(
            e.contains("'10.90.1.5/16'") && e.contains("host bits"),
            "{e}"
        );
        let e = err("route add 10.0.3.0/24");
        assert!(e.contains("via") && e.contains("dev"), "{e}");
        let e = err("route add 10.0.3.0/24 via fd00::1");
        assert!(e.contains("'fd00::1'") && e.contains("IPv6"), "{e}");
        let e = err("address add 10.0.1.1 dev link1");
        assert!(e.contains("'10.0.1.1'") && e.contains("prefix"), "{e}");
        let e = err("address add 10.0.1.1/33 dev link1");
        assert!(e.contains("'33'"), "{e}");
        let e = err("address add 10.0.1.1/24");
        assert!(e.contains("dev"), "{e}");
        assert!(err("route frob default").contains("'frob'"));
        assert!(err("address frob").contains("'frob'"));
        assert!(err("neighbour add").contains("'neighbour'"));
        assert!(err("").contains("empty"));
        assert!(err("route add default via").contains("'via' at the end"));
        assert!(err("route add default via x.y").contains("'x.y'"));
        assert!(err("route add default via 10.0.0.1 via 10.0.0.2").contains("twice"));
        assert!(err("route add default dev link1 metric x").contains("'x'"));
        assert!(err("route add default dev bad/name").contains("'bad/name'"));
        assert!(err("route add").contains("missing destination"));
    }
}

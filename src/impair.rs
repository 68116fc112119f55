//! Degraded links: delay, jitter, loss, rate, duplication, corruption and
//! reordering; blackholes; pulled cables. The operations scripts and the
//! command line share, each journaled so a run's undo puts the link back.
//!
//! A link here is one end of a veth pair and, where it is known, its peer.
//! Impairing "egress" of a link means what it sends; "ingress" what it
//! receives — which, on a veth, is what its peer sends. Each effect is put
//! where it belongs:
//!
//! * queueing effects (delay, jitter, rate, duplication, corruption,
//!   reordering, and on the netem backend loss too) on the **sender**: a
//!   root qdisc of the sending end;
//! * random loss on the tc-bpf backend, and blackholes, on the
//!   **receiver**: a drop filter on the receiving end's ingress. A packet
//!   dropped on the sender's own egress would come back to the sending
//!   socket as ENOBUFS and simply be sent again, which is not loss.
//!
//! So an ingress impairment is queued on the peer (the sender), and tc-bpf
//! egress loss is dropped there too (the receiver). A link without a known
//! peer (vxlan, macvlan) has what it receives redirected to an ifb device
//! koko makes for it, and queued on that ifb's root; its egress loss on
//! tc-bpf has no receiver koko can reach, and koko says so instead of
//! doing something else.
//!
//! [`impair`] sets the *whole* impairment of the directions it names:
//! what a call leaves out is not impaired afterwards. Called again on the
//! same link it changes the kernel's qdisc and filters in place (queued
//! packets stay queued). Every check that can fail runs before anything
//! changes.

use std::fmt;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::journal::{Journal, Undo};
use crate::net::impair::{self as kernel, Drop, RootQdisc};
use crate::net::tc::{Hook, MirrorDir as Direction};
use crate::net::{link, route, Session, Target};
use crate::ns::Namespace;

/// How koko impairs links on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The netem qdisc (stock distribution kernels).
    Netem,
    /// tbf for rates and in-kernel BPF drop filters (kernels without netem).
    TcBpf,
}

impl Backend {
    /// The backend this kernel allows (probed once per process).
    pub fn detect() -> Backend {
        if kernel::netem_available() {
            Backend::Netem
        } else {
            Backend::TcBpf
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Netem => "netem",
            Backend::TcBpf => "tc-bpf",
        }
    }
}

/// A rate in bits per second, written the way tc writes them: `10mbit`,
/// `512kbit`, `1gbit`, `100bit`; `mbps` and friends are bytes per second
/// (`1mbps` = 8 Mbit/s). A bare number is bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(pub u64);

impl std::str::FromStr for Rate {
    type Err = Error;

    fn from_str(text: &str) -> Result<Rate> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "rate '{text}': {why} (e.g. 10mbit, 512kbit, 1gbit, 2mbps)"
            ))
        };
        let t = text.trim().to_ascii_lowercase();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let value: f64 = number.parse().map_err(|_| bad("not a number"))?;
        let scale = match unit {
            "" | "bit" => 1.0,
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            "tbit" => 1e12,
            "bps" => 8.0,
            "kbps" => 8e3,
            "mbps" => 8e6,
            "gbps" => 8e9,
            "tbps" => 8e12,
            _ => return Err(bad(&format!("unknown unit '{unit}'"))),
        };
        let bits = value * scale;
        if !bits.is_finite() || bits < 8.0 {
            return Err(bad("must be at least 8bit (one byte per second)"));
        }
        if bits > 1e13 {
            return Err(bad("more than 10 Tbit/s"));
        }
        Ok(Rate(bits.round() as u64))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, size) in [
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if b >= size && b % size == 0 {
                return write!(f, "{}{unit}", b / size);
            }
        }
        if b >= 1_000_000 {
            write!(f, "{:.3}mbit", b as f64 / 1e6)
        } else {
            write!(f, "{b}bit")
        }
    }
}

impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// What to do to the traffic of one direction. Zero means "none".
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Impairment {
    pub delay_ms: f64,
    pub jitter_ms: f64,
    pub loss_pct: f64,
    pub rate: Option<Rate>,
    pub duplicate_pct: f64,
    pub corrupt_pct: f64,
    pub reorder_pct: f64,
    /// Queue length in packets (0: the backend's default).
    pub limit: u32,
}

impl Impairment {
    /// Nothing at all.
    pub fn is_none(&self) -> bool {
        *self == Impairment::default()
    }

    /// Check every value; the error names the value and the link.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |msg: String| Error::Invalid(format!("{what}: {msg}"));
        for (key, v) in [
            ("loss_pct", self.loss_pct),
            ("duplicate_pct", self.duplicate_pct),
            ("corrupt_pct", self.corrupt_pct),
            ("reorder_pct", self.reorder_pct),
        ] {
            if !(0.0..=100.0).contains(&v) || v.is_nan() {
                return Err(bad(format!("{key} {v} is not a percentage (0 to 100)")));
            }
        }
        for (key, v) in [("delay_ms", self.delay_ms), ("jitter_ms", self.jitter_ms)] {
            if !(0.0..=3_600_000.0).contains(&v) || v.is_nan() {
                return Err(bad(format!("{key} {v} is not a delay (0 to 3600000 ms)")));
            }
        }
        if self.jitter_ms > 0.0 && self.delay_ms == 0.0 {
            return Err(bad("jitter_ms needs a delay_ms to vary around".into()));
        }
        if self.jitter_ms > self.delay_ms {
            return Err(bad(format!(
                "jitter_ms {} is larger than delay_ms {}: packets cannot leave before they were sent",
                self.jitter_ms, self.delay_ms
            )));
        }
        if self.reorder_pct > 0.0 && self.delay_ms == 0.0 {
            return Err(bad(
                "reorder_pct needs a delay_ms (packets are reordered by letting some skip the delay)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// What of this the tc-bpf backend cannot do, by option name.
    fn needs_netem(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (key, v) in [
            ("delay_ms", self.delay_ms),
            ("jitter_ms", self.jitter_ms),
            ("duplicate_pct", self.duplicate_pct),
            ("corrupt_pct", self.corrupt_pct),
            ("reorder_pct", self.reorder_pct),
        ] {
            if v != 0.0 {
                out.push(key);
            }
        }
        out
    }

    /// The netem qdisc for this impairment.
    fn netem(&self) -> kernel::Netem {
        let ns = |ms: f64| (ms * 1e6).round() as u64;
        kernel::Netem {
            latency_ns: ns(self.delay_ms),
            jitter_ns: ns(self.jitter_ms),
            loss: kernel::probability(self.loss_pct),
            duplicate: kernel::probability(self.duplicate_pct),
            corrupt: kernel::probability(self.corrupt_pct),
            reorder: kernel::probability(self.reorder_pct),
            rate_bytes: self.rate.map(|r| r.0 / 8).unwrap_or(0),
            limit: self.limit,
        }
    }

    /// The tbf qdisc for this impairment's rate: a burst of 10 ms of
    /// traffic (at least two full-size frames), a queue of `limit` packets
    /// or else 200 ms of traffic (room for TCP's window to overshoot
    /// without losses that would stall it below the rate).
    fn tbf(&self, rate: Rate) -> kernel::Tbf {
        let bytes = (rate.0 / 8).max(1);
        let burst = (bytes / 100).max(2 * 1514);
        let limit = if self.limit > 0 {
            self.limit as u64 * 1514
        } else {
            (bytes / 5).max(burst * 2)
        };
        kernel::Tbf {
            rate_bytes: bytes,
            burst: u32::try_from(burst).unwrap_or(u32::MAX),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        }
    }

    /// Read back from a root qdisc of koko's and a drop filter.
    pub fn read(root: Option<&RootQdisc>, drops: &[Drop]) -> Impairment {
        let mut i = Impairment::default();
        match root {
            Some(RootQdisc::Netem(n)) => {
                i.delay_ms = n.latency_ns as f64 / 1e6;
                i.jitter_ms = n.jitter_ns as f64 / 1e6;
                i.loss_pct = kernel::percent(n.loss);
                i.duplicate_pct = kernel::percent(n.duplicate);
                i.corrupt_pct = kernel::percent(n.corrupt);
                i.reorder_pct = kernel::percent(n.reorder);
                i.rate = (n.rate_bytes > 0).then_some(Rate(n.rate_bytes * 8));
                i.limit = n.limit;
            }
            Some(RootQdisc::Tbf(t)) => i.rate = Some(Rate(t.rate_bytes * 8)),
            None => {}
        }
        for d in drops {
            if let Drop::Random(p) = d {
                i.loss_pct = kernel::percent(*p);
            }
        }
        i
    }
}

impl fmt::Display for Impairment {
    /// In the words of `koko ip ... link impair` (parses back to itself);
    /// "none" for no impairment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        let num = |v: f64| {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        };
        if self.delay_ms > 0.0 {
            words.push(format!("delay {}ms", num(self.delay_ms)));
        }
        if self.jitter_ms > 0.0 {
            words.push(format!("jitter {}ms", num(self.jitter_ms)));
        }
        for (key, v) in [
            ("loss", self.loss_pct),
            ("duplicate", self.duplicate_pct),
            ("corrupt", self.corrupt_pct),
            ("reorder", self.reorder_pct),
        ] {
            if v > 0.0 {
                words.push(format!("{key} {}%", num(v)));
            }
        }
        if let Some(r) = self.rate {
            words.push(format!("rate {r}"));
        }
        if self.limit > 0 {
            words.push(format!("limit {}", self.limit));
        }
        if words.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&words.join(" "))
        }
    }
}

/// One end of a link: a name in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub ns: Namespace,
    pub link: String,
}

impl End {
    pub fn new(ns: &Namespace, link: &str) -> End {
        End {
            ns: ns.clone(),
            link: link.to_string(),
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' in {}", self.link, self.ns)
    }
}

/// A link and (if known) its veth peer.
#[derive(Debug, Clone)]
pub struct LinkPair {
    pub end: End,
    pub peer: Option<End>,
}

impl LinkPair {
    /// `end` and its veth peer: `known` if the caller knows it (koko made
    /// the pair), else asked of the kernel (the peer's ifindex and the
    /// nsid of its namespace, named among the namespaces koko can see).
    /// A link that is not a veth, or whose peer's namespace cannot be
    /// named, has no peer here.
    pub fn resolve(session: &Session, end: End, known: Option<End>) -> Result<LinkPair> {
        if known.is_some() {
            return Ok(LinkPair { end, peer: known });
        }
        let t = session.target(&end.ns)?;
        let state = session.block_on(link::require(&t, &end.link))?;
        let peer = match (state.kind.as_deref(), state.link_index) {
            (Some("veth"), Some(peer_index)) => {
                let peer_ns = match state.link_netnsid {
                    None => Some(end.ns.clone()),
                    Some(id) => {
                        crate::net::nsid::find(session, &t, crate::net::nsid::candidates(), id)
                    }
                };
                match peer_ns {
                    Some(ns) => {
                        let pt = session.target(&ns)?;
                        session
                            .block_on(link::get_by_index(&pt, peer_index))?
                            .map(|l| End { ns, link: l.name })
                    }
                    None => None,
                }
            }
            _ => None,
        };
        Ok(LinkPair { end, peer })
    }
}

/// A side resolved against the kernel: its socket and ifindex.
struct Side {
    end: End,
    t: Target,
    index: u32,
}

fn side(session: &Session, end: &End) -> Result<Side> {
    let t = session.target(&end.ns)?;
    let state = session.block_on(link::require(&t, &end.link))?;
    Ok(Side {
        end: end.clone(),
        t,
        index: state.index,
    })
}

/// Record the tc state of `s` in the journal before changing it.
fn save(session: &Session, journal: &mut Journal, s: &Side, why: &str) -> Result<()> {
    let snapshot = session.block_on(kernel::snapshot(&s.t, &s.end.link, s.index))?;
    journal.record(
        format!("{why} {}", s.end),
        Undo::RestoreTc {
            ns: s.end.ns.clone(),
            snapshot,
        },
    );
    Ok(())
}

/// The sender and the receiver of one direction of `pair`.
fn roles(pair: &LinkPair, dir: Hook) -> (Option<&End>, Option<&End>) {
    match dir {
        Hook::Egress => (Some(&pair.end), pair.peer.as_ref()),
        Hook::Ingress => (pair.peer.as_ref(), Some(&pair.end)),
    }
}

fn hooks(dir: Direction) -> Vec<Hook> {
    match dir {
        Direction::Egress => vec![Hook::Egress],
        Direction::Ingress => vec![Hook::Ingress],
        Direction::Both => vec![Hook::Egress, Hook::Ingress],
    }
}

/// Set the impairment of `dir` on `pair` (see the module doc).
pub fn impair(
    session: &Session,
    journal: &mut Journal,
    pair: &LinkPair,
    dir: Direction,
    what: &Impairment,
) -> Result<Impairments> {
    let describe = format!("impairing {}", pair.end);
    what.validate(&describe)?;
    let backend = Backend::detect();
    if backend == Backend::TcBpf {
        let missing = what.needs_netem();
        if !missing.is_empty() {
            return Err(Error::KernelFeature {
                what: format!("{describe} with {}", missing.join(", ")),
                feature: "netem qdisc (CONFIG_NET_SCH_NETEM); without it koko can only do loss_pct and rate"
                    .into(),
            });
        }
    }
    // Resolve every side first: nothing changes unless all of it can.
    let mut plan = Vec::new();
    for hook in hooks(dir) {
        let (sender, receiver) = roles(pair, hook);
        let queueing = match backend {
            Backend::Netem => !what.is_none(),
            Backend::TcBpf => what.rate.is_some(),
        };
        let dropping = backend == Backend::TcBpf && what.loss_pct > 0.0;
        let need = |end: Option<&End>, role: &str| -> Result<Option<Side>> {
            match end {
                Some(e) => side(session, e).map(Some),
                None => Err(Error::NotSupported(format!(
                    "{describe}: the {} direction is shaped on the link's {role}, and koko does not \
                     know the peer of {} (only veth pairs have one)",
                    hook.as_str(),
                    pair.end
                ))),
            }
        };
        // The sender's root qdisc is set (or cleared) either way; the
        // receiver's drop filter only where the backend drops there. What a
        // link without a known peer receives is shaped on its ifb (`true`:
        // made on demand, see net::impair), which is kept while it exists.
        let sender = match (hook, sender) {
            (Hook::Ingress, None) => {
                let s = side(session, &pair.end)?;
                let has_ifb = session
                    .block_on(link::get(&s.t, &kernel::ifb_name(s.index)))?
                    .is_some();
                (queueing || has_ifb).then_some((s, true))
            }
            (_, sender) if queueing || sender.is_some() => {
                need(sender, "sender")?.map(|s| (s, false))
            }
            _ => None,
        };
        let receiver = if dropping || (backend == Backend::TcBpf && receiver.is_some()) {
            need(receiver, "receiver")?
        } else {
            None
        };
        plan.push((hook, sender, receiver));
    }
    for (_, sender, receiver) in plan {
        if let Some((s, via_ifb)) = sender {
            let s = if via_ifb {
                ifb_side(session, journal, s)?
            } else {
                s
            };
            let s = &s;
            save(session, journal, s, "impairment of")?;
            let root = match backend {
                Backend::Netem if !what.is_none() => Some(RootQdisc::Netem(what.netem())),
                Backend::TcBpf => what.rate.map(|r| RootQdisc::Tbf(what.tbf(r))),
                _ => None,
            };
            match root {
                Some(q) => session.block_on(kernel::set_root(&s.t, &s.end.link, s.index, &q))?,
                None => clear_root(session, s)?,
            }
        }
        if let Some(r) = &receiver {
            save(session, journal, r, "loss on")?;
            if what.loss_pct > 0.0 {
                session.block_on(kernel::add_marked_clsact(&r.t, &r.end.link, r.index))?;
                session.block_on(kernel::set_drop_filter(
                    &r.t,
                    &r.end.link,
                    r.index,
                    Hook::Ingress,
                    Drop::Random(kernel::probability(what.loss_pct)),
                ))?;
            } else {
                session.block_on(kernel::remove_drop_filter(
                    &r.t,
                    r.index,
                    Hook::Ingress,
                    kernel::LOSS_PRIORITY,
                ))?;
            }
        }
    }
    impairments(session, pair)
}

/// The ifb that shapes what `s` receives, made (and its making journaled)
/// if it is not there yet.
fn ifb_side(session: &Session, journal: &mut Journal, s: Side) -> Result<Side> {
    let (index, created) = session.block_on(kernel::ensure_ifb(&s.t, &s.end.link, s.index))?;
    if created {
        journal.record(
            format!("ifb for what {} receives", s.end),
            Undo::RemoveIfb {
                ns: s.end.ns.clone(),
                link: s.end.link.clone(),
                ifindex: s.index,
            },
        );
    }
    Ok(Side {
        end: End {
            ns: s.end.ns.clone(),
            link: kernel::ifb_name(s.index),
        },
        t: s.t,
        index,
    })
}

/// Remove koko's root qdisc from a side (a user's own stays).
fn clear_root(session: &Session, s: &Side) -> Result<()> {
    match session.block_on(kernel::root(&s.t, s.index))? {
        Some(r) if r.is_kokos() => session.block_on(kernel::delete_root(&s.t, s.index)),
        _ => Ok(()),
    }
}

/// Remove every impairment koko set on `pair` (both directions,
/// blackholes too), recorded so undo puts them back.
pub fn clear(session: &Session, journal: &mut Journal, pair: &LinkPair) -> Result<Impairments> {
    let mut sides = vec![side(session, &pair.end)?];
    if let Some(p) = &pair.peer {
        sides.push(side(session, p)?);
    }
    for s in &sides {
        save(session, journal, s, "impairments of")?;
        clear_root(session, s)?;
        for hook in Hook::ALL {
            for priority in [kernel::BLACKHOLE_PRIORITY, kernel::LOSS_PRIORITY] {
                session.block_on(kernel::remove_drop_filter(&s.t, s.index, hook, priority))?;
            }
        }
        session.block_on(kernel::remove_ifb(&s.t, s.index))?;
        session.block_on(kernel::remove_clsact_if_kokos(&s.t, s.index))?;
    }
    impairments(session, pair)
}

/// Drop every packet in both directions while both ends stay up: a drop
/// filter on each end's ingress (on the link's egress too when the peer is
/// unknown). [`restore`] (or undo) takes it away; loss set by [`impair`]
/// stays as it was.
pub fn blackhole(session: &Session, journal: &mut Journal, pair: &LinkPair) -> Result<()> {
    let mut targets = vec![(side(session, &pair.end)?, Hook::Ingress)];
    match &pair.peer {
        Some(p) => targets.push((side(session, p)?, Hook::Ingress)),
        None => targets.push((side(session, &pair.end)?, Hook::Egress)),
    }
    for (s, hook) in &targets {
        let snapshot = session.block_on(kernel::snapshot(&s.t, &s.end.link, s.index))?;
        journal.record(
            format!("blackhole on {} of {}", hook.as_str(), s.end),
            Undo::Unblackhole {
                ns: s.end.ns.clone(),
                snapshot,
                hook: *hook,
            },
        );
        session.block_on(kernel::add_marked_clsact(&s.t, &s.end.link, s.index))?;
        session.block_on(kernel::set_drop_filter(
            &s.t,
            &s.end.link,
            s.index,
            *hook,
            Drop::All,
        ))?;
    }
    Ok(())
}

/// End the blackholes on `pair` that this run made (newest first).
/// Returns how many were lifted.
pub fn restore(session: &Session, journal: &mut Journal, pair: &LinkPair) -> Result<usize> {
    let mut lifted = 0;
    let ends: Vec<&End> = std::iter::once(&pair.end)
        .chain(pair.peer.as_ref())
        .collect();
    while let Some(entry) = journal.take_last(|u| match u {
        Undo::Unblackhole { ns, snapshot, .. } => {
            ends.iter().any(|e| e.ns == *ns && e.link == snapshot.link)
        }
        _ => false,
    }) {
        crate::journal::undo_one(session, &entry.undo)?;
        lifted += 1;
    }
    if lifted > 0 {
        return Ok(lifted);
    }
    // A blackhole of an earlier koko command: koko's marks tell its
    // filters (and a clsact qdisc it added) from anyone else's.
    for end in ends {
        let s = side(session, end)?;
        for hook in Hook::ALL {
            let drops = session.block_on(kernel::drop_filters(&s.t, s.index, hook))?;
            if drops.contains(&Drop::All) {
                session.block_on(kernel::remove_drop_filter(
                    &s.t,
                    s.index,
                    hook,
                    kernel::BLACKHOLE_PRIORITY,
                ))?;
                lifted += 1;
            }
        }
        session.block_on(kernel::remove_clsact_if_kokos(&s.t, s.index))?;
    }
    Ok(lifted)
}

/// What the kernel flushes when a link goes down and does not bring back
/// by itself: the routes through it (except those made for its addresses)
/// and its IPv6 addresses (see `route::flushed_by_down`,
/// `addr::flushed_by_down`).
fn flushed_by_down(session: &Session, s: &Side) -> Result<(Vec<route::RouteRequest>, Vec<IpNet>)> {
    Ok((
        session.block_on(route::flushed_by_down(&s.t, s.index))?,
        session.block_on(crate::net::addr::flushed_by_down(&s.t, s.index))?,
    ))
}

/// Pull the cable: set the link down, so its peer loses carrier
/// (NO-CARRIER) as with a real unplugged cable. The kernel drops the
/// link's routes when it goes down; they are saved and come back with
/// [`plug`] (or undo).
pub fn unplug(session: &Session, journal: &mut Journal, end: &End) -> Result<()> {
    let s = side(session, end)?;
    let (routes, addrs) = flushed_by_down(session, &s)?;
    journal.record(
        format!("unplugged {end}"),
        Undo::Plug {
            ns: end.ns.clone(),
            link: end.link.clone(),
            routes,
            addrs,
        },
    );
    session.block_on(link::set(
        &s.t,
        &end.link,
        link::LinkChange {
            up: Some(false),
            mtu: None,
        },
    ))
}

/// Put the cable back: undo this run's newest [`unplug`] of `end` (the link
/// up, its routes back). False if this run had not unplugged it.
pub fn plug(session: &Session, journal: &mut Journal, end: &End) -> Result<bool> {
    match journal.take_last(
        |u| matches!(u, Undo::Plug { ns, link, .. } if *ns == end.ns && *link == end.link),
    ) {
        Some(entry) => crate::journal::undo_one(session, &entry.undo).map(|()| true),
        None => Ok(false),
    }
}

/// A link flapping on its own thread: down for `down`, up for `up`,
/// `count` times, while the script goes on. Each down is a real carrier
/// loss the peer sees (see [`unplug`]), so link hooks fire on every one;
/// the routes the kernel drops with each down are put back with each up,
/// and the link ends up as it started.
pub struct Flap {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    downs: std::sync::Arc<std::sync::atomic::AtomicU32>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    pub end: End,
    pub count: u32,
}

impl Flap {
    /// How many times the link has gone down so far.
    pub fn downs(&self) -> u32 {
        self.downs.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Has it finished (or stopped)?
    pub fn done(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stop early (the link is left up) and wait for the thread; returns
    /// what the thread met, if anything went wrong.
    pub fn stop(&mut self) -> Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.join()
    }

    /// Wait until every flap is done.
    pub fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(Error::Internal(format!(
                    "the flap thread of {} panicked",
                    self.end
                )))
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Flap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Flap({}, {}/{} downs)",
            self.end,
            self.downs(),
            self.count
        )
    }
}

impl std::ops::Drop for Flap {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Start flapping `end` (see [`Flap`]). Checks the link exists first.
pub fn flap(
    session: &Session,
    end: &End,
    down: std::time::Duration,
    up: std::time::Duration,
    count: u32,
) -> Result<Flap> {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    if count == 0 {
        return Err(Error::Invalid(format!(
            "flapping {end}: count must be at least 1"
        )));
    }
    if down.is_zero() || up.is_zero() {
        return Err(Error::Invalid(format!(
            "flapping {end}: down_ms and up_ms must be at least 1"
        )));
    }
    let s = side(session, end)?;
    let (routes, addrs) = flushed_by_down(session, &s)?;
    let stop = Arc::new(AtomicBool::new(false));
    let downs = Arc::new(AtomicU32::new(0));
    let (flag, counter, target) = (stop.clone(), downs.clone(), end.clone());
    let thread = std::thread::spawn(move || -> Result<()> {
        // The thread's own session: its own runtime and socket.
        let session = Session::new()?;
        let t = session.target(&target.ns)?;
        let set = |up: bool| {
            session.block_on(link::set(
                &t,
                &target.link,
                link::LinkChange {
                    up: Some(up),
                    mtu: None,
                },
            ))
        };
        let pause = |d: std::time::Duration| {
            let until = std::time::Instant::now() + d;
            while !flag.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                std::thread::sleep(
                    (until - std::time::Instant::now()).min(std::time::Duration::from_millis(5)),
                );
            }
        };
        let mut result = Ok(());
        for i in 0..count {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            if let Err(e) = set(false) {
                result = Err(e);
                break;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            pause(down);
            // Up again (also when stopped early): the link ends as it began.
            if let Err(e) = set(true) {
                result = Err(e);
                break;
            }
            if let Err(e) =
                crate::journal::restore_flushed(&session, &t, &target.link, &addrs, &routes)
            {
                result = Err(e);
            }
            if i + 1 < count {
                pause(up);
            }
        }
        session.forget_all();
        result
    });
    Ok(Flap {
        stop,
        downs,
        thread: Some(thread),
        end: end.clone(),
        count,
    })
}

/// What the kernel has on a link, as koko reads it back.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Impairments {
    pub backend: Backend,
    /// What the link sends.
    pub egress: Impairment,
    /// What the link receives (known only with its peer).
    pub ingress: Option<Impairment>,
    pub blackhole: bool,
}

impl Impairments {
    /// One line: "egress delay 20ms loss 1%; ingress none; blackhole (netem)".
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("egress {}", self.egress)];
        if let Some(i) = &self.ingress {
            parts.push(format!("ingress {i}"));
        }
        if self.blackhole {
            parts.push("blackhole".into());
        }
        format!("{} ({})", parts.join("; "), self.backend.as_str())
    }
}

/// Read `pair`'s impairments back from the kernel.
pub fn impairments(session: &Session, pair: &LinkPair) -> Result<Impairments> {
    let read_side = |end: &End| -> Result<(Option<RootQdisc>, Vec<Drop>, Vec<Drop>)> {
        let s = side(session, end)?;
        let root = session
            .block_on(kernel::root(&s.t, s.index))?
            .and_then(|r| r.koko);
        let ingress = session.block_on(kernel::drop_filters(&s.t, s.index, Hook::Ingress))?;
        let egress = session.block_on(kernel::drop_filters(&s.t, s.index, Hook::Egress))?;
        Ok((root, ingress, egress))
    };
    let (root, in_drops, out_drops) = read_side(&pair.end)?;
    let peer = match &pair.peer {
        Some(p) => Some(read_side(p)?),
        None => None,
    };
    let egress_loss: &[Drop] = match &peer {
        Some((_, peer_in, _)) => peer_in,
        None => &[],
    };
    let egress = Impairment::read(root.as_ref(), egress_loss);
    // What the link receives: shaped on its peer, or else on its ifb.
    let ingress_root = match &peer {
        Some((peer_root, _, _)) => peer_root.clone(),
        None => {
            let s = side(session, &pair.end)?;
            session.block_on(kernel::ifb_root(&s.t, s.index))?
        }
    };
    let ingress = Some(Impairment::read(ingress_root.as_ref(), &in_drops));
    let blackhole = in_drops.contains(&Drop::All)
        || out_drops.contains(&Drop::All)
        || peer
            .as_ref()
            .is_some_and(|(_, peer_in, _)| peer_in.contains(&Drop::All));
    Ok(Impairments {
        backend: Backend::detect(),
        egress,
        ingress,
        blackhole,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_like_tc() {
        assert_eq!("10mbit".parse::<Rate>().unwrap(), Rate(10_000_000));
        assert_eq!("512kbit".parse::<Rate>().unwrap(), Rate(512_000));
        assert_eq!("1Gbit".parse::<Rate>().unwrap(), Rate(1_000_000_000));
        assert_eq!("2mbps".parse::<Rate>().unwrap(), Rate(16_000_000));
        assert_eq!("1.5mbit".parse::<Rate>().unwrap(), Rate(1_500_000));
        assert_eq!("800".parse::<Rate>().unwrap(), Rate(800));
        for bad in ["10 bananas", "", "mbit", "-1mbit", "0", "4bit", "1e20"] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
            assert!(e.to_string().contains("rate"), "{bad}: {e}");
        }
        assert_eq!(Rate(10_000_000).to_string(), "10mbit");
        assert_eq!(Rate(1_500_000).to_string(), "1500kbit");
    }

    #[test]
    fn absurd_values_are_refused_by_name() {
        let check = |i: Impairment, key: &str| {
            let e = i.validate("impairing 'l' in netns 'a'").unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(key), "{key}: {e}");
            assert!(e.to_string().contains("'l' in netns 'a'"), "{e}");
        };
        check(
            Impairment {
                loss_pct: 150.0,
                ..Default::default()
            },
            "loss_pct",
        );
        check(
            Impairment {
                delay_ms: -1.0,
                ..Default::default()
            },
            "delay_ms",
        );
        check(
            Impairment {
                jitter_ms: 5.0,
                ..Default::default()
            },
            "jitter_ms",
        );
        check(
            Impairment {
                reorder_pct: 5.0,
                ..Default::default()
            },
            "reorder_pct",
        );
        check(
            Impairment {
                corrupt_pct: f64::NAN,
                ..Default::default()
            },
            "corrupt_pct",
        );
        assert!(Impairment {
            delay_ms: 20.0,
            jitter_ms: 5.0,
            loss_pct: 1.0,
            ..Default::default()
        }
        .validate("x")
        .is_ok());
    }

    #[test]
    fn tbf_gets_a_burst_of_at_least_two_frames_and_a_queue() {
        let i = Impairment::default();
        let slow = i.tbf(Rate(1_000_000));
        assert_eq!(slow.rate_bytes, 125_000);
        assert_eq!(slow.burst, 3028);
        assert!(slow.limit >= 2 * slow.burst);
        let fast = i.tbf(Rate(1_000_000_000));
        assert_eq!(fast.burst, 1_250_000);
        let limited = Impairment {
            limit: 10,
            ..Default::default()
        }
        .tbf(Rate(1_000_000));
        assert_eq!(limited.limit, 15_140);
    }

    #[test]
    fn the_bpf_backend_knows_what_it_cannot_do() {
        let i = Impairment {
            delay_ms: 10.0,
            loss_pct: 5.0,
            rate: Some(Rate(1_000_000)),
            ..Default::default()
        };
        assert_eq!(i.needs_netem(), vec!["delay_ms"]);
        let n = i.netem();
        assert_eq!(n.latency_ns, 10_000_000);
        assert_eq!(n.rate_bytes, 125_000);
        assert_eq!(
            Impairment::read(Some(&RootQdisc::Netem(n)), &[]).delay_ms,
            10.0
        );
    }
}

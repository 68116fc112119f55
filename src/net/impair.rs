//! Link impairments as the kernel sees them: a root qdisc that delays,
//! drops, duplicates, corrupts, reorders or rate-limits what a link sends,
//! and tc filters that drop at random (or everything) where a link
//! receives.
//!
//! Two backends, chosen by what the kernel has ([`netem_available`]):
//!
//! * **netem** (every stock distribution kernel): one root `netem` qdisc
//!   carries delay, jitter, loss, duplication, corruption, reordering, its
//!   own rate limit and queue limit. `RTM_NEWQDISC` with `NLM_F_REPLACE` on
//!   a qdisc of the same kind and handle is a `tc qdisc change`: the
//!   parameters change in place and queued packets stay queued.
//! * **tc-bpf** (kernels without netem, like this project's machines): a
//!   root `tbf` for the rate (it too changes in place), and a direct-action
//!   `bpf` classifier on the receiving side's clsact ingress for random
//!   loss and blackholes (see [`super::bpf`]). Delay, jitter, duplication,
//!   corruption and reordering have no equivalent there; the caller refuses
//!   them before changing anything.
//!
//! Everything koko installs is marked so it can be told from a user's own:
//! root qdiscs get the handle `6b6f:` ("ko"), drop filters a `bpf` name
//! starting with `koko-`. Options of `tbf` and `netem` are not decoded by
//! netlink-packet-route, so this module writes and reads their TCA_OPTIONS
//! bytes itself (the layouts of include/uapi/linux/pkt_sched.h).

use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use netlink_packet_core::{DefaultNla, Emitable, Nla, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpf, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::bpf;
use super::tc::{self, Hook, PROTOCOL_ALL};
use super::Target;
use crate::error::{Error, Result};

/// The handle major of every root qdisc koko adds: 0x6b6f, "ko".
pub const KOKO_QDISC_MAJOR: u16 = 0x6b6f;

/// The filter priorities of koko's drop filters: first, so a dropped
/// packet is dropped before a mirror (or the user's filters) sees it, as on
/// a real wire. A blackhole and random loss have a priority each, so a
/// blackhole can come and go while the loss stays.
pub const BLACKHOLE_PRIORITY: u16 = 1;
pub const LOSS_PRIORITY: u16 = 2;

/// The bpf filter names koko uses (prefix `koko-`).
const LOSS_NAME: &str = "koko-loss";
const BLACKHOLE_NAME: &str = "koko-blackhole";
const CLSACT_MARK_NAME: &str = "koko-clsact";

/// The kernel feature koko's drop filters and clsact mark need.
const BPF_CLASSIFIER: &str = "the bpf classifier (CONFIG_NET_CLS_BPF)";

/// The priority of the filter that marks a clsact qdisc as koko's: last,
/// after everything (it only passes packets on).
const CLSACT_MARK_PRIORITY: u16 = 0xfffe;

const TCA_OPTIONS: u16 = 2;
const TC_H_ROOT: u32 = 0xffff_ffff;
/// Ethernet link layer: the kernel computes transmission times itself and
/// needs no rate table.
const TC_LINKLAYER_ETHERNET: u8 = 1;

/// A probability (0 to 100 %) as the kernel's u32 fraction of 2^32.
pub fn probability(pct: f64) -> u32 {
    bpf::loss_threshold(pct)
}

/// The inverse of [`probability`], rounded to 0.01 %.
pub fn percent(p: u32) -> f64 {
    (p as f64 / 4_294_967_296.0 * 10_000.0).round() / 100.0
}

/// netem's parameters (times in nanoseconds, rates in bytes per second,
/// probabilities as fractions of 2^32, the queue limit in packets).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Netem {
    pub latency_ns: u64,
    pub jitter_ns: u64,
    pub loss: u32,
    pub duplicate: u32,
    pub corrupt: u32,
    pub reorder: u32,
    pub rate_bytes: u64,
    pub limit: u32,
}

/// tbf's parameters (rate in bytes per second; burst and limit in bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tbf {
    pub rate_bytes: u64,
    pub burst: u32,
    pub limit: u32,
}

/// A root qdisc koko manages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RootQdisc {
    Netem(Netem),
    Tbf(Tbf),
}

impl RootQdisc {
    pub fn kind(&self) -> &'static str {
        match self {
            RootQdisc::Netem(_) => "netem",
            RootQdisc::Tbf(_) => "tbf",
        }
    }

    fn options(&self) -> Vec<u8> {
        match self {
            RootQdisc::Netem(n) => netem_options(n),
            RootQdisc::Tbf(t) => tbf_options(t),
        }
    }
}

/// Append one netlink attribute (header, value, padding to 4 bytes).
fn put_nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// Iterate the attributes of `data`: (kind, value).
fn nlas(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, &data[4..len]));
        let step = (len + 3) & !3;
        data = &data[step.min(data.len())..];
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|s| u32::from_ne_bytes(s.try_into().expect("4 bytes")))
        .unwrap_or(0)
}

fn u64_of(b: &[u8]) -> u64 {
    b.get(..8)
        .map(|s| u64::from_ne_bytes(s.try_into().expect("8 bytes")))
        .unwrap_or(0)
}

// netem attribute numbers (enum TCA_NETEM_*).
const TCA_NETEM_REORDER: u16 = 3;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_RATE64: u16 = 8;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;

/// netem's TCA_OPTIONS: `struct tc_netem_qopt` (latency, limit, loss, gap,
/// duplicate, jitter: six u32), then attributes. Latency and jitter also go
/// as 64-bit nanoseconds (the u32 fields are in coarse scheduler ticks and
/// overflow at ~4 s).
pub fn netem_options(n: &Netem) -> Vec<u8> {
    let ticks = |ns: u64| u32::try_from(ns >> 6).unwrap_or(u32::MAX);
    let limit = if n.limit == 0 { 1000 } else { n.limit };
    // Reordering needs a gap (tc sets 1: every other packet may jump the
    // queue, with the given probability).
    let gap = u32::from(n.reorder != 0);
    let mut out = Vec::new();
    for v in [
        ticks(n.latency_ns),
        limit,
        n.loss,
        gap,
        n.duplicate,
        ticks(n.jitter_ns),
    ] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    let pair = |p: u32| [p.to_ne_bytes(), 0u32.to_ne_bytes()].concat();
    if n.reorder != 0 {
        put_nla(&mut out, TCA_NETEM_REORDER, &pair(n.reorder));
    }
    if n.corrupt != 0 {
        put_nla(&mut out, TCA_NETEM_CORRUPT, &pair(n.corrupt));
    }
    if n.rate_bytes != 0 {
        // struct tc_netem_rate: rate (u32), packet_overhead, cell_size,
        // cell_overhead; a rate beyond u32 goes in RATE64.
        let rate32 = u32::try_from(n.rate_bytes).unwrap_or(u32::MAX);
        let mut rate = rate32.to_ne_bytes().to_vec();
        rate.extend_from_slice(&[0u8; 12]);
        put_nla(&mut out, TCA_NETEM_RATE, &rate);
        if n.rate_bytes > u32::MAX as u64 {
            put_nla(&mut out, TCA_NETEM_RATE64, &n.rate_bytes.to_ne_bytes());
        }
    }
    put_nla(
        &mut out,
        TCA_NETEM_LATENCY64,
        &(n.latency_ns as i64).to_ne_bytes(),
    );
    put_nla(
        &mut out,
        TCA_NETEM_JITTER64,
        &(n.jitter_ns as i64).to_ne_bytes(),
    );
    out
}

/// Read netem's TCA_OPTIONS back.
pub fn parse_netem_options(raw: &[u8]) -> Option<Netem> {
    if raw.len() < 24 {
        return None;
    }
    let mut n = Netem {
        latency_ns: (u32_at(raw, 0) as u64) << 6,
        limit: u32_at(raw, 4),
        loss: u32_at(raw, 8),
        duplicate: u32_at(raw, 16),
        jitter_ns: (u32_at(raw, 20) as u64) << 6,
        ..Netem::default()
    };
    for (kind, value) in nlas(&raw[24..]) {
        match kind {
            TCA_NETEM_REORDER => n.reorder = u32_at(value, 0),
            TCA_NETEM_CORRUPT => n.corrupt = u32_at(value, 0),
            TCA_NETEM_RATE => n.rate_bytes = u32_at(value, 0) as u64,
            TCA_NETEM_RATE64 => n.rate_bytes = u64_of(value),
            TCA_NETEM_LATENCY64 => n.latency_ns = u64_of(value),
            TCA_NETEM_JITTER64 => n.jitter_ns = u64_of(value),
            _ => {}
        }
    }
    Some(n)
}

// tbf attribute numbers (enum TCA_TBF_*).
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;

/// A `struct tc_ratespec` for an Ethernet link at `rate` bytes/s.
fn ratespec(rate_bytes: u64) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[1] = TC_LINKLAYER_ETHERNET;
    r[8..12].copy_from_slice(&u32::try_from(rate_bytes).unwrap_or(u32::MAX).to_ne_bytes());
    r
}

/// tbf's TCA_OPTIONS: TCA_TBF_PARMS (`struct tc_tbf_qopt`: rate and
/// peakrate ratespecs, limit, buffer, mtu), TCA_TBF_BURST in bytes (so the
/// kernel converts it to time itself), TCA_TBF_RATE64 beyond 4 GB/s.
pub fn tbf_options(t: &Tbf) -> Vec<u8> {
    let mut parms = Vec::with_capacity(36);
    parms.extend_from_slice(&ratespec(t.rate_bytes));
    parms.extend_from_slice(&[0u8; 12]); // no peak rate
    parms.extend_from_slice(&t.limit.to_ne_bytes());
    // buffer (in ticks) is ignored when TCA_TBF_BURST is given; fill it
    // consistently anyway: burst / rate seconds.
    let buffer_ns = (t.burst as u64).saturating_mul(1_000_000_000) / t.rate_bytes.max(1);
    parms.extend_from_slice(
        &u32::try_from(buffer_ns >> 6)
            .unwrap_or(u32::MAX)
            .to_ne_bytes(),
    );
    parms.extend_from_slice(&0u32.to_ne_bytes()); // mtu: no peak rate
    let mut out = Vec::new();
    put_nla(&mut out, TCA_TBF_PARMS, &parms);
    if t.rate_bytes > u32::MAX as u64 {
        put_nla(&mut out, TCA_TBF_RATE64, &t.rate_bytes.to_ne_bytes());
    }
    put_nla(&mut out, TCA_TBF_BURST, &t.burst.to_ne_bytes());
    out
}

/// Read tbf's TCA_OPTIONS back (the kernel dumps PARMS and RATE64; the
/// burst comes back as a time, converted here to bytes).
pub fn parse_tbf_options(raw: &[u8]) -> Option<Tbf> {
    let mut t = Tbf::default();
    let mut buffer_ticks = 0u64;
    let mut seen = false;
    for (kind, value) in nlas(raw) {
        match kind {
            TCA_TBF_PARMS if value.len() >= 36 => {
                seen = true;
                t.rate_bytes = u32_at(value, 8) as u64;
                t.limit = u32_at(value, 24);
                buffer_ticks = u32_at(value, 28) as u64;
            }
            TCA_TBF_RATE64 => t.rate_bytes = u64_of(value),
            _ => {}
        }
    }
    let buffer_ns = buffer_ticks << 6;
    t.burst =
        u32::try_from(buffer_ns.saturating_mul(t.rate_bytes) / 1_000_000_000).unwrap_or(u32::MAX);
    seen.then_some(t)
}

/// RTM_NEWQDISC: `q` as the root qdisc of `ifindex`, with koko's handle.
pub fn root_qdisc_request(ifindex: u32, q: &RootQdisc) -> TcMessage {
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = TC_H_ROOT.into();
    msg.header.handle = TcHandle {
        major: KOKO_QDISC_MAJOR,
        minor: 0,
    };
    msg.attributes.push(TcAttribute::Kind(q.kind().into()));
    msg.attributes.push(TcAttribute::Other(DefaultNla::new(
        TCA_OPTIONS,
        q.options(),
    )));
    msg
}

/// The root qdisc of a link, as dumped.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RootInfo {
    pub kind: String,
    #[serde(with = "handle_serde")]
    pub handle: TcHandle,
    /// koko's qdisc, decoded (None: someone else's, or not tbf/netem).
    pub koko: Option<RootQdisc>,
    /// The message to re-create it (kind and options only), for putting
    /// a user's own root qdisc back.
    #[serde(with = "message_serde")]
    pub recreate: TcMessage,
}

/// A tc handle on disk (a run's journal): `[major, minor]`.
mod handle_serde {
    use netlink_packet_route::tc::TcHandle;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(h: &TcHandle, s: S) -> Result<S::Ok, S::Error> {
        [h.major, h.minor].serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TcHandle, D::Error> {
        let [major, minor] = <[u16; 2]>::deserialize(d)?;
        Ok(TcHandle { major, minor })
    }
}

/// A tc message on disk (a run's journal): its netlink bytes, so a later
/// process re-creates exactly what was saved.
mod message_serde {
    use netlink_packet_core::{Emitable, Nla, Parseable};
    use netlink_packet_route::tc::TcMessage;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    const TCA_OPTIONS: u16 = 2;

    pub fn serialize<S: Serializer>(m: &TcMessage, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = vec![0u8; m.buffer_len()];
        m.emit(&mut bytes);
        bytes.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TcMessage, D::Error> {
        use netlink_packet_route::tc::{TcAttribute, TcOption};
        let bytes = Vec::<u8>::deserialize(d)?;
        let mut msg = TcMessage::parse(bytes.as_slice())
            .map_err(|e| D::Error::custom(format!("a saved tc message: {e}")))?;
        // The options of a qdisc kind netlink-packet-route does not know
        // (netem) parse as one opaque option that would be emitted inside
        // a second TCA_OPTIONS header: put them back as the raw attribute
        // they were saved from, so the same bytes go to the kernel again.
        for attr in &mut msg.attributes {
            if let TcAttribute::Options(opts) = attr {
                if let [TcOption::Other(raw)] = opts.as_slice() {
                    if raw.kind() == TCA_OPTIONS {
                        *attr = TcAttribute::Other(raw.clone());
                    }
                }
            }
        }
        Ok(msg)
    }
}

impl RootInfo {
    pub fn is_kokos(&self) -> bool {
        self.handle.major == KOKO_QDISC_MAJOR
    }
}

fn raw_options(msg: &TcMessage) -> Option<Vec<u8>> {
    msg.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(opts) => {
            let mut raw = Vec::new();
            for o in opts {
                match o {
                    // Kinds netlink-packet-route does not know come as one
                    // attribute holding TCA_OPTIONS' payload.
                    TcOption::Other(nla) if nla.kind() == TCA_OPTIONS => {
                        let mut buf = vec![0u8; nla.value_len()];
                        nla.emit_value(&mut buf);
                        return Some(buf);
                    }
                    other => {
                        let mut buf = vec![0u8; other.buffer_len()];
                        other.emit(&mut buf);
                        raw.extend(buf);
                    }
                }
            }
            Some(raw)
        }
        _ => None,
    })
}

/// The root qdisc of `ifindex` (None: the device's default, e.g. noqueue).
pub async fn root(t: &Target, ifindex: u32) -> Result<Option<RootInfo>> {
    let qdiscs = tc::qdisc_messages(t).await?;
    let Some(q) = qdiscs
        .iter()
        .find(|q| q.header.index == ifindex as i32 && u32::from(q.header.parent) == TC_H_ROOT)
    else {
        return Ok(None);
    };
    let kind = tc::kind_of(q).unwrap_or_default();
    // The kernel reports a device without a queue as a root "noqueue"
    // with handle 0: that is no qdisc to put back.
    if kind == "noqueue" || u32::from(q.header.handle) == 0 {
        return Ok(None);
    }
    let raw = raw_options(q);
    let koko = match (
        q.header.handle.major == KOKO_QDISC_MAJOR,
        kind.as_str(),
        &raw,
    ) {
        (true, "netem", Some(raw)) => parse_netem_options(raw).map(RootQdisc::Netem),
        (true, "tbf", Some(raw)) => parse_tbf_options(raw).map(RootQdisc::Tbf),
        _ => None,
    };
    let mut recreate = TcMessage::with_index(ifindex as i32);
    recreate.header.parent = TC_H_ROOT.into();
    recreate.header.handle = q.header.handle;
    recreate.attributes.push(TcAttribute::Kind(kind.clone()));
    if let Some(raw) = raw {
        recreate
            .attributes
            .push(TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, raw)));
    }
    Ok(Some(RootInfo {
        kind,
        handle: q.header.handle,
        koko,
        recreate,
    }))
}

/// Put `q` at the root of `ifindex` (replacing what is there; changing it
/// in place when koko's qdisc of the same kind is there already).
pub async fn set_root(t: &Target, link: &str, ifindex: u32, q: &RootQdisc) -> Result<()> {
    t.socket
        .ack(
            RouteNetlinkMessage::NewQueueDiscipline(root_qdisc_request(ifindex, q)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
        .map_err(|errno| {
            tc::refusal(
                format!("setting a {} qdisc on '{link}' in {}", q.kind(), t.ns),
                errno,
                match q {
                    RootQdisc::Netem(_) => "netem qdisc (CONFIG_NET_SCH_NETEM)",
                    RootQdisc::Tbf(_) => "tbf qdisc (CONFIG_NET_SCH_TBF)",
                },
            )
        })
}

/// Remove the root qdisc of `ifindex` (the device goes back to its
/// default). Already gone is fine.
pub async fn delete_root(t: &Target, ifindex: u32) -> Result<()> {
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = TC_H_ROOT.into();
    tc::delete_qdisc(t, msg, "root qdisc").await
}

/// Re-create a root qdisc saved with [`root`] (a user's own, that koko
/// replaced).
pub async fn restore_root(t: &Target, saved: &TcMessage) -> Result<()> {
    t.socket
        .ack(
            RouteNetlinkMessage::NewQueueDiscipline(saved.clone()),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .await
        .map_err(|errno| {
            Error::kernel(
                format!(
                    "putting back the root qdisc of link #{} in {}",
                    saved.header.index, t.ns
                ),
                errno,
            )
        })
}

/// What a drop filter drops.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Drop {
    /// Each packet with this probability (fraction of 2^32).
    Random(u32),
    /// Every packet.
    All,
}

impl Drop {
    /// The filter priority this kind of drop uses.
    pub fn priority(self) -> u16 {
        match self {
            Drop::All => BLACKHOLE_PRIORITY,
            Drop::Random(_) => LOSS_PRIORITY,
        }
    }

    /// The filter's name: koko's mark, and what it does (read back by
    /// [`drop_filters`]).
    fn name(self) -> String {
        match self {
            Drop::Random(p) => format!("{LOSS_NAME}:{p}"),
            Drop::All => BLACKHOLE_NAME.into(),
        }
    }

    fn from_name(name: &str) -> Option<Drop> {
        if name == BLACKHOLE_NAME {
            return Some(Drop::All);
        }
        name.strip_prefix(LOSS_NAME)?
            .strip_prefix(':')?
            .parse()
            .ok()
            .map(Drop::Random)
    }
}

/// RTM_NEWTFILTER: a direct-action bpf filter running `prog_fd` on
/// `ifindex`'s `hook` at `drop`'s priority, named after `drop`.
pub fn drop_filter_request(ifindex: u32, hook: Hook, prog_fd: u32, drop: Drop) -> TcMessage {
    bpf_filter_request(ifindex, hook, drop.priority(), prog_fd, drop.name())
}

/// RTM_NEWTFILTER: a direct-action bpf filter named `name` running
/// `prog_fd` on `ifindex`'s `hook` at priority `prio` (handle 1: koko's
/// filter is alone at its priority).
fn bpf_filter_request(
    ifindex: u32,
    hook: Hook,
    prio: u16,
    prog_fd: u32,
    name: String,
) -> TcMessage {
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = hook.parent();
    msg.header.handle = 1.into();
    msg.header.info = ((prio as u32) << 16) | PROTOCOL_ALL as u32;
    msg.attributes
        .push(TcAttribute::Kind(TcFilterBpf::KIND.into()));
    msg.attributes.push(TcAttribute::Options(vec![
        TcOption::Bpf(TcFilterBpfOption::ProgFd(prog_fd)),
        TcOption::Bpf(TcFilterBpfOption::ProgName(name)),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ]));
    msg
}

/// Install koko's drop filter on `hook` of `ifindex` (clsact must exist),
/// replacing koko's previous one of the same kind there (a loss change
/// swaps the program in one request).
pub async fn set_drop_filter(
    t: &Target,
    link: &str,
    ifindex: u32,
    hook: Hook,
    drop: Drop,
) -> Result<()> {
    let program = match drop {
        Drop::Random(p) => bpf::random_drop_program(p),
        Drop::All => bpf::drop_all_program(),
    };
    let fd = bpf::load_tc_program(
        match drop {
            Drop::Random(_) => "koko_loss",
            Drop::All => "koko_blackhole",
        },
        &program,
    )?;
    let what = || {
        format!(
            "adding a drop filter on {} of '{link}' in {}",
            hook.as_str(),
            t.ns
        )
    };
    let request = drop_filter_request(ifindex, hook, fd.as_raw_fd() as u32, drop);
    let existing = drop_filters(t, ifindex, hook).await?;
    let flags = if !existing.iter().any(|d| d.priority() == drop.priority()) {
        NLM_F_CREATE | NLM_F_EXCL
    } else {
        NLM_F_CREATE | NLM_F_REPLACE
    };
    t.socket
        .ack(RouteNetlinkMessage::NewTrafficFilter(request), flags)
        .await
        .map_err(|errno| match errno {
            Errno::EEXIST => Error::Kernel {
                what: what(),
                cause: format!(
                    "another filter already holds priority {} on that hook",
                    drop.priority()
                ),
                errno: Some(errno),
            },
            _ => tc::refusal(what(), errno, BPF_CLASSIFIER),
        })
}

/// koko's drop filters on `hook` of `ifindex`: what each drops.
pub async fn drop_filters(t: &Target, ifindex: u32, hook: Hook) -> Result<Vec<Drop>> {
    Ok(tc::filter_messages(t, ifindex, hook)
        .await?
        .iter()
        .filter_map(bpf_name)
        .filter_map(|n: String| Drop::from_name(&n))
        .collect())
}

/// The name of a bpf filter (as koko names its own), if it is one.
fn bpf_name(filter: &TcMessage) -> Option<String> {
    filter.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(opts) => opts.iter().find_map(|o| match o {
            TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => Some(n.clone()),
            _ => None,
        }),
        _ => None,
    })
}

/// Remove koko's drop filter at `priority` from `hook` of `ifindex` (none
/// there is fine; a filter there that is not koko's is left alone).
pub async fn remove_drop_filter(t: &Target, ifindex: u32, hook: Hook, priority: u16) -> Result<()> {
    if !drop_filters(t, ifindex, hook)
        .await?
        .iter()
        .any(|d| d.priority() == priority)
    {
        return Ok(());
    }
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = hook.parent();
    msg.header.info = ((priority as u32) << 16) | PROTOCOL_ALL as u32;
    msg.attributes
        .push(TcAttribute::Kind(TcFilterBpf::KIND.into()));
    match t
        .socket
        .ack(RouteNetlinkMessage::DelTrafficFilter(msg), 0)
        .await
    {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(Error::kernel(
            format!(
                "removing koko's drop filter from {} of link #{ifindex} in {}",
                hook.as_str(),
                t.ns
            ),
            errno,
        )),
    }
}

/// What koko may change on one link, saved before it changes it: the root
/// qdisc, koko's drop filter on each clsact hook, and whether a clsact
/// qdisc was there. [`restore`] puts exactly this back.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TcSnapshot {
    pub link: String,
    pub ifindex: u32,
    pub root: Option<RootInfo>,
    pub drops: Vec<(Hook, Vec<Drop>)>,
    pub clsact: bool,
}

/// A snapshot with every field set (a user's root qdisc to re-create
/// included), for tests of what holds one (the journal on disk).
#[cfg(test)]
pub fn sample_snapshot() -> TcSnapshot {
    TcSnapshot {
        link: "l1".into(),
        ifindex: 3,
        root: Some(RootInfo {
            kind: "tbf".into(),
            handle: TcHandle {
                major: 0x8010,
                minor: 0,
            },
            koko: Some(RootQdisc::Tbf(Tbf {
                rate_bytes: 125_000,
                burst: 1600,
                limit: 3000,
            })),
            recreate: root_qdisc_request(
                3,
                &RootQdisc::Netem(Netem {
                    latency_ns: 20_000_000,
                    loss: 42,
                    ..Default::default()
                }),
            ),
        }),
        drops: vec![
            (Hook::Ingress, vec![Drop::Random(1 << 30)]),
            (Hook::Egress, vec![Drop::All]),
        ],
        clsact: true,
    }
}

/// Save the tc state of `link` (ifindex `ifindex`).
pub async fn snapshot(t: &Target, link: &str, ifindex: u32) -> Result<TcSnapshot> {
    let mut drops = Vec::new();
    for hook in Hook::ALL {
        drops.push((hook, drop_filters(t, ifindex, hook).await?));
    }
    Ok(TcSnapshot {
        link: link.to_string(),
        ifindex,
        root: root(t, ifindex).await?,
        drops,
        clsact: tc::ingress_qdisc_kind(t, ifindex).await?.is_some(),
    })
}

/// Put a link's tc state back as [`snapshot`] saw it: koko's root qdisc
/// removed (the user's re-created if there was one), koko's drop filters as
/// they were, and a clsact qdisc koko added removed once nothing is left
/// on it. A link that is gone has nothing to restore.
pub async fn restore(t: &Target, snap: &TcSnapshot) -> Result<()> {
    let Some(now) = super::link::get(t, &snap.link).await? else {
        return Ok(());
    };
    if now.index != snap.ifindex {
        // Same name, another link: not the one koko changed.
        return Ok(());
    }
    let ifindex = snap.ifindex;
    match (&snap.root, root(t, ifindex).await?) {
        (Some(saved), _) if saved.is_kokos() => {
            if let Some(q) = &saved.koko {
                set_root(t, &snap.link, ifindex, q).await?;
            }
        }
        (Some(saved), _) => restore_root(t, &saved.recreate).await?,
        (None, Some(current)) if current.is_kokos() => delete_root(t, ifindex).await?,
        (None, _) => {}
    }
    for (hook, drops) in &snap.drops {
        for priority in [BLACKHOLE_PRIORITY, LOSS_PRIORITY] {
            match drops.iter().find(|d| d.priority() == priority) {
                Some(d) => set_drop_filter(t, &snap.link, ifindex, *hook, *d).await?,
                None => remove_drop_filter(t, ifindex, *hook, priority).await?,
            }
        }
    }
    remove_clsact_if_added(t, snap).await
}

/// End a blackhole on `hook` (see [`crate::impair::blackhole`]): remove
/// koko's drop-all filter there, and the clsact qdisc if the snapshot
/// taken before shows koko added it and nothing else is on it now.
pub async fn unblackhole(t: &Target, snap: &TcSnapshot, hook: Hook) -> Result<()> {
    let Some(now) = super::link::get(t, &snap.link).await? else {
        return Ok(());
    };
    if now.index != snap.ifindex {
        return Ok(());
    }
    remove_drop_filter(t, snap.ifindex, hook, BLACKHOLE_PRIORITY).await?;
    remove_clsact_if_added(t, snap).await
}

/// Remove the clsact qdisc of the snapshot's link if it was not there when
/// the snapshot was taken and no filter is left on it.
async fn remove_clsact_if_added(t: &Target, snap: &TcSnapshot) -> Result<()> {
    if snap.clsact {
        return Ok(());
    }
    remove_clsact_if_kokos(t, snap.ifindex).await
}

/// Make sure link `ifindex` has a clsact qdisc; if koko adds it, koko also
/// marks it as its own with a filter that does nothing (a program that
/// passes every packet on), since the kernel keeps no record of who added
/// a qdisc. [`remove_clsact_if_kokos`] reads the mark, so a later koko
/// command — not only this run's undo — can take away a clsact koko added,
/// and never a user's own.
pub async fn add_marked_clsact(t: &Target, link: &str, ifindex: u32) -> Result<()> {
    if !tc::add_clsact(t, link, ifindex).await? {
        return Ok(());
    }
    let fd = bpf::load_tc_program("koko_clsact", &bpf::pass_program())?;
    let msg = bpf_filter_request(
        ifindex,
        Hook::Ingress,
        CLSACT_MARK_PRIORITY,
        fd.as_raw_fd() as u32,
        CLSACT_MARK_NAME.into(),
    );
    tc::add_filter(
        t,
        msg,
        || {
            format!(
                "marking the clsact qdisc koko added to '{link}' in {}",
                t.ns
            )
        },
        BPF_CLASSIFIER,
    )
    .await
}

/// The names of the bpf filters on `hook` of `ifindex`, and how many
/// filters there are in all.
async fn filter_names(t: &Target, ifindex: u32, hook: Hook) -> Result<(Vec<String>, usize)> {
    let filters: Vec<TcMessage> = tc::filter_messages(t, ifindex, hook)
        .await?
        .into_iter()
        // A dump lists a priority's chain head too, without options.
        .filter(|f| {
            f.attributes
                .iter()
                .any(|a| matches!(a, TcAttribute::Options(_)))
        })
        .collect();
    let names = filters.iter().filter_map(bpf_name).collect();
    Ok((names, filters.len()))
}

/// Remove link `ifindex`'s clsact qdisc if koko added it (its mark is
/// there) and nothing but the mark is left on it.
pub async fn remove_clsact_if_kokos(t: &Target, ifindex: u32) -> Result<()> {
    if tc::ingress_qdisc_kind(t, ifindex).await?.as_deref() != Some("clsact") {
        return Ok(());
    }
    let (ingress, in_count) = filter_names(t, ifindex, Hook::Ingress).await?;
    let (_, out_count) = filter_names(t, ifindex, Hook::Egress).await?;
    let marked = ingress.iter().any(|n| n == CLSACT_MARK_NAME);
    if marked && in_count == 1 && out_count == 0 {
        tc::delete_clsact(t, ifindex).await?;
    }
    Ok(())
}

// ------------------------------------------------------------ ifb
//
// What a link *receives* cannot be queued on the link itself (qdiscs
// shape what leaves a device). On a veth koko shapes it where it is sent,
// the peer's root. For any other link (vxlan, macvlan) the received
// traffic is redirected on the link's ingress to an ifb device, whose root
// qdisc then shapes it: ifb hands every packet back to the stack as if the
// link had received it, after its qdisc let it go.

/// The cookie of the redirect filter that feeds koko's ifb.
const IFB_COOKIE: &[u8] = b"koko-ifb";

/// The redirect filter's priority: after koko's drop filters (a dropped
/// packet never reaches the ifb), before everything else.
const REDIRECT_PRIORITY: u16 = 3;

/// The name of the ifb koko uses for link `ifindex` ("kkifb" + ifindex:
/// at most 15 bytes).
pub fn ifb_name(ifindex: u32) -> String {
    format!("kkifb{ifindex}")
}

/// Make sure link `ifindex` (`link`) has its ifb, up, with everything the
/// link receives redirected to it. Returns the ifb's ifindex and whether
/// koko created it now.
pub async fn ensure_ifb(t: &Target, link: &str, ifindex: u32) -> Result<(u32, bool)> {
    let name = ifb_name(ifindex);
    let created = match super::link::get(t, &name).await? {
        Some(_) => false,
        None => {
            let mut msg = netlink_packet_route::link::LinkMessage::default();
            msg.attributes
                .push(netlink_packet_route::link::LinkAttribute::IfName(
                    name.clone(),
                ));
            msg.attributes
                .push(netlink_packet_route::link::LinkAttribute::LinkInfo(vec![
                    netlink_packet_route::link::LinkInfo::Kind(
                        netlink_packet_route::link::InfoKind::Ifb,
                    ),
                ]));
            t.socket
                .ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
                .await
                .map_err(|errno| {
                    tc::refusal(
                        format!(
                            "creating ifb '{name}' for what '{link}' receives, in {}",
                            t.ns
                        ),
                        errno,
                        "ifb devices (CONFIG_IFB)",
                    )
                })?;
            super::link::mark_new(t, &name).await.map_err(|errno| {
                Error::kernel(format!("marking ifb '{name}' in {} as koko's", t.ns), errno)
            })?;
            true
        }
    };
    super::link::set(
        t,
        &name,
        super::link::LinkChange {
            up: Some(true),
            mtu: None,
        },
    )
    .await?;
    let ifb = super::link::require(t, &name).await?;
    if !has_redirect(t, ifindex).await? {
        add_marked_clsact(t, link, ifindex).await?;
        let msg = tc::mirred_filter_request(
            ifindex,
            Hook::Ingress,
            REDIRECT_PRIORITY,
            ifb.index,
            true,
            IFB_COOKIE,
        );
        tc::add_filter(
            t,
            msg,
            || format!("redirecting what '{link}' receives to '{name}' in {}", t.ns),
            tc::U32_MIRRED,
        )
        .await?;
    }
    Ok((ifb.index, created))
}

/// Is koko's redirect to an ifb on link `ifindex`'s ingress?
async fn has_redirect(t: &Target, ifindex: u32) -> Result<bool> {
    Ok(tc::filters(t, ifindex, Hook::Ingress)
        .await?
        .iter()
        .any(|f| {
            f.prio == REDIRECT_PRIORITY
                && f.mirreds
                    .iter()
                    .any(|(c, _)| c.as_deref() == Some(IFB_COOKIE))
        }))
}

/// The root qdisc of koko's on link `ifindex`'s ifb, if it has one.
pub async fn ifb_root(t: &Target, ifindex: u32) -> Result<Option<RootQdisc>> {
    match super::link::get(t, &ifb_name(ifindex)).await? {
        Some(ifb) => Ok(root(t, ifb.index).await?.and_then(|r| r.koko)),
        None => Ok(None),
    }
}

/// Take koko's ifb away from link `ifindex`: the redirect, the ifb itself
/// (and its qdisc with it), and the clsact qdisc if koko added it and
/// nothing else is on it. Nothing there is fine.
pub async fn remove_ifb(t: &Target, ifindex: u32) -> Result<()> {
    if has_redirect(t, ifindex).await? {
        let mut msg = TcMessage::with_index(ifindex as i32);
        msg.header.parent = Hook::Ingress.parent();
        msg.header.info = ((REDIRECT_PRIORITY as u32) << 16) | PROTOCOL_ALL as u32;
        msg.attributes.push(TcAttribute::Kind("u32".into()));
        match t
            .socket
            .ack(RouteNetlinkMessage::DelTrafficFilter(msg), 0)
            .await
        {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(errno) => {
                return Err(Error::kernel(
                    format!(
                        "removing koko's redirect to an ifb from link #{ifindex} in {}",
                        t.ns
                    ),
                    errno,
                ))
            }
        }
    }
    match super::link::delete(t, &ifb_name(ifindex)).await {
        Err(e) if e.is_link_not_found() => {}
        other => other?,
    }
    remove_clsact_if_kokos(t, ifindex).await
}

/// Does this kernel have netem? Asked once per process, in a throwaway
/// network namespace of its own (on a helper thread, so koko's threads
/// never change namespace): a netem qdisc on its loopback either works or
/// the kernel says it does not know the kind. Nothing of the machine is
/// touched; the namespace dies with the thread.
pub fn netem_available() -> bool {
    static NETEM: OnceLock<bool> = OnceLock::new();
    *NETEM.get_or_init(|| {
        std::thread::spawn(|| -> bool {
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                return false;
            }
            probe_qdisc_on_lo("netem", &netem_options(&Netem::default()))
        })
        .join()
        .unwrap_or(false)
    })
}

/// Try to add a root qdisc of `kind` on `lo` (ifindex 1) of the calling
/// thread's namespace with a plain netlink socket.
fn probe_qdisc_on_lo(kind: &str, options: &[u8]) -> bool {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
    let Ok(mut socket) = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE) else {
        return false;
    };
    if socket.bind_auto().is_err() {
        return false;
    }
    let mut tc = TcMessage::with_index(1);
    tc.header.parent = TC_H_ROOT.into();
    tc.attributes.push(TcAttribute::Kind(kind.into()));
    tc.attributes.push(TcAttribute::Other(DefaultNla::new(
        TCA_OPTIONS,
        options.to_vec(),
    )));
    let mut msg = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(tc));
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    if socket.send(&buf, 0).is_err() {
        return false;
    }
    let mut answer = vec![0u8; 8192];
    let Ok(n) = socket.recv(&mut &mut answer[..], 0) else {
        return false;
    };
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&answer[..n]) {
        Ok(m) => matches!(m.payload, NetlinkPayload::Error(e) if e.code.is_none()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_options_round_trip() {
        let n = Netem {
            latency_ns: 20_000_000,
            jitter_ns: 5_000_000,
            loss: probability(1.5),
            duplicate: probability(2.0),
            corrupt: probability(0.5),
            reorder: probability(25.0),
            rate_bytes: 1_250_000,
            limit: 500,
        };
        let raw = netem_options(&n);
        assert_eq!(u32_at(&raw, 4), 500, "limit");
        assert_eq!(u32_at(&raw, 12), 1, "reordering needs a gap");
        assert_eq!(parse_netem_options(&raw).unwrap(), n);
        assert!((percent(n.loss) - 1.5).abs() < 0.01);
    }

    #[test]
    fn netem_defaults_to_a_1000_packet_queue_and_no_gap() {
        let raw = netem_options(&Netem::default());
        assert_eq!(u32_at(&raw, 4), 1000);
        assert_eq!(u32_at(&raw, 12), 0);
    }

    #[test]
    fn tbf_options_carry_an_ethernet_ratespec_and_the_burst_in_bytes() {
        let t = Tbf {
            rate_bytes: 1_250_000,
            burst: 12_500,
            limit: 62_500,
        };
        let raw = tbf_options(&t);
        let attrs = nlas(&raw);
        let parms = attrs.iter().find(|(k, _)| *k == TCA_TBF_PARMS).unwrap().1;
        assert_eq!(parms.len(), 36);
        assert_eq!(parms[1], TC_LINKLAYER_ETHERNET, "no rate table needed");
        assert_eq!(u32_at(parms, 8), 1_250_000);
        assert_eq!(u32_at(parms, 24), 62_500);
        let burst = attrs.iter().find(|(k, _)| *k == TCA_TBF_BURST).unwrap().1;
        assert_eq!(u32_at(burst, 0), 12_500);
        let back = parse_tbf_options(&raw).unwrap();
        assert_eq!(back.rate_bytes, t.rate_bytes);
        assert_eq!(back.limit, t.limit);
        // The burst travels as a time in 64 ns ticks: within a tick's worth.
        assert!((back.burst as i64 - t.burst as i64).abs() <= 1, "{back:?}");
    }

    #[test]
    fn rates_beyond_u32_use_the_64_bit_attribute() {
        let t = Tbf {
            rate_bytes: 10_000_000_000,
            burst: 1_000_000,
            limit: 1_000_000,
        };
        let raw = tbf_options(&t);
        assert!(nlas(&raw).iter().any(|(k, _)| *k == TCA_TBF_RATE64));
        assert_eq!(parse_tbf_options(&raw).unwrap().rate_bytes, 10_000_000_000);
    }

    #[test]
    fn root_qdisc_requests_carry_kokos_handle() {
        let msg = root_qdisc_request(
            7,
            &RootQdisc::Tbf(Tbf {
                rate_bytes: 125_000,
                burst: 3200,
                limit: 10_000,
            }),
        );
        assert_eq!(msg.header.index, 7);
        assert_eq!(u32::from(msg.header.parent), TC_H_ROOT);
        assert_eq!(msg.header.handle.major, KOKO_QDISC_MAJOR);
        assert!(msg.attributes.contains(&TcAttribute::Kind("tbf".into())));
    }

    #[test]
    fn drop_filters_are_first_direct_action_and_named() {
        let msg = drop_filter_request(3, Hook::Ingress, 42, Drop::Random(probability(30.0)));
        assert_eq!(msg.header.info >> 16, LOSS_PRIORITY as u32);
        let all = drop_filter_request(3, Hook::Ingress, 42, Drop::All);
        assert_eq!(all.header.info >> 16, BLACKHOLE_PRIORITY as u32);
        assert_eq!((msg.header.info & 0xffff) as u16, PROTOCOL_ALL);
        let opts = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                TcAttribute::Options(o) => Some(o.clone()),
                _ => None,
            })
            .unwrap();
        assert!(opts.contains(&TcOption::Bpf(TcFilterBpfOption::Flags(
            TcBpfFlags::DirectAction
        ))));
        assert!(opts.contains(&TcOption::Bpf(TcFilterBpfOption::ProgFd(42))));
        assert_eq!(
            Drop::from_name(&Drop::Random(probability(30.0)).name()),
            Some(Drop::Random(probability(30.0)))
        );
        assert_eq!(Drop::from_name("koko-blackhole"), Some(Drop::All));
        assert_eq!(Drop::from_name("users-own"), None);
    }
}

//! Traffic mirroring with tc: copy what passes a source link, in one or both
//! directions, out through another link of the same namespace.
//!
//! What koko installs on the source (the equivalent of)
//!
//! ```text
//! tc qdisc add dev SRC clsact
//! tc filter add dev SRC {ingress|egress} protocol all u32 match u32 0 0 \
//!     action mirred egress mirror dev TARGET cookie 6b6f6b6f2d6d6972726f72
//! ```
//!
//! * `clsact` gives both an ingress and an egress hook on any device, with no
//!   classes, no queue and no `txqueuelen` trick. The original used the
//!   `ingress` qdisc plus `prio` for egress, which needs a queue length on
//!   veths and a qdisc this kernel does not have.
//! * `u32` with one key of mask 0 matches every packet (this kernel has no
//!   `matchall`). The selector must be TERMINAL, or u32 never runs the action.
//! * `protocol` lives in the low 16 bits of `tcm_info` in NETWORK byte
//!   order: ETH_P_ALL is `0x0003u16.to_be()`. The host-order 0x0003 installs
//!   a filter that silently matches nothing.
//! * koko's mark is the action cookie [`KOKO_COOKIE`]: the kernel stores it
//!   and dumps it back, never interprets it. Removal only touches u32 filters
//!   whose mirred action carries that cookie AND points at the given target
//!   ifindex, so a user's own filters on the same source survive.
//! * The filter priority is left to the kernel (0 = "pick a free one"), so
//!   koko's filter gets a priority of its own and can be removed whole (a u32
//!   priority emptied knode by knode leaves its hash table behind, visible in
//!   `tc filter show`).

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirror, TcActionMirrorOption,
    TcActionOption, TcActionType, TcAttribute, TcFilterU32, TcFilterU32Option, TcHandle, TcMessage,
    TcMirror, TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::{link, Target};
use crate::error::{Error, Result};

/// The action cookie that marks the filters koko installed.
pub const KOKO_COOKIE: &[u8] = b"koko-mirror";

/// The cookie of a koko mirror filter on a clsact qdisc that koko itself
/// added. The kernel keeps no record of who added a qdisc, so koko writes
/// it into its own filters: while one of them carries this cookie, the
/// clsact is koko's and goes when the last filter on it goes; without it
/// the clsact is somebody else's (a user's own, empty one, say) and stays.
/// A later mirror on a koko-made clsact inherits the mark, so it survives
/// the removal of the first mirror. (A cookie is at most 16 bytes,
/// TC_COOKIE_MAX_SIZE: a longer one is refused with ERANGE.)
pub const KOKO_COOKIE_OWNS_QDISC: &[u8] = b"koko-mirror/own";

/// ETH_P_ALL in network byte order, as tcm_info's protocol wants it.
pub const PROTOCOL_ALL: u16 = 0x0003u16.to_be();

/// clsact's handle (ffff:0000) and its parent (ffff:fff1).
const CLSACT_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};

/// Which traffic of the source to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorDir {
    Ingress,
    Egress,
    Both,
}

impl MirrorDir {
    pub fn parse(word: &str) -> Option<MirrorDir> {
        Some(match word {
            "ingress" => MirrorDir::Ingress,
            "egress" => MirrorDir::Egress,
            "both" => MirrorDir::Both,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MirrorDir::Ingress => "ingress",
            MirrorDir::Egress => "egress",
            MirrorDir::Both => "both",
        }
    }

    /// The clsact hooks (filter parents) this direction needs.
    pub fn hooks(self) -> Vec<Hook> {
        match self {
            MirrorDir::Ingress => vec![Hook::Ingress],
            MirrorDir::Egress => vec![Hook::Egress],
            MirrorDir::Both => vec![Hook::Ingress, Hook::Egress],
        }
    }
}

impl std::str::FromStr for MirrorDir {
    type Err = Error;

    /// `ingress`, `egress` or `both`; the error names the word and the choices.
    fn from_str(word: &str) -> Result<MirrorDir> {
        MirrorDir::parse(word).ok_or_else(|| {
            Error::Invalid(format!(
                "mirror direction '{word}' is not one of ingress, egress, both"
            ))
        })
    }
}

/// One of clsact's two hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Hook {
    Ingress,
    Egress,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::Ingress, Hook::Egress];

    /// The filter parent: ffff:fff2 (ingress) or ffff:fff3 (egress).
    pub fn parent(self) -> TcHandle {
        TcHandle {
            major: 0xffff,
            minor: match self {
                Hook::Ingress => TcHandle::MIN_INGRESS,
                Hook::Egress => TcHandle::MIN_EGRESS,
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Ingress => "ingress",
            Hook::Egress => "egress",
        }
    }
}

/// RTM_NEWQDISC for a clsact qdisc on `ifindex`.
pub(in crate::net) fn clsact_request(ifindex: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.handle = CLSACT_HANDLE;
    msg.header.parent = TcHandle::CLSACT;
    msg.attributes.push(TcAttribute::Kind("clsact".into()));
    msg
}

/// RTM_NEWTFILTER: on `src_index`'s `hook`, match every packet and mirror a
/// copy out of `target_index`, marked with koko's cookie (the one that
/// also says "koko added this clsact" when `owns_qdisc`).
pub(in crate::net) fn mirror_filter_request(
    src_index: u32,
    hook: Hook,
    target_index: u32,
    owns_qdisc: bool,
) -> TcMessage {
    let cookie = if owns_qdisc {
        KOKO_COOKIE_OWNS_QDISC
    } else {
        KOKO_COOKIE
    };
    mirred_filter_request(src_index, hook, 0, target_index, false, cookie)
}

/// RTM_NEWTFILTER: on `src_index`'s `hook`, at priority `prio` (0: the
/// kernel picks), match every packet and hand it to `target_index` — a
/// copy (`redirect` false: the packet goes on) or the packet itself
/// (`redirect` true: it leaves this device's path) — marked with `cookie`.
pub(in crate::net) fn mirred_filter_request(
    src_index: u32,
    hook: Hook,
    prio: u16,
    target_index: u32,
    redirect: bool,
    cookie: &[u8],
) -> TcMessage {
    let mut msg = TcMessage::with_index(src_index as i32);
    msg.header.parent = hook.parent();
    // tcm_info = priority (high 16 bits) | protocol.
    msg.header.info = ((prio as u32) << 16) | PROTOCOL_ALL as u32;

    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![TcU32Key::default()]; // mask 0, value 0: everything

    let mut mirred = TcMirror::default();
    mirred.generic = TcActionGeneric::default();
    if redirect {
        // The packet itself goes to the target (stolen from this path).
        mirred.generic.action = TcActionType::Stolen;
        mirred.eaction = TcMirrorActionType::EgressRedir;
    } else {
        // "mirror": the original packet goes on (pipe).
        mirred.generic.action = TcActionType::Pipe;
        mirred.eaction = TcMirrorActionType::EgressMirror;
    }
    mirred.ifindex = target_index;
    let mut action = TcAction::default();
    action.tab = 1;
    action.attributes = vec![
        TcActionAttribute::Kind(TcActionMirror::KIND.to_string()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirred,
        ))]),
        TcActionAttribute::Cookie(cookie.to_vec()),
    ];
    msg.attributes
        .push(TcAttribute::Kind(TcFilterU32::KIND.into()));
    msg.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Selector(selector)),
        TcOption::U32(TcFilterU32Option::Action(vec![action])),
    ]));
    msg
}

/// One filter entry as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterEntry {
    pub hook: Hook,
    pub prio: u16,
    pub protocol: u16,
    pub handle: u32,
    pub kind: String,
    /// (cookie, mirred target ifindex) of each mirred action.
    pub mirreds: Vec<(Option<Vec<u8>>, u32)>,
}

impl FilterEntry {
    fn from_message(hook: Hook, msg: &TcMessage) -> FilterEntry {
        let mut entry = FilterEntry {
            hook,
            prio: (msg.header.info >> 16) as u16,
            protocol: (msg.header.info & 0xffff) as u16,
            handle: msg.header.handle.into(),
            kind: String::new(),
            mirreds: Vec::new(),
        };
        for attr in &msg.attributes {
            match attr {
                TcAttribute::Kind(k) => entry.kind = k.clone(),
                TcAttribute::Options(opts) => {
                    for opt in opts {
                        if let TcOption::U32(TcFilterU32Option::Action(actions)) = opt {
                            for action in actions {
                                let mut cookie = None;
                                let mut target = None;
                                for a in &action.attributes {
                                    match a {
                                        TcActionAttribute::Cookie(c) => cookie = Some(c.clone()),
                                        TcActionAttribute::Options(o) => {
                                            for o in o {
                                                if let TcActionOption::Mirror(
                                                    TcActionMirrorOption::Parms(p),
                                                ) = o
                                                {
                                                    target = Some(p.ifindex);
                                                }
                                            }
                                        }
                                        _ => {}
                                    }
                                }
                                if let Some(t) = target {
                                    entry.mirreds.push((cookie, t));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        entry
    }

    /// One of koko's mirror filters sending to `target`.
    pub fn is_kokos_mirror_to(&self, target: u32) -> bool {
        self.kind == "u32"
            && !self.mirreds.is_empty()
            && self.mirreds.iter().all(|(c, t)| {
                matches!(c.as_deref(), Some(KOKO_COOKIE | KOKO_COOKIE_OWNS_QDISC)) && *t == target
            })
    }

    /// Does this filter say that koko added the clsact it sits on?
    pub fn marks_kokos_qdisc(&self) -> bool {
        self.mirreds
            .iter()
            .any(|(c, _)| c.as_deref() == Some(KOKO_COOKIE_OWNS_QDISC))
    }
}

/// The filters on one clsact hook of link `ifindex` (empty if there is no
/// clsact/ingress qdisc).
pub async fn filters(t: &Target, ifindex: u32, hook: Hook) -> Result<Vec<FilterEntry>> {
    Ok(filter_messages(t, ifindex, hook)
        .await?
        .iter()
        .map(|f| FilterEntry::from_message(hook, f))
        .collect())
}

/// The filter messages on one clsact hook of link `ifindex`, as dumped
/// (empty if there is no clsact/ingress qdisc).
pub(in crate::net) async fn filter_messages(
    t: &Target,
    ifindex: u32,
    hook: Hook,
) -> Result<Vec<TcMessage>> {
    let mut msg = TcMessage::with_index(ifindex as i32);
    msg.header.parent = hook.parent();
    match t
        .socket
        .dump(RouteNetlinkMessage::GetTrafficFilter(msg))
        .await
    {
        Ok(answers) => Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewTrafficFilter(f) => Some(f),
                _ => None,
            })
            .collect()),
        Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(Vec::new()),
        Err(errno) => Err(Error::kernel(
            format!(
                "listing {} filters of link #{ifindex} in {}",
                hook.as_str(),
                t.ns
            ),
            errno,
        )),
    }
}

/// The kernel's refusal of a tc request about `what`: ENOENT and
/// EOPNOTSUPP mean it does not know the qdisc, classifier or action kind
/// (not built in: named by `feature`); anything else is explained as usual.
pub(in crate::net) fn refusal(what: String, errno: Errno, feature: &str) -> Error {
    match errno {
        Errno::ENOENT | Errno::EOPNOTSUPP => Error::KernelFeature {
            what,
            feature: feature.into(),
        },
        _ => Error::kernel(what, errno),
    }
}

/// The kernel features koko's u32 + mirred filters need.
pub(in crate::net) const U32_MIRRED: &str =
    "the u32 classifier and mirred action (CONFIG_NET_CLS_U32, CONFIG_NET_ACT_MIRRED)";

/// Add a new filter (`msg`, built by this module or net::impair); a
/// refusal names `what` was being done and, for an unknown kind,
/// `feature`.
pub(in crate::net) async fn add_filter(
    t: &Target,
    msg: TcMessage,
    what: impl FnOnce() -> String,
    feature: &str,
) -> Result<()> {
    t.socket
        .ack(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        .map_err(|errno| refusal(what(), errno, feature))
}

/// Every qdisc of `t`'s namespace, as dumped.
pub(in crate::net) async fn qdisc_messages(t: &Target) -> Result<Vec<TcMessage>> {
    let answers = t
        .socket
        .dump(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()))
        .await
        .map_err(|errno| Error::kernel(format!("listing qdiscs in {}", t.ns), errno))?;
    Ok(answers
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(q) => Some(q),
            _ => None,
        })
        .collect())
}

/// The kind of a qdisc or filter message ("clsact", "tbf", "u32", ...).
pub(in crate::net) fn kind_of(msg: &TcMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        TcAttribute::Kind(k) => Some(k.clone()),
        _ => None,
    })
}

/// Delete a qdisc (`msg` names its link and parent); one that is already
/// gone is fine. `what` names it for an error.
pub(in crate::net) async fn delete_qdisc(t: &Target, msg: TcMessage, what: &str) -> Result<()> {
    let ifindex = msg.header.index;
    match t
        .socket
        .ack(RouteNetlinkMessage::DelQueueDiscipline(msg), 0)
        .await
    {
        Ok(()) | Err(Errno::ENOENT) | Err(Errno::EINVAL) => Ok(()),
        Err(errno) => Err(Error::kernel(
            format!("removing the {what} of link #{ifindex} in {}", t.ns),
            errno,
        )),
    }
}

/// The kind of the qdisc at ffff: (clsact or ingress) on `ifindex`, if any.
pub async fn ingress_qdisc_kind(t: &Target, ifindex: u32) -> Result<Option<String>> {
    Ok(qdisc_messages(t)
        .await?
        .iter()
        .find(|q| q.header.index == ifindex as i32 && q.header.parent == TcHandle::CLSACT)
        .and_then(kind_of))
}

/// Make sure `source` has a clsact qdisc. Returns whether koko created it.
/// An existing `ingress` qdisc serves ingress mirroring (it accepts filters
/// at ffff:fff2 too) but has no egress hook.
pub async fn ensure_clsact(t: &Target, source: &str, ifindex: u32, dir: MirrorDir) -> Result<bool> {
    let created = t
        .socket
        .ack(
            RouteNetlinkMessage::NewQueueDiscipline(clsact_request(ifindex)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await;
    let errno = match created {
        Ok(()) => return Ok(true),
        Err(e) => e,
    };
    let what = format!(
        "adding a clsact qdisc to '{source}' in {} for mirroring",
        t.ns
    );
    match ingress_qdisc_kind(t, ifindex).await?.as_deref() {
        Some("clsact") => Ok(false),
        Some("ingress") if dir == MirrorDir::Ingress => Ok(false),
        Some("ingress") => Err(Error::Kernel {
            what,
            cause: format!(
                "'{source}' has an 'ingress' qdisc, which has no egress hook; replace it with clsact (tc qdisc del dev {source} ingress)"
            ),
            errno: Some(errno),
        }),
        _ if errno == Errno::EOPNOTSUPP || errno == Errno::ENOENT => Err(Error::KernelFeature {
            what,
            feature: "clsact qdisc support (CONFIG_NET_SCH_INGRESS)".into(),
        }),
        _ => Err(Error::kernel(what, errno)),
    }
}

/// Is the clsact qdisc of `ifindex` koko's? True while one of koko's
/// mirror filters on it carries [`KOKO_COOKIE_OWNS_QDISC`].
pub async fn clsact_is_kokos(t: &Target, ifindex: u32) -> Result<bool> {
    for hook in Hook::ALL {
        if filters(t, ifindex, hook)
            .await?
            .iter()
            .any(FilterEntry::marks_kokos_qdisc)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Install koko's mirror filters on `source` (ifindex `src_index`) for
/// `dir`, copying to `target_index`. The clsact qdisc must exist;
/// `owns_qdisc` says koko added it (see [`KOKO_COOKIE_OWNS_QDISC`]).
pub async fn add_mirror_filters(
    t: &Target,
    source: &str,
    src_index: u32,
    dir: MirrorDir,
    target: &str,
    target_index: u32,
    owns_qdisc: bool,
) -> Result<()> {
    for hook in dir.hooks() {
        add_filter(
            t,
            mirror_filter_request(src_index, hook, target_index, owns_qdisc),
            || {
                format!(
                    "mirroring {} traffic of '{source}' to '{target}' in {}",
                    hook.as_str(),
                    t.ns
                )
            },
            U32_MIRRED,
        )
        .await?;
    }
    Ok(())
}

/// What to do with the clsact qdisc once koko's filters are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QdiscPolicy {
    /// Leave it.
    Keep,
    /// Remove it if no filter is left on either hook.
    RemoveIfEmpty,
    /// Remove it if no filter is left and koko's filters said it was
    /// koko's (see [`KOKO_COOKIE_OWNS_QDISC`]); a user's clsact stays.
    IfKokos,
}

/// Remove koko's mirror filters on link `src_index` that send to
/// `target_index`, and only those. Returns how many filter priorities were
/// touched (0: there was nothing of koko's).
pub async fn remove_mirror_filters(
    t: &Target,
    src_index: u32,
    target_index: u32,
    qdisc: QdiscPolicy,
) -> Result<usize> {
    // Note: u32 shares its hash tables between all u32 filters of one qdisc,
    // so a dump of one clsact hook also lists the other hook's u32 entries
    // of the SAME priority (measured on 6.18). Deleting a priority whole on
    // one hook removes only that hook's filter; the other hook's is removed
    // on its own turn.
    let kokos = qdisc == QdiscPolicy::IfKokos && clsact_is_kokos(t, src_index).await?;
    let mut removed = 0;
    for hook in Hook::ALL {
        let entries = filters(t, src_index, hook).await?;
        let mut prios: Vec<u16> = entries
            .iter()
            .filter(|e| e.is_kokos_mirror_to(target_index))
            .map(|e| e.prio)
            .collect();
        prios.dedup();
        for prio in prios {
            // Every action-carrying entry of this priority is koko's mirror
            // to target: delete the priority whole (its u32 hash table too).
            // Otherwise delete only koko's entries.
            let same_prio: Vec<&FilterEntry> = entries.iter().filter(|e| e.prio == prio).collect();
            let all_ours = same_prio.iter().all(|e| {
                e.is_kokos_mirror_to(target_index)
                    || (e.kind == "u32" && e.mirreds.is_empty() && e.handle & 0xfff == 0)
            });
            let handles: Vec<u32> = if all_ours {
                vec![0]
            } else {
                same_prio
                    .iter()
                    .filter(|e| e.is_kokos_mirror_to(target_index))
                    .map(|e| e.handle)
                    .collect()
            };
            let protocol = same_prio[0].protocol;
            for handle in handles {
                let mut msg = TcMessage::with_index(src_index as i32);
                msg.header.parent = hook.parent();
                msg.header.info = ((prio as u32) << 16) | protocol as u32;
                msg.header.handle = handle.into();
                msg.attributes
                    .push(TcAttribute::Kind(TcFilterU32::KIND.into()));
                match t.socket.ack(RouteNetlinkMessage::DelTrafficFilter(msg), 0).await {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(errno) => {
                        return Err(Error::kernel(
                            format!("removing koko's mirror filter (pref {prio}) from link #{src_index} in {}", t.ns),
                            errno,
                        ))
                    }
                }
            }
            removed += 1;
        }
    }
    if qdisc == QdiscPolicy::RemoveIfEmpty || kokos {
        let mut empty = true;
        for hook in Hook::ALL {
            empty &= filters(t, src_index, hook).await?.is_empty();
        }
        if empty && ingress_qdisc_kind(t, src_index).await?.as_deref() == Some("clsact") {
            delete_clsact(t, src_index).await?;
        }
    }
    Ok(removed)
}

/// Remove the clsact qdisc of `ifindex` (and every filter on it). Already
/// gone is fine.
pub async fn delete_clsact(t: &Target, ifindex: u32) -> Result<()> {
    let mut msg = clsact_request(ifindex);
    msg.attributes.clear();
    delete_qdisc(t, msg, "clsact qdisc").await
}

/// Add a clsact qdisc to `ifindex` if it has none; returns whether koko
/// added it.
pub async fn add_clsact(t: &Target, link: &str, ifindex: u32) -> Result<bool> {
    ensure_clsact(t, link, ifindex, MirrorDir::Both).await
}

/// Remove, from every link of the namespace, koko's mirror filters that send
/// to `target_index` (used before deleting that link). A clsact qdisc left
/// empty by this is removed too if koko added it (its filters say so, see
/// [`KOKO_COOKIE_OWNS_QDISC`]); a clsact the user had before stays, empty
/// or not.
pub async fn remove_mirrors_to(t: &Target, target_index: u32) -> Result<usize> {
    let mut removed = 0;
    for l in link::list(t).await? {
        if l.index == target_index {
            continue;
        }
        let mut ours = false;
        for hook in Hook::ALL {
            ours |= filters(t, l.index, hook)
                .await?
                .iter()
                .any(|e| e.is_kokos_mirror_to(target_index));
        }
        if ours {
            removed +=
                remove_mirror_filters(t, l.index, target_index, QdiscPolicy::IfKokos).await?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn cookies_fit_the_kernels_limit_and_say_who_owns_the_qdisc() {
        const TC_COOKIE_MAX_SIZE: usize = 16;
        for cookie in [KOKO_COOKIE, KOKO_COOKIE_OWNS_QDISC] {
            assert!(cookie.len() <= TC_COOKIE_MAX_SIZE, "{cookie:?}");
        }
        let owned = FilterEntry::from_message(
            Hook::Ingress,
            &mirror_filter_request(5, Hook::Ingress, 9, true),
        );
        assert!(owned.is_kokos_mirror_to(9) && owned.marks_kokos_qdisc());
        let plain = FilterEntry::from_message(
            Hook::Ingress,
            &mirror_filter_request(5, Hook::Ingress, 9, false),
        );
        assert!(plain.is_kokos_mirror_to(9) && !plain.marks_kokos_qdisc());
    }

    #[test]
    fn protocol_all_is_in_network_byte_order() {
        let msg = mirror_filter_request(5, Hook::Ingress, 9, false);
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        // tcmsg: family(1) pad(3) ifindex(4) handle(4) parent(4) info(4);
        // info is a host-order u32 whose low 16 bits are the protocol, which
        // itself must read 00 03 on the wire (big-endian ETH_P_ALL).
        let info = u32::from_ne_bytes(buf[16..20].try_into().unwrap());
        assert_eq!(((info & 0xffff) as u16).to_ne_bytes(), [0x00, 0x03]);
        assert_eq!(msg.header.info, 0x0003u16.to_be() as u32);
        assert_eq!(msg.header.index, 5);
        assert_eq!(
            msg.header.parent,
            TcHandle {
                major: 0xffff,
                minor: 0xfff2
            }
        );
        assert_eq!(
            mirror_filter_request(5, Hook::Egress, 9, false)
                .header
                .parent,
            TcHandle {
                major: 0xffff,
                minor: 0xfff3
            }
        );
    }

    #[test]
    fn filter_matches_everything_and_mirrors_with_koko_cookie() {
        let msg = mirror_filter_request(5, Hook::Egress, 9, false);
        assert!(msg.attributes.contains(&TcAttribute::Kind("u32".into())));
        let opts = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                TcAttribute::Options(o) => Some(o.clone()),
                _ => None,
            })
            .unwrap();
        let sel = opts
            .iter()
            .find_map(|o| match o {
                TcOption::U32(TcFilterU32Option::Selector(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        assert!(
            sel.flags.contains(TcU32SelectorFlags::Terminal),
            "u32 runs actions only for terminal keys"
        );
        assert_eq!(sel.nkeys, 1);
        assert_eq!((sel.keys[0].mask, sel.keys[0].val), (0, 0));
        // Reading back what we build gives koko's mark and the target.
        let entry = FilterEntry::from_message(Hook::Egress, &msg);
        assert_eq!(entry.mirreds, vec![(Some(KOKO_COOKIE.to_vec()), 9)]);
        assert!(entry.is_kokos_mirror_to(9));
        assert!(!entry.is_kokos_mirror_to(8));
        let text = format!("{msg:?}");
        assert!(
            text.contains("EgressMirror") && text.contains("Pipe"),
            "{text}"
        );
    }

    #[test]
    fn a_users_mirror_without_the_cookie_is_not_kokos() {
        let mut msg = mirror_filter_request(5, Hook::Ingress, 9, false);
        for a in &mut msg.attributes {
            if let TcAttribute::Options(opts) = a {
                for o in opts {
                    if let TcOption::U32(TcFilterU32Option::Action(acts)) = o {
                        acts[0]
                            .attributes
                            .retain(|x| !matches!(x, TcActionAttribute::Cookie(_)));
                    }
                }
            }
        }
        assert!(!FilterEntry::from_message(Hook::Ingress, &msg).is_kokos_mirror_to(9));
    }

    #[test]
    fn clsact_request_sits_at_ffff() {
        let msg = clsact_request(4);
        assert_eq!(
            msg.header.handle,
            TcHandle {
                major: 0xffff,
                minor: 0
            }
        );
        assert_eq!(
            msg.header.parent,
            TcHandle {
                major: 0xffff,
                minor: 0xfff1
            }
        );
        assert_eq!(msg.attributes, vec![TcAttribute::Kind("clsact".into())]);
        assert_eq!(
            MirrorDir::parse("both").unwrap().hooks(),
            vec![Hook::Ingress, Hook::Egress]
        );
        assert_eq!(MirrorDir::parse("sideways"), None);
        assert_eq!("egress".parse::<MirrorDir>().unwrap(), MirrorDir::Egress);
        let e = "sideways".parse::<MirrorDir>().unwrap_err();
        assert!(e.to_string().contains("'sideways'"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}

//! Links: create veth pairs, look links up, set them up/down or change their
//! MTU, delete them.
//!
//! A veth pair is made with ONE `RTM_NEWLINK` sent on the socket of the first
//! end's namespace. The peer's part of the message (`VETH_INFO_PEER`) carries
//! its own name, MTU, flags and `IFLA_NET_NS_FD`, so the kernel creates each
//! end directly in its namespace under its final name. Nothing ever appears
//! in koko's own namespace, no temporary name can leak, and the kernel either
//! creates both ends or neither (a taken name fails the whole request).

use std::os::fd::RawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::Target;
use crate::error::{Error, Result};

/// The kernel's limit on interface names: IFNAMSIZ (16) including the NUL.
pub const MAX_NAME_LEN: usize = 15;

/// Check an interface name the way the kernel's `dev_valid_name` does, up
/// front, so a bad name is a usage error rather than a late kernel refusal.
///
/// The kernel looks at BYTES: it refuses '/', ':' and every byte its
/// `isspace()` accepts, which are \t \n \v \f \r, space, and 0xA0 (the
/// Latin-1 no-break space of lib/ctype.c). 0xA0 is also a UTF-8
/// continuation byte, so names with letters such as 'à' (C3 A0) or 'Ġ'
/// (C4 A0) are refused by the kernel although they contain no space at
/// all. koko is stricter on characters (no Unicode whitespace, no control
/// characters) and says which rule a name breaks.
pub fn validate_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "is {} bytes long; the kernel allows at most {MAX_NAME_LEN}",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("is reserved".to_string())
    } else if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        Some(format!("contains {c:?}, which the kernel does not allow"))
    } else {
        name.chars()
            .find(|c| {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf).bytes().any(|b| b == 0xA0)
            })
            .map(|c| {
                format!(
                    "contains {c:?}, whose UTF-8 encoding has the byte 0xA0, which the kernel treats as a space"
                )
            })
    };
    match problem {
        Some(p) => Err(Error::Invalid(format!("interface name '{name}' {p}"))),
        None => Ok(()),
    }
}

/// What the kernel says about one link.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    /// "veth", "vxlan", ... (None for links without a kind, like `lo`).
    pub kind: Option<String>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier present (IFF_LOWER_UP).
    pub lower_up: bool,
    /// RFC 2863 operational state is "up" (IFLA_OPERSTATE): the kernel's
    /// linkwatch has processed the carrier and activated the queueing
    /// discipline, so packets actually leave.
    pub oper_up: bool,
    pub mtu: u32,
    /// IFLA_LINK: the peer's (or parent's) ifindex, in `link_netnsid`'s
    /// namespace if that is given.
    pub link_index: Option<u32>,
    /// The peer's namespace as this namespace's nsid, if it is elsewhere.
    pub link_netnsid: Option<i32>,
    pub group: u32,
    /// IFLA_IFALIAS, the free-text alias (`ip link set X alias TEXT`).
    /// koko marks the links it creates with `koko:RUNID` (see
    /// [`owner_mark`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl LinkState {
    pub(in crate::net) fn from_message(msg: &LinkMessage) -> LinkState {
        let mut state = LinkState {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
            oper_up: false,
            mtu: 0,
            link_index: None,
            link_netnsid: None,
            group: 0,
            alias: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => state.name = n.clone(),
                LinkAttribute::Mtu(m) => state.mtu = *m,
                LinkAttribute::OperState(o) => {
                    state.oper_up = *o == netlink_packet_route::link::State::Up
                }
                LinkAttribute::Link(i) => state.link_index = Some(*i),
                LinkAttribute::LinkNetNsId(id) => state.link_netnsid = Some(*id),
                LinkAttribute::Group(g) => state.group = *g,
                LinkAttribute::IfAlias(a) if !a.is_empty() => state.alias = Some(a.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            state.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        state
    }

    /// "up", "down" (as `link.state` in scripts reports it).
    pub fn state_word(&self) -> &'static str {
        if self.up {
            "up"
        } else {
            "down"
        }
    }
}

/// The options of a veth pair.
#[derive(Debug, Clone)]
pub struct VethOptions {
    pub mtu: u32,
    /// IFLA_GROUP for both ends (0 is the kernel's default group).
    pub group: u32,
    /// The ifindex of each end (0: the kernel chooses). See
    /// `connect::veth` for why koko chooses them.
    pub index: u32,
    pub peer_index: u32,
}

impl Default for VethOptions {
    fn default() -> Self {
        VethOptions {
            mtu: 1500,
            group: 0,
            index: 0,
            peer_index: 0,
        }
    }
}

/// The RTM_NEWLINK message for a veth pair: end `name` in the namespace of
/// the socket it is sent on, end `peer` in the namespace behind `peer_ns_fd`.
/// The first end is created up; both get the same MTU and group.
pub(in crate::net) fn veth_request(
    name: &str,
    peer: &str,
    peer_ns_fd: RawFd,
    options: &VethOptions,
) -> LinkMessage {
    // The peer cannot be created up: the kernel configures it before the
    // two ends are joined, and opening a veth without a peer fails with
    // ENOTCONN. The caller brings it up on the peer namespace's socket.
    let mut peer_msg = LinkMessage::default();
    peer_msg.header.index = options.peer_index;
    peer_msg.attributes = vec![
        LinkAttribute::IfName(peer.to_string()),
        LinkAttribute::Mtu(options.mtu),
        LinkAttribute::NetNsFd(peer_ns_fd),
    ];
    let mut msg = LinkMessage::default();
    msg.header.index = options.index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes = vec![
        LinkAttribute::IfName(name.to_string()),
        LinkAttribute::Mtu(options.mtu),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]),
    ];
    if options.group != 0 {
        msg.attributes.push(LinkAttribute::Group(options.group));
        if let Some(LinkAttribute::LinkInfo(infos)) = msg.attributes.get_mut(2) {
            if let Some(LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p)))) = infos.get_mut(1) {
                p.attributes.push(LinkAttribute::Group(options.group));
            }
        }
    }
    msg
}

/// Create a veth pair: `name` in `a`'s namespace, `peer` in `b`'s. Returns
/// the raw errno so the caller (who knows both ends) can explain a clash.
pub async fn create_veth(
    a: &Target,
    name: &str,
    b: &Target,
    peer: &str,
    options: &VethOptions,
) -> Result<(), VethError> {
    use std::os::fd::AsRawFd;
    // The peer's namespace fd only has to live until the kernel answered.
    let peer_fd = b.ns.open().map_err(VethError::Namespace)?;
    let msg = veth_request(name, peer, peer_fd.as_raw_fd(), options);
    let result = a
        .socket
        .ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
        .await;
    drop(peer_fd);
    result.map_err(VethError::Kernel)?;
    // Both ends carry the mark (deleting the first end takes its peer).
    mark_new(a, name).await.map_err(VethError::Kernel)?;
    mark_new(b, peer).await.map_err(VethError::Kernel)
}

// ------------------------------------------------------------ ownership

// Every link koko creates carries a mark the kernel keeps for it: its alias
// (IFLA_IFALIAS) reads `koko:RUNID`, naming the run that made it. A later
// process (`koko undo` of a run that died, `koko show`) can then tell koko's
// links from anybody else's, and an undo deletes a link only if it still
// carries its run's mark: a same-name link someone made meanwhile is not
// koko's to delete.
//
// The kernel ignores IFLA_IFALIAS in RTM_NEWLINK (verified on 6.18: a link
// created with an alias has none), so the mark is a second request, an
// RTM_SETLINK on the same socket right after the creation is acknowledged.
// If the mark cannot be set, the new link is deleted again and the creation
// fails: an unmarked link would be one koko could no longer undo.

static OWNER_MARK: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

/// Set (or clear) the mark every link created from now on carries: the
/// journal of a run on disk sets `koko:RUNID` when it starts. Without one
/// (unit tests, in-memory journals) links are not marked.
pub fn set_owner_mark(mark: Option<String>) {
    if let Ok(mut m) = OWNER_MARK.write() {
        *m = mark;
    }
}

/// The mark links created now get, if any.
pub fn owner_mark() -> Option<String> {
    OWNER_MARK.read().ok().and_then(|m| m.clone())
}

/// The RTM_SETLINK that sets link `name`'s alias.
pub(in crate::net) fn alias_request(name: &str, alias: &str) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes = vec![
        LinkAttribute::IfName(name.to_string()),
        LinkAttribute::IfAlias(alias.to_string()),
    ];
    msg
}

/// Set link `name`'s alias (the ownership mark, or a namespace's mark on
/// its `lo`).
pub async fn set_alias(t: &Target, name: &str, alias: &str) -> Result<()> {
    t.socket
        .ack(RouteNetlinkMessage::SetLink(alias_request(name, alias)), 0)
        .await
        .map_err(|errno| {
            Error::kernel(
                format!("marking link '{name}' in {} as koko's ('{alias}')", t.ns),
                errno,
            )
        })
}

/// Give the link `name` koko just created in `t` the owner mark, if there
/// is one; if that fails, delete the link again (see above) and return the
/// errno.
pub(in crate::net) async fn mark_new(t: &Target, name: &str) -> Result<(), Errno> {
    let Some(mark) = owner_mark() else {
        return Ok(());
    };
    let set = t
        .socket
        .ack(RouteNetlinkMessage::SetLink(alias_request(name, &mark)), 0)
        .await;
    if let Err(errno) = set {
        let mut del = LinkMessage::default();
        del.attributes.push(LinkAttribute::IfName(name.to_string()));
        let _ = t.socket.ack(RouteNetlinkMessage::DelLink(del), 0).await;
        return Err(errno);
    }
    Ok(())
}

/// Why [`create_veth`] failed.
#[derive(Debug)]
pub enum VethError {
    Namespace(Error),
    Kernel(Errno),
}

/// Look a link up by name; `Ok(None)` if there is none.
pub async fn get(t: &Target, name: &str) -> Result<Option<LinkState>> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    get_one(t, msg, || format!("looking up link '{name}' in {}", t.ns)).await
}

/// Look a link up by ifindex; `Ok(None)` if there is none.
pub async fn get_by_index(t: &Target, index: u32) -> Result<Option<LinkState>> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    get_one(t, msg, || format!("looking up ifindex {index} in {}", t.ns)).await
}

/// Send one RTM_GETLINK; ENODEV (no such link) is `Ok(None)`.
async fn get_one(
    t: &Target,
    msg: LinkMessage,
    what: impl FnOnce() -> String,
) -> Result<Option<LinkState>> {
    match t.socket.request(RouteNetlinkMessage::GetLink(msg), 0).await {
        Ok(answers) => Ok(answers.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(LinkState::from_message(l)),
            _ => None,
        })),
        Err(Errno::ENODEV) => Ok(None),
        Err(errno) => Err(Error::kernel(what(), errno)),
    }
}

/// Look a link up by name; a missing link is an error naming it.
pub async fn require(t: &Target, name: &str) -> Result<LinkState> {
    get(t, name)
        .await?
        .ok_or_else(|| Error::link_not_found(name, &t.ns))
}

/// Wait (at most `limit`) until link `name` is operationally up. A new
/// veth end has its carrier at once, but its queueing discipline is only
/// attached when the kernel's linkwatch worker runs; until then packets
/// (the first ARP request, say) are dropped. Returns whether it came up.
pub async fn wait_oper_up(t: &Target, name: &str, limit: std::time::Duration) -> Result<bool> {
    let start = std::time::Instant::now();
    loop {
        if require(t, name).await?.oper_up {
            return Ok(true);
        }
        if start.elapsed() >= limit {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Every link of the namespace, in ifindex order.
pub async fn list(t: &Target) -> Result<Vec<LinkState>> {
    let answers = t
        .socket
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .await
        .map_err(|errno| Error::kernel(format!("listing links of {}", t.ns), errno))?;
    let mut links: Vec<LinkState> = answers
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(LinkState::from_message(l)),
            _ => None,
        })
        .collect();
    links.sort_by_key(|l| l.index);
    Ok(links)
}

/// The hardware (MAC) address of every link of `t` that has one, by name,
/// as `aa:bb:cc:dd:ee:ff` (what CNI results carry).
pub async fn hardware_addresses(t: &Target) -> Result<Vec<(String, String)>> {
    let answers = t
        .socket
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .await
        .map_err(|errno| Error::kernel(format!("listing links of {}", t.ns), errno))?;
    let mut macs = Vec::new();
    for m in &answers {
        let RouteNetlinkMessage::NewLink(l) = m else {
            continue;
        };
        let mut name = None;
        let mut mac = None;
        for attr in &l.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                    mac = Some(
                        bytes
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<Vec<_>>()
                            .join(":"),
                    )
                }
                _ => {}
            }
        }
        if let (Some(name), Some(mac)) = (name, mac) {
            macs.push((name, mac));
        }
    }
    Ok(macs)
}

/// A change to an existing link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
}

impl LinkChange {
    /// The change in `ip link set` words: `["up"]`, `["down", "mtu 1400"]`.
    /// The one wording of a link change (errors, koro's canonical command,
    /// its summary).
    pub fn words(&self) -> Vec<String> {
        let mut words = Vec::new();
        if let Some(up) = self.up {
            words.push(if up { "up" } else { "down" }.to_string());
        }
        if let Some(mtu) = self.mtu {
            words.push(format!("mtu {mtu}"));
        }
        words
    }
}

/// The range of MTUs koko accepts for any link: 68 is the least IPv4
/// allows (RFC 791), 65535 the most an IFLA_MTU of any link kind here takes.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// Check an MTU against [`MTU_RANGE`] (a usage error naming it otherwise).
pub fn check_mtu(mtu: u32) -> Result<u32> {
    if MTU_RANGE.contains(&mtu) {
        Ok(mtu)
    } else {
        Err(Error::Invalid(format!(
            "MTU {mtu} is out of range ({} to {})",
            MTU_RANGE.start(),
            MTU_RANGE.end()
        )))
    }
}

/// The RTM_SETLINK message applying `change` to link `index`.
pub(in crate::net) fn set_request(index: u32, change: LinkChange) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if let Some(up) = change.up {
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
    }
    if let Some(mtu) = change.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    msg
}

/// Set link `name` up or down and/or change its MTU.
pub async fn set(t: &Target, name: &str, change: LinkChange) -> Result<()> {
    let link = require(t, name).await?;
    let what = describe_change(name, &t.ns, change);
    t.socket
        .ack(
            RouteNetlinkMessage::SetLink(set_request(link.index, change)),
            0,
        )
        .await
        .map_err(|errno| match errno {
            Errno::EINVAL if change.mtu.is_some() => Error::Kernel {
                what,
                cause: "the MTU is outside what this link allows".into(),
                errno: Some(errno),
            },
            Errno::ENODEV => Error::link_not_found(name, &t.ns),
            _ => Error::kernel(what, errno),
        })
}

/// Give link `index` a new name (`ip link set dev X name Y`). The link is
/// taken down first: kernels before 6.2 refuse to rename a link that is up.
pub async fn rename(t: &Target, index: u32, new_name: &str) -> Result<()> {
    validate_name(new_name)?;
    let what = || format!("renaming link {index} in {} to '{new_name}'", t.ns);
    let down = LinkChange {
        up: Some(false),
        mtu: None,
    };
    t.socket
        .ack(RouteNetlinkMessage::SetLink(set_request(index, down)), 0)
        .await
        .map_err(|errno| Error::kernel(what(), errno))?;
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::IfName(new_name.to_string()));
    t.socket
        .ack(RouteNetlinkMessage::SetLink(msg), 0)
        .await
        .map_err(|errno| Error::kernel(what(), errno))
}

/// "setting link 'l1' in netns 'a' up mtu 1400": what a link change is
/// doing, for errors.
pub fn describe_change(name: &str, ns: &crate::ns::Namespace, change: LinkChange) -> String {
    format!("setting link '{name}' in {ns} {}", change.words().join(" "))
}

/// The RTM_DELLINK that deletes every link of group `group` in the
/// namespace it is sent in (no name, no index: the kernel's
/// "delete by group" path unregisters them all in one batch, one RCU wait
/// instead of one per link).
pub(in crate::net) fn group_delete_request(group: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    msg
}

/// Delete the links `names` of `t` at once: move them into group `group`
/// (pipelined), then delete that group in one request. `group` must be one
/// no other link of the namespace is in. Links already gone are skipped.
pub async fn delete_many(t: &Target, names: &[String], group: u32) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let moves = names.iter().map(|name| async move {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.clone()),
            LinkAttribute::Group(group),
        ];
        match t.socket.ack(RouteNetlinkMessage::SetLink(msg), 0).await {
            Ok(()) | Err(Errno::ENODEV) => Ok(()),
            Err(errno) => Err(Error::kernel(
                format!("putting link '{name}' in {} into group {group}", t.ns),
                errno,
            )),
        }
    });
    for r in futures::future::join_all(moves).await {
        r?;
    }
    match t
        .socket
        .ack(RouteNetlinkMessage::DelLink(group_delete_request(group)), 0)
        .await
    {
        // ENODEV: no link is in the group (every one was gone already).
        Ok(()) | Err(Errno::ENODEV) => Ok(()),
        Err(errno) => Err(Error::kernel(
            format!("deleting link group {group} in {}", t.ns),
            errno,
        )),
    }
}

/// Delete link `name` (a veth's peer goes with it, wherever it lives).
pub async fn delete(t: &Target, name: &str) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    t.socket
        .ack(RouteNetlinkMessage::DelLink(msg), 0)
        .await
        .map_err(|errno| match errno {
            Errno::ENODEV => Error::link_not_found(name, &t.ns),
            Errno::EOPNOTSUPP => Error::Kernel {
                what: format!("deleting link '{name}' in {}", t.ns),
                cause: "this kind of link cannot be deleted (is it a physical device or lo?)"
                    .into(),
                errno: Some(errno),
            },
            _ => Error::kernel(format!("deleting link '{name}' in {}", t.ns), errno),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kernel_rules() {
        assert!(validate_name("link1").is_ok());
        assert!(validate_name("a23456789012345").is_ok());
        for bad in [
            "",
            "a234567890123456",
            "a/b",
            "a b",
            "a:b",
            ".",
            "..",
            "a\tb",
        ] {
            let err = validate_name(bad).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{bad:?}");
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
        assert!(validate_name("a234567890123456")
            .unwrap_err()
            .to_string()
            .contains("at most 15"));
        // What the kernel's isspace() counts: \v, \f and the byte 0xA0
        // (inside 'à' = C3 A0), besides the usual ones.
        for bad in ["a\u{b}b", "a\u{c}b", "a\u{a0}b", "cafà", "xĠ"] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains("kernel"), "{bad:?}: {err}");
        }
        assert!(validate_name("cafà")
            .unwrap_err()
            .to_string()
            .contains("0xA0"));
        // Other non-ASCII letters are fine with the kernel.
        assert!(validate_name("café").is_ok());
    }

    #[test]
    fn veth_request_puts_the_peer_in_its_namespace_in_one_message() {
        let msg = veth_request(
            "link1",
            "link2",
            42,
            &VethOptions {
                mtu: 9000,
                index: 7,
                peer_index: 8,
                ..VethOptions::default()
            },
        );
        assert!(msg.header.flags.contains(LinkFlags::Up));
        assert_eq!(msg.header.index, 7);
        assert!(msg
            .attributes
            .contains(&LinkAttribute::IfName("link1".into())));
        assert!(msg.attributes.contains(&LinkAttribute::Mtu(9000)));
        let peer = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .expect("peer message");
        assert!(peer
            .attributes
            .contains(&LinkAttribute::IfName("link2".into())));
        assert!(peer.attributes.contains(&LinkAttribute::NetNsFd(42)));
        assert!(peer.attributes.contains(&LinkAttribute::Mtu(9000)));
        assert!(
            !peer.header.flags.contains(LinkFlags::Up) && peer.header.index == 8,
            "the kernel refuses an up peer"
        );
        // No fd for the first end: it is born where the request is sent.
        assert!(!msg
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::NetNsFd(_))));
    }

    #[test]
    fn a_group_delete_names_no_link() {
        let msg = group_delete_request(9);
        assert_eq!(msg.header.index, 0);
        assert_eq!(msg.attributes, vec![LinkAttribute::Group(9)]);
    }

    #[test]
    fn veth_request_tags_both_ends_with_the_group() {
        let msg = veth_request(
            "a",
            "b",
            3,
            &VethOptions {
                group: 77,
                ..VethOptions::default()
            },
        );
        assert!(msg.attributes.contains(&LinkAttribute::Group(77)));
        let text = format!("{msg:?}");
        assert_eq!(text.matches("Group(77)").count(), 2, "{text}");
    }

    #[test]
    fn set_request_only_touches_what_changes() {
        let down = set_request(
            7,
            LinkChange {
                up: Some(false),
                mtu: None,
            },
        );
        assert_eq!(down.header.index, 7);
        assert!(down.header.change_mask.contains(LinkFlags::Up));
        assert!(!down.header.flags.contains(LinkFlags::Up));
        assert!(down.attributes.is_empty());
        let mtu = set_request(
            7,
            LinkChange {
                up: None,
                mtu: Some(1400),
            },
        );
        assert!(mtu.header.change_mask.is_empty());
        assert_eq!(mtu.attributes, vec![LinkAttribute::Mtu(1400)]);
    }
}

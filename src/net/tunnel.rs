//! Links that hang off a parent: vxlan, vlan and macvlan.
//!
//! Such a link belongs to a *parent* (the vxlan's underlay device, the
//! vlan's or macvlan's lower device) and the kernel looks the parent up in
//! the namespace the request is sent in. The original koko therefore created
//! the link next to its parent under a temporary name, then moved and renamed
//! it into the target namespace.
//!
//! koko does it in ONE `RTM_NEWLINK`, sent on the socket of the parent's
//! namespace and carrying `IFLA_NET_NS_FD` of the target: `rtnl_newlink`
//! resolves `IFLA_LINK` / `IFLA_VXLAN_LINK` in the namespace of the request
//! (the "source net") and creates the device directly in the destination
//! namespace under its final name. Measured on this machine (Linux 6.18):
//! the kernel accepts it for vxlan and macvlan; the new link shows
//! `link-netnsid` pointing back at the parent's namespace, and a vxlan keeps
//! its UDP socket in the parent's namespace (the underlay), which is exactly
//! the original's result after its move. So no temporary name ever exists,
//! and a name already taken in the target fails the whole request with
//! nothing created (the original leaked its temp-named link there). vlan would
//! work the same way, but this machine's kernel has no 8021q: the kernel
//! answers EOPNOTSUPP ("Unknown device type"), which koko reports as the
//! missing feature.
//!
//! The link is born down; the caller brings it up on the target's socket and
//! adds addresses afterwards.

use std::net::IpAddr;
use std::os::fd::RawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoVlan, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo,
    LinkLayerType, LinkMessage, MacVlanMode as KernelMacvlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::{link, Target};
use crate::error::{Error, Result};

/// The vxlan defaults of the original koko (and of the IANA): UDP 4789.
pub const VXLAN_PORT: u16 = 4789;

/// A vxlan's parameters. Defaults: port 4789, learning on, no TTL (the
/// kernel's "auto"), no local address, the MTU the kernel derives from the
/// parent (parent's MTU minus 50 for IPv4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanOptions {
    pub remote: IpAddr,
    pub vni: u32,
    pub port: u16,
    pub mtu: Option<u32>,
    pub local: Option<IpAddr>,
    pub ttl: Option<u8>,
    pub learning: bool,
}

impl VxlanOptions {
    pub fn new(remote: IpAddr, vni: u32) -> VxlanOptions {
        VxlanOptions {
            remote,
            vni,
            port: VXLAN_PORT,
            mtu: None,
            local: None,
            ttl: None,
            learning: true,
        }
    }
}

/// A macvlan's mode. `Default` sends no mode at all, so the kernel picks its
/// default, which is vepa: this is what the original did (vishvananda/netlink's
/// MACVLAN_MODE_DEFAULT = 0 omits IFLA_MACVLAN_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Default,
    Private,
    Vepa,
    Bridge,
    Passthru,
}

impl MacvlanMode {
    pub const NAMES: &'static str = "default, private, vepa, bridge, passthru";

    /// A mode by name, in any case (`bridge`, `Bridge`).
    pub fn parse(word: &str) -> Option<MacvlanMode> {
        Some(match word.to_ascii_lowercase().as_str() {
            "default" => MacvlanMode::Default,
            "private" => MacvlanMode::Private,
            "vepa" => MacvlanMode::Vepa,
            "bridge" => MacvlanMode::Bridge,
            "passthru" => MacvlanMode::Passthru,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Default => "default",
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Passthru => "passthru",
        }
    }

    fn kernel(self) -> Option<KernelMacvlanMode> {
        match self {
            MacvlanMode::Default => None,
            MacvlanMode::Private => Some(KernelMacvlanMode::Private),
            MacvlanMode::Vepa => Some(KernelMacvlanMode::Vepa),
            MacvlanMode::Bridge => Some(KernelMacvlanMode::Bridge),
            MacvlanMode::Passthru => Some(KernelMacvlanMode::Passthrough),
        }
    }
}

impl std::str::FromStr for MacvlanMode {
    type Err = Error;

    fn from_str(word: &str) -> Result<MacvlanMode> {
        MacvlanMode::parse(word).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown macvlan mode '{word}' (modes: {})",
                MacvlanMode::NAMES
            ))
        })
    }
}

/// Which kind of link to hang off the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelKind {
    Vxlan(VxlanOptions),
    Vlan { id: u16 },
    Macvlan { mode: MacvlanMode },
}

impl TunnelKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            TunnelKind::Vxlan(_) => "vxlan",
            TunnelKind::Vlan { .. } => "vlan",
            TunnelKind::Macvlan { .. } => "macvlan",
        }
    }

    /// The kernel feature behind this kind, for "this kernel has no ..."
    pub fn feature(&self) -> &'static str {
        match self {
            TunnelKind::Vxlan(_) => "VXLAN support (CONFIG_VXLAN)",
            TunnelKind::Vlan { .. } => "802.1Q VLAN support (CONFIG_VLAN_8021Q)",
            TunnelKind::Macvlan { .. } => "MACVLAN support (CONFIG_MACVLAN)",
        }
    }

    /// A short description: "vxlan (VNI 42, remote 10.9.0.2, port 4789)".
    pub fn describe(&self) -> String {
        match self {
            TunnelKind::Vxlan(v) => format!(
                "vxlan (VNI {}, remote {}, port {})",
                v.vni, v.remote, v.port
            ),
            TunnelKind::Vlan { id } => format!("vlan (id {id})"),
            TunnelKind::Macvlan { mode } => format!("macvlan (mode {})", mode.as_str()),
        }
    }

    /// Check values the parser may not have checked (scripts build these
    /// directly).
    pub fn validate(&self) -> Result<()> {
        match self {
            TunnelKind::Vxlan(v) => {
                if v.vni >= 1 << 24 {
                    return Err(Error::Invalid(format!(
                        "VNI {} is out of range (0 to 16777215)",
                        v.vni
                    )));
                }
                if v.port == 0 {
                    return Err(Error::Invalid(
                        "vxlan port 0 is not a UDP port (1 to 65535)".into(),
                    ));
                }
                if v.remote.is_unspecified() {
                    return Err(Error::Invalid(format!(
                        "vxlan remote {} is the unspecified address: the vxlan would send nowhere",
                        v.remote
                    )));
                }
                if let Some(m) = v.mtu {
                    link::check_mtu(m)?;
                }
                if let Some(local) = v.local {
                    if local.is_ipv4() != v.remote.is_ipv4() {
                        return Err(Error::Invalid(format!(
                            "vxlan local {local} and remote {} are not of the same IP family",
                            v.remote
                        )));
                    }
                }
                Ok(())
            }
            TunnelKind::Vlan { id } if !(1..=4094).contains(id) => Err(Error::Invalid(format!(
                "VLAN id {id} is out of range (1 to 4094)"
            ))),
            _ => Ok(()),
        }
    }
}

/// The RTM_NEWLINK that creates link `name` of `kind` on the parent with
/// ifindex `parent_index` (in the namespace the request is sent in), born in
/// the namespace behind `target_ns_fd` (or beside its parent when `None`).
pub(in crate::net) fn create_request(
    name: &str,
    parent_index: u32,
    target_ns_fd: Option<RawFd>,
    kind: &TunnelKind,
) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    if let Some(fd) = target_ns_fd {
        msg.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    let info = match kind {
        TunnelKind::Vxlan(v) => {
            if let Some(mtu) = v.mtu {
                msg.attributes.push(LinkAttribute::Mtu(mtu));
            }
            // The original: VtepDevIndex = parent (IFLA_VXLAN_LINK), unicast
            // remote as the "group", dstport, learning.
            let mut data = vec![InfoVxlan::Id(v.vni), InfoVxlan::Link(parent_index)];
            data.push(match v.remote {
                IpAddr::V4(a) => InfoVxlan::Group(a),
                IpAddr::V6(a) => InfoVxlan::Group6(a),
            });
            match v.local {
                Some(IpAddr::V4(a)) => data.push(InfoVxlan::Local(a)),
                Some(IpAddr::V6(a)) => data.push(InfoVxlan::Local6(a)),
                None => {}
            }
            if let Some(ttl) = v.ttl {
                data.push(InfoVxlan::Ttl(ttl));
            }
            data.push(InfoVxlan::Learning(v.learning));
            data.push(InfoVxlan::Port(v.port));
            vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(data)),
            ]
        }
        TunnelKind::Vlan { id } => {
            msg.attributes.push(LinkAttribute::Link(parent_index));
            vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(*id)])),
            ]
        }
        TunnelKind::Macvlan { mode } => {
            msg.attributes.push(LinkAttribute::Link(parent_index));
            match mode.kernel() {
                Some(m) => vec![
                    LinkInfo::Kind(InfoKind::MacVlan),
                    LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(m)])),
                ],
                None => vec![LinkInfo::Kind(InfoKind::MacVlan)],
            }
        }
    };
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    msg
}

/// Create link `name` of `kind` on `parent` (a link in `parent_t`'s
/// namespace), born in `target`'s namespace under its final name, down.
pub async fn create(
    parent_t: &Target,
    parent: &str,
    target: &Target,
    name: &str,
    kind: &TunnelKind,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    let parent_link = link::get(parent_t, parent)
        .await?
        .ok_or_else(|| Error::NotFound {
            object: crate::error::Object::link(parent),
            place: Some(parent_t.ns.to_string()),
            cause: Some(format!("wanted as the parent of '{name}'")),
        })?;
    let fd = if target.ns == parent_t.ns {
        None
    } else {
        Some(target.ns.open()?)
    };
    let msg = create_request(
        name,
        parent_link.index,
        fd.as_ref().map(|f| f.as_raw_fd()),
        kind,
    );
    let result = parent_t
        .socket
        .ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
        .await;
    drop(fd);
    let errno = match result {
        Ok(()) => match link::mark_new(target, name).await {
            Ok(()) => return Ok(()),
            Err(errno) => errno,
        },
        Err(errno) => errno,
    };
    let what = format!(
        "creating {} '{name}' on {parent} in {}",
        kind.describe(),
        target.ns
    );
    Err(match errno {
        // "Unknown device type": the kind's module is not in this kernel.
        Errno::EOPNOTSUPP => Error::KernelFeature { what, feature: kind.feature().to_string() },
        Errno::EEXIST => {
            if let Ok(Some(_)) = link::get(target, name).await {
                Error::link_exists(name, &target.ns)
            } else if let TunnelKind::Vxlan(v) = kind {
                Error::Kernel {
                    what,
                    cause: format!(
                        "a vxlan with VNI {} on UDP port {} already exists in {} (a VNI+port pair can be used once per namespace)",
                        v.vni, v.port, parent_t.ns
                    ),
                    errno: Some(errno),
                }
            } else {
                Error::kernel(what, errno)
            }
        }
        Errno::EINVAL if matches!(kind, TunnelKind::Vxlan(VxlanOptions { mtu: Some(_), .. })) => Error::Kernel {
            what,
            cause: format!("the MTU is larger than the parent '{parent}' allows with the vxlan header (EINVAL)"),
            errno: Some(errno),
        },
        Errno::EINVAL | Errno::EBUSY if matches!(kind, TunnelKind::Macvlan { .. }) => {
            let (flags, link_type) = match parent_header(parent_t, parent_link.index).await {
                Some(h) => h,
                None => (LinkFlags::empty(), LinkLayerType::Ether),
            };
            Error::Kernel {
                what,
                cause: explain_macvlan(parent, kind, errno, flags, link_type),
                errno: Some(errno),
            }
        }
        _ => Error::kernel(what, errno),
    })
}

/// The flags and link-layer type of link `index` (what `LinkState` does not
/// keep), to explain a refusal; None if it cannot be read.
async fn parent_header(t: &Target, index: u32) -> Option<(LinkFlags, LinkLayerType)> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    let answers = t
        .socket
        .request(RouteNetlinkMessage::GetLink(msg), 0)
        .await
        .ok()?;
    answers.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some((l.header.flags, l.header.link_layer_type)),
        _ => None,
    })
}

/// Why the kernel refused a macvlan, in words. It answers a bare EINVAL or
/// EBUSY for each of these (drivers/net/macvlan.c):
///
/// - the parent is not an Ethernet device, or is a loopback (`lo`);
/// - a passthru macvlan must be the only macvlan on its parent: asking for
///   one where macvlans exist, or for any macvlan where a passthru one is;
/// - EBUSY: the parent already belongs to another upper device (a bridge
///   or bond port, an ipvlan parent): one receive handler per device.
pub(in crate::net) fn explain_macvlan(
    parent: &str,
    kind: &TunnelKind,
    errno: Errno,
    flags: LinkFlags,
    link_type: LinkLayerType,
) -> String {
    if flags.contains(LinkFlags::Loopback) || link_type == LinkLayerType::Loopback {
        return format!(
            "'{parent}' is a loopback device, and a macvlan needs an Ethernet parent ({errno})"
        );
    }
    if link_type != LinkLayerType::Ether {
        return format!(
            "'{parent}' is not an Ethernet device (link type {link_type:?}), and a macvlan needs one ({errno})"
        );
    }
    if errno == Errno::EBUSY {
        return format!(
            "'{parent}' already belongs to another upper device (a bridge or bond port, an ipvlan parent) and cannot also carry macvlans ({errno})"
        );
    }
    match kind {
        TunnelKind::Macvlan {
            mode: MacvlanMode::Passthru,
        } => format!(
            "a passthru macvlan must be its parent's only macvlan, and '{parent}' already has macvlans (in this or another namespace) ({errno})"
        ),
        _ => format!(
            "'{parent}' already carries a passthru macvlan, which must be the only macvlan on it ({errno})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn info(msg: &LinkMessage) -> Vec<LinkInfo> {
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i.clone()),
                _ => None,
            })
            .expect("IFLA_LINKINFO")
    }

    #[test]
    fn vxlan_request_has_the_originals_defaults_and_goes_straight_to_the_target() {
        let opts = VxlanOptions::new("10.9.0.2".parse().unwrap(), 42);
        let msg = create_request("vx0", 3, Some(9), &TunnelKind::Vxlan(opts));
        assert!(msg
            .attributes
            .contains(&LinkAttribute::IfName("vx0".into())));
        assert!(msg.attributes.contains(&LinkAttribute::NetNsFd(9)));
        // No MTU asked for: the kernel derives it from the parent.
        assert!(!msg
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::Mtu(_))));
        let i = info(&msg);
        assert_eq!(i[0], LinkInfo::Kind(InfoKind::Vxlan));
        let LinkInfo::Data(InfoData::Vxlan(data)) = &i[1] else {
            panic!("{i:?}")
        };
        assert!(data.contains(&InfoVxlan::Id(42)));
        assert!(data.contains(&InfoVxlan::Link(3)));
        assert!(data.contains(&InfoVxlan::Group("10.9.0.2".parse().unwrap())));
        assert!(data.contains(&InfoVxlan::Port(4789)));
        assert!(data.contains(&InfoVxlan::Learning(true)));
        assert!(!data
            .iter()
            .any(|d| matches!(d, InfoVxlan::Ttl(_) | InfoVxlan::Local(_))));
        // The port goes on the wire in network byte order (4789 = 0x12b5).
        let port = InfoVxlan::Port(4789);
        let mut buf = vec![0u8; port.buffer_len()];
        port.emit(&mut buf);
        assert_eq!(&buf[4..6], &[0x12, 0xb5]);
    }

    #[test]
    fn vxlan_request_carries_every_option() {
        let opts = VxlanOptions {
            remote: "fd00::2".parse().unwrap(),
            vni: 7,
            port: 8472,
            mtu: Some(1400),
            local: Some("fd00::1".parse().unwrap()),
            ttl: Some(5),
            learning: false,
        };
        let msg = create_request("vx1", 4, None, &TunnelKind::Vxlan(opts));
        assert!(msg.attributes.contains(&LinkAttribute::Mtu(1400)));
        assert!(!msg
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::NetNsFd(_))));
        let i = info(&msg);
        let LinkInfo::Data(InfoData::Vxlan(data)) = &i[1] else {
            panic!()
        };
        assert!(data.contains(&InfoVxlan::Group6("fd00::2".parse().unwrap())));
        assert!(data.contains(&InfoVxlan::Local6("fd00::1".parse().unwrap())));
        assert!(data.contains(&InfoVxlan::Ttl(5)));
        assert!(data.contains(&InfoVxlan::Learning(false)));
        assert!(data.contains(&InfoVxlan::Port(8472)));
    }

    #[test]
    fn vlan_request_names_parent_and_id() {
        let msg = create_request("eth1.5", 3, Some(9), &TunnelKind::Vlan { id: 5 });
        assert!(msg.attributes.contains(&LinkAttribute::Link(3)));
        assert!(msg.attributes.contains(&LinkAttribute::NetNsFd(9)));
        assert_eq!(
            info(&msg),
            vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(5)]))
            ]
        );
        // The bytes: IFLA_LINKINFO { IFLA_INFO_KIND "vlan", IFLA_INFO_DATA { IFLA_VLAN_ID u16 5 } }.
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let needle = [b'v', b'l', b'a', b'n', 0];
        assert!(
            buf.windows(5).any(|w| w == needle),
            "kind 'vlan' in {buf:?}"
        );
        // IFLA_VLAN_ID: len 6, type 1, value 5 (host order).
        assert!(buf.windows(6).any(|w| w == [6, 0, 1, 0, 5, 0]), "{buf:?}");
    }

    #[test]
    fn macvlan_default_mode_sends_no_mode() {
        let msg = create_request(
            "mv0",
            3,
            None,
            &TunnelKind::Macvlan {
                mode: MacvlanMode::Default,
            },
        );
        assert_eq!(info(&msg), vec![LinkInfo::Kind(InfoKind::MacVlan)]);
        for (mode, kernel) in [
            (MacvlanMode::Private, KernelMacvlanMode::Private),
            (MacvlanMode::Vepa, KernelMacvlanMode::Vepa),
            (MacvlanMode::Bridge, KernelMacvlanMode::Bridge),
            (MacvlanMode::Passthru, KernelMacvlanMode::Passthrough),
        ] {
            let msg = create_request("mv0", 3, None, &TunnelKind::Macvlan { mode });
            assert_eq!(
                info(&msg)[1],
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(kernel)])),
                "{mode:?}"
            );
            assert_eq!(MacvlanMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(MacvlanMode::parse("fancy"), None);
        assert_eq!(
            "Bridge".parse::<MacvlanMode>().unwrap(),
            MacvlanMode::Bridge
        );
        let e = "fancy".parse::<MacvlanMode>().unwrap_err();
        assert!(
            e.to_string().contains("'fancy'") && e.to_string().contains(MacvlanMode::NAMES),
            "{e}"
        );
    }

    #[test]
    fn macvlan_refusals_are_explained() {
        let ether = (LinkFlags::Up, LinkLayerType::Ether);
        let passthru = TunnelKind::Macvlan {
            mode: MacvlanMode::Passthru,
        };
        let bridge = TunnelKind::Macvlan {
            mode: MacvlanMode::Bridge,
        };
        let lo = explain_macvlan(
            "lo",
            &bridge,
            Errno::EINVAL,
            LinkFlags::Loopback,
            LinkLayerType::Loopback,
        );
        assert!(lo.contains("loopback"), "{lo}");
        let second = explain_macvlan("eth1", &passthru, Errno::EINVAL, ether.0, ether.1);
        assert!(second.contains("only macvlan"), "{second}");
        assert!(second.contains("already has macvlans"), "{second}");
        let after = explain_macvlan("eth1", &bridge, Errno::EINVAL, ether.0, ether.1);
        assert!(after.contains("already carries a passthru"), "{after}");
        let busy = explain_macvlan("eth1", &bridge, Errno::EBUSY, ether.0, ether.1);
        assert!(busy.contains("another upper device"), "{busy}");
        let tun = explain_macvlan(
            "tun0",
            &bridge,
            Errno::EINVAL,
            LinkFlags::Up,
            LinkLayerType::None,
        );
        assert!(tun.contains("not an Ethernet device"), "{tun}");
    }

    #[test]
    fn validation_catches_what_scripts_might_pass() {
        let mut v = VxlanOptions::new("10.0.0.1".parse().unwrap(), 1 << 24);
        assert!(TunnelKind::Vxlan(v.clone()).validate().is_err());
        v.vni = 1;
        assert!(TunnelKind::Vxlan(v.clone()).validate().is_ok());
        v.local = Some("fd00::1".parse().unwrap());
        assert!(TunnelKind::Vxlan(v)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("family"));
        assert!(TunnelKind::Vlan { id: 4095 }.validate().is_err());
        assert!(TunnelKind::Vlan { id: 0 }.validate().is_err());
        assert!(TunnelKind::Vlan { id: 4094 }.validate().is_ok());
    }
}

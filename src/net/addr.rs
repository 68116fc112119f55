//! IP addresses on links (IPv4 and IPv6), like `ip address add|del|show`.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::{link, Target};
use crate::error::{Error, Result};

/// Parse `ADDR/PREFIX` as an interface address (host bits allowed, prefix
/// required), with a message that says what is wrong.
pub fn parse_cidr(text: &str) -> Result<IpNet> {
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(Error::Invalid(match text.parse::<IpAddr>() {
            Ok(ip) => format!(
                "address '{text}' has no prefix length (write it as {ip}/{})",
                if ip.is_ipv4() { 24 } else { 64 }
            ),
            Err(_) => format!("'{text}' is not an address with a prefix length (e.g. 10.0.1.1/24)"),
        }));
    };
    parse_prefix(addr, prefix, &format!("address '{text}'"))
}

/// `ADDR` and `LEN` of an `ADDR/LEN` checked together: the one prefix
/// parser behind addresses and route destinations. `what` names the whole
/// word in errors ("address '10.0.0.1/33'", "route destination '...'").
pub fn parse_prefix(addr: &str, len: &str, what: &str) -> Result<IpNet> {
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| Error::Invalid(format!("{what}: '{addr}' is not an IPv4 or IPv6 address")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = len.parse().ok().filter(|l| *l <= max).ok_or_else(|| {
        Error::Invalid(format!(
            "{what}: prefix length '{len}' is not a number from 0 to {max}"
        ))
    })?;
    Ok(IpNet::new(ip, len).expect("length checked against the family"))
}

/// Refuse, up front, an address the kernel would not put on a link as
/// asked:
///
/// - IPv4 `0.0.0.0/N`: the kernel answers "done" and silently adds nothing
///   (`__inet_insert_ifa` drops an all-zero local address), so koko would
///   report an address that is not there;
/// - IPv6 `::/N` (unspecified) and multicast: refused with a bare
///   EADDRNOTAVAIL.
pub fn check_assignable(addr: IpNet) -> Result<()> {
    let why = match addr.addr() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            "it is the unspecified address 0.0.0.0, which the kernel silently ignores"
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            "it is the unspecified address ::, which the kernel refuses"
        }
        IpAddr::V6(ip) if ip.is_multicast() => {
            "it is a multicast address; a link joins a group, it does not own its address"
        }
        _ => return Ok(()),
    };
    Err(Error::Invalid(format!(
        "address {addr} cannot be put on a link: {why}"
    )))
}

/// The RTM_NEWADDR / RTM_DELADDR body for `addr` on link `index`.
pub(in crate::net) fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = addr.prefix_len();
    msg.header.scope = AddressScope::Universe;
    match addr {
        IpNet::V4(v4) => {
            msg.header.family = AddressFamily::Inet;
            let ip = IpAddr::V4(v4.addr());
            msg.attributes.push(AddressAttribute::Local(ip));
            msg.attributes.push(AddressAttribute::Address(ip));
            // Like the original koko (vishvananda/netlink), set the broadcast
            // address for subnets that have one.
            if v4.prefix_len() < 31 {
                msg.attributes
                    .push(AddressAttribute::Broadcast(v4.broadcast()));
            }
        }
        IpNet::V6(v6) => {
            msg.header.family = AddressFamily::Inet6;
            msg.attributes
                .push(AddressAttribute::Address(IpAddr::V6(v6.addr())));
        }
    }
    msg
}

/// Add `addr` to link `name`. An IPv6 address first makes sure IPv6 is
/// enabled on the link (Docker disables it in many containers).
pub async fn add(t: &Target, name: &str, addr: IpNet) -> Result<()> {
    check_assignable(addr)?;
    let link = link::require(t, name).await?;
    if addr.addr().is_ipv6() {
        super::sysctl::enable_ipv6_on(&t.ns, name)?;
    }
    let what = format!("adding address {addr} to '{name}' in {}", t.ns);
    t.socket
        .ack(
            RouteNetlinkMessage::NewAddress(address_message(link.index, addr)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        .map_err(|errno| match errno {
            Errno::EEXIST => Error::Kernel {
                what: format!("address {addr}"),
                cause: format!("already on {name} in {}", t.ns),
                errno: Some(errno),
            },
            Errno::EACCES | Errno::EAFNOSUPPORT if addr.addr().is_ipv6() => Error::Kernel {
                what,
                cause: "IPv6 is disabled in this namespace".into(),
                errno: Some(errno),
            },
            Errno::EADDRNOTAVAIL if addr.addr().is_loopback() => Error::Kernel {
                what,
                cause: format!(
                    "the kernel allows the loopback address {} only on a loopback device (lo), and '{name}' is not one",
                    addr.addr()
                ),
                errno: Some(errno),
            },
            _ => Error::kernel(what, errno),
        })
}

/// Remove `addr` from link `name`.
pub async fn del(t: &Target, name: &str, addr: IpNet) -> Result<()> {
    let link = link::require(t, name).await?;
    t.socket
        .ack(
            RouteNetlinkMessage::DelAddress(address_message(link.index, addr)),
            0,
        )
        .await
        .map_err(|errno| match errno {
            Errno::EADDRNOTAVAIL | Errno::ENOENT | Errno::ESRCH => Error::Kernel {
                what: format!("address {addr}"),
                cause: format!("is not on {name} in {}", t.ns),
                errno: Some(errno),
            },
            _ => Error::kernel(
                format!("removing address {addr} from '{name}' in {}", t.ns),
                errno,
            ),
        })
}

/// One address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddrState {
    /// ifindex of the link it is on.
    pub index: u32,
    pub addr: IpNet,
}

/// Every address in the namespace (both families).
pub async fn list(t: &Target) -> Result<Vec<AddrState>> {
    let answers = t
        .socket
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
        .await
        .map_err(|errno| Error::kernel(format!("listing addresses of {}", t.ns), errno))?;
    let mut out = Vec::new();
    for m in answers {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        if let Some(net) = own_address(&a) {
            out.push(AddrState {
                index: a.header.index,
                addr: net,
            });
        }
    }
    Ok(out)
}

/// The interface's own address and prefix in an address message.
/// IFA_LOCAL is the interface's own address for IPv4 (IFA_ADDRESS is the
/// peer's on point-to-point links); IPv6 only sends IFA_ADDRESS.
pub fn own_address(a: &AddressMessage) -> Option<IpNet> {
    let local = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    IpNet::new(local.or(address)?, a.header.prefix_len).ok()
}

/// The addresses of link `ifindex` that the kernel deletes when the link
/// goes down: its IPv6 addresses except link-local ones (unless the
/// namespace set `keep_addr_on_down`, which is not the default; IPv4
/// addresses stay). Saved before a link is set down so an undo can put
/// them back.
pub async fn flushed_by_down(t: &Target, ifindex: u32) -> Result<Vec<IpNet>> {
    Ok(list(t)
        .await?
        .into_iter()
        .filter(|a| a.index == ifindex)
        .filter_map(|a| match a.addr {
            IpNet::V6(v6) if !v6.addr().is_unicast_link_local() => Some(a.addr),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_checked_with_clear_words() {
        assert_eq!(
            parse_cidr("10.0.1.1/24").unwrap().to_string(),
            "10.0.1.1/24"
        );
        assert_eq!(
            parse_cidr("2001:DB8::1/64").unwrap().to_string(),
            "2001:db8::1/64"
        );
        let e = parse_cidr("10.0.0.300/24").unwrap_err().to_string();
        assert!(
            e.contains("'10.0.0.300' is not an IPv4 or IPv6 address"),
            "{e}"
        );
        let e = parse_cidr("10.0.0.1").unwrap_err().to_string();
        assert!(
            e.contains("no prefix length") && e.contains("10.0.0.1/24"),
            "{e}"
        );
        let e = parse_cidr("10.0.0.1/33").unwrap_err().to_string();
        assert!(e.contains("'33'") && e.contains("0 to 32"), "{e}");
        assert!(parse_cidr("::1/129").is_err());
        assert!(parse_cidr("10.0.0.1/").is_err());
    }

    #[test]
    fn ipv4_message_carries_local_and_broadcast() {
        let m = address_message(5, "10.0.1.1/24".parse().unwrap());
        assert_eq!(m.header.index, 5);
        assert_eq!(m.header.prefix_len, 24);
        assert_eq!(m.header.family, AddressFamily::Inet);
        assert!(m
            .attributes
            .contains(&AddressAttribute::Local("10.0.1.1".parse().unwrap())));
        assert!(m
            .attributes
            .contains(&AddressAttribute::Broadcast("10.0.1.255".parse().unwrap())));
        let p2p = address_message(5, "10.0.1.1/31".parse().unwrap());
        assert!(!p2p
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Broadcast(_))));
    }

    #[test]
    fn ipv6_message_is_inet6() {
        let m = address_message(2, "2001:db8::1/64".parse().unwrap());
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert_eq!(
            m.attributes,
            vec![AddressAttribute::Address("2001:db8::1".parse().unwrap())]
        );
    }
}

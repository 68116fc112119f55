//! Links in scripts: `veth(a, "l1", b, "l2")`, `ns.link("eth0")`,
//! `ns.links()`, and a link's properties and changes (`link.up()`,
//! `.set_mtu(n)`, `.add_addr(cidr)`, `.delete()`).
//!
//! A `Link` is a name in a namespace (plus its peer, for a veth koko made);
//! every read goes to the kernel, so `link.state` is "gone" once the
//! namespace or the link has vanished. Changes go through the same
//! executor as `ns.ip("link set ...")` / `ns.ip("address add ...")`, so the
//! old state is journaled and put back on undo, also for links the run did
//! not create.

use rhai::{Array, Dynamic, Engine, Map};
use serde::{Deserialize, Serialize};

use super::api::{cidrs, fail, invalid, query, to_value, with_world, LinkRef, NsRef, R};
use super::options::from_map;
use super::SharedWorld;
use crate::connect::{self, EndRequest, VethRequest};
use crate::ipcmd::{AddrOp, IpCommand};
use crate::net::addr::parse_cidr;
use crate::net::link::{self, LinkChange, LinkState, VethOptions};

/// The options of `veth(...)`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct VethOpts {
    mtu: Option<u32>,
    a_addrs: Vec<String>,
    b_addrs: Vec<String>,
}

/// One entry of `ns.links()`: the kernel's view of the link, plus the
/// `state` word scripts compare against.
#[derive(Serialize)]
struct LinkEntry<'a> {
    #[serde(flatten)]
    link: &'a LinkState,
    state: &'static str,
}

fn veth(
    world: &SharedWorld,
    a: &NsRef,
    name_a: &str,
    b: &NsRef,
    name_b: &str,
    opts: &Map,
) -> R<LinkRef> {
    let o: VethOpts = from_map("veth", opts)?;
    let mut options = VethOptions::default();
    if let Some(mtu) = o.mtu {
        options.mtu = mtu;
    }
    let req = VethRequest {
        a: EndRequest {
            ns: a.0.clone(),
            name: name_a.to_string(),
            addrs: cidrs(&o.a_addrs)?,
        },
        b: EndRequest {
            ns: b.0.clone(),
            name: name_b.to_string(),
            addrs: cidrs(&o.b_addrs)?,
        },
        options,
    };
    with_world(world, |session, journal| {
        connect::veth(session, journal, &req)
    })?;
    Ok(LinkRef {
        ns: a.0.clone(),
        name: name_a.to_string(),
        peer: Some((b.0.clone(), name_b.to_string())),
    })
}

/// Run one `ip`-style command in the link's namespace (journaled).
pub(crate) fn apply_ip(
    world: &SharedWorld,
    ns: &crate::ns::Namespace,
    cmd: &IpCommand,
) -> R<String> {
    with_world(world, |session, journal| {
        crate::ipcmd::apply(session, journal, ns, cmd)
    })
}

/// `link.up()`, `.down()`, `.set_mtu(n)`.
fn change(world: &SharedWorld, l: &LinkRef, change: LinkChange) -> R<()> {
    let cmd = IpCommand::LinkSet {
        dev: l.name.clone(),
        change,
    };
    apply_ip(world, &l.ns, &cmd).map(|_| ())
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(
        engine,
        "veth",
        /// veth pair, end name_a in namespace a, name_b in b, both up; returns the end in a
        move |a: NsRef, name_a: &str, b: NsRef, name_b: &str| -> R<LinkRef> {
            veth(&w, &a, name_a, &b, name_b, &Map::new())
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "veth",
        /// the same with options #{mtu, a_addrs: ["10.0.1.1/24"], b_addrs: [...]}
        move |a: NsRef, name_a: &str, b: NsRef, name_b: &str, opts: Map| -> R<LinkRef> {
            veth(&w, &a, name_a, &b, name_b, &opts)
        }
    );

    let w = world.clone();
    sys!(
        engine,
        "link",
        /// an existing link of the namespace (error if there is none by that name)
        move |ns: &mut NsRef, name: &str| -> R<LinkRef> {
            query(&w, &ns.0, async |t| link::require(t, name).await)?;
            Ok(LinkRef {
                ns: ns.0.clone(),
                name: name.to_string(),
                peer: None,
            })
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "links",
        /// links of the namespace, read from the kernel: [#{name, index, kind, state, mtu, up, ...}]
        move |ns: &mut NsRef| -> R<Array> {
            let links = query(&w, &ns.0, async |t| link::list(t).await)?;
            Ok(links
                .iter()
                .map(|l| {
                    to_value(&LinkEntry {
                        link: l,
                        state: l.state_word(),
                    })
                })
                .collect())
        }
    );

    getter!(
        engine,
        "name",
        /// the link's name: "link1"
        |l: &mut LinkRef| -> String { l.name.clone() }
    );
    getter!(
        engine,
        "ns",
        /// the namespace the link is in
        |l: &mut LinkRef| -> NsRef { NsRef(l.ns.clone()) }
    );
    getter!(
        engine,
        "peer",
        /// the other end of a veth koko created (a Link), or ()
        |l: &mut LinkRef| -> Dynamic {
            match &l.peer {
                Some((ns, name)) => Dynamic::from(LinkRef {
                    ns: ns.clone(),
                    name: name.clone(),
                    peer: Some((l.ns.clone(), l.name.clone())),
                }),
                None => Dynamic::UNIT,
            }
        }
    );
    func!(
        engine,
        "to_string",
        /// the link as text: "link1 in netns 'client'"
        |l: &mut LinkRef| -> String { format!("{} in {}", l.name, l.ns) }
    );
    func!(
        engine,
        "to_debug",
        /// the link as the REPL shows it: "Link(link1 in netns 'client')"
        |l: &mut LinkRef| -> String { format!("Link({} in {})", l.name, l.ns) }
    );
    let w = world.clone();
    getter!(
        engine,
        "state",
        /// "up" / "down" / "gone", read from the kernel
        move |l: &mut LinkRef| -> String {
            if !l.ns.exists() {
                return "gone".into();
            }
            match query(&w, &l.ns, async |t| link::get(t, &l.name).await) {
                Ok(Some(s)) => s.state_word().into(),
                _ => "gone".into(),
            }
        }
    );

    // `#[doc = doc]`: the doc comment of each entry of the loop.
    for (name, up, doc) in [
        ("up", true, " set the link up"),
        ("down", false, " set the link down"),
    ] {
        let w = world.clone();
        sys!(
            engine,
            name,
            #[doc = doc]
            move |link: &mut LinkRef| -> R<()> {
                change(
                    &w,
                    link,
                    LinkChange {
                        up: Some(up),
                        mtu: None,
                    },
                )
            }
        );
    }
    let w = world.clone();
    sys!(
        engine,
        "set_mtu",
        /// change the link's MTU
        move |link: &mut LinkRef, mtu: i64| -> R<()> {
            let mtu =
                u32::try_from(mtu).map_err(|_| invalid(format!("MTU {mtu} is out of range")))?;
            change(&w, link, LinkChange { up: None, mtu: Some(mtu) })
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "delete",
        /// delete the link (a veth's peer goes too)
        move |link: &mut LinkRef| -> R<()> {
            let world = w.borrow();
            connect::delete_link(&world.session, &link.ns, &link.name).map_err(fail)
        }
    );
    // `#[doc = doc]`: the doc comment of each entry of the loop.
    for (name, op, doc) in [
        (
            "add_addr",
            AddrOp::Add,
            " add an address, IPv4 or IPv6: \"10.0.1.1/24\"",
        ),
        (
            "del_addr",
            AddrOp::Del,
            " remove an address: \"10.0.1.1/24\"",
        ),
    ] {
        let w = world.clone();
        sys!(
            engine,
            name,
            #[doc = doc]
            move |link: &mut LinkRef, cidr: &str| -> R<()> {
                let cmd = IpCommand::Address {
                    op,
                    addr: parse_cidr(cidr).map_err(fail)?,
                    dev: link.name.clone(),
                };
                apply_ip(&w, &link.ns, &cmd).map(|_| ())
            }
        );
    }
}

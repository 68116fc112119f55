//! Script bindings for links hung off a parent (vxlan, vlan, macvlan) and for
//! traffic mirroring: thin conversions of option maps into the typed requests
//! of [`connect::tunnel`] and [`connect::mirror`], recorded in the run's
//! journal like every other object.
//!
//! ```rhai
//! let l = vxlan(ca, "vx0", #{parent: "eth1", remote: "10.9.0.2", vni: 42,
//!                            port: 4789, mtu: 1450, parent_ns: hostA,
//!                            addrs: ["10.10.0.1/24"]});
//! vlan(ns, "eth1.10", #{parent: "eth1", id: 10});
//! macvlan(ns, "mv0", #{parent: "eth1", mode: "bridge"});
//! monitor.mirror("both", source);   // copy source's traffic out through monitor
//! ```
//!
//! `parent_ns:` holds a namespace, a koko object rather than data: it is
//! taken out of the map before the rest is deserialised (its field in the
//! option structs only makes the key allowed).

use std::ops::RangeInclusive;

use rhai::{Engine, Map};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::api::{cidrs, fail, invalid, parse_ip, with_world, LinkRef, NsRef, R};
use super::options::from_map;
use super::SharedWorld;
use crate::connect::{self, EndRequest, MirrorRequest, TunnelRequest};
use crate::net::tc::MirrorDir;
use crate::net::tunnel::{MacvlanMode, TunnelKind, VxlanOptions, VXLAN_PORT};
use crate::ns::Namespace;

/// The options of `vxlan(...)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VxlanOpts {
    parent: String,
    #[serde(default, rename = "parent_ns")]
    _parent_ns: Option<IgnoredAny>,
    #[serde(default)]
    addrs: Vec<String>,
    remote: String,
    vni: u32,
    port: Option<u16>,
    mtu: Option<u32>,
    local: Option<String>,
    ttl: Option<u8>,
    learning: Option<bool>,
}

/// The options of `vlan(...)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VlanOpts {
    parent: String,
    #[serde(default, rename = "parent_ns")]
    _parent_ns: Option<IgnoredAny>,
    #[serde(default)]
    addrs: Vec<String>,
    id: u16,
}

/// The options of `macvlan(...)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MacvlanOpts {
    parent: String,
    #[serde(default, rename = "parent_ns")]
    _parent_ns: Option<IgnoredAny>,
    #[serde(default)]
    addrs: Vec<String>,
    mode: Option<String>,
}

/// Take `parent_ns:` (an Ns) out of the map; default koko's own namespace.
fn parent_ns(function: &str, map: &mut Map) -> R<Namespace> {
    match map.get_mut("parent_ns") {
        None => Namespace::current().map_err(fail),
        Some(v) => {
            // What stays in the map is `()`, which reads as "not given".
            let ns = std::mem::take(v);
            ns.clone().try_cast::<NsRef>().map(|n| n.0).ok_or_else(|| {
                invalid(format!(
                    "{function}(): option 'parent_ns' must be a namespace (netns(..), host(), ...), not {}",
                    super::options::found(&ns)
                ))
            })
        }
    }
}

/// A number within what the kernel accepts.
fn in_range(function: &str, key: &str, n: u32, range: RangeInclusive<u32>) -> R<u32> {
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(invalid(format!(
            "{function}(): option '{key}' is {n}, out of range ({} to {})",
            range.start(),
            range.end()
        )))
    }
}

/// What a tunnel's options say: its parent link, its addresses, its kind.
struct Spec {
    parent: String,
    addrs: Vec<String>,
    kind: TunnelKind,
}

/// Create the link `name` in `ns` from the options map of `function`.
fn create(
    world: &SharedWorld,
    function: &str,
    ns: &NsRef,
    name: &str,
    mut map: Map,
    spec: fn(&Map) -> R<Spec>,
) -> R<LinkRef> {
    let parent_ns = parent_ns(function, &mut map)?;
    let Spec {
        parent,
        addrs,
        kind,
    } = spec(&map)?;
    let req = TunnelRequest {
        parent_ns,
        parent,
        end: EndRequest {
            ns: ns.0.clone(),
            name: name.to_string(),
            addrs: cidrs(&addrs)?,
        },
        kind,
    };
    with_world(world, |session, journal| {
        connect::tunnel(session, journal, &req)
    })?;
    Ok(LinkRef {
        ns: ns.0.clone(),
        name: name.to_string(),
        peer: None,
    })
}

fn vxlan(map: &Map) -> R<Spec> {
    let f = "vxlan";
    let o: VxlanOpts = from_map(f, map)?;
    let vni = in_range(f, "vni", o.vni, 0..=(1 << 24) - 1)?;
    let mut v = VxlanOptions::new(parse_ip(&o.remote)?, vni);
    v.port = o.port.unwrap_or(VXLAN_PORT);
    if v.port == 0 {
        return Err(invalid(
            "vxlan(): option 'port' is 0, out of range (1 to 65535)",
        ));
    }
    v.mtu = o
        .mtu
        .map(|m| in_range(f, "mtu", m, crate::net::link::MTU_RANGE))
        .transpose()?;
    v.local = o.local.as_deref().map(parse_ip).transpose()?;
    v.ttl = o.ttl;
    if v.ttl == Some(0) {
        return Err(invalid(
            "vxlan(): option 'ttl' is 0, out of range (1 to 255)",
        ));
    }
    if let Some(l) = o.learning {
        v.learning = l;
    }
    Ok(Spec {
        parent: o.parent,
        addrs: o.addrs,
        kind: TunnelKind::Vxlan(v),
    })
}

fn vlan(map: &Map) -> R<Spec> {
    let o: VlanOpts = from_map("vlan", map)?;
    let id = in_range("vlan", "id", o.id.into(), 1..=4094)? as u16;
    Ok(Spec {
        parent: o.parent,
        addrs: o.addrs,
        kind: TunnelKind::Vlan { id },
    })
}

fn macvlan(map: &Map) -> R<Spec> {
    let o: MacvlanOpts = from_map("macvlan", map)?;
    let mode = match o.mode {
        None => MacvlanMode::Default,
        Some(m) => m
            .parse::<MacvlanMode>()
            .map_err(|e| invalid(format!("macvlan(): {e}")))?,
    };
    Ok(Spec {
        parent: o.parent,
        addrs: o.addrs,
        kind: TunnelKind::Macvlan { mode },
    })
}

fn mirror(world: &SharedWorld, target: &LinkRef, dir: &str, source: &LinkRef) -> R<()> {
    let dir: MirrorDir = dir.parse().map_err(|e| invalid(format!("mirror: {e}")))?;
    if source.ns != target.ns {
        return Err(invalid(format!(
            "mirror: the source '{}' is in {} but the link '{}' is in {}: both must be in the same namespace",
            source.name, source.ns, target.name, target.ns
        )));
    }
    let req = MirrorRequest {
        ns: target.ns.clone(),
        source: source.name.clone(),
        dir,
        target: target.name.clone(),
    };
    with_world(world, |session, journal| {
        connect::mirror(session, journal, &req)
    })
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    type ReadSpec = fn(&Map) -> R<Spec>;
    // `#[doc = doc]`: the doc comment of each entry of the loop.
    for (function, doc, spec) in [
        ("vxlan", " vxlan on a parent link (in koko's namespace unless parent_ns), put in ns, up; opts #{parent, remote, vni[, port, mtu, parent_ns, local, ttl, learning, addrs]}", vxlan as ReadSpec),
        ("vlan", " 802.1Q vlan on a parent link, put in ns, up; opts #{parent, id[, parent_ns, addrs]}", vlan),
        ("macvlan", " macvlan on a parent link, put in ns, up; opts #{parent[, mode (bridge, private, vepa, passthru), parent_ns, addrs]}", macvlan),
    ] {
        let w = world.clone();
        sys!(
            engine,
            function,
            #[doc = doc]
            move |ns: NsRef, name: &str, opts: Map| -> R<LinkRef> { create(&w, function, &ns, name, opts, spec) }
        );
    }
    let w = world.clone();
    sys!(
        engine,
        "mirror",
        /// copy the source link's traffic ("ingress", "egress" or "both") out through this link (same namespace)
        move |link: &mut LinkRef, direction: &str, source: LinkRef| -> R<()> {
            mirror(&w, link, direction, &source)
        }
    );
}

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

use std::net::IpAddr;

use rhai::{Dynamic, Engine, Map};

use super::api::{fail, LinkRef, NsRef};
use super::SharedWorld;
use crate::connect::{self, EndRequest, MirrorRequest, TunnelRequest};
use crate::error::Error;
use crate::net::addr::parse_cidr;
use crate::net::tc::MirrorDir;
use crate::net::tunnel::{MacvlanMode, TunnelKind, VxlanOptions, VXLAN_PORT};
use crate::ns::Namespace;

type R<T> = Result<T, Box<rhai::EvalAltResult>>;

fn invalid(msg: impl Into<String>) -> Box<rhai::EvalAltResult> {
    fail(Error::Invalid(msg.into()))
}

/// The options of one call, checked against the known keys.
struct Opts<'a> {
    what: &'a str,
    map: &'a Map,
}

impl Opts<'_> {
    fn check(&self, known: &[&str]) -> R<()> {
        for k in self.map.keys() {
            if !known.contains(&k.as_str()) {
                return Err(invalid(format!(
                    "{}: unknown option '{k}' (known: {})",
                    self.what,
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key)
    }

    fn string(&self, key: &str) -> R<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.clone().into_string().map(Some).map_err(|t| {
                invalid(format!(
                    "{} option {key}: expected a string, found {t}",
                    self.what
                ))
            }),
        }
    }

    fn required_string(&self, key: &str, example: &str) -> R<String> {
        self.string(key)?.ok_or_else(|| {
            invalid(format!(
                "{}: option {key} is required (e.g. {key}: {example})",
                self.what
            ))
        })
    }

    fn int(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> R<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let n = v.as_int().map_err(|t| {
                    invalid(format!(
                        "{} option {key}: expected an integer, found {t}",
                        self.what
                    ))
                })?;
                if !range.contains(&n) {
                    return Err(invalid(format!(
                        "{} option {key}: {n} is out of range ({} to {})",
                        self.what,
                        range.start(),
                        range.end()
                    )));
                }
                Ok(Some(n))
            }
        }
    }

    fn ip(&self, key: &str) -> R<Option<IpAddr>> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                invalid(format!(
                    "{} option {key}: '{s}' is not an IP address",
                    self.what
                ))
            }),
        }
    }

    /// `parent_ns:` (an Ns), default koko's own namespace.
    fn parent_ns(&self) -> R<Namespace> {
        match self.get("parent_ns") {
            None => Namespace::current().map_err(fail),
            Some(v) => v.clone().try_cast::<NsRef>().map(|n| n.0).ok_or_else(|| {
                invalid(format!(
                    "{} option parent_ns: expected a namespace (netns(..), host(), ...), found {}",
                    self.what,
                    v.type_name()
                ))
            }),
        }
    }

    /// `addrs: ["10.0.0.1/24", ...]`.
    fn addrs(&self) -> R<Vec<ipnet::IpNet>> {
        let Some(v) = self.get("addrs") else {
            return Ok(Vec::new());
        };
        let list = v.clone().into_array().map_err(|t| {
            invalid(format!(
                "{} option addrs: expected an array of \"ADDR/PREFIX\", found {t}",
                self.what
            ))
        })?;
        list.into_iter()
            .map(|a| {
                let s = a.into_string().map_err(|t| {
                    invalid(format!(
                        "{} option addrs: expected strings, found {t}",
                        self.what
                    ))
                })?;
                parse_cidr(&s).map_err(fail)
            })
            .collect()
    }
}

fn create(
    world: &SharedWorld,
    ns: &NsRef,
    name: &str,
    opts: &Opts,
    kind: TunnelKind,
) -> R<LinkRef> {
    let req = TunnelRequest {
        parent_ns: opts.parent_ns()?,
        parent: opts.required_string("parent", "\"eth1\"")?,
        end: EndRequest {
            ns: ns.0.clone(),
            name: name.to_string(),
            addrs: opts.addrs()?,
        },
        kind,
    };
    let mut w = world.borrow_mut();
    let super::World {
        session, journal, ..
    } = &mut *w;
    connect::tunnel(session, journal, &req).map_err(fail)?;
    Ok(LinkRef {
        ns: ns.0.clone(),
        name: name.to_string(),
        peer: None,
    })
}

const COMMON: &[&str] = &["parent", "parent_ns", "addrs"];

fn known(extra: &[&'static str]) -> Vec<&'static str> {
    COMMON.iter().chain(extra).copied().collect()
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(engine, "vxlan", move |ns: NsRef,
                                name: &str,
                                map: Map|
          -> R<LinkRef> {
        let opts = Opts {
            what: "vxlan",
            map: &map,
        };
        opts.check(&known(&[
            "remote", "vni", "port", "mtu", "local", "ttl", "learning",
        ]))?;
        let remote = opts.ip("remote")?.ok_or_else(|| {
            invalid("vxlan: option remote is required (e.g. remote: \"10.9.0.2\")")
        })?;
        let vni = opts
            .int("vni", 0..=(1 << 24) - 1)?
            .ok_or_else(|| invalid("vxlan: option vni is required (e.g. vni: 42)"))?;
        let mut v = VxlanOptions::new(remote, vni as u32);
        v.port = opts.int("port", 1..=65535)?.unwrap_or(VXLAN_PORT as i64) as u16;
        v.mtu = opts.int("mtu", 68..=65535)?.map(|m| m as u32);
        v.local = opts.ip("local")?;
        v.ttl = opts.int("ttl", 1..=255)?.map(|t| t as u8);
        if let Some(l) = opts.get("learning") {
            v.learning = l.as_bool().map_err(|t| {
                invalid(format!(
                    "vxlan option learning: expected true or false, found {t}"
                ))
            })?;
        }
        create(&w, &ns, name, &opts, TunnelKind::Vxlan(v))
    });
    let w = world.clone();
    sys!(engine, "vlan", move |ns: NsRef,
                               name: &str,
                               map: Map|
          -> R<LinkRef> {
        let opts = Opts {
            what: "vlan",
            map: &map,
        };
        opts.check(&known(&["id"]))?;
        let id = opts
            .int("id", 1..=4094)?
            .ok_or_else(|| invalid("vlan: option id is required (e.g. id: 10)"))?;
        create(&w, &ns, name, &opts, TunnelKind::Vlan { id: id as u16 })
    });
    let w = world.clone();
    sys!(engine, "macvlan", move |ns: NsRef,
                                  name: &str,
                                  map: Map|
          -> R<LinkRef> {
        let opts = Opts {
            what: "macvlan",
            map: &map,
        };
        opts.check(&known(&["mode"]))?;
        let mode = match opts.string("mode")? {
            None => MacvlanMode::Default,
            Some(m) => MacvlanMode::parse(&m).ok_or_else(|| {
                invalid(format!(
                    "macvlan: unknown mode '{m}' (known: {})",
                    MacvlanMode::NAMES
                ))
            })?,
        };
        create(&w, &ns, name, &opts, TunnelKind::Macvlan { mode })
    });
    let w = world.clone();
    sys!(engine, "mirror", move |target: &mut LinkRef,
                                 dir: &str,
                                 source: LinkRef|
          -> R<()> {
        let dir = MirrorDir::parse(dir).ok_or_else(|| {
            invalid(format!(
                "mirror: direction '{dir}' is not one of ingress, egress, both"
            ))
        })?;
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
        let mut w = w.borrow_mut();
        let super::World {
            session, journal, ..
        } = &mut *w;
        connect::mirror(session, journal, &req).map_err(fail)
    });
}

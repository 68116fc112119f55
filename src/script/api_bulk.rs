//! Bulk script functions: whole topologies in a few round trips (the
//! `chain` stdlib module is built on these). See [`crate::chain`].

use rhai::{Array, Dynamic, Engine, FuncRegistration, Map};

use super::api::{fail, LinkRef, NsRef};
use super::SharedWorld;
use crate::chain::{self, ChainOptions};
use crate::error::Error;

type R<T> = Result<T, Box<rhai::EvalAltResult>>;

fn invalid(msg: String) -> Box<rhai::EvalAltResult> {
    fail(Error::Invalid(msg))
}

fn options(opts: &Map) -> R<ChainOptions> {
    let mut o = ChainOptions::default();
    let int = |k: &str, v: &Dynamic| -> R<u32> {
        v.as_int()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                invalid(format!(
                    "chain option {k}: expected a non-negative integer, found {v}"
                ))
            })
    };
    for (k, v) in opts {
        match k.as_str() {
            "base" => o.base = v.to_string(),
            "start" => o.start = int(k, v)?,
            "mtu" => o.mtu = int(k, v)?,
            "group" => o.group = int(k, v)?,
            "routes" => {
                o.routes = v.as_bool().map_err(|_| {
                    invalid(format!(
                        "chain option routes: expected true or false, found {v}"
                    ))
                })?
            }
            _ => {}
        }
    }
    Ok(o)
}

fn strings(list: &Array, what: &str) -> R<Vec<String>> {
    list.iter()
        .map(|v| {
            v.clone()
                .into_string()
                .map_err(|t| invalid(format!("{what}: expected strings, found {t}")))
        })
        .collect()
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    FuncRegistration::new("chain_build")
        .with_volatility(true)
        .register_into_engine(engine, move |names: Array, opts: Map| -> R<Map> {
            let list = strings(&names, "chain_build")?;
            let o = options(&opts)?;
            let built = {
                let mut world = w.borrow_mut();
                let super::World {
                    session, journal, ..
                } = &mut *world;
                chain::build(session, journal, &list, &o).map_err(fail)?
            };
            let nodes: Array = built
                .nodes
                .iter()
                .map(|n| Dynamic::from(NsRef(n.clone())))
                .collect();
            let links: Array = (0..built.nodes.len() - 1)
                .map(|i| {
                    let (a, b) = chain::link_names(i);
                    Dynamic::from(LinkRef {
                        ns: built.nodes[i].clone(),
                        name: a,
                        peer: Some((built.nodes[i + 1].clone(), b)),
                    })
                })
                .collect();
            let mut m = Map::new();
            m.insert("names".into(), names.into());
            m.insert("nodes".into(), nodes.into());
            m.insert("links".into(), links.into());
            m.insert("opts".into(), opts.into());
            Ok(m)
        });
    FuncRegistration::new("chain_subnet")
        .with_volatility(true)
        .register_into_engine(engine, |opts: Map, i: i64| -> R<String> {
            let o = options(&opts)?;
            let i =
                usize::try_from(i).map_err(|_| invalid(format!("chain_subnet: bad index {i}")))?;
            let net = chain::subnet(&o, i).map_err(fail)?.octets();
            Ok(format!("{}.{}.{}", net[0], net[1], net[2]))
        });
    let w = world.clone();
    FuncRegistration::new("destroy_all")
        .with_volatility(true)
        .register_into_engine(engine, move |names: Array| -> R<()> {
            let list = strings(&names, "destroy_all")?;
            let world = w.borrow();
            match chain::destroy_namespaces(&world.session, &list)
                .into_iter()
                .next()
            {
                Some(e) => Err(fail(e)),
                None => Ok(()),
            }
        });
}

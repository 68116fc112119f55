//! Bulk script functions: whole topologies in a few round trips (the
//! `chain` stdlib module is built on these). See [`crate::chain`].

use rhai::{Array, Dynamic, Engine, Map};
use serde::Deserialize;

use super::api::{fail, invalid, with_world, LinkRef, NsRef, R};
use super::options::from_map;
use super::SharedWorld;
use crate::chain::{self, ChainOptions};

/// The options of `chain_build` / `chain_subnet`; what is not given keeps
/// [`ChainOptions`]' default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ChainOpts {
    base: Option<String>,
    start: Option<u32>,
    mtu: Option<u32>,
    routes: Option<bool>,
    group: Option<u32>,
}

fn options(function: &str, opts: &Map) -> R<ChainOptions> {
    let o: ChainOpts = from_map(function, opts)?;
    let mut c = ChainOptions::default();
    c.base = o.base.unwrap_or(c.base);
    c.start = o.start.unwrap_or(c.start);
    c.mtu = o.mtu.unwrap_or(c.mtu);
    c.routes = o.routes.unwrap_or(c.routes);
    c.group = o.group.unwrap_or(c.group);
    Ok(c)
}

/// A list of names given by a script.
fn names(function: &str, list: Array) -> R<Vec<String>> {
    rhai::serde::from_dynamic(&list.into()).map_err(|_| {
        invalid(format!(
            "{function}(): the names must be an array of strings"
        ))
    })
}

fn chain_build(world: &SharedWorld, names_list: Array, opts: Map) -> R<Map> {
    let list = names("chain_build", names_list.clone())?;
    let o = options("chain_build", &opts)?;
    let built = with_world(world, |session, journal| {
        chain::build(session, journal, &list, &o)
    })?;
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
    // Namespaces and links are koko objects, not data: this map is built
    // by hand, not serialised.
    let mut m = Map::new();
    m.insert("names".into(), names_list.into());
    m.insert("nodes".into(), nodes.into());
    m.insert("links".into(), links.into());
    m.insert("opts".into(), opts.into());
    Ok(m)
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(
        engine,
        "chain_build",
        /// a chain of namespaces in bulk (what chain::build uses): pipelined links, addresses, routes; opts #{base, start, mtu, routes, group}; returns #{names, nodes, links, opts}
        move |names: Array, opts: Map| -> R<Map> { chain_build(&w, names, opts) }
    );
    sys!(
        engine,
        "chain_subnet",
        /// the first three octets of a chain's link i subnet ("10.0.3")
        |opts: Map, i: i64| -> R<String> {
            let o = options("chain_subnet", &opts)?;
            let i = usize::try_from(i)
                .map_err(|_| invalid(format!("chain_subnet(): bad index {i}")))?;
            let net = chain::subnet(&o, i).map_err(fail)?.octets();
            Ok(format!("{}.{}.{}", net[0], net[1], net[2]))
        }
    );
    let w = world.clone();
    sys!(
        engine,
        "destroy_all",
        /// delete many netns namespaces at once (the kernel tears them down in one batch)
        move |names: Array| -> R<()> {
            let list = self::names("destroy_all", names)?;
            let world = w.borrow();
            match chain::destroy_namespaces(&world.session, &list).into_iter().next() {
                Some(e) => Err(fail(e)),
                None => Ok(()),
            }
        }
    );
}

//! `graph()`: the live wiring as DOT text (what `koko graph` prints), and
//! `graph(#{format, targets})` for Mermaid or JSON, or only some
//! namespaces and their neighbours. The REPL's `:graph` prints `graph()`.
//! One implementation: [`crate::graph`], shared with the command line.

use rhai::{Array, Engine, Map};
use serde::Deserialize;

use super::api::{fail, invalid, with_world, NsRef, R};
use super::options::from_map;
use super::SharedWorld;
use crate::graph::render::{self, Format};
use crate::graph::{self, Scope};

/// The options of `graph(#{...})` but `targets`, which holds namespace
/// objects and is read apart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct GraphOpts {
    format: String,
}

impl Default for GraphOpts {
    fn default() -> Self {
        GraphOpts {
            format: "dot".into(),
        }
    }
}

fn draw(world: &SharedWorld, format: Format, scope: Scope) -> R<String> {
    if format == Format::Svg {
        return Err(invalid(
            "graph(): format \"svg\" is for the command line (koko graph --format svg); \
             scripts get dot, mermaid or json",
        ));
    }
    let topology = with_world(world, |session, _| graph::discover(session, &scope))?;
    Ok(render::render(&topology, format))
}

pub fn register(engine: &mut Engine, world: &SharedWorld) {
    let w = world.clone();
    sys!(
        engine,
        "graph",
        /// the live wiring of every namespace and container, read from the kernel, as Graphviz DOT text (what `koko graph` prints)
        move || -> R<String> { draw(&w, Format::Dot, Scope::All) }
    );
    let w = world.clone();
    sys!(
        engine,
        "graph",
        /// the live wiring with options #{format: "dot"|"mermaid"|"json", targets: [ns, ...]} (targets: only those namespaces and their neighbours)
        move |opts: Map| -> R<String> {
            let mut rest = opts.clone();
            let targets = rest.remove("targets");
            let o: GraphOpts = from_map("graph", &rest)?;
            let format: Format = o.format.parse().map_err(fail)?;
            let scope = match targets {
                None => Scope::All,
                Some(list) => {
                    let list: Array = list.try_cast::<Array>().ok_or_else(|| {
                        invalid("graph(): targets must be an array of namespaces")
                    })?;
                    let mut handles = Vec::new();
                    for item in list {
                        let ns = item.try_cast::<NsRef>().ok_or_else(|| {
                            invalid("graph(): each target must be a namespace (netns(\"a\"), pid(42), docker(\"web\"), ...)")
                        })?;
                        handles.push(ns.0);
                    }
                    Scope::Namespaces(handles)
                }
            };
            draw(&w, format, scope)
        }
    );
}

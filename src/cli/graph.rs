//! `koko graph [--format dot|mermaid|json|svg] [-o FILE] [--all | TARGET...]`:
//! the live wiring, read from the kernel by [`crate::graph`], drawn by
//! [`crate::graph::render`].

use std::path::PathBuf;

use super::Output;
use crate::error::{Error, Result};
use crate::graph::render::{self, Format};
use crate::graph::{self, Scope};
use crate::net::Session;
use crate::ns;

pub const HELP: &str = "\
koko graph: draw the live wiring of namespaces and containers, read from the kernel

Usage:
  koko graph [--format dot|mermaid|json|svg] [-o FILE] [--all | TARGET...]

Nodes are koko's own namespace (host), every `ip netns` namespace, every running
container (Docker, Podman, CRI pod sandboxes; an engine that is not running is
left out), process namespaces holding a link koko made, and namespaces with no
name or process that a link leads to (\"netns nsid K (seen from X)\"). Edges are
veth pairs and vxlan/macvlan/vlan links to their parents, with both ends' names,
addresses, state, MTU, and koko's impairments and mirrors.

Options:
  --format F    dot (default; Graphviz), mermaid (flowchart), json (schema
                koko-graph/1: nodes with id/kind/name/links, edges with both ends),
                svg (runs Graphviz's `dot -Tsvg`; needs Graphviz installed)
  -o FILE       write to FILE (atomically: a temporary file, then a rename)
                instead of standard output
  --all         every namespace (the default without targets)
  TARGET...     only these namespaces and their direct neighbours:
                docker NAME | cri ID | netns PATH | ipnetns NAME | pid PID | host

Examples:
  koko graph | dot -Tpng > wiring.png
  koko graph --format svg -o wiring.svg
  koko graph --format mermaid ipnetns client docker web
";

/// What the words asked for.
#[derive(Debug)]
struct Args {
    format: Format,
    output: Option<PathBuf>,
    scope: Scope,
    help: bool,
}

fn parse(words: &[String]) -> Result<Args> {
    let usage = |m: String| Error::Invalid(format!("koko graph: {m}"));
    let mut args = Args {
        format: Format::Dot,
        output: None,
        scope: Scope::All,
        help: false,
    };
    let mut all = false;
    let mut targets = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let value = |i: usize| {
            words
                .get(i + 1)
                .cloned()
                .ok_or_else(|| usage(format!("{w} needs a value")))
        };
        match w {
            "-h" | "--help" => args.help = true,
            "--all" => all = true,
            "--format" | "-f" => {
                args.format = value(i)?.parse().map_err(|e| usage(format!("{e}")))?;
                i += 1;
            }
            "-o" | "--output" => {
                args.output = Some(value(i)?.into());
                i += 1;
            }
            _ if w.starts_with("--format=") => {
                args.format = w["--format=".len()..]
                    .parse()
                    .map_err(|e| usage(format!("{e}")))?;
            }
            _ if w.starts_with("--output=") => args.output = Some(w["--output=".len()..].into()),
            _ if w.starts_with('-') => return Err(usage(format!("unknown option '{w}'"))),
            _ => {
                let (spec, rest) = crate::plan::koro::parse_target(&words[i..])
                    .map_err(|e| usage(e.to_string()))?;
                targets.push(spec);
                i = words.len() - rest.len();
                continue;
            }
        }
        i += 1;
    }
    if all && !targets.is_empty() {
        return Err(usage("--all and TARGET... exclude each other".into()));
    }
    if !targets.is_empty() {
        args.scope = Scope::Targets(targets);
    }
    if args
        .output
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        return Err(usage("-o needs a file name".into()));
    }
    Ok(args)
}

pub fn main(words: &[String]) -> i32 {
    let args = match parse(words) {
        Ok(a) => a,
        Err(e) => return super::finish(Err(e), false),
    };
    if args.help {
        return super::finish(
            Ok(Output {
                lines: vec![HELP.trim_end().to_string()],
                json: serde_json::json!({"ok": true, "help": HELP}),
            }),
            false,
        );
    }
    super::finish_printed(run(&args), false)
}

fn run(args: &Args) -> Result<()> {
    ns::check_privileges()?;
    crate::interrupt::install();
    let session = Session::new()?;
    let topology = graph::discover(&session, &args.scope)?;
    crate::interrupt::check()?;
    let mut text = render::render(&topology, args.format);
    if args.format == Format::Svg {
        text = render::svg(&text)?;
    }
    match &args.output {
        Some(path) => render::write_atomically(path, &text),
        None => crate::output::line(text.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn targets_follow_the_koro_syntax() {
        let a = parse(&words(
            "--format mermaid ipnetns a docker web pid 7 -o x.mmd",
        ))
        .unwrap();
        assert_eq!(a.format, Format::Mermaid);
        assert_eq!(a.output, Some(PathBuf::from("x.mmd")));
        let Scope::Targets(t) = a.scope else {
            panic!("targets expected")
        };
        assert_eq!(
            t,
            vec![
                ns::NsSpec::Netns("a".into()),
                ns::NsSpec::Docker("web".into()),
                ns::NsSpec::Pid(7)
            ]
        );
    }

    #[test]
    fn bad_words_are_usage_errors() {
        for bad in [
            "--format png",
            "--format",
            "--all ipnetns a",
            "--bogus",
            "ipnetns",
            "-o",
        ] {
            let e = parse(&words(bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }
}

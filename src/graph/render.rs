//! A [`Topology`] as text: Graphviz DOT, a Mermaid flowchart, or JSON (the
//! typed structs serialised; see [`super::SCHEMA`]). SVG is DOT handed to
//! Graphviz's `dot`, done by the command line, not here.
//!
//! Names come from users and engines and may hold anything an interface
//! or container name may (`-`, `.`, `:`, `@`, quotes in aliases), so every
//! id and label is quoted and escaped for its language; Mermaid gets
//! generated ids (`n0`, `n1`, ...) because its ids cannot be quoted.

use std::fmt::Write;

use super::{Edge, End, Link, Node, NodeKind, Topology};
use crate::error::{Error, Result};

/// The output formats of `koko graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dot,
    Mermaid,
    Json,
    Svg,
}

/// The names `--format` accepts, in the order the help lists them.
pub const FORMATS: &str = "dot, mermaid, json, svg";

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        match s {
            "dot" => Ok(Format::Dot),
            "mermaid" => Ok(Format::Mermaid),
            "json" => Ok(Format::Json),
            "svg" => Ok(Format::Svg),
            other => Err(Error::Invalid(format!(
                "unknown graph format '{other}' (valid: {FORMATS})"
            ))),
        }
    }
}

/// The topology in `format` (SVG: the DOT that `dot -Tsvg` renders).
pub fn render(t: &Topology, format: Format) -> String {
    match format {
        Format::Dot | Format::Svg => dot(t),
        Format::Mermaid => mermaid(t),
        Format::Json => json(t),
    }
}

pub fn json(t: &Topology) -> String {
    serde_json::to_string_pretty(t).expect("a topology serializes")
}

/// A DOT string literal: `"` and `\` escaped, newlines as DOT's `\n`
/// (centred lines). Control characters become spaces.
pub fn dot_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text for a Mermaid label inside `"..."`: quotes and the characters
/// Mermaid treats as markup become entity codes, newlines `<br/>`.
pub fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '|' => out.push_str("#124;"),
            '\n' => out.push_str("<br/>"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The words that title a node: "netns client", "docker web (pid ...)".
fn title(n: &Node) -> String {
    let kind = match n.kind {
        NodeKind::Host => return format!("host{}", also(n)),
        NodeKind::Nsid | NodeKind::Unknown => return n.name.clone(),
        NodeKind::Netns => "netns",
        NodeKind::Docker => "docker",
        NodeKind::Podman => "podman",
        NodeKind::Cri => "pod",
        NodeKind::Pid => "pid",
        NodeKind::Path => "netns file",
    };
    format!("{kind} {}{}", n.name, also(n))
}

fn also(n: &Node) -> String {
    if n.aliases.is_empty() {
        String::new()
    } else {
        format!(" (also {})", n.aliases.join(", "))
    }
}

/// A link that is not part of an edge, as one line of its node's label.
fn lone(l: &Link) -> String {
    let mut s = format!("{} {}", l.name, l.kind.as_deref().unwrap_or("device"));
    if let Some(vni) = l.vni {
        s += &format!(" vni {vni}");
    }
    if let Some(r) = &l.remote {
        s += &format!(" remote {r}");
    }
    if let Some(m) = &l.master {
        s += &format!(" port of {m}");
    }
    for a in &l.addresses {
        s += &format!(" {a}");
    }
    s += &format!(" {}", l.state);
    if let Some(i) = &l.impairment {
        s += &format!(" impaired: {}", i.describe());
    }
    for m in &l.mirrors {
        s += &format!(" {}", m.describe());
    }
    s
}

fn node_label(n: &Node) -> String {
    let mut lines = vec![title(n)];
    lines.extend(n.links.iter().filter(|l| !l.wired).map(lone));
    lines.join("\n")
}

/// One end in words: "link1 10.0.1.1/24 up" (+ impairment).
fn end_text(e: &End) -> String {
    let mut s = e.link.clone();
    for a in &e.addresses {
        s += &format!("\n{a}");
    }
    s += &format!("\n{}", e.state);
    if let Some(i) = &e.impairment {
        s += &format!("\nimpaired: {i}");
    }
    for m in &e.mirrors {
        s += &format!("\n{}", m.describe());
    }
    s
}

/// The middle of an edge: "veth mtu 1500".
fn edge_text(e: &Edge) -> String {
    if e.a.mtu == e.b.mtu || e.b.mtu == 0 {
        format!("{} mtu {}", e.kind, e.a.mtu)
    } else {
        format!("{} mtu {}/{}", e.kind, e.a.mtu, e.b.mtu)
    }
}

fn shape(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Host => "house",
        NodeKind::Docker | NodeKind::Podman | NodeKind::Cri => "box3d",
        NodeKind::Nsid => "box",
        NodeKind::Unknown => "point",
        _ => "box",
    }
}

/// Graphviz DOT: an undirected graph, a node per namespace, an edge per
/// link (its ends' names, addresses and state at the tail and head).
pub fn dot(t: &Topology) -> String {
    let mut out = String::from("graph koko {\n");
    out += "  graph [rankdir=LR, fontname=\"Helvetica\"];\n";
    out += "  node [fontname=\"Helvetica\", fontsize=10, style=rounded];\n";
    out += "  edge [fontname=\"Helvetica\", fontsize=8];\n";
    for n in &t.nodes {
        let style = match n.kind {
            NodeKind::Nsid => ", style=\"rounded,dashed\"",
            NodeKind::Unknown => ", xlabel=\"?\"",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  {} [label={}, shape={}{style}];",
            dot_quote(&n.id),
            dot_quote(&node_label(n)),
            shape(n.kind)
        );
    }
    for e in &t.edges {
        let style = if e.kind == "veth" {
            ""
        } else {
            ", style=dashed"
        };
        let _ = writeln!(
            out,
            "  {} -- {} [label={}, taillabel={}, headlabel={}{style}];",
            dot_quote(&e.a.node),
            dot_quote(&e.b.node),
            dot_quote(&edge_text(e)),
            dot_quote(&end_text(&e.a)),
            dot_quote(&end_text(&e.b)),
        );
    }
    out += "}\n";
    out
}

/// A Mermaid flowchart: generated node ids, each edge labelled with both
/// ends ("link1 10.0.1.1/24 — link2 10.0.1.2/24").
pub fn mermaid(t: &Topology) -> String {
    let mut out = String::from("flowchart LR\n");
    let ids: std::collections::HashMap<&str, String> = t
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), format!("n{i}")))
        .collect();
    let id = |node: &str| ids.get(node).cloned().unwrap_or_else(|| "unknown".into());
    for n in &t.nodes {
        let label = mermaid_text(&node_label(n));
        let _ = match n.kind {
            NodeKind::Unknown => writeln!(out, "  {}((\"{label}\"))", id(&n.id)),
            _ => writeln!(out, "  {}[\"{label}\"]", id(&n.id)),
        };
    }
    for e in &t.edges {
        let one = |x: &End| {
            let mut s = x.link.clone();
            for a in &x.addresses {
                s += &format!(" {a}");
            }
            s
        };
        let mut text = format!("{} — {}\n{}", one(&e.a), one(&e.b), edge_text(e));
        for x in [&e.a, &e.b] {
            if let Some(i) = &x.impairment {
                text += &format!("\n{} impaired: {i}", x.link);
            }
            for m in &x.mirrors {
                text += &format!("\n{} {}", x.link, m.describe());
            }
        }
        let arrow = if e.kind == "veth" { "---" } else { "-.-" };
        let _ = writeln!(
            out,
            "  {} {arrow}|\"{}\"| {}",
            id(&e.a.node),
            mermaid_text(&text),
            id(&e.b.node)
        );
    }
    out
}

/// What to say when Graphviz is missing: SVG needs it, DOT and Mermaid
/// do not.
pub const NO_GRAPHVIZ: &str = "Graphviz is not installed (no `dot` on PATH): install it \
     (Debian/Ubuntu: apt-get install graphviz; Fedora: dnf install graphviz; macOS: brew \
     install graphviz), or use --format dot or --format mermaid, which need nothing else";

/// `dot`'s path, searched on PATH as a shell would.
fn find_dot() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("dot"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Render DOT text as SVG with Graphviz (`dot -Tsvg`): the one outside
/// program `koko graph` runs, because drawing is what was asked for.
pub fn svg(dot_text: &str) -> Result<String> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let what = "rendering the graph as SVG";
    let dot = find_dot().ok_or_else(|| Error::Engine {
        what: what.into(),
        cause: NO_GRAPHVIZ.into(),
    })?;
    let mut child = Command::new(&dot)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("{what}: starting {}", dot.display()), e))?;
    // Write on a thread: a large graph could fill both pipes at once.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = dot_text.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("{what}: waiting for {}", dot.display()), e))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(Error::Engine {
            what: what.into(),
            cause: format!(
                "{} failed ({}): {}",
                dot.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| Error::Engine {
        what: what.into(),
        cause: format!("{} wrote something that is not UTF-8", dot.display()),
    })
}

/// Write `text` to `path` atomically: a temporary file in the same
/// directory, then a rename over `path`, so a reader sees the old file or
/// the whole new one. On failure nothing is left behind.
pub fn write_atomically(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let fail = |e| Error::io(format!("writing {}", path.display()), e);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("-o {}: not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.koko-{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_strings_are_escaped() {
        assert_eq!(dot_quote("netns:a-b.c"), "\"netns:a-b.c\"");
        assert_eq!(dot_quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(dot_quote("a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn mermaid_text_has_no_markup_left() {
        let t = mermaid_text("a\"b|c<d>#e\nf");
        assert_eq!(t, "a#quot;b#124;c#lt;d#gt;#35;e<br/>f");
    }

    #[test]
    fn formats_parse_and_unknown_ones_name_the_valid() {
        assert_eq!("mermaid".parse::<Format>().unwrap(), Format::Mermaid);
        let e = "png".parse::<Format>().unwrap_err().to_string();
        assert!(e.contains("'png'") && e.contains(FORMATS), "{e}");
    }
}

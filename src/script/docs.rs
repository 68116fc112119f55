//! The script API's documentation, read back from the engine itself.
//!
//! Every binding is registered through the `sys!` / `func!` / `getter!`
//! macros of [`super`], which hand Rhai (feature "metadata") the function's
//! doc comment and its parameters, named and typed as a script sees them
//! (`name: string`, `ns: &mut Ns`), taken from the Rust closure's own
//! parameter list. There is no separate table: what the REPL's `:help`
//! prints, what Tab completes, the "expected ..." hint of a call with wrong
//! arguments and the README's API list are all produced here from
//! [`rhai::Engine::gen_fn_metadata_to_json`], so a function cannot be
//! registered without showing up in them.
//!
//! A first parameter of type `&mut T` makes a method (`ns.ping(ip)`); a
//! property getter shows as `ns.name -> string`.

use std::cell::RefCell;

use rhai::{Engine, FuncRegistration};

/// The Rust type of a binding's parameter or result, the way a script
/// writer thinks of it.
pub fn script_type(rust: &str) -> String {
    let t: String = rust.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(inner) = t.strip_prefix("&mut") {
        return format!("&mut {}", script_type(inner));
    }
    if let Some(inner) = t.strip_prefix("R<").and_then(|s| s.strip_suffix('>')) {
        return script_type(inner);
    }
    match t.as_str() {
        "&str" | "String" | "ImmutableString" => "string",
        "i64" | "INT" => "int",
        "f64" | "FLOAT" => "float",
        "bool" => "bool",
        "Map" | "rhai::Map" => "map",
        "Array" | "rhai::Array" => "array",
        "FnPtr" | "rhai::FnPtr" => "Fn",
        "Dynamic" | "rhai::Dynamic" => "any",
        "NsRef" => "Ns",
        "LinkRef" => "Link",
        "ProbeRef" => "Probe",
        "CaptureRef" => "Capture",
        other => other,
    }
    .to_string()
}

/// Attach a binding's documentation to its registration: the parameters
/// (`(name, rust type)` as written in the closure; a `NativeCallContext` is
/// not a script argument), the result type if the closure declares one, and
/// the doc comment's lines.
pub fn describe(
    reg: FuncRegistration,
    params: &[(&str, &str)],
    ret: &[&str],
    doc: &[&str],
) -> FuncRegistration {
    let mut info: Vec<String> = params
        .iter()
        .filter(|(_, ty)| !ty.contains("NativeCallContext"))
        .map(|(n, ty)| format!("{n}: {}", script_type(ty)))
        .collect();
    if let Some(r) = ret.first() {
        let r = script_type(r);
        if r != "()" {
            info.push(r);
        }
    }
    if info.is_empty() {
        // Rhai fills in Rust type names when given nothing; `()` (no
        // parameters, no result) keeps it from doing so.
        info.push("()".into());
    }
    let comment = doc
        .iter()
        .map(|l| format!("///{l}"))
        .collect::<Vec<_>>()
        .join("\n");
    let reg = reg.with_params_info(info);
    if comment.is_empty() {
        reg
    } else {
        reg.with_comments([comment])
    }
}

/// One registered function, as the engine's metadata describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct FnDoc {
    /// The name a script uses (a getter's property name).
    pub name: String,
    pub getter: bool,
    /// `(name, type)` of the object a method is called on.
    pub receiver: Option<(String, String)>,
    pub params: Vec<(String, String)>,
    /// Empty when the function returns nothing.
    pub ret: String,
    pub doc: String,
}

impl FnDoc {
    /// `veth(a: Ns, name_a: string, ...) -> Link`, `ns.ping(ip: string) -> map`,
    /// `link.state -> string`.
    pub fn signature(&self) -> String {
        let params = self
            .params
            .iter()
            .map(|(n, t)| format!("{n}: {t}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = match (&self.receiver, self.getter) {
            (Some((r, _)), true) => format!("{r}.{}", self.name),
            (Some((r, _)), false) => format!("{r}.{}({params})", self.name),
            (None, _) => format!("{}({params})", self.name),
        };
        if !self.ret.is_empty() {
            s.push_str(" -> ");
            s.push_str(&self.ret);
        }
        s
    }

    /// What a method is called on ("Ns", "Link", "Probe"), "" for a function.
    fn on(&self) -> &str {
        self.receiver
            .as_ref()
            .map(|(_, t)| t.as_str())
            .unwrap_or("")
    }
}

#[derive(serde::Deserialize)]
struct Metadata {
    #[serde(default)]
    functions: Vec<FnMeta>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FnMeta {
    name: String,
    #[serde(rename = "type")]
    typ: String,
    #[serde(default)]
    params: Vec<ParamMeta>,
    #[serde(default)]
    return_type: String,
    #[serde(default)]
    doc_comments: Vec<String>,
}

#[derive(serde::Deserialize)]
struct ParamMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    typ: Option<String>,
}

/// Every native function registered into the engine (Rhai's standard
/// library left out), in a stable order: functions first, then the methods
/// of each type, each group by name.
pub fn api(engine: &Engine) -> Vec<FnDoc> {
    let json = engine
        .gen_fn_metadata_to_json(false)
        .expect("rhai's metadata is JSON");
    let meta: Metadata = serde_json::from_str(&json).expect("rhai's metadata has its schema");
    let mut out: Vec<FnDoc> = meta
        .functions
        .into_iter()
        .filter(|f| f.typ == "native")
        .map(|f| {
            let (name, getter) = match f.name.strip_prefix("get$") {
                Some(p) => (p.to_string(), true),
                None => (f.name.clone(), false),
            };
            let mut params: Vec<(String, String)> = f
                .params
                .into_iter()
                .map(|p| {
                    (
                        p.name.unwrap_or_else(|| "_".into()),
                        p.typ.map(|t| script_type(&t)).unwrap_or_default(),
                    )
                })
                .collect();
            let receiver = match params.first() {
                Some((_, t)) if t.starts_with("&mut ") => {
                    // Shown by its type ("ns", "link", "probe"), whatever the
                    // closure called it.
                    let (_, t) = params.remove(0);
                    let t = t["&mut ".len()..].to_string();
                    Some((t.to_lowercase(), t))
                }
                _ => None,
            };
            let doc = f
                .doc_comments
                .iter()
                .flat_map(|c| c.lines())
                .map(|l| l.trim_start_matches("///").trim())
                .collect::<Vec<_>>()
                .join(" ");
            FnDoc {
                name,
                getter,
                receiver,
                params,
                ret: script_type(&f.return_type),
                doc,
            }
        })
        .collect();
    // Rhai keeps functions in a hash map: sort fully, overloads included,
    // so the text is the same from run to run.
    out.sort_by_cached_key(|f| {
        (
            f.on().to_string(),
            f.name.clone(),
            f.params.len(),
            f.signature(),
        )
    });
    out
}

thread_local! {
    /// The API of the engine built last on this thread, for error messages
    /// (which are formatted without the engine at hand).
    static CURRENT: RefCell<Vec<FnDoc>> = const { RefCell::new(Vec::new()) };
}

/// Remember `engine`'s API for [`expected`].
pub fn remember(engine: &Engine) {
    let docs = api(engine);
    CURRENT.with(|c| *c.borrow_mut() = docs);
}

/// The signatures of the API function `name` ("a or b"), for the hint of a
/// call with wrong arguments; None if koko has no such function.
pub fn expected(name: &str) -> Option<String> {
    CURRENT.with(|c| {
        let sigs: Vec<String> = c
            .borrow()
            .iter()
            .filter(|f| f.name == name)
            .map(FnDoc::signature)
            .collect();
        (!sigs.is_empty()).then(|| sigs.join(" or "))
    })
}

/// The API's names (functions, methods, properties), for completion.
pub fn names(docs: &[FnDoc]) -> Vec<String> {
    // Operators (`==`) are not typed as words.
    let mut n: Vec<String> = docs
        .iter()
        .map(|f| f.name.clone())
        .filter(|n| n.starts_with(|c: char| c.is_alphabetic() || c == '_'))
        .collect();
    n.sort();
    n.dedup();
    n
}

/// The whole API as text: what `:help` prints and what the README's API
/// list holds. Overloads with the same doc share it.
pub fn help_all(docs: &[FnDoc]) -> String {
    let mut s = String::from("koko script API (:help NAME for one):\n");
    let mut group = None;
    for (i, f) in docs.iter().enumerate() {
        if group != Some(f.on()) {
            group = Some(f.on());
            s.push_str(&match f.on() {
                "" => "\nFunctions\n".to_string(),
                t => format!("\nMethods and properties of {t}\n"),
            });
        }
        s.push_str(&format!("  {}\n", f.signature()));
        let next_shares_doc = docs
            .get(i + 1)
            .is_some_and(|n| n.name == f.name && n.on() == f.on() && n.doc == f.doc);
        if !next_shares_doc && !f.doc.is_empty() {
            s.push_str(&format!("      {}\n", f.doc));
        }
    }
    s.push_str(
        "\nREPL: :help [name], :quit; Tab completes; an unfinished block continues on the next line.",
    );
    s
}

/// `:help NAME`: every signature of the name, with its doc.
pub fn help_one(docs: &[FnDoc], name: &str) -> String {
    let found: Vec<String> = docs
        .iter()
        .filter(|f| f.name == name)
        .map(|f| format!("{}\n    {}", f.signature(), f.doc))
        .collect();
    if found.is_empty() {
        format!("no API function '{name}' (:help lists them)")
    } else {
        found.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let world = super::super::World::new().expect("a world without privileges");
        super::super::build_engine(&world, super::super::Limits::default(), None)
    }

    #[test]
    fn rust_types_read_as_script_types() {
        assert_eq!(script_type("& mut NsRef"), "&mut Ns");
        assert_eq!(script_type("R < LinkRef >"), "Link");
        assert_eq!(script_type("&str"), "string");
        assert_eq!(script_type("i64"), "int");
        assert_eq!(script_type("Map"), "map");
    }

    /// Every function koko registers has a doc comment, and its parameters
    /// have names: the registrations carry the documentation.
    #[test]
    fn every_registered_function_is_documented() {
        let docs = api(&engine());
        assert!(docs.len() > 50, "{docs:?}");
        let undocumented: Vec<String> = docs
            .iter()
            .filter(|f| f.doc.is_empty())
            .map(FnDoc::signature)
            .collect();
        assert!(undocumented.is_empty(), "no doc comment: {undocumented:?}");
        let unnamed: Vec<String> = docs
            .iter()
            .filter(|f| f.params.iter().any(|(n, t)| n == "_" || t.is_empty()))
            .map(FnDoc::signature)
            .collect();
        assert!(unnamed.is_empty(), "parameters without a name: {unnamed:?}");
    }

    #[test]
    fn signatures_read_like_calls() {
        let docs = api(&engine());
        let sigs: Vec<String> = docs.iter().map(FnDoc::signature).collect();
        for want in [
            "veth(a: Ns, name_a: string, b: Ns, name_b: string) -> Link",
            "ns.ping(ip: string, opts: map) -> map",
            "link.state -> string",
            "ns.forwarding(on: bool)",
        ] {
            assert!(sigs.iter().any(|s| s == want), "{want} not in {sigs:#?}");
        }
        let help = help_one(&docs, "veth");
        assert!(
            help.contains("veth(a: Ns, name_a: string, b: Ns, name_b: string, opts: map) -> Link")
        );
        assert!(help_one(&docs, "nope").contains("no API function"));
    }

    /// The README's API list is exactly what `:help` prints. To refresh it
    /// after changing a binding: `KOKO_BLESS=1 cargo test --lib readme_api`.
    #[test]
    fn readme_api_list_is_the_engines() {
        const BEGIN: &str =
            "<!-- api:begin (generated: `KOKO_BLESS=1 cargo test --lib readme_api`) -->\n```text\n";
        const END: &str = "```\n<!-- api:end -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let start = readme.find(BEGIN).expect("README has the api:begin marker") + BEGIN.len();
        let end = start
            + readme[start..]
                .find(END)
                .expect("README has the api:end marker");
        let want = help_all(&api(&engine())) + "\n";
        if std::env::var_os("KOKO_BLESS").is_some() {
            let new = format!("{}{want}{}", &readme[..start], &readme[end..]);
            std::fs::write(path, new).unwrap();
            return;
        }
        assert!(
            readme[start..end] == want,
            "README's API list is stale: run KOKO_BLESS=1 cargo test --lib readme_api"
        );
    }
}

//! `koko repl`: the script API at a prompt.
//!
//! * Variables, functions and imports persist from one input to the next
//!   (imports are re-registered as static modules under their alias, since
//!   a Rhai `import` only lives as long as the script that ran it).
//! * An unfinished block (`{` without `}`, a statement cut short) continues
//!   on the next line with a `...` prompt.
//! * Tab completes functions, methods, namespace names and link names.
//! * `:help [name]` lists the API or explains one function; `:quit` leaves.
//! * `:graph` prints the live wiring as DOT (the script API's `graph()`).
//! * An error is printed and the session goes on. Ctrl-C at the prompt
//!   clears the line, during an input stops it; SIGTERM and SIGHUP (a
//!   closed terminal) undo what the session created and end it with
//!   128 + the signal's number.
//! * History persists in ~/.koko_history (or `--history FILE`).
//!
//! Works on a terminal (rustyline) and on piped input (one line at a time).

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use rhai::{Dynamic, Engine, ModuleResolver, Position, Scope, AST};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::{build_engine, format_parse_error, format_runtime_error, Limits, SharedWorld, World};
use crate::net::link;
use crate::ns::{named, Namespace};

/// Methods of the built-in types worth completing after a dot.
const EXTRA_METHODS: &[&str] = &["len", "to_string", "contains", "keys", "values", "push"];

/// Complete the word ending at `pos`: functions and variables at the start
/// of a word, methods after a dot, namespace and link names inside a string.
/// Returns where the completed word starts and the candidates.
pub fn complete_word(
    line: &str,
    pos: usize,
    api: &[String],
    vars: &[String],
    names: &[String],
) -> (usize, Vec<String>) {
    let before = &line[..pos];
    let in_string = before.matches('"').count() % 2 == 1;
    let start = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || (in_string && c == '.')))
        .map(|i| i + 1)
        .unwrap_or(0);
    let word = &before[start..];
    let mut out: Vec<String> = if in_string {
        names
            .iter()
            .filter(|n| n.starts_with(word))
            .cloned()
            .collect()
    } else if before[..start].ends_with('.') {
        api.iter()
            .cloned()
            .chain(EXTRA_METHODS.iter().map(|s| s.to_string()))
            .filter(|n| n.starts_with(word))
            .collect()
    } else {
        api.iter()
            .cloned()
            .chain(vars.iter().cloned())
            .filter(|n| n.starts_with(word))
            .collect()
    };
    out.sort();
    out.dedup();
    (start, out)
}

struct KokoHelper {
    world: SharedWorld,
    /// The API's function, method and property names.
    api: Vec<String>,
    vars: Rc<RefCell<Vec<String>>>,
}

impl KokoHelper {
    /// Namespace names under /run/netns and the link names inside them.
    fn live_names(&self) -> Vec<String> {
        let mut names = named::list().unwrap_or_default();
        let world = self.world.borrow();
        for ns_name in names.clone() {
            let Ok(ns) = Namespace::netns(&ns_name) else {
                continue;
            };
            let Ok(t) = world.session.target(&ns) else {
                continue;
            };
            if let Ok(links) = world.session.block_on(link::list(&t)) {
                names.extend(links.into_iter().map(|l| l.name));
            }
            // Completion must not keep namespaces alive.
            world.session.forget(&ns);
        }
        names
    }
}

impl Completer for KokoHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let names = if line[..pos].matches('"').count() % 2 == 1 {
            self.live_names()
        } else {
            Vec::new()
        };
        let (start, words) = complete_word(line, pos, &self.api, &self.vars.borrow(), &names);
        Ok((
            start,
            words
                .into_iter()
                .map(|w| Pair {
                    display: w.clone(),
                    replacement: w,
                })
                .collect(),
        ))
    }
}
impl Hinter for KokoHelper {
    type Hint = String;
}
impl Highlighter for KokoHelper {}
impl Validator for KokoHelper {}
impl Helper for KokoHelper {}

/// Is this parse error just "the input stops too early"?
fn incomplete(err: &rhai::ParseError) -> bool {
    matches!(
        err.err_type(),
        rhai::ParseErrorType::UnexpectedEOF | rhai::ParseErrorType::MissingToken(..)
    ) || err.err_type().to_string().contains("end of")
}

/// `:help` and `:help NAME`, from the engine's own function metadata.
fn help(engine: &Engine, name: Option<&str>) -> String {
    let docs = super::docs::api(engine);
    match name {
        None => super::docs::help_all(&docs),
        Some(n) => super::docs::help_one(&docs, n),
    }
}

struct Session {
    engine: Engine,
    scope: Scope<'static>,
    functions: AST,
    resolver: super::resolver::Resolver,
}

/// A copy of `value` for a person to read: the milliseconds in maps
/// (values of keys ending in `_ms`: `rtt_ms`, `outage_ms`) rounded by
/// [`crate::output::round_ms`]. Only the display: the variable keeps every
/// digit.
fn rounded_for_display(value: Dynamic) -> Dynamic {
    if value.is_map() {
        let map = value.cast::<rhai::Map>();
        let shown: rhai::Map = map
            .into_iter()
            .map(|(key, v)| {
                let v = match v.as_float() {
                    Ok(ms) if key.ends_with("_ms") => {
                        Dynamic::from_float(crate::output::round_ms(ms))
                    }
                    _ => rounded_for_display(v),
                };
                (key, v)
            })
            .collect();
        Dynamic::from_map(shown)
    } else if value.is_array() {
        let list = value.cast::<rhai::Array>();
        Dynamic::from_array(list.into_iter().map(rounded_for_display).collect())
    } else {
        value
    }
}

impl Session {
    /// Evaluate one complete input; returns what to print.
    fn eval(&mut self, input: &str) -> Result<Option<String>, String> {
        let ast = self
            .engine
            .compile_with_scope(&self.scope, input)
            .map_err(|e| format_parse_error("<repl>", input, &e))?;
        let runnable = self.functions.merge(&ast);
        let value: Dynamic = self
            .engine
            .eval_ast_with_scope(&mut self.scope, &runnable)
            .map_err(|e| format_runtime_error("<repl>", &e))?;
        self.functions = self.functions.merge(&ast.clone_functions_only());
        self.keep_imports(input)?;
        Ok(if value.is_unit() {
            None
        } else {
            Some(self.show(value))
        })
    }

    /// A value as the script's `to_debug` shows it (so a Link prints as
    /// `Link(x in netns 'a')`, also inside arrays and maps, not as a Rust
    /// type name).
    fn show(&self, value: Dynamic) -> String {
        let value = rounded_for_display(value);
        let fallback = format!("{value:?}");
        let mut scope = Scope::new();
        scope.push("__koko_value", value);
        self.engine
            .eval_with_scope::<String>(&mut scope, "to_debug(__koko_value)")
            .unwrap_or(fallback)
    }

    /// Make `import "x" as y;` of this input last beyond it.
    fn keep_imports(&mut self, input: &str) -> Result<(), String> {
        let mut rest = input;
        while let Some(i) = rest.find("import") {
            rest = &rest[i + 6..];
            let Some(q1) = rest.find('"') else { break };
            let Some(q2) = rest[q1 + 1..].find('"') else {
                break;
            };
            let path = rest[q1 + 1..q1 + 1 + q2].to_string();
            let after = rest[q1 + 2 + q2..].trim_start();
            let Some(alias_part) = after.strip_prefix("as") else {
                continue;
            };
            let alias: String = alias_part
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if alias.is_empty() {
                continue;
            }
            let module = self
                .resolver
                .resolve(&self.engine, None, &path, Position::NONE)
                .map_err(|e| format_runtime_error("<repl>", &e))?;
            self.engine.register_static_module(alias, module);
        }
        Ok(())
    }
}

/// Run the REPL; returns the exit code.
pub fn run(history: Option<PathBuf>) -> i32 {
    let world = match World::start(crate::runs::RunKind::Repl) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let cwd = std::env::current_dir().ok();
    let mut session = Session {
        engine: build_engine(&world, Limits::default(), cwd.clone()),
        scope: Scope::new(),
        functions: AST::empty(),
        resolver: super::resolver::Resolver::new(cwd),
    };
    crate::interrupt::install();
    // What SIGTERM/SIGHUP put on stdin so a prompt waiting for a line
    // returns (see interrupt::at_prompt); the terminal's settings, to
    // restore them on the original stdin afterwards.
    let devnull = std::fs::File::open("/dev/null").ok();
    let terminal = Terminal::save();
    let vars = Rc::new(RefCell::new(Vec::new()));
    let mut editor: Editor<KokoHelper, DefaultHistory> = match Editor::new() {
        Ok(e) => e,
        Err(e) => {
            crate::say!("koko: cannot start the line editor: {e}");
            return 1;
        }
    };
    editor.set_helper(Some(KokoHelper {
        world: world.clone(),
        api: super::docs::names(&super::docs::api(&session.engine)),
        vars: vars.clone(),
    }));
    let history = history
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".koko_history")));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut code = 0;
    let banner = format!(
        "koko {} — the script API at a prompt. :help lists it, :quit leaves.",
        crate::plan::VERSION
    );
    let mut out = crate::output::line(&banner);
    let mut buffer = String::new();
    let stopped_by = loop {
        if let Err(e) = out {
            // stdout is gone (a closed pipe, a full disk): nobody can see
            // the session any more.
            if !crate::output::is_broken_pipe(&e) {
                crate::say!("koko: {e}");
            }
            code = 1;
            break None;
        }
        out = Ok(());
        let prompt = if buffer.is_empty() {
            "koko> "
        } else {
            "  ... "
        };
        crate::interrupt::at_prompt(devnull.as_ref().map(std::os::fd::AsRawFd::as_raw_fd));
        // A SIGTERM/SIGHUP that came just before the hook was set found
        // nothing to wake: do not start a read it would not end.
        let line = match crate::interrupt::pending() {
            Some(s) if s != nix::sys::signal::Signal::SIGINT => Err(ReadlineError::Eof),
            _ => editor.readline(prompt),
        };
        crate::interrupt::at_prompt(None);
        match crate::interrupt::pending() {
            None => {}
            // Ctrl-C as a signal while reading (piped input; a terminal
            // in raw mode sends it as a key, below): clear the input, as
            // at a terminal, rather than let it stop the next one.
            Some(nix::sys::signal::Signal::SIGINT) => {
                crate::interrupt::clear();
                buffer.clear();
                continue;
            }
            Some(signal) => break Some(signal),
        }
        let line = match line {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                crate::interrupt::clear();
                continue;
            }
            Err(_) => break None,
        };
        if buffer.is_empty() {
            let cmd = line.trim();
            if cmd == ":quit" || cmd == ":q" || cmd == "exit" {
                break None;
            }
            if let Some(rest) = cmd.strip_prefix(":help") {
                let name = rest.trim();
                out =
                    crate::output::line(&help(&session.engine, (!name.is_empty()).then_some(name)));
                continue;
            }
            if cmd == ":graph" {
                match session.engine.eval::<String>("graph()") {
                    Ok(dot) => out = crate::output::line(dot.trim_end()),
                    Err(e) => crate::say!("error: {}", format_runtime_error("<repl>", &e)),
                }
                continue;
            }
            if cmd.is_empty() {
                continue;
            }
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if let Err(e) = session.engine.compile_with_scope(&session.scope, &buffer) {
            if incomplete(&e) {
                continue;
            }
        }
        let input = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(input.trim_end());
        match session.eval(&input) {
            Ok(Some(v)) => out = crate::output::line(&format!("=> {v}")),
            Ok(None) => {}
            Err(e) => crate::say!("error: {e}"),
        }
        // A print() that failed inside the input.
        out = out.and_then(|_| crate::output::check());
        if let Err(e) = crate::memory::check() {
            // What holds the memory is the session's variables; kept, they
            // would stop every later input at its first operation.
            session.scope.clear();
            crate::say!("koko: {e}: the session's variables are cleared (what it created stays; cleanup() undoes it)");
        }
        match crate::interrupt::pending() {
            Some(nix::sys::signal::Signal::SIGINT) => crate::interrupt::clear(),
            Some(signal) => break Some(signal),
            None => {}
        }
        *vars.borrow_mut() = session
            .scope
            .iter_raw()
            .map(|(n, _, _)| n.to_string())
            .collect();
    };
    terminal.restore();
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    let left = world.borrow().journal.entries().len();
    if let Some(signal) = stopped_by {
        // SIGTERM or SIGHUP: nobody will type cleanup() any more.
        let errors = super::undo_world(&world);
        crate::say!(
            "koko: {}: undid {left} step(s) this session had done",
            crate::Error::Interrupted { signal }
        );
        for e in &errors {
            crate::say!("koko: while undoing: {e}");
        }
        crate::interrupt::clear();
        world.borrow_mut().journal.close();
        return crate::Error::Interrupted { signal }.exit_code();
    }
    if left > 0 {
        let _ = crate::output::line(&format!("leaving {left} object(s) created in this session in place (call cleanup() before :quit to undo them)"));
    }
    // The session is over: its journal file goes (what is left is kept).
    world.borrow_mut().journal.close();
    code
}

/// The terminal settings of stdin when the REPL started, with a copy of
/// the fd they belong to (stdin itself may be replaced by /dev/null when a
/// signal ends the session while the line editor has the terminal in raw
/// mode).
struct Terminal {
    fd: Option<std::os::fd::OwnedFd>,
    settings: Option<nix::sys::termios::Termios>,
}

impl Terminal {
    fn save() -> Terminal {
        let fd = std::io::stdin()
            .as_fd_owned_copy()
            .filter(|fd| nix::unistd::isatty(fd).unwrap_or(false));
        let settings = fd
            .as_ref()
            .and_then(|fd| nix::sys::termios::tcgetattr(fd).ok());
        Terminal { fd, settings }
    }

    fn restore(&self) {
        if let (Some(fd), Some(settings)) = (&self.fd, &self.settings) {
            let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, settings);
        }
    }
}

/// A private copy of an fd (close-on-exec).
trait OwnedCopy {
    fn as_fd_owned_copy(&self) -> Option<std::os::fd::OwnedFd>;
}

impl OwnedCopy for std::io::Stdin {
    fn as_fd_owned_copy(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_functions_methods_and_names() {
        let world = World::new().unwrap();
        let engine = build_engine(&world, Limits::default(), None);
        let api = super::super::docs::names(&super::super::docs::api(&engine));
        let vars = vec!["client".to_string()];
        let (start, c) = complete_word("let x = net", 11, &api, &vars, &[]);
        assert_eq!(start, 8);
        assert!(c.contains(&"netns".to_string()));
        let (_, c) = complete_word("cli", 3, &api, &vars, &[]);
        assert_eq!(c, vec!["client"]);
        let (start, c) = complete_word("client.forw", 11, &api, &vars, &[]);
        assert_eq!(start, 7);
        assert_eq!(c, vec!["forwarding"]);
        let names = vec!["firewall".to_string(), "link1".to_string()];
        let (start, c) = complete_word("netns(\"fi", 9, &api, &vars, &names);
        assert_eq!(start, 7);
        assert_eq!(c, vec!["firewall"]);
    }

    #[test]
    fn help_knows_the_api() {
        let world = World::new().unwrap();
        let engine = build_engine(&world, Limits::default(), None);
        assert!(help(&engine, Some("veth")).contains("veth(a: Ns, name_a: string"));
        assert!(help(&engine, Some("nope")).contains("no API function"));
        let all = help(&engine, None);
        assert!(
            all.contains("on_link_down(") && all.contains("netns("),
            "{all}"
        );
    }
}

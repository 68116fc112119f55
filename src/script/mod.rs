//! Scripting: koko's API in the Rhai language, the `koko run` runner and the
//! `koko repl` prompt.
//!
//! A script drives the same library functions as the command line. All of a
//! run's state lives in one [`World`]: the netlink [`Session`] (one socket per
//! namespace), the [`Journal`] of everything the run created, and the event
//! hooks. The Rhai functions registered in [`api`] share the world through an
//! `Rc<RefCell<_>>`; none of them holds a borrow while calling back into the
//! script.
//!
//! Functions that touch the system are registered *volatile*, so the
//! optimizer never runs them at compile time. Limits (operations, call depth,
//! string/array/map sizes) are set explicitly: Rhai's debug-build defaults
//! are tiny, and they do not bound what a script holds in total, so the
//! runner also keeps the whole heap under a budget (`--max-memory`, see
//! [`crate::memory`]). SIGINT (Ctrl-C), SIGTERM and SIGHUP set a flag
//! ([`crate::interrupt`]); the engine's progress callback and koko's
//! long-running functions (`sleep`, `watch`, `exec`, probes) check it, with
//! the memory budget and the state of stdout ([`stop_reason`]), so a script
//! stops cleanly, its journal is undone and the exit code says why
//! (128 + the signal's number for a signal).

/// Register a documented binding. Its doc comment (`///` lines before the
/// closure, or `#[doc = text]` when a loop registers several) and the
/// closure's own parameter names and types become the function's Rhai
/// metadata, from which `:help`, completion, error hints and the README's
/// API list are generated (see [`docs`]). The closure is always made
/// `move` (Rhai keeps it for the engine's lifetime). (Defined before the
/// modules that use it.)
///
/// ```ignore
/// sys!(engine, "veth",
///     /// veth pair, both ends up; returns the end in a
///     move |a: NsRef, name_a: &str, b: NsRef, name_b: &str| -> R<LinkRef> { ... });
/// ```
macro_rules! register_doc {
    ($reg:expr, $name:expr, $engine:expr,
     $(#[doc = $doc:expr])* $(move)? || $(-> $ret:ty)? { $($body:tt)* }) => {
        $crate::script::docs::describe($reg, &[], &[$(stringify!($ret))?], &[$($doc),*])
            .register_into_engine($engine, move || $(-> $ret)? { $($body)* })
    };
    ($reg:expr, $name:expr, $engine:expr,
     $(#[doc = $doc:expr])* $(move)? |$($arg:ident : $ty:ty),+ $(,)?| $(-> $ret:ty)? { $($body:tt)* }) => {
        $crate::script::docs::describe(
            $reg,
            &[$((stringify!($arg), stringify!($ty))),+],
            &[$(stringify!($ret))?],
            &[$($doc),*],
        )
        .register_into_engine($engine, move |$($arg: $ty),+| $(-> $ret)? { $($body)* })
    };
}

/// A function that touches the system: volatile, so the optimizer never
/// calls it at compile time.
macro_rules! sys {
    ($engine:expr, $name:expr, $($rest:tt)+) => {
        register_doc!(
            rhai::FuncRegistration::new($name).with_volatility(true),
            $name,
            $engine,
            $($rest)+
        )
    };
}

/// A function without side effects (conversions, operators).
macro_rules! func {
    ($engine:expr, $name:expr, $($rest:tt)+) => {
        register_doc!(rhai::FuncRegistration::new($name), $name, $engine, $($rest)+)
    };
}

/// A property getter (`ns.name`).
macro_rules! getter {
    ($engine:expr, $name:expr, $($rest:tt)+) => {
        register_doc!(
            rhai::FuncRegistration::new_getter($name).with_volatility(true),
            $name,
            $engine,
            $($rest)+
        )
    };
}

pub mod api;
pub mod api_bulk;
pub mod api_capture;
pub mod api_compat;
pub mod api_graph;
pub mod api_impair;
pub mod api_ip;
pub mod api_links;
pub mod api_namespaces;
pub mod api_probes;
pub mod api_tunnels;
pub mod docs;
pub mod events;
pub mod options;
pub mod repl;
pub mod resolver;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult, Position, Scope, AST};

use crate::error::Result;
use crate::journal::Journal;
use crate::net::Session;

/// Everything a run owns.
pub struct World {
    pub session: Session,
    pub journal: Journal,
    pub events: api::Events,
}

pub type SharedWorld = Rc<RefCell<World>>;

impl World {
    /// Keep the lab this run built wired from now on (`keep_wired()`,
    /// `--keep-wired`): see [`crate::rewire`].
    pub fn keep_wired(&mut self) -> crate::Result<()> {
        let World {
            session,
            journal,
            events,
        } = self;
        events.keep_wired(session, journal)
    }

    /// Check privileges and create the world of a run of `kind`, its
    /// journal on disk (see [`crate::journal`]); on failure, report it and
    /// return the exit code.
    pub fn start(kind: crate::runs::RunKind) -> std::result::Result<SharedWorld, i32> {
        let world = crate::ns::check_privileges().and_then(|_| World::new());
        let world = world.and_then(|w| {
            w.borrow_mut().journal = Journal::for_run(kind)?;
            Ok(w)
        });
        match world {
            Ok(w) => Ok(w),
            Err(e) => {
                crate::say!("koko: {e}");
                Err(1)
            }
        }
    }

    pub fn new() -> Result<SharedWorld> {
        Ok(Rc::new(RefCell::new(World {
            session: Session::new()?,
            journal: Journal::new(),
            events: api::Events::default(),
        })))
    }
}

/// Undo what the run created, newest first; returns the error messages.
pub fn undo_world(world: &SharedWorld) -> Vec<crate::Error> {
    let mut w = world.borrow_mut();
    let World {
        session,
        journal,
        events,
    } = &mut *w;
    events.clear();
    journal.undo_all_batched(session)
}

/// Limits of a run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// The heap the whole run may hold, in bytes (`--max-memory`).
    pub max_memory: usize,
    /// How much output (stdout and stderr together) `ns.exec()` keeps from
    /// one program before it stops it.
    pub max_exec_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 50_000_000,
            max_call_levels: 64,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 100_000,
            max_memory: crate::memory::DEFAULT_BUDGET,
            max_exec_output: 16 << 20,
        }
    }
}

/// Why a running script must stop now, if it must: a stop signal, the heap
/// over its budget, or stdout that can no longer be written.
pub fn stop_reason() -> Option<crate::Error> {
    crate::interrupt::check()
        .and_then(|_| crate::memory::check())
        .and_then(|_| crate::output::check())
        .err()
}

/// The `max_exec_output` of the current run's limits, for `ns.exec()`.
pub(crate) static EXEC_OUTPUT_CAP: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(16 << 20);

/// Build an engine with koko's API, the module resolver and the limits.
pub fn build_engine(world: &SharedWorld, limits: Limits, script_dir: Option<PathBuf>) -> Engine {
    let mut engine = Engine::new();
    engine.set_optimization_level(rhai::OptimizationLevel::Simple);
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_levels);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_modules(256);
    crate::memory::set_budget(limits.max_memory);
    EXEC_OUTPUT_CAP.store(limits.max_exec_output, std::sync::atomic::Ordering::SeqCst);
    engine.on_progress(|_ops| stop_reason().map(|e| Dynamic::from(e.to_string())));
    // print() to a closed or full stdout stops the script (at the next
    // operation) instead of panicking; debug() goes to stderr, best effort.
    engine.on_print(crate::output::script_line);
    engine.on_debug(|text, source, pos| {
        use std::io::Write;
        let at = match (source, pos.line()) {
            (Some(src), Some(line)) => format!("{src}:{line}: "),
            (None, Some(line)) => format!("line {line}: "),
            _ => String::new(),
        };
        let _ = writeln!(std::io::stderr(), "{at}{text}");
    });
    engine.set_module_resolver(resolver::Resolver::new(script_dir));
    api::register(&mut engine, world);
    docs::remember(&engine);
    engine
}

/// Format a parse error with the source line and a caret under the column.
pub fn format_parse_error(file: &str, source: &str, err: &rhai::ParseError) -> String {
    let pos = err.position();
    let mut text = err.err_type().to_string();
    if let (Some(line), col) = (pos.line(), pos.position().unwrap_or(1)) {
        text = format!("{file}:{line}:{col}: syntax error: {text}");
        if let Some(src) = source.lines().nth(line - 1) {
            text.push_str(&format!(
                "\n  {line:>4} | {src}\n       | {}^",
                " ".repeat(col.saturating_sub(1))
            ));
        }
    } else {
        text = format!("{file}: syntax error: {text}");
    }
    text
}

/// A runtime error as `file:line:col: message`, with the call chain of
/// script functions it came through: each step says where the function was
/// called (in its caller's file), the last where the error was raised.
pub fn format_runtime_error(file: &str, err: &EvalAltResult) -> String {
    let mut chain = Vec::new();
    let mut cur = err;
    let outer_pos = err.position();
    // The file the current step's position refers to.
    let mut caller = file.to_string();
    loop {
        match cur {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                chain.push(format!("{name}() called at {}", located(&caller, *pos)));
                if !src.is_empty() {
                    caller = src.clone();
                }
                cur = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, pos) => {
                chain.push(format!(
                    "module '{name}' imported at {}",
                    located(&caller, *pos)
                ));
                caller = name.clone();
                cur = inner;
            }
            _ => break,
        }
    }
    let message = error_message(cur);
    if !chain.is_empty() && !cur.position().is_none() {
        chain.push(format!("raised at {}", located(&caller, cur.position())));
    }
    let where_ = located(file, outer_pos);
    if chain.is_empty() {
        format!("{where_}: {message}")
    } else {
        format!(
            "{where_}: {message}\n  (call chain: {})",
            chain.join(" -> ")
        )
    }
}

fn located(src: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{src}:{l}:{c}"),
        (Some(l), None) => format!("{src}:{l}"),
        _ => src.to_string(),
    }
}

/// The `kind` of koko's own (map) errors, under any call/module wrapping.
pub(crate) fn error_kind(err: &EvalAltResult) -> Option<String> {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => error_kind(inner),
        EvalAltResult::ErrorRuntime(value, _) => value
            .read_lock::<rhai::Map>()
            .and_then(|m| m.get("kind").map(|k| k.to_string())),
        _ => None,
    }
}

/// The message of an error without its position: for koko's own errors the
/// `message` field of the thrown map.
pub fn error_message(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorRuntime(value, _) => {
            if let Some(map) = value.read_lock::<rhai::Map>() {
                if let Some(m) = map.get("message") {
                    return m.to_string();
                }
            }
            value.to_string()
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            "the script ran too long: it hit the operations limit (a runaway loop?); raise it with --max-ops".into()
        }
        EvalAltResult::ErrorTerminated(value, _) => value.to_string(),
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "functions called each other too deep: more than {} levels (a runaway recursion?)",
            Limits::default().max_call_levels
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            let l = Limits::default();
            format!(
                "{what}: over the limit (strings {} bytes, arrays and maps {} items)",
                l.max_string_size, l.max_array_size
            )
        }
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            let name = sig.split([' ', '(']).next().unwrap_or(sig);
            // Rhai spells argument types the Rust way; say them the script's way.
            let sig = sig
                .replace("&str | ImmutableString | String", "string")
                .replace("i64", "int")
                .replace("f64", "float")
                .replace("rhai::", "");
            match docs::expected(name) {
                Some(expected) => format!("wrong arguments for {sig}: expected {expected}"),
                None => format!("unknown function {sig}"),
            }
        }
        other => {
            // Display appends " (line L, position C)"; the caller prints
            // the position its own way.
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(i) if text.ends_with(')') => text[..i].to_string(),
                _ => text,
            }
        }
    }
}

/// What `koko run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub file: PathBuf,
    pub args: Vec<String>,
    /// Keep what a failing script created (no rollback).
    pub keep: bool,
    /// Undo everything at the end of a successful run too.
    pub cleanup: bool,
    /// When the script ends, stay and keep its lab wired until a stop
    /// signal (`--keep-wired`; the script's `keep_wired()` does the same).
    pub keep_wired: bool,
    pub limits: Limits,
}

/// Run a script file; returns the exit code (0 ok, 1 script/system error,
/// 2 usage or parse error).
pub fn run_file(opts: &RunOptions) -> i32 {
    let file = opts.file.display().to_string();
    let source = match std::fs::read_to_string(&opts.file) {
        Ok(s) => s,
        Err(e) => {
            crate::say!("koko: cannot read script {file}: {e}");
            return 2;
        }
    };
    let world = match World::start(crate::runs::RunKind::Script) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let dir = opts.file.parent().map(Path::to_path_buf);
    let engine = build_engine(&world, opts.limits, dir);
    let mut ast: AST = match engine.compile(&source) {
        Ok(ast) => ast,
        Err(e) => {
            crate::say!("koko: {}", format_parse_error(&file, &source, &e));
            return 2;
        }
    };
    ast.set_source(file.clone());
    let mut scope = Scope::new();
    let args: rhai::Array = opts.args.iter().cloned().map(Dynamic::from).collect();
    scope.push_constant("ARGS", args);
    crate::interrupt::install();
    let result = engine.run_ast_with_scope(&mut scope, &ast);
    // What the script holds is freed before the undo runs (a script
    // stopped by the memory limit holds the most).
    drop(scope);
    let mut kept_wired = false;
    let code = match &result {
        Ok(()) => match stop_reason() {
            // A signal (or a failed print) during the last statement, which
            // no progress check followed: the run did not finish.
            Some(e) => {
                crate::say!("koko: {file}: {e}");
                e.exit_code()
            }
            None if opts.keep_wired || world.borrow().events.keeper.is_some() => {
                kept_wired = true;
                let id = world.borrow().journal.run_id().unwrap_or("").to_string();
                if opts.keep {
                    crate::say!(
                        "koko: keeping the lab wired; Ctrl-C ends the watch and keeps the lab (--keep): `koko undo {id}` removes it later"
                    );
                } else {
                    crate::say!(
                        "koko: keeping the lab wired; Ctrl-C to undo it, or run with --keep to keep it"
                    );
                }
                match events::keep_watching(&world, &engine, &ast, &file) {
                    Ok(()) => 0,
                    Err((message, code)) => {
                        crate::say!("koko: {file}: {message}");
                        code
                    }
                }
            }
            None => 0,
        },
        Err(e) => {
            crate::say!("koko: {}", format_runtime_error(&file, e));
            if let Some(signal) = crate::interrupt::pending() {
                crate::Error::Interrupted { signal }.exit_code()
            } else if error_kind(e).as_deref() == Some("syntax") {
                // A syntax error in an imported module is a parse error too.
                2
            } else {
                1
            }
        }
    };
    let undo = (code != 0 && !opts.keep) || (code == 0 && opts.cleanup);
    let mut final_code = code;
    if undo {
        let count = world.borrow().journal.entries().len();
        let errors = undo_world(&world);
        if code != 0 && count > 0 {
            crate::say!(
                "koko: undid {count} step(s) the script had done{}",
                if opts.keep {
                    ""
                } else {
                    " (use --keep to keep them)"
                }
            );
        }
        for e in &errors {
            crate::say!("koko: while undoing: {e}");
        }
        if !errors.is_empty() && final_code == 0 {
            final_code = 1;
        }
    } else if code != 0 && opts.keep {
        crate::say!("koko: --keep: leaving what the script created in place");
    }
    if kept_wired && opts.keep && !undo {
        // A kept lab that was kept wired stays koko's: its journal stays on
        // disk, so `koko runs` lists it and `koko undo RUN` removes it.
        let mut w = world.borrow_mut();
        w.events.clear();
        if let Some(id) = w.journal.leave_on_disk() {
            crate::say!("koko: the lab stays; `koko undo {id}` removes it");
        }
    }
    // The run is over: its journal file goes (what is left is kept).
    world.borrow_mut().journal.close();
    crate::interrupt::clear();
    final_code
}

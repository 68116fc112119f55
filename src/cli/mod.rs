//! The command lines: argv dispatch, help texts, clap subcommands (`run`,
//! `repl`, `netns`), printing and exit codes. Parsing the one-shot and koro
//! grammars into typed requests, and carrying them out into a report, is
//! the library's [`crate::plan`]; this module only turns arguments into a
//! call of it and its report (or error) into text, JSON and an exit code.

pub mod capture;
pub mod completions;
pub mod graph;
pub mod koro;
pub mod runs;
pub mod show;
pub mod spec;
pub mod test;

use serde_json::json;

use crate::error::{Error, Result};
use crate::net::Session;
use crate::ns::{self, named};
use crate::plan::{self, oneshot, oneshot::Action, Report, Request};

pub use crate::plan::VERSION;

/// The text of `koko -h`, generated from [`spec`] (the same definition
/// the completions and the man page come from).
pub fn help() -> String {
    spec::help()
}

/// Run koko with `args` (including the program name); returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let args = match take_cri_socket(args) {
        Ok(args) => args,
        Err(e) => return finish(Err(e), false),
    };
    let rest = &args[1.min(args.len())..];
    let invoked_as = args
        .first()
        .map(|a| std::path::Path::new(a).file_name().unwrap_or_default());
    if invoked_as == Some(std::ffi::OsStr::new("koro")) {
        return koro::main(rest);
    }
    if invoked_as == Some(std::ffi::OsStr::new("koko-cni")) {
        return crate::cni::main();
    }
    match rest.first().map(String::as_str) {
        Some("netns") => netns_main(&rest[1..]),
        Some("run") => run_command(&rest[1..]),
        Some("repl") => repl_command(&rest[1..]),
        Some("ip") => koro::main(&rest[1..]),
        Some("show") => show::main(&rest[1..]),
        Some("capture") => capture::main(&rest[1..]),
        Some("graph") => graph::main(&rest[1..]),
        Some("runs") => runs::runs_main(&rest[1..]),
        Some("undo") => runs::undo_main(&rest[1..]),
        Some("test") => test::test_main(&rest[1..]),
        Some("__test-one") => test::test_one_main(&rest[1..]),
        Some("__sandbox-hold") => test::hold_main(),
        Some("cni") => crate::cni::main(),
        Some("completions") => completions::completions_main(&rest[1..]),
        Some("man") => completions::man_main(&rest[1..]),
        Some("__complete") => completions::complete_main(&rest[1..]),
        _ => oneshot_main(rest),
    }
}

/// `--cri-socket PATH` (or `=PATH`) is global: it applies to every face
/// (one-shot, `ip`/koro, `run`, `repl`), so it is taken out of the words
/// before they are dispatched. Words after `--` belong to a script.
fn take_cri_socket(args: Vec<String>) -> Result<Vec<String>> {
    let mut kept = Vec::with_capacity(args.len());
    let mut words = args.into_iter();
    while let Some(word) = words.next() {
        if word == "--" {
            kept.push(word);
            kept.extend(words.by_ref());
            break;
        }
        if word == "--cri-socket" {
            let value = words.next().ok_or_else(|| {
                Error::Invalid("--cri-socket needs a value (unix:///path/to/socket)".into())
            })?;
            ns::cri::set_socket(&value)?;
        } else if let Some(value) = word.strip_prefix("--cri-socket=") {
            ns::cri::set_socket(value)?;
        } else {
            kept.push(word);
        }
    }
    Ok(kept)
}

fn oneshot_main(args: &[String]) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    let line = match oneshot::parse(args) {
        Ok(line) => line,
        Err(e) => return finish(Err(e), json),
    };
    match line.action {
        Action::Help => finish(
            Ok(Output {
                lines: vec![help().trim_end().to_string()],
                json: json!({"ok": true, "help": help()}),
            }),
            line.json,
        ),
        Action::Version => finish(
            Ok(Output {
                lines: vec![format!("koko {VERSION}")],
                json: json!({"ok": true, "version": VERSION}),
            }),
            line.json,
        ),
        action => finish_printed(
            ns::check_privileges().and_then(|_| execute(Request::Oneshot(action), line.json)),
            line.json,
        ),
    }
}

/// Execute a request the one-shot way and print its report: a fresh
/// session and journal, rolled back if the request fails, if a stop signal
/// (SIGINT, SIGTERM, SIGHUP) arrives before the report is out, or if the
/// report cannot be written — a command that exits non-zero leaves
/// nothing behind.
pub(crate) fn execute(request: Request, json: bool) -> Result<()> {
    crate::interrupt::install();
    let session = Session::new()?;
    let outcome = plan::atomically(&session, |journal| {
        let report = plan::execute(&session, journal, request)?;
        crate::interrupt::test_pause("BEFORE_REPORT")?;
        crate::interrupt::check()?;
        print_output(&Output::from(report), json)
    });
    if let Err(e) = &outcome {
        if e.is_interrupted() || matches!(e, Error::Io { what, .. } if what == OUTPUT) {
            crate::say!("koko: {e}: what the command had done is undone");
        }
    }
    outcome
}

/// What [`crate::output`] calls a failed write to stdout.
const OUTPUT: &str = "writing to standard output";

/// Print a successful command's output (its lines, or its JSON).
fn print_output(out: &Output, json: bool) -> Result<()> {
    if json {
        crate::output::line(&out.json.to_string())
    } else {
        out.lines.iter().try_for_each(|l| crate::output::line(l))
    }
}

/// Print the outcome and return the exit code.
pub(crate) fn finish(outcome: Result<Output>, json: bool) -> i32 {
    finish_printed(outcome.and_then(|out| print_output(&out, json)), json)
}

/// Report the failure of a command whose output was already printed (or
/// could not be), and return the exit code.
pub(crate) fn finish_printed(outcome: Result<()>, json: bool) -> i32 {
    let failure = match outcome {
        Ok(()) => return 0,
        Err(failure) => failure,
    };
    let code = failure.exit_code();
    // A reader that went away (`| head`) closed the pipe on purpose:
    // no message, and nothing more to write to it.
    if crate::output::is_broken_pipe(&failure) {
        return code;
    }
    crate::say!("koko: {failure}");
    if code == 2 {
        crate::say!("Run 'koko -h' for usage.");
    }
    let stdout_failed = matches!(&failure, Error::Io { what, .. } if what == OUTPUT);
    if json && !stdout_failed {
        let _ = crate::output::line(&json!({"ok": false, "error": failure.to_json()}).to_string());
    }
    code
}

/// What a successful command prints: one line per action, or one JSON value.
pub struct Output {
    pub lines: Vec<String>,
    pub json: serde_json::Value,
}

impl From<Report> for Output {
    fn from(report: Report) -> Output {
        Output {
            lines: report.lines(),
            json: report.to_json(),
        }
    }
}

/// `koko run FILE [--keep] [--cleanup] [--max-ops N] [-- ARGS...]`
#[derive(clap::Parser, Debug)]
#[command(name = "koko run", about = "Run a koko script (Rhai)")]
struct RunArgs {
    /// The script to run.
    file: std::path::PathBuf,
    /// If the script fails, keep what it created (default: undo it).
    #[arg(long)]
    keep: bool,
    /// Undo everything the script created when it ends, even on success.
    #[arg(long)]
    cleanup: bool,
    /// When the script ends, stay and keep its lab wired while containers
    /// and namespaces restart, until Ctrl-C (which undoes it, or keeps it
    /// with --keep).
    #[arg(long)]
    keep_wired: bool,
    /// Stop the script after this many operations (runaway loops).
    #[arg(long, value_name = "N")]
    max_ops: Option<u64>,
    /// Run in a private network and mount namespace (private /run/netns
    /// and /run/koko): the host is never touched, and everything the
    /// script built goes when it ends.
    #[arg(long)]
    sandbox: bool,
    /// The heap the whole run may hold (e.g. 256M, 2G; default 512M):
    /// past it the script stops with an error and its work is undone.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory)]
    max_memory: Option<usize>,
    /// Arguments for the script (the ARGS array).
    #[arg(last = true)]
    args: Vec<String>,
}

fn parse_memory(text: &str) -> std::result::Result<usize, String> {
    crate::memory::parse_size(text)
}

fn parse_sub<T: clap::Parser>(name: &str, args: &[String]) -> std::result::Result<T, i32> {
    let argv = std::iter::once(format!("koko {name}")).chain(args.iter().cloned());
    T::try_parse_from(argv).map_err(|e| {
        let code = if e.use_stderr() { 2 } else { 0 };
        // Help that cannot be written (`| head -1`, `> /dev/full`) is
        // not a success.
        match e.print() {
            Ok(()) => code,
            Err(_) => code.max(1),
        }
    })
}

fn run_command(args: &[String]) -> i32 {
    let parsed: RunArgs = match parse_sub("run", args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if parsed.keep && parsed.cleanup {
        crate::say!("koko run: --keep and --cleanup contradict each other");
        return 2;
    }
    if parsed.sandbox {
        // The same command line, without --sandbox, in a child born in
        // the sandbox (words after `--` are the script's and stay).
        let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
        let inner: Vec<String> = args[..end]
            .iter()
            .filter(|a| a.as_str() != "--sandbox")
            .chain(&args[end..])
            .cloned()
            .collect();
        return match crate::suite::run_sandboxed(&inner) {
            Ok(code) => code,
            Err(e) => {
                crate::say!("koko run --sandbox: {e}");
                e.exit_code()
            }
        };
    }
    let mut limits = crate::script::Limits::default();
    if let Some(n) = parsed.max_ops {
        limits.max_operations = n;
    }
    if let Some(bytes) = parsed.max_memory {
        limits.max_memory = bytes;
    }
    crate::script::run_file(&crate::script::RunOptions {
        file: parsed.file,
        args: parsed.args,
        keep: parsed.keep,
        cleanup: parsed.cleanup,
        keep_wired: parsed.keep_wired,
        limits,
    })
}

/// `koko repl [--history FILE]`
#[derive(clap::Parser, Debug)]
#[command(
    name = "koko repl",
    about = "Explore and change namespaces interactively"
)]
struct ReplArgs {
    /// Where to keep the line history (default: ~/.koko_history).
    #[arg(long, value_name = "FILE")]
    history: Option<std::path::PathBuf>,
}

fn repl_command(args: &[String]) -> i32 {
    let parsed: ReplArgs = match parse_sub("repl", args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    crate::script::repl::run(parsed.history)
}

/// `koko netns add|del NAME... | list [--json]`: flags are flags wherever
/// they stand (`--json`), `--` ends them (a name may then start with '-').
fn netns_main(args: &[String]) -> i32 {
    // SIGINT, SIGTERM and SIGHUP end an `add` of several names cleanly
    // (what it made goes again) instead of killing koko half-way.
    crate::interrupt::install();
    let mut json = false;
    let mut words = Vec::with_capacity(args.len());
    let mut flags_done = false;
    for arg in args {
        if flags_done {
            words.push(arg.clone());
            continue;
        }
        match arg.as_str() {
            "--json" => json = true,
            "--" => flags_done = true,
            "-h" | "--help" if words.is_empty() => {
                return finish(
                    Ok(Output {
                        lines: vec![NETNS_USAGE.into()],
                        json: json!({"ok": true, "help": NETNS_USAGE}),
                    }),
                    json,
                )
            }
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return finish(
                    Err(Error::Invalid(format!(
                        "koko netns: unknown option '{flag}' (to name a netns that starts with '-', put it after --)"
                    ))),
                    json,
                )
            }
            _ => words.push(arg.clone()),
        }
    }
    finish(netns_command(&words), json)
}

const NETNS_USAGE: &str =
    "usage: koko netns add NAME... | koko netns del NAME... | koko netns list  [--json]";

/// The netns verbs. Multi-name requests are all or nothing: `add` checks
/// every name, creates them in order and deletes again what it made if one
/// fails; `del` checks that every one exists before deleting any.
fn netns_command(args: &[String]) -> Result<Output> {
    let usage = || Error::Invalid(NETNS_USAGE.into());
    let (verb, names) = args.split_first().ok_or_else(usage)?;
    match verb.as_str() {
        "list" if names.is_empty() => {
            let names = named::list()?;
            Ok(Output {
                lines: names.clone(),
                json: json!({"ok": true, "netns": names}),
            })
        }
        "add" if !names.is_empty() => {
            for name in names {
                named::validate_name(name)?;
            }
            ns::check_privileges()?;
            named::create_all(names)?;
            Ok(Output {
                lines: names
                    .iter()
                    .map(|n| format!("Create netns {n}...done"))
                    .collect(),
                json: json!({"ok": true, "action": "add", "netns": names}),
            })
        }
        "del" | "delete" if !names.is_empty() => {
            ns::check_privileges()?;
            netns_delete(names)
        }
        _ => Err(usage()),
    }
}

/// Delete named namespaces: each must exist (checked for all before any is
/// deleted, so a typo deletes nothing). Should the kernel refuse one half
/// way, the error says which were deleted and which were not attempted.
fn netns_delete(names: &[String]) -> Result<Output> {
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(Error::Invalid(format!(
            "netns '{dup}' is named twice in one request"
        )));
    }
    let mut found = Vec::with_capacity(names.len());
    for name in names {
        match ns::Namespace::netns(name) {
            Ok(ns) => found.push(ns),
            Err(e) if names.len() > 1 => return Err(plan::nothing_done(e, "nothing was deleted")),
            Err(e) => return Err(e),
        }
    }
    let mut lines = Vec::with_capacity(found.len());
    let mut progress = crate::progress::Progress::counted("deleting namespaces", found.len());
    for (i, ns) in found.iter().enumerate() {
        progress.set(i);
        if let Err(e) = named::delete(ns.name()) {
            let quote = |list: &[ns::Namespace]| {
                list.iter()
                    .map(|n| format!("'{}'", n.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if i > 0 {
                crate::say!(
                    "koko: deleted before the failure: netns {}",
                    quote(&found[..i])
                );
            }
            if i + 1 < found.len() {
                crate::say!("koko: not attempted: netns {}", quote(&found[i + 1..]));
            }
            return Err(e);
        }
        lines.push(format!("Delete netns {}...done", ns.name()));
    }
    Ok(Output {
        lines,
        json: json!({"ok": true, "action": "del", "netns": names}),
    })
}

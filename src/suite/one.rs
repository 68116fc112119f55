//! One test, run inside its sandbox (`koko __test-one`, started by
//! `koko test`): the file's top level, `setup()`, the test, `teardown()`,
//! then the journal's undo — and a result file the parent reads.
//!
//! A file with `test_*` functions is first evaluated as a module
//! ([`rhai::Module::eval_ast_as_new`]): its top level (imports, constants)
//! runs once, and every function keeps the imports of the file, so a test
//! function can call `assert::eq` imported at the top. The steps are then
//! called through that module. A file without `test_*` functions is one
//! test: its top level is the test, and `setup()`/`teardown()` (if
//! defined) run around it.

use std::path::{Path, PathBuf};

use rhai::{Engine, EvalAltResult, Scope, AST};
use serde::{Deserialize, Serialize};

use crate::script::{self, Limits, World};

/// What to run.
#[derive(Debug, Clone)]
pub struct OneOptions {
    pub file: PathBuf,
    /// The test function; `None` runs the whole file as one test.
    pub function: Option<String>,
    pub limits: Limits,
    /// On failure keep what the test built and the sandbox (a holder
    /// process keeps it alive).
    pub keep_failed: bool,
}

/// How a test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    /// A failed `assert::...` (a thrown `#{kind: "assertion"}`).
    Failed,
    /// Any other error: thrown, a kernel refusal, a syntax error.
    Error,
    /// Killed after `--timeout` (set by the parent).
    TimedOut,
    /// Ended without a result (a crash, a signal; set by the parent).
    Crashed,
}

/// What the child writes to its result file (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneResult {
    pub status: Status,
    /// The failure, `file:line:col: message` (empty when it passed).
    pub message: String,
    /// The line of the test file the failure is on, if known.
    pub line: Option<usize>,
    /// `--keep-failed`: the pid holding the kept sandbox.
    pub holder: Option<u32>,
}

/// The name under which the test file's module is reachable.
const MODULE: &str = "__koko_test";

/// Run one test and write its result to `result_file`; returns the exit
/// code (0 passed, 1 otherwise).
pub fn run(opts: &OneOptions, result_file: &Path) -> i32 {
    let result = run_inner(opts);
    let code = if result.status == Status::Passed {
        0
    } else {
        1
    };
    let text = serde_json::to_string(&result).expect("a result serialises");
    if let Err(e) = std::fs::write(result_file, text) {
        crate::say!("koko: writing {}: {e}", result_file.display());
        return 1;
    }
    code
}

fn failure(status: Status, message: String, line: Option<usize>) -> OneResult {
    OneResult {
        status,
        message,
        line,
        holder: None,
    }
}

fn run_inner(opts: &OneOptions) -> OneResult {
    let file = opts.file.display().to_string();
    let source = match std::fs::read_to_string(&opts.file) {
        Ok(s) => s,
        Err(e) => return failure(Status::Error, format!("cannot read {file}: {e}"), None),
    };
    let world = match World::start(crate::runs::RunKind::Script) {
        Ok(w) => w,
        Err(_) => return failure(Status::Error, "could not start the run".into(), None),
    };
    if let Err(e) = super::sandbox::loopback_up(&world.borrow().session) {
        return failure(Status::Error, format!("bringing lo up: {e}"), None);
    }
    let dir = opts.file.parent().map(Path::to_path_buf);
    let mut engine = script::build_engine(&world, opts.limits, dir);
    let mut ast: AST = match engine.compile(&source) {
        Ok(ast) => ast,
        Err(e) => {
            let line = e.position().line();
            return failure(
                Status::Error,
                script::format_parse_error(&file, &source, &e),
                line,
            );
        }
    };
    ast.set_source(file.clone());
    crate::interrupt::install();

    let has = |name: &str| {
        ast.iter_functions()
            .any(|f| f.name == name && f.params.is_empty())
    };
    let (setup, teardown) = (has("setup"), has("teardown"));

    // The steps, in order; the first failure is the test's.
    let mut outcome: Result<(), Box<EvalAltResult>> = Ok(());
    let mut loaded = false;
    let module_ast = match &opts.function {
        Some(_) => ast.clone(),
        None => ast.clone_functions_only(),
    };
    match rhai::Module::eval_ast_as_new(Scope::new(), &module_ast, &engine) {
        Ok(module) => {
            engine.register_static_module(MODULE, module.into());
            loaded = true;
            if setup {
                outcome = call(&engine, "setup");
            }
            if outcome.is_ok() {
                outcome = match &opts.function {
                    Some(name) => call(&engine, name),
                    None => engine.run_ast(&ast),
                };
            }
        }
        Err(e) => outcome = Err(e),
    }
    let mut result = match &outcome {
        Ok(()) => match script::stop_reason() {
            Some(e) => failure(Status::Error, format!("{file}: {e}"), None),
            None => failure(Status::Passed, String::new(), None),
        },
        Err(e) => {
            let e = unwrap_driver(e);
            let status = if script::error_kind(e).as_deref() == Some("assertion") {
                Status::Failed
            } else {
                Status::Error
            };
            failure(
                status,
                script::format_runtime_error(&file, e),
                locate(&file, e),
            )
        }
    };
    let failed = result.status != Status::Passed;
    if failed && opts.keep_failed {
        // Keep everything as the failure left it: no teardown, no undo.
        match super::sandbox::hold() {
            Ok(pid) => result.holder = Some(pid),
            Err(e) => result
                .message
                .push_str(&format!("\n(cannot keep the sandbox: {e})")),
        }
        world.borrow_mut().journal.close();
        return result;
    }
    // Teardown runs after the test whatever happened, once the file's
    // top level could run (without it there is no teardown to call).
    if teardown && loaded {
        if let Err(e) = call(&engine, "teardown") {
            let e = unwrap_driver(&e);
            let text = format!("in teardown(): {}", script::format_runtime_error(&file, e));
            if failed {
                result.message.push_str(&format!("\n{text}"));
            } else {
                result = failure(Status::Error, text, locate(&file, e));
            }
        }
    }
    let errors = script::undo_world(&world);
    if !errors.is_empty() {
        let text: Vec<String> = errors
            .iter()
            .map(|e| format!("while undoing: {e}"))
            .collect();
        if result.status == Status::Passed {
            result = failure(Status::Error, text.join("\n"), None);
        } else {
            result.message.push('\n');
            result.message.push_str(&text.join("\n"));
        }
    }
    world.borrow_mut().journal.close();
    result
}

/// Call a function of the test file's module.
fn call(engine: &Engine, name: &str) -> Result<(), Box<EvalAltResult>> {
    engine.run(&format!("{MODULE}::{name}();"))
}

/// The error inside the one-line driver call: the driver's own position
/// (line 1 of a script that is not the file) means nothing to a user.
fn unwrap_driver(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, src, inner, pos)
            if pos.line() == Some(1) && !src.is_empty() =>
        {
            inner
        }
        other => other,
    }
}

/// The deepest line of `file` the error passed through: where a failed
/// assertion was called from the test, or where the error was raised.
pub fn locate(file: &str, err: &EvalAltResult) -> Option<usize> {
    let mut best = None;
    let mut place = file.to_string();
    let mut cur = err;
    loop {
        let (next, inner_place) = match cur {
            EvalAltResult::ErrorInFunctionCall(_, src, inner, _) => (Some(inner), src.clone()),
            EvalAltResult::ErrorInModule(name, inner, _) => (Some(inner), name.clone()),
            _ => (None, String::new()),
        };
        if place == file {
            if let Some(line) = cur.position().line() {
                best = Some(line);
            }
        }
        match next {
            Some(inner) => {
                if !inner_place.is_empty() {
                    place = inner_place;
                }
                cur = inner;
            }
            None => return best,
        }
    }
}

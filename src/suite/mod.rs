//! `koko test`: scenario suites kept in a repository, each test run in a
//! sandbox of its own.
//!
//! A *test file* is named `*_test.rhai` or `*.test.rhai`. Inside it, every
//! function whose name starts with `test_` (and takes no parameter) is one
//! test; a file with none is a single test, its top level. `setup()` and
//! `teardown()`, if the file defines them, run around each of its tests.
//!
//! Every test runs as a child process of this binary (`koko __test-one`)
//! started inside a fresh [`sandbox`]: a private network namespace
//! and mount namespace with private /run/netns and /run/koko. Tests
//! therefore run in parallel without seeing each other (two of them may
//! create a netns of the same name at once) and never touch the host's
//! interfaces or named namespaces. A test passes if it returns; it fails on
//! a failed `assert::...` or any thrown error; it is undone either way (its
//! journal, then the sandbox itself, which dies with the process). A test
//! that outlives `--timeout` is killed with its whole process group.
//!
//! The parent only discovers tests, schedules up to `-j` children, waits,
//! and reports (see [`report`]): it never enters a sandbox itself.

pub mod one;
pub mod report;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
pub use one::{OneResult, Status};

/// One test: a file and, unless the file is the test, a function in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    pub file: PathBuf,
    pub function: Option<String>,
}

impl TestCase {
    /// `FILE::FUNCTION`, or `FILE` for a file that is one test: what
    /// `--filter` matches and every report names.
    pub fn id(&self) -> String {
        match &self.function {
            Some(f) => format!("{}::{f}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }
}

/// Is `path` named as a test file?
pub fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with("_test.rhai") || name.ends_with(".test.rhai")
}

/// The test files under `paths` (files given by name are taken as they
/// are), sorted; hidden directories and `target` are not searched.
pub fn find_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            if !name.starts_with('.') && name != "target" {
                walk(&path, out)?;
            }
        } else if is_test_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The tests of one file: its `test_*` functions in the order they are
/// written, or the file itself. A syntax error is not reported here: the
/// file becomes one test, which fails with the error and its line.
pub fn tests_in(file: &Path) -> Result<Vec<TestCase>> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    let mut engine = rhai::Engine::new_raw();
    engine.set_max_expr_depths(128, 64);
    let whole = vec![TestCase {
        file: file.to_path_buf(),
        function: None,
    }];
    let Ok(ast) = engine.compile(&source) else {
        return Ok(whole);
    };
    // Rhai keeps functions by hash: their written order is their place
    // in the source.
    let mut functions: Vec<(usize, String)> = ast
        .iter_functions()
        .filter(|f| f.name.starts_with("test_") && f.params.is_empty())
        .map(|f| {
            let at = source.find(&format!("fn {}", f.name)).unwrap_or(usize::MAX);
            (at, f.name.to_string())
        })
        .collect();
    if functions.is_empty() {
        return Ok(whole);
    }
    functions.sort();
    Ok(functions
        .into_iter()
        .map(|(_, name)| TestCase {
            file: file.to_path_buf(),
            function: Some(name),
        })
        .collect())
}

/// How to run a suite.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub jobs: usize,
    pub timeout: Option<Duration>,
    pub keep_failed: bool,
    /// Extra arguments for every child (`--max-ops N`, ...).
    pub child_args: Vec<String>,
}

/// The outcome of one test, as the parent saw it.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: TestCase,
    pub result: OneResult,
    pub duration: Duration,
    /// What the test printed (stdout and stderr, interleaved).
    pub output: String,
}

/// Run `cases` with up to `opts.jobs` at a time; `on_done` sees each
/// result as it comes (for live output). Results are in the cases' order.
/// A stop signal (Ctrl-C) stops the running tests (SIGTERM: they undo and
/// exit) and starts no more; the ones not run are left out.
pub fn run_suite(
    cases: &[TestCase],
    opts: &SuiteOptions,
    on_done: &(dyn Fn(&CaseResult) + Sync),
) -> Result<Vec<CaseResult>> {
    crate::ns::check_privileges()?;
    let exe = std::env::current_exe().map_err(|e| Error::io("finding koko's own binary", e))?;
    let scratch = std::env::temp_dir().join(format!("koko-test-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
    crate::interrupt::install();
    let next = Arc::new(Mutex::new(0usize));
    let results: Mutex<Vec<Option<CaseResult>>> = Mutex::new(vec![None; cases.len()]);
    let jobs = opts.jobs.clamp(1, cases.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if crate::interrupt::pending().is_some() {
                    return;
                }
                let index = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(case) = cases.get(index) else {
                    return;
                };
                let done = run_case(&exe, &scratch, index, case, opts);
                on_done(&done);
                results.lock().unwrap()[index] = Some(done);
            });
        }
    });
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(results
        .into_inner()
        .unwrap()
        .into_iter()
        .flatten()
        .collect())
}

/// How long a timed-out test has, after SIGTERM, to undo and exit before
/// SIGKILL ends it (and its sandbox) anyway.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// Run one test in its sandbox and wait for it (or its timeout).
fn run_case(
    exe: &Path,
    scratch: &Path,
    index: usize,
    case: &TestCase,
    opts: &SuiteOptions,
) -> CaseResult {
    let result_file = scratch.join(format!("{index}.json"));
    let output_file = scratch.join(format!("{index}.out"));
    let crashed = |message: String| OneResult {
        status: Status::Crashed,
        message,
        line: None,
        holder: None,
    };
    let finished = |result: OneResult, duration: Duration| {
        let output = std::fs::read_to_string(&output_file).unwrap_or_default();
        CaseResult {
            case: case.clone(),
            result,
            duration,
            output,
        }
    };
    let mut cmd = Command::new(exe);
    cmd.arg("__test-one").arg("--result").arg(&result_file);
    if let Some(f) = &case.function {
        cmd.arg("--function").arg(f);
    }
    if opts.keep_failed {
        cmd.arg("--keep-failed");
    }
    cmd.args(&opts.child_args).arg("--").arg(&case.file);
    let out = match std::fs::File::create(&output_file).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(pair) => pair,
        Err(e) => {
            return finished(
                crashed(format!("creating {}: {e}", output_file.display())),
                Duration::ZERO,
            )
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out.0))
        .stderr(Stdio::from(out.1));
    if let Err(e) = sandbox::sandboxed(&mut cmd, true) {
        return finished(crashed(e.to_string()), Duration::ZERO);
    }
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return finished(
                crashed(format!("starting the test's sandbox: {e}")),
                Duration::ZERO,
            )
        }
    };
    let group = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let mut timed_out = None;
    let mut killed = false;
    let mut signalled = false;
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(status) => break status,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(std::io::Error::other("lost the test process"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if timed_out.is_none() && opts.timeout.is_some_and(|t| start.elapsed() >= t) {
            // SIGTERM first: the test stops at its next step and undoes
            // what it did (which matters for what lives outside the
            // sandbox: containers and links into them).
            timed_out = Some(Instant::now());
            // SAFETY: a signal to the test's own process group.
            unsafe { libc::kill(-group, libc::SIGTERM) };
        }
        if !killed && timed_out.is_some_and(|at| at.elapsed() >= TIMEOUT_GRACE) {
            killed = true;
            // SAFETY: as above.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        if !signalled && crate::interrupt::pending().is_some() {
            signalled = true;
            // SAFETY: as above; SIGTERM lets the test undo and exit.
            unsafe { libc::kill(-group, libc::SIGTERM) };
        }
    };
    let duration = start.elapsed();
    // What the test left running in its group (a server it started) goes
    // now, and with it the last hold on the sandbox.
    // SAFETY: as above.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let result = if timed_out.is_some() {
        let how = if killed {
            "killed with its sandbox (no answer to SIGTERM)"
        } else {
            "stopped, what it built undone"
        };
        OneResult {
            status: Status::TimedOut,
            message: format!(
                "timed out after {} s: {how}",
                opts.timeout.unwrap_or_default().as_secs_f64()
            ),
            line: None,
            holder: None,
        }
    } else {
        match std::fs::read_to_string(&result_file)
            .ok()
            .and_then(|t| serde_json::from_str::<OneResult>(&t).ok())
        {
            Some(r) => r,
            None => crashed(match status {
                Ok(s) => format!("the test process ended without a result ({s})"),
                Err(e) => format!("the test process was lost: {e}"),
            }),
        }
    };
    finished(result, duration)
}

/// `koko run --sandbox`: run `args` (a `koko run` command line without
/// `--sandbox`) as a child in a fresh sandbox, with this terminal; returns
/// its exit code (128+N if a signal N ended it).
pub fn run_sandboxed(args: &[String]) -> Result<i32> {
    crate::ns::check_privileges()?;
    let exe = std::env::current_exe().map_err(|e| Error::io("finding koko's own binary", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").args(args);
    sandbox::sandboxed(&mut cmd, false)?;
    // Ctrl-C reaches the child too (same process group): the child undoes
    // and exits, and this process only waits for it.
    crate::interrupt::install();
    let status = cmd
        .status()
        .map_err(|e| Error::io("starting the sandboxed run", e))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("koko-suite-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn test_files_are_found_by_name_below_every_path() {
        let dir = scratch("find");
        for f in [
            "a_test.rhai",
            "b.test.rhai",
            "helper.rhai",
            "sub/c_test.rhai",
            ".git/d_test.rhai",
            "target/e_test.rhai",
        ] {
            let path = dir.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let found: Vec<String> = find_files(std::slice::from_ref(&dir))
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["a_test.rhai", "b.test.rhai", "sub/c_test.rhai"]);
        // A file named on the command line is taken whatever its name.
        let helper = dir.join("helper.rhai");
        assert_eq!(find_files(std::slice::from_ref(&helper)).unwrap(), [helper]);
        assert!(find_files(&[dir.join("missing")]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn test_functions_are_the_tests_in_written_order() {
        let dir = scratch("fns");
        let file = dir.join("x_test.rhai");
        std::fs::write(
            &file,
            "fn test_z() {}\nfn helper() {}\nfn test_a() {}\nfn test_param(x) {}\nfn setup() {}\n",
        )
        .unwrap();
        let ids: Vec<Option<String>> = tests_in(&file)
            .unwrap()
            .into_iter()
            .map(|c| c.function)
            .collect();
        assert_eq!(
            ids,
            [Some("test_z".to_string()), Some("test_a".to_string())]
        );
        // No test_ function, or a syntax error: the file is one test (which
        // then fails with the error, line and all).
        for text in ["let a = 1;", "fn test_broken( {"] {
            std::fs::write(&file, text).unwrap();
            let cases = tests_in(&file).unwrap();
            assert_eq!(cases.len(), 1);
            assert_eq!(cases[0].function, None);
            assert_eq!(cases[0].id(), file.display().to_string());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! `koko test`: the command line of [`crate::suite`] — arguments, discovery,
//! the live lines, the summary, `--junit`/`--tap`/`--list` and the exit
//! code; plus the hidden `__test-one` (one test, inside its sandbox) and
//! `__sandbox-hold` (keeps a failed test's sandbox alive).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::suite::{self, report, SuiteOptions, TestCase};

/// `koko test [PATH...]`
#[derive(clap::Parser, Debug)]
#[command(
    name = "koko test",
    about = "Run the scenario tests (*_test.rhai, *.test.rhai) under PATHs, each in a sandbox of its own"
)]
pub(super) struct TestArgs {
    /// Files or directories to search (default: tests/ if it exists, else .).
    paths: Vec<PathBuf>,
    /// How many tests run at once (default: the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,
    /// Run only the tests whose id (FILE::FUNCTION) contains PATTERN.
    #[arg(long, value_name = "PATTERN")]
    filter: Vec<String>,
    /// List the tests (their ids) instead of running them.
    #[arg(long)]
    list: bool,
    /// Kill a test (and its sandbox) that runs longer than S seconds.
    #[arg(long, value_name = "S", default_value_t = 300.0)]
    timeout: f64,
    /// Write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print TAP (version 13) instead of the lines for a person.
    #[arg(long)]
    tap: bool,
    /// Keep a failed test's sandbox and what it built, and print how to
    /// enter it (nsenter).
    #[arg(long)]
    keep_failed: bool,
    /// Stop a test after this many script operations (runaway loops).
    #[arg(long, value_name = "N")]
    max_ops: Option<u64>,
}

pub fn test_main(args: &[String]) -> i32 {
    let parsed: TestArgs = match super::parse_sub("test", args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if !(parsed.timeout > 0.0 && parsed.timeout.is_finite()) {
        crate::say!("koko test: --timeout must be a positive number of seconds");
        return 2;
    }
    if parsed.jobs == Some(0) {
        crate::say!("koko test: -j must be at least 1");
        return 2;
    }
    let paths = if parsed.paths.is_empty() {
        let tests = PathBuf::from("tests");
        vec![if tests.is_dir() {
            tests
        } else {
            PathBuf::from(".")
        }]
    } else {
        parsed.paths.clone()
    };
    let cases = match discover(&paths, &parsed.filter) {
        Ok(c) => c,
        Err(e) => {
            crate::say!("koko test: {e}");
            return e.exit_code();
        }
    };
    if parsed.list {
        for case in &cases {
            if crate::output::line(&case.id()).is_err() {
                return 1;
            }
        }
        return 0;
    }
    if cases.is_empty() {
        crate::say!(
            "koko test: no tests found under {} (files named *_test.rhai or *.test.rhai)",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return 1;
    }
    let jobs = parsed.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut child_args = Vec::new();
    if let Some(n) = parsed.max_ops {
        child_args.extend(["--max-ops".to_string(), n.to_string()]);
    }
    let opts = SuiteOptions {
        jobs,
        timeout: Some(Duration::from_secs_f64(parsed.timeout)),
        keep_failed: parsed.keep_failed,
        child_args,
    };
    let tap = parsed.tap;
    if !tap {
        let _ = crate::output::line(&format!(
            "running {} test(s), {} at a time, each in its own sandbox",
            cases.len(),
            jobs.min(cases.len())
        ));
    }
    let start = Instant::now();
    let results = match suite::run_suite(&cases, &opts, &|r| {
        if !tap {
            let _ = crate::output::line(&report::line(r));
        }
    }) {
        Ok(r) => r,
        Err(e) => {
            crate::say!("koko test: {e}");
            return e.exit_code();
        }
    };
    let wall = start.elapsed();
    let not_run = cases.len() - results.len();
    let text = if tap {
        report::tap(&results)
    } else {
        report::summary(&results, wall, not_run)
    };
    let mut code = 0;
    if crate::output::line(text.trim_end()).is_err() {
        code = 1;
    }
    if let Some(path) = &parsed.junit {
        if let Err(e) = std::fs::write(path, report::junit(&results, wall)) {
            crate::say!("koko test: writing {}: {e}", path.display());
            code = 1;
        }
    }
    if let Some(signal) = crate::interrupt::pending() {
        return crate::Error::Interrupted { signal }.exit_code();
    }
    if not_run > 0
        || results
            .iter()
            .any(|r| r.result.status != suite::Status::Passed)
    {
        code = 1;
    }
    code
}

/// The tests under `paths` whose id contains one of `filters` (all of
/// them when there is no filter).
fn discover(paths: &[PathBuf], filters: &[String]) -> crate::Result<Vec<TestCase>> {
    let mut cases = Vec::new();
    for file in suite::find_files(paths)? {
        cases.extend(suite::tests_in(&file)?);
    }
    cases.retain(|c| filters.is_empty() || filters.iter().any(|f| c.id().contains(f.as_str())));
    Ok(cases)
}

/// `koko __test-one --result FILE [--function NAME] [--keep-failed]
/// [--max-ops N] -- TESTFILE`: run by `koko test` inside the sandbox.
#[derive(clap::Parser, Debug)]
#[command(name = "koko __test-one", hide = true)]
struct OneArgs {
    #[arg(long)]
    result: PathBuf,
    #[arg(long)]
    function: Option<String>,
    #[arg(long)]
    keep_failed: bool,
    #[arg(long)]
    max_ops: Option<u64>,
    file: PathBuf,
}

pub fn test_one_main(args: &[String]) -> i32 {
    let parsed: OneArgs = match super::parse_sub("__test-one", args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut limits = crate::script::Limits::default();
    if let Some(n) = parsed.max_ops {
        limits.max_operations = n;
    }
    suite::one::run(
        &suite::one::OneOptions {
            file: parsed.file,
            function: parsed.function,
            limits,
            keep_failed: parsed.keep_failed,
        },
        &parsed.result,
    )
}

/// `koko __sandbox-hold`: wait forever (in a kept sandbox).
pub fn hold_main() -> i32 {
    suite::sandbox::hold_forever()
}

//! Helpers for the script tests: where the test scripts are, how to run
//! `koko run` on them inside a sandbox, and the "nothing left" check.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{koko_bin, Run, Sandbox};

/// A test script under tests/scripts/ (absolute path: the sandbox shares
/// this machine's files, only /run/netns is private).
pub fn script(name: &str) -> String {
    format!("{}/tests/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// An example under scripts/.
pub fn example(name: &str) -> String {
    format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `koko run ARGS...` inside the sandbox.
pub fn run(sb: &Sandbox, args: &[&str]) -> Run {
    run_env(sb, args, &[])
}

/// `koko run ARGS...` inside the sandbox with extra environment variables.
pub fn run_env(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd: Command = sb.command(koko_bin());
    cmd.arg("run").args(args).env_remove("KOKO_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run koko");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what: format!("koko run {}", args.join(" ")),
    }
}

/// Through the kernel: no named namespace and no link (but lo) is left in
/// the sandbox.
#[track_caller]
pub fn assert_clean(sb: &Sandbox, what: &str) {
    assert_eq!(
        sb.netns_list(),
        Vec::<String>::new(),
        "{what}: namespaces left"
    );
    assert_eq!(
        sb.link_names(None),
        Vec::<String>::new(),
        "{what}: links left in the sandbox's own namespace"
    );
}

/// A fresh directory for generated scripts.
pub fn tmp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "koko-script-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The lines of a run's stdout that start with `prefix`.
pub fn line<'a>(r: &'a Run, prefix: &str) -> &'a str {
    r.stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{}: no line {prefix:?} in:\n{}", r.what, r.stdout))
}

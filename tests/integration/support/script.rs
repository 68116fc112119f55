//! Helpers for the script tests: where the test scripts are, how to run
//! `koko run` on them inside a sandbox, and the "nothing left" check.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{koko_bin, Run, Sandbox};

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

/// `koko run ARGS...` inside the sandbox with extra environment variables
/// (KOKO_PATH is cleared unless given here).
pub fn run_env(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = sb.command(koko_bin());
    cmd.arg("run").args(args).env_remove("KOKO_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::of(&mut cmd, format!("koko run {}", args.join(" ")))
}

/// `cd REPO && koko run scripts/NAME ARGS...` inside the sandbox, as the
/// README says.
pub fn run_example(sb: &Sandbox, name: &str) -> Run {
    let mut cmd = sb.command("sh");
    cmd.arg("-c")
        .arg(format!(
            "cd {} && exec {} run scripts/{name}",
            env!("CARGO_MANIFEST_DIR"),
            koko_bin().display()
        ))
        .env_remove("KOKO_PATH");
    Run::of(&mut cmd, format!("koko run scripts/{name}"))
}

/// Through the kernel: no named namespace and no link (but lo) is left in
/// the sandbox; and no run's journal is left in its /run/koko (a run that
/// ended removes its own).
#[track_caller]
pub fn assert_clean(sb: &Sandbox, what: &str) {
    assert_eq!(
        sb.sh("ls /run/koko"),
        "",
        "{what}: a run's journal was left in /run/koko"
    );
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

/// A fresh directory for generated scripts and files.
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

/// Write `text` to a fresh file `name` the sandbox can read.
pub fn write_script(tag: &str, name: &str, text: &str) -> PathBuf {
    let path = tmp_dir(tag).join(name);
    std::fs::write(&path, text).unwrap();
    path
}

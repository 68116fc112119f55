//! Every benchmark runs inside a private network + mount namespace of its
//! own (with a tmpfs on /run/netns and on /run/koko), so it never touches
//! the machine's interfaces, its named namespaces or its runs' journals.

use std::process::Command;

const INNER: &str = "KOKO_BENCH_INNER";

/// Re-execute this benchmark under `unshare` with `args`, and exit with its
/// status; returns only when already running inside the sandbox.
pub fn enter(args: &[String]) {
    if std::env::var_os(INNER).is_some() {
        return;
    }
    std::fs::create_dir_all("/run/netns").expect("mkdir /run/netns (run as root)");
    std::fs::create_dir_all("/run/koko").expect("mkdir /run/koko (run as root)");
    let me = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
        ])
        .arg("mount -t tmpfs koko-bench /run/netns && mount -t tmpfs -o mode=0700 koko-bench-runs /run/koko && exec \"$0\" \"$@\"")
        .arg(me)
        .args(args)
        .env(INNER, "1")
        .status()
        .expect("unshare (util-linux) is needed");
    std::process::exit(status.code().unwrap_or(1));
}

/// The benchmark's first numeric argument (its number of rounds), or
/// `default`. (Not every benchmark takes one.)
#[allow(dead_code)]
pub fn rounds_arg(default: usize) -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Run a set-up command with `sh -c` and return its output; a failure
/// stops the benchmark with the command and its stderr. (Not every
/// benchmark runs shell commands.)
#[allow(dead_code)]
pub fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

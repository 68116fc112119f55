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

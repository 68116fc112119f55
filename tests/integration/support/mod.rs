//! The test harness shared by every module of the integration tests.
//!
//! - [`Sandbox`] (sandbox.rs): every kernel test runs in its own private
//!   network AND mount namespace with a tmpfs on /run/netns. Tests run in
//!   parallel, never see each other's namespaces, and never touch this
//!   machine's own interfaces. The sandbox dies with the test (its holder
//!   process is killed on drop), taking every namespace and link with it.
//! - [`Place`] (sandbox.rs): where a kernel query runs — the sandbox's own
//!   namespace, a named netns in it, a pid's namespace or a container's.
//!   Every query (`ip_json`, `link`, `addrs`, `routes`, `tc_json`,
//!   `sysctl`, ...) takes any place, so results are checked through the
//!   kernel (`ip -j`, `tc -j` run inside the place with nsenter), never
//!   through koko's own report.
//! - [`Ctr`] and [`engine_sandbox`] (engine.rs): Docker and Podman containers that
//!   remove themselves, and the check that an engine is there.
//! - [`Pod`] and [`cri_sandbox`] (cri.rs): CRI pod sandboxes and containers
//!   made through the CRI API of the test containerd, removed on drop;
//!   [`OldRuntime`] (cri_old.rs), a runtime that speaks only v1alpha2.
//! - traffic.rs: TCP and UDP between namespaces the test created.
//! - script.rs: `koko run` on the scripts under tests/scripts.
//! - [`Run`], [`Tail`], [`wait_exit`] (process.rs): a finished command with
//!   assertions that print everything; the output of a running one, to
//!   wait on; a process's exit, awaited.
//! - [`skip`], [`kernel_lacks`], [`wait_until`], [`wait_for`]: loud skips
//!   (a failure under CI, unless the kernel cannot do it at all) and waits on
//!   observable conditions (never a fixed sleep as synchronisation).

mod cri;
mod cri_old;
mod engine;
mod process;
mod sandbox;
pub mod script;
pub mod traffic;
mod wait;

pub use cri::{all_ids, cri_sandbox, cri_up, Pod, CRI_ENDPOINT, CRI_SOCK};
pub use cri_old::OldRuntime;
pub use engine::{engine_sandbox, nc_roundtrip, Ctr, PODMAN_SOCK};
pub use process::{wait_exit, Run, Running, Tail};
pub use sandbox::{assert_pair, koro_bin, route_text, Place, Sandbox};
pub use traffic::{
    assert_tcp, send_udp, tcp_blocked, tcp_goodput, udp_delivered, udp_rtts, udp_stream,
};
pub use wait::poll;

use std::path::PathBuf;
use std::time::Duration;

/// The koko binary under test.
pub fn koko_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_koko"))
}

/// Is this run under CI (`CI=true`), where a skip of something this machine
/// can run is a failure?
fn under_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
        && std::env::var("KOKO_ALLOW_SKIP").is_err()
}

/// Write a line straight to this process's stderr. `eprintln!` would be
/// captured by the test harness and shown only if the test fails; a skip is
/// news when the test passes. (nextest still keeps a passing test's output
/// unless run with `--success-output final` or `--no-capture`.)
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A loud skip: a line starting `SKIP:` on stderr with the reason. Under
/// `CI=true` it panics instead, so a test that could not run fails there
/// (set `KOKO_ALLOW_SKIP` to allow it on purpose). Call it, then `return`.
#[track_caller]
pub fn skip(reason: &str) {
    let at = std::panic::Location::caller();
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    say(&format!("SKIP: {test} ({at}): {reason}"));
    if under_ci() {
        panic!("SKIP under CI is a failure: {reason}");
    }
}

/// A loud partial skip for what this kernel cannot do at all (a feature
/// not built in: CONFIG_MODULES is unset here, nothing can be loaded): a
/// `SKIP:` line on stderr, never a failure, because no setup would let this
/// machine run it. The test goes on proving the refusal instead.
#[track_caller]
pub fn kernel_lacks(feature: &str, not_run: &str) {
    let at = std::panic::Location::caller();
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    say(&format!(
        "SKIP: {test} ({at}): {not_run} not run: this kernel lacks {feature}"
    ));
}

/// Does this kernel have a feature? `probe` is a shell command run in the
/// sandbox that succeeds only if it does (and cleans up after itself):
/// tests ask the kernel itself, never koko, which branch to assert.
pub fn kernel_has(sb: &Sandbox, probe: &str) -> bool {
    sb.command("sh")
        .args(["-c", probe])
        .output()
        .expect("run the probe")
        .status
        .success()
}

/// The stock-kernel lane's guest sets this: there, every feature the
/// kernel-dependent tests probe for exists, and a missing one is a failure.
pub fn in_stock_kernel_lane() -> bool {
    std::env::var("KOKO_LANE_KERNEL").as_deref() == Ok("stock")
}

/// A feature a test needs is missing from this kernel: a loud SKIP here, a
/// failure in the stock-kernel lane (Debian's kernel has it).
pub fn setup_lacks(feature: &str) {
    assert!(
        !in_stock_kernel_lane(),
        "Debian's stock kernel has {feature}, but this one does not"
    );
    say(&format!(
        "SKIP: this kernel has no {feature}; tests/stock-kernel/run proves this on Debian 12's kernel"
    ));
}

/// How long to wait for a namespace's links to vanish once it was deleted
/// or its container killed. The kernel destroys a namespace in a worker
/// (cleanup_net), after the last reference is gone; with the whole suite
/// tearing down sandboxes on 2 cores that has taken more than 5 s. A wait
/// returns as soon as the links are gone, so a generous limit costs nothing.
pub const TEARDOWN: Duration = Duration::from_secs(30);

/// [`poll`], failing the test after `timeout` with a message that names
/// `what` was awaited and the last attempt's error. For conditions the
/// kernel or a process reaches by itself (a link vanishing with its
/// namespace, IPv6 DAD finishing, a server listening).
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, attempt: impl FnMut() -> Result<T, String>) -> T {
    poll(timeout, attempt).unwrap_or_else(|last| {
        panic!("timed out after {timeout:?} waiting until {what}; last: {last}")
    })
}

/// [`wait_for`] a condition that is simply true or false.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    wait_for(what, timeout, || {
        if condition() {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
}

/// Assert that no link `name` exists in the machine's own namespace (the
/// one the tests run from): a read-only check that a refused request did
/// not wire the host.
pub fn assert_not_on_host(name: &str) {
    let out = std::process::Command::new("ip")
        .args(["link", "show", name])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{name} exists in the host namespace!"
    );
}

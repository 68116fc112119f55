//! Every example under scripts/ runs, prints what it promises, and leaves
//! nothing behind (checked through the kernel).

use crate::support::script::{assert_clean, run_example};
use crate::support::Sandbox;

#[test]
fn two_namespaces_runs_and_cleans_up() {
    let sb = Sandbox::new();
    let r = run_example(&sb, "two-namespaces.rhai");
    r.ok();
    r.stdout_has("v1 in netns 'ns1' <-> v2 in netns 'ns2': up");
    r.stdout_has("ping 10.0.0.2 from ns1: ok=true");
    r.stdout_has("ns2 asks ns1: hello from ns1");
    assert!(r.stdout.trim_end().ends_with("cleaned up"), "{}", r.stdout);
    assert_clean(&sb, "two-namespaces.rhai");
}

#[test]
fn service_chain_runs_breaks_repairs_and_cleans_up() {
    let sb = Sandbox::new();
    let r = run_example(&sb, "service-chain.rhai");
    r.ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "<title>This is pickle-nginx</title>",
            "firewall gone: the client cannot reach the webserver",
            "<title>This is pickle-nginx</title>",
            "repaired: traffic flows client -> router -> webserver",
        ],
        "{}",
        r.stderr
    );
    assert_clean(&sb, "service-chain.rhai");
}

/// The grey-failure drill: both degradations (30 % loss, then a blackhole
/// with both ends up) are detected by the probe hook, the service moves to
/// the backup, and traffic flows again; the primary carries it at the end.
#[test]
fn grey_failure_detects_loss_and_a_blackhole_and_reroutes() {
    let sb = Sandbox::new();
    let r = run_example(&sb, "grey-failure.rhai");
    r.ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert_eq!(lines[0], "service over the primary: the service");
    for (line, drill) in lines[1..3]
        .iter()
        .zip(["30 % loss: loss", "blackhole: loss"])
    {
        assert!(line.starts_with(drill), "{line}");
        assert!(
            line.contains("detected") && line.contains("traffic back on the backup"),
            "{line}"
        );
    }
    assert_eq!(lines[3], "service over the primary again: the service");
    assert_clean(&sb, "grey-failure.rhai");
}

#[test]
fn every_example_is_covered_here() {
    // A new example must get a test in this file (failover.rhai has its
    // own: failover.rs, and failover-docker.rhai: docker.rs; keep-wired.rhai:
    // rewire.rs).
    let mut found: Vec<String> =
        std::fs::read_dir(format!("{}/scripts", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".rhai"))
            .collect();
    found.sort();
    found.retain(|n| !n.starts_with("failover"));
    assert_eq!(
        found,
        vec![
            "grey-failure.rhai",
            "keep-wired.rhai",
            "service-chain.rhai",
            "two-namespaces.rhai"
        ]
    );
}

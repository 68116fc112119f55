//! Automatic failover: the firewall-down scenario end to end, and the care
//! with namespace references that makes it possible.

use crate::support::Sandbox;

fn repo_file(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn failover_script_repairs_the_chain_and_measures_the_outage() {
    let sb = Sandbox::new();
    let run = sb.koko(&[
        "run",
        &repo_file("scripts/failover.rhai"),
        "--",
        "--keep-chain",
    ]);
    run.ok();
    run.stdout_has("chain up");
    run.stdout_has("failure detected");
    run.stdout_has("repaired");

    // Through the kernel: the firewall is gone, with both of its links'
    // peers; the client now routes through link7 to the router.
    assert_eq!(sb.netns_list(), vec!["client", "router", "webserver"]);
    assert!(
        sb.link(Some("client"), "link1").is_none(),
        "link1 died with the firewall"
    );
    assert!(
        sb.link(Some("router"), "link4").is_none(),
        "link4 died with the firewall"
    );
    assert_eq!(sb.link(Some("client"), "link7").unwrap()["operstate"], "UP");
    let routes = sb.ip_json(Some("client"), "route show default");
    assert_eq!(routes[0]["gateway"], "10.0.4.2");
    assert_eq!(routes[0]["dev"], "link7");
    // And traffic flows client -> router -> webserver.
    sb.assert_tcp("webserver", "client", "10.0.3.2:8081");
}

#[test]
fn failover_script_cleans_up_after_itself() {
    let sb = Sandbox::new();
    let run = sb.koko(&["run", &repo_file("scripts/failover.rhai")]);
    run.ok();
    assert!(sb.netns_list().is_empty(), "{:?}", sb.netns_list());
    assert!(sb.link_names(None).is_empty());
}

#[test]
fn failover_timings_are_reported_as_json() {
    let sb = Sandbox::new();
    let run = sb.koko(&["run", &repo_file("scripts/failover.rhai"), "--", "--json"]);
    run.ok();
    let v = run.json();
    for key in ["detection_ms", "repair_ms", "outage_ms"] {
        let ms = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {v}"));
        assert!((0.0..5000.0).contains(&ms), "{key} = {ms}");
    }
    assert!(v["probes_sent"].as_i64().unwrap() >= 1, "{v}");
}

#[test]
fn a_namespace_koko_holds_still_dies_when_deleted() {
    let sb = Sandbox::new();
    let run = sb.koko(&["run", &repo_file("tests/scripts/held-namespace-dies.rhai")]);
    run.ok();
    // The peer going away first drops our end's carrier (link_down), then
    // deletes it (link_gone): either is the hook's cue.
    assert!(
        run.stdout.contains("client hook: link_down")
            || run.stdout.contains("client hook: link_gone"),
        "{}",
        run.stdout
    );
    // The firewall namespace is really gone, not just unnamed: its veth
    // end in the client vanished (checked by the kernel, after the run).
    assert_eq!(sb.netns_list(), vec!["client"]);
    assert!(sb.link(Some("client"), "link1").is_none());
}

#[test]
fn link_down_and_up_hooks_fire_on_state_changes() {
    let sb = Sandbox::new();
    let script = r#"
        let a = netns("a"); let b = netns("b");
        let l = veth(a, "x1", b, "x2");
        let seen = [];
        on_link_down(a, "x1", |ev| { seen.push(ev.kind); stop_watch(); });
        on_link_up(a, "x1", |ev| { seen.push(ev.kind); stop_watch(); });
        // a's end loses its carrier. The kernel may batch carrier changes
        // for up to a second (linkwatch), hence the generous watch.
        b.ip("link set x2 down");
        watch(3000);
        b.ip("link set x2 up");
        watch(3000);
        print(seen);
        // With stop_on_error off, a failing hook is reported and the watch
        // goes on; the watch (and the run) still fails with its error.
        on_link_down(a, "x1", |ev| { throw "hook trouble"; });
        on_link_down(a, "x1", |ev| { print("second hook ran"); stop_watch(); });
        b.ip("link set x2 down");
        watch(3000, #{stop_on_error: false});
        print("not reached");
    "#;
    let path = std::env::temp_dir().join(format!("koko-hooks-{}.rhai", std::process::id()));
    std::fs::write(&path, script).unwrap();
    let run = sb.koko(&["run", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    run.fails(1, "hook trouble");
    run.stdout_has(r#"["link_down", "link_up"]"#);
    run.stdout_has("second hook ran");
    assert!(!run.stdout.contains("not reached"), "{}", run.stdout);
}

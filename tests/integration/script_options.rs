//! Options maps of the script API: every function that takes one rejects an
//! unknown key (a typo) with an error naming the function, the key and the
//! keys allowed, and a value of the wrong type with an error naming the key.
//! Well-formed options still do what they say, checked through the kernel.
//!
//! Each test writes its script into a fresh directory and runs it with
//! `koko run` in its own sandbox (tests/support).

use crate::support::script::{assert_clean, run, tmp_dir};
use crate::support::{Run, Sandbox};

/// Run `source` as a script in `sb`.
fn run_source(sb: &Sandbox, tag: &str, source: &str) -> Run {
    let file = tmp_dir(tag).join(format!("{tag}.rhai"));
    std::fs::write(&file, source).unwrap();
    run(sb, &[file.to_str().unwrap()])
}

/// Each line: a label and a call that must fail; the script prints
/// `LABEL kind=KIND message=MESSAGE` for each.
fn expect_failures(calls: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "let a = netns(\"a\");  let b = netns(\"b\");\n\
         veth(a, \"la\", b, \"lb\");\n",
    );
    for (label, call) in calls {
        s.push_str(&format!(
            "try {{ {call}; print(\"{label} no error\"); }} \
             catch (e) {{ print(`{label} kind=${{e.kind}} message=${{e.message}}`); }}\n"
        ));
    }
    s
}

#[track_caller]
fn says(r: &Run, label: &str, message: &str) {
    let l = r.line(&format!("{label} "));
    assert_eq!(
        l,
        format!("{label} kind=invalid message={message}"),
        "{}",
        r.stdout
    );
}

#[test]
fn an_unknown_option_is_named_with_the_allowed_ones() {
    let sb = Sandbox::new();
    let r = run_source(
        &sb,
        "unknown",
        &expect_failures(&[
            (
                "veth",
                r#"veth(a, "x1", b, "x2", #{mtu: 1400, a_adrs: ["10.0.1.1/24"]})"#,
            ),
            (
                "vxlan",
                r#"vxlan(a, "vx", #{parent: "eth9", remote: "10.9.0.2", vni: 1, vin: 2})"#,
            ),
            (
                "vlan",
                r#"vlan(a, "vl", #{parent: "eth9", id: 10, colour: 3})"#,
            ),
            (
                "macvlan",
                r#"macvlan(a, "mv", #{parent: "eth9", mdoe: "bridge"})"#,
            ),
            (
                "route_add",
                r#"a.route_add("10.0.3.0/24", #{dev: "la", gateway: "10.0.1.2"})"#,
            ),
            ("route_del", r#"a.route_del("10.0.3.0/24", #{metrc: 5})"#),
            (
                "route_replace",
                r#"a.route_replace("default", #{dev: "la", tabel: 7})"#,
            ),
            ("ping", r#"a.ping("10.0.1.2", #{count: 1, timeout: 10})"#),
            (
                "chain_build",
                r#"chain_build(["c1", "c2"], #{rotes: false})"#,
            ),
            ("chain_subnet", r#"chain_subnet(#{bse: "10.1"}, 0)"#),
        ]),
    );
    r.ok();
    says(
        &r,
        "veth",
        "veth(): unknown option 'a_adrs' (allowed: mtu, a_addrs, b_addrs)",
    );
    says(
        &r,
        "vxlan",
        "vxlan(): unknown option 'vin' (allowed: parent, parent_ns, addrs, remote, vni, port, mtu, local, ttl, learning)",
    );
    says(
        &r,
        "vlan",
        "vlan(): unknown option 'colour' (allowed: parent, parent_ns, addrs, id)",
    );
    says(
        &r,
        "macvlan",
        "macvlan(): unknown option 'mdoe' (allowed: parent, parent_ns, addrs, mode)",
    );
    for f in ["route_add", "route_del", "route_replace"] {
        let key = match f {
            "route_add" => "gateway",
            "route_del" => "metrc",
            _ => "tabel",
        };
        says(
            &r,
            f,
            &format!("{f}(): unknown option '{key}' (allowed: via, dev, metric, table)"),
        );
    }
    says(
        &r,
        "ping",
        "ping(): unknown option 'timeout' (allowed: count, timeout_ms)",
    );
    says(
        &r,
        "chain_build",
        "chain_build(): unknown option 'rotes' (allowed: base, start, mtu, routes, group)",
    );
    says(
        &r,
        "chain_subnet",
        "chain_subnet(): unknown option 'bse' (allowed: base, start, mtu, routes, group)",
    );
    // Through the kernel: none of the calls made anything.
    assert_eq!(sb.link_names(Some("a")), vec!["la"]);
    assert_eq!(sb.netns_list(), vec!["a", "b"]);
    let routes = sb.ip_json(Some("a"), "route show table all");
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["dst"] != "10.0.3.0/24" && r["dst"] != "default"),
        "{routes}"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_the_key() {
    let sb = Sandbox::new();
    let r = run_source(
        &sb,
        "types",
        &expect_failures(&[
            ("veth.mtu", r#"veth(a, "x1", b, "x2", #{mtu: "big"})"#),
            ("veth.neg", r#"veth(a, "x1", b, "x2", #{mtu: -1})"#),
            (
                "veth.addrs",
                r#"veth(a, "x1", b, "x2", #{a_addrs: "10.0.1.1/24"})"#,
            ),
            ("veth.addr", r#"veth(a, "x1", b, "x2", #{a_addrs: [5]})"#),
            (
                "vxlan.vni",
                r#"vxlan(a, "vx", #{parent: "eth9", remote: "10.9.0.2", vni: "42"})"#,
            ),
            (
                "vxlan.missing",
                r#"vxlan(a, "vx", #{parent: "eth9", vni: 42})"#,
            ),
            (
                "vxlan.parent_ns",
                r#"vxlan(a, "vx", #{parent: "eth9", remote: "10.9.0.2", vni: 1, parent_ns: "a"})"#,
            ),
            ("vlan.id", r#"vlan(a, "vl", #{parent: "eth9", id: 70000})"#),
            (
                "macvlan.mode",
                r#"macvlan(a, "mv", #{parent: "eth9", mode: 1})"#,
            ),
            (
                "route.metric",
                r#"a.route_add("10.0.3.0/24", #{dev: "la", metric: "low"})"#,
            ),
            ("route.dev", r#"a.route_add("10.0.3.0/24", #{dev: 7})"#),
            ("ping.count", r#"a.ping("10.0.1.2", #{count: 1.5})"#),
            ("chain.routes", r#"chain_build(["c1", "c2"], #{routes: 1})"#),
        ]),
    );
    r.ok();
    says(
        &r,
        "veth.mtu",
        "veth(): option 'mtu' must be a non-negative integer, not the string \"big\"",
    );
    says(
        &r,
        "veth.neg",
        "veth(): option 'mtu' must be a non-negative integer, not the integer -1",
    );
    says(
        &r,
        "veth.addrs",
        "veth(): option 'a_addrs' must be an array, not the string \"10.0.1.1/24\"",
    );
    says(
        &r,
        "veth.addr",
        "veth(): option 'a_addrs': each element must be a string",
    );
    says(
        &r,
        "vxlan.vni",
        "vxlan(): option 'vni' must be a non-negative integer, not the string \"42\"",
    );
    says(&r, "vxlan.missing", "vxlan(): option 'remote' is required");
    says(
        &r,
        "vxlan.parent_ns",
        "vxlan(): option 'parent_ns' must be a namespace (netns(..), host(), ...), not the string \"a\"",
    );
    says(
        &r,
        "vlan.id",
        "vlan(): option 'id' must be an integer from 0 to 65535, not the integer 70000",
    );
    says(
        &r,
        "macvlan.mode",
        "macvlan(): option 'mode' must be a string, not the integer 1",
    );
    says(
        &r,
        "route.metric",
        "route_add(): option 'metric' must be a non-negative integer, not the string \"low\"",
    );
    says(
        &r,
        "route.dev",
        "route_add(): option 'dev' must be a string, not the integer 7",
    );
    says(
        &r,
        "ping.count",
        "ping(): option 'count' must be a non-negative integer, not the number 1.5",
    );
    says(
        &r,
        "chain.routes",
        "chain_build(): option 'routes' must be true or false, not the integer 1",
    );
    assert_eq!(sb.link_names(Some("a")), vec!["la"]);
    assert_eq!(sb.netns_list(), vec!["a", "b"]);
}

/// Uncaught, an options error stops the script like any script error (exit
/// 1, `file:line:col: message`) and what the run made is undone.
#[test]
fn an_uncaught_options_error_fails_the_run_and_undoes_it() {
    let sb = Sandbox::new();
    let r = run_source(
        &sb,
        "uncaught",
        "let a = netns(\"a\");  let b = netns(\"b\");\n\
         veth(a, \"x1\", b, \"x2\", #{mtu: 1400, a_adrs: [\"10.0.1.1/24\"]});\n",
    );
    r.fails(
        1,
        "uncaught.rhai:2:1: veth(): unknown option 'a_adrs' (allowed: mtu, a_addrs, b_addrs)",
    );
    assert_clean(&sb, "uncaught options error");
}

/// Well-formed options still do what they say (checked through the kernel).
#[test]
fn good_options_are_applied() {
    let sb = Sandbox::new();
    let r = run_source(
        &sb,
        "good",
        r#"let a = netns("a");  let b = netns("b");
veth(a, "la", b, "lb", #{mtu: 1400, a_addrs: ["10.0.1.1/24"], b_addrs: ["10.0.1.2/24"]});
a.route_add("10.0.3.0/24", #{via: "10.0.1.2", dev: "la", metric: 7});
let p = a.ping("10.0.1.2", #{count: 2, timeout_ms: 1000});
print(`ping sent=${p.sent} received=${p.received} ok=${p.ok}`);
let c = chain_build(["c1", "c2", "c3"], #{base: "10.5", start: 4, routes: false});
print(`chain subnet=${chain_subnet(c.opts, 1)} nodes=${c.nodes.len()}`);
"#,
    );
    r.ok();
    assert_eq!(r.line("ping "), "ping sent=2 received=2 ok=true");
    assert_eq!(r.line("chain "), "chain subnet=10.5.5 nodes=3");
    let la = sb.link(Some("a"), "la").unwrap();
    assert_eq!(la["mtu"], 1400);
    assert_eq!(sb.addrs(Some("a"), "la"), vec!["10.0.1.1/24"]);
    assert_eq!(sb.addrs(Some("b"), "lb"), vec!["10.0.1.2/24"]);
    let routes = sb.ip_json(Some("a"), "route show 10.0.3.0/24");
    let route = &routes.as_array().unwrap()[0];
    assert_eq!(route["gateway"], "10.0.1.2");
    assert_eq!(route["dev"], "la");
    assert_eq!(route["metric"], 7);
    assert_eq!(sb.addrs(Some("c2"), "link3"), vec!["10.5.5.1/24"]);
}

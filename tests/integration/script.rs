//! The script API, function by function, checked through the kernel; the
//! stdlib; bad input and faults; rollback at every step of a scenario.
//!
//! Each test runs a script from tests/scripts/ with `koko run` inside its
//! own sandbox. A successful run without --cleanup keeps what it built, so
//! the test then inspects it with `ip -j` / `tc -j`; a failing run must leave
//! nothing (checked with `assert_clean`).
//!
//! Not covered here: docker(), on_link_down / on_container_exit / watch /
//! stop_watch (events: another branch), sysctl of a docker namespace.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::script::{assert_clean, run, run_env, script, tmp_dir};
use crate::support::{kernel_lacks, koko_bin, wait_exit, Place, Sandbox};
use serde_json::Value;

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------- the API

#[test]
fn namespaces_host_pid_forwarding_sysctl_destroy() {
    let mut sb = Sandbox::new();
    let pid = sb.spawn_pid_namespace();
    let r = run(
        &sb,
        &[&script("api_namespaces.rhai"), "--", &pid.to_string()],
    );
    r.ok();
    assert_eq!(r.line("a.name="), "a.name=a a.kind=netns same=true");
    assert_eq!(r.line("host.kind="), "host.kind=host");
    assert_eq!(r.line("pid.kind="), format!("pid.kind=pid pid.name={pid}"));
    assert_eq!(r.line("fwd4="), "fwd4=1 fwd6=1");
    assert_eq!(r.line("rp_filter="), "rp_filter=2");
    // Through the kernel: "a" exists (visible to ip netns), "doomed" was
    // destroyed, the sysctls are set.
    assert_eq!(sb.netns_list(), vec!["a"]);
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.ip_forward"), "1");
    assert_eq!(sb.sysctl(Some("a"), "net.ipv6.conf.all.forwarding"), "1");
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.conf.all.rp_filter"), "2");
    let in_pid = sb.sysctl(Place::Pid(pid), "net.ipv4.ip_forward");
    assert_eq!(in_pid.trim(), "1");
}

#[test]
fn namespace_changes_are_undone_by_cleanup_flag() {
    let mut sb = Sandbox::new();
    let pid = sb.spawn_pid_namespace();
    let r = run(
        &sb,
        &[
            "--cleanup",
            &script("api_namespaces.rhai"),
            "--",
            &pid.to_string(),
        ],
    );
    r.ok();
    assert_clean(&sb, "api_namespaces --cleanup");
    // The sysctl of the pid namespace (not created by the run) is put back.
    let in_pid = sb.sysctl(Place::Pid(pid), "net.ipv4.ip_forward");
    assert_eq!(in_pid.trim(), "0");
}

#[test]
fn destroy_lets_go_of_koko_responders_so_the_namespace_dies() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("destroy_with_server.rhai")]);
    r.ok();
    assert_eq!(r.line("before:"), "before: true");
    assert_eq!(
        r.line("after destroy:"),
        "after destroy: va is gone, tcp false"
    );
    assert_eq!(sb.netns_list(), vec!["a"]);
    assert!(sb.link_names(Some("a")).is_empty());
}

#[test]
fn links_veth_addresses_state_mtu_delete() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("api_links.rhai")]);
    r.ok();
    assert_eq!(r.line("name="), "name=va ns=a peer=vb peer.ns=b state=up");
    assert_eq!(r.line("found="), "found=ja peer_unknown=true");
    assert_eq!(r.line("vb.state="), "vb.state=down");
    assert_eq!(
        r.line("links="),
        r#"links=["ja:veth:1400", "va:veth:1500"]"#
    );
    assert_eq!(
        r.line("addrs="),
        r#"addrs=["ja=10.0.1.1/24/inet", "ja=fd00::1/64/inet6", "va=10.0.2.1/24/inet"]"#
    );
    assert_eq!(r.line("deleted."), "deleted.state=gone peer.state=gone");
    // Through the kernel.
    let mut a = sb.link_names(Some("a"));
    a.sort();
    assert_eq!(a, vec!["ja", "va"]);
    let mut b = sb.link_names(Some("b"));
    b.sort();
    assert_eq!(b, vec!["jb", "vb"]);
    let ja = sb.link(Some("a"), "ja").unwrap();
    assert_eq!(ja["mtu"], 1400);
    assert_eq!(ja["linkinfo"]["info_kind"], "veth");
    assert_eq!(sb.link(Some("b"), "jb").unwrap()["mtu"], 9000);
    for (ns, l) in [("a", "va"), ("b", "vb"), ("a", "ja"), ("b", "jb")] {
        assert!(
            flags(&sb.link(Some(ns), l).unwrap()).contains(&"UP".to_string()),
            "{l}"
        );
    }
    assert_eq!(sb.addrs(Some("a"), "ja"), vec!["10.0.1.1/24", "fd00::1/64"]);
    assert_eq!(sb.addrs(Some("b"), "jb"), vec!["10.0.1.2/24"]);
    assert_eq!(sb.addrs(Some("a"), "va"), vec!["10.0.2.1/24"]);
    assert!(sb.link(Some("a"), "ga").is_none() && sb.link(Some("b"), "gb").is_none());
}

#[test]
fn routes_ip_commands_koro_and_koko() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("api_routes.rhai")]);
    r.ok();
    assert_eq!(r.line("replace-bare="), "replace-bare=invalid");
    let routes: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("route: "))
        .collect();
    assert_eq!(
        routes,
        vec![
            "route: 10.0.1.0/24 via  dev va metric ",
            "route: 10.7.0.0/24 via 10.0.1.2 dev va metric ",
            "route: 10.8.0.0/24 via 10.0.1.2 dev va metric 50",
            "route: 10.9.0.0/24 via 10.0.1.2 dev va metric ",
            "route: default via 10.0.1.2 dev va metric ",
        ]
    );
    assert!(r.line("koko=").contains(r#""ok": true"#), "{}", r.stdout);
    // Through the kernel.
    let kernel = sb.ip_json(Some("a"), "route show");
    let dsts: Vec<String> = kernel
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dst"].as_str().unwrap().to_string())
        .collect();
    for want in ["default", "10.7.0.0/24", "10.8.0.0/24", "10.9.0.0/24"] {
        assert!(
            dsts.contains(&want.to_string()),
            "{want} missing in {kernel}"
        );
    }
    for gone in ["10.6.0.0/24", "10.5.0.0/24", "10.4.0.0/24"] {
        assert!(
            !dsts.contains(&gone.to_string()),
            "{gone} still in {kernel}"
        );
    }
    let r8 = kernel
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "10.8.0.0/24")
        .unwrap();
    assert_eq!(r8["metric"], 50);
    assert_eq!(r8["gateway"], "10.0.1.2");
    let b = sb.ip_json(Some("b"), "route show default");
    assert_eq!(b[0]["gateway"], "10.0.1.1", "{b}");
    // koko(): the one-shot grammar made l1/l2 with addresses.
    assert_eq!(sb.addrs(Some("a"), "l1"), vec!["10.0.5.1/24"]);
    assert_eq!(sb.addrs(Some("b"), "l2"), vec!["10.0.5.2/24"]);
}

#[test]
fn probes_ping_tcp_http_exec_sleep_now() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("api_probes.rhai")]);
    r.ok();
    for want in [
        "warm.ok=true",
        "ping.ok=true rtt_is_float=true",
        "ping3 sent=3 received=3",
        "ping.miss ok=false rtt=",
        "tcp.before=false",
        "tcp.after=true",
        "get=hello from b",
        "get2=hello from b",
        "get.closed kind=kernel",
        "exec code=3 out=1 err=oops",
        "slept_enough=true now_is_recent=true",
    ] {
        assert!(
            r.stdout.lines().any(|l| l == want),
            "{want:?} not in:\n{}",
            r.stdout
        );
    }
    // The responder died with the run: nothing listens any more.
    assert!(crate::support::tcp_blocked(
        &sb.netns_path("a"),
        "10.0.1.2:8080".parse().unwrap()
    ));
}

#[test]
fn cleanup_undoes_everything_and_the_run_goes_on() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("api_cleanup.rhai")]);
    r.ok();
    assert_eq!(r.line("cleaned"), "cleaned");
    assert_clean(&sb, "after cleanup()");
    let r = run(&sb, &[&script("api_cleanup.rhai"), "--", "again"]);
    r.ok();
    assert_eq!(sb.netns_list(), vec!["c"]);
}

// ------------------------------------------------------------- tunnels

fn two_hosts() -> Sandbox {
    let sb = Sandbox::new();
    sb.netns_add(&["hostA", "hostB"]);
    sb.sh(
        "ip link add eth1 netns hostA type veth peer name eth1 netns hostB \
         && ip -n hostA addr add 10.9.0.1/24 dev eth1 && ip -n hostB addr add 10.9.0.2/24 dev eth1 \
         && ip -n hostA link set eth1 up && ip -n hostB link set eth1 up",
    );
    sb
}

#[test]
fn vxlan_between_two_hosts_carries_traffic() {
    let sb = two_hosts();
    let r = run(&sb, &[&script("vxlan.rhai")]);
    r.ok();
    assert_eq!(r.line("vxlan "), "vxlan vx0 in ca: up");
    assert_eq!(r.line("ping over vxlan"), "ping over vxlan ok=true");
    let a = sb.link(Some("ca"), "vx0").expect("vx0 in ca");
    let d = &a["linkinfo"]["info_data"];
    assert_eq!(a["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(d["id"], 42);
    assert_eq!(d["remote"], "10.9.0.2");
    assert_eq!(d["port"], 4789);
    assert_eq!(a["mtu"], 1450);
    assert_eq!(sb.addrs(Some("ca"), "vx0"), vec!["10.10.0.1/24"]);
    assert_eq!(sb.addrs(Some("cb"), "vx0"), vec!["10.10.0.2/24"]);
    // The traffic also flows outside koko's own probes.
    sb.assert_tcp("cb", "ca", "10.10.0.2:7000");
}

#[test]
fn vxlan_is_undone_with_the_run() {
    let sb = two_hosts();
    run(&sb, &["--cleanup", &script("vxlan.rhai")]).ok();
    assert_eq!(sb.netns_list(), vec!["hostA", "hostB"]);
    assert_eq!(sb.link_names(Some("hostA")), vec!["eth1"]);
}

#[test]
fn vxlan_parent_defaults_to_kokos_own_namespace() {
    let sb = Sandbox::new();
    sb.sh("ip link add eth9 type veth peer name eth9p && ip addr add 10.99.0.1/24 dev eth9 && ip link set eth9 up");
    let r = run(&sb, &[&script("vxlan_default_parent.rhai")]);
    r.ok();
    assert_eq!(r.line("vx9"), "vx9 in c: up");
    let l = sb.link(Some("c"), "vx9").unwrap();
    assert_eq!(l["linkinfo"]["info_data"]["id"], 7);
    assert_eq!(l["linkinfo"]["info_data"]["port"], 8472);
    assert!(
        l.get("link_netnsid").is_some(),
        "the parent is in another namespace: {l}"
    );
    let sb = Sandbox::new();
    sb.sh("ip link add eth9 type veth peer name eth9p && ip link set eth9 up");
    run(&sb, &["--cleanup", &script("vxlan_default_parent.rhai")]).ok();
    assert_eq!(sb.netns_list(), Vec::<String>::new());
    let mut left = sb.link_names(None);
    left.sort();
    assert_eq!(left, vec!["eth9", "eth9p"]);
}

#[test]
fn macvlan_and_vlan_with_bad_options() {
    let sb = Sandbox::new();
    sb.netns_add(&["host1"]);
    sb.sh("ip -n host1 link add eth1 type veth peer name eth1p && ip -n host1 link set eth1 up && ip -n host1 link set eth1p up");
    // Does this kernel have 802.1Q? Asked of the kernel itself, not koko.
    let vlan_ok = sb
        .command("ip")
        .args([
            "-n", "host1", "link", "add", "link", "eth1p", "name", "probe",
        ])
        .args(["type", "vlan", "id", "3"])
        .status()
        .unwrap()
        .success();
    if vlan_ok {
        sb.sh("ip -n host1 link del probe");
    }
    let r = run(&sb, &[&script("macvlan_vlan.rhai")]);
    r.ok();
    assert_eq!(r.line("macvlan ping"), "macvlan ping ok=true");
    if vlan_ok {
        assert_eq!(r.line("vlan eth1.10"), "vlan eth1.10: up");
        assert!(!r.stdout.contains("vlan skipped"), "{}", r.stdout);
    } else {
        // As tunnels.rs: a kernel without 802.1Q is named, not a failure.
        assert!(
            r.line("vlan skipped")
                .contains("no 802.1Q VLAN support (CONFIG_VLAN_8021Q)"),
            "{}",
            r.stdout
        );
        kernel_lacks("802.1Q VLANs", "creating a vlan from a script");
    }
    assert!(r.line("vlan.bad").contains("kind=invalid"), "{}", r.stdout);
    assert!(r.line("vlan.bad").contains("5000"), "{}", r.stdout);
    assert!(
        r.line("macvlan.bad")
            .contains("unknown macvlan mode 'weird'"),
        "{}",
        r.stdout
    );
    assert!(
        r.line("vxlan.bad").contains("option 'remote' is required"),
        "{}",
        r.stdout
    );
    assert!(
        r.line("vlan.unknown").contains("unknown option 'colour'"),
        "{}",
        r.stdout
    );
    for ns in ["m1", "m2"] {
        let l = sb.link(Some(ns), "mv0").unwrap();
        assert_eq!(l["linkinfo"]["info_kind"], "macvlan");
        assert_eq!(l["linkinfo"]["info_data"]["mode"], "bridge");
    }
    assert_eq!(sb.addrs(Some("m1"), "mv0"), vec!["10.20.0.1/24"]);
    if vlan_ok {
        let v = sb.link(Some("v"), "eth1.10").unwrap();
        assert_eq!(v["linkinfo"]["info_kind"], "vlan");
        assert_eq!(v["linkinfo"]["info_data"]["id"], 10);
        assert_eq!(sb.link_names(Some("v")), vec!["eth1.10"]);
    } else {
        assert_eq!(sb.link_names(Some("v")), Vec::<String>::new());
    }
}

#[test]
fn mirror_copies_traffic_in_each_direction() {
    for (dir, at_least) in [("ingress", 5), ("egress", 5), ("both", 10)] {
        let sb = Sandbox::new();
        let r = run(&sb, &[&script("mirror.rhai"), "--", dir]);
        r.ok();
        assert_eq!(r.line("ping ok="), "ping ok=true received=5");
        assert!(r.line("mirror.bad").contains("'sideways'"), "{}", r.stdout);
        assert!(
            r.line("mirror.otherns").contains("same namespace"),
            "{}",
            r.stdout
        );
        // The monitor's far end saw the copies.
        let seen = sb.rx_packets(Some("m"), "tap");
        assert!(
            seen >= at_least,
            "{dir}: tap saw {seen} packets, want >= {at_least}"
        );
        let hooks: Vec<&str> = match dir {
            "both" => vec!["ingress", "egress"],
            d => vec![d],
        };
        for hook in hooks {
            let text = serde_json::to_string(&sb.tc_filters(Some("a"), "src", hook)).unwrap();
            assert!(
                text.contains("mirred"),
                "{dir}: no mirred on src {hook}: {text}"
            );
        }
        // With --cleanup the filters, links and namespaces go away.
        let sb2 = Sandbox::new();
        run(&sb2, &["--cleanup", &script("mirror.rhai"), "--", dir]).ok();
        assert_clean(&sb2, "mirror --cleanup");
    }
}

// ---------------------------------------------------------------- stdlib

#[test]
fn stdlib_chain_of_four_and_six_with_traffic_end_to_end() {
    for (n, far) in [(4, "10.0.3.2"), (6, "10.0.5.2")] {
        let sb = Sandbox::new();
        let r = run(&sb, &[&script("chain.rhai"), "--", &n.to_string()]);
        r.ok();
        assert_eq!(r.line("end of"), format!("end of a {n}-node chain"));
        assert_eq!(r.line("far="), format!("far={far} links={}", n - 1));
        let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        assert_eq!(sb.netns_list(), names);
        // Through the kernel: forwarding in the middle, link{2i+1}/link{2i+2}.
        for i in 1..n - 1 {
            assert_eq!(
                sb.sysctl(Some(format!("n{i}").as_str()), "net.ipv4.ip_forward"),
                "1"
            );
        }
        assert_eq!(sb.sysctl(Some("n0"), "net.ipv4.ip_forward"), "0");
        assert_eq!(sb.addrs(Some("n0"), "link1"), vec!["10.0.1.1/24"]);
        assert_eq!(
            sb.addrs(
                Some(format!("n{}", n - 1).as_str()),
                &format!("link{}", 2 * (n - 1))
            ),
            vec![format!("{far}/24")]
        );
        // Traffic end to end, with the harness's own TCP client.
        sb.assert_tcp(&format!("n{}", n - 1), "n0", &format!("{far}:7000"));
    }
}

#[test]
fn stdlib_assert_failure_gives_its_message_exit_1_and_undoes() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("assert_fail.rhai")]);
    r.fails(1, "assert_fail.rhai:12:9: arithmetic: expected 3, got 2");
    r.stdout_has("passed so far");
    assert!(!r.stdout.contains("not reached"));
    r.stderr_has("stdlib/assert.rhai");
    assert_clean(&sb, "failed assertion");
}

#[test]
fn stdlib_topo_builds_a_declared_lab() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("topo.rhai")]);
    r.ok();
    assert_eq!(r.line("topo web"), "topo web");
    assert_eq!(r.line("nodes="), "nodes=3");
    assert_eq!(sb.netns_list(), vec!["client", "fw", "web"]);
    assert_eq!(sb.sysctl(Some("fw"), "net.ipv4.ip_forward"), "1");
    assert_eq!(sb.sysctl(Some("fw"), "net.ipv4.conf.all.rp_filter"), "0");
    assert_eq!(sb.link(Some("fw"), "link3").unwrap()["mtu"], 9000);
    assert_eq!(
        sb.addrs(Some("web"), "link4"),
        vec!["10.0.2.2/24", "fd02::2/64"]
    );
    let d = sb.ip_json(Some("client"), "route show default");
    assert_eq!(d[0]["gateway"], "10.0.1.2");
    sb.assert_tcp("web", "client", "10.0.2.2:7000");
}

// ------------------------------------------------------ bad input, faults

#[test]
fn syntax_error_shows_file_line_col_and_a_caret() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("bad_syntax.rhai")]);
    r.fails(2, "bad_syntax.rhai:3:22: syntax error");
    assert!(
        r.stderr.contains("     3 | veth(a, \"va\", b, \"vb\";"),
        "{}",
        r.stderr
    );
    let caret = r.stderr.lines().last().unwrap();
    // "     3 | " is 9 wide; column 22 is 21 further.
    assert_eq!(caret.find('^'), Some(9 + 21), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_clean(&sb, "syntax error");
}

#[test]
fn syntax_error_in_an_imported_module_shows_its_line() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("bad_module_user.rhai")]);
    r.fails(2, "bad_module_user.rhai:2:8: in module 'bad_module': ");
    r.stderr_has("bad_module.rhai:3:16: syntax error");
    assert!(
        r.stderr.contains("     3 |   let x = (1 + ;"),
        "{}",
        r.stderr
    );
    assert_clean(&sb, "syntax error in a module");
    // Usage errors are 2 as well.
    run(&sb, &[]).fails(2, "<FILE>");
}

#[test]
fn wrong_types_say_what_was_expected() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("bad_types.rhai")]);
    r.fails(
        1,
        "bad_types.rhai:3:1: wrong arguments for veth (Ns, int, Ns, string)",
    );
    assert!(
        r.stderr
            .contains("expected veth(a: Ns, name_a: string, b: Ns, name_b: string)"),
        "{}",
        r.stderr
    );
    assert_clean(&sb, "wrong types");
}

#[test]
fn unknown_function_is_named() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("bad_unknown.rhai")]);
    r.fails(
        1,
        "bad_unknown.rhai:2:3: unknown function frobnicate (Ns, int)",
    );
    assert_clean(&sb, "unknown function");
}

#[test]
fn runaway_loop_is_stopped_by_the_limit_and_undone() {
    let sb = Sandbox::new();
    let started = Instant::now();
    let r = run(&sb, &["--max-ops", "100000", &script("runaway.rhai")]);
    r.fails(1, "runaway.rhai:5:");
    r.stderr_has("operations limit");
    r.stderr_has("--max-ops");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_clean(&sb, "runaway loop");
}

#[test]
fn failure_in_the_middle_undoes_everything() {
    let sb = Sandbox::new();
    let r = run(&sb, &[&script("mid_failure.rhai")]);
    r.fails(1, "mid_failure.rhai:9:");
    assert!(
        r.stderr.contains("'l3'") && r.stderr.contains("100000"),
        "{}",
        r.stderr
    );
    r.stderr_has("undid");
    assert_eq!(r.stdout.trim(), "built");
    assert_clean(&sb, "failure in the middle");
}

#[test]
fn keep_keeps_what_a_failed_run_built() {
    let sb = Sandbox::new();
    let r = run(&sb, &["--keep", &script("mid_failure.rhai")]);
    r.fails(1, "--keep: leaving what the script created in place");
    assert_eq!(sb.netns_list(), vec!["a", "b", "c"]);
    assert_eq!(sb.addrs(Some("a"), "l1"), vec!["10.0.1.1/24"]);
    assert_eq!(sb.sysctl(Some("b"), "net.ipv4.ip_forward"), "1");
    let d = sb.ip_json(Some("a"), "route show default");
    assert_eq!(d[0]["gateway"], "10.0.1.2");
}

#[test]
fn keep_and_cleanup_together_is_a_usage_error() {
    let sb = Sandbox::new();
    run(&sb, &["--keep", "--cleanup", &script("chain.rhai")]).fails(2, "contradict");
    run(&sb, &["/nonexistent/x.rhai"]).fails(2, "cannot read script");
    assert_clean(&sb, "usage errors");
}

/// Start `script_name`, wait for it to print "built", press Ctrl-C (SIGINT),
/// expect exit 130 (128 + SIGINT) within 3 s with "FILE:AT: interrupted by
/// SIGINT (Ctrl-C)" and nothing left.
fn ctrl_c(script_name: &str, at: &str) {
    let sb = Sandbox::new();
    let mut child = sb
        .command(koko_bin())
        .args(["run", &script(script_name)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // nsenter execs koko (no fork without -p), so this is koko's pid.
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "built");
    assert_eq!(sb.netns_list(), vec!["a", "b"]);
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let status = wait_exit(&mut child, "koko after Ctrl-C", Duration::from_secs(3));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains(&format!(
            "{script_name}:{at}: interrupted by SIGINT (Ctrl-C)"
        )),
        "{err}"
    );
    assert!(err.contains("undid"), "{err}");
    assert_clean(&sb, "Ctrl-C");
}

#[test]
fn ctrl_c_stops_a_sleep_promptly_with_exit_1_and_undoes() {
    ctrl_c("interrupted.rhai", "5:1");
}

#[test]
fn ctrl_c_stops_a_long_probe_promptly() {
    ctrl_c("interrupted_probe.rhai", "5:3");
}

#[test]
fn missing_module_lists_where_it_looked() {
    let sb = Sandbox::new();
    let r = run_env(
        &sb,
        &[&script("import_missing.rhai")],
        &[("KOKO_PATH", "/nonexistent/koko-lib")],
    );
    r.fails(1, "import_missing.rhai:2:8: no module 'no_such_module': looked in the stdlib (chain, assert, topo)");
    r.stderr_has(&script("no_such_module.rhai"));
    r.stderr_has("/nonexistent/koko-lib/no_such_module.rhai");
    assert_clean(&sb, "missing module");
}

#[test]
fn modules_from_the_script_dir_and_koko_path() {
    let sb = Sandbox::new();
    let kp = script("kokopath");
    let r = run_env(
        &sb,
        &[&script("import_local.rhai")],
        &[("KOKO_PATH", &format!("/nonexistent:{kp}"))],
    );
    r.ok();
    assert_eq!(r.line("local:"), "local: a hi from mylib");
    assert_eq!(r.line("path:"), "path: 42");
    assert_eq!(sb.netns_list(), vec!["a"]);
    // Without KOKO_PATH the second module is not found.
    let sb = Sandbox::new();
    run(&sb, &[&script("import_local.rhai")]).fails(1, "no module 'pathlib'");
    assert_clean(&sb, "no KOKO_PATH");
}

#[test]
fn namespace_deleted_under_the_script_is_named() {
    for how in ["exec", "destroy"] {
        let sb = Sandbox::new();
        let r = run(&sb, &[&script("ns_deleted.rhai"), "--", how]);
        r.fails(1, "ns_deleted.rhai:12:8: netns 'doomed': is gone");
        assert_clean(&sb, how);
    }
}

#[test]
fn try_catch_reads_kind_and_message_and_args_arrive() {
    let sb = Sandbox::new();
    let r = run(
        &sb,
        &[&script("trycatch.rhai"), "--", "x", "two words", "--keep"],
    );
    r.ok();
    assert_eq!(r.line("args="), r#"args=["x", "two words", "--keep"] n=3"#);
    for want in [
        "1 kind=not_found message=no link 'nope' in netns 'a'",
        "2 kind=invalid message=both ends are named 'x' in netns 'a'",
        "3 kind=exists message=link 'dup' already exists in netns 'a'",
        "4 kind=invalid message='not-an-ip' is not an IP address",
        "5 kind=not_found message=the namespace of pid 999999999",
        "6 kind=not_supported message=destroy() works on netns",
        "7 kind=assertion message=one: expected 2, got 1",
        "8 kind= error=ErrorFunctionNotFound message=Function not found: netns (i64)",
        "9 kind=mine message=custom",
        "done",
    ] {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(want)),
            "{want:?} not in:\n{}",
            r.stdout
        );
    }
}

// ------------------------------------------------------ rollback injection

/// The statement lines of a script: where a failure can be injected.
fn statement_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with("//") && !t.starts_with("import") && t.ends_with(';')
        })
        .map(|(i, _)| i)
        .collect()
}

/// `source` with `throw "injected after AT line N";` inserted after
/// statement line N, for every statement: (the thrown message, the text).
fn injected_variants(source: &str, at: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = source.lines().collect();
    statement_lines(source)
        .into_iter()
        .map(|k| {
            let message = format!("injected after {at}line {}", k + 1);
            let mut variant: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            variant.insert(k + 1, format!("throw \"{message}\";"));
            (message, variant.join("\n"))
        })
        .collect()
}

/// Run `file` (with `args`) in a fresh sandbox: it must fail with
/// `message`, undo without errors, and leave nothing behind.
fn assert_fails_and_undoes(file: &std::path::Path, args: &[&str], message: &str, what: &str) {
    let sb = Sandbox::new();
    let mut argv = vec![file.to_str().unwrap()];
    if !args.is_empty() {
        argv.push("--");
        argv.extend(args);
    }
    let r = run(&sb, &argv);
    r.fails(1, message);
    assert!(
        !r.stderr.contains("while undoing"),
        "{what}: undo errors: {}",
        r.stderr
    );
    assert_clean(&sb, &format!("{what}: failure {message}"));
}

/// Insert a `throw` after every statement of a script, and check that
/// every variant fails with the injected error and leaves nothing.
fn inject_everywhere(source: &str, tag: &str, args: &[&str]) {
    let variants = injected_variants(source, "");
    assert!(variants.len() >= 3, "{tag}: too few statements");
    let dir = tmp_dir(tag);
    for (k, (message, text)) in variants.iter().enumerate() {
        let file = dir.join(format!("{tag}-{k}.rhai"));
        std::fs::write(&file, text).unwrap();
        assert_fails_and_undoes(&file, args, message, tag);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rollback_at_every_step_of_the_examples() {
    let source =
        std::fs::read_to_string(crate::support::script::example("service-chain.rhai")).unwrap();
    inject_everywhere(&source, "service-chain", &[]);
    let source =
        std::fs::read_to_string(crate::support::script::example("two-namespaces.rhai")).unwrap();
    inject_everywhere(&source, "two-namespaces", &[]);
}

/// Inject a failure after every statement of a stdlib module (a copy of it,
/// imported under another name from the script's directory), driven by a
/// test script: the failure happens in the middle of the module's build.
fn inject_in_module(module: &str, driver: &str, args: &[&str]) {
    let source = std::fs::read_to_string(format!(
        "{}/stdlib/{module}.rhai",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let driver = std::fs::read_to_string(script(driver)).unwrap().replace(
        &format!("import \"{module}\""),
        &format!("import \"injected_{module}\""),
    );
    let variants = injected_variants(&source, &format!("{module}.rhai "));
    assert!(variants.len() >= 5, "{module}: too few statements");
    for (message, text) in &variants {
        let dir = tmp_dir(module);
        std::fs::write(dir.join(format!("injected_{module}.rhai")), text).unwrap();
        let file = dir.join("driver.rhai");
        std::fs::write(&file, &driver).unwrap();
        assert_fails_and_undoes(&file, args, message, module);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn rollback_at_every_step_of_the_stdlib_chain_and_topo() {
    let source = std::fs::read_to_string(script("chain.rhai")).unwrap();
    inject_everywhere(&source, "chain", &["4"]);
    // stdlib chain is a thin wrapper over the native bulk build now; its
    // mid-build failures are covered by scale.rs.
    inject_in_module("topo", "topo.rhai", &[]);
}

#[test]
fn rollback_at_every_step_of_the_api_scripts() {
    for name in ["api_links.rhai", "api_routes.rhai", "api_probes.rhai"] {
        let source = std::fs::read_to_string(script(name)).unwrap();
        inject_everywhere(&source, name.trim_end_matches(".rhai"), &[]);
    }
}

// ------------------------------------------------ more limits and journal

#[test]
fn call_depth_string_and_array_limits_stop_the_script() {
    for (what, needle) in [
        ("depth", "more than 64 levels (a runaway recursion?)"),
        ("string", "Length of string: over the limit"),
        ("array", "Size of array/BLOB: over the limit"),
    ] {
        let sb = Sandbox::new();
        let started = Instant::now();
        let r = run(&sb, &[&script("limits.rhai"), "--", what]);
        r.fails(1, needle);
        r.stderr_has("limits.rhai:");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: too slow"
        );
        assert_clean(&sb, what);
    }
}

/// The test's own namespace "a" with a veth eth0x <-> eth0y, eth0x up.
fn existing_link_scene() -> Sandbox {
    let sb = Sandbox::new();
    sb.netns_add(&["a"]);
    sb.sh("ip link add eth0x netns a type veth peer eth0y netns a && ip -n a link set eth0x up");
    sb
}

#[test]
fn changes_to_existing_things_are_put_back_on_failure() {
    let sb = existing_link_scene();
    let r = run(&sb, &[&script("existing_link.rhai"), "--", "fail"]);
    r.fails(1, "stop here");
    assert_eq!(
        r.line("changed:"),
        "changed: mtu=1400 state=down fwd=1 rp=1"
    );
    // Through the kernel: everything as the test made it.
    assert_eq!(sb.netns_list(), vec!["a"], "a was not created by the run");
    let l = sb.link(Some("a"), "eth0x").unwrap();
    assert_eq!(l["mtu"], 1500);
    assert!(flags(&l).contains(&"UP".to_string()), "{l}");
    assert!(sb.addrs(Some("a"), "eth0x").is_empty());
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.ip_forward"), "0");
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.conf.all.rp_filter"), "0");
}

#[test]
fn changes_to_existing_things_stay_after_success() {
    let sb = existing_link_scene();
    run(&sb, &[&script("existing_link.rhai")]).ok();
    let l = sb.link(Some("a"), "eth0x").unwrap();
    assert_eq!(l["mtu"], 1400);
    assert!(!flags(&l).contains(&"UP".to_string()), "{l}");
    assert_eq!(sb.addrs(Some("a"), "eth0x"), vec!["10.3.0.1/24"]);
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.ip_forward"), "1");
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.conf.all.rp_filter"), "1");
}

/// Every function the engine has from koko carries a doc comment and named
/// parameters in Rhai's own metadata (the REPL's :help, completion, "expected
/// ..." hints and the README's API list come from it), and every test script
/// here is run by some test.
#[test]
fn every_registered_function_is_documented_and_every_script_used() {
    let root = env!("CARGO_MANIFEST_DIR");
    let world = koko::script::World::new().unwrap();
    let engine = koko::script::build_engine(&world, koko::script::Limits::default(), None);
    let api = koko::script::docs::api(&engine);
    assert!(api.len() > 50, "{api:?}");
    let undocumented: Vec<String> = api
        .iter()
        .filter(|f| f.doc.trim().is_empty() || f.params.iter().any(|(n, _)| n == "_"))
        .map(|f| f.signature())
        .collect();
    assert!(
        undocumented.is_empty(),
        "registered without a doc comment or parameter names: {undocumented:?}"
    );

    // Every module of the integration binary may run a test script.
    let tests: String = std::fs::read_dir(format!("{root}/tests/integration"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for entry in std::fs::read_dir(format!("{root}/tests/scripts")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".rhai") && name != "mylib.rhai" && name != "bad_module.rhai" {
            assert!(
                tests.contains(&format!("\"{name}\"")) || tests.contains(&format!("/{name}\"")),
                "tests/scripts/{name} is run by no test"
            );
        }
    }
}

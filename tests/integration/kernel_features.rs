//! Features that depend on the kernel koko runs on: 802.1Q vlans (one-shot
//! and script, with traffic through them), dummy links as parents, and
//! mirroring counted per direction under root qdiscs koko does not manage
//! (prio, netem).
//!
//! These machines' kernel has no 8021q, dummy, prio or netem; Debian 12's
//! stock kernel has all four. The stock-kernel lane (tests/stock-kernel/run)
//! boots that kernel and runs these tests in it, with `KOKO_LANE_KERNEL=stock`.
//!
//! Each test first asks the kernel itself, in its own sandbox and without
//! koko (`ip link add ... type vlan`, `tc qdisc add ... prio`), whether the
//! feature is there, and then asserts exactly one branch:
//! - koko's own feature (a vlan) present: it works, traffic flows, and the
//!   kernel shows what koko made; absent: koko's error names the missing
//!   kernel feature and nothing is left behind.
//! - a feature only the test's setup needs (a dummy parent, a prio root
//!   qdisc) absent: the test cannot run here and says so in a loud SKIP.
//!   That is not a failure under CI on this machine (nothing here could
//!   run it); in the stock-kernel lane, where the feature must exist, it is.

use std::time::Duration;

use crate::support::script::{run, tmp_dir};
use crate::support::traffic::tcp_roundtrip;
use crate::support::{in_stock_kernel_lane, kernel_has, poll, send_udp, setup_lacks, Sandbox};

/// Does this kernel have 802.1Q vlans? (In the stock-kernel lane it must.)
fn kernel_has_vlan(sb: &Sandbox) -> bool {
    let has = kernel_has(sb, VLAN_PROBE);
    assert!(
        has || !in_stock_kernel_lane(),
        "Debian's stock kernel has 802.1Q VLAN support, but this one does not"
    );
    has
}

const VLAN_PROBE: &str =
    "ip link add kokoprobe0 type veth peer name kokoprobe1 && ip link add link kokoprobe0 name kokoprobe0.3 type vlan id 3; r=$?; ip link del kokoprobe0; exit $r";
const DUMMY_PROBE: &str = "ip link add kokoprobe0 type dummy && ip link del kokoprobe0";

use crate::tunnels::two_hosts;

fn assert_vlan(sb: &Sandbox, ns: &str, name: &str, id: u64) {
    let l = sb
        .link(Some(ns), name)
        .unwrap_or_else(|| panic!("no link {name} in {ns}"));
    assert_eq!(l["linkinfo"]["info_kind"], "vlan", "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["id"], id, "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["protocol"], "802.1Q", "{l}");
    // Its parent stayed in the host namespace.
    assert!(l.get("link_netnsid").is_some(), "{l}");
    assert!(
        l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{l}"
    );
}

#[test]
fn vlan_one_shot_carries_traffic_between_two_hosts() {
    let sb = two_hosts();
    let has_vlan = kernel_has_vlan(&sb);
    let a = sb.koko_in("hostA", "-n ca,v5,10.1.5.1/24 -V eth1,5");
    if !has_vlan {
        a.fails(
            1,
            "creating vlan (id 5) 'v5' on eth1 in netns 'ca': this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q)",
        );
        assert!(sb.link_names(Some("ca")).is_empty());
        assert_eq!(sb.link_names(Some("hostA")), vec!["eth1"]);
        return;
    }
    a.ok();
    sb.koko_in("hostB", "-n cb,v5,10.1.5.2/24 -V eth1,5").ok();
    assert_vlan(&sb, "ca", "v5", 5);
    assert_vlan(&sb, "cb", "v5", 5);
    assert_eq!(sb.addrs(Some("ca"), "v5"), vec!["10.1.5.1/24"]);
    assert_eq!(sb.addrs(Some("cb"), "v5"), vec!["10.1.5.2/24"]);
    // No temporary name was left next to the parents.
    assert_eq!(sb.link_names(Some("hostA")), vec!["eth1"]);
    assert_eq!(sb.link_names(Some("hostB")), vec!["eth1"]);

    // The only way from cb to ca is tagged frames over eth1.
    let reply = tcp_roundtrip(
        &sb.netns_path("ca"),
        &sb.netns_path("cb"),
        "10.1.5.1:8080".parse().unwrap(),
    );
    assert_eq!(reply.as_deref(), Ok("hello koko"));

    sb.koko_line("-N ca,v5").ok();
    assert!(sb.link_names(Some("ca")).is_empty());
    assert_eq!(sb.link_names(Some("hostA")), vec!["eth1"]);
}

/// vlan 7 between two hosts: the parents are "eth1" in hostA and hostB,
/// the vlans go into ca and cb.
const VLAN_SCRIPT: &str = r#"
let hostA = netns("hostA");  let hostB = netns("hostB");
let ca = netns("ca");  let cb = netns("cb");
let a = vlan(ca, "v7", #{parent: "eth1", parent_ns: hostA, id: 7, addrs: ["10.1.7.1/24"]});
let b = vlan(cb, "v7", #{parent: "eth1", parent_ns: hostB, id: 7, addrs: ["10.1.7.2/24"]});
print(`vlan ${a.name} in ${a.ns.name}: ${a.state}`);
print(`vlan ${b.name} in ${b.ns.name}: ${b.state}`);
let r = ca.ping("10.1.7.2", #{count: 3, timeout_ms: 3000});
print(`vlan ping ok=${r.ok} received=${r.received}`);
"#;

#[test]
fn vlan_script_carries_traffic_between_two_hosts() {
    let sb = two_hosts();
    let has_vlan = kernel_has_vlan(&sb);
    let dir = tmp_dir("vlan");
    let file = dir.join("vlan_traffic.rhai");
    std::fs::write(&file, VLAN_SCRIPT).unwrap();
    let r = run(&sb, &[file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    if !has_vlan {
        r.fails(
            1,
            "this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q)",
        );
        assert!(sb.link_names(Some("ca")).is_empty());
        assert!(sb.link_names(Some("cb")).is_empty());
        return;
    }
    r.ok();
    assert!(r.stdout.contains("vlan v7 in ca: up"), "{}", r.stdout);
    assert!(r.stdout.contains("vlan v7 in cb: up"), "{}", r.stdout);
    assert!(
        r.stdout.contains("vlan ping ok=true received=3"),
        "{}",
        r.stdout
    );
    // Checked through the kernel, and by traffic of the test's own.
    assert_vlan(&sb, "ca", "v7", 7);
    assert_vlan(&sb, "cb", "v7", 7);
    assert_eq!(sb.addrs(Some("cb"), "v7"), vec!["10.1.7.2/24"]);
    let reply = tcp_roundtrip(
        &sb.netns_path("cb"),
        &sb.netns_path("ca"),
        "10.1.7.2:8080".parse().unwrap(),
    );
    assert_eq!(reply.as_deref(), Ok("hello koko"));
}

#[test]
fn dummy_links_are_parents_of_vlan_macvlan_and_vxlan() {
    let sb = Sandbox::new();
    sb.netns_add(&["host", "a", "b", "c", "d"]);
    if !kernel_has(&sb, DUMMY_PROBE) {
        setup_lacks("dummy link support (CONFIG_DUMMY)");
        return;
    }
    let has_vlan = kernel_has_vlan(&sb);
    sb.sh("ip -n host link add eth1 type dummy && ip -n host addr add 10.9.0.1/24 dev eth1 && ip -n host link set eth1 up");

    // Two macvlans in bridge mode on one dummy talk to each other.
    sb.koko_in("host", "-n a,mv0,10.5.0.1/24 -M eth1,bridge")
        .ok();
    sb.koko_in("host", "-n b,mv0,10.5.0.2/24 -M eth1,bridge")
        .ok();
    for ns in ["a", "b"] {
        let l = sb.link(Some(ns), "mv0").unwrap();
        assert_eq!(l["linkinfo"]["info_kind"], "macvlan", "{l}");
        assert_eq!(l["linkinfo"]["info_data"]["mode"], "bridge", "{l}");
    }
    let reply = tcp_roundtrip(
        &sb.netns_path("b"),
        &sb.netns_path("a"),
        "10.5.0.2:8080".parse().unwrap(),
    );
    assert_eq!(reply.as_deref(), Ok("hello koko"));

    sb.koko_in("host", "-n c,vx0,10.200.0.1/24 -x eth1,10.9.0.2,42")
        .ok();
    let l = sb.link(Some("c"), "vx0").unwrap();
    assert_eq!(l["linkinfo"]["info_kind"], "vxlan", "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["id"], 42, "{l}");

    let v = sb.koko_in("host", "-n d,v9,10.3.0.1/24 -V eth1,9");
    if has_vlan {
        v.ok();
        assert_vlan(&sb, "d", "v9", 9);
    } else {
        v.fails(
            1,
            "this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q)",
        );
        assert!(sb.link_names(Some("d")).is_empty());
    }
    assert_eq!(
        sb.link_names(Some("host")),
        vec!["eth1"],
        "nothing else appeared next to the dummy parent"
    );
}

// ---------------------------------------------------------------- mirroring

/// Wait until the mirror counter stops at or above `want` (copies are
/// counted as they arrive; under emulation that lags the originals).
fn mirrored_settles(sb: &Sandbox, want: u64) -> u64 {
    poll(Duration::from_secs(5), || {
        let n = crate::tunnels::mirrored(sb);
        if n >= want {
            Ok(n)
        } else {
            Err(n.to_string())
        }
    })
    .unwrap_or_else(|seen| seen.parse().unwrap_or(0))
}

/// The mirroring scene of the tunnels tests, with `root` (a tc qdisc
/// spec) as the root qdisc of src.
fn mirror_scene(root: &str) -> Sandbox {
    let sb = crate::tunnels::mirror_scene();
    sb.sh(&format!("tc -n a qdisc add dev src root {root}"));
    sb
}

/// (copies seen while b sends 50 to a, copies seen while a sends 50 to b)
fn count_each_direction(sb: &Sandbox, expect_in: bool) -> (u64, u64) {
    let before = crate::tunnels::mirrored(sb);
    send_udp(
        &sb.netns_path("b"),
        &sb.netns_path("a"),
        "10.7.0.1:9100".parse().unwrap(),
        50,
    );
    let after_in = if expect_in {
        mirrored_settles(sb, before + 50)
    } else {
        crate::tunnels::mirrored(sb)
    };
    send_udp(
        &sb.netns_path("a"),
        &sb.netns_path("b"),
        "10.7.0.2:9100".parse().unwrap(),
        50,
    );
    let after_out = if expect_in {
        crate::tunnels::mirrored(sb)
    } else {
        mirrored_settles(sb, after_in + 50)
    };
    (after_in - before, after_out - after_in)
}

/// Egress and ingress mirroring, each counted on its own, on a link whose
/// root qdisc is `root` (koko's clsact sits beside it and must not care).
fn mirror_each_direction_under(root_kind: &str, root: &str, feature: &str) {
    for (dir, expect_in) in [("ingress", true), ("egress", false)] {
        let sb = Sandbox::new();
        if !kernel_has(
            &sb,
            &format!("ip link add kokoprobe0 type veth peer name kokoprobe1 && tc qdisc add dev kokoprobe0 root {root}; r=$?; ip link del kokoprobe0; exit $r"),
        ) {
            setup_lacks(feature);
            return;
        }
        drop(sb);
        let sb = mirror_scene(root);
        sb.koko_line(&format!("-n a,mir0,mirror:{dir}:src -n m,mirpeer"))
            .ok();
        let (got_in, got_out) = count_each_direction(&sb, expect_in);
        let (want, other) = if expect_in {
            (got_in, got_out)
        } else {
            (got_out, got_in)
        };
        assert!(want >= 50, "{root}, {dir}: {want} of 50 packets mirrored");
        // A stray ARP or IPv6 packet is no datagram flood.
        assert!(
            other < 5,
            "{root}, {dir}: {other} packets of the other direction mirrored"
        );
        // The user's root qdisc is untouched, koko's clsact beside it.
        let kinds = sb.sh("tc -n a qdisc show dev src");
        assert!(
            kinds.contains(&format!("qdisc {root_kind} ")) && kinds.contains("qdisc clsact"),
            "{kinds}"
        );
        sb.koko_line("-N a,mir0").ok();
        let kinds = sb.sh("tc -n a qdisc show dev src");
        assert!(
            kinds.contains(&format!("qdisc {root_kind} ")) && !kinds.contains("clsact"),
            "{root}, {dir}: after delete: {kinds}"
        );
    }
}

#[test]
fn mirroring_each_direction_under_a_prio_root_qdisc() {
    mirror_each_direction_under("prio", "handle 1: prio", "prio qdisc (CONFIG_NET_SCH_PRIO)");
}

#[test]
fn mirroring_each_direction_under_a_netem_root_qdisc() {
    mirror_each_direction_under(
        "netem",
        "handle 1: netem delay 1ms",
        "netem qdisc (CONFIG_NET_SCH_NETEM)",
    );
}

//! vxlan, vlan and macvlan links, and traffic mirroring, through the koko
//! command line: two simulated hosts joined by an underlay, a container
//! namespace on each, koko run inside each host namespace (as the original
//! is used: `ip netns exec HOST koko ...`). Everything is checked through the
//! kernel (`ip -j`, `tc -j`) and by traffic, and after every failure nothing
//! is left behind.

use serde_json::Value;

use crate::support::{kernel_lacks, send_udp, Sandbox};

/// hostA and hostB joined by a veth underlay "eth1" (10.9.0.1/24,
/// 10.9.0.2/24), a container namespace on each (ca, cb).
pub(crate) fn two_hosts() -> Sandbox {
    let sb = Sandbox::new();
    sb.netns_add(&["hostA", "hostB", "ca", "cb"]);
    sb.sh(
        "ip link add eth1 netns hostA type veth peer name eth1 netns hostB \
         && ip -n hostA addr add 10.9.0.1/24 dev eth1 && ip -n hostB addr add 10.9.0.2/24 dev eth1 \
         && ip -n hostA link set eth1 up && ip -n hostB link set eth1 up",
    );
    sb
}

fn vxlan_data(link: &Value) -> &Value {
    assert_eq!(link["linkinfo"]["info_kind"], "vxlan", "{link}");
    &link["linkinfo"]["info_data"]
}

/// Everything of koko's sandbox: (namespace, link names) for the given ones.
fn snapshot(sb: &Sandbox, namespaces: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut all = vec![("(sandbox)".to_string(), sb.link_names(None))];
    for ns in namespaces {
        all.push((ns.to_string(), sb.link_names(Some(*ns))));
    }
    all
}

#[test]
fn vxlan_between_two_hosts_carries_traffic_with_every_parameter() {
    let sb = two_hosts();
    sb.koko_in(
        "hostA",
        "-n ca,vx0,10.200.0.1/24 -x eth1,10.9.0.2,42,local=10.9.0.1,ttl=9",
    )
    .ok();
    sb.koko_in(
        "hostB",
        "-n cb,vx0,10.200.0.2/24 -X eth1,10.9.0.1,42,mtu=1400,learning=off",
    )
    .ok();

    let a = sb.link(Some("ca"), "vx0").expect("vx0 in ca");
    let da = vxlan_data(&a);
    assert_eq!(da["id"], 42);
    assert_eq!(da["remote"], "10.9.0.2");
    assert_eq!(da["local"], "10.9.0.1");
    assert_eq!(da["port"], 4789, "the original's default dstport");
    assert_eq!(da["ttl"], 9);
    assert_eq!(da["learning"], true, "learning is on by default");
    assert_eq!(a["mtu"], 1450, "kernel-derived MTU: 1500 - 50");
    assert!(
        a["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{a}"
    );
    // Its underlay is in hostA: the link points at another namespace.
    assert!(a.get("link_netnsid").is_some(), "{a}");

    let b = sb.link(Some("cb"), "vx0").expect("vx0 in cb");
    let db = vxlan_data(&b);
    assert_eq!(db["id"], 42);
    assert_eq!(db["remote"], "10.9.0.1");
    assert_eq!(db["port"], 4789);
    assert_eq!(db["learning"], false);
    assert_eq!(b["mtu"], 1400);

    assert_eq!(sb.addrs(Some("ca"), "vx0"), vec!["10.200.0.1/24"]);
    assert_eq!(sb.addrs(Some("cb"), "vx0"), vec!["10.200.0.2/24"]);
    // Nothing was left in the hosts (no temporary name) or in the sandbox.
    assert_eq!(sb.link_names(Some("hostA")), vec!["eth1"]);
    assert_eq!(sb.link_names(Some("hostB")), vec!["eth1"]);
    assert!(sb.link_names(None).is_empty());

    sb.assert_tcp("cb", "ca", "10.200.0.2:8080");

    // Deleting removes it (run anywhere: the link is in ca).
    sb.koko_line("-N ca,vx0").ok();
    assert!(sb.link_names(Some("ca")).is_empty());
}

#[test]
fn vxlan_on_another_port_and_ipv6_addresses() {
    let sb = two_hosts();
    sb.koko_in(
        "hostA",
        "-n ca,vx9,10.201.0.1/24,fd00:201::1/64 -x eth1,10.9.0.2,4242,port=8472",
    )
    .ok();
    sb.koko_in(
        "hostB",
        "-n cb,vx9,10.201.0.2/24,fd00:201::2/64 -x eth1,10.9.0.1,4242,port=8472",
    )
    .ok();
    for ns in ["ca", "cb"] {
        let l = sb.link(Some(ns), "vx9").unwrap();
        assert_eq!(vxlan_data(&l)["port"], 8472);
        assert_eq!(vxlan_data(&l)["id"], 4242);
    }
    sb.assert_tcp("ca", "cb", "[fd00:201::1]:8080");
}

#[test]
fn vlan_names_the_missing_kernel_feature_or_works() {
    let sb = two_hosts();
    let probe =
        sb.sh("ip -n hostA link add link eth1 name probe type vlan id 3 2>&1 && echo yes || true");
    let run = sb.koko_in("hostA", "-n ca,v5,10.1.0.1/24 -V eth1,5");
    if probe.contains("yes") {
        // A kernel with 8021q: the vlan is made in ca, on eth1 of hostA.
        run.ok();
        let l = sb.link(Some("ca"), "v5").unwrap();
        assert_eq!(l["linkinfo"]["info_kind"], "vlan");
        assert_eq!(l["linkinfo"]["info_data"]["id"], 5);
        return;
    }
    kernel_lacks("802.1Q VLANs (CONFIG_VLAN_8021Q)", "creating a vlan");
    run.fails(
        1,
        "creating vlan (id 5) 'v5' on eth1 in netns 'ca': this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q)",
    );
    assert!(sb.link_names(Some("ca")).is_empty());
    assert_eq!(sb.link_names(Some("hostA")), vec!["eth1"]);
}

#[test]
fn macvlans_in_bridge_mode_talk_to_each_other() {
    let sb = Sandbox::new();
    sb.netns_add(&["host", "a", "b"]);
    sb.sh("ip -n host link add p0 type veth peer name p0peer && ip -n host link set p0 up && ip -n host link set p0peer up");
    sb.koko_in("host", "-n a,mv0,10.5.0.1/24 -M p0,bridge").ok();
    sb.koko_in("host", "-n b,mv0,10.5.0.2/24 -M p0,bridge").ok();
    for ns in ["a", "b"] {
        let l = sb.link(Some(ns), "mv0").unwrap();
        assert_eq!(l["linkinfo"]["info_kind"], "macvlan");
        assert_eq!(l["linkinfo"]["info_data"]["mode"], "bridge");
    }
    let mut host = sb.link_names(Some("host"));
    host.sort();
    assert_eq!(
        host,
        vec!["p0", "p0peer"],
        "nothing else appeared next to the parent"
    );
    sb.assert_tcp("b", "a", "10.5.0.2:8080");
}

#[test]
fn every_macvlan_mode_is_accepted_by_the_kernel() {
    let sb = Sandbox::new();
    sb.netns_add(&["host", "a"]);
    sb.sh("ip -n host link add p0 type veth peer name p0peer && ip -n host link set p0 up");
    // "default" sends no mode: the kernel's default, vepa (as the original).
    for (mode, shown) in [
        ("default", "vepa"),
        ("private", "private"),
        ("vepa", "vepa"),
        ("bridge", "bridge"),
        ("passthru", "passthru"),
    ] {
        let name = format!("m{mode}");
        sb.koko_in("host", &format!("-n a,{name} -M p0,{mode}"))
            .ok();
        let l = sb.link(Some("a"), &name).unwrap();
        assert_eq!(l["linkinfo"]["info_data"]["mode"], shown, "{mode}: {l}");
        sb.koko_line(&format!("-N a,{name}")).ok();
    }
    assert!(sb.link_names(Some("a")).is_empty());
}

// ---------------------------------------------------------------- mirroring

/// The number of packets the mirror link's peer (`mirpeer` in `m`) received.
pub(crate) fn mirrored(sb: &Sandbox) -> u64 {
    sb.rx_packets(Some("m"), "mirpeer")
}

/// a and b joined by src (in a) <-> dst (in b); m is the monitor namespace.
pub(crate) fn mirror_scene() -> Sandbox {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b", "m"]);
    sb.sh(
        "ip link add src netns a type veth peer name dst netns b \
         && ip -n a addr add 10.7.0.1/24 dev src && ip -n b addr add 10.7.0.2/24 dev dst \
         && ip -n a link set src up && ip -n b link set dst up \
         && ip netns exec a sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
         && ip netns exec m sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
    );
    // Resolve ARP once, so the counts below are only the test's datagrams.
    send_udp(
        &sb.netns_path("b"),
        &sb.netns_path("a"),
        "10.7.0.1:9000".parse().unwrap(),
        1,
    );
    send_udp(
        &sb.netns_path("a"),
        &sb.netns_path("b"),
        "10.7.0.2:9000".parse().unwrap(),
        1,
    );
    sb
}

/// (packets mirrored while b sends 50 to a, while a sends 50 to b).
///
/// No wait is needed before reading the counter: tc's mirred action runs in
/// the path of the packet it copies (egress: in the sender's
/// dev_queue_xmit; ingress: in the receive softirq before the socket gets
/// the datagram), and a veth counts a packet for its peer's rx when it
/// transmits it. So once `send_udp` has received every datagram, every copy
/// has been counted.
fn count_both_ways(sb: &Sandbox, port: u16) -> (u64, u64) {
    let before = mirrored(sb);
    send_udp(
        &sb.netns_path("b"),
        &sb.netns_path("a"),
        format!("10.7.0.1:{port}").parse().unwrap(),
        50,
    );
    let after_in = mirrored(sb);
    send_udp(
        &sb.netns_path("a"),
        &sb.netns_path("b"),
        format!("10.7.0.2:{port}").parse().unwrap(),
        50,
    );
    let after_out = mirrored(sb);
    (after_in - before, after_out - after_in)
}

#[test]
fn mirroring_each_direction_is_counted_on_the_mirror_link_and_removed_with_it() {
    for (dir, spelling, expect_in, expect_out) in [
        ("ingress", "mirror:ingress:src", true, false),
        ("egress", "mirror:egress,src", false, true),
        ("both", "mirror:both:src", true, true),
    ] {
        let sb = mirror_scene();
        // A fresh veth: no qlen change, no prio qdisc.
        sb.koko_line(&format!("-n a,mir0,{spelling} -n m,mirpeer"))
            .ok();
        assert_eq!(
            sb.qdisc_kinds(Some("a"), "src")
                .iter()
                .filter(|k| *k == "clsact")
                .count(),
            1
        );
        let (got_in, got_out) = count_both_ways(&sb, 9100);
        if expect_in {
            assert!(
                got_in >= 50,
                "{dir}: {got_in} packets mirrored from ingress"
            );
        } else {
            assert!(got_in < 5, "{dir}: ingress traffic mirrored ({got_in})");
        }
        if expect_out {
            assert!(
                got_out >= 50,
                "{dir}: {got_out} packets mirrored from egress"
            );
        } else {
            assert!(got_out < 5, "{dir}: egress traffic mirrored ({got_out})");
        }
        // The filter is koko's: u32, protocol all, mirred to mir0, marked.
        let hooks: &[&str] = match dir {
            "ingress" => &["ingress"],
            "egress" => &["egress"],
            _ => &["ingress", "egress"],
        };
        for hook in hooks {
            let f = sb.tc_filters(Some("a"), "src", hook);
            let text = serde_json::to_string(&f).unwrap();
            assert!(text.contains("\"protocol\":\"all\""), "{hook}: {text}");
            assert!(text.contains("\"to_dev\":\"mir0\""), "{hook}: {text}");
            assert!(
                text.contains("\"mirred_action\":\"mirror\""),
                "{hook}: {text}"
            );
        }

        sb.koko_line("-N a,mir0").ok();
        assert!(!sb.link_names(Some("a")).contains(&"mir0".to_string()));
        for hook in ["ingress", "egress"] {
            assert!(
                sb.tc_filters(Some("a"), "src", hook).is_empty(),
                "{dir}: {hook} filters left"
            );
        }
        assert!(
            !sb.qdisc_kinds(Some("a"), "src")
                .contains(&"clsact".to_string()),
            "the clsact koko added is gone"
        );
    }
}

#[test]
fn deleting_a_mirror_leaves_a_users_own_filter() {
    let sb = mirror_scene();
    sb.sh("tc -n a qdisc add dev src clsact && tc -n a filter add dev src ingress prio 7 protocol ip u32 match ip dst 192.0.2.1/32 flowid 1:1");
    sb.koko_line("-n a,mir0,mirror:both:src -n m,mirpeer").ok();
    let (got_in, got_out) = count_both_ways(&sb, 9200);
    assert!(got_in >= 50 && got_out >= 50, "{got_in} {got_out}");
    sb.koko_line("-N a,mir0").ok();
    let left = sb.tc_filters(Some("a"), "src", "ingress");
    let text = serde_json::to_string(&left).unwrap();
    assert!(
        !left.is_empty() && left.iter().all(|f| f["pref"] == 7),
        "only the user's filter is left: {text}"
    );
    assert!(!text.contains("mirred"), "{text}");
    assert!(sb.tc_filters(Some("a"), "src", "egress").is_empty());
    assert!(
        sb.qdisc_kinds(Some("a"), "src")
            .contains(&"clsact".to_string()),
        "the user's clsact stays"
    );
}

#[test]
fn mirror_on_a_vxlan_endpoint() {
    let sb = two_hosts();
    sb.sh("ip -n ca link add app type veth peer name app2 && ip -n ca link set app up && ip -n ca link set app2 up");
    sb.koko_in("hostA", "-n ca,vx0,mirror:egress:app -x eth1,10.9.0.2,42")
        .ok();
    let f = serde_json::to_string(&sb.tc_filters(Some("ca"), "app", "egress")).unwrap();
    assert!(f.contains("\"to_dev\":\"vx0\""), "{f}");
    sb.koko_line("-N ca,vx0").ok();
    assert!(sb.tc_filters(Some("ca"), "app", "egress").is_empty());
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_tunnel_input_is_refused_and_leaves_nothing_behind() {
    let sb = two_hosts();
    sb.netns_add(&["a", "b"]);
    // A vxlan that exists already: VNI 42 on port 4789 in hostA.
    sb.koko_in("hostA", "-n ca,vx0 -x eth1,10.9.0.2,42").ok();
    let before = snapshot(&sb, &["hostA", "hostB", "ca", "cb", "a", "b"]);
    let cases: &[(&str, &str, i32, &str)] = &[
        (
            "hostA",
            "-n ca,vx1 -x eth1,10.9.0.2,16777216",
            2,
            "VNI '16777216' is not a number from 0 to 16777215",
        ),
        ("hostA", "-n ca,vx1 -x eth1,10.9.0.2,abc", 2, "VNI 'abc'"),
        ("hostA", "-n ca,vx1 -x eth1,10.9.0.2,-1", 2, "VNI '-1'"),
        (
            "hostA",
            "-n ca,vx1 -x eth1,10.9.0.2,7,port=0",
            2,
            "port '0' is not a UDP port",
        ),
        (
            "hostA",
            "-n ca,vx1 -x eth1,10.9.0.2,7,port=70000",
            2,
            "port '70000'",
        ),
        (
            "hostA",
            "-n ca,vx1 -x eth1,10.9.0.2,7,port=http",
            2,
            "port 'http'",
        ),
        (
            "hostA",
            "-n ca,vx1 -x eth1,10.9.0.2,7,mtu=big",
            2,
            "'big' is not an MTU",
        ),
        (
            "hostA",
            "-n ca,vx1 -x eth1,10.9.0.2,7,mtu=20",
            2,
            "'20' is not an MTU",
        ),
        (
            "hostA",
            "-n ca,vx1 -x eth1,10.9.0.2,7,color=red",
            2,
            "unknown key 'color'",
        ),
        (
            "hostA",
            "-n ca,vx1 -x eth1,host1,7",
            2,
            "remote 'host1' is not an IP address",
        ),
        (
            "hostA",
            "-n ca,vx1 -x eth9,10.9.0.2,7",
            1,
            "no link 'eth9' in koko's own namespace",
        ),
        (
            "hostA",
            "-n ca,vx1 -x eth1,10.9.0.2,42",
            1,
            "VNI 42 on UDP port 4789 already exists",
        ),
        (
            "hostA",
            "-n ca,vx0 -x eth1,10.9.0.2,43",
            1,
            "link 'vx0' already exists in netns 'ca'",
        ),
        (
            "hostA",
            "-n ca,vx1 -x eth1,10.9.0.2,44,mtu=1490",
            1,
            "allows at most MTU 1450",
        ),
        (
            "hostA",
            "-n ca,v1 -V eth1,4095",
            2,
            "VLAN id '4095' is not a number from 1 to 4094",
        ),
        ("hostA", "-n ca,v1 -V eth1,0", 2, "VLAN id '0'"),
        ("hostA", "-n ca,v1 -V eth9,5", 1, "eth9"),
        (
            "hostA",
            "-n ca,m1 -M eth1,fancy",
            2,
            "unknown macvlan mode 'fancy' (modes: default, private, vepa, bridge, passthru)",
        ),
        ("hostA", "-n ca,m1 -M eth9,bridge", 1, "no link 'eth9'"),
        (
            "hostA",
            "-n ca,vx1,mirror:ingress:nosuch -x eth1,10.9.0.2,50",
            1,
            "no link 'nosuch'",
        ),
        (
            "hostA",
            "-n ca,vx1,mirror:sideways:vx0 -x eth1,10.9.0.2,50",
            2,
            "mirror direction 'sideways' is not one of ingress, egress, both",
        ),
        (
            "hostA",
            "-n ca,vx1,mirror:both:vx1 -x eth1,10.9.0.2,50",
            2,
            "cannot mirror 'vx1' onto itself",
        ),
        (
            "hostA",
            "-n a,l1,mirror:ingress:nosuch -n b,l2",
            1,
            "no link 'nosuch' in netns 'a'",
        ),
        ("hostA", "-n a,l1,mirror:both:l1 -n b,l2", 2, "onto itself"),
    ];
    for (host, line, code, needle) in cases {
        sb.koko_in(host, line).fails(*code, needle);
        assert_eq!(
            snapshot(&sb, &["hostA", "hostB", "ca", "cb", "a", "b"]),
            before,
            "{line} left something behind"
        );
        for dev in ["eth1", "vx0"] {
            let ns = if dev == "eth1" { "hostA" } else { "ca" };
            assert!(
                sb.qdisc_kinds(Some(ns), dev).iter().all(|k| k != "clsact"),
                "{line}: clsact left on {dev}"
            );
        }
    }
}

#[test]
fn deleting_the_far_end_of_a_veth_removes_the_mirror_on_the_near_end() {
    let sb = mirror_scene();
    // The mirror is on a's end (mir0); the user deletes the pair by m's end.
    sb.koko_line("-n m,mirpeer -n a,mir0,mirror:both:src").ok();
    let (got_in, got_out) = count_both_ways(&sb, 9300);
    assert!(got_in >= 50 && got_out >= 50, "{got_in} {got_out}");
    sb.koko_line("-N m,mirpeer").ok();
    assert!(!sb.link_names(Some("a")).contains(&"mir0".to_string()));
    for hook in ["ingress", "egress"] {
        assert!(
            sb.tc_filters(Some("a"), "src", hook).is_empty(),
            "{hook} filters left"
        );
    }
    assert!(!sb
        .qdisc_kinds(Some("a"), "src")
        .contains(&"clsact".to_string()));
}

#[test]
fn two_mirrors_of_one_source_are_removed_one_at_a_time() {
    let sb = mirror_scene();
    sb.netns_add(&["m2"]);
    sb.koko_line("-n a,mir0,mirror:both:src -n m,mirpeer").ok();
    sb.koko_line("-n a,mir1,mirror:ingress:src -n m2,peer1")
        .ok();
    sb.koko_line("-N a,mir0").ok();
    let left = serde_json::to_string(&sb.tc_filters(Some("a"), "src", "ingress")).unwrap();
    assert!(
        left.contains("\"to_dev\":\"mir1\"") && !left.contains("mir0"),
        "{left}"
    );
    assert!(sb.tc_filters(Some("a"), "src", "egress").is_empty());
    assert!(
        sb.qdisc_kinds(Some("a"), "src")
            .contains(&"clsact".to_string()),
        "still in use by mir1"
    );
    sb.koko_line("-N a,mir1").ok();
    assert!(sb.tc_filters(Some("a"), "src", "ingress").is_empty());
    assert!(!sb
        .qdisc_kinds(Some("a"), "src")
        .contains(&"clsact".to_string()));
}

#[test]
fn an_existing_ingress_qdisc_serves_ingress_but_not_egress_mirroring() {
    let sb = mirror_scene();
    sb.sh("tc -n a qdisc add dev src ingress");
    let before = snapshot(&sb, &["a", "b", "m"]);
    sb.koko_line("-n a,mir0,mirror:egress:src -n m,mirpeer")
        .fails(1, "'src' has an 'ingress' qdisc, which has no egress hook");
    assert_eq!(snapshot(&sb, &["a", "b", "m"]), before, "rolled back");
    sb.koko_line("-n a,mir0,mirror:ingress:src -n m,mirpeer")
        .ok();
    let (got_in, _) = count_both_ways(&sb, 9400);
    assert!(got_in >= 50, "{got_in}");
    sb.koko_line("-N a,mir0").ok();
    assert!(sb.tc_filters(Some("a"), "src", "ingress").is_empty());
    assert!(
        sb.qdisc_kinds(Some("a"), "src")
            .contains(&"ingress".to_string()),
        "the user's ingress qdisc stays"
    );
}

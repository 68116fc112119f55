//! The koko command line with netns, pid, path and current-namespace
//! endpoints: every such example of the seeds (koko README, the veth blog
//! post), checked through the kernel and by traffic across the link.

use crate::support::{assert_tcp, Place, Sandbox};

#[test]
fn readme_netns_example_ipv4() {
    let sb = Sandbox::new();
    sb.netns_add(&["testns1", "testns2"]);
    let run = sb.koko_line("-n testns1,link1,192.168.1.1/24 -n testns2,link2,192.168.1.2/24");
    run.ok();
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "one line per action: {}",
        run.stdout
    );

    let l1 = sb.link(Some("testns1"), "link1").expect("link1 in testns1");
    let l2 = sb.link(Some("testns2"), "link2").expect("link2 in testns2");
    for l in [&l1, &l2] {
        assert_eq!(l["linkinfo"]["info_kind"], "veth");
        assert_eq!(l["mtu"], 1500);
        assert_eq!(l["operstate"], "UP", "{l}");
    }
    // The two ends are each other's peer.
    assert_eq!(l1["link_index"], l2["ifindex"]);
    assert_eq!(l2["link_index"], l1["ifindex"]);
    assert_eq!(sb.addrs(Some("testns1"), "link1"), vec!["192.168.1.1/24"]);
    assert_eq!(sb.addrs(Some("testns2"), "link2"), vec!["192.168.1.2/24"]);
    // Nothing appeared in koko's own namespace.
    assert!(sb.link_names(None).is_empty(), "{:?}", sb.link_names(None));

    sb.assert_tcp("testns2", "testns1", "192.168.1.2:8080");
}

#[test]
fn readme_netns_example_ipv6_and_dual_stack() {
    let sb = Sandbox::new();
    sb.netns_add(&["testns1", "testns2"]);
    sb.koko_line("-n testns1,link1,2001:DB8::1/64 -n testns2,link2,2001:DB8::2/64")
        .ok();
    assert_eq!(sb.addrs(Some("testns1"), "link1"), vec!["2001:db8::1/64"]);
    assert_eq!(sb.addrs(Some("testns2"), "link2"), vec!["2001:db8::2/64"]);
    sb.assert_tcp("testns2", "testns1", "[2001:db8::2]:8080");

    sb.koko_line("-n testns1,link3,192.168.1.1/24,2001:DB8:1::1/64 -n testns2,link4,192.168.1.2/24,2001:DB8:1::2/64")
        .ok();
    let mut got = sb.addrs(Some("testns1"), "link3");
    got.sort();
    assert_eq!(got, vec!["192.168.1.1/24", "2001:db8:1::1/64"]);
    let mut got = sb.addrs(Some("testns2"), "link4");
    got.sort();
    assert_eq!(got, vec!["192.168.1.2/24", "2001:db8:1::2/64"]);
}

#[test]
fn ipv6_is_enabled_on_the_link_when_the_namespace_disabled_it() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    sb.sh("ip netns exec a sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    sb.koko_line("-n a,v6,fd00::1/64 -n b,v6b,fd00::2/64").ok();
    assert_eq!(sb.addrs(Some("a"), "v6"), vec!["fd00::1/64"]);
    assert_eq!(sb.sysctl(Some("a"), "net.ipv6.conf.v6.disable_ipv6"), "0");
}

#[test]
fn many_addresses_per_end() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    sb.koko_line(
        "-n a,l1,10.0.0.1/24,10.0.1.1/24,10.0.2.1/24,fd00::1/64,fd01::1/64 -n b,l2,10.0.0.2/24",
    )
    .ok();
    assert_eq!(sb.addrs(Some("a"), "l1").len(), 5);
}

#[test]
fn veth_blog_post_two_namespaces_and_a_cable() {
    // The blog: ip netns add ns1/ns2, a veth v1<->v2, 10.0.0.1/2 on each, up,
    // then netcat between them, then ip netns del. Here koko does the netns
    // part in-process and `ip netns list` must see it.
    let sb = Sandbox::new();
    sb.koko_line("netns add ns1 ns2").ok();
    assert_eq!(
        sb.sh("ip netns list | cut -d' ' -f1 | sort")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["ns1", "ns2"]
    );
    sb.koko_line("-n ns1,v1,10.0.0.1/24 -n ns2,v2,10.0.0.2/24")
        .ok();
    assert_eq!(sb.link(Some("ns1"), "v1").unwrap()["operstate"], "UP");
    sb.assert_tcp("ns1", "ns2", "10.0.0.1:8080");
    // `ip netns exec` works in koko's namespaces.
    assert!(sb.sh("ip netns exec ns1 ip -br link").contains("v1@"));
    sb.koko_line("netns del ns1 ns2").ok();
    assert!(sb.netns_list().is_empty());
}

#[test]
fn ip_netns_namespaces_can_be_deleted_by_koko_and_vice_versa() {
    let sb = Sandbox::new();
    sb.netns_add(&["made-by-ip"]);
    sb.koko_line("netns add made-by-koko").ok();
    sb.sh("ip netns del made-by-koko");
    sb.koko_line("netns del made-by-ip").ok();
    assert!(sb.netns_list().is_empty());
    sb.koko_line("netns del ghost").fails(1, "netns 'ghost'");
    sb.koko_line("netns add dup").ok();
    sb.koko_line("netns add dup").fails(1, "already exists");
}

#[test]
fn pid_and_current_namespace_endpoints() {
    let mut sb = Sandbox::new();
    let pid = sb.spawn_pid_namespace();
    sb.netns_add(&["ns2"]);
    sb.koko(&[
        "-p",
        &format!("{pid},eth1,10.1.0.1/24"),
        "-c",
        "host-end,10.1.0.2/24",
    ])
    .ok();
    let in_pid = sb
        .link(Place::Pid(pid), "eth1")
        .expect("eth1 in the pid's namespace");
    assert_eq!(in_pid["linkinfo"]["info_kind"], "veth");
    assert_eq!(in_pid["operstate"], "UP");
    assert_eq!(sb.addrs(None, "host-end"), vec!["10.1.0.2/24"]);
    let pid_ns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    assert_tcp(&pid_ns, sb.own_ns_path(), "10.1.0.1:9000");

    // -P deletes from the pid's side; the peer in the current namespace goes too.
    sb.koko(&["-P", &format!("{pid},eth1")]).ok();
    assert!(sb.link_names(None).is_empty());

    // -a with a namespace file, and vethcon's -n /var/run/netns/NAME form.
    sb.koko(&[
        "-a",
        &format!("/proc/{pid}/ns/net,eth2"),
        "-n",
        "/var/run/netns/ns2,eth3",
    ])
    .ok();
    assert!(sb.link(Some("ns2"), "eth3").is_some());
    sb.koko_line("-C nothing-here")
        .fails(1, "no link 'nothing-here' in koko's own namespace");
    sb.koko_line("-N ns2,eth3").ok();
    assert!(sb.link_names(Some("ns2")).is_empty());
}

#[test]
fn mtu_option_attached_values_and_json() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    let run = sb.koko_line("-na,big1,10.9.0.1/24 -nb,big2 --mtu 9000 --json");
    run.ok();
    let report = run.json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["ends"][0]["link"], "big1");
    // Check the kernel, not the report.
    let l = sb.link(Some("a"), "big1").unwrap();
    assert_eq!(l["mtu"], 9000);
    assert_eq!(report["ends"][0]["ifindex"], l["ifindex"]);
    assert_eq!(sb.link(Some("b"), "big2").unwrap()["mtu"], 9000);

    let del = sb.koko_line("--json -N b,big2");
    del.ok();
    assert_eq!(del.json()["deleted"][0]["link"], "big2");
    assert!(sb.link_names(Some("a")).is_empty(), "the peer goes with it");
}

#[test]
fn delete_removes_both_ends() {
    let sb = Sandbox::new();
    sb.netns_add(&["testns1", "testns2"]);
    sb.koko_line("-n testns1,link1 -n testns2,link2").ok();
    let run = sb.koko_line("-N testns1,link1");
    run.ok();
    assert!(run.stdout.contains("link1"));
    assert!(sb.link_names(Some("testns1")).is_empty());
    assert!(sb.link_names(Some("testns2")).is_empty());
}

#[test]
fn help_and_version() {
    let sb = Sandbox::new();
    let h = sb.koko(&["-h"]);
    h.ok();
    assert!(h.stdout.contains("-n NETNS,LINK"));
    let v = sb.koko(&["-v"]);
    v.ok();
    assert!(v.stdout.starts_with("koko "));
}

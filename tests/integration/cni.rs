//! koko as a CNI plugin, invoked the way a runtime invokes it: the binary
//! with CNI_COMMAND and friends in its environment and the network config
//! on stdin, inside the test's sandbox (each test its own). Pods are named
//! namespaces; "two nodes" are two namespaces joined by an underlay veth,
//! each running the plugin for its own pods. Everything is checked through
//! the kernel (`ip -j`) and with TCP traffic, and after DEL nothing is left.
//!
//! This harness covers what Debian's libcni (spec 1.0) never sends: STATUS,
//! GC, and the 0.3/0.4 result layouts.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    kernel_has, koko_bin, setup_lacks, tcp_goodput, udp_rtts, wait_until, Run, Sandbox,
};

/// The topology directory inside every sandbox (its /run/koko is private).
const TOPO: &str = "/run/koko/topo";

/// A link record, as both pods see it: (uid, pod a, intf a, ip a, pod b, intf b, ip b).
type Link<'a> = (u32, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

/// Write one `POD.json` per pod for `links` into [`TOPO`].
fn write_topology(sb: &Sandbox, links: &[Link]) {
    let mut pods: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
    for &(uid, pa, ia, ipa, pb, ib, ipb) in links {
        pods.entry(pa)
            .or_default()
            .push(json!({"uid": uid, "peer_pod": pb,
            "local_intf": ia, "local_ip": ipa, "peer_intf": ib, "peer_ip": ipb}));
        pods.entry(pb)
            .or_default()
            .push(json!({"uid": uid, "peer_pod": pa,
            "local_intf": ib, "local_ip": ipb, "peer_intf": ia, "peer_ip": ipa}));
    }
    sb.sh(&format!("mkdir -p {TOPO}"));
    for (pod, links) in pods {
        let text = json!({ "links": links }).to_string();
        sb.sh(&format!("cat > {TOPO}/{pod}.json <<'EOF'\n{text}\nEOF"));
    }
}

/// The network config, with `extra` merged in.
fn conf(version: &str, extra: Value) -> Value {
    let mut c = json!({"cniVersion": version, "name": "lab", "type": "koko-cni", "topology": TOPO});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

/// One plugin invocation, optionally inside namespace `node` (a simulated
/// node: `ip netns exec NODE`). Pod `pod`'s sandbox is `ctr-POD`, its
/// namespace the netns named `pod`.
fn cni(sb: &Sandbox, node: Option<&str>, command: &str, pod: &str, conf: &Value) -> Run {
    let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME={pod}");
    invoke(sb, node, command, pod, &args, conf)
}

/// One plugin invocation for the sandbox of netns `netns` (its container
/// id `ctr-NETNS`), with `args` as CNI_ARGS.
fn invoke(
    sb: &Sandbox,
    node: Option<&str>,
    command: &str,
    netns: &str,
    args: &str,
    conf: &Value,
) -> Run {
    let mut cmd: Command = match node {
        Some(n) => {
            let mut c = sb.command("ip");
            c.args(["netns", "exec", n]).arg(koko_bin()).arg("cni");
            c
        }
        None => {
            let mut c = sb.command(koko_bin());
            c.arg("cni");
            c
        }
    };
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("ctr-{netns}"))
        .env("CNI_NETNS", format!("/run/netns/{netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .env("CNI_ARGS", args);
    Run::with_input(
        &mut cmd,
        &conf.to_string(),
        format!("CNI {command} {netns} ({args})"),
    )
}

fn add(sb: &Sandbox, pod: &str, conf: &Value) -> Value {
    cni(sb, None, "ADD", pod, conf).ok().json()
}

fn alias(sb: &Sandbox, pod: &str, link: &str) -> Option<String> {
    let l = sb.ip_json(Some(pod), &format!("-d link show {link}"));
    l[0]["ifalias"].as_str().map(str::to_string)
}

/// Links other than lo in a pod.
fn lab_links(sb: &Sandbox, pod: &str) -> Vec<String> {
    sb.link_names(Some(pod))
        .into_iter()
        .filter(|n| n != "lo")
        .collect()
}

fn pair(sb: &Sandbox) {
    sb.netns_add(&["a", "b"]);
    write_topology(
        sb,
        &[(1, "a", "e1", "10.0.1.1/24", "b", "e1", "10.0.1.2/24")],
    );
}

#[test]
fn cni_version_lists_every_supported_layout() {
    let sb = Sandbox::new();
    let mut cmd = sb.command(koko_bin());
    cmd.arg("cni").env("CNI_COMMAND", "VERSION");
    let v = Run::with_input(&mut cmd, "", "CNI VERSION").ok().json();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    // Installed under the name runtimes call it by, koko is the plugin.
    sb.sh(&format!(
        "mkdir -p /run/koko/bin && ln -s {} /run/koko/bin/koko-cni",
        koko_bin().display()
    ));
    let mut cmd = sb.command("/run/koko/bin/koko-cni");
    cmd.env("CNI_COMMAND", "VERSION");
    let v = Run::with_input(&mut cmd, "", "koko-cni VERSION")
        .ok()
        .json();
    assert_eq!(v["cniVersion"], "1.1.0");
}

#[test]
fn cni_errors_are_json_with_the_spec_codes() {
    let sb = Sandbox::new();
    pair(&sb);
    let code = |r: &Run| -> u64 {
        assert_ne!(r.code, 0, "{} should fail", r.what);
        let e: Value =
            serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
        assert!(e["msg"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        e["code"].as_u64().unwrap()
    };
    assert_eq!(
        code(&cni(&sb, None, "ADD", "a", &conf("0.2.0", json!({})))),
        1,
        "old version"
    );
    assert_eq!(
        code(&cni(&sb, None, "GC", "a", &conf("1.0.0", json!({})))),
        1,
        "GC before 1.1.0"
    );
    assert_eq!(
        code(&cni(&sb, None, "ADD", "nope", &conf("1.0.0", json!({})))),
        3,
        "no netns"
    );
    assert_eq!(
        code(&cni(&sb, None, "FLY", "a", &conf("1.0.0", json!({})))),
        4,
        "bad command"
    );
    let mut cmd = sb.command(koko_bin());
    cmd.arg("cni").env("CNI_COMMAND", "ADD");
    assert_eq!(code(&Run::with_input(&mut cmd, "{not json", "garbage")), 6);
    assert_eq!(
        code(&cni(
            &sb,
            None,
            "ADD",
            "a",
            &conf("1.0.0", json!({"mtu": "big"}))
        )),
        7
    );
    assert_eq!(
        code(&cni(
            &sb,
            None,
            "STATUS",
            "a",
            &conf("1.1.0", json!({"topology": "/nonexistent"}))
        )),
        50,
        "STATUS with no topology"
    );
    cni(&sb, None, "STATUS", "a", &conf("1.1.0", json!({}))).ok();
    assert!(lab_links(&sb, "a").is_empty());
}

#[test]
fn cni_pair_is_wired_by_the_second_pod_in_either_order_and_carries_tcp() {
    for (first, second) in [("a", "b"), ("b", "a")] {
        let sb = Sandbox::new();
        pair(&sb);
        let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "x"}],
            "ips": [{"address": "10.88.0.5/16", "interface": 0}]});
        let c = conf("1.0.0", json!({"prevResult": prev}));
        let r1 = add(&sb, first, &c);
        assert_eq!(
            r1["interfaces"].as_array().unwrap().len(),
            1,
            "peer not there yet: {r1}"
        );
        assert!(lab_links(&sb, first).is_empty());
        let r2 = add(&sb, second, &c);
        // prevResult passed through, our interface and address appended.
        assert_eq!(r2["interfaces"][0]["name"], "eth0");
        assert_eq!(r2["interfaces"][1]["name"], "e1");
        assert_eq!(r2["ips"][0]["address"], "10.88.0.5/16");
        assert_eq!(r2["ips"][1]["interface"], 1);
        for pod in ["a", "b"] {
            let l = sb.link(Some(pod), "e1").expect("e1");
            assert!(
                l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
                "{l}"
            );
            assert_eq!(
                alias(&sb, pod, "e1").as_deref(),
                Some(format!("koko-cni:ctr-{pod}").as_str())
            );
        }
        assert_eq!(sb.addrs(Some("a"), "e1"), vec!["10.0.1.1/24"]);
        assert_eq!(sb.addrs(Some("b"), "e1"), vec!["10.0.1.2/24"]);
        sb.assert_tcp("a", "b", "10.0.1.1:7001");
        cni(&sb, None, "CHECK", first, &c).ok();
        cni(&sb, None, "CHECK", second, &c).ok();
        // DEL either side: both ends go.
        cni(&sb, None, "DEL", first, &c).ok();
        assert!(lab_links(&sb, "a").is_empty() && lab_links(&sb, "b").is_empty());
    }
}

#[test]
fn cni_results_take_the_layout_of_each_version() {
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let sb = Sandbox::new();
        pair(&sb);
        let c = conf(version, json!({}));
        add(&sb, "a", &c);
        let r = add(&sb, "b", &c);
        assert_eq!(r["cniVersion"], version);
        assert_eq!(r["interfaces"][0]["name"], "e1", "{version}: {r}");
        assert_eq!(r["interfaces"][0]["sandbox"], "/run/netns/b");
        assert_eq!(r["ips"][0]["address"], "10.0.1.2/24");
        assert_eq!(r["ips"][0]["interface"], 0);
        if version.starts_with("0.") {
            assert_eq!(r["ips"][0]["version"], "4", "{version}: {r}");
        } else {
            assert!(r["ips"][0].get("version").is_none(), "{version}: {r}");
        }
    }
}

#[test]
fn cni_del_is_idempotent_and_leaves_nothing() {
    let sb = Sandbox::new();
    pair(&sb);
    let c = conf("1.0.0", json!({}));
    // DEL without ADD, for a netns that never existed, and with no netns.
    cni(&sb, None, "DEL", "a", &c).ok();
    cni(&sb, None, "DEL", "ghost", &c).ok();
    let mut cmd = sb.command(koko_bin());
    cmd.arg("cni")
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", "ctr-a")
        .env("CNI_IFNAME", "eth0");
    Run::with_input(&mut cmd, &c.to_string(), "DEL without CNI_NETNS").ok();
    add(&sb, "a", &c);
    add(&sb, "b", &c);
    cni(&sb, None, "DEL", "b", &c).ok();
    cni(&sb, None, "DEL", "b", &c).ok();
    assert!(lab_links(&sb, "a").is_empty() && lab_links(&sb, "b").is_empty());
    // The namespace is gone before its DEL (a killed pod): still fine.
    add(&sb, "b", &c);
    assert_eq!(lab_links(&sb, "a"), vec!["e1"]);
    sb.sh("ip netns del b");
    cni(&sb, None, "DEL", "b", &c).ok();
    // The kernel dismantles a namespace in the background.
    wait_until(
        "a's end to go with b's namespace",
        Duration::from_secs(5),
        || lab_links(&sb, "a").is_empty(),
    );
    assert!(sb
        .sh("ls /run/koko/cni/pods")
        .split_whitespace()
        .eq(["lab+a.json"]));
}

#[test]
fn cni_a_restarted_pod_is_rewired() {
    let sb = Sandbox::new();
    pair(&sb);
    let c = conf("1.0.0", json!({}));
    add(&sb, "a", &c);
    add(&sb, "b", &c);
    // Pod a restarts: a new sandbox and namespace, while the old one is
    // still alive (its DEL has not run): b's end is tied to the old one.
    sb.sh(
        "touch /run/netns/old && mount --bind /run/netns/a /run/netns/old \
         && umount /run/netns/a && rm /run/netns/a && ip netns add a",
    );
    assert_eq!(lab_links(&sb, "old"), vec!["e1"]);
    add(&sb, "a", &c);
    sb.assert_tcp("b", "a", "10.0.1.2:7002");
    cni(&sb, None, "CHECK", "b", &c.clone().tap_prev()).ok();
    assert!(
        lab_links(&sb, "old").is_empty(),
        "the stale pair was replaced"
    );
    // And once more with the old namespace gone first.
    sb.sh("ip netns del a && ip netns add a");
    wait_until(
        "b's end to go with a's old namespace",
        Duration::from_secs(5),
        || lab_links(&sb, "b").is_empty(),
    );
    add(&sb, "a", &c);
    sb.assert_tcp("a", "b", "10.0.1.1:7007");
}

#[test]
fn cni_check_finds_a_lost_address() {
    let sb = Sandbox::new();
    pair(&sb);
    let c = conf(
        "1.0.0",
        json!({"prevResult": {"cniVersion": "1.0.0", "interfaces": [], "ips": []}}),
    );
    add(&sb, "a", &c);
    add(&sb, "b", &c);
    cni(&sb, None, "CHECK", "a", &c).ok();
    sb.sh("ip -n a addr flush dev e1");
    cni(&sb, None, "CHECK", "a", &c)
        .fails(1, "lost its address 10.0.1.1/24")
        .stdout_has("\"code\":101");
    sb.sh("ip -n b link set e1 down");
    cni(&sb, None, "CHECK", "b", &c)
        .fails(1, "down")
        .stdout_has("\"code\":101");
}

/// Is netem in this kernel? (Without it koko's tc-bpf backend impairs,
/// and it cannot delay.)
fn has_netem(sb: &Sandbox) -> bool {
    kernel_has(
        sb,
        "tc qdisc add dev lo root netem delay 1ms && tc qdisc del dev lo root",
    )
}

/// koko's own root qdisc on `dev` in `pod` (handle 6b6f:), as tc shows it.
fn koko_root_qdisc(sb: &Sandbox, pod: &str, dev: &str) -> Option<Value> {
    sb.tc_json(Some(pod), &format!("qdisc show dev {dev} root"))
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["handle"] == "6b6f:")
        .cloned()
}

#[test]
fn cni_link_records_impair_each_end_as_its_own_record_says() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    let netem = has_netem(&sb);
    // a's record: what a sends is limited (and delayed, where the kernel
    // can delay); b's record: what b sends is limited more gently.
    let a_impair = if netem {
        json!({"rate": "10mbit", "delay": "20ms"})
    } else {
        json!({"rate": "10mbit"})
    };
    let link = |peer: &str, ip: &str, peer_ip: &str, impair: Value| {
        json!({"links": [{"uid": 1, "peer_pod": peer, "local_intf": "e1", "local_ip": ip,
            "peer_intf": "e1", "peer_ip": peer_ip, "impair": impair}]})
    };
    sb.sh(&format!("mkdir -p {TOPO}"));
    for (pod, text) in [
        ("a", link("b", "10.0.1.1/24", "10.0.1.2/24", a_impair)),
        (
            "b",
            link("a", "10.0.1.2/24", "10.0.1.1/24", json!({"rate": "50mbit"})),
        ),
    ] {
        sb.sh(&format!("cat > {TOPO}/{pod}.json <<'EOF'\n{text}\nEOF"));
    }
    let c = conf(
        "1.0.0",
        json!({"prevResult": {"cniVersion": "1.0.0", "interfaces": [], "ips": []}}),
    );
    add(&sb, "a", &c);
    // Nothing impaired before the pair exists; b's ADD creates the pair
    // and applies both records, each to its own end.
    add(&sb, "b", &c);
    let qa = koko_root_qdisc(&sb, "a", "e1").expect("koko's qdisc on a's e1");
    let qb = koko_root_qdisc(&sb, "b", "e1").expect("koko's qdisc on b's e1");
    if netem {
        assert_eq!(qa["kind"], "netem", "{qa}");
    } else {
        setup_lacks("netem (CONFIG_NET_SCH_NETEM): the delay half of this test");
        assert_eq!(qa["kind"], "tbf", "{qa}");
        assert_eq!(qb["kind"], "tbf", "{qb}");
        assert_eq!(qa["options"]["rate"], 1_250_000, "10mbit in bytes/s: {qa}");
        assert_eq!(qb["options"]["rate"], 6_250_000, "50mbit in bytes/s: {qb}");
    }
    let (na, nb) = (sb.netns_path("a"), sb.netns_path("b"));
    let limited = tcp_goodput(
        &nb,
        &na,
        "10.0.1.2:7101".parse().unwrap(),
        Duration::from_secs(2),
    );
    assert!(
        (8e6..11e6).contains(&limited),
        "a -> b at 10mbit carried {limited} bit/s"
    );
    if netem {
        let rtts = udp_rtts(&na, &nb, "10.0.1.2:7102".parse().unwrap(), 10);
        assert!(rtts.len() >= 8, "echoes lost: {rtts:?}");
        assert!(
            rtts.iter().all(|r| *r >= 20.0),
            "a round trip shorter than a's 20 ms delay: {rtts:?}"
        );
    }
    // CHECK sees the impairment, and misses it once it is gone.
    cni(&sb, None, "CHECK", "a", &c).ok();
    cni(&sb, None, "CHECK", "b", &c).ok();
    sb.sh("tc -n a qdisc del dev e1 root");
    cni(&sb, None, "CHECK", "a", &c)
        .fails(1, "not by")
        .stdout_has("\"code\":101");
    // DEL: the links go, and their qdiscs with them.
    cni(&sb, None, "DEL", "a", &c).ok();
    cni(&sb, None, "DEL", "b", &c).ok();
    assert!(lab_links(&sb, "a").is_empty() && lab_links(&sb, "b").is_empty());
}

#[test]
fn cni_an_impairment_in_words_koko_does_not_know_is_refused() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    sb.sh(&format!("mkdir -p {TOPO}"));
    let text = json!({"links": [{"uid": 1, "peer_pod": "b", "local_intf": "e1",
        "peer_intf": "e1", "impair": {"delay": "soon"}}]});
    sb.sh(&format!("cat > {TOPO}/a.json <<'EOF'\n{text}\nEOF"));
    cni(&sb, None, "ADD", "a", &conf("1.0.0", json!({})))
        .fails(1, "'delay soon': not a time")
        .stdout_has("\"code\":");
    assert!(lab_links(&sb, "a").is_empty());
}

#[test]
fn cni_pods_named_alike_in_two_kubernetes_namespaces_get_their_own_peers() {
    let sb = Sandbox::new();
    // Pods a and b in namespace red (netns ra, rb) and in namespace blue
    // (ba, bb), and a and b without a namespace ("default": da, db). red
    // and blue have their own topology subdirectories, default the flat
    // top-level files.
    sb.netns_add(&["ra", "rb", "ba", "bb", "da", "db"]);
    let link = |peer: &str, intf: &str, ip: &str, peer_ip: &str| {
        json!({"links": [{"uid": 1, "peer_pod": peer, "local_intf": intf, "local_ip": ip,
            "peer_intf": intf, "peer_ip": peer_ip}]})
    };
    for (dir, intf, net) in [
        ("red/", "r1", "10.0.1"),
        ("blue/", "b1", "10.0.2"),
        ("", "d1", "10.0.3"),
    ] {
        sb.sh(&format!("mkdir -p {TOPO}/{dir}"));
        for (pod, peer, me, it) in [("a", "b", 1, 2), ("b", "a", 2, 1)] {
            let text = link(
                peer,
                intf,
                &format!("{net}.{me}/24"),
                &format!("{net}.{it}/24"),
            );
            sb.sh(&format!(
                "cat > {TOPO}/{dir}{pod}.json <<'EOF'\n{text}\nEOF"
            ));
        }
    }
    let c = conf(
        "1.0.0",
        json!({"prevResult": {"cniVersion": "1.0.0", "interfaces": [], "ips": []}}),
    );
    let add_in = |k8s_ns: Option<&str>, pod: &str, netns: &str| {
        let args = match k8s_ns {
            Some(n) => format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={n};K8S_POD_NAME={pod}"),
            None => format!("IgnoreUnknown=1;K8S_POD_NAME={pod}"),
        };
        invoke(&sb, None, "ADD", netns, &args, &c).ok();
    };
    // red's a and blue's b: same-named peers of each other by name alone,
    // but in different namespaces, so neither is wired yet.
    add_in(Some("red"), "a", "ra");
    add_in(Some("blue"), "b", "bb");
    add_in(None, "a", "da");
    for netns in ["ra", "bb", "da"] {
        assert!(
            lab_links(&sb, netns).is_empty(),
            "{netns}: {:?}",
            lab_links(&sb, netns)
        );
    }
    // Each namespace's second pod wires its own pair.
    add_in(Some("red"), "b", "rb");
    add_in(Some("blue"), "a", "ba");
    add_in(None, "b", "db");
    for (netns, intf, addr) in [
        ("ra", "r1", "10.0.1.1/24"),
        ("rb", "r1", "10.0.1.2/24"),
        ("ba", "b1", "10.0.2.1/24"),
        ("bb", "b1", "10.0.2.2/24"),
        ("da", "d1", "10.0.3.1/24"),
        ("db", "d1", "10.0.3.2/24"),
    ] {
        assert_eq!(lab_links(&sb, netns), vec![intf.to_string()], "{netns}");
        assert_eq!(sb.addrs(Some(netns), intf), vec![addr], "{netns}");
    }
    // The veths join the right namespaces: each pair carries TCP.
    sb.assert_tcp("ra", "rb", "10.0.1.1:7201");
    sb.assert_tcp("ba", "bb", "10.0.2.1:7202");
    sb.assert_tcp("da", "db", "10.0.3.1:7203");
    for netns in ["ra", "rb", "ba", "bb", "da", "db"] {
        invoke(&sb, None, "DEL", netns, "", &c).ok();
        assert!(lab_links(&sb, netns).is_empty(), "{netns}");
    }
}

#[test]
fn cni_concurrent_adds_of_many_pods_wire_every_pair_once() {
    // A ring of 8 pods, all ADDed at once.
    let sb = Sandbox::new();
    let pods: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let names: Vec<&str> = pods.iter().map(String::as_str).collect();
    sb.netns_add(&names);
    let ips: Vec<(String, String)> = (0..8)
        .map(|i| (format!("10.1.{i}.1/24"), format!("10.1.{i}.2/24")))
        .collect();
    let links: Vec<Link> = (0..8)
        .map(|i| {
            (
                i as u32 + 1,
                names[i],
                "right",
                ips[i].0.as_str(),
                names[(i + 1) % 8],
                "left",
                ips[i].1.as_str(),
            )
        })
        .collect();
    write_topology(&sb, &links);
    let c = conf("1.0.0", json!({}));
    std::thread::scope(|s| {
        for pod in &names {
            let (sb, c) = (&sb, &c);
            s.spawn(move || {
                cni(sb, None, "ADD", pod, c).ok();
            });
        }
    });
    for pod in &names {
        let mut l = lab_links(&sb, pod);
        l.sort();
        assert_eq!(l, vec!["left", "right"], "{pod}");
    }
    sb.assert_tcp("p3", "p4", "10.1.3.1:7003");
}

#[test]
fn cni_gc_removes_links_of_sandboxes_no_longer_valid() {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b", "c"]);
    write_topology(
        &sb,
        &[
            (1, "a", "e1", "10.0.1.1/24", "b", "e1", "10.0.1.2/24"),
            (2, "c", "e1", "10.0.2.1/24", "b", "e2", "10.0.2.2/24"),
        ],
    );
    let c = conf("1.1.0", json!({}));
    for pod in ["a", "b", "c"] {
        add(&sb, pod, &c);
    }
    // Someone else's link with an alias, which GC must not touch.
    sb.sh("ip -n c link add other type veth peer name other2 && ip -n c link set other alias mine");
    let gc = conf(
        "1.1.0",
        json!({"cni.dev/valid-attachments": [{"containerID": "ctr-a", "ifname": "eth0"},
                                            {"containerID": "ctr-b", "ifname": "eth0"}]}),
    );
    cni(&sb, None, "GC", "a", &gc).ok();
    assert_eq!(lab_links(&sb, "a"), vec!["e1"]);
    assert_eq!(
        lab_links(&sb, "b"),
        vec!["e1"],
        "b's end of c's link went with c's"
    );
    let mut left = lab_links(&sb, "c");
    left.sort();
    assert_eq!(left, vec!["other", "other2"]);
    sb.assert_tcp("a", "b", "10.0.1.1:7004");
}

/// node1 and node2 joined by an underlay veth `ul` (10.9.0.1, 10.9.0.2);
/// pods a1 on node1 and b2 on node2 (as named namespaces).
fn two_nodes() -> Sandbox {
    let sb = Sandbox::new();
    sb.netns_add(&["node1", "node2", "a1", "b2", "a3"]);
    sb.sh(
        "ip link add ul netns node1 type veth peer name ul netns node2 \
         && ip -n node1 addr add 10.9.0.1/24 dev ul && ip -n node2 addr add 10.9.0.2/24 dev ul \
         && ip -n node1 link set ul up && ip -n node2 link set ul up",
    );
    write_topology(
        &sb,
        &[
            (7, "a1", "x1", "10.7.0.1/24", "b2", "x1", "10.7.0.2/24"),
            (8, "a3", "y1", "10.8.0.1/24", "a1", "y1", "10.8.0.2/24"),
        ],
    );
    sb.sh(&format!("echo '{{\"a1\": \"10.9.0.1\", \"a3\": \"10.9.0.1\", \"b2\": \"10.9.0.2\"}}' > {TOPO}/.nodes.json"));
    sb
}

fn node_conf(ip: &str, node: &str) -> Value {
    conf(
        "1.0.0",
        json!({"nodeIP": ip, "underlay": "ul", "stateDir": format!("/run/koko/cni-{node}")}),
    )
}

#[test]
fn cni_cross_node_links_are_vxlan_ends_that_carry_tcp() {
    let sb = two_nodes();
    let (c1, c2) = (
        node_conf("10.9.0.1", "node1"),
        node_conf("10.9.0.2", "node2"),
    );
    cni(&sb, Some("node1"), "ADD", "a1", &c1).ok();
    cni(&sb, Some("node1"), "ADD", "a3", &c1).ok();
    cni(&sb, Some("node2"), "ADD", "b2", &c2).ok();
    let x = sb.link(Some("a1"), "x1").expect("x1 in a1");
    assert_eq!(x["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(x["linkinfo"]["info_data"]["id"], 5007);
    assert_eq!(x["linkinfo"]["info_data"]["remote"], "10.9.0.2");
    let y = sb.link(Some("b2"), "x1").expect("x1 in b2");
    assert_eq!(y["linkinfo"]["info_data"]["remote"], "10.9.0.1");
    assert_eq!(
        sb.link(Some("a1"), "y1").expect("y1")["linkinfo"]["info_kind"],
        "veth"
    );
    sb.assert_tcp("b2", "a1", "10.7.0.2:7005");
    sb.assert_tcp("a1", "a3", "10.8.0.2:7006");
    cni(&sb, Some("node1"), "CHECK", "a1", &c1.clone().tap_prev()).ok();
    for (node, pod, c) in [
        ("node1", "a1", &c1),
        ("node1", "a3", &c1),
        ("node2", "b2", &c2),
    ] {
        cni(&sb, Some(node), "DEL", pod, c).ok();
        cni(&sb, Some(node), "DEL", pod, c).ok();
        assert!(lab_links(&sb, pod).is_empty(), "{pod}");
    }
    assert_eq!(lab_links(&sb, "node1"), vec!["ul"]);
}

/// A config with an (empty) prevResult, as CHECK needs.
trait TapPrev {
    fn tap_prev(self) -> Value;
}

impl TapPrev for Value {
    fn tap_prev(mut self) -> Value {
        self["prevResult"] = json!({"cniVersion": "1.0.0", "interfaces": [], "ips": []});
        self
    }
}

/// The test containerd's CNI directory (tests/setup/containerd.sh chains
/// koko-cni after its primary plugin there).
const CRI_CNI: &str = "/run/koko-test-containerd/cni";

/// Link the koko binary under test where the test containerd's koko-cni
/// wrapper looks for it (atomically: other tests' pods may be starting).
fn install_for_containerd() {
    let tmp = format!("{CRI_CNI}/koko.{}", std::process::id());
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(koko_bin(), &tmp).unwrap();
    std::fs::rename(&tmp, format!("{CRI_CNI}/koko")).unwrap();
}

/// Topology files for pods of the test containerd, removed on drop.
struct CriTopology(Vec<String>);

impl Drop for CriTopology {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[test]
fn cni_containerd_calls_add_on_run_pod_sandbox_and_del_on_stop() {
    use crate::support::{assert_tcp, cri_up, Place, Pod};
    if !cri_up() {
        return;
    }
    let conflist = std::fs::read_to_string(format!("{CRI_CNI}/conf/10-koko-test-none.conflist"))
        .unwrap_or_default();
    if !conflist.contains("koko-cni") {
        crate::support::skip(
            "the test containerd's conflist has no koko-cni: run tests/setup/containerd.sh",
        );
        return;
    }
    install_for_containerd();
    let sb = Sandbox::new(); // for `ip -j` queries only
    let (a, b) = (
        format!("kokocni-a-{}", std::process::id()),
        format!("kokocni-b-{}", std::process::id()),
    );
    let mut files = Vec::new();
    for (me, peer, ip, peer_ip) in [
        (&a, &b, "10.61.0.1/24", "10.61.0.2/24"),
        (&b, &a, "10.61.0.2/24", "10.61.0.1/24"),
    ] {
        let path = format!("{CRI_CNI}/topology/{me}.json");
        let text = json!({"links": [{"uid": 61, "peer_pod": peer, "local_intf": "lab1",
            "local_ip": ip, "peer_intf": "lab1", "peer_ip": peer_ip}]});
        std::fs::write(&path, text.to_string()).unwrap();
        files.push(path);
    }
    let _topology = CriTopology(files);

    let pa = Pod::named(&a);
    let pb = Pod::named(&b); // the second pod of the pair wires it
    for p in [&pa, &pb] {
        let l = sb.ip_json(Place::from(p), "-d link show lab1");
        assert_eq!(l[0]["linkinfo"]["info_kind"], "veth", "{l}");
        assert_eq!(l[0]["ifalias"], format!("koko-cni:{}", p.id));
    }
    assert_eq!(sb.addrs(Place::from(&pa), "lab1"), vec!["10.61.0.1/24"]);
    assert_tcp(pa.ns_path(), pb.ns_path(), "10.61.0.1:7010");
    // StopPodSandbox runs DEL: b's end goes (and a's with it), the record too.
    pb.stop();
    assert!(
        sb.link(Place::from(&pa), "lab1").is_none(),
        "StopPodSandbox left lab1 in {a}"
    );
    let state = std::fs::read_dir(format!("{CRI_CNI}/state/pods")).unwrap();
    let names: Vec<String> = state
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Records are named NAMESPACE+POD.json (the pod's Kubernetes namespace).
    let has = |pod: &str| names.iter().any(|n| n.ends_with(&format!("+{pod}.json")));
    assert!(!has(&b), "{names:?}");
    assert!(has(&a), "{names:?}");
    drop(pa);
    let state = std::fs::read_dir(format!("{CRI_CNI}/state/pods")).unwrap();
    assert!(!state.flatten().any(
        |e| e.file_name().to_string_lossy().starts_with("kokocni-a-")
            && e.file_name()
                .to_string_lossy()
                .contains(&std::process::id().to_string())
    ));
}

/// Podman containers started inside a sandbox, removed on drop.
struct PodmanCtrs<'a> {
    sb: &'a Sandbox,
    conf: String,
    names: Vec<String>,
    /// host-local keeps its leases here, outside the sandbox.
    ipam_dir: String,
}

impl PodmanCtrs<'_> {
    fn podman(&self, args: &[&str]) -> Run {
        let mut cmd = self.sb.command("podman");
        cmd.env("CONTAINERS_CONF", &self.conf).args(args);
        Run::of(&mut cmd, format!("podman {}", args.join(" ")))
    }

    fn pid(&self, name: &str) -> u32 {
        let r = self.podman(&["inspect", "-f", "{{.State.Pid}}", name]);
        r.ok().stdout.trim().parse().unwrap()
    }
}

impl Drop for PodmanCtrs<'_> {
    fn drop(&mut self) {
        for n in self.names.clone() {
            let _ = self.podman(&["rm", "-f", "-t", "0", &n]);
        }
        let _ = std::fs::remove_dir_all(&self.ipam_dir);
    }
}

#[test]
fn cni_podman_wires_two_containers_rewires_on_restart_and_rm_removes_all() {
    use crate::support::{assert_tcp, Place};
    const IMAGE: &str = "koko-test/busybox:1";
    let have_image = Command::new("podman")
        .args(["image", "inspect", IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_image || !std::path::Path::new("/usr/lib/cni/ptp").exists() {
        crate::support::skip("podman with image koko-test/busybox:1 and Debian's CNI plugins (run tests/setup/docker.sh)");
        return;
    }
    let sb = Sandbox::new();
    let id = std::process::id();
    let (a, b) = (format!("kokocni-pa-{id}"), format!("kokocni-pb-{id}"));
    write_topology(
        &sb,
        &[(3, &a, "lab1", "10.62.0.1/24", &b, "lab1", "10.62.0.2/24")],
    );
    // A private containers.conf: the CNI backend, a plugin directory with
    // Debian's ptp/host-local/loopback and koko-cni, and one conflist that
    // chains koko-cni after ptp. All of it in the sandbox's /run/koko.
    let net = format!("kokolab-{id}");
    sb.sh(&format!(
        "mkdir -p /run/koko/cnibin /run/koko/cninet \
         && for p in ptp host-local loopback; do ln -s /usr/lib/cni/$p /run/koko/cnibin/$p; done \
         && ln -s {koko} /run/koko/cnibin/koko-cni \
         && printf '[network]\\nnetwork_backend = \"cni\"\\ncni_plugin_dirs = [\"/run/koko/cnibin\"]\\nnetwork_config_dir = \"/run/koko/cninet\"\\n' > /run/koko/containers.conf",
        koko = koko_bin().display()
    ));
    let conflist = json!({"cniVersion": "1.0.0", "name": net, "plugins": [
        {"type": "ptp", "ipMasq": false, "ipam": {"type": "host-local", "subnet": "10.89.77.0/24"}},
        {"type": "koko-cni", "topology": TOPO}]});
    sb.sh(&format!(
        "cat > /run/koko/cninet/{net}.conflist <<'EOF'\n{conflist}\nEOF"
    ));
    let ctrs = PodmanCtrs {
        sb: &sb,
        conf: "/run/koko/containers.conf".into(),
        names: vec![a.clone(), b.clone()],
        ipam_dir: format!("/var/lib/cni/networks/{net}"),
    };
    for n in [&a, &b] {
        ctrs.podman(&[
            "run",
            "-d",
            "--name",
            n,
            "--network",
            &net,
            // These machines withhold CAP_SYS_RESOURCE (see docker.rs).
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            IMAGE,
            "sleep",
            "1000",
        ])
        .ok();
    }
    let check = |ctrs: &PodmanCtrs, port: u16| {
        let (pa, pb) = (ctrs.pid(&a), ctrs.pid(&b));
        for pid in [pa, pb] {
            let l = sb.ip_json(Place::Pid(pid), "-d link show lab1");
            assert_eq!(l[0]["linkinfo"]["info_kind"], "veth", "{l}");
            assert!(
                l[0]["ifalias"].as_str().unwrap().starts_with("koko-cni:"),
                "{l}"
            );
        }
        assert_eq!(sb.addrs(Place::Pid(pa), "lab1"), vec!["10.62.0.1/24"]);
        assert_eq!(sb.addrs(Place::Pid(pb), "lab1"), vec!["10.62.0.2/24"]);
        assert_tcp(
            format!("/proc/{pa}/ns/net"),
            format!("/proc/{pb}/ns/net"),
            &format!("10.62.0.1:{port}"),
        );
    };
    check(&ctrs, 7020);
    // Restart: podman runs DEL, then ADD in a new namespace.
    ctrs.podman(&["restart", "-t", "0", &b]).ok();
    check(&ctrs, 7021);
    // rm: DEL for both; nothing is left, not even the records.
    let pa = ctrs.pid(&a);
    ctrs.podman(&["rm", "-f", "-t", "0", &b]).ok();
    assert!(
        sb.link(Place::Pid(pa), "lab1").is_none(),
        "rm of {b} left lab1 in {a}"
    );
    ctrs.podman(&["rm", "-f", "-t", "0", &a]).ok();
    assert_eq!(sb.sh("ls /run/koko/cni/pods").trim(), "");
}

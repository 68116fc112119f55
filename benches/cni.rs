//! CNI benchmark: how fast koko-cni wires a lab pod, and a node's worth of
//! pods, compared with wiring the same links by one koko command each (the
//! reference, measured in the same run).
//!
//! 1. hub: a pod with 64 links, whose 64 peers are already there: the
//!    time of its one ADD (64 veth pairs with addresses on both ends).
//! 2. node: 25 pods with 10 links each, 125 pairs, 250 interfaces: the time
//!    of all 25 ADDs in a row (each a process, as a runtime runs them),
//!    against 125 one-shot `koko -n ... -n ...` commands; then DEL of all.
//!
//! Runs inside a private network + mount namespace (see sandbox/).
//!
//!     cargo bench --bench cni [-- ROUNDS]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

mod sandbox;
use sandbox::sh;

const TOPO: &str = "/run/koko/topo";

fn main() {
    let rounds = sandbox::rounds_arg(3);
    sandbox::enter(&[rounds.to_string()]);
    let koko = env!("CARGO_BIN_EXE_koko");
    sh(&format!("mkdir -p {TOPO}"));

    // --- 1. a pod with 64 links
    let mut links = Vec::new();
    for i in 0..64u32 {
        links.push((
            i + 1,
            "hub".to_string(),
            format!("l{i}"),
            format!("leaf{i}"),
            "uplink".to_string(),
        ));
    }
    let pods: Vec<String> = std::iter::once("hub".to_string())
        .chain((0..64).map(|i| format!("leaf{i}")))
        .collect();
    write_topology(&links);
    netns_add_all(&pods);
    for p in &pods[1..] {
        cni(koko, "ADD", p);
    }
    let mut hub = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        cni(koko, "ADD", "hub");
        hub.push(t.elapsed().as_secs_f64());
        assert_eq!(count_links("hub"), 64, "the hub's 64 links");
        cni(koko, "DEL", "hub");
        assert_eq!(count_links("hub"), 0);
    }
    for p in &pods[1..] {
        cni(koko, "DEL", p);
    }
    sh(&pods
        .iter()
        .map(|p| format!("ip netns del {p}"))
        .collect::<Vec<_>>()
        .join(" && "));
    sh(&format!("rm -rf {TOPO}/* /run/koko/cni"));

    // --- 2. a node: 25 pods x 10 links
    let n = 25usize;
    let pods: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let mut links = Vec::new();
    let mut uid = 0u32;
    for i in 0..n {
        for d in 1..=5 {
            uid += 1;
            let j = (i + d) % n;
            links.push((
                uid,
                pods[i].clone(),
                format!("to{j}"),
                pods[j].clone(),
                format!("to{i}"),
            ));
        }
    }
    write_topology(&links);
    netns_add_all(&pods);
    let (mut cni_add, mut cni_del, mut one_add, mut one_del) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        for p in &pods {
            cni(koko, "ADD", p);
        }
        cni_add.push(t.elapsed().as_secs_f64());
        let total: usize = pods.iter().map(|p| count_links(p)).sum();
        assert_eq!(total, 250, "250 interfaces on the node");
        let t = Instant::now();
        for p in &pods {
            cni(koko, "DEL", p);
        }
        cni_del.push(t.elapsed().as_secs_f64());
        assert_eq!(pods.iter().map(|p| count_links(p)).sum::<usize>(), 0);

        // The reference: one koko command per link.
        let t = Instant::now();
        for (uid, a, ia, b, ib) in &links {
            let (x, y) = addrs(*uid);
            run(&[
                koko,
                "-n",
                &format!("{a},{ia},{x}"),
                "-n",
                &format!("{b},{ib},{y}"),
            ]);
        }
        one_add.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for (_, a, ia, _, _) in &links {
            run(&[koko, "-N", &format!("{a},{ia}")]);
        }
        one_del.push(t.elapsed().as_secs_f64());
    }
    sh(&pods
        .iter()
        .map(|p| format!("ip netns del {p}"))
        .collect::<Vec<_>>()
        .join(" && "));

    let m = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (h, ca, cd, oa, od) = (
        m(&mut hub),
        m(&mut cni_add),
        m(&mut cni_del),
        m(&mut one_add),
        m(&mut one_del),
    );
    println!("koko-cni benchmark, median of {rounds} rounds");
    println!(
        "  pod with 64 links, one ADD:              {:8.1} ms",
        h * 1e3
    );
    println!(
        "  node, 25 pods / 250 interfaces, 25 ADDs: {:8.1} ms",
        ca * 1e3
    );
    println!(
        "    same 125 links, one koko command each: {:8.1} ms  (ratio {:.1}x)",
        oa * 1e3,
        oa / ca
    );
    println!(
        "  node, 25 DELs:                           {:8.1} ms",
        cd * 1e3
    );
    println!(
        "    same 125 links, one koko -N each:      {:8.1} ms  (ratio {:.1}x)",
        od * 1e3,
        od / cd
    );
}

/// The two addresses of link `uid` (a /30 of its own).
fn addrs(uid: u32) -> (String, String) {
    let base = uid * 4;
    let net = |o: u32| {
        format!(
            "10.{}.{}.{}/30",
            100 + (base + o) / 65536,
            ((base + o) / 256) % 256,
            (base + o) % 256
        )
    };
    (net(1), net(2))
}

/// (uid, pod a, intf a, pod b, intf b) -> one POD.json per pod.
fn write_topology(links: &[(u32, String, String, String, String)]) {
    let mut pods: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (uid, a, ia, b, ib) in links {
        let (x, y) = addrs(*uid);
        let rec = |peer: &str, li: &str, lip: &str, pi: &str, pip: &str| {
            format!(
                r#"{{"uid":{uid},"peer_pod":"{peer}","local_intf":"{li}","local_ip":"{lip}","peer_intf":"{pi}","peer_ip":"{pip}"}}"#
            )
        };
        pods.entry(a.clone())
            .or_default()
            .push(rec(b, ia, &x, ib, &y));
        pods.entry(b.clone())
            .or_default()
            .push(rec(a, ib, &y, ia, &x));
    }
    for (pod, recs) in pods {
        std::fs::write(
            format!("{TOPO}/{pod}.json"),
            format!(r#"{{"links":[{}]}}"#, recs.join(",")),
        )
        .unwrap();
    }
}

fn cni(koko: &str, command: &str, pod: &str) {
    let conf =
        format!(r#"{{"cniVersion":"1.0.0","name":"bench","type":"koko-cni","topology":"{TOPO}"}}"#);
    let mut child = Command::new(koko)
        .arg("cni")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("ctr-{pod}"))
        .env("CNI_NETNS", format!("/run/netns/{pod}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAME={pod}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "CNI {command} {pod}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn count_links(pod: &str) -> usize {
    sh(&format!(
        "ip -n {pod} -o link show | grep -vc ': lo:' || true"
    ))
    .trim()
    .parse()
    .unwrap()
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Make a named namespace for every pod (one shell, set-up only).
fn netns_add_all(pods: &[String]) {
    sh(&pods
        .iter()
        .map(|p| format!("ip netns add {p}"))
        .collect::<Vec<_>>()
        .join(" && "));
}

//! `koko graph`: the live wiring read from the kernel, drawn as JSON, DOT
//! (rendered by Graphviz to prove it valid), Mermaid and SVG.
//!
//! Each test builds namespaces and links in its own sandbox, then checks
//! the graph against the kernel: every veth end's peer is worked out from
//! `ip -j -d link` (link_index, link_netnsid) and `ip -j netns list-id`
//! (which names an nsid), addresses from `ip -j addr`, impairments from
//! `tc -j`. The sandbox shares the machine's pid namespace, so koko also
//! sees other tests' process namespaces and containers: checks look at the
//! nodes and edges of the test's own namespaces, and at all of them only
//! where a whole set is asserted for a TARGET-limited graph.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::support::script::{run, tmp_dir, write_script};
use crate::support::{
    cri_sandbox, engine_sandbox, koko_bin, wait_until, Ctr, Place, Pod, Run, Sandbox, CRI_ENDPOINT,
    TEARDOWN,
};

/// `koko graph --format json ARGS...`, parsed (and its schema checked).
fn graph_json(sb: &Sandbox, args: &[&str]) -> Value {
    let mut all = vec!["graph", "--format", "json"];
    all.extend_from_slice(args);
    let run = sb.koko(&all);
    run.ok();
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("koko graph: bad JSON {e}: {}", run.stdout));
    assert_eq!(v["schema"], "koko-graph/1", "{v}");
    v
}

fn nodes(g: &Value) -> &Vec<Value> {
    g["nodes"].as_array().expect("nodes")
}

fn edges(g: &Value) -> &Vec<Value> {
    g["edges"].as_array().expect("edges")
}

fn node<'a>(g: &'a Value, id: &str) -> &'a Value {
    nodes(g)
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id} in {g:#}"))
}

/// An edge's ends as "NODE/LINK" (unordered).
fn ends(e: &Value) -> BTreeSet<String> {
    ["a", "b"]
        .iter()
        .map(|s| format!("{}/{}", as_str(&e[s]["node"]), as_str(&e[s]["link"])))
        .collect()
}

fn as_str(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn pair(a: &str, b: &str) -> BTreeSet<String> {
    [a.to_string(), b.to_string()].into_iter().collect()
}

/// The edges of `g` with at least one end on one of `ids`.
fn edges_touching(g: &Value, ids: &[&str]) -> BTreeSet<BTreeSet<String>> {
    edges(g)
        .iter()
        .filter(|e| {
            ids.iter()
                .any(|id| e["a"]["node"] == *id || e["b"]["node"] == *id)
        })
        .map(ends)
        .collect()
}

/// One end of an edge: the end on `node`/`link`.
fn end<'a>(g: &'a Value, node: &str, link: &str) -> &'a Value {
    edges(g)
        .iter()
        .flat_map(|e| [&e["a"], &e["b"]])
        .find(|x| x["node"] == node && x["link"] == link)
        .unwrap_or_else(|| panic!("no edge end {node}/{link} in {g:#}"))
}

/// The kernel's answer: the peer of veth `link` in place `from`, as
/// "NODE/LINK", among `places` (node id → place). The nsid is named by
/// `ip netns list-id` in `from`; an nsid without a name must be the one
/// unnamed place of `places`.
fn kernel_peer(sb: &Sandbox, places: &[(&str, Place)], from: &Place, link: &str) -> String {
    let l = sb
        .link(from.clone(), link)
        .unwrap_or_else(|| panic!("no {link} in {from}"));
    assert_eq!(l["linkinfo"]["info_kind"], "veth", "{l}");
    let index = l["link_index"].as_u64().expect("a veth has a peer index");
    let (id, place) = match l["link_netnsid"].as_i64() {
        None => places.iter().find(|(_, p)| p == from).unwrap().clone(),
        Some(k) => {
            let ids = sb.ip_json(from.clone(), "netns list-id");
            let entry = ids
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["nsid"] == k)
                .unwrap_or_else(|| panic!("nsid {k} not listed in {from}: {ids}"));
            match entry["name"].as_str() {
                Some(name) => places
                    .iter()
                    .find(|(_, p)| *p == Place::Netns(name.into()))
                    .unwrap_or_else(|| panic!("nsid {k} of {from} is netns {name}, not ours"))
                    .clone(),
                None => {
                    let unnamed: Vec<_> = places
                        .iter()
                        .filter(|(_, p)| !matches!(p, Place::Netns(_)))
                        .collect();
                    assert_eq!(unnamed.len(), 1, "one unnamed place expected");
                    unnamed[0].clone()
                }
            }
        }
    };
    let peer = sb
        .links(place.clone())
        .into_iter()
        .find(|p| p["ifindex"] == index)
        .unwrap_or_else(|| panic!("no ifindex {index} in {place}"));
    format!("{id}/{}", as_str(&peer["ifname"]))
}

/// The seed's service chain (client -> firewall -> router -> webserver),
/// built with the command line as tests/integration/service_chain.rs does:
/// client, firewall and webserver are `ip netns` namespaces, the router a
/// process's namespace.
fn service_chain() -> (Sandbox, u32) {
    let mut sb = Sandbox::new();
    sb.koko_line("netns add client firewall webserver").ok();
    let r = sb.spawn_pid_namespace();
    sb.koko_line("-n client,link1,10.0.1.1/24 -n firewall,link2,10.0.1.2/24")
        .ok();
    sb.koko(&[
        "-n",
        "firewall,link3,10.0.2.1/24",
        "-p",
        &format!("{r},link4,10.0.2.2/24"),
    ])
    .ok();
    sb.koko(&[
        "-p",
        &format!("{r},link5,10.0.3.1/24"),
        "-a",
        "/run/netns/webserver,link6,10.0.3.2/24",
    ])
    .ok();
    (sb, r)
}

#[test]
fn graph_of_the_service_chain_matches_the_kernel() {
    let (sb, r) = service_chain();
    let router = format!("pid:{r}");
    let places: Vec<(&str, Place)> = vec![
        ("netns:client", Place::Netns("client".into())),
        ("netns:firewall", Place::Netns("firewall".into())),
        (router.as_str(), Place::Pid(r)),
        ("netns:webserver", Place::Netns("webserver".into())),
    ];
    let ids: Vec<&str> = places.iter().map(|(id, _)| *id).collect();
    // The kernel's linkwatch sets a new veth's operstate a moment after
    // creation: let it settle, so the graph and `ip` read the same state.
    wait_until("every chain link is operationally up", TEARDOWN, || {
        places.iter().all(|(_, p)| {
            sb.links(p.clone())
                .iter()
                .filter(|l| l["ifname"] != "lo")
                .all(|l| l["operstate"] == "UP")
        })
    });
    let g = graph_json(&sb, &[]);

    // What the test built...
    let built: BTreeSet<BTreeSet<String>> = [
        pair("netns:client/link1", "netns:firewall/link2"),
        pair("netns:firewall/link3", &format!("{router}/link4")),
        pair(&format!("{router}/link5"), "netns:webserver/link6"),
    ]
    .into_iter()
    .collect();
    // ...is what the kernel says (peers by ifindex and nsid)...
    let mut kernel = BTreeSet::new();
    for (id, place) in &places {
        for link in sb.link_names(place.clone()) {
            let peer = kernel_peer(&sb, &places, place, &link);
            kernel.insert(pair(&format!("{id}/{link}"), &peer));
        }
    }
    assert_eq!(kernel, built, "the kernel's wiring");
    // ...and is exactly what the graph draws between these namespaces.
    assert_eq!(edges_touching(&g, &ids), built, "{g:#}");
    for e in edges(&g) {
        if ids.contains(&as_str(&e["a"]["node"])) {
            assert_eq!(e["kind"], "veth", "{e}");
        }
    }

    // Each end carries the kernel's addresses, state and MTU.
    for (id, place) in &places {
        for link in sb.link_names(place.clone()) {
            let x = end(&g, id, &link);
            let k = sb.link(place.clone(), &link).unwrap();
            assert_eq!(
                x["addresses"],
                serde_json::json!(sb.addrs(place.clone(), &link)),
                "{id}/{link}"
            );
            assert_eq!(x["mtu"], k["mtu"], "{id}/{link}");
            assert_eq!(
                as_str(&x["state"]),
                as_str(&k["operstate"]).to_lowercase(),
                "{id}/{link}"
            );
        }
    }
    // One node per namespace, each of the right kind.
    for (id, kind) in [
        ("netns:client", "netns"),
        ("netns:firewall", "netns"),
        ("netns:webserver", "netns"),
        (router.as_str(), "pid"),
        ("host", "host"),
    ] {
        assert_eq!(node(&g, id)["kind"], kind, "{id}");
    }
    let inodes: Vec<&Value> = nodes(&g).iter().filter_map(|n| n.get("inode")).collect();
    let distinct: BTreeSet<String> = inodes.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        distinct.len(),
        inodes.len(),
        "a namespace drawn twice: {g:#}"
    );

    // DOT: Graphviz renders it, and it has every edge.
    let dir = tmp_dir("graph-chain");
    let file = dir.join("chain.dot");
    sb.koko(&["graph", "-o", file.to_str().unwrap()]).ok();
    let dot = std::fs::read_to_string(&file).unwrap();
    let svg = std::process::Command::new("dot")
        .args(["-Tsvg"])
        .arg(&file)
        .output()
        .expect("Graphviz's dot (tests/setup/tools.sh installs it)");
    assert!(
        svg.status.success(),
        "dot rejects koko's DOT: {}\n{dot}",
        String::from_utf8_lossy(&svg.stderr)
    );
    assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
    for e in &built {
        let v: Vec<&str> = e.iter().map(|s| s.rsplit_once('/').unwrap().0).collect();
        let (a, b) = (v[0], v[1]);
        assert!(
            dot.contains(&format!("\"{a}\" -- \"{b}\""))
                || dot.contains(&format!("\"{b}\" -- \"{a}\"")),
            "no DOT edge {a} -- {b}:\n{dot}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "only the output file in its directory (no temporary left)"
    );

    // Mermaid: every edge, between the right nodes, naming both links.
    let mermaid = sb
        .koko(&["graph", "--format", "mermaid"])
        .ok()
        .stdout
        .clone();
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    let label = |id: &str| -> String {
        let title = node(&g, id)["name"].as_str().unwrap().to_string();
        let kind = node(&g, id)["kind"].as_str().unwrap().to_string();
        format!("{kind} {title}")
    };
    let mermaid_id = |id: &str| -> String {
        let want = label(id);
        mermaid
            .lines()
            .find_map(|l| {
                let (mid, rest) = l.trim().split_once("[\"")?;
                (rest.split("<br/>").next()?.trim_end_matches("\"]") == want)
                    .then(|| mid.to_string())
            })
            .unwrap_or_else(|| panic!("no mermaid node {want}:\n{mermaid}"))
    };
    for (a, la, b, lb) in [
        ("netns:client", "link1", "netns:firewall", "link2"),
        ("netns:firewall", "link3", router.as_str(), "link4"),
        (router.as_str(), "link5", "netns:webserver", "link6"),
    ] {
        let (ma, mb) = (mermaid_id(a), mermaid_id(b));
        let found = mermaid.lines().any(|l| {
            let l = l.trim();
            (l.starts_with(&format!("{ma} ---|")) && l.ends_with(&format!("| {mb}"))
                || l.starts_with(&format!("{mb} ---|")) && l.ends_with(&format!("| {ma}")))
                && l.contains(la)
                && l.contains(lb)
        });
        assert!(found, "no mermaid edge {a}/{la} -- {b}/{lb}:\n{mermaid}");
    }
}

#[test]
fn graph_shows_process_and_unnamed_namespaces_once_each() {
    let mut sb = Sandbox::new();
    sb.koko_line("netns add a").ok();
    let pid = sb.spawn_pid_namespace();
    // A namespace with no name and no process: a bind mount in a temporary
    // directory (inside the sandbox's mount namespace).
    let dir = tmp_dir("graph-unnamed");
    let file = dir.join("hidden");
    sb.sh(&format!(
        "touch {f} && unshare --net={f} true",
        f = file.display()
    ));
    sb.koko(&[
        "-n",
        "a,l1,10.5.0.1/24",
        "-p",
        &format!("{pid},l2,10.5.0.2/24"),
    ])
    .ok();
    sb.koko(&[
        "-n",
        "a,l3",
        "-a",
        &format!("{},l4,10.6.0.2/24", file.display()),
    ])
    .ok();
    // Namespace a under a second name: still one node.
    sb.sh("touch /run/netns/a-too && mount --bind /run/netns/a /run/netns/a-too");

    let g = graph_json(&sb, &[]);
    let pid_id = format!("pid:{pid}");
    assert_eq!(node(&g, &pid_id)["kind"], "pid");
    let a = node(&g, "netns:a");
    assert_eq!(a["aliases"], serde_json::json!(["a-too"]), "{a}");
    assert!(
        nodes(&g).iter().all(|n| n["id"] != "netns:a-too"),
        "netns a drawn twice"
    );
    let hidden: Vec<&Value> = nodes(&g)
        .iter()
        .filter(|n| {
            n["kind"] == "nsid"
                && n["links"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l["name"] == "l4")
        })
        .collect();
    assert_eq!(hidden.len(), 1, "one node for the unnamed namespace: {g:#}");
    let hidden_id = as_str(&hidden[0]["id"]).to_string();
    assert!(
        as_str(&hidden[0]["name"]).starts_with("netns nsid "),
        "{}",
        hidden[0]
    );
    // Its peer as the kernel says: l3's nsid in a names no netns, and the
    // link behind it is l4.
    let l3 = sb.link(Some("a"), "l3").unwrap();
    let k = l3["link_netnsid"].as_i64().unwrap();
    let ids = sb.ip_json(Some("a"), "netns list-id");
    assert!(
        ids.as_array()
            .unwrap()
            .iter()
            .any(|e| e["nsid"] == k && e.get("name").is_none()),
        "{ids}"
    );
    assert_eq!(l3["link_index"], end(&g, &hidden_id, "l4")["ifindex"]);
    assert_eq!(
        end(&g, &hidden_id, "l4")["addresses"],
        serde_json::json!(["10.6.0.2/24"])
    );

    let mine = edges_touching(&g, &["netns:a", &pid_id, &hidden_id]);
    let expected: BTreeSet<_> = [
        pair("netns:a/l1", &format!("{pid_id}/l2")),
        pair("netns:a/l3", &format!("{hidden_id}/l4")),
    ]
    .into_iter()
    .collect();
    assert_eq!(mine, expected, "{g:#}");

    // A TARGET: the process's namespace and its one neighbour, nothing else.
    let t = graph_json(&sb, &["pid", &pid.to_string()]);
    let ids: BTreeSet<&str> = nodes(&t).iter().map(|n| as_str(&n["id"])).collect();
    assert_eq!(
        ids,
        [pid_id.as_str(), "netns:a"].into_iter().collect(),
        "{t:#}"
    );
    assert_eq!(
        edges(&t).iter().map(ends).collect::<BTreeSet<_>>(),
        [pair("netns:a/l1", &format!("{pid_id}/l2"))]
            .into_iter()
            .collect()
    );
    sb.sh(&format!(
        "umount /run/netns/a-too; umount {}",
        file.display()
    ));
}

#[test]
fn graph_shows_docker_containers_wired_by_koko() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let c1 = Ctr::docker("graph1");
    let c2 = Ctr::docker("graph2");
    sb.koko_line(&format!(
        "-d {},link1,10.7.0.1/24 -d {},link2,10.7.0.2/24",
        c1.name, c2.name
    ))
    .ok();
    // The kernel: the two ends are one veth pair.
    crate::support::assert_pair(
        &sb.link(&c1, "link1").unwrap(),
        &sb.link(&c2, "link2").unwrap(),
    );
    let (id1, id2) = (format!("docker:{}", c1.name), format!("docker:{}", c2.name));
    let g = graph_json(&sb, &[]);
    for id in [&id1, &id2] {
        assert_eq!(node(&g, id)["kind"], "docker", "{g:#}");
    }
    let docker = g["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "docker")
        .expect("the docker engine was consulted");
    assert_eq!(docker["answered"], true, "{docker}");
    assert_eq!(
        edges_touching(&g, &[&id1, &id2]),
        [pair(&format!("{id1}/link1"), &format!("{id2}/link2"))]
            .into_iter()
            .collect()
    );
    assert_eq!(
        end(&g, &id1, "link1")["addresses"],
        serde_json::json!(sb.addrs(&c1, "link1"))
    );

    // As a TARGET by the koro syntax: the container and its neighbour.
    let t = graph_json(&sb, &["docker", &c1.name]);
    let ids: BTreeSet<&str> = nodes(&t).iter().map(|n| as_str(&n["id"])).collect();
    assert_eq!(
        ids,
        [id1.as_str(), id2.as_str()].into_iter().collect(),
        "{t:#}"
    );
}

/// The kernel's answer for a macvlan or vxlan: its parent's name, in the
/// namespace its link_netnsid names (here always the sandbox's own, the
/// one namespace without a name).
fn kernel_parent(sb: &Sandbox, ns: &str, link: &str) -> String {
    let l = sb.link(Some(ns), link).unwrap();
    let index = match l["linkinfo"]["info_kind"].as_str() {
        // `ip` names a parent it cannot see "ifN".
        Some("vxlan") => as_str(&l["linkinfo"]["info_data"]["link"])
            .trim_start_matches("if")
            .parse::<u64>()
            .unwrap(),
        _ => l["link_index"].as_u64().unwrap(),
    };
    let k = l["link_netnsid"].as_i64().expect("the parent is elsewhere");
    let ids = sb.ip_json(Some(ns), "netns list-id");
    let entry = ids
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["nsid"] == k)
        .unwrap();
    assert!(
        entry.get("name").is_none(),
        "not the sandbox's own: {entry}"
    );
    let parent = sb
        .links(Place::Own)
        .into_iter()
        .find(|p| p["ifindex"] == index)
        .unwrap();
    as_str(&parent["ifname"]).to_string()
}

#[test]
fn graph_draws_macvlan_and_vxlan_to_their_parent() {
    let sb = Sandbox::new();
    // The parent: one end of a veth in the sandbox's own namespace (the
    // kernel here has no dummy links).
    sb.sh("ip link add par0 type veth peer name par1 && ip link set par0 up");
    sb.koko_line("netns add a b").ok();
    sb.koko_line("-n a,mv0,10.8.0.1/24 -M par0,bridge").ok();
    sb.koko_line("-n b,vx0,10.8.1.1/24 -x par0,10.9.9.9,42")
        .ok();
    assert_eq!(kernel_parent(&sb, "a", "mv0"), "par0");
    assert_eq!(kernel_parent(&sb, "b", "vx0"), "par0");

    let g = graph_json(&sb, &[]);
    let drawn: Vec<(String, BTreeSet<String>)> = edges(&g)
        .iter()
        .filter(|e| e["a"]["node"] != "host" || e["b"]["node"] != "host")
        .filter(|e| ["netns:a", "netns:b"].iter().any(|n| e["a"]["node"] == *n))
        .map(|e| (as_str(&e["kind"]).to_string(), ends(e)))
        .collect();
    assert_eq!(
        drawn,
        vec![
            ("macvlan".to_string(), pair("netns:a/mv0", "host/par0")),
            ("vxlan".to_string(), pair("netns:b/vx0", "host/par0")),
        ],
        "{g:#}"
    );
    // The child is the edge's first end, the parent the second.
    let vx = edges(&g).iter().find(|e| e["kind"] == "vxlan").unwrap();
    assert_eq!(vx["a"]["link"], "vx0");
    assert_eq!(vx["a"]["addresses"], serde_json::json!(["10.8.1.1/24"]));
    let link = node(&g, "netns:b")["links"][0].clone();
    assert_eq!(
        (link["vni"].clone(), link["remote"].clone()),
        (42.into(), "10.9.9.9".into())
    );
    // And the veth whose both ends are in the sandbox's own namespace.
    assert!(
        edges(&g)
            .iter()
            .any(|e| ends(e) == pair("host/par0", "host/par1")),
        "{g:#}"
    );
}

#[test]
fn graph_shows_a_cri_pod_sandbox_wired_by_koko() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let pod = Pod::new("graph");
    let env = [("CONTAINER_RUNTIME_ENDPOINT", CRI_ENDPOINT)];
    sb.koko_env(
        &env,
        &[
            "-e",
            &format!("{},link1,10.21.0.1/24", &pod.id[..12]),
            "-n",
            "ns2,link2,10.21.0.2/24",
        ],
    )
    .ok();
    crate::support::assert_pair(
        &sb.link(&pod, "link1").unwrap(),
        &sb.link(Some("ns2"), "link2").unwrap(),
    );
    let run = sb.koko_env(&env, &["graph", "--format", "json"]);
    run.ok();
    let g: Value = serde_json::from_str(&run.stdout).unwrap();
    let cri = g["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "cri")
        .expect("the CRI runtime was consulted");
    assert_eq!(cri["answered"], true, "{cri}");
    let id = format!("cri:{}", pod.name);
    assert_eq!(node(&g, &id)["kind"], "cri", "{g:#}");
    assert_eq!(
        edges_touching(&g, &[&id]),
        [pair(&format!("{id}/link1"), "netns:ns2/link2")]
            .into_iter()
            .collect()
    );
    assert_eq!(
        end(&g, &id, "link1")["addresses"],
        serde_json::json!(sb.addrs(&pod, "link1"))
    );
}

#[test]
fn graph_shows_an_impairment_on_its_edge() {
    let sb = Sandbox::new();
    let script = write_script(
        "graph-impair",
        "impair.rhai",
        "let a = netns(\"a\"); let b = netns(\"b\");\n\
         let l = veth(a, \"la\", b, \"lb\", #{a_addrs: [\"10.9.0.1/24\"], b_addrs: [\"10.9.0.2/24\"]});\n\
         l.impair(#{rate: \"1mbit\"});\n",
    );
    run(&sb, &[script.to_str().unwrap()]).ok();
    // The kernel: la's root qdisc shapes at 1 Mbit/s, lb has nothing of koko's.
    let kinds = sb.qdisc_kinds(Some("a"), "la");
    assert!(
        kinds.iter().any(|k| k == "tbf" || k == "htb"),
        "no shaping qdisc on la: {kinds:?}"
    );
    let g = graph_json(&sb, &[]);
    let la = end(&g, "netns:a", "la");
    let text = la["impairment"].as_str().unwrap_or_else(|| panic!("{la}"));
    assert!(text.contains("rate") && text.contains("1mbit"), "{text}");
    assert!(end(&g, "netns:b", "lb").get("impairment").is_none());
    let link = node(&g, "netns:a")["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "la")
        .cloned()
        .unwrap();
    assert!(link["impairment"].is_object(), "{link}");
    // DOT shows it on the edge's end.
    let dot = sb.koko(&["graph"]).ok().stdout.clone();
    assert!(dot.contains("impaired: sends rate 1mbit"), "{dot}");
}

#[test]
fn graph_shows_a_mirror_on_the_link_it_copies() {
    let sb = Sandbox::new();
    sb.koko_line("netns add a b mon").ok();
    sb.koko_line("-n a,la -n b,lb").ok();
    // Copy what la receives and sends out through mir0 (to mon's tap0).
    sb.koko_line("-n a,mir0,mirror:both:la -n mon,tap0").ok();
    // The kernel: a mirred mirror action to mir0 on both of la's hooks.
    for hook in ["ingress", "egress"] {
        let filters = sb.tc_filters(Some("a"), "la", hook);
        let to_mir0 = filters.iter().any(|f| {
            f["options"]["actions"].as_array().is_some_and(|acts| {
                acts.iter().any(|a| {
                    a["kind"] == "mirred" && a["mirred_action"] == "mirror" && a["to_dev"] == "mir0"
                })
            })
        });
        assert!(
            to_mir0,
            "no mirred mirror to mir0 on la {hook}: {filters:?}"
        );
    }
    let g = graph_json(&sb, &[]);
    let want = serde_json::json!([
        {"direction": "ingress", "to": "mir0"},
        {"direction": "egress", "to": "mir0"}
    ]);
    assert_eq!(end(&g, "netns:a", "la")["mirrors"], want, "{g:#}");
    assert!(end(&g, "netns:b", "lb").get("mirrors").is_none());
    assert!(end(&g, "netns:a", "mir0").get("mirrors").is_none());
    let dot = sb.koko(&["graph"]).ok().stdout.clone();
    assert!(dot.contains("mirrors ingress to mir0"), "{dot}");
}

#[test]
fn graph_from_a_script_and_the_repl_is_the_dot() {
    let sb = Sandbox::new();
    let script = write_script(
        "graph-script",
        "graph.rhai",
        "let a = netns(\"a\"); let b = netns(\"b\");\n\
         veth(a, \"sa\", b, \"sb\");\n\
         print(graph());\n\
         let m = graph(#{format: \"mermaid\", targets: [a]});\n\
         print(`MERMAID ${m.len()} ${m.contains(\"sa\")} ${m.starts_with(\"flowchart\")}`);\n\
         let j = graph(#{format: \"json\", targets: [b]});\n\
         print(`JSON ${j.contains(\"\\\"id\\\": \\\"netns:a\\\"\")} ${j.contains(\"\\\"id\\\": \\\"host\\\"\")}`);\n",
    );
    let r = run(&sb, &[script.to_str().unwrap()]);
    r.ok();
    assert!(r.stdout.contains("graph koko {"), "{}", r.stdout);
    assert!(
        r.stdout.contains("\"netns:a\" -- \"netns:b\"")
            || r.stdout.contains("\"netns:b\" -- \"netns:a\""),
        "{}",
        r.stdout
    );
    assert!(r.line("MERMAID ").ends_with("true true"), "{}", r.stdout);
    // targets [b]: b and its neighbour a, not the host.
    assert_eq!(r.line("JSON "), "JSON true false", "{}", r.stdout);
    // The veth the script made is in the kernel, as drawn.
    crate::support::assert_pair(
        &sb.link(Some("a"), "sa").unwrap(),
        &sb.link(Some("b"), "sb").unwrap(),
    );

    let history = tmp_dir("graph-repl").join("history");
    let mut cmd = sb.command(koko_bin());
    cmd.args(["repl", "--history"]).arg(&history);
    let r = Run::with_input(
        &mut cmd,
        "let c = netns(\"c\"); veth(c, \"rc\", netns(\"a\"), \"ra\");\n:graph\n",
        "koko repl",
    );
    r.ok();
    assert!(r.stdout.contains("graph koko {"), "{}", r.stdout);
    assert!(
        r.stdout.contains("\"netns:c\" -- \"netns:a\"")
            || r.stdout.contains("\"netns:a\" -- \"netns:c\""),
        "{}",
        r.stdout
    );
    assert!(sb.link(Some("c"), "rc").is_some());
}

#[test]
fn graph_svg_needs_graphviz_and_bad_requests_are_refused() {
    let sb = Sandbox::new();
    sb.koko_line("netns add a b").ok();
    sb.koko_line("-n a,x1 -n b,x2").ok();

    // Without Graphviz on PATH: exit 1, and the message says what to do.
    let empty = tmp_dir("graph-nopath");
    // (PATH is set by the shell inside the sandbox: nsenter itself must
    // still be found on the real one.)
    let mut cmd = sb.command("sh");
    cmd.arg("-c").arg(format!(
        "PATH={} exec {} graph --format svg",
        empty.display(),
        koko_bin().display()
    ));
    let r = Run::of(&mut cmd, "PATH=EMPTY koko graph --format svg");
    r.fails(1, "Graphviz is not installed");
    r.stderr_has("apt-get install graphviz")
        .stderr_has("--format dot");
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    // With it: an SVG, to a file.
    let dir = tmp_dir("graph-svg");
    let out = dir.join("wiring.svg");
    sb.koko(&["graph", "--format", "svg", "-o", out.to_str().unwrap()])
        .ok();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(
        svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    assert!(svg.contains("x1") && svg.contains("x2"), "{svg}");

    // An unknown format: exit 2, naming it and the valid ones.
    sb.koko(&["graph", "--format", "png"])
        .fails(2, "'png'")
        .stderr_has("dot, mermaid, json, svg");

    // An output path that cannot be written: exit 1, naming it.
    sb.koko(&["graph", "-o", "/nonexistent-dir/x.dot"])
        .fails(1, "/nonexistent-dir/x.dot");
    assert!(!PathBuf::from("/nonexistent-dir").exists());
    // A directory in the way: refused, and no temporary file left beside it.
    let blocked = tmp_dir("graph-blocked");
    std::fs::create_dir(blocked.join("taken")).unwrap();
    sb.koko(&["graph", "-o", blocked.join("taken").to_str().unwrap()])
        .fails(1, "taken");
    let left: Vec<_> = std::fs::read_dir(&blocked)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("taken")]);

    // A target that does not exist names it.
    sb.koko(&["graph", "ipnetns", "nope"]).fails(1, "nope");
    sb.koko(&["graph", "--all", "ipnetns", "a"])
        .fails(2, "--all");
    sb.koko(&["graph", "-h"])
        .ok()
        .stdout_has("koko graph [--format dot|mermaid|json|svg] [-o FILE] [--all | TARGET...]");
}

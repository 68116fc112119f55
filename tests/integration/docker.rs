//! Docker and Podman containers as endpoints, against a real engine.
//!
//! tests/setup/docker.sh (run by tests/run and CI) starts dockerd and
//! Podman's API service and imports the tiny `koko-test/busybox:1` image.
//! Every test makes its own containers (`--network none`, unique names) and
//! removes them when it ends, even on panic ([`Ctr`]'s Drop). koko runs
//! inside a [`Sandbox`], so its netns names and its "current" namespace are
//! private to the test; the containers' namespaces are reached by pid.
//!
//! Results are checked through the kernel — a container is a `Place` like
//! any netns (`sb.link(&ctr, "link1")`: the host's `ip -j -d` run inside
//! the container's namespace with nsenter) — and by traffic between the
//! containers (`docker exec ... ping` / `nc`, busybox applets). Without an
//! engine each test prints a `SKIP:` line and passes; under `CI=true` it
//! fails (`engine_sandbox`).

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    assert_not_on_host, assert_pair, assert_tcp, engine_sandbox, koko_bin, nc_roundtrip, wait_for,
    Ctr, Sandbox, PODMAN_SOCK, TEARDOWN,
};

/// `koko -d A,END_A -d B,END_B` (an end is `LINK[,ADDR...]`), then check
/// through the kernel that LINK_A in `a` and LINK_B in `b` are the two ends
/// of one veth pair.
#[track_caller]
fn link_pair(sb: &Sandbox, (a, end_a): (&Ctr, &str), (b, end_b): (&Ctr, &str)) {
    sb.koko_line(&format!("-d {},{end_a} -d {},{end_b}", a.name, b.name))
        .ok();
    let link = |c: &Ctr, end: &str| {
        let name = end.split(',').next().unwrap();
        sb.link(c, name)
            .unwrap_or_else(|| panic!("no link {name} in container {}", c.name))
    };
    assert_pair(&link(a, end_a), &link(b, end_b));
}

/// Wait until link1 (in the client) and link4 (in the router) have gone
/// with the killed firewall, which held their peers.
#[track_caller]
fn links_vanish_with_firewall(sb: &Sandbox, client: &Ctr, router: &Ctr) {
    wait_for(
        "link1 (client) and link4 (router) vanish with the firewall",
        TEARDOWN,
        || {
            let left: Vec<String> = [(client, "link1"), (router, "link4")]
                .into_iter()
                .filter(|(c, l)| sb.link(*c, l).is_some())
                .map(|(c, l)| format!("{l} in {}", c.name))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?} still there"))
            }
        },
    );
}

/// The client fetches the webserver's page (10.0.3.2) across the chain.
#[track_caller]
fn assert_web_page(client: &Ctr) {
    let page = client.sh("timeout 5 wget -q -O- http://10.0.3.2/");
    assert!(page.contains("pickle"), "{page}");
}

// --- the seeds' examples -------------------------------------------------

/// koko README: "connect between docker containers with IPv4 address".
#[test]
fn readme_docker_containers_ipv4() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let (c1, c2) = (Ctr::docker("centos1"), Ctr::docker("centos2"));
    let run = sb.koko_line(&format!(
        "-d {},link1,192.168.1.1/24 -d {},link2,192.168.1.2/24",
        c1.name, c2.name
    ));
    run.ok();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);

    let l1 = sb.link(&c1, "link1").expect("link1 in centos1");
    let l2 = sb.link(&c2, "link2").expect("link2 in centos2");
    assert_pair(&l1, &l2);
    assert_eq!(sb.addrs(&c1, "link1"), ["192.168.1.1/24"]);
    assert_eq!(sb.addrs(&c2, "link2"), ["192.168.1.2/24"]);
    // Nothing in koko's own namespace, nothing else in the containers.
    assert!(sb.link_names(None).is_empty(), "{:?}", sb.link_names(None));
    assert_eq!(sb.link_names(&c1), ["link1"]);

    c1.ping("192.168.1.2");
    c2.ping("192.168.1.1");
    nc_roundtrip(&c2, &c1, "192.168.1.2", 8080);
}

/// koko README: IPv6, then IPv4 + IPv6 on one link.
#[test]
fn readme_docker_containers_ipv6_and_dual_stack() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let (c1, c2) = (Ctr::docker("centos1"), Ctr::docker("centos2"));
    link_pair(
        &sb,
        (&c1, "link1,2001:DB8::1/64"),
        (&c2, "link2,2001:DB8::2/64"),
    );
    assert_eq!(sb.addrs(&c1, "link1"), ["2001:db8::1/64"]);
    assert_eq!(sb.addrs(&c2, "link2"), ["2001:db8::2/64"]);
    c1.ping("2001:db8::2");

    // The dual-stack example, on a second pair (the README runs it on fresh
    // containers; new names keep the first pair's check meaningful).
    sb.koko_line(&format!(
        "-d {},link3,192.168.1.1/24,2001:DB8:1::1/64 -d {},link4,192.168.1.2/24,2001:DB8:1::2/64",
        c1.name, c2.name
    ))
    .ok();
    assert_eq!(
        sb.addrs(&c1, "link3"),
        ["192.168.1.1/24", "2001:db8:1::1/64"]
    );
    assert_eq!(
        sb.addrs(&c2, "link4"),
        ["192.168.1.2/24", "2001:db8:1::2/64"]
    );
    c1.ping("192.168.1.2");
    c1.ping("2001:db8:1::2");
    nc_roundtrip(&c1, &c2, "192.168.1.1", 8081);
}

/// koko README: "connect between docker container and netns namespace";
/// deleting from either side removes both ends.
#[test]
fn readme_docker_container_to_netns_and_delete_from_either_side() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    sb.netns_add(&["testns2"]);
    let c1 = Ctr::docker("centos1");
    sb.koko_line(&format!(
        "-d {},link1,192.168.1.1/24 -n testns2,link2,192.168.1.2/24",
        c1.name
    ))
    .ok();
    let l1 = sb.link(&c1, "link1").expect("link1 in the container");
    let l2 = sb.link(Some("testns2"), "link2").expect("link2 in testns2");
    assert_pair(&l1, &l2);
    assert_eq!(sb.addrs(Some("testns2"), "link2"), ["192.168.1.2/24"]);
    c1.ping("192.168.1.2");
    assert_tcp(c1.ns_path(), sb.netns_path("testns2"), "192.168.1.1:8080");

    // -D (the README's delete) removes the container's end and its peer.
    sb.koko_line(&format!("-D {},link1", c1.name)).ok();
    assert!(sb.link_names(&c1).is_empty());
    assert!(sb.link_names(Some("testns2")).is_empty());

    // And -N from the netns side removes the container's end.
    sb.koko_line(&format!("-d {},link1 -n testns2,link2", c1.name))
        .ok();
    sb.koko_line("-N testns2,link2").ok();
    assert!(sb.link_names(&c1).is_empty());
    assert!(sb.link_names(Some("testns2")).is_empty());
}

/// The koko veth blog post: centos1/centos2, net1/net2 on 10.200.0.0/24,
/// ping across with `docker exec`; and the post's form without addresses.
#[test]
fn koko_veth_blog_post() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let (centos1, centos2) = (Ctr::docker("centos1"), Ctr::docker("centos2"));
    // The post's colon form is refused before the engine is asked, with the
    // comma form to use instead.
    sb.koko_line(&format!(
        "-d {}:net1:10.200.0.1/24 -d {}:net2:10.200.0.2/24",
        centos1.name, centos2.name
    ))
    .fails(2, &format!("-d {},net1,10.200.0.1/24", centos1.name));
    // Before: only lo in the container (`docker exec -it centos1 ip link`).
    assert!(sb.link_names(&centos1).is_empty());
    link_pair(
        &sb,
        (&centos1, "net1,10.200.0.1/24"),
        (&centos2, "net2,10.200.0.2/24"),
    );
    // `docker exec centos1 ip addr` shows net1 with 10.200.0.1/24.
    let shown = centos1.sh("ip addr show net1");
    assert!(shown.contains("inet 10.200.0.1/24"), "{shown}");
    assert_eq!(sb.addrs(&centos2, "net2"), ["10.200.0.2/24"]);
    let out = centos1.sh("ping -c5 -i 0.2 -W2 10.200.0.2");
    assert!(out.contains("5 packets received"), "{out}");

    // `./koko -d centos1:link1 -d centos2:link2  #without IP addr` (comma form).
    link_pair(&sb, (&centos1, "link1"), (&centos2, "link2"));
    assert!(sb.addrs(&centos1, "link1").is_empty());
}

/// The vethcon post: nic1/nic2 then test1/test2 on the same subnet, ping.
#[test]
fn vethcon_blog_post() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let (centos1, centos2) = (Ctr::docker("centos1"), Ctr::docker("centos2"));
    link_pair(
        &sb,
        (&centos1, "nic1,10.10.1.2/24"),
        (&centos2, "nic2,10.10.1.3/24"),
    );
    link_pair(
        &sb,
        (&centos1, "test1,10.10.1.2/24"),
        (&centos2, "test2,10.10.1.3/24"),
    );
    assert_eq!(sb.addrs(&centos1, "test1"), ["10.10.1.2/24"]);
    let out = centos1.sh("ping -c2 -i 0.2 -W2 10.10.1.3");
    assert!(out.contains("2 packets received"), "{out}");
}

/// Service-chaining post, first part: test1 -> iptables -> test2 with koko
/// assigning the addresses, default routes set in the containers.
#[test]
fn service_chaining_post_koko_with_addresses() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    // The post runs these with --privileged; CAP_NET_ADMIN is what the
    // routes need.
    let admin = ["--network", "none", "--cap-add", "NET_ADMIN"];
    let test1 = Ctr::start("docker", "test1", &admin);
    let test2 = Ctr::start("docker", "test2", &admin);
    let iptables = Ctr::start(
        "docker",
        "iptables",
        &["--network", "none", "--sysctl", "net.ipv4.ip_forward=1"],
    );
    sb.koko_line(&format!(
        "-d {},link1,10.0.1.1/24 -d {},link2,10.0.1.2/24",
        test1.name, iptables.name
    ))
    .ok();
    sb.koko_line(&format!(
        "-d {},link3,10.0.2.1/24 -d {},link4,10.0.2.2/24",
        iptables.name, test2.name
    ))
    .ok();
    let mut got = sb.link_names(&iptables);
    got.sort();
    assert_eq!(got, ["link2", "link3"]);
    test1.sh("ip route add default via 10.0.1.2 dev link1");
    test2.sh("ip route add default via 10.0.2.1 dev link4");
    test1.ping("10.0.2.2");
    nc_roundtrip(&test2, &test1, "10.0.2.2", 8082);
}

/// Service-chaining post, the chain: client -> firewall -> router ->
/// webserver, linked by koko without addresses (the post then runs koro;
/// here the containers' own `ip` stands in for it), HTTP across the chain;
/// the firewall dies, its links vanish with it, koko re-links client and
/// router and traffic flows again.
#[test]
fn service_chaining_post_chain_and_failover() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    // The post runs these with --privileged; CAP_NET_ADMIN is what the
    // addresses and routes need.
    let admin = ["--network", "none", "--cap-add", "NET_ADMIN"];
    let fwd = [
        "--network",
        "none",
        "--cap-add",
        "NET_ADMIN",
        "--sysctl",
        "net.ipv4.ip_forward=1",
    ];
    let client = Ctr::start("docker", "client", &admin);
    let firewall = Ctr::start("docker", "firewall", &fwd);
    let router = Ctr::start("docker", "router", &fwd);
    let webserver = Ctr::start("docker", "webserver", &admin);
    webserver.sh("mkdir -p /www && echo pickle > /www/index.html && httpd -p 80 -h /www");

    link_pair(&sb, (&client, "link1"), (&firewall, "link2"));
    link_pair(&sb, (&firewall, "link3"), (&router, "link4"));
    link_pair(&sb, (&router, "link5"), (&webserver, "link6"));

    // The post's koro steps (addresses and routes).
    client.sh("ip addr add 10.0.1.1/24 dev link1");
    firewall.sh("ip addr add 10.0.1.2/24 dev link2 && ip addr add 10.0.2.1/24 dev link3");
    router.sh("ip addr add 10.0.2.2/24 dev link4 && ip addr add 10.0.3.1/24 dev link5");
    webserver.sh("ip addr add 10.0.3.2/24 dev link6");
    client.sh("ip route add default via 10.0.1.2 dev link1");
    webserver.sh("ip route add default via 10.0.3.1 dev link6");
    firewall.sh("ip route add 10.0.3.0/24 via 10.0.2.2 dev link3");
    router.sh("ip route add 10.0.1.0/24 via 10.0.2.1 dev link4");
    assert_web_page(&client);

    // `docker kill firewall`: its namespace goes, and with it both veth
    // pairs (a veth end cannot outlive its peer).
    firewall.kill();
    links_vanish_with_firewall(&sb, &client, &router);
    assert!(client.cannot_ping("10.0.3.2"));

    // Repair: a direct client <-> router link on a new subnet.
    link_pair(&sb, (&client, "link7"), (&router, "link8"));
    client.sh("ip addr add 10.0.4.1/24 dev link7");
    router.sh("ip addr add 10.0.4.2/24 dev link8");
    client.sh("ip route add default via 10.0.4.2 dev link7");
    assert_web_page(&client);
}

// --- mixed endpoints and ids ------------------------------------------------

/// Docker <-> koko's own (current) namespace, traffic both ways; -D removes
/// both ends, including the one in the current namespace.
#[test]
fn docker_to_current_namespace_and_delete() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let c1 = Ctr::docker("c1");
    sb.koko_line(&format!(
        "-d {},link1,10.1.0.1/24 -c hostlink,10.1.0.2/24",
        c1.name
    ))
    .ok();
    let l1 = sb.link(&c1, "link1").unwrap();
    let host = sb
        .link(None, "hostlink")
        .expect("hostlink in koko's own namespace");
    assert_pair(&l1, &host);
    assert_eq!(sb.addrs(None, "hostlink"), ["10.1.0.2/24"]);
    c1.ping("10.1.0.2");
    assert_tcp(sb.own_ns_path(), c1.ns_path(), "10.1.0.2:8080");

    sb.koko_line(&format!("-D {},link1", c1.name)).ok();
    assert!(sb.link_names(&c1).is_empty());
    assert!(sb.link(None, "hostlink").is_none());
}

/// Containers by full id and by short id, like the docker CLI.
#[test]
fn containers_by_full_and_short_id() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let (c1, c2) = (Ctr::docker("byid1"), Ctr::docker("byid2"));
    let (id1, id2) = (c1.id(), c2.id());
    assert_eq!(id1.len(), 64);
    let run = sb.koko_line(&format!(
        "--json -d {id1},link1,10.2.0.1/24 -d {},link2,10.2.0.2/24",
        &id2[..12]
    ));
    run.ok();
    assert_eq!(run.json()["ends"][0]["kind"], "docker");
    assert_pair(
        &sb.link(&c1, "link1").unwrap(),
        &sb.link(&c2, "link2").unwrap(),
    );
    c1.ping("10.2.0.2");
    sb.koko_line(&format!("-D {},link2", &id2[..12])).ok();
    assert!(sb.link_names(&c1).is_empty() && sb.link_names(&c2).is_empty());
}

/// Podman through its Docker-compatible API: DOCKER_HOST points koko at
/// Podman's socket.
#[test]
fn podman_container_through_docker_host() {
    let Some(sb) = engine_sandbox("podman") else {
        return;
    };
    sb.netns_add(&["ns2"]);
    // These machines withhold CAP_SYS_RESOURCE, and Podman raises the
    // containers' nofile/nproc limits by default; keep them low. Podman's
    // default capabilities lack NET_RAW, which ping needs.
    let p1 = Ctr::start(
        "podman",
        "pod1",
        &[
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--cap-add",
            "NET_RAW",
        ],
    );
    let host = format!("unix://{PODMAN_SOCK}");
    let env = [("DOCKER_HOST", host.as_str())];
    let endpoint = format!("{},link1,10.3.0.1/24", p1.name);
    sb.koko_env(&env, &["-d", &endpoint, "-n", "ns2,link2,10.3.0.2/24"])
        .ok();
    assert_pair(
        &sb.link(&p1, "link1").unwrap(),
        &sb.link(Some("ns2"), "link2").unwrap(),
    );
    assert_eq!(sb.addrs(&p1, "link1"), ["10.3.0.1/24"]);
    p1.ping("10.3.0.2");

    // Docker's engine does not know the Podman container.
    sb.koko_line(&format!("-D {},link1", p1.name))
        .fails(1, "no such container");
    sb.koko_env(&env, &["-D", &format!("{},link1", p1.name)])
        .ok();
    assert!(sb.link_names(&p1).is_empty());
    assert!(sb.link_names(Some("ns2")).is_empty());
}

// --- bad input and faults -------------------------------------------------

#[test]
fn no_engine_running_is_reported_at_once_naming_the_socket() {
    let sb = Sandbox::new();
    sb.netns_add(&["ns2"]);
    let t = Instant::now();
    let run = sb.koko_env(
        &[("DOCKER_HOST", "unix:///run/koko-test-no-engine/docker.sock")],
        &["-n", "ns2,link2", "-d", "centos1,link1"],
    );
    let elapsed = t.elapsed();
    run.fails(1, "unix:///run/koko-test-no-engine/docker.sock");
    run.stderr_has("cannot reach the container engine");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(sb.link_names(Some("ns2")).is_empty());

    // A socket file with nobody listening: connection refused, also at once.
    let dead = format!("/tmp/koko-test-dead-{}.sock", std::process::id());
    let _ = std::fs::remove_file(&dead);
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let t = Instant::now();
    let host = format!("unix://{dead}");
    let run = sb.koko_env(&[("DOCKER_HOST", &host)], &["-D", "centos1,link1"]);
    let _ = std::fs::remove_file(&dead);
    run.fails(1, &host);
    run.stderr_has("connection refused");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn malformed_docker_host() {
    let sb = Sandbox::new();
    for bad in [
        "tcp://",
        "docker.sock",
        "ssh://user@box",
        "tcp://host:notaport",
        "unix://relative/path",
    ] {
        let run = sb.koko_env(&[("DOCKER_HOST", bad)], &["-d", "c1,link1", "-c", "link2"]);
        run.fails(1, "DOCKER_HOST");
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    assert!(sb.link_names(None).is_empty());
}

#[test]
fn no_such_container() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let ghost = format!("koko-ghost-{}", std::process::id());
    sb.koko_line(&format!("-n ns2,link2 -d {ghost},link1"))
        .fails(1, &format!("container '{ghost}': no such container"));
    assert!(sb.link_names(Some("ns2")).is_empty());
    sb.koko_line(&format!("-D {ghost},link1"))
        .fails(1, "no such container");
    // Not a name at all: a usage error before the engine is asked.
    sb.koko_line("-d ../etc,link1 -n ns2,link2")
        .fails(2, "not a container name");
}

#[test]
fn stopped_container_is_not_running() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let c1 = Ctr::docker("stopped");
    c1.kill();
    sb.koko_line(&format!("-d {},link1 -n ns2,link2", c1.name))
        .fails(1, &format!("container '{}': is not running", c1.name));
    assert!(sb.link_names(Some("ns2")).is_empty());
    sb.koko_line(&format!("-D {},link1", c1.name))
        .fails(1, "is not running");

    // Created but never started: pid 0 is "not running" too.
    let never = Ctr::created("never");
    sb.koko_line(&format!("-d {},link1 -n ns2,link2", never.name))
        .fails(1, "is not running (status: created)");
    assert!(sb.link_names(Some("ns2")).is_empty());
}

#[test]
fn host_network_container_is_refused() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let h = Ctr::start("docker", "hostnet", &["--network", "host"]);
    let run = sb.koko_line(&format!("-d {},kokohost0 -n ns2,link2", h.name));
    run.fails(2, "it would wire the host's own network");
    assert!(sb.link_names(Some("ns2")).is_empty());
    // Sharing the namespace of a host-network container: refused too.
    let shared = Ctr::start(
        "docker",
        "sharer",
        &["--network", &format!("container:{}", h.name)],
    );
    sb.koko_line(&format!("-d {},kokohost0 -n ns2,link2", shared.name))
        .fails(2, "it would wire the host's own network");
    assert!(sb.link_names(Some("ns2")).is_empty());
    // Nothing appeared in the host's namespace (read-only check).
    assert_not_on_host("kokohost0");
}

#[test]
fn name_taken_inside_the_container_leaves_nothing_behind() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    sb.netns_add(&["a", "b"]);
    let c1 = Ctr::docker("taken");
    sb.koko_line(&format!(
        "-d {},link1,10.4.0.1/24 -n a,x,10.4.0.2/24",
        c1.name
    ))
    .ok();
    let before = sb.link(&c1, "link1").unwrap();
    sb.koko_line(&format!("-d {},link1,10.5.0.1/24 -n b,y", c1.name))
        .fails(
            1,
            &format!("link 'link1' already exists in container '{}'", c1.name),
        );
    // The other end was never made; the existing link is untouched.
    assert!(sb.link_names(Some("b")).is_empty());
    assert_eq!(sb.link_names(&c1), ["link1"]);
    assert_eq!(sb.link(&c1, "link1").unwrap()["ifindex"], before["ifindex"]);
    assert_eq!(sb.addrs(&c1, "link1"), ["10.4.0.1/24"]);
}

/// The container dies after koko looked it up and before the link is made
/// (a test-only hook pauses koko in exactly that window): koko says so and
/// leaves nothing in the other namespace.
#[test]
fn container_killed_between_lookup_and_link_creation() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    sb.netns_add(&["ns2"]);
    let c1 = Ctr::docker("doomed");
    let mut child = sb
        .command(koko_bin())
        .args([
            "-n",
            "ns2,link2,10.6.0.2/24",
            "-d",
            &format!("{},link1,10.6.0.1/24", c1.name),
        ])
        .env("KOKO_TEST_PAUSE_AFTER_RESOLVE_MS", "3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("endpoints resolved"), "koko said: {line}");
    c1.kill();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(
        rest.contains(&format!("container '{}'", c1.name)) && rest.contains("gone"),
        "{rest}"
    );
    assert!(
        sb.link_names(Some("ns2")).is_empty(),
        "{:?}",
        sb.link_names(Some("ns2"))
    );
    assert!(sb.link_names(None).is_empty());
}

// --- the koro `docker NAME` target --------------------------------------------

/// The service-chaining post as written: koko links without addresses, koro
/// gives the addresses and routes (`koro docker NAME ...`), HTTP flows from
/// client to webserver through firewall and router; the firewall is killed,
/// koko and koro repair the chain. Containers run unprivileged: koko and
/// koro do the network work from outside, so nothing needs --privileged.
#[test]
fn service_chaining_post_with_koro_docker_targets() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let client = Ctr::docker("client");
    let firewall = Ctr::docker("firewall");
    let router = Ctr::docker("router");
    let webserver = Ctr::docker("webserver");
    webserver.sh("mkdir -p /www && echo pickle > /www/index.html && httpd -p 80 -h /www");
    let (c, f, r, w) = (&client.name, &firewall.name, &router.name, &webserver.name);

    // `echo 1 > /proc/sys/net/ipv4/ip_forward` in the post (privileged
    // containers); koro's sysctl does it from outside.
    sb.koro(&format!("docker {f} sysctl net.ipv4.ip_forward=1"))
        .ok();
    sb.koro(&format!("docker {r} forwarding on")).ok();
    assert_eq!(sb.sysctl(&firewall, "net.ipv4.ip_forward"), "1");
    assert_eq!(sb.sysctl(&router, "net.ipv4.ip_forward"), "1");

    sb.koko_line(&format!("-d {c},link1 -d {f},link2")).ok();
    sb.koko_line(&format!("-d {f},link3 -d {r},link4")).ok();
    sb.koko_line(&format!("-d {r},link5 -d {w},link6")).ok();
    for line in [
        format!("docker {c} address add 10.0.1.1/24 dev link1"),
        format!("docker {f} address add 10.0.1.2/24 dev link2"),
        format!("docker {f} address add 10.0.2.1/24 dev link3"),
        format!("docker {r} address add 10.0.2.2/24 dev link4"),
        format!("docker {r} address add 10.0.3.1/24 dev link5"),
        format!("docker {w} address add 10.0.3.2/24 dev link6"),
        format!("docker {c} route add default via 10.0.1.2 dev link1"),
        format!("docker {w} route add default via 10.0.3.1 dev link6"),
        format!("docker {f} route add 10.0.3.0/24 via 10.0.2.2 dev link3"),
        format!("docker {r} route add 10.0.1.0/24 via 10.0.2.1 dev link4"),
    ] {
        sb.koro(&line).ok();
    }
    // "Check all the routing", through the kernel.
    assert_eq!(sb.addrs(&firewall, "link3"), ["10.0.2.1/24"]);
    assert_eq!(sb.route(&client, "default").unwrap()["gateway"], "10.0.1.2");
    let rf = sb.route(&firewall, "10.0.3.0/24").unwrap();
    assert_eq!(rf["gateway"], "10.0.2.2");
    assert_eq!(rf["dev"], "link3");
    assert_eq!(
        sb.route(&router, "10.0.1.0/24").unwrap()["gateway"],
        "10.0.2.1"
    );
    assert_eq!(
        sb.route(&webserver, "default").unwrap()["gateway"],
        "10.0.3.1"
    );
    assert_web_page(&client);

    // "Everything is broken": the firewall dies and its links with it.
    firewall.kill();
    links_vanish_with_firewall(&sb, &client, &router);
    sb.koro(&format!("docker {f} address add 10.0.1.2/24 dev link2"))
        .fails(1, "is not running");

    sb.koko_line(&format!("-d {c},link7 -d {r},link8")).ok();
    sb.koro(&format!("docker {c} address add 10.0.4.1/24 dev link7"))
        .ok();
    sb.koro(&format!("docker {r} address add 10.0.4.2/24 dev link8"))
        .ok();
    sb.koro(&format!(
        "docker {c} route add default via 10.0.4.2 dev link7"
    ))
    .ok();
    assert_eq!(sb.route(&client, "default").unwrap()["gateway"], "10.0.4.2");
    assert_web_page(&client);
}

/// Every koro command works on a `docker NAME` target (also as `koko ip`,
/// and by short id); the faults of container lookup are the same as for
/// endpoints.
#[test]
fn every_koro_command_on_a_docker_target() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    sb.netns_add(&["peer"]);
    let c1 = Ctr::docker("korotarget");
    let n = &c1.name;
    sb.koko_line(&format!("-d {n},link1 -n peer,link2,10.8.0.2/24"))
        .ok();

    sb.koro(&format!("docker {n} address add 10.8.0.1/24 dev link1"))
        .ok();
    sb.koro(&format!(
        "docker {n} address add 2001:db8:8::1/64 dev link1"
    ))
    .ok();
    assert_eq!(sb.addrs(&c1, "link1"), ["10.8.0.1/24", "2001:db8:8::1/64"]);
    sb.koro(&format!(
        "docker {n} address del 2001:db8:8::1/64 dev link1"
    ))
    .ok();
    assert_eq!(sb.addrs(&c1, "link1"), ["10.8.0.1/24"]);
    c1.ping("10.8.0.2");

    let short = &c1.id()[..12];
    sb.koko_line(&format!(
        "ip docker {short} route add 10.9.0.0/24 via 10.8.0.2 dev link1"
    ))
    .ok();
    assert_eq!(sb.route(&c1, "10.9.0.0/24").unwrap()["gateway"], "10.8.0.2");
    sb.koro(&format!(
        "docker {n} route replace 10.9.0.0/24 via 10.8.0.3 dev link1"
    ))
    .ok();
    let r = sb.routes(&c1);
    let replaced: Vec<&Value> = r.iter().filter(|r| r["dst"] == "10.9.0.0/24").collect();
    assert_eq!(replaced.len(), 1, "{r:?}");
    assert_eq!(replaced[0]["gateway"], "10.8.0.3");
    sb.koro(&format!(
        "docker {n} route add 10.9.0.0/24 via 10.8.0.2 dev link1 metric 7"
    ))
    .ok();
    let r = sb.routes(&c1);
    assert!(
        r.iter()
            .any(|r| r["dst"] == "10.9.0.0/24" && r["metric"] == 7 && r["gateway"] == "10.8.0.2"),
        "{r:?}"
    );
    sb.koro(&format!(
        "docker {n} route del 10.9.0.0/24 via 10.8.0.2 dev link1 metric 7"
    ))
    .ok();
    sb.koro(&format!("docker {n} route del 10.9.0.0/24")).ok();
    assert!(sb.route(&c1, "10.9.0.0/24").is_none());
    sb.koro(&format!("docker {n} route add default via 10.8.0.2"))
        .ok();
    assert_eq!(sb.route(&c1, "default").unwrap()["gateway"], "10.8.0.2");

    sb.koro(&format!("docker {n} link set link1 mtu 1400")).ok();
    assert_eq!(sb.link(&c1, "link1").unwrap()["mtu"], 1400);
    sb.koro(&format!("docker {n} link set link1 down")).ok();
    let flags = sb.link(&c1, "link1").unwrap()["flags"].clone();
    assert!(
        !flags.as_array().unwrap().iter().any(|f| f == "UP"),
        "{flags}"
    );
    assert!(c1.cannot_ping("10.8.0.2"));
    sb.koro(&format!("docker {n} link set link1 up")).ok();
    c1.ping("10.8.0.2");

    sb.koro(&format!(
        "docker {n} sysctl net.ipv4.conf.link1.forwarding=1"
    ))
    .ok();
    assert_eq!(sb.sysctl(&c1, "net.ipv4.conf.link1.forwarding"), "1");
    sb.koro(&format!("docker {n} forwarding on")).ok();
    assert_eq!(sb.sysctl(&c1, "net.ipv4.ip_forward"), "1");
    sb.koro(&format!("docker {n} forwarding off")).ok();
    assert_eq!(sb.sysctl(&c1, "net.ipv4.ip_forward"), "0");

    // Faults, as for endpoints.
    sb.koro(&format!(
        "docker koko-ghost-{} address add 10.8.0.9/24 dev link1",
        std::process::id()
    ))
    .fails(1, "no such container");
    let h = Ctr::start("docker", "hostnet", &["--network", "host"]);
    sb.koro(&format!("docker {} address add 10.8.0.9/24 dev lo", h.name))
        .fails(2, "host's own network");
    let env = [("DOCKER_HOST", "unix:///run/koko-test-no-engine.sock")];
    let t = Instant::now();
    sb.koko_env(&env, &["ip", "docker", n, "link", "set", "link1", "up"])
        .fails(1, "unix:///run/koko-test-no-engine.sock");
    assert!(t.elapsed() < Duration::from_secs(5));
}

// --- the library's container operations --------------------------------------

/// `koko::ns::docker::kill` (scripts' destroy): the container dies, and the
/// veth end in the other namespace goes with it, because koko holds no
/// reference to the container's namespace once its work is done.
#[test]
fn library_kill_and_stop_take_the_links_with_the_container() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    sb.netns_add(&["peer"]);
    let c1 = Ctr::docker("killme");
    let c2 = Ctr::docker("stopme");
    sb.koko_line(&format!("-d {},link1 -n peer,link2", c1.name))
        .ok();
    sb.koko_line(&format!("-d {},link3 -n peer,link4", c2.name))
        .ok();
    assert_eq!(sb.link_names(Some("peer")).len(), 2);

    let ns = koko::ns::docker::resolve(&c1.name).unwrap();
    assert_eq!(ns.kind(), koko::ns::NsKind::Docker);
    assert_eq!(
        ns.file_path(),
        std::path::Path::new(&format!("/proc/{}/ns/net", c1.pid()))
    );
    koko::ns::docker::kill(&c1.name).unwrap();
    assert_eq!(c1.inspect("{{.State.Running}}"), "false");
    assert!(!ns.exists());
    koko::ns::docker::stop(&c2.name, Duration::from_secs(0)).unwrap();
    koko::ns::docker::stop(&c2.name, Duration::from_secs(0)).unwrap(); // already stopped: fine
    peer_links_vanish(&sb);
    let e = koko::ns::docker::kill(&c1.name).unwrap_err();
    assert!(e.to_string().contains("is not running"), "{e}");
    let e = koko::ns::docker::resolve("koko-ghost-container").unwrap_err();
    assert!(e.to_string().contains("no such container"), "{e}");

    // From async code (a script's runtime) too: no nested-runtime panic.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(async { koko::ns::docker::resolve(&c2.name) })
        .unwrap_err();
    assert!(e.to_string().contains("is not running"), "{e}");
}

/// Wait until the container's peers in netns 'peer' have gone with it.
fn peer_links_vanish(sb: &Sandbox) {
    wait_for(
        "the links in netns 'peer' vanish with their containers",
        TEARDOWN,
        || match sb.link_names(Some("peer")) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("{left:?} survived")),
        },
    );
}

/// An engine that accepts the connection but never answers: koko gives up
/// after a few seconds and says where it was waiting.
#[test]
fn hung_engine_times_out() {
    let sb = Sandbox::new();
    let path = format!("/tmp/koko-test-hung-{}.sock", std::process::id());
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (done, until_done) = std::sync::mpsc::channel::<()>();
    let held = std::thread::spawn(move || {
        // Accept and hold the connection without a word, until koko is done.
        let conn = listener.accept().map(|(c, _)| c);
        let _ = until_done.recv();
        drop(conn);
    });
    let host = format!("unix://{path}");
    let t = Instant::now();
    let run = sb.koko_env(&[("DOCKER_HOST", &host)], &["-D", "centos1,link1"]);
    let elapsed = t.elapsed();
    let _ = std::fs::remove_file(&path);
    run.fails(1, &host);
    run.stderr_has("no answer within");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    // Lets the holder go (it ends by itself once it has accepted; it is
    // not joined, so a koko that never connected cannot hang the test).
    drop(done);
    drop(held);
}

/// A script wires a container with `docker(NAME)` and ends it with
/// `destroy()`: the container is killed and its link ends go with it.
#[test]
fn script_docker_namespace_and_destroy() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let c1 = Ctr::docker("scripted");
    let script = format!("/tmp/koko-docker-script-{}.rhai", std::process::id());
    std::fs::write(
        &script,
        format!(
            r#"
let c = docker("{}");
let n = netns("peer");
veth(c, "link1", n, "link2", #{{a_addrs: ["10.11.0.1/24"], b_addrs: ["10.11.0.2/24"]}});
let r = c.ping("10.11.0.2");
if !r.ok {{ throw "no ping across"; }}
print("linked");
c.destroy();
print("destroyed");
"#,
            c1.name
        ),
    )
    .unwrap();
    let run = sb.koko(&["run", &script]);
    let _ = std::fs::remove_file(&script);
    run.ok();
    assert!(
        run.stdout.contains("linked") && run.stdout.contains("destroyed"),
        "{}",
        run.stdout
    );
    assert_eq!(c1.inspect("{{.State.Running}}"), "false");
    peer_links_vanish(&sb);
}

/// koko README: "create vxlan interface and put it into docker container".
/// The parent eth1 lives in koko's own namespace (the sandbox's); the far
/// end of the tunnel is a netns behind eth1, with its own vxlan (iproute2).
#[test]
fn readme_vxlan_into_docker_container() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let centos1 = Ctr::docker("centos1");
    sb.sh(
        "ip netns add far && ip link add eth1 type veth peer name eth1p netns far \
         && ip addr add 10.1.1.2/24 dev eth1 && ip link set eth1 up \
         && ip -n far addr add 10.1.1.1/24 dev eth1p && ip -n far link set eth1p up \
         && ip -n far link add vx1 type vxlan id 1 remote 10.1.1.2 dstport 4789 dev eth1p \
         && ip -n far addr add 192.168.1.2/24 dev vx1 && ip -n far link set vx1 up",
    );
    sb.koko_line(&format!(
        "-d {},link1,192.168.1.1/24 -x eth1,10.1.1.1,1",
        centos1.name
    ))
    .ok();
    let l = sb.link(&centos1, "link1").expect("link1 in the container");
    let info = &l["linkinfo"]["info_data"];
    assert_eq!(l["linkinfo"]["info_kind"], "vxlan", "{l}");
    assert_eq!(info["id"], 1, "{l}");
    assert_eq!(info["remote"], "10.1.1.1", "{l}");
    assert_eq!(info["port"], 4789, "{l}");
    assert_eq!(sb.addrs(&centos1, "link1"), ["192.168.1.1/24"]);
    // Nothing but eth1 in koko's own namespace: the vxlan moved out.
    assert_eq!(sb.link_names(None), ["eth1"]);
    centos1.ping("192.168.1.2");

    sb.koko_line(&format!("-D {},link1", centos1.name)).ok();
    assert!(sb.link_names(&centos1).is_empty());
}

#[test]
fn failover_docker_script_repairs_the_chain_when_the_firewall_container_dies() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let client = Ctr::docker("fo-client");
    let firewall = Ctr::docker("fo-firewall");
    let router = Ctr::docker("fo-router");
    let web = Ctr::docker("fo-web");
    let script = format!(
        "{}/scripts/failover-docker.rhai",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = sb.koko(&[
        "run",
        &script,
        "--",
        &client.name,
        &firewall.name,
        &router.name,
        &web.name,
    ]);
    run.ok();
    run.stdout_has("chain up");
    run.stdout_has("repaired");
    run.stdout_has(&format!("container {}: container_exit", firewall.name));
    // Through the engine and the kernel: the firewall container is dead,
    // and the script undid its links in the others.
    assert_eq!(firewall.inspect("{{.State.Running}}"), "false");
    for c in [&client, &router, &web] {
        assert!(
            sb.link_names(c).is_empty(),
            "{}: {:?}",
            c.name,
            sb.link_names(c)
        );
    }
}

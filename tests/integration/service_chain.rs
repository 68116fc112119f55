//! The service-chaining blog post (seeds/blog-service-chaining-koko-koro.md),
//! rebuilt with the koko and koro command lines only: client -> firewall ->
//! router -> webserver, every address and route checked through the kernel,
//! TCP end to end; then the firewall dies, traffic stops, and the post's
//! repair (a new link client <-> router, new addresses, a new default route)
//! brings it back.
//!
//! Namespaces are reached through every koro target kind: client by `ip
//! netns` name, firewall by name and by path, router by pid (a process in a
//! namespace of its own), webserver by path.

use std::path::PathBuf;

use crate::support::{assert_tcp, route_text, tcp_blocked, wait_until, Place, Sandbox, TEARDOWN};
use serde_json::Value;

/// Where the webserver listens.
const WEB: &str = "10.0.3.2:8080";

struct Chain {
    sb: Sandbox,
    router_pid: u32,
}

impl Chain {
    /// koro's TARGET words for each box.
    fn target(&self, name: &str) -> String {
        match name {
            "client" => "ipnetns client".into(),
            "firewall" => "ipnetns firewall".into(),
            "firewall-by-path" => "netns /run/netns/firewall".into(),
            "router" => format!("pid {}", self.router_pid),
            "webserver" => "netns /run/netns/webserver".into(),
            other => panic!("{other}"),
        }
    }

    /// `koro TARGET COMMAND` as `koko ip TARGET COMMAND`.
    #[track_caller]
    fn koro(&self, name: &str, command: &str) -> crate::support::Run {
        let run = self
            .sb
            .koko_line(&format!("ip {} {command}", self.target(name)));
        run.ok();
        assert_eq!(run.stdout.lines().count(), 1, "one line: {}", run.stdout);
        run
    }

    /// Where a box's namespace is, for kernel queries.
    fn place(&self, name: &str) -> Place {
        match name {
            "router" => Place::Pid(self.router_pid),
            other => Place::Netns(other.to_string()),
        }
    }

    /// `ip -j ARGS` inside a box.
    fn ip(&self, name: &str, args: &str) -> Value {
        self.sb.ip_json(self.place(name), args)
    }

    /// IPv4 routes of the main table, `ip route`-style with the preferred
    /// source, sorted.
    fn routes(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .sb
            .routes(self.place(name))
            .iter()
            .map(|r| match r["prefsrc"].as_str() {
                Some(src) => format!("{} src {src}", route_text(r)),
                None => route_text(r),
            })
            .collect();
        v.sort();
        v
    }

    /// `link: addr/prefix` for every global IPv4 address in a box, sorted.
    fn addrs(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for l in self.ip(name, "-4 addr show").as_array().unwrap() {
            for a in l["addr_info"].as_array().unwrap() {
                if a["scope"] == "global" {
                    out.push(format!(
                        "{}: {}/{}",
                        l["ifname"].as_str().unwrap(),
                        a["local"].as_str().unwrap(),
                        a["prefixlen"]
                    ));
                }
            }
        }
        out.sort();
        out
    }

    /// The post's repair: a new link client (link7, 10.0.4.1/24) <->
    /// router (link8, 10.0.4.2/24).
    fn link_client_to_router(&self) {
        self.sb
            .koko(&[
                "-n",
                "client,link7",
                "-p",
                &format!("{},link8", self.router_pid),
            ])
            .ok();
        self.koro("client", "address add 10.0.4.1/24 dev link7");
        self.koro("router", "address add 10.0.4.2/24 dev link8");
    }

    /// TCP from the client reaches the webserver (a listener on WEB).
    #[track_caller]
    fn assert_web_reachable(&self) {
        assert_tcp(self.path("webserver"), self.path("client"), WEB);
    }

    fn path(&self, name: &str) -> PathBuf {
        match name {
            "router" => PathBuf::from(format!("/proc/{}/ns/net", self.router_pid)),
            other => self.sb.netns_path(other),
        }
    }
}

/// The post's "Creating a service chain with koro" section, step by step.
fn build_chain() -> Chain {
    let mut sb = Sandbox::new();
    sb.koko_line("netns add client firewall webserver").ok();
    let router_pid = sb.spawn_pid_namespace();
    let chain = Chain { sb, router_pid };
    let r = router_pid;

    // IP forwarding on the firewall and the router.
    chain.koro("firewall", "sysctl net.ipv4.ip_forward=1");
    chain.koro("router", "forwarding on");

    // Three veth pairs, without addresses.
    chain.sb.koko_line("-n client,link1 -n firewall,link2").ok();
    chain
        .sb
        .koko(&["-n", "firewall,link3", "-p", &format!("{r},link4")])
        .ok();
    chain
        .sb
        .koko(&[
            "-p",
            &format!("{r},link5"),
            "-a",
            "/run/netns/webserver,link6",
        ])
        .ok();

    // Addresses, as in the post.
    chain.koro("client", "address add 10.0.1.1/24 dev link1");
    chain.koro("firewall", "address add 10.0.1.2/24 dev link2");
    chain.koro("firewall-by-path", "address add 10.0.2.1/24 dev link3");
    chain.koro("router", "address add 10.0.2.2/24 dev link4");
    chain.koro("router", "address add 10.0.3.1/24 dev link5");
    chain.koro("webserver", "address add 10.0.3.2/24 dev link6");

    // Routing, as in the post.
    chain.koro("client", "route add default via 10.0.1.2 dev link1");
    chain.koro("webserver", "route add default via 10.0.3.1 dev link6");
    chain.koro(
        "firewall-by-path",
        "route add 10.0.3.0/24 via 10.0.2.2 dev link3",
    );
    chain.koro("router", "route add 10.0.1.0/24 via 10.0.2.1 dev link4");
    chain
}

#[test]
fn service_chain_is_built_checked_broken_and_repaired() {
    let chain = build_chain();

    // "Check all the routing": the post's listings (without Docker's eth0).
    assert_eq!(chain.addrs("client"), vec!["link1: 10.0.1.1/24"]);
    assert_eq!(
        chain.addrs("firewall"),
        vec!["link2: 10.0.1.2/24", "link3: 10.0.2.1/24"]
    );
    assert_eq!(
        chain.addrs("router"),
        vec!["link4: 10.0.2.2/24", "link5: 10.0.3.1/24"]
    );
    assert_eq!(chain.addrs("webserver"), vec!["link6: 10.0.3.2/24"]);
    assert_eq!(
        chain.routes("client"),
        vec![
            "10.0.1.0/24 dev link1 src 10.0.1.1",
            "default via 10.0.1.2 dev link1"
        ]
    );
    assert_eq!(
        chain.routes("firewall"),
        vec![
            "10.0.1.0/24 dev link2 src 10.0.1.2",
            "10.0.2.0/24 dev link3 src 10.0.2.1",
            "10.0.3.0/24 via 10.0.2.2 dev link3",
        ]
    );
    assert_eq!(
        chain.routes("router"),
        vec![
            "10.0.1.0/24 via 10.0.2.1 dev link4",
            "10.0.2.0/24 dev link4 src 10.0.2.2",
            "10.0.3.0/24 dev link5 src 10.0.3.1",
        ]
    );
    assert_eq!(
        chain.routes("webserver"),
        vec![
            "10.0.3.0/24 dev link6 src 10.0.3.2",
            "default via 10.0.3.1 dev link6"
        ]
    );
    for (name, on) in [
        ("firewall", "1"),
        ("router", "1"),
        ("client", "0"),
        ("webserver", "0"),
    ] {
        assert_eq!(
            chain.sb.sysctl(chain.place(name), "net.ipv4.ip_forward"),
            on,
            "forwarding in {name}"
        );
    }

    // "Now we have a service chain!": TCP from client to the webserver.
    chain.assert_web_reachable();

    // koko show tells the same story, peers included.
    let show = chain
        .sb
        .koko_line("show ipnetns firewall")
        .ok()
        .stdout
        .clone();
    assert!(
        show.contains("link2 veth up mtu 1500 peer link1 in netns 'client'"),
        "{show}"
    );
    assert!(
        show.contains("10.0.3.0/24 via 10.0.2.2 dev link3"),
        "{show}"
    );

    // "The firewall goes down": its namespace is deleted, its veth ends go
    // with it, and so do the routes through them.
    chain.sb.sh("ip netns del firewall");
    wait_until(
        "link1 vanishes from client with the firewall",
        TEARDOWN,
        || chain.sb.link(Some("client"), "link1").is_none(),
    );
    assert!(
        chain.routes("client").is_empty(),
        "{:?}",
        chain.routes("client")
    );
    assert!(
        tcp_blocked(&chain.path("client"), WEB.parse().unwrap()),
        "traffic must fail without the firewall"
    );

    // The repair: a new link client <-> router, new addresses ...
    chain.link_client_to_router();
    // ... and the post's exact new default route (the old one went with link1).
    chain.koro("client", "route add default via 10.0.4.2 dev link7");
    assert_eq!(
        chain.routes("client"),
        vec![
            "10.0.4.0/24 dev link7 src 10.0.4.1",
            "default via 10.0.4.2 dev link7"
        ]
    );
    chain.assert_web_reachable();

    // `route replace` is what to reach for when the old default is still
    // there: it swaps it in place, once, and can be repeated.
    let run = chain.koro("client", "route replace default via 10.0.4.2 dev link7");
    assert!(
        run.stdout
            .starts_with("replaced route default via 10.0.4.2 dev link7"),
        "{}",
        run.stdout
    );
    chain.koro("client", "route replace default via 10.0.4.2 dev link7");
    assert_eq!(
        chain.routes("client"),
        vec![
            "10.0.4.0/24 dev link7 src 10.0.4.1",
            "default via 10.0.4.2 dev link7"
        ]
    );
    // A second `add` is refused and changes nothing.
    chain
        .sb
        .koko_line("ip ipnetns client route add default via 10.0.4.2 dev link7")
        .fails(
            1,
            "route default via 10.0.4.2 dev link7: already exists in netns 'client'",
        );
    chain.assert_web_reachable();
}

#[test]
fn replace_when_the_old_default_is_still_there() {
    // Same chain; this time the client's link to the firewall stays, and the
    // default route is moved to a new router link with `route replace`.
    let chain = build_chain();
    chain.link_client_to_router();
    chain
        .sb
        .koko_line("ip ipnetns client route add default via 10.0.4.2 dev link7")
        .fails(1, "already exists in netns 'client'");
    let run = chain.koro("client", "route replace default via 10.0.4.2 dev link7");
    run.stdout_has(
        "replaced route default via 10.0.1.2 dev link1 with default via 10.0.4.2 dev link7",
    );
    assert_eq!(
        chain.routes("client"),
        vec![
            "10.0.1.0/24 dev link1 src 10.0.1.1",
            "10.0.4.0/24 dev link7 src 10.0.4.1",
            "default via 10.0.4.2 dev link7",
        ]
    );
    // Traffic now bypasses the firewall: block forwarding there, and it
    // still flows.
    chain
        .sb
        .sh("ip netns exec firewall sysctl -qw net.ipv4.ip_forward=0");
    chain.assert_web_reachable();
}

#[test]
fn warm_up_two_endpoints_and_a_firewall() {
    // The post's warm-up: koko links without addresses, then koro adds the
    // addresses and the default routes (here with `ip netns` targets).
    let sb = Sandbox::new();
    sb.koko_line("netns add test1 iptables test2").ok();
    sb.koko_line("ip ipnetns iptables sysctl net.ipv4.ip_forward=1")
        .ok();
    sb.koko_line("-n test1,link1 -n iptables,link2").ok();
    sb.koko_line("-n iptables,link3 -n test2,link4").ok();
    for line in [
        "ip ipnetns test1 address add 10.0.1.1/24 dev link1",
        "ip ipnetns iptables address add 10.0.1.2/24 dev link2",
        "ip ipnetns iptables address add 10.0.2.1/24 dev link3",
        "ip ipnetns test2 address add 10.0.2.2/24 dev link4",
        "ip ipnetns test1 route add default via 10.0.1.2 dev link1",
        "ip ipnetns test2 route add default via 10.0.2.1 dev link4",
    ] {
        sb.koko_line(line).ok();
    }
    let gw = |ns: &str| sb.ip_json(Some(ns), "route show default")[0]["gateway"].clone();
    assert_eq!(gw("test1"), "10.0.1.2");
    assert_eq!(gw("test2"), "10.0.2.1");
    sb.assert_tcp("test2", "test1", "10.0.2.2:80");
}

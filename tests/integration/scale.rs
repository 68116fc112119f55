//! Scale: a chain built in bulk through the script path, batched teardown,
//! and a pipelined batch with one bad request.

use crate::support::script::write_script;
use crate::support::{route_text, Sandbox};

const BUILD: &str = r#"
import "chain" as chain;
let n = parse_int(ARGS[0]);
let names = [];
for i in 0..n { names.push(`n${i}`); }
let c = chain::build(names);
if c.nodes.len() != n || c.links.len() != n - 1 { throw "bad shape"; }
if c.links[3].name != "link7" || c.links[3].peer.name != "link8" { throw "bad link names"; }
if chain::addr(c, n - 1) != `10.0.${n - 1}.2` { throw "bad addr"; }
"#;

fn routes(sb: &Sandbox, ns: &str) -> Vec<String> {
    sb.routes(Some(ns)).iter().map(route_text).collect()
}

#[test]
fn a_chain_of_50_built_by_script_has_every_address_route_and_carries_traffic() {
    let sb = Sandbox::new();
    let path = write_script("scale", "build50.rhai", BUILD);
    sb.koko(&["run", path.to_str().unwrap(), "--", "50"]).ok();
    let names = sb.netns_list();
    assert_eq!(names.len(), 50, "{names:?}");
    for i in [0usize, 1, 10, 25, 48, 49] {
        let ns = format!("n{i}");
        if i > 0 {
            assert_eq!(
                sb.addrs(Some(ns.as_str()), &format!("link{}", 2 * i)),
                vec![format!("10.0.{i}.2/24")]
            );
            assert_eq!(
                sb.link(Some(ns.as_str()), &format!("link{}", 2 * i))
                    .unwrap()["operstate"],
                "UP"
            );
        }
        if i < 49 {
            assert_eq!(
                sb.addrs(Some(ns.as_str()), &format!("link{}", 2 * i + 1)),
                vec![format!("10.0.{}.1/24", i + 1)]
            );
        }
        let fwd = sb.sysctl(Some(ns.as_str()), "net.ipv4.ip_forward");
        assert_eq!(
            fwd.trim(),
            if i == 0 || i == 49 { "0" } else { "1" },
            "{ns}"
        );
    }
    assert!(routes(&sb, "n0").contains(&"default via 10.0.1.2 dev link1".to_string()));
    assert!(routes(&sb, "n49").contains(&"default via 10.0.49.1 dev link98".to_string()));
    let r10 = routes(&sb, "n10");
    // 49 subnets: 2 connected, 47 routed (9 to the left, 38 to the right).
    assert_eq!(r10.len(), 49, "{r10:?}");
    assert!(r10.contains(&"10.0.1.0/24 via 10.0.10.1 dev link20".to_string()));
    assert!(r10.contains(&"10.0.9.0/24 via 10.0.10.1 dev link20".to_string()));
    assert!(r10.contains(&"10.0.12.0/24 via 10.0.11.2 dev link21".to_string()));
    assert!(r10.contains(&"10.0.49.0/24 via 10.0.11.2 dev link21".to_string()));
    sb.assert_tcp("n49", "n0", "10.0.49.2:7000");
}

#[test]
fn batched_teardown_leaves_nothing_behind() {
    let sb = Sandbox::new();
    sb.netns_add(&["keep"]);
    let path = write_script(
        "scale",
        "teardown.rhai",
        r#"
        import "chain" as chain;
        let names = [];
        for i in 0..20 { names.push(`t${i}`); }
        let c = chain::build(names);
        // Links out of the chain: to koko's own namespace and to a
        // namespace the run did not create; an address added afterwards.
        veth(c.nodes[0], "up0", host(), "down0", #{a_addrs: ["10.9.0.1/24"], b_addrs: ["10.9.0.2/24"]});
        let k = veth(c.nodes[5], "out5", netns("keep"), "in5");
        k.peer.add_addr("10.8.0.2/24");
        netns("keep").sysctl("net.ipv4.ip_forward", "1");
        print("built");
        "#,
    );
    let run = sb.koko(&["run", "--cleanup", path.to_str().unwrap()]);
    run.ok();
    run.stdout_has("built");
    assert_eq!(sb.netns_list(), vec!["keep".to_string()]);
    assert_eq!(sb.link_names(Some("keep")), Vec::<String>::new());
    assert_eq!(sb.link_names(None), Vec::<String>::new());
    let fwd = sb.sysctl(Some("keep"), "net.ipv4.ip_forward");
    assert_eq!(fwd.trim(), "0");
}

#[test]
fn a_pipelined_batch_with_one_bad_request_names_it_and_rolls_back_the_rest() {
    let sb = Sandbox::new();
    // Pair 3 of the chain is link7 in c3 <-> link8 in c4: make link7 clash.
    sb.netns_add(&["c3"]);
    sb.sh("ip -n c3 link add link7 type veth peer name other7");
    let path = write_script(
        "scale",
        "clash.rhai",
        r#"
        import "chain" as chain;
        let names = [];
        for i in 0..10 { names.push(`c${i}`); }
        chain::build(names);
        "#,
    );
    let run = sb.koko(&["run", path.to_str().unwrap()]);
    run.fails(1, "link7");
    run.stderr_has("c3");
    // Only what was there before: c3 with lo and the user's veth.
    assert_eq!(sb.netns_list(), vec!["c3".to_string()]);
    let mut left = sb.link_names(Some("c3"));
    left.sort();
    assert_eq!(left, vec!["link7", "other7"]);
    assert_eq!(sb.link_names(None), Vec::<String>::new());
    let fwd = sb.sysctl(Some("c3"), "net.ipv4.ip_forward");
    assert_eq!(fwd.trim(), "0", "forwarding restored on the existing node");
}

#[test]
fn a_request_refused_late_in_a_bulk_build_is_named_and_nothing_is_left() {
    let sb = Sandbox::new();
    // Multicast link addresses are accepted, but a route via a multicast
    // gateway is refused: the last phase fails, after every link exists.
    let path = write_script(
        "scale",
        "badaddr.rhai",
        r#"
        import "chain" as chain;
        chain::build(["m0", "m1", "m2"], #{base: "224.0"});
        "#,
    );
    let run = sb.koko(&["run", path.to_str().unwrap()]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    // Worded as a single `route add` refused there would be (one text and
    // errno translation for routes, issue 11).
    run.stderr_has(
        "route default via 224.0.1.2 dev link1: gateway is not reachable from any address on netns 'm0'",
    );
    assert!(sb.netns_list().is_empty(), "{:?}", sb.netns_list());
    assert_eq!(sb.link_names(None), Vec::<String>::new());
}

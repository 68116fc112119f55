//! The koro grammar (`koko ip TARGET ...` and `koro TARGET ...`) and `koko
//! show`: every command checked through the kernel, and a table of bad input
//! where each case must fail with the right exit code and words and leave
//! the namespace exactly as it was.

use std::time::Duration;

use crate::support::{koro_bin, route_text, wait_until, Place, Run, Sandbox};
use serde_json::Value;

/// Two namespaces a and b joined by a veth link1 <-> link2, addressed, with a
/// default route in a.
fn pair() -> Sandbox {
    let sb = Sandbox::new();
    sb.netns_add(&["a", "b"]);
    sb.koko_line("-n a,link1 -n b,link2").ok();
    sb.koko_line("ip ipnetns a address add 10.0.1.1/24 dev link1")
        .ok();
    sb.koko_line("ip ipnetns b address add 10.0.1.2/24 dev link2")
        .ok();
    sb.koko_line("ip ipnetns a route add default via 10.0.1.2 dev link1")
        .ok();
    settle(&sb, "a");
    settle(&sb, "b");
    sb
}

/// Wait until IPv6 duplicate address detection is over on every address of
/// `ns` (it adds local routes and drops the "tentative" flag by itself, which
/// would look like a change in a before/after comparison).
fn settle(sb: &Sandbox, ns: &str) {
    wait_until(
        &format!("DAD finishes in {ns}"),
        Duration::from_secs(10),
        || {
            sb.sh(&format!("ip -n {ns} -6 addr show tentative"))
                .trim()
                .is_empty()
        },
    );
}

/// Everything about a namespace an `ip` command could change. The one
/// thing that changes by itself (IPv6 duplicate address detection finishing
/// on the link-local address) is left out.
fn snapshot(sb: &Sandbox, ns: &str) -> Vec<Value> {
    [
        "-d link show",
        "addr show",
        "route show",
        "-6 route show",
        "route show table all",
    ]
    .iter()
    .map(|args| {
        let mut v = sb.ip_json(Some(ns), args);
        forget_tentative(&mut v);
        v
    })
    .collect()
}

/// Compare two snapshots; on a difference, print the part that differs.
#[track_caller]
fn assert_same(before: &[Value], after: &[Value], what: &str) {
    for (b, a) in before.iter().zip(after) {
        if b != a {
            panic!(
                "{what}: the namespace changed\nbefore: {}\nafter:  {}",
                serde_json::to_string_pretty(b).unwrap(),
                serde_json::to_string_pretty(a).unwrap()
            );
        }
    }
}

fn forget_tentative(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("tentative");
            map.values_mut().for_each(forget_tentative);
        }
        Value::Array(items) => items.iter_mut().for_each(forget_tentative),
        _ => {}
    }
}

/// Routes as `dst via dev` strings (main table, IPv4).
fn routes(sb: &Sandbox, ns: &str) -> Vec<String> {
    let mut v: Vec<String> = sb.routes(Some(ns)).iter().map(route_text).collect();
    v.sort();
    v
}

#[test]
fn addresses_and_routes_through_every_target_kind() {
    let mut sb = Sandbox::new();
    sb.netns_add(&["a"]);
    let pid = sb.spawn_pid_namespace();
    let pid_s = pid.to_string();
    sb.koko(&["-n", "a,link1", "-p", &format!("{pid},link2")])
        .ok();

    sb.koko_line("ip ipnetns a address add 10.0.1.1/24 dev link1")
        .ok();
    sb.koko(&[
        "ip",
        "pid",
        &pid_s,
        "address",
        "add",
        "10.0.1.2/24",
        "dev",
        "link2",
    ])
    .ok();
    sb.koko_line("ip netns /run/netns/a addr add 2001:db8::1/64 dev link1")
        .ok();
    sb.koko_line("ip host address add 10.0.1.9/24 dev lo").ok();
    let mut got = sb.addrs(Some("a"), "link1");
    got.sort();
    assert_eq!(got, vec!["10.0.1.1/24", "2001:db8::1/64"]);
    let pid_addrs = sb.addrs(Place::Pid(pid), "link2");
    assert!(
        pid_addrs.contains(&"10.0.1.2/24".to_string()),
        "{pid_addrs:?}"
    );
    assert_eq!(
        sb.addrs(None, "lo")
            .iter()
            .filter(|a| *a == "10.0.1.9/24")
            .count(),
        1
    );

    // Routes: prefix, default, metric, table, IPv6; abbreviations.
    sb.koko_line("ip ipnetns a r add 10.0.3.0/24 via 10.0.1.2 dev link1")
        .ok();
    sb.koko_line("ip ipnetns a ro add 10.0.4.0/24 dev link1 metric 50")
        .ok();
    sb.koko_line("ip ipnetns a route add default via 10.0.1.2")
        .ok();
    sb.koko_line("ip ipnetns a route add 10.0.5.0/24 via 10.0.1.2 table 100")
        .ok();
    sb.koko_line("ip ipnetns a route add 2001:db8:9::/48 via 2001:db8::2 dev link1")
        .ok();
    assert_eq!(
        routes(&sb, "a"),
        vec![
            "10.0.1.0/24 dev link1",
            "10.0.3.0/24 via 10.0.1.2 dev link1",
            "10.0.4.0/24 dev link1 metric 50",
            "default via 10.0.1.2 dev link1",
        ]
    );
    let t100 = sb.ip_json(Some("a"), "route show table 100");
    assert_eq!(t100[0]["dst"], "10.0.5.0/24");
    assert_eq!(t100[0]["gateway"], "10.0.1.2");
    let v6 = sb.ip_json(Some("a"), "-6 route show 2001:db8:9::/48");
    assert_eq!(v6[0]["gateway"], "2001:db8::2");

    // replace changes the gateway in place; del removes.
    sb.koko_line("ip ipnetns a route replace 10.0.3.0/24 via 10.0.1.3 dev link1")
        .ok();
    let r = sb.ip_json(Some("a"), "route show 10.0.3.0/24");
    assert_eq!(r.as_array().unwrap().len(), 1);
    assert_eq!(r[0]["gateway"], "10.0.1.3");
    sb.koko_line("ip ipnetns a route del 10.0.3.0/24").ok();
    sb.koko_line("ip ipnetns a route del 10.0.5.0/24 table 100")
        .ok();
    sb.koko_line("ip ipnetns a route del 2001:db8:9::/48").ok();
    assert!(sb
        .ip_json(Some("a"), "route show 10.0.3.0/24")
        .as_array()
        .unwrap()
        .is_empty());
    assert!(sb
        .ip_json(Some("a"), "route show table 100")
        .as_array()
        .unwrap()
        .is_empty());
    assert!(sb
        .ip_json(Some("a"), "-6 route show 2001:db8:9::/48")
        .as_array()
        .unwrap()
        .is_empty());

    sb.koko_line("ip ipnetns a address del 2001:db8::1/64 dev link1")
        .ok();
    assert_eq!(sb.addrs(Some("a"), "link1"), vec!["10.0.1.1/24"]);
}

#[test]
fn link_state_mtu_and_sysctl() {
    let sb = pair();
    let run = sb.koko_line("ip ipnetns a link set link1 mtu 1400");
    run.ok();
    run.stdout_has("mtu 1400 (was 1500)");
    assert_eq!(sb.link(Some("a"), "link1").unwrap()["mtu"], 1400);
    sb.koko_line("ip ipnetns a link set link1 down").ok();
    let l = sb.link(Some("a"), "link1").unwrap();
    assert!(
        !l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{l}"
    );
    sb.koko_line("ip ipnetns a l set dev link1 up mtu 1500")
        .ok();
    let l = sb.link(Some("a"), "link1").unwrap();
    assert!(
        l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{l}"
    );
    assert_eq!(l["mtu"], 1500);

    sb.koko_line("ip ipnetns b sysctl net.ipv4.ip_forward=1")
        .ok();
    assert_eq!(sb.sysctl(Some("b"), "net.ipv4.ip_forward"), "1");
    // Only in that namespace.
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.ip_forward"), "0");
    sb.koko_line("ip ipnetns a forwarding on").ok();
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.ip_forward"), "1");
    assert_eq!(sb.sysctl(Some("a"), "net.ipv6.conf.all.forwarding"), "1");
    sb.koko_line("ip ipnetns a forwarding off").ok();
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.ip_forward"), "0");
    assert_eq!(sb.sysctl(Some("a"), "net.ipv6.conf.all.forwarding"), "0");
    sb.koko_line("ip ipnetns b sysctl net.ipv6.conf.all.forwarding=1")
        .ok();
    assert_eq!(sb.sysctl(Some("b"), "net.ipv6.conf.all.forwarding"), "1");
}

#[test]
fn one_line_of_output_and_json() {
    let sb = pair();
    let run = sb.koko_line("ip ipnetns a route add 10.0.3.0/24 via 10.0.1.2 dev link1");
    run.ok();
    assert_eq!(
        run.stdout.trim(),
        "added route 10.0.3.0/24 via 10.0.1.2 dev link1 in netns 'a'"
    );
    let run = sb.koko_line("ip ipnetns a route add 10.0.4.0/24 via 10.0.1.2 --json");
    run.ok();
    let j = run.json();
    assert_eq!(j["ok"], true);
    assert_eq!(j["action"], "route add");
    assert_eq!(j["namespace"], "a");
    assert_eq!(j["command"], "route add 10.0.4.0/24 via 10.0.1.2");
    let run = sb.koko_line("ip ipnetns a route add 10.0.4.0/24 via 10.0.1.2 --json");
    assert_eq!(run.code, 1);
    let j = run.json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["error"]["exit_code"], 1);
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{j}"
    );
    let run = sb.koko_line("ip ipnetns a route add 10.0.4.0/24 --json");
    assert_eq!(run.code, 2);
    assert_eq!(run.json()["error"]["kind"], "invalid");
}

#[test]
fn invoked_as_koro_through_a_symlink() {
    let sb = pair();
    let koro = koro_bin();
    let out = sb
        .command(&koro)
        .args([
            "ipnetns",
            "a",
            "route",
            "add",
            "10.0.7.0/24",
            "via",
            "10.0.1.2",
            "dev",
            "link1",
        ])
        .output()
        .unwrap();
    let bad = sb
        .command(&koro)
        .args(["ipnetns", "a", "route", "add", "10.0.7.0/24"])
        .output()
        .unwrap();
    let help = sb.command(&koro).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sb.ip_json(Some("a"), "route show 10.0.7.0/24")[0]["gateway"],
        "10.0.1.2"
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&help.stdout).contains("ipnetns NAME"));
}

#[test]
fn show_reads_links_addresses_routes_and_the_peer_across_namespaces() {
    let sb = pair();
    let run = sb.koko_line("show ipnetns a");
    run.ok();
    let text = &run.stdout;
    assert!(
        text.contains("link1 veth up mtu 1500 peer link2 in netns 'b'"),
        "{text}"
    );
    assert!(text.contains("link1 inet 10.0.1.1/24"), "{text}");
    assert!(text.contains("default via 10.0.1.2 dev link1"), "{text}");

    let j = sb.koko_line("show netns /run/netns/b --json").ok().json();
    assert_eq!(j["ok"], true);
    let link2 = j["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "link2")
        .unwrap()
        .clone();
    assert_eq!(link2["kind"], "veth");
    assert_eq!(link2["state"], "up");
    assert_eq!(link2["mtu"], 1500);
    assert_eq!(link2["peer"]["name"], "link1");
    assert_eq!(link2["peer"]["namespace_name"], "a");
    // Agrees with the kernel's own report.
    let kernel = sb.link(Some("b"), "link2").unwrap();
    assert_eq!(link2["ifindex"], kernel["ifindex"]);
    assert_eq!(link2["peer"]["ifindex"], kernel["link_index"]);
    assert!(j["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["address"] == "10.0.1.2/24" && a["link"] == "link2"));
    assert!(j["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dest"] == "10.0.1.0/24" && r["dev"] == "link2" && r["protocol"] == "kernel"));

    // A peer in a process's namespace is found by the same search that
    // `koko -D` uses for a peer (issue 11: show and -D agree), and named.
    let mut sb = sb;
    let pid = sb.spawn_pid_namespace();
    sb.koko(&["-n", "a,link3", "-p", &format!("{pid},link4")])
        .ok();
    let text = sb.koko_line("show ipnetns a").ok().stdout.clone();
    assert!(
        text.contains("link3 veth up mtu 1500 peer link4 in the namespace of pid"),
        "{text}"
    );
    // The peer's side sees a netns it can name.
    let text = sb
        .koko(&["show", "pid", &pid.to_string()])
        .ok()
        .stdout
        .clone();
    assert!(
        text.contains("link4 veth up mtu 1500 peer link3 in netns 'a'"),
        "{text}"
    );
    // The host namespace is a target too.
    assert!(sb.koko_line("show host").ok().stdout.contains("lo "));
}

/// Run a koro command that must fail, and check the namespace is unchanged.
#[track_caller]
fn refused(sb: &Sandbox, ns: &str, args: &str, code: i32, needle: &str) -> Run {
    let before = snapshot(sb, ns);
    let run = sb.koko_line(&format!("ip ipnetns {ns} {args}"));
    run.fails(code, needle);
    assert!(
        run.stdout.is_empty(),
        "{args}: nothing printed on stdout: {}",
        run.stdout
    );
    let after = snapshot(sb, ns);
    assert_same(&before, &after, args);
    run
}

#[test]
fn bad_input_leaves_the_namespace_as_it_was() {
    let sb = pair();
    let table: &[(&str, i32, &str)] = &[
        // Usage errors (exit 2), naming the word.
        ("route add 10.90.1.5/16 dev link1", 2, "route destination '10.90.1.5/16' has host bits set (did you mean 10.90.0.0/16?)"),
        ("route add 10.9.0.0/24", 2, "route 10.9.0.0/24: give a gateway ('via GW'), a device ('dev IF'), or both"),
        ("route add 10.9.0.0/24 via fd00::1", 2, "gateway 'fd00::1' is an IPv6 address but the destination is IPv4"),
        ("route add default via fd00::1 dev link1 metric 5 table 10 foo", 2, "unexpected word 'foo' after 'table 10'"),
        ("route add 10.9.0.0/24 dev link1 foo", 2, "unexpected word 'foo' after 'dev link1'"),
        ("route add 10.9.0.0/33 dev link1", 2, "prefix length '33'"),
        ("route add 10.9.0.0/24 via", 2, "'via' at the end needs a gateway address"),
        ("route add 10.9.0.0/24 dev link1 metric many", 2, "'many' is not a whole number"),
        ("route frob default", 2, "unknown route command 'frob'"),
        ("route", 2, "'route' needs 'add', 'del' or 'replace'"),
        ("address add 10.0.9.1 dev link1", 2, "address '10.0.9.1' has no prefix length"),
        ("address add 10.0.9.1/33 dev link1", 2, "prefix length '33' is not a number from 0 to 32"),
        ("address add 10.0.9.1/24", 2, "missing 'dev IF'"),
        ("address add 10.0.9.1/24 dev link1 bar", 2, "unexpected word 'bar' after 'dev link1'"),
        ("address frob 10.0.9.1/24 dev link1", 2, "unknown address command 'frob'"),
        ("neighbour add 10.0.1.7 dev link1", 2, "unknown object 'neighbour'"),
        ("link set link1 mtu 10", 2, "'mtu 10': an MTU is from 68 to 65535"),
        ("link set link1", 2, "nothing to change"),
        ("link set link1 up now", 2, "unexpected word 'now' after 'up'"),
        ("sysctl kernel.hostname=x", 2, "only net.* keys"),
        // Kernel refusals (exit 1), in words.
        ("route add 10.9.0.0/24 via 10.0.5.1", 1, "route 10.9.0.0/24 via 10.0.5.1: gateway is not reachable from any address on netns 'a'"),
        ("route add 10.9.0.0/24 via 10.0.5.1 dev link1", 1, "gateway is not reachable from any address on netns 'a'"),
        ("route add 10.9.0.0/24 dev link9", 1, "no link 'link9' in netns 'a'"),
        ("route add default via 10.0.1.2 dev link1", 1, "route default via 10.0.1.2 dev link1: already exists in netns 'a'"),
        ("route del 10.8.0.0/24", 1, "route 10.8.0.0/24: no such route in netns 'a'"),
        ("route del 10.0.1.0/24 via 10.0.1.7", 1, "no such route"),
        ("address add 10.0.1.1/24 dev link1", 1, "address 10.0.1.1/24: already on link1 in netns 'a'"),
        ("address add 10.0.9.1/24 dev link9", 1, "no link 'link9' in netns 'a'"),
        ("address del 10.0.7.1/24 dev link1", 1, "address 10.0.7.1/24: is not on link1 in netns 'a'"),
        ("link set link9 up", 1, "no link 'link9' in netns 'a'"),
        ("sysctl net.ipv4.no_such_key=1", 1, "no sysctl 'net.ipv4.no_such_key' in netns 'a'"),
    ];
    for (args, code, needle) in table {
        refused(&sb, "a", args, *code, needle);
    }
    // Usage errors also carry the usage hint; kernel refusals do not.
    assert!(
        refused(&sb, "a", "route add 10.9.0.0/24", 2, "give a gateway")
            .stderr
            .contains("usage")
    );
    assert!(!refused(&sb, "a", "route del 10.8.0.0/24", 1, "no such")
        .stderr
        .contains("usage"));
}

#[test]
fn bad_targets() {
    let sb = pair();
    let before = snapshot(&sb, "a");
    #[rustfmt::skip]
    let cases: &[(&str, i32, &str)] = &[
        ("ip frob a route add default dev link1", 2, "unknown target 'frob'"),
        ("ip pid abc route add default dev link1", 2, "'abc' is not a process id"),
        ("ip ipnetns", 2, "target 'ipnetns' needs a value"),
        ("ip ipnetns nosuch route add 10.9.0.0/24 dev link1", 1, "netns 'nosuch'"),
        ("ip netns /run/netns/nosuch route add 10.9.0.0/24 dev link1", 1, "namespace file /run/netns/nosuch"),
        ("ip pid 999999999 route add 10.9.0.0/24 dev link1", 1, "pid 999999999"),
        // A usage error in the command is reported before the target is looked up.
        ("ip ipnetns nosuch route add 10.9.0.0/24", 2, "give a gateway"),
    ];
    for (line, code, needle) in cases {
        sb.koko_line(line).fails(*code, needle);
    }
    // Docker targets are resolved by the Docker support; without it (or
    // without such a container) the error names the container.
    let run = sb.koko_line("ip docker nosuch-container route add 10.9.0.0/24 dev link1");
    assert_ne!(run.code, 0);
    run.stderr_has("'nosuch-container'");
    sb.koko_line("show ipnetns a extra")
        .fails(2, "unexpected word 'extra'");
    sb.koko_line("show").fails(2, "missing TARGET");
    assert_eq!(before, snapshot(&sb, "a"));
}

#[test]
fn the_journal_undoes_what_ip_commands_did() {
    // What scripts rely on: every command run through ipcmd::apply can be
    // rolled back, leaving the namespace as it was.
    use koko::ipcmd;
    use koko::journal::Journal;
    use koko::net::Session;
    use koko::ns::Namespace;

    let sb = pair();
    let before = snapshot(&sb, "a");
    let forward_before = sb.sysctl(Some("a"), "net.ipv4.ip_forward");
    let ns = Namespace::path(&sb.netns_path("a")).unwrap();
    let session = Session::new().unwrap();
    let mut journal = Journal::new();
    for cmd in [
        "address add 10.0.9.1/24 dev link1",
        "address add fd00::1/64 dev link1",
        "route add 10.0.3.0/24 via 10.0.1.2 dev link1 metric 7",
        "route replace default via 10.0.9.2 dev link1",
        "route replace 10.0.4.0/24 dev link1 table 100",
        "link set link1 mtu 1400",
        "sysctl net.ipv4.ip_forward=1",
    ] {
        let parsed = ipcmd::parse(cmd).unwrap();
        ipcmd::apply(&session, &mut journal, &ns, &parsed).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    assert_eq!(
        sb.ip_json(Some("a"), "route show default")[0]["gateway"],
        "10.0.9.2"
    );
    assert_eq!(sb.link(Some("a"), "link1").unwrap()["mtu"], 1400);
    let errors = journal.undo_all(&session);
    assert!(errors.is_empty(), "{errors:?}");
    drop(session);
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.ip_forward"), forward_before);
    let after = snapshot(&sb, "a");
    // IPv6 link-local routes and addresses may be re-announced; compare the
    // rest exactly.
    assert_eq!(before[0], after[0], "links");
    assert_eq!(before[1], after[1], "addresses");
    assert_eq!(before[2], after[2], "IPv4 routes");
    assert_eq!(
        sb.ip_json(Some("a"), "route show table 100"),
        Value::Array(vec![])
    );
}

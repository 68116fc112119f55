//! The table of bad inputs and faults: every row is one request koko must
//! refuse (or fail to carry out) with the right exit code (2 = the request
//! is wrong, 1 = it could not be done) and a message naming the object and
//! the cause — and after which the kernel holds exactly what it held
//! before: the same namespaces, links (state, MTU), addresses, routes of
//! every table, qdiscs and filters, and forwarding sysctls.
//!
//! The rows cover the one-shot grammar, `koko ip` (the koro grammar),
//! `koko netns`, scripts (`koko run` of a small inline script) and faults
//! (missing namespaces, taken names, missing or unfit parents, a refusal
//! after something was already built, which must be rolled back). All
//! rows of a group share one sandbox with a fixed scene (see [`SCENE`]),
//! run one after the other; every failure is collected and the test
//! reports them all at once. The four groups run in parallel. Cases already proven in cli_errors.rs and koro.rs are not repeated
//! here.
//!
//! To add a case: append a row to its group ([`oneshot_cases`],
//! [`koro_cases`], [`netns_cases`], [`script_cases`]) — what to run, the exit code,
//! and fragments the message must contain. If it needs more scenery, add
//! it to [`SCENE`] (every row sees it, and it must stay put).

use std::time::Duration;

use crate::support::script::write_script;
use crate::support::{koko_bin, poll, Run, Sandbox};

/// What a row runs.
enum Act {
    /// `koko WORDS...`, the line split on whitespace.
    Line(&'static str),
    /// `koko ARGS...`, given as words (for words with odd bytes).
    Args(&'static [&'static str]),
    /// `koko run FILE` of this script text.
    Script(&'static str),
}

struct Case {
    act: Act,
    code: i32,
    /// Every fragment must appear in stderr.
    needles: &'static [&'static str],
}

const fn line(l: &'static str, code: i32, needles: &'static [&'static str]) -> Case {
    Case {
        act: Act::Line(l),
        code,
        needles,
    }
}

const fn args(a: &'static [&'static str], code: i32, needles: &'static [&'static str]) -> Case {
    Case {
        act: Act::Args(a),
        code,
        needles,
    }
}

const fn script(s: &'static str, code: i32, needles: &'static [&'static str]) -> Case {
    Case {
        act: Act::Script(s),
        code,
        needles,
    }
}

/// The scene every row starts from (shell, run once in the sandbox):
/// namespaces a, b, c; a veth la (a) <-> lb (b) with IPv4 and IPv6
/// addresses and a static route in each family through la; a link named
/// `taken` in c; in the sandbox's own namespace a plain parent up0, a
/// parent p0 that carries a passthru macvlan, a parent q0 that carries a
/// bridge macvlan; forwarding on in b. Duplicate address detection is off
/// in these namespaces, so link-local addresses (and their routes) are
/// final the moment a link comes up, not a second later.
const SCENE: &str = "set -e
ip netns add a; ip netns add b; ip netns add c
for n in a b c; do
  ip netns exec $n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done
sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
ip link add la netns a type veth peer name lb netns b
ip -n a link set la up; ip -n b link set lb up
ip -n a addr add 10.1.0.1/24 dev la; ip -n b addr add 10.1.0.2/24 dev lb
ip -n a addr add fd00:1::1/64 dev la nodad; ip -n b addr add fd00:1::2/64 dev lb nodad
ip -n a route add 10.50.0.0/16 via 10.1.0.2 dev la
ip -n a -6 route add fd50::/64 via fd00:1::2 dev la
ip -n c link add taken type veth peer name taken-peer
ip link add up0 type veth peer name up1; ip link set up0 up; ip link set up1 up
ip link add p0 type veth peer name p1
ip link add link p0 name mvp type macvlan mode passthru
ip link add q0 type veth peer name q1
ip link add link q0 name mvq type macvlan mode bridge
ip netns exec b sysctl -qw net.ipv4.ip_forward=1
";

/// Everything the kernel holds in the sandbox, one sorted line per fact,
/// each prefixed with its namespace. Statistics and timers are left out:
/// only what a request could have changed.
const INVENTORY: &str = r#"
for n in '' $(ls /run/netns); do
  if [ -z "$n" ]; then o=""; p="own"; else o="-n $n"; p="$n"; fi
  {
    echo "netns"
    ip $o -br link show
    ip $o -br addr show
    ip $o route show table all
    ip $o -6 route show table all
    tc $o qdisc show
    for l in $(ip $o -o link show | awk -F': ' '{print $2}' | cut -d@ -f1); do
      tc $o filter show dev "$l" ingress | sed "s/^/$l ingress /"
      tc $o filter show dev "$l" egress | sed "s/^/$l egress /"
      ip $o -d link show dev "$l" | grep -o 'mtu [0-9]*' | sed "s/^/$l /"
    done
    if [ -n "$n" ]; then
      echo "ip_forward $(ip netns exec "$n" cat /proc/sys/net/ipv4/ip_forward)"
    fi
  } | sed "s/^/$p: /"
done | sort
"#;

fn inventory(sb: &Sandbox) -> Vec<String> {
    sb.sh(INVENTORY).lines().map(String::from).collect()
}

/// What changed between two inventories, as `- gone` / `+ new` lines.
fn diff(before: &[String], after: &[String]) -> String {
    let mut out = Vec::new();
    for l in before.iter().filter(|l| !after.contains(l)) {
        out.push(format!("- {l}"));
    }
    for l in after.iter().filter(|l| !before.contains(l)) {
        out.push(format!("+ {l}"));
    }
    out.join("\n")
}

fn oneshot_cases() -> Vec<Case> {
    vec![
        // ---------------------------------------------------- one-shot grammar
        line(
            "-n a,l1,0.0.0.0/0 -n b,l2",
            2,
            &["address 0.0.0.0/0", "silently ignores"],
        ),
        line(
            "-n a,l1,0.0.0.0/24 -n b,l2",
            2,
            &["0.0.0.0/24", "unspecified"],
        ),
        line(
            "-n a,l1 -n b,l2,::/64",
            2,
            &["::/64", "unspecified address ::"],
        ),
        line(
            "-n a,l1,ff02::1/64 -n b,l2",
            2,
            &["ff02::1/64", "multicast"],
        ),
        line("--json -n a,l1,0.0.0.0/8 -n b,l2", 2, &["0.0.0.0/8"]),
        line(
            "-n a,l1 -n b,l2 --mtu 67",
            2,
            &["--mtu", "'67' is not an MTU"],
        ),
        line(
            "-n a,l1 -n b,l2 --mtu 1500 --mtu 1400",
            2,
            &["--mtu given twice"],
        ),
        line("-n a,l1 -n b,l2 --mtu", 2, &["--mtu needs a value"]),
        args(&["-n", "a,cafà", "-n", "b,l2"], 2, &["'cafà'", "0xA0"]),
        args(&["-n", "a,x\u{b}y", "-n", "b,l2"], 2, &["does not allow"]),
        args(&["-n", "a,x\u{c}y", "-n", "b,l2"], 2, &["does not allow"]),
        args(&["-n", "a,x\u{a0}y", "-n", "b,l2"], 2, &["does not allow"]),
        line("-n a,.. -n b,l2", 2, &["interface name '..' is reserved"]),
        line(
            "-n a,l1 -x up0,10.9.0.2,42,port=4789,port=4790",
            2,
            &["'port' is given twice", "port=4789, port=4790"],
        ),
        line(
            "-n a,l1 -x up0,10.9.0.2,42,mtu=1400,mtu=1400",
            2,
            &["'mtu' is given twice"],
        ),
        line(
            "-n a,vx1 -x up0,0.0.0.0,42",
            2,
            &["remote 0.0.0.0", "unspecified"],
        ),
        line(
            "-n a,vx1 -x up0,10.9.0.2,42,learning=maybe",
            2,
            &["learning 'maybe'"],
        ),
        line(
            "-n a,vx1 -x up0,10.9.0.2,42,local=fd00::1",
            2,
            &["same IP family"],
        ),
        line(
            "-n a,vx1 -X up0,10.9.0.2,42,color=red",
            2,
            &["unknown key 'color'"],
        ),
        line(
            "-n a,vx1 -x up0,10.9.0.2",
            2,
            &["expected -x PARENT,REMOTE,VNI"],
        ),
        line(
            "-n a,mv1 -M up0,fancy",
            2,
            &["unknown macvlan mode 'fancy'"],
        ),
        line("-n a,mv1 -M up0", 2, &["expected -M PARENT,MODE"]),
        line("-n a,v1 -V up0,5000", 2, &["'5000'", "1 to 4094"]),
        line(
            "-n a,l1 -n b,l2 -V up0,5",
            2,
            &["-V takes exactly one endpoint, got 2"],
        ),
        line("-M up0,bridge", 2, &["-M needs one endpoint"]),
        line(
            "-n a,l1 -x up0,10.9.0.2,1 -M up0,bridge",
            2,
            &["only one of -x/-V/-M"],
        ),
        line(
            "-n a,l1,mirror:both -n b,l2",
            2,
            &["names no interface to mirror"],
        ),
        line("-n a,l1 -n b,l2 extra", 2, &["unexpected argument 'extra'"]),
        line("-p 0,l1 -n b,l2", 2, &["'0' is not a process id"]),
        line(
            "-N a,la -N a,la",
            2,
            &["link 'la' in netns 'a' is named twice"],
        ),
        // ---------------------------------------------------- one-shot faults
        line(
            "-n a,la -n b,new1",
            1,
            &["link 'la' already exists in netns 'a'"],
        ),
        line(
            "-n a,vx1 -x nope0,10.9.0.2,42",
            1,
            &["no link 'nope0' in koko's own namespace", "parent of 'vx1'"],
        ),
        line(
            "-n ghost,mv1 -M up0,bridge",
            1,
            &["netns 'ghost'", "does not exist"],
        ),
        line(
            "-n a,mv1 -M lo,bridge",
            1,
            &["'lo' is a loopback device", "Ethernet parent"],
        ),
        line(
            "-n a,mv1 -M p0,bridge",
            1,
            &["'p0' already carries a passthru macvlan"],
        ),
        line(
            "-n a,mv1 -M q0,passthru",
            1,
            &[
                "passthru macvlan must be its parent's only macvlan",
                "'q0' already has macvlans",
            ],
        ),
        line("-n a,mv1 -M mvp,private", 1, &["passthru"]),
        // Refused by the kernel after the veth exists: rolled back.
        line(
            "-n a,l1,::1/128 -n b,l2",
            1,
            &["loopback address ::1", "'l1' is not one"],
        ),
        line(
            "-n a,l1,mirror:both:nope0 -n b,l2",
            1,
            &["no link 'nope0' in netns 'a'", "same namespace"],
        ),
        line(
            "-n a,l1,10.2.0.1/24 -n c,taken",
            1,
            &["link 'taken' already exists in netns 'c'"],
        ),
        // Multi-link delete: every link is looked up before any goes.
        line(
            "-N a,la -N b,nope",
            1,
            &["no link 'nope' in netns 'b'", "nothing was deleted"],
        ),
        line(
            "-N a,la -N ghost,x",
            1,
            &["netns 'ghost'", "nothing was deleted"],
        ),
        line(
            "-N c,taken -C nope",
            1,
            &[
                "no link 'nope' in koko's own namespace",
                "nothing was deleted",
            ],
        ),
        line(
            "-A /run/netns,la",
            1,
            &["/run/netns", "is a directory, not a namespace file"],
        ),
        line(
            "-N a,la -C lo",
            1,
            &[
                "deleting link 'lo'",
                "cannot be deleted",
                "nothing was deleted",
            ],
        ),
    ]
}

fn koro_cases() -> Vec<Case> {
    vec![
        // ---------------------------------------------------- koko ip (koro)
        line(
            "ip ipnetns a -6 route add default via 10.1.0.2",
            2,
            &[
                "'-6' asks for an IPv6 route",
                "gateway '10.1.0.2' is an IPv4 address",
            ],
        ),
        line(
            "ip ipnetns a -6 route add 10.5.0.0/16 dev la",
            2,
            &["'-6'", "destination '10.5.0.0/16' is IPv4"],
        ),
        line(
            "ip ipnetns a -4 route add default via fd00:1::2",
            2,
            &[
                "'-4' asks for an IPv4 route",
                "'fd00:1::2' is an IPv6 address",
            ],
        ),
        line(
            "ip ipnetns a -4 route add fd51::/64 dev la",
            2,
            &["destination 'fd51::/64' is IPv6"],
        ),
        line(
            "ip ipnetns a address add 0.0.0.0/0 dev la",
            2,
            &["address 0.0.0.0/0 cannot be put on a link"],
        ),
        line(
            "ip ipnetns a -6 address add 10.1.0.9/24 dev la",
            2,
            &["'-6' asks for an IPv6 address", "'10.1.0.9/24'"],
        ),
        line(
            "ip ipnetns a address add ff02::5/64 dev la",
            2,
            &["multicast"],
        ),
        line("ip ipnetns a link set la mtu 65536", 2, &["'mtu 65536'"]),
        line(
            "ip ipnetns a route add 10.7.0.0/16 via 10.1.0.2 via 10.1.0.3",
            2,
            &["'via' given twice"],
        ),
        line(
            "ip ipnetns a link set la up down",
            2,
            &["the state is given twice"],
        ),
        line(
            "ip ipnetns a route add default via 10.1.0.2 dev la metric x",
            2,
            &["'x' is not a whole number"],
        ),
        line("ip frob a link set la up", 2, &["unknown target 'frob'"]),
        line(
            "ip ipnetns a route add default via 0.0.0.0 dev la",
            2,
            &["gateway '0.0.0.0' is the unspecified address"],
        ),
        line(
            "ip ipnetns a route add default via :: dev la",
            2,
            &["gateway '::' is the unspecified address"],
        ),
        line(
            "ip ipnetns a route add 10.8.0.0/16 via 224.0.0.1 dev la",
            2,
            &["gateway '224.0.0.1' is a multicast address"],
        ),
        // -h is help only as the first word; as a value it is a name.
        line(
            "ip ipnetns a link set -h up",
            1,
            &["no link '-h' in netns 'a'"],
        ),
        line(
            "ip ipnetns a address add 10.1.0.9/24 dev -h",
            1,
            &["no link '-h' in netns 'a'"],
        ),
        line(
            "ip ipnetns a route add 10.7.0.0/16 via 10.99.0.1",
            1,
            &["10.99.0.1", "not reachable"],
        ),
        line(
            "ip ipnetns a address add 10.1.0.1/24 dev la",
            1,
            &["address 10.1.0.1/24", "already on la in netns 'a'"],
        ),
        line(
            "ip ipnetns a address del 10.1.0.77/24 dev la",
            1,
            &["address 10.1.0.77/24", "is not on la"],
        ),
        line(
            "ip ipnetns a route del 10.66.0.0/16",
            1,
            &["10.66.0.0/16", "no such route"],
        ),
        line(
            "ip ipnetns a route add 10.50.0.0/16 via 10.1.0.2",
            1,
            &["10.50.0.0/16", "already exists"],
        ),
        line(
            "ip ipnetns a link set nope up",
            1,
            &["no link 'nope' in netns 'a'"],
        ),
        line("ip ipnetns ghost link set la up", 1, &["netns 'ghost'"]),
        line("ip pid 4000000 link set la up", 1, &["pid 4000000"]),
        line("ip ipnetns a sysctl net.ipv4.nope=1", 1, &["net.ipv4.nope"]),
    ]
}

fn netns_cases() -> Vec<Case> {
    vec![
        // ---------------------------------------------------- koko netns
        line(
            "netns add n1 b n3",
            1,
            &["netns 'b' already exists", "deleted netns 'n1' again"],
        ),
        line(
            "netns add n1 x/y n3",
            2,
            &["'x/y' is not a valid netns name"],
        ),
        line("netns add n1 n1", 2, &["netns 'n1' is named twice"]),
        line("netns add b", 1, &["netns 'b' already exists"]),
        line("netns add --json", 2, &["usage: koko netns add NAME"]),
        line("netns add -x", 2, &["unknown option '-x'", "after --"]),
        line(
            "netns del a ghost",
            1,
            &["netns 'ghost': does not exist", "nothing was deleted"],
        ),
        line("netns del ..", 2, &["'..' is not a valid netns name"]),
        line("netns list extra", 2, &["usage"]),
        line("netns frob", 2, &["usage"]),
        args(
            Box::leak(Box::new([
                "netns",
                "add",
                "n1",
                Box::leak("n".repeat(256).into_boxed_str()),
            ])),
            2,
            &["is 256 bytes long", "at most 255"],
        ),
    ]
}

fn script_cases() -> Vec<Case> {
    vec![
        // ---------------------------------------------------- scripts
        script(
            r#"on_link_down(netns("a"), "nope", |ev| {});"#,
            1,
            &["no link 'nope' in netns 'a'", "hook"],
        ),
        script(
            r#"on_link_up(netns("a"), "nope", |ev| {});"#,
            1,
            &["no link 'nope' in netns 'a'"],
        ),
        script(
            r#"let x = netns("n1"); veth(x, "l1", netns("b"), "l2"); x.ip("address add 0.0.0.0/0 dev l1");"#,
            1,
            &["0.0.0.0/0", "silently ignores"],
        ),
        script(
            r#"netns("n1").ip("-6 route add default via 10.0.0.1");"#,
            1,
            &["'-6' asks for an IPv6 route"],
        ),
        script(
            r#"koko("-n a,l1 -x up0,10.9.0.2,42,port=1,port=2");"#,
            1,
            &["'port' is given twice"],
        ),
        script(
            r#"koro("ipnetns a link set -h up");"#,
            1,
            &["no link '-h' in netns 'a'"],
        ),
        script(r#"koko("-N a,la -N b,nope");"#, 1, &["nothing was deleted"]),
        script(
            r#"veth(netns("a"), "cafà", netns("b"), "x");"#,
            1,
            &["0xA0"],
        ),
        script(
            r#"macvlan(netns("a"), "mv1", #{parent: "lo", mode: "bridge"});"#,
            1,
            &["loopback device"],
        ),
        script(
            r#"netns("a").link("la").add_addr("0.0.0.0/8");"#,
            1,
            &["0.0.0.0/8"],
        ),
        script(r#"netns("a/b");"#, 1, &["'a/b' is not a valid netns name"]),
        script("let x = ;", 2, &["syntax"]),
        script(
            r#"destroy_all(["a", "ghost"]);"#,
            1,
            &["netns 'ghost'", "nothing was destroyed"],
        ),
        script(
            r#"vxlan(netns("a"), "vx1", #{parent: "up0", remote: "10.9.0.2", vni: 1, port: 1, port: 2});"#,
            2,
            &["Duplicated property", "port"],
        ),
        script(
            r#"vxlan(netns("a"), "vx1", #{parent: "up0", remote: "0.0.0.0", vni: 1});"#,
            1,
            &["remote 0.0.0.0"],
        ),
        script(
            r#"macvlan(netns("a"), "mv1", #{parent: "q0", mode: "passthru"});"#,
            1,
            &["already has macvlans"],
        ),
        // Undo puts back what a link-down flushed: routes and IPv6 addresses.
        script(
            r#"netns("a").ip("link set la down"); throw "boom";"#,
            1,
            &["boom"],
        ),
        script(
            r#"netns("a").ip("link set la mtu 1400"); netns("a").ip("link set nope mtu 1400");"#,
            1,
            &["no link 'nope' in netns 'a'"],
        ),
        script(
            r#"let n = netns("n1"); let m = netns("n2"); veth(n, "x1", m, "x2");
               netns("a").ip("route add 10.60.0.0/16 via 10.99.9.9");"#,
            1,
            &["10.99.9.9", "not reachable"],
        ),
        script(
            r#"let a = netns("a"); a.forwarding(true); a.ip("address add 10.3.0.1/24 dev la");
               a.ip("route add 10.61.0.0/16 via 10.3.0.2"); a.ip("link set la down"); throw "late";"#,
            1,
            &["late"],
        ),
    ]
}

#[test]
fn the_table_has_at_least_60_rows() {
    let rows =
        oneshot_cases().len() + koro_cases().len() + netns_cases().len() + script_cases().len();
    assert!(rows >= 60, "the table has {rows} rows");
}

#[test]
fn bad_oneshot_commands_are_refused_clearly_and_change_nothing() {
    run_table("oneshot", oneshot_cases());
}

#[test]
fn bad_koko_ip_commands_are_refused_clearly_and_change_nothing() {
    run_table("koro", koro_cases());
}

#[test]
fn bad_netns_commands_are_refused_clearly_and_change_nothing() {
    run_table("netns", netns_cases());
}

#[test]
fn bad_scripts_are_refused_clearly_and_change_nothing() {
    run_table("script", script_cases());
}

/// Run every row in one sandbox with the scene; collect every failure.
fn run_table(group: &str, cases: Vec<Case>) {
    let sb = Sandbox::new();
    sb.sh(SCENE);
    // The scene settles (carrier, link-local addresses) before the rows.
    let mut last = Vec::new();
    let settled = poll(Duration::from_secs(5), || {
        let now = inventory(&sb);
        if now == last {
            Ok(now)
        } else {
            last = now;
            Err("still changing".into())
        }
    })
    .expect("the scene settles");
    assert!(
        settled
            .iter()
            .any(|l| l.contains("10.50.0.0/16 via 10.1.0.2")),
        "the scene has its route: {settled:#?}"
    );
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let run = match &case.act {
            Act::Line(l) => sb.koko_line(l),
            Act::Args(a) => sb.koko(a),
            Act::Script(text) => {
                let path = write_script("bad-inputs", &format!("{group}{i}.rhai"), text);
                let mut cmd = sb.command(koko_bin());
                cmd.arg("run").arg(&path).env_remove("KOKO_PATH");
                Run::of(&mut cmd, format!("koko run <<{text}>>"))
            }
        };
        let mut wrong = Vec::new();
        if run.code != case.code {
            wrong.push(format!("exit {} (expected {})", run.code, case.code));
        }
        for n in case.needles {
            if !run.stderr.contains(n) {
                wrong.push(format!("stderr lacks {n:?}"));
            }
        }
        if run.code == 101 || run.stderr.contains("panicked") {
            wrong.push("koko panicked".into());
        }
        // Nothing left, nothing changed (a link going back up takes the
        // kernel's linkwatch a moment: wait for it, bounded).
        if let Err(changes) = poll(Duration::from_secs(3), || {
            let after = inventory(&sb);
            if after == settled {
                Ok(())
            } else {
                Err(diff(&settled, &after))
            }
        }) {
            wrong.push(format!("the kernel changed:\n{changes}"));
            // Put the scene back so the next rows are judged on their own.
            sb.sh("for n in $(ls /run/netns); do case $n in a|b|c) ;; *) ip netns del $n;; esac; done");
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{group} row {i} ({}): {}\nstderr: {}",
                run.what,
                wrong.join("; "),
                run.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {group} rows failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

//! Links that survive restarts (issue 19): `koko run --keep-wired` keeps a
//! lab wired while its containers and namespaces restart.
//!
//! Each test builds a lab with a koko running in the background of the
//! test (in the test's sandbox), restarts what the lab runs in with the
//! engine's own CLI (`docker restart`, `podman restart`, `ip netns del` +
//! `add`), and proves through the kernel (`ip -j` in every namespace) that
//! every link, address, route and sysctl is back, and that traffic flows
//! again. Containers are removed even when a test fails ([`Ctr`]'s Drop);
//! the koko process is killed if a test fails before stopping it.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::script::write_script;
use crate::support::{cri_sandbox, engine_sandbox, wait_for, Ctr, Place, Pod, Running, Sandbox};

/// Long enough for an engine on 2 busy cores; a wait ends as soon as its
/// condition holds.
const SETTLE: Duration = Duration::from_secs(30);

/// koko running a lab in the background, its stdout and stderr read as
/// they come. Killed on drop if the test did not stop it.
struct Lab {
    koko: Running,
}

impl Lab {
    /// `koko run ARGS...` in the sandbox, with `env`; waits until koko
    /// says it keeps the lab wired.
    fn start(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Lab {
        let words: Vec<&str> = std::iter::once("run").chain(args.iter().copied()).collect();
        let lab = Lab {
            koko: Running::koko(sb, &words, env),
        };
        lab.koko
            .err
            .wait_until("koko keeps the lab wired", SETTLE, |t| {
                t.contains("keeping the lab wired")
                    || t.contains("koko: ") && !t.contains("keeping")
            });
        assert!(
            lab.koko.err.text().contains("keeping the lab wired"),
            "koko did not start keeping the lab: {}\nstdout: {}",
            lab.koko.err.text(),
            lab.koko.out.text()
        );
        lab
    }

    /// Send `signal`, wait for koko's exit: (code, stdout, stderr).
    fn stop(self, signal: &str) -> (i32, String, String) {
        self.koko.signal(signal);
        self.koko.exit("koko --keep-wired", SETTLE)
    }

    /// The number of repair lines for `what` ("container 'x'") so far.
    fn repairs(&self, what: &str) -> usize {
        self.koko
            .err
            .text()
            .lines()
            .filter(|l| l.starts_with(&format!("koko: rewired {what}:")))
            .count()
    }

    /// Wait until koko has reported `n` repairs of `what`.
    #[track_caller]
    fn wait_repairs(&self, what: &str, n: usize) {
        self.koko.err.wait_until(
            &format!("koko reports {n} repair(s) of {what}"),
            SETTLE,
            |t| {
                t.lines()
                    .filter(|l| l.starts_with(&format!("koko: rewired {what}:")))
                    .count()
                    >= n
            },
        );
    }
}

/// The repair lines of `what` have the shape koko promises, with a time
/// rounded to 0.1 ms.
#[track_caller]
fn assert_repair_lines(err: &str, what: &str, since: &str) {
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(&format!("koko: rewired {what}:")))
        .collect();
    assert!(!lines.is_empty(), "no repair line for {what}: {err}");
    for l in lines {
        let ms = l
            .rsplit_once(" in ")
            .and_then(|(_, t)| t.strip_suffix(&format!(" ms {since}")))
            .unwrap_or_else(|| panic!("no time in {l:?}"));
        let (_, frac) = ms.split_once('.').unwrap_or_else(|| panic!("{l:?}"));
        assert_eq!(frac.len(), 1, "{l:?}: 0.1 ms rounding");
        let v: f64 = ms.parse().unwrap();
        assert!(v >= 0.0, "{l:?}");
    }
}

// ------------------------------------------------------------ the chain

/// The four containers of the seed's service chain.
struct Chain {
    client: Ctr,
    fw: Ctr,
    router: Ctr,
    web: Ctr,
}

impl Chain {
    fn new(cli: &'static str, tag: &str) -> Chain {
        // These machines withhold CAP_SYS_RESOURCE, and Podman raises the
        // containers' nofile/nproc limits by default: keep them low.
        let opts: &[&str] = if cli == "podman" {
            &[
                "--network",
                "none",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ]
        } else {
            &["--network", "none"]
        };
        let start = |role: &str| Ctr::start(cli, &format!("{tag}-{role}"), opts);
        Chain {
            client: start("client"),
            fw: start("fw"),
            router: start("router"),
            web: start("web"),
        }
    }

    fn names(&self) -> [&str; 4] {
        [
            &self.client.name,
            &self.fw.name,
            &self.router.name,
            &self.web.name,
        ]
    }

    /// `koko run --keep-wired scripts/keep-wired.rhai -- NAMES` (and
    /// `extra` flags), with `env`.
    fn keep_wired(&self, sb: &Sandbox, extra: &[&str], env: &[(&str, &str)]) -> Lab {
        let script = format!("{}/scripts/keep-wired.rhai", env!("CARGO_MANIFEST_DIR"));
        let mut args = vec!["--keep-wired"];
        args.extend(extra);
        args.push(&script);
        args.push("--");
        args.extend(self.names());
        Lab::start(sb, &args, env)
    }

    /// Start busybox httpd in the webserver (again after a restart).
    fn serve(&self) {
        self.web
            .sh("echo pickle-nginx > /tmp/index.html && (httpd -p 80 -h /tmp || true)");
    }

    /// Through the kernel, in each container's current namespace: the
    /// chain as the script built it (`Err` says what is missing).
    fn state(&self, sb: &Sandbox) -> Result<(), String> {
        let ends = [
            (&self.client, "link1", "10.0.1.1/24"),
            (&self.fw, "link2", "10.0.1.2/24"),
            (&self.fw, "link3", "10.0.2.1/24"),
            (&self.router, "link4", "10.0.2.2/24"),
            (&self.router, "link5", "10.0.3.1/24"),
            (&self.web, "link6", "10.0.3.2/24"),
        ];
        let mut links: Vec<Value> = Vec::new();
        for (c, name, addr) in ends {
            let place = Place::from(c);
            let l = sb
                .link(place.clone(), name)
                .ok_or(format!("no {name} in {}", c.name))?;
            if !l["flags"].as_array().unwrap().iter().any(|f| f == "UP") || l["mtu"] != 1500 {
                return Err(format!("{name} in {}: {l}", c.name));
            }
            let addrs = sb.addrs(place, name);
            if addrs != [addr] {
                return Err(format!("{name} in {} has {addrs:?}, not {addr}", c.name));
            }
            links.push(l);
        }
        for pair in links.chunks(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a["link_index"] != b["ifindex"] || b["link_index"] != a["ifindex"] {
                return Err(format!("not one veth pair:\n{a}\n{b}"));
            }
        }
        let routes = [
            (&self.client, "default", "10.0.1.2", "link1"),
            (&self.fw, "10.0.3.0/24", "10.0.2.2", "link3"),
            (&self.router, "10.0.1.0/24", "10.0.2.1", "link4"),
            (&self.web, "default", "10.0.3.1", "link6"),
        ];
        for (c, dst, via, dev) in routes {
            let r = sb
                .route(c, dst)
                .ok_or(format!("no route to {dst} in {}", c.name))?;
            if r["gateway"] != via || r["dev"] != dev {
                return Err(format!("route to {dst} in {}: {r}", c.name));
            }
        }
        for c in [&self.fw, &self.router] {
            let v = sb.sysctl(c, "net.ipv4.ip_forward");
            if v != "1" {
                return Err(format!("ip_forward is {v} in {}", c.name));
            }
        }
        Ok(())
    }

    /// Wait until the whole chain is there again.
    #[track_caller]
    fn wait_whole(&self, sb: &Sandbox, after: &str) {
        wait_for(
            &format!("the chain is whole again after {after}"),
            SETTLE,
            || self.state(sb),
        );
    }

    /// HTTP from the client to the webserver (busybox nc in the client).
    #[track_caller]
    fn wait_http(&self) {
        wait_for("HTTP from client to webserver", SETTLE, || {
            let (_, text) = self
                .client
                .exec("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 3 nc 10.0.3.2 80");
            if text.contains("200 OK") && text.contains("pickle-nginx") {
                Ok(())
            } else {
                Err(text)
            }
        });
    }

    /// No link but lo (and nothing koko made) in any container.
    #[track_caller]
    fn assert_unwired(&self, sb: &Sandbox) {
        for c in [&self.client, &self.fw, &self.router, &self.web] {
            wait_until_no_links(sb, c);
        }
    }
}

#[track_caller]
fn wait_until_no_links(sb: &Sandbox, c: &Ctr) {
    wait_for(
        &format!("no link left in {}", c.name),
        SETTLE,
        || match sb.link_names(c) {
            names if names.is_empty() => Ok(()),
            names => Err(format!("{names:?}")),
        },
    );
}

/// `CLI ARGS...` must succeed.
#[track_caller]
fn engine(cli: &str, args: &[&str]) {
    let out = std::process::Command::new(cli).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cli} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `docker restart` and `docker stop` + `docker start` of the firewall:
/// every link, address, route and sysctl comes back (read from the kernel
/// in all four containers), HTTP flows again, and the repair line says
/// when. SIGTERM then ends the watch and undoes the whole lab.
#[test]
fn docker_restart_and_stop_start_of_the_firewall_rewire_the_chain() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let chain = Chain::new("docker", "rw1");
    let lab = chain.keep_wired(&sb, &[], &[]);
    chain.wait_whole(&sb, "the build");
    chain.serve();
    chain.wait_http();
    let fw = format!("container '{}'", chain.fw.name);

    let old_pid = chain.fw.pid();
    engine("docker", &["restart", "-t", "0", &chain.fw.name]);
    assert_ne!(chain.fw.pid(), old_pid, "a restart makes a new namespace");
    lab.wait_repairs(&fw, 1);
    chain.wait_whole(&sb, "docker restart");
    chain.wait_http();

    engine("docker", &["stop", "-t", "0", &chain.fw.name]);
    engine("docker", &["start", &chain.fw.name]);
    lab.wait_repairs(&fw, 2);
    chain.wait_whole(&sb, "docker stop + start");
    chain.wait_http();
    assert_eq!(
        lab.repairs(&format!("container '{}'", chain.client.name)),
        0
    );

    let (code, out, err) = lab.stop("TERM");
    assert_eq!(code, 128 + 15, "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert_repair_lines(&err, &fw, "after its start event");
    assert!(
        err.contains(&format!(
            "koko: rewired {fw}: 2 link(s), 4 address(es), 3 route(s), 2 sysctl(s) in "
        )),
        "{err}"
    );
    assert!(
        out.contains(&format!("rewired {}: 2 links", chain.fw.name)),
        "{out}"
    );
    chain.assert_unwired(&sb);
    assert_eq!(sb.sh("ls /run/koko"), "", "the journal is gone");
}

/// The same with Podman, through its Docker-compatible API.
#[test]
fn podman_restart_of_the_firewall_rewires_the_chain() {
    let Some(sb) = engine_sandbox("podman") else {
        return;
    };
    let chain = Chain::new("podman", "rwp");
    let host = format!("unix://{}", crate::support::PODMAN_SOCK);
    let lab = chain.keep_wired(&sb, &[], &[("DOCKER_HOST", &host)]);
    chain.wait_whole(&sb, "the build");
    chain.serve();
    chain.wait_http();
    let old_pid = chain.fw.pid();
    engine("podman", &["restart", "-t", "0", &chain.fw.name]);
    assert_ne!(chain.fw.pid(), old_pid);
    lab.wait_repairs(&format!("container '{}'", chain.fw.name), 1);
    chain.wait_whole(&sb, "podman restart");
    chain.wait_http();
    let (code, _, err) = lab.stop("INT");
    assert_eq!(code, 128 + 2, "{err}");
    assert_repair_lines(
        &err,
        &format!("container '{}'", chain.fw.name),
        "after its start event",
    );
    chain.assert_unwired(&sb);
}

/// Both ends of one link (firewall and router) restarted at the same
/// time, then two containers restarted back to back (the second while the
/// first one's repair may be running): the lab converges to the whole
/// chain each time.
#[test]
fn simultaneous_and_back_to_back_restarts_converge_to_the_full_lab() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let chain = Chain::new("docker", "rw2");
    let lab = chain.keep_wired(&sb, &[], &[]);
    chain.wait_whole(&sb, "the build");
    chain.serve();

    let both: Vec<Child> = [&chain.fw, &chain.router]
        .iter()
        .map(|c| {
            std::process::Command::new("docker")
                .args(["restart", "-t", "0", &c.name])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in both {
        assert!(c.wait().unwrap().success());
    }
    lab.wait_repairs(&format!("container '{}'", chain.fw.name), 1);
    lab.wait_repairs(&format!("container '{}'", chain.router.name), 1);
    chain.wait_whole(&sb, "firewall and router restarted at once");
    chain.wait_http();

    engine("docker", &["restart", "-t", "0", &chain.client.name]);
    engine("docker", &["restart", "-t", "0", &chain.web.name]);
    chain.serve();
    lab.wait_repairs(&format!("container '{}'", chain.client.name), 1);
    lab.wait_repairs(&format!("container '{}'", chain.web.name), 1);
    chain.wait_whole(&sb, "client and webserver restarted back to back");
    chain.wait_http();
    let (code, _, err) = lab.stop("TERM");
    assert_eq!(code, 143, "{err}");
    chain.assert_unwired(&sb);
}

/// A container removed for good (`docker rm -f`) is reported, its links
/// are not re-created, and the rest of the lab stays as it was.
#[test]
fn a_removed_container_is_reported_and_not_rewired() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let chain = Chain::new("docker", "rw3");
    let lab = chain.keep_wired(&sb, &[], &[]);
    chain.wait_whole(&sb, "the build");
    engine("docker", &["rm", "-f", &chain.web.name]);
    let gone = format!(
        "koko: container '{}' was removed: its 1 link(s) are not re-created",
        chain.web.name
    );
    lab.koko.err.wait_for_text(&gone, SETTLE);
    // The router's end of link5 went with the webserver's namespace, and
    // stays gone; everything else is intact.
    wait_for("link5 gone from the router", SETTLE, || {
        match sb.link(&chain.router, "link5") {
            None => Ok(()),
            Some(l) => Err(l.to_string()),
        }
    });
    assert_eq!(sb.link_names(&chain.router), ["link4"]);
    assert_eq!(sb.addrs(&chain.fw, "link2"), ["10.0.1.2/24"]);
    assert_eq!(sb.addrs(&chain.fw, "link3"), ["10.0.2.1/24"]);
    assert_eq!(sb.link_names(&chain.client), ["link1"]);
    assert!(sb.route(&chain.fw, "10.0.3.0/24").is_some());
    // A restart of another container still repairs it (the lab goes on).
    engine("docker", &["restart", "-t", "0", &chain.client.name]);
    lab.wait_repairs(&format!("container '{}'", chain.client.name), 1);
    wait_for("client rewired", SETTLE, || {
        match sb.addrs(&chain.client, "link1").as_slice() {
            [a] if a == "10.0.1.1/24" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(sb.link_names(&chain.router), ["link4"], "link5 not re-made");
    let (code, _, err) = lab.stop("TERM");
    assert_eq!(code, 143, "{err}");
    assert_eq!(lab_lines(&err, "rewired container"), 1, "{err}");
    for c in [&chain.client, &chain.fw, &chain.router] {
        wait_until_no_links(&sb, c);
    }
}

fn lab_lines(err: &str, needle: &str) -> usize {
    err.lines().filter(|l| l.contains(needle)).count()
}

// ------------------------------------------------------------ ip netns

/// A netns lab: `a` - `b` with an MTU, addresses, a route through the
/// link and forwarding; `on_rewired` prints the event map as JSON.
const NETNS_LAB: &str = r#"
let a = netns("a");  let b = netns("b");
a.forwarding(true);
veth(a, "l1", b, "l2", #{mtu: 1400, a_addrs: ["10.0.1.1/24"], b_addrs: ["10.0.1.2/24"]});
a.ip("address add 10.7.0.1/24 dev l1");
b.ip("route add 10.9.0.0/24 via 10.0.1.1 dev l2");
on_rewired(|ev| print(`hook: ${ev.to_json()}`));
keep_wired();
print("built");
"#;

/// Through the kernel: the netns lab as built.
fn netns_lab_state(sb: &Sandbox) -> Result<(), String> {
    let l1 = sb.link(Some("a"), "l1").ok_or("no l1 in a")?;
    let l2 = sb.link(Some("b"), "l2").ok_or("no l2 in b")?;
    if l1["mtu"] != 1400 || l2["mtu"] != 1400 {
        return Err(format!("MTU: {l1} {l2}"));
    }
    if l1["link_index"] != l2["ifindex"] || l2["link_index"] != l1["ifindex"] {
        return Err(format!("not a pair: {l1} {l2}"));
    }
    let a = sb.addrs(Some("a"), "l1");
    if a != ["10.0.1.1/24", "10.7.0.1/24"] {
        return Err(format!("a: {a:?}"));
    }
    let b = sb.addrs(Some("b"), "l2");
    if b != ["10.0.1.2/24"] {
        return Err(format!("b: {b:?}"));
    }
    match sb.route(Some("b"), "10.9.0.0/24") {
        Some(r) if r["gateway"] == "10.0.1.1" && r["dev"] == "l2" => {}
        other => return Err(format!("route in b: {other:?}")),
    }
    if sb.sysctl(Some("a"), "net.ipv4.ip_forward") != "1" {
        return Err("forwarding off in a".into());
    }
    Ok(())
}

/// `ip netns del a; ip netns add a`: a new namespace under the old name is
/// rewired (and the peer's address and route through the link restored);
/// `on_rewired` gets the event map; TCP flows across the link again.
/// SIGTERM then undoes the lab: the links and `b` go, and the `a` the
/// test made is left alone (not the run's) but emptied of koko's links.
#[test]
fn ip_netns_made_again_is_rewired_and_the_hook_gets_the_event() {
    let sb = Sandbox::new();
    let script = write_script("rewire", "lab.rhai", NETNS_LAB);
    let lab = Lab::start(&sb, &[script.to_str().unwrap()], &[]);
    wait_for("the lab is built", SETTLE, || netns_lab_state(&sb));
    sb.sh("ip netns del a && ip netns add a");
    lab.wait_repairs("netns 'a'", 1);
    wait_for("the lab is whole again", SETTLE, || netns_lab_state(&sb));
    sb.assert_tcp("a", "b", "10.0.1.1:7000");
    lab.koko.out.wait_for_text("hook: ", SETTLE);
    let (code, out, err) = lab.stop("TERM");
    assert_eq!(code, 143, "{err}");
    assert_repair_lines(&err, "netns 'a'", "after its namespace appeared");
    let hook = out
        .lines()
        .find_map(|l| l.strip_prefix("hook: "))
        .unwrap_or_else(|| panic!("no hook output: {out}"));
    let ev: Value = serde_json::from_str(hook).unwrap();
    assert_eq!(ev["kind"], "rewired", "{ev}");
    assert_eq!(ev["namespace"], "a", "{ev}");
    assert_eq!(ev["ns_kind"], "netns", "{ev}");
    assert_eq!(ev["links"], 1, "{ev}");
    assert_eq!(ev["addresses"], 3, "{ev}");
    assert_eq!(ev["routes"], 1, "{ev}");
    assert_eq!(ev["sysctls"], 2, "{ev}");
    assert!(ev["ms_after_start"].as_f64().unwrap() >= 0.0, "{ev}");
    assert!(ev["time"].as_f64().unwrap() > 1.7e12, "{ev}");
    // Undone: b is gone; the a the test made stays (it is not the run's)
    // without any link koko made.
    assert_eq!(sb.netns_list(), ["a"]);
    assert!(sb.link_names(Some("a")).is_empty());
    assert_eq!(sb.sh("ls /run/koko"), "");
}

/// `--keep`: SIGINT ends the watch and the lab stays, its journal on disk:
/// `koko runs` lists the run, and `koko undo RUN` removes all of it,
/// repairs included.
#[test]
fn a_kept_lab_stays_listed_and_koko_undo_removes_it() {
    let sb = Sandbox::new();
    let script = write_script("rewire", "lab.rhai", NETNS_LAB);
    let lab = Lab::start(&sb, &["--keep", script.to_str().unwrap()], &[]);
    wait_for("the lab is built", SETTLE, || netns_lab_state(&sb));
    sb.sh("ip netns del b && ip netns add b");
    lab.wait_repairs("netns 'b'", 1);
    wait_for("the lab is whole again", SETTLE, || netns_lab_state(&sb));
    let (code, _, err) = lab.stop("INT");
    assert_eq!(code, 130, "{err}");
    let id = err
        .lines()
        .find_map(|l| l.strip_prefix("koko: the lab stays; `koko undo "))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no run id: {err}"))
        .to_string();
    // Still there, through the kernel, after koko ended.
    netns_lab_state(&sb).unwrap();
    let runs = sb.koko(&["runs"]);
    runs.ok();
    runs.stdout_has(&id);
    runs.stdout_has("dead");
    sb.koko(&["undo", &id]).ok();
    // Everything the run made is gone; the b the test made is left alone
    // (not the run's), empty.
    assert_eq!(sb.netns_list(), ["b"]);
    assert!(sb.link_names(Some("b")).is_empty());
    assert_eq!(sb.sh("ls /run/koko"), "");
}

/// SIGTERM during the watch undoes everything: nothing is left in any
/// namespace, and no journal.
#[test]
fn sigterm_ends_the_watch_and_undoes_the_lab() {
    let sb = Sandbox::new();
    let script = write_script("rewire", "lab.rhai", NETNS_LAB);
    let lab = Lab::start(&sb, &[script.to_str().unwrap()], &[]);
    wait_for("the lab is built", SETTLE, || netns_lab_state(&sb));
    let (code, _, err) = lab.stop("TERM");
    assert_eq!(code, 143, "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    crate::support::script::assert_clean(&sb, "after SIGTERM");
}

/// A lab with a mirror (l1's traffic copied out through mon) and an
/// impairment on l1 (rate on a's end, loss on b's): both are made again
/// with the links when `a` is made again.
const TC_LAB: &str = r#"
let a = netns("a");  let b = netns("b");  let m = netns("m");
let l1 = veth(a, "l1", b, "l2", #{a_addrs: ["10.0.1.1/24"], b_addrs: ["10.0.1.2/24"]});
let mon = veth(a, "mon", m, "tap");
mon.mirror("both", l1);
l1.impair(#{rate: "1mbit", loss_pct: 5.0});
keep_wired();
print("built");
"#;

/// What the kernel has on the lab's links: l1's root qdiscs, the number
/// of tc filters on l1 (both hooks: the mirror) and on l2's ingress (the
/// loss).
fn tc_state(sb: &Sandbox) -> (Vec<String>, usize, usize, usize) {
    (
        sb.qdisc_kinds(Some("a"), "l1"),
        sb.tc_filters(Some("a"), "l1", "ingress").len(),
        sb.tc_filters(Some("a"), "l1", "egress").len(),
        sb.tc_filters(Some("b"), "l2", "ingress").len(),
    )
}

#[test]
fn mirrors_and_impairments_come_back_with_the_links() {
    let sb = Sandbox::new();
    let script = write_script("rewire", "tc.rhai", TC_LAB);
    let lab = Lab::start(&sb, &[script.to_str().unwrap()], &[]);
    let before = tc_state(&sb);
    assert!(before.0.contains(&"tbf".to_string()), "{before:?}");
    assert!(before.1 > 0 && before.2 > 0 && before.3 > 0, "{before:?}");
    sb.sh("ip netns del a && ip netns add a");
    lab.wait_repairs("netns 'a'", 1);
    wait_for("l1, l2, mon and tap are back", SETTLE, || {
        for (ns, l) in [("a", "l1"), ("b", "l2"), ("a", "mon"), ("m", "tap")] {
            sb.link(Some(ns), l).ok_or(format!("no {l} in {ns}"))?;
        }
        Ok::<(), String>(())
    });
    assert_eq!(tc_state(&sb), before);
    let mirror = sb.tc_filters(Some("a"), "l1", "egress");
    assert!(
        mirror.iter().any(|f| f.to_string().contains("mirred")),
        "{mirror:?}"
    );
    let (code, _, err) = lab.stop("TERM");
    assert_eq!(code, 143, "{err}");
    assert!(
        err.contains("koko: rewired netns 'a': 2 link(s), 2 address(es), 0 route(s), 0 sysctl(s), 1 mirror(s), 1 impairment(s) in "),
        "{err}"
    );
    assert!(!err.contains("is not re-created"), "{err}");
    // Undone: b and m are gone; the a the test made is left alone, empty.
    assert_eq!(sb.netns_list(), ["a"]);
    assert!(sb.link_names(Some("a")).is_empty());
}

/// A link whose other end is down waits for it: the firewall restarts
/// while the router is stopped, so only its link to the client is made;
/// when the router starts, the firewall–router link and the routes through
/// it come back, and the chain is whole.
#[test]
fn a_link_to_a_stopped_peer_is_made_when_the_peer_starts() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let chain = Chain::new("docker", "rw4");
    let lab = chain.keep_wired(&sb, &[], &[]);
    chain.wait_whole(&sb, "the build");
    chain.serve();
    engine("docker", &["stop", "-t", "0", &chain.router.name]);
    engine("docker", &["restart", "-t", "0", &chain.fw.name]);
    lab.wait_repairs(&format!("container '{}'", chain.fw.name), 1);
    wait_for("the firewall has link2 again", SETTLE, || {
        match sb.addrs(&chain.fw, "link2").as_slice() {
            [a] if a == "10.0.1.2/24" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(
        sb.link(&chain.fw, "link3").is_none(),
        "link3 waits for the router"
    );
    assert_eq!(sb.sysctl(&chain.fw, "net.ipv4.ip_forward"), "1");
    engine("docker", &["start", &chain.router.name]);
    lab.wait_repairs(&format!("container '{}'", chain.router.name), 1);
    chain.wait_whole(&sb, "the router started again");
    chain.wait_http();
    let (code, _, err) = lab.stop("TERM");
    assert_eq!(code, 143, "{err}");
    chain.assert_unwired(&sb);
}

/// `--keep-wired` on a script that fails: no watch, the run is undone and
/// exits 1 as any failing run.
#[test]
fn a_failing_script_is_not_kept_wired() {
    let sb = Sandbox::new();
    let script = write_script(
        "rewire",
        "fails.rhai",
        r#"let a = netns("a"); let b = netns("b"); veth(a, "l1", b, "l2"); throw "broken";"#,
    );
    let r = sb.koko(&["run", "--keep-wired", script.to_str().unwrap()]);
    r.fails(1, "broken");
    assert!(!r.stderr.contains("keeping the lab wired"), "{}", r.stderr);
    crate::support::script::assert_clean(&sb, "a failing --keep-wired run");
}

/// A drill that restarts a namespace and then only sleeps (no `watch`):
/// repairs go on during `sleep()`, with their `on_rewired` hooks, so the
/// script sees its link come back without a watch loop; `keep_wired(false)`
/// then lets the run end with its last statement.
#[test]
fn repairs_go_on_while_the_script_sleeps() {
    let sb = Sandbox::new();
    let script = write_script(
        "rewire",
        "sleep.rhai",
        r#"
let a = netns("a");  let b = netns("b");
veth(a, "l1", b, "l2", #{a_addrs: ["10.0.1.1/24"], b_addrs: ["10.0.1.2/24"]});
on_rewired(|ev| print(`hook: ${ev.namespace}`));
keep_wired();
b.exec(["sh", "-c", "ip netns del a && ip netns add a"]);
let t = now_ms();
while b.exec(["ip", "-n", "a", "link", "show", "l1"]).code != 0 {
    if now_ms() - t > 20000 { throw "l1 never came back while the script slept"; }
    sleep(20);
}
print("back during sleep");
keep_wired(false);
"#,
    );
    let run = crate::support::script::run(&sb, &[script.to_str().unwrap()]);
    run.ok();
    run.stdout_has("hook: a");
    run.stdout_has("back during sleep");
    assert_repair_lines(&run.stderr, "netns 'a'", "after its namespace appeared");
    // The run ended with its last statement and kept its (repaired) lab:
    // through the kernel, the new `a` has l1 again, paired with b's l2.
    let l1 = sb.link(Some("a"), "l1").expect("l1 in the new a");
    let l2 = sb.link(Some("b"), "l2").expect("l2 in b");
    assert_eq!(l1["link_index"], l2["ifindex"], "{l1} {l2}");
    assert_eq!(sb.addrs(Some("a"), "l1"), ["10.0.1.1/24"]);
    assert_eq!(sb.addrs(Some("b"), "l2"), ["10.0.1.2/24"]);
}

// ------------------------------------------------------------ CRI pods

/// A CRI lab: pods `a` - `b` (named in the script by CRI ids: a sandbox
/// id prefix, a container's or a sandbox's full id), a link with an MTU and
/// addresses, an address added on a's end, a route in b through the link;
/// `on_rewired` prints the event map as JSON.
fn cri_lab(a: &str, b: &str) -> String {
    format!(
        r#"
let a = cri("{a}");  let b = cri("{b}");
veth(a, "l1", b, "l2", #{{mtu: 1400, a_addrs: ["10.0.1.1/24"], b_addrs: ["10.0.1.2/24"]}});
a.ip("address add 10.7.0.1/24 dev l1");
b.ip("route add 10.9.0.0/24 via 10.0.1.1 dev l2");
on_rewired(|ev| print(`hook: ${{ev.to_json()}}`));
keep_wired();
print("built");
"#
    )
}

const CRI_ENV: [(&str, &str); 1] = [("CONTAINER_RUNTIME_ENDPOINT", crate::support::CRI_ENDPOINT)];

/// Through the kernel, in the pods' current sandboxes: the CRI lab as built.
fn cri_lab_state(sb: &Sandbox, a: &Pod, b: &Pod) -> Result<(), String> {
    let l1 = sb.link(a, "l1").ok_or("no l1 in pod a")?;
    let l2 = sb.link(b, "l2").ok_or("no l2 in pod b")?;
    if l1["mtu"] != 1400 || l2["mtu"] != 1400 {
        return Err(format!("MTU: {l1} {l2}"));
    }
    if l1["link_index"] != l2["ifindex"] || l2["link_index"] != l1["ifindex"] {
        return Err(format!("not a pair: {l1} {l2}"));
    }
    let addrs = sb.addrs(a, "l1");
    if addrs != ["10.0.1.1/24", "10.7.0.1/24"] {
        return Err(format!("pod a: {addrs:?}"));
    }
    let addrs = sb.addrs(b, "l2");
    if addrs != ["10.0.1.2/24"] {
        return Err(format!("pod b: {addrs:?}"));
    }
    match sb.route(b, "10.9.0.0/24") {
        Some(r) if r["gateway"] == "10.0.1.1" && r["dev"] == "l2" => Ok(()),
        other => Err(format!("route in pod b: {other:?}")),
    }
}

fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// The links of a pod's namespace other than `lo`.
fn pod_links(sb: &Sandbox, pod: &Pod) -> Vec<String> {
    sb.link_names(pod)
        .into_iter()
        .filter(|l| l != "lo")
        .collect()
}

/// What koko calls a pod in its lines: "CRI pod 'k8s-namespace/name'".
fn pod_what(pod: &Pod) -> String {
    format!("CRI pod 'koko-test/{}'", pod.name)
}

/// A pod's sandbox dies and the kubelet makes a new one (stop + remove,
/// then a new sandbox with the same name and namespace, attempt + 1: a new
/// id and network namespace): koko finds it by the pod's metadata and
/// re-wires it — link, addresses, the peer's route — and TCP flows again;
/// the repair is printed and given to `on_rewired`. SIGTERM then undoes the
/// lab: nothing is left in either pod.
#[test]
fn a_cri_pod_whose_sandbox_is_made_again_is_rewired_and_sigterm_undoes_it() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    let (mut a, b) = (Pod::new("rwa"), Pod::new("rwb"));
    let script = write_script("rewire", "cri.rhai", &cri_lab(&a.id[..12], &b.id));
    let lab = Lab::start(&sb, &[script.to_str().unwrap()], &CRI_ENV);
    wait_for("the lab is built", SETTLE, || cri_lab_state(&sb, &a, &b));
    let (old_id, old_ns) = (a.id.clone(), a.ns_path());
    a.recreate();
    let ready_ms = epoch_ms();
    assert_ne!(a.id, old_id);
    assert!(!old_ns.exists(), "the old sandbox's namespace is gone");
    let what = pod_what(&a);
    lab.wait_repairs(&what, 1);
    wait_for("the lab is whole again", SETTLE, || {
        cri_lab_state(&sb, &a, &b)
    });
    crate::support::assert_tcp(a.ns_path(), b.ns_path(), "10.0.1.1:7000");
    lab.koko.out.wait_for_text("hook: ", SETTLE);
    let (code, out, err) = lab.stop("TERM");
    assert_eq!(code, 143, "{err}");
    assert_repair_lines(&err, &what, "after its sandbox was created");
    // One repair: the peer's part of it (l2's address, the route) is in
    // the repair of the pod that came back.
    assert_eq!(lab_lines(&err, "koko: rewired"), 1, "{err}");
    let hook = out
        .lines()
        .find_map(|l| l.strip_prefix("hook: "))
        .unwrap_or_else(|| panic!("no hook output: {out}"));
    let ev: Value = serde_json::from_str(hook).unwrap();
    assert_eq!(ev["kind"], "rewired", "{ev}");
    assert_eq!(ev["namespace"], format!("koko-test/{}", a.name), "{ev}");
    assert_eq!(ev["ns_kind"], "cri", "{ev}");
    assert_eq!(ev["links"], 1, "{ev}");
    assert_eq!(ev["addresses"], 3, "{ev}");
    assert_eq!(ev["routes"], 1, "{ev}");
    let ms = ev["ms_after_start"].as_f64().unwrap();
    assert!(ms >= 0.0, "{ev}");
    let after_ready = ev["time"].as_f64().unwrap() - ready_ms;
    eprintln!(
        "repair of a re-created CRI pod: {ms} ms after its sandbox was created, \
         {after_ready:.1} ms after RunPodSandbox returned"
    );
    // Undone, through the kernel: nothing of the lab in either pod.
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert_eq!(pod_links(&sb, &a), Vec::<String>::new());
    assert_eq!(pod_links(&sb, &b), Vec::<String>::new());
    assert_eq!(sb.sh("ls /run/koko"), "");
}

/// A container of a pod ends and the next one starts in the same sandbox
/// (what the kubelet does on a container restart): the pod's network
/// namespace, and every link in it, stays, so koko repairs nothing. The
/// lab names pod a by the *container's* id. To know koko has looked after
/// the container's restart, pod b's sandbox is then made again: its repair
/// is reported, and none of pod a.
#[test]
fn a_container_restarted_inside_its_cri_pod_is_not_repaired() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    let (a, mut b) = (Pod::new("rwc"), Pod::new("rwd"));
    let ctr = a.container("app", true);
    let script = write_script("rewire", "cri.rhai", &cri_lab(&ctr, &b.id[..12]));
    let lab = Lab::start(&sb, &[script.to_str().unwrap()], &CRI_ENV);
    wait_for("the lab is built", SETTLE, || cri_lab_state(&sb, &a, &b));
    let pause = a.pid();
    a.remove_container(&ctr);
    let next = a.container("app", true);
    assert_ne!(next, ctr);
    assert_eq!(a.pid(), pause, "the same sandbox");
    // Nothing was lost: the namespace is the pod's.
    cri_lab_state(&sb, &a, &b).unwrap();
    b.recreate();
    lab.wait_repairs(&pod_what(&b), 1);
    wait_for("the lab is whole again", SETTLE, || {
        cri_lab_state(&sb, &a, &b)
    });
    assert_eq!(lab.repairs(&pod_what(&a)), 0, "{}", lab.koko.err.text());
    let (code, _, err) = lab.stop("TERM");
    assert_eq!(code, 143, "{err}");
    assert_eq!(lab_lines(&err, "koko: rewired"), 1, "{err}");
    assert_eq!(pod_links(&sb, &a), Vec::<String>::new());
    assert_eq!(pod_links(&sb, &b), Vec::<String>::new());
}

/// A lab that names a pod by a container's id, then that container is
/// restarted inside its pod (nothing to repair) and koko gets SIGTERM: the
/// link made through the old container is still undone — nothing of the
/// lab is left in either pod.
#[test]
fn sigterm_after_a_container_restart_inside_its_cri_pod_undoes_the_lab() {
    let Some(sb) = cri_sandbox() else {
        return;
    };
    let (a, b) = (Pod::new("rwe"), Pod::new("rwf"));
    let ctr = a.container("app", true);
    let script = write_script("rewire", "cri.rhai", &cri_lab(&ctr, &b.id[..12]));
    let lab = Lab::start(&sb, &[script.to_str().unwrap()], &CRI_ENV);
    wait_for("the lab is built", SETTLE, || cri_lab_state(&sb, &a, &b));
    a.remove_container(&ctr);
    a.container("app", true);
    // koko has seen the old container's handle go once its journal on
    // disk has the link's step again, held through the pod.
    wait_for("the step is held through the pod", SETTLE, || {
        let journals = sb.sh("cat /run/koko/* 2>/dev/null; true");
        if journals.contains("held through its pod") {
            Ok(())
        } else {
            Err(journals)
        }
    });
    let (code, _, err) = lab.stop("TERM");
    assert_eq!(code, 143, "{err}");
    assert_eq!(lab_lines(&err, "koko: rewired"), 0, "{err}");
    assert_eq!(pod_links(&sb, &a), Vec::<String>::new());
    assert_eq!(pod_links(&sb, &b), Vec::<String>::new());
    assert_eq!(sb.sh("ls /run/koko"), "");
}

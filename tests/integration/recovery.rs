//! Nothing lost, nothing left, nobody else's work touched (issue 14): the
//! journal on disk, `koko runs` / `koko undo`, the ownership marks, and
//! undo's identity checks. Results are read through the kernel (`ip -j`)
//! and the sandbox's own /run/koko.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::script::{run as koko_run, write_script};
use crate::support::{koko_bin, wait_exit, wait_for, Place, Sandbox, Tail};

/// The runs `koko runs --json` lists in the sandbox.
fn runs(sb: &Sandbox) -> Vec<Value> {
    let out = sb.koko(&["runs", "--json"]);
    out.ok();
    out.json()["runs"].as_array().cloned().unwrap_or_default()
}

/// The journal files in the sandbox's /run/koko.
fn journal_files(sb: &Sandbox) -> Vec<String> {
    sb.sh("ls /run/koko")
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Start `koko ARGS` in the sandbox in the background (stderr followed).
fn spawn_koko(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> (Child, Tail) {
    let mut cmd = sb.command(koko_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("koko starts");
    let tail = Tail::new(child.stderr.take().unwrap());
    (child, tail)
}

/// Wait until `koko runs` lists one live run with `steps` steps; its id
/// and pid.
fn wait_for_run(sb: &Sandbox, steps: u64) -> (String, u32) {
    wait_for(
        &format!("koko runs to list a live run with {steps} step(s)"),
        Duration::from_secs(20),
        || match runs(sb).as_slice() {
            [r] if r["alive"] == true && r["steps"] == steps => Ok((
                r["id"].as_str().unwrap().to_string(),
                r["pid"].as_u64().unwrap() as u32,
            )),
            other => Err(format!("{other:?}")),
        },
    )
}

/// SIGKILL koko (a process this test started, by its pid).
fn kill9(child: &mut Child, pid: u32, what: &str) {
    assert_eq!(child.id(), pid, "nsenter runs koko itself (no fork)");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = wait_exit(child, what, Duration::from_secs(10));
    assert!(!status.success());
}

/// The alias (ownership mark) of `link` in netns `ns`.
fn alias(sb: &Sandbox, ns: &str, link: &str) -> Option<String> {
    sb.link(Place::Netns(ns.into()), link)
        .and_then(|l| l["ifalias"].as_str().map(str::to_string))
}

#[test]
fn a_script_killed_by_sigkill_is_undone_by_undo_dead() {
    let sb = Sandbox::new();
    let file = write_script(
        "recovery",
        "killed.rhai",
        r#"
        let a = netns("ka");
        let b = netns("kb");
        veth(a, "l1", b, "l2");
        sleep(60000);
        "#,
    );
    let (mut child, _tail) = spawn_koko(&sb, &["run", file.to_str().unwrap()], &[]);
    let (id, pid) = wait_for_run(&sb, 3);

    // While it is alive, its objects carry its mark, and undo refuses it.
    let mark = format!("koko:{id}");
    assert_eq!(alias(&sb, "ka", "l1").as_deref(), Some(mark.as_str()));
    assert_eq!(alias(&sb, "kb", "l2").as_deref(), Some(mark.as_str()));
    assert_eq!(alias(&sb, "ka", "lo").as_deref(), Some(mark.as_str()));
    sb.koko(&["undo", &id])
        .fails(1, &format!("pid {pid}"))
        .stderr_has("still running");
    assert_eq!(
        sb.netns_list(),
        vec!["ka", "kb"],
        "a refused undo touches nothing"
    );
    sb.koko(&["show", "ipnetns", "ka"])
        .ok()
        .stdout_has(&format!("(koko run {id})"));

    kill9(&mut child, pid, "the killed script");
    assert_eq!(
        sb.netns_list(),
        vec!["ka", "kb"],
        "SIGKILL undoes nothing by itself"
    );
    let listed = runs(&sb);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["alive"], false);
    assert_eq!(listed[0]["kind"], "script");

    let out = sb.koko(&["undo", "--dead"]);
    out.ok().stdout_has("undone: veth l1").stdout_has("done");
    assert_eq!(sb.netns_list(), Vec::<String>::new(), "namespaces left");
    assert_eq!(sb.link_names(None), Vec::<String>::new());
    assert_eq!(
        journal_files(&sb),
        Vec::<String>::new(),
        "the run's record is gone"
    );
    assert!(runs(&sb).is_empty());
    // Nothing dead any more: a second --dead has nothing to do.
    sb.koko(&["undo", "--dead"]).ok().stdout_has("no dead runs");
}

#[test]
fn a_oneshot_killed_after_creating_its_link_is_undone_by_undo_run() {
    let sb = Sandbox::new();
    sb.netns_add(&["oa", "ob"]);
    let (mut child, tail) = spawn_koko(
        &sb,
        &["-n", "oa,o1,10.9.0.1/24", "-n", "ob,o2,10.9.0.2/24"],
        &[("KOKO_TEST_PAUSE_AFTER_CREATE_MS", "60000")],
    );
    tail.wait_for_text("the veth pair is created", Duration::from_secs(20));
    let (id, pid) = wait_for_run(&sb, 1);
    assert_eq!(runs(&sb)[0]["kind"], "oneshot");
    kill9(&mut child, pid, "the killed one-shot");
    assert!(
        sb.link(Place::from(Some("oa")), "o1").is_some(),
        "the half-made link is there"
    );

    // An unknown run is a usage error; a dead one is undone.
    sb.koko(&["undo", "1-1"]).fails(2, "no run '1-1'");
    sb.koko(&["undo", &id]).ok().stdout_has("undone: veth o1");
    assert!(sb.link(Place::from(Some("oa")), "o1").is_none(), "o1 left");
    assert!(sb.link(Place::from(Some("ob")), "o2").is_none(), "o2 left");
    // The namespaces were not koko's: they stay.
    assert_eq!(sb.netns_list(), vec!["oa", "ob"]);
    assert_eq!(journal_files(&sb), Vec::<String>::new());
}

#[test]
fn a_oneshot_killed_before_it_created_anything_leaves_a_record_undo_removes() {
    let sb = Sandbox::new();
    sb.netns_add(&["pa", "pb"]);
    let (mut child, tail) = spawn_koko(
        &sb,
        &["-n", "pa,p1", "-n", "pb,p2"],
        &[("KOKO_TEST_PAUSE_AFTER_RESOLVE_MS", "60000")],
    );
    tail.wait_for_text("endpoints resolved", Duration::from_secs(20));
    let (_id, pid) = wait_for_run(&sb, 0);
    kill9(&mut child, pid, "the killed one-shot");
    sb.koko(&["undo", "--dead"]).ok();
    assert_eq!(journal_files(&sb), Vec::<String>::new());
    assert_eq!(sb.link_names(Place::from(Some("pa"))), Vec::<String>::new());
}

#[test]
fn a_successful_oneshot_leaves_no_record_and_marks_its_links() {
    let sb = Sandbox::new();
    sb.netns_add(&["sa", "sb"]);
    sb.koko(&["-n", "sa,s1", "-n", "sb,s2"]).ok();
    assert_eq!(journal_files(&sb), Vec::<String>::new());
    let mark = alias(&sb, "sa", "s1").expect("s1 carries a mark");
    assert!(mark.starts_with("koko:"), "{mark}");
    assert_eq!(alias(&sb, "sb", "s2"), Some(mark));
}

#[test]
fn undo_leaves_a_namespace_someone_replaced_alone() {
    let sb = Sandbox::new();
    // The script makes x and y, then "someone" (a program it runs) deletes
    // x and makes a new x with a link of their own; the script fails.
    let file = write_script(
        "recovery",
        "replaced.rhai",
        r#"
        let x = netns("x");
        let y = netns("y");
        veth(x, "a", y, "b");
        let r = host().exec(["sh", "-c",
            "ip netns del x && ip netns add x && ip -n x link add theirs type veth peer name theirs2"]);
        if r.code != 0 { throw `setup failed: ${r.err}`; }
        throw "the drill fails here";
        "#,
    );
    let out = koko_run(&sb, &[file.to_str().unwrap()]);
    out.fails(1, "the drill fails here")
        .stderr_has("netns 'x': left alone: it is not the one this run created");
    assert_eq!(
        sb.netns_list(),
        vec!["x"],
        "y (the run's) goes, the new x stays"
    );
    let names = sb.link_names(Place::from(Some("x")));
    assert!(
        names.contains(&"theirs".to_string()) && names.contains(&"theirs2".to_string()),
        "their links survive: {names:?}"
    );
    assert_eq!(journal_files(&sb), Vec::<String>::new());
}

#[test]
fn undo_leaves_a_link_someone_replaced_alone() {
    let sb = Sandbox::new();
    sb.netns_add(&["p", "q"]);
    let file = write_script(
        "recovery",
        "relinked.rhai",
        r#"
        veth(netns("p"), "a", netns("q"), "b");
        let r = host().exec(["sh", "-c",
            "ip -n p link del dev a && ip -n p link add name a type veth peer name a2"]);
        if r.code != 0 { throw `setup failed: ${r.err}`; }
        throw "the drill fails here";
        "#,
    );
    let out = koko_run(&sb, &[file.to_str().unwrap()]);
    out.fails(1, "the drill fails here")
        .stderr_has("left alone");
    let names = sb.link_names(Place::from(Some("p")));
    assert!(
        names.contains(&"a".to_string()) && names.contains(&"a2".to_string()),
        "their same-name link survives: {names:?}"
    );
    assert_eq!(alias(&sb, "p", "a"), None);
    assert_eq!(sb.netns_list(), vec!["p", "q"]);
}

#[test]
fn runs_and_undo_usage() {
    let sb = Sandbox::new();
    sb.koko(&["runs"]).ok();
    assert!(runs(&sb).is_empty());
    sb.koko(&["runs", "extra"])
        .fails(2, "unexpected word 'extra'");
    sb.koko(&["undo"])
        .fails(2, "name the runs to undo, or --dead");
    sb.koko(&["undo", "--dead", "1-2"]).fails(2, "not both");
    sb.koko(&["undo", "../etc"]).fails(2, "no run '../etc'");
    sb.koko(&["undo", "--frob"])
        .fails(2, "unknown option '--frob'");
    sb.koko(&["-h"])
        .ok()
        .stdout_has("koko runs")
        .stdout_has("koko undo");
}

#[test]
fn a_dead_runs_unsettled_intents_are_undone_only_when_marked() {
    // A run that died between asking the kernel for a link and writing the
    // step down leaves only an intent. Its journal is written here by hand
    // (as koko writes it) for a run whose process is gone.
    let sb = Sandbox::new();
    sb.netns_add(&["ma"]);
    let id = "999999999-1";
    let mark = format!("koko:{id}");
    sb.sh(&format!(
        "ip -n ma link add m1 type veth peer name m1p && ip -n ma link set m1 alias {mark} \
         && ip -n ma link add m2 type veth peer name m2p"
    ));
    let stat = sb.sh("stat -L -c '%d %i' /run/netns/ma");
    let (dev, ino) = stat.trim().split_once(' ').unwrap();
    let ns = format!(
        r#"{{"kind":"netns","name":"ma","path":"/run/netns/ma","id":{{"dev":{dev},"ino":{ino}}}}}"#
    );
    let lines = [
        format!(
            r#"{{"run":{{"id":"{id}","pid":999999999,"start_time":1,"kind":"oneshot","command":["koko"],"started":0}}}}"#
        ),
        format!(r#"{{"intent":{{"seq":0,"make":{{"link":{{"ns":{ns},"name":"m1"}}}}}}}}"#),
        format!(r#"{{"intent":{{"seq":1,"make":{{"link":{{"ns":{ns},"name":"m2"}}}}}}}}"#),
        format!(r#"{{"intent":{{"seq":2,"make":{{"link":{{"ns":{ns},"name":"m3"}}}}}}}}"#),
    ];
    sb.sh(&format!(
        "cat > /run/koko/{id}.journal <<'EOF'\n{}\nEOF",
        lines.join("\n")
    ));
    assert_eq!(runs(&sb)[0]["alive"], false);
    assert_eq!(runs(&sb)[0]["intents"], 3);
    sb.koko(&["undo", "--dead"])
        .ok()
        .stdout_has("undone: link 'm1' in netns 'ma'")
        .stdout_has("left alone: nothing says this run created it");
    let names = sb.link_names(Place::Netns("ma".into()));
    assert!(
        !names.contains(&"m1".to_string()),
        "the marked one goes: {names:?}"
    );
    assert!(
        names.contains(&"m2".to_string()),
        "the unmarked one stays: {names:?}"
    );
    assert_eq!(journal_files(&sb), Vec::<String>::new());
}

#[test]
fn links_made_in_bulk_and_macvlans_carry_the_runs_mark() {
    let sb = Sandbox::new();
    sb.sh("ip link add p0 type veth peer name p1");
    sb.netns_add(&["ta"]);
    sb.koko(&["-n", "ta,mv0", "-M", "p0,bridge"]).ok();
    let mark = alias(&sb, "ta", "mv0").expect("the macvlan carries a mark");
    assert!(mark.starts_with("koko:"), "{mark}");
    // A chain (veth pairs made in bulk): both ends of every pair.
    let file = write_script(
        "recovery",
        "chain.rhai",
        r#"
        import "chain" as chain;
        chain::build(["c1", "c2", "c3"], #{routes: false});
        let links = [];
        for n in ["c1", "c2", "c3"] {
            for l in netns(n).links() { links.push(l); }
        }
        print(links.len());
        "#,
    );
    koko_run(&sb, &[file.to_str().unwrap(), "--keep"]).ok();
    for ns in ["c1", "c2", "c3"] {
        let links = sb.links(Place::Netns(ns.into()));
        for l in &links {
            let alias = l["ifalias"].as_str().unwrap_or("");
            assert!(
                alias.starts_with("koko:"),
                "{} in {ns} has no mark: {l}",
                l["ifname"]
            );
        }
        assert!(links.len() >= 2, "{ns}: {links:?}");
    }
}

#[test]
fn a_repl_killed_by_sigkill_is_undone_too() {
    use std::io::Write;
    let sb = Sandbox::new();
    let mut cmd = sb.command(koko_bin());
    cmd.arg("repl")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("koko repl starts");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        r#"let a = netns("ra"); let b = netns("rb"); veth(a, "r1", b, "r2");"#
    )
    .unwrap();
    stdin.flush().unwrap();
    let (_id, pid) = wait_for_run(&sb, 3);
    assert_eq!(runs(&sb)[0]["kind"], "repl");
    kill9(&mut child, pid, "the killed REPL");
    drop(stdin);
    sb.koko(&["undo", "--dead"])
        .ok()
        .stdout_has("undone: netns 'ra'");
    assert_eq!(sb.netns_list(), Vec::<String>::new());
    assert_eq!(journal_files(&sb), Vec::<String>::new());
}

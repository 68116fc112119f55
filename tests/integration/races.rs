//! Races between koko processes (and `ip netns`) over the same names.
//!
//! Named namespaces are made in two steps (an empty file, then a bind mount
//! of the new namespace onto it) and removed in two (unmount, then remove
//! the file). Another process that looks in between must neither fail with
//! "is not a namespace file" nor report the wrong thing: it waits for the
//! mount (bounded), and of two processes creating one name, one wins and
//! the other is told "already exists" (exit 1: the machine's state, not the
//! request, is the problem).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::support::script::write_script;
use crate::support::{koko_bin, wait_for, Run, Sandbox, TEARDOWN};

/// Run `count` koko processes at once (released together by a barrier);
/// `argv(i)` gives process i's arguments.
fn at_once(sb: &Sandbox, count: usize, argv: impl Fn(usize) -> Vec<String>) -> Vec<Run> {
    let barrier = Arc::new(Barrier::new(count));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let mut cmd = sb.command(koko_bin());
                let args = argv(i);
                cmd.args(&args).env_remove("KOKO_PATH");
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    Run::of(&mut cmd, format!("[{i}] koko {}", args.join(" ")))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A failure that is clean: exit 1, a message, no panic, no stray errors
/// about namespace files caught half-made.
fn assert_clean_outcome(run: &Run) {
    assert!(
        run.code == 0 || run.code == 1,
        "{}: exit {}\n{}",
        run.what,
        run.code,
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{}: {}",
        run.what,
        run.stderr
    );
    assert!(
        !run.stderr.contains("is not a namespace file"),
        "{} met a namespace being made or removed: {}",
        run.what,
        run.stderr
    );
    if run.code == 1 {
        assert!(
            run.stderr.contains("koko: "),
            "{}: {}",
            run.what,
            run.stderr
        );
    }
}

#[test]
fn twenty_parallel_scripts_sharing_namespace_names_succeed_or_fail_cleanly() {
    let sb = Sandbox::new();
    // Each script creates-or-gets the two shared namespaces, puts its own
    // veth between them with an address, checks it through the kernel, and
    // undoes what it made when it ends (--cleanup): the one that created a
    // shared namespace deletes it, possibly under the others' feet, who
    // must then fail cleanly (or re-create it and clean that up).
    let path = write_script(
        "races",
        "shared.rhai",
        r#"
        let i = parse_int(ARGS[0]);
        let s1 = netns("shared1");
        let s2 = netns("shared2");
        veth(s1, `a${i}`, s2, `b${i}`);
        s1.ip(`address add 10.77.${i}.1/24 dev a${i}`);
        let mine = s1.links().filter(|l| l.name == `a${i}`);
        if mine.len() != 1 { throw `a${i} is not in shared1`; }
        print(`script ${i} done`);
        "#,
    );
    let path = path.to_str().unwrap().to_string();
    let runs = at_once(&sb, 20, |i| {
        vec![
            "run".into(),
            "--cleanup".into(),
            path.clone(),
            "--".into(),
            i.to_string(),
        ]
    });
    let mut ok = 0;
    for run in &runs {
        assert_clean_outcome(run);
        if run.code == 0 {
            assert!(run.stdout.contains("done"), "{}: {}", run.what, run.stdout);
            ok += 1;
        }
    }
    assert!(
        ok > 0,
        "no script succeeded: {:#?}",
        runs.iter().map(|r| &r.stderr).collect::<Vec<_>>()
    );
    // Nothing is left: no namespace, and (once the kernel has torn the
    // deleted namespaces down) no link in the sandbox's own namespace.
    wait_for("every namespace is gone", TEARDOWN, || {
        let left = sb.netns_list();
        if left.is_empty() && sb.link_names(None).is_empty() {
            Ok(())
        } else {
            Err(format!("left: {left:?} {:?}", sb.link_names(None)))
        }
    });
}

#[test]
fn of_two_netns_adds_of_one_name_one_wins_and_the_other_exits_1() {
    let sb = Sandbox::new();
    for round in 0..5 {
        let runs = at_once(&sb, 4, |_| vec!["netns".into(), "add".into(), "x".into()]);
        let winners = runs.iter().filter(|r| r.code == 0).count();
        assert_eq!(
            winners,
            1,
            "round {round}: {:#?}",
            runs.iter().map(|r| (r.code, &r.stderr)).collect::<Vec<_>>()
        );
        for r in runs.iter().filter(|r| r.code != 0) {
            r.fails(1, "netns 'x' already exists");
        }
        // The winner's namespace is a real one, and the losers left no trace.
        assert_eq!(sb.netns_list(), vec!["x"]);
        sb.sh("ip netns exec x true");
        sb.koko(&["netns", "del", "x"]).ok();
        assert!(sb.netns_list().is_empty());
    }
}

#[test]
fn a_namespace_file_still_being_made_is_waited_for() {
    let mut sb = Sandbox::new();
    sb.netns_add(&["b"]);
    let pid = sb.spawn_pid_namespace();
    // The first half of `ip netns add x`: the file, not yet the mount.
    sb.sh("touch /run/netns/x");
    let child = sb
        .command(koko_bin())
        .args(["-n", "x,l1", "-n", "b,l2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The second half, while koko runs (or before it looks: either way it
    // must find the namespace, never "not a namespace file").
    sb.sh(&format!("mount --bind /proc/{pid}/ns/net /run/netns/x"));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(sb.link(Some("x"), "l1").is_some());
    assert!(sb.link(Some("b"), "l2").is_some());
}

#[test]
fn a_namespace_file_never_mounted_fails_after_a_bounded_wait() {
    let sb = Sandbox::new();
    sb.netns_add(&["b"]);
    sb.sh("touch /run/netns/stale");
    let start = Instant::now();
    sb.koko(&["-n", "stale,l1", "-n", "b,l2"])
        .fails(1, "/run/netns/stale is not a namespace file");
    let took = start.elapsed();
    // It waited for the mount (up to 1 s), then said so; not forever.
    assert!(took >= Duration::from_millis(900), "gave up after {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(sb.link_names(Some("b")).is_empty());
}

#[test]
fn adding_a_name_whose_file_was_left_unmounted_says_so() {
    let sb = Sandbox::new();
    sb.sh("touch /run/netns/stale");
    sb.koko(&["netns", "add", "stale"]).fails(
        1,
        "/run/netns/stale exists but no namespace is mounted on it",
    );
    // ip netns del cleans it, then the name is free.
    sb.sh("ip netns del stale");
    sb.koko(&["netns", "add", "stale"]).ok();
    sb.sh("ip netns exec stale true");
}

/// Ten one-shots at once wire links into one shared namespace: koko picks
/// each veth's ifindexes itself (see connect::veth), so two processes can
/// pick the same index; the loser must retry with the kernel's choice, not
/// report "already exists". Every link is there afterwards.
#[test]
fn parallel_one_shots_into_one_namespace_all_succeed() {
    let sb = Sandbox::new();
    let names: Vec<String> = (0..10).map(|i| format!("own{i}")).collect();
    let mut all = vec!["shared".to_string()];
    all.extend(names.iter().cloned());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    sb.netns_add(&all);
    let runs = at_once(&sb, 10, |i| {
        vec![
            "-n".into(),
            format!("shared,s{i}"),
            "-n".into(),
            format!("own{i},p{i}"),
        ]
    });
    for run in runs {
        run.ok();
    }
    let mut links = sb.link_names(Some("shared"));
    links.retain(|l| l != "lo");
    links.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    expected.sort();
    assert_eq!(links, expected);
}

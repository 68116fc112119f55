//! `koko test`: the fixture suite in tests/fixtures/suite holds passing,
//! failing (assertion), throwing, hung, fixture- and import-using tests.
//! Each run happens inside the harness's own sandbox, so "nothing left"
//! is checked there: no named namespace, no link, no journal.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{engine_sandbox, Ctr, Place, Run, Sandbox};

const SUITE: &str = "tests/fixtures/suite";

/// A fresh directory where the two same-name tests meet (they pass only
/// when they run at the same time).
fn rendezvous(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("koko-rdv-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `koko ARGS` in the sandbox, from the repository's root (entering the
/// sandbox's mount namespace resets the working directory to /), so test
/// ids are the relative paths a user sees.
fn koko(sb: &Sandbox, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = sb.command("sh");
    cmd.arg("-c")
        .arg(r#"cd "$0" && exec "$@""#)
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg(crate::support::koko_bin())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::of(&mut cmd, format!("koko {}", args.join(" ")))
}

#[track_caller]
fn assert_nothing_left(sb: &Sandbox) {
    assert_eq!(
        sb.netns_list(),
        Vec::<String>::new(),
        "named namespaces left"
    );
    assert_eq!(
        sb.link_names(Place::Own),
        Vec::<String>::new(),
        "links left"
    );
    assert_eq!(sb.sh("ls -A /run/koko").trim(), "", "journals left");
}

/// JUnit XML parsed by Python's XML parser (a real one): per test case its
/// name and verdict, plus the counts of the root.
fn parse_junit(path: &std::path::Path) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = {}
for tc in root.iter("testcase"):
    verdict = "passed"
    for tag in ("failure", "error"):
        if tc.find(tag) is not None:
            verdict = tag
    cases[tc.get("classname") + "::" + tc.get("name")] = verdict
print(json.dumps({"tag": root.tag, "tests": root.get("tests"), "failures": root.get("failures"),
                  "errors": root.get("errors"), "cases": cases}))
"#,
        )
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the JUnit XML does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn suite_reports_pass_fail_error_timeout_and_leaves_nothing() {
    let sb = Sandbox::new();
    // No rendezvous here: with -j 2 the hung test holds one slot, and the
    // two same-name tests may not overlap (the next test proves they can).
    let rdv = rendezvous("all");
    let junit = rdv.join("junit.xml");
    let run = koko(
        &sb,
        &[],
        &[
            "test",
            SUITE,
            "-j",
            "2",
            "--timeout",
            "5",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(
        run.code, 1,
        "a failing suite exits 1: {}\n{}",
        run.stdout, run.stderr
    );
    let out = &run.stdout;
    for line in [
        "PASS    tests/fixtures/suite/pass_test.rhai::test_same_name_one",
        "PASS    tests/fixtures/suite/pass_test.rhai::test_same_name_two",
        "PASS    tests/fixtures/suite/fixtures_test.rhai::test_sees_setup",
        "PASS    tests/fixtures/suite/whole.test.rhai (",
        "FAIL    tests/fixtures/suite/fail_test.rhai::test_assert_fails",
        "ERROR   tests/fixtures/suite/fail_test.rhai::test_throws",
        "TIMEOUT tests/fixtures/suite/hang_test.rhai::test_hangs",
    ] {
        assert!(out.contains(line), "no line {line:?} in:\n{out}");
    }
    // The failures: file, line and message, and the source line itself.
    assert!(
        out.contains("fail_test.rhai:5:13: arithmetic: expected 3, got 2"),
        "{out}"
    );
    assert!(
        out.contains("     5 |     assert::eq(1 + 1, 3, \"arithmetic\");"),
        "{out}"
    );
    assert!(
        out.contains("fail_test.rhai:9:5: boom from the test"),
        "{out}"
    );
    assert!(
        out.contains("timed out after 5 s: stopped, what it built undone"),
        "{out}"
    );
    assert!(
        out.contains("test result: FAILED. 4 passed, 1 failed, 1 errors, 1 timed out (7 tests"),
        "{out}"
    );
    // teardown() ran after the test, and its output was kept.
    let j = parse_junit(&junit);
    assert_eq!(j["tag"], "testsuites");
    assert_eq!(j["tests"], "7");
    assert_eq!(j["failures"], "1");
    assert_eq!(j["errors"], "2");
    let case = |id: &str| j["cases"][format!("{SUITE}/{id}")].clone();
    assert_eq!(case("pass_test.rhai::test_same_name_one"), "passed");
    assert_eq!(case("whole.test.rhai::(file)"), "passed");
    assert_eq!(case("fail_test.rhai::test_assert_fails"), "failure");
    assert_eq!(case("fail_test.rhai::test_throws"), "error");
    assert_eq!(case("hang_test.rhai::test_hangs"), "error");
    assert!(std::fs::read_to_string(&junit)
        .unwrap()
        .contains("teardown ran"));
    assert_nothing_left(&sb);
    let _ = std::fs::remove_dir_all(&rdv);
}

#[test]
fn same_namespace_names_in_parallel_tests_do_not_clash() {
    let sb = Sandbox::new();
    let rdv = rendezvous("par");
    let file = format!("{SUITE}/pass_test.rhai");
    let run = koko(
        &sb,
        &[("KOKO_RENDEZVOUS", rdv.to_str().unwrap())],
        &["test", &file, "-j", "2", "--tap"],
    );
    run.ok();
    assert!(
        run.stdout.starts_with("TAP version 13\n1..2\n"),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains("ok 1 - tests/fixtures/suite/pass_test.rhai::test_same_name_one"));
    assert!(run
        .stdout
        .contains("ok 2 - tests/fixtures/suite/pass_test.rhai::test_same_name_two"));
    assert!(!run.stdout.contains("not ok"), "{}", run.stdout);
    // Both really ran at once: each left its mark for the other.
    assert!(rdv.join("one").exists() && rdv.join("two").exists());
    assert_nothing_left(&sb);
    let _ = std::fs::remove_dir_all(&rdv);
}

#[test]
fn tap_reports_failures_with_their_line() {
    let sb = Sandbox::new();
    let run = koko(&sb, &[], &["test", SUITE, "--tap", "--filter", "fail_test"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("1..2\n"), "{}", run.stdout);
    assert!(run.stdout.contains(
        "not ok 1 - tests/fixtures/suite/fail_test.rhai::test_assert_fails\n  ---\n  status: fail"
    ));
    assert!(run
        .stdout
        .contains("  at: tests/fixtures/suite/fail_test.rhai:9\n"));
    assert_nothing_left(&sb);
}

#[test]
fn list_and_filter_name_the_tests_without_running_them() {
    let sb = Sandbox::new();
    let run = koko(&sb, &[], &["test", SUITE, "--list"]);
    run.ok();
    let ids: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        ids,
        [
            "tests/fixtures/suite/fail_test.rhai::test_assert_fails",
            "tests/fixtures/suite/fail_test.rhai::test_throws",
            "tests/fixtures/suite/fixtures_test.rhai::test_sees_setup",
            "tests/fixtures/suite/hang_test.rhai::test_hangs",
            "tests/fixtures/suite/pass_test.rhai::test_same_name_one",
            "tests/fixtures/suite/pass_test.rhai::test_same_name_two",
            "tests/fixtures/suite/whole.test.rhai",
        ]
    );
    let run = koko(&sb, &[], &["test", SUITE, "--list", "--filter", "whole"]);
    assert_eq!(run.stdout.trim(), "tests/fixtures/suite/whole.test.rhai");
    let run = koko(&sb, &[], &["test", SUITE, "--filter", "no-such-test"]);
    run.fails(1, "no tests found");
    let run = koko(&sb, &[], &["test", SUITE, "-j", "0"]);
    run.fails(2, "-j must be at least 1");
}

#[test]
fn keep_failed_keeps_the_sandbox_and_says_how_to_enter_it() {
    let sb = Sandbox::new();
    let run = koko(
        &sb,
        &[],
        &[
            "test",
            SUITE,
            "--keep-failed",
            "--filter",
            "test_assert_fails",
        ],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let hint = run
        .stdout
        .lines()
        .find(|l| l.starts_with("sandbox kept: enter it with `nsenter -t "))
        .unwrap_or_else(|| panic!("no nsenter hint in:\n{}", run.stdout));
    let pid: u32 = hint
        .split_whitespace()
        .nth(7)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{hint}: {e}"));
    // The failed test's namespace is still there, inside the kept sandbox
    // only (not in the harness's sandbox, which stands for the host).
    let inside = sb.sh(&format!("nsenter -t {pid} -n -m ip netns list"));
    assert!(inside.contains("failing"), "{inside}");
    assert_eq!(sb.netns_list(), Vec::<String>::new());
    sb.sh(&format!("kill {pid}"));
}

#[test]
fn run_sandbox_builds_in_a_private_namespace_and_leaves_nothing() {
    let sb = Sandbox::new();
    let script = std::env::temp_dir().join(format!("koko-sandboxed-{}.rhai", std::process::id()));
    std::fs::write(
        &script,
        r#"let a = netns("a"); let b = netns("b");
           veth(a, "x", b, "y", #{a_addrs: ["10.9.0.1/24"], b_addrs: ["10.9.0.2/24"]});
           if !a.ping("10.9.0.2", #{count: 3, timeout_ms: 500}).ok { throw "no ping"; }
           print("built " + ARGS[0]);"#,
    )
    .unwrap();
    let run = koko(
        &sb,
        &[],
        &["run", "--sandbox", script.to_str().unwrap(), "--", "ok"],
    );
    run.ok().stdout_has("built ok");
    assert_nothing_left(&sb);
    let _ = std::fs::remove_file(&script);
}

/// The example suite of scripts/tests (the README points to it) passes.
#[test]
fn example_suite_in_scripts_passes() {
    let sb = Sandbox::new();
    let run: Run = koko(&sb, &[], &["test", "scripts/tests"]);
    run.ok().stdout_has("test result: ok. 4 passed");
    assert_nothing_left(&sb);
}

/// A test may use a container (it lives outside the sandbox): the link it
/// made into the container is gone after the test, passed or failed.
#[test]
fn tests_using_a_container_undo_what_they_did_to_it() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let ctr = Ctr::docker("suite");
    let dir = std::env::temp_dir().join(format!("koko-suite-docker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ctr_test.rhai");
    std::fs::write(
        &file,
        format!(
            r#"import "assert" as assert;
fn test_link_into_container() {{
    let c = docker("{name}");
    veth(c, "k0", netns("a"), "k1", #{{a_addrs: ["10.7.0.1/24"], b_addrs: ["10.7.0.2/24"]}});
    assert::reachable(netns("a"), "10.7.0.1");
}}
fn test_fails_after_linking() {{
    veth(docker("{name}"), "k2", netns("b"), "k3");
    assert::eq(1, 2, "on purpose");
}}
"#,
            name = ctr.name
        ),
    )
    .unwrap();
    let run = koko(&sb, &[], &["test", file.to_str().unwrap(), "-j", "2"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("PASS    ") && run.stdout.contains("::test_link_into_container"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("FAIL    ") && run.stdout.contains("on purpose"),
        "{}",
        run.stdout
    );
    // Through the kernel: the container has only its own links again.
    let left: Vec<String> = sb
        .link_names(&ctr)
        .into_iter()
        .filter(|n| n.starts_with('k'))
        .collect();
    assert!(left.is_empty(), "links left in the container: {left:?}");
    assert_nothing_left(&sb);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Signals, output errors, limits, children, hooks and dead namespaces
//! (issue 14): whatever stops a run, it exits non-zero and leaves nothing
//! behind — checked through the kernel (`ip -j`, `ip netns`) and through
//! /proc for the programs `exec` started.
//!
//! Signals are delivered at known points: one-shot commands pause at test
//! hooks (`KOKO_TEST_PAUSE_<POINT>_MS`, announced on stderr), scripts print
//! a line before the statement the signal must land in.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::script::{assert_clean, run, write_script};
use crate::support::{koko_bin, wait_exit, wait_until, Running, Sandbox, Tail};

const SIGNALS: [(&str, i32); 3] = [("SIGINT", 2), ("SIGTERM", 15), ("SIGHUP", 1)];

fn send(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([
            &format!("-{}", signal.trim_start_matches("SIG")),
            &pid.to_string(),
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// Processes (anywhere on the machine) whose command line contains
/// `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // A zombie has an empty command line: it is gone in all but name.
        if cmdline.contains(marker) {
            found.push(format!("{}: {cmdline}", name.to_string_lossy()));
        }
    }
    found
}

#[track_caller]
fn assert_no_process(marker: &str, what: &str) {
    wait_until(
        &format!("{what}: no process running {marker:?} left"),
        Duration::from_secs(3),
        || processes_with(marker).is_empty(),
    );
}

/// Send `signal` (number `signo`) to koko, wait for the exit and check
/// that it is koko's answer to it: exit 128+signo, "interrupted by
/// SIG...". Returns stdout and stderr.
fn stop_with(koko: Running, signal: &str, signo: i32, what: &str) -> (String, String) {
    send(koko.pid(), signal);
    let (code, out, err) = koko.exit(what, Duration::from_secs(5));
    assert_eq!(code, 128 + signo, "{what}: {err}");
    assert!(
        err.contains(&format!("interrupted by {signal}")),
        "{what}: {err}"
    );
    (out, err)
}

// ------------------------------------------------------------ one-shot

/// A signal at each point of a one-shot veth command: exit 128+signo,
/// "interrupted by SIG...", and no link left in either namespace.
#[test]
fn a_signal_at_any_point_of_a_one_shot_command_leaves_nothing() {
    for point in ["AFTER_RESOLVE", "AFTER_LINK", "BEFORE_REPORT"] {
        for (signal, signo) in SIGNALS {
            let sb = Sandbox::new();
            sb.netns_add(&["a", "b"]);
            let var = format!("KOKO_TEST_PAUSE_{point}_MS");
            let koko = Running::koko(
                &sb,
                &["-n", "a,l1,10.9.0.1/24", "-n", "b,l2,10.9.0.2/24"],
                &[(&var, "20000")],
            );
            koko.err.wait_for_text("test hook", Duration::from_secs(5));
            let what = format!("koko after {signal} at {point}");
            let (out, err) = stop_with(koko, signal, signo, &what);
            assert!(err.contains("undone"), "{what}: {err}");
            assert!(!out.contains("done"), "{what} reported success: {out}");
            for ns in ["a", "b"] {
                assert!(
                    sb.link(Some(ns), "l1").is_none() && sb.link(Some(ns), "l2").is_none(),
                    "{what}: a link is left in {ns}: {:?}",
                    sb.link_names(Some(ns))
                );
            }
        }
    }
}

/// A signal between the names of `koko netns add a b c` (after the first,
/// after the last): exit 128+signo and none of the namespaces is left.
#[test]
fn a_signal_during_netns_add_of_several_names_leaves_none() {
    for (signal, signo) in SIGNALS {
        let sb = Sandbox::new();
        let koko = Running::koko(
            &sb,
            &["netns", "add", "s1", "s2", "s3"],
            &[("KOKO_TEST_PAUSE_AFTER_NETNS_MS", "20000")],
        );
        koko.err.wait_for_text("test hook", Duration::from_secs(5));
        let what = format!("koko netns add after {signal}");
        let (_out, err) = stop_with(koko, signal, signo, &what);
        assert!(err.contains("deleted netns 's1' again"), "{what}: {err}");
        assert!(
            sb.netns_list().is_empty(),
            "{what} left {:?}",
            sb.netns_list()
        );
    }
}

/// A pipe whose reader is already gone: every write to it is EPIPE.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    write
}

#[test]
fn a_one_shot_whose_report_cannot_be_written_is_undone_without_a_panic() {
    for (how, json) in [("closed pipe", false), ("/dev/full", true)] {
        let sb = Sandbox::new();
        sb.netns_add(&["a", "b"]);
        let mut cmd = sb.command(koko_bin());
        cmd.args(["-n", "a,l1,10.9.0.1/24", "-n", "b,l2"]);
        if json {
            cmd.arg("--json");
        }
        let stdout: Stdio = if how == "closed pipe" {
            closed_pipe().into()
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap()
                .into()
        };
        let out = cmd.stdout(stdout).stderr(Stdio::piped()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{how}: {err}");
        assert!(!err.contains("panicked"), "{how}: {err}");
        assert!(err.contains("undone"), "{how}: {err}");
        assert!(sb.link(Some("a"), "l1").is_none(), "{how}: l1 left in a");
        assert!(sb.link(Some("b"), "l2").is_none(), "{how}: l2 left in b");
    }
}

#[test]
fn help_to_a_full_disk_or_closed_pipe_is_not_a_panic() {
    for args in [
        &["-h"][..],
        &["ip", "-h"],
        &["run", "-h"],
        &["-v", "--json"],
    ] {
        for full in [true, false] {
            let stdout: Stdio = if full {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap()
                    .into()
            } else {
                closed_pipe().into()
            };
            let out = std::process::Command::new(koko_bin())
                .args(args)
                .stdout(stdout)
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "koko {args:?} (full: {full}): {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

// ------------------------------------------------------------ FIFO and friends

#[test]
fn a_namespace_path_that_is_a_fifo_or_a_directory_fails_at_once() {
    let sb = Sandbox::new();
    sb.netns_add(&["b"]);
    let dir = crate::support::script::tmp_dir("fifo");
    let fifo = dir.join("not-a-namespace");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for (path, kind) in [(fifo.as_path(), "a FIFO"), (dir.as_path(), "a directory")] {
        let started = Instant::now();
        let r = sb.koko(&["-a", &format!("{},l1", path.display()), "-n", "b,l2"]);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{kind}: took {:?}",
            started.elapsed()
        );
        r.fails(1, &format!("it is {kind}, not a namespace file"));
        assert!(sb.link(Some("b"), "l2").is_none());
        // The koro grammar's namespace file, from a script, too.
        let s = write_script(
            "fifo",
            "fifo.rhai",
            &format!("koro(\"netns {} link set lo up\");\n", path.display()),
        );
        let started = Instant::now();
        let r = run(&sb, &[s.to_str().unwrap()]);
        assert!(started.elapsed() < Duration::from_secs(1));
        r.fails(1, "not a namespace file");
    }
}

// ------------------------------------------------------------ scripts

/// A script that builds a and b (a veth between them), prints "ready",
/// then does `then`, and must never finish.
fn long_script(tag: &str, then: &str) -> String {
    let text = format!(
        "let a = netns(\"a\"); let b = netns(\"b\");\n\
         let l = veth(a, \"va\", b, \"vb\", #{{a_addrs: [\"10.9.0.1/24\"]}});\n\
         print(\"ready\");\n{then}\nprint(\"not reached\");\n"
    );
    write_script(tag, "long.rhai", &text)
        .to_string_lossy()
        .into_owned()
}

/// Each point of a script where koko waits, with a marker for the
/// programs it started there.
fn script_points(n: usize) -> Vec<(&'static str, String, Option<String>)> {
    let marker = format!("4{n:03}.25");
    vec![
        ("sleep", "sleep(60000);".to_string(), None),
        (
            "exec",
            // The shell's own child (a grandchild of koko) must die too.
            format!("a.exec([\"sh\", \"-c\", \"sleep {marker} & sleep {marker}; echo x\"]);"),
            Some(marker.clone()),
        ),
        (
            "exec of a program that closed its output",
            format!("a.exec([\"sh\", \"-c\", \"exec >&- 2>&-; sleep {marker}2\"]);"),
            Some(format!("{marker}2")),
        ),
        (
            "the last statement",
            format!("a.exec([\"sleep\", \"{marker}1\"])"),
            Some(format!("{marker}1")),
        ),
        (
            "a hook",
            "on_link_down(l, |ev| { print(\"in hook\"); sleep(60000); });\n\
             b.link(\"vb\").down(); watch(60000);"
                .to_string(),
            None,
        ),
    ]
}

#[test]
fn a_signal_at_any_point_of_a_script_undoes_it_and_kills_its_programs() {
    let mut n = 0;
    for (signal, signo) in SIGNALS {
        for (point, then, marker) in script_points(n) {
            n += 1;
            let sb = Sandbox::new();
            let file = long_script("sig", &then);
            if point == "the last statement" {
                // Make the exec the script's very last statement.
                let body = std::fs::read_to_string(&file).unwrap();
                std::fs::write(&file, body.replace("\nprint(\"not reached\");\n", "\n")).unwrap();
            }
            let koko = Running::koko(&sb, &["run", &file], &[]);
            let ready = if point == "a hook" {
                "in hook"
            } else {
                "ready"
            };
            koko.out.wait_for_text(ready, Duration::from_secs(10));
            if let Some(m) = &marker {
                wait_until("the program runs", Duration::from_secs(5), || {
                    !processes_with(m).is_empty()
                });
            }
            let what = format!("koko run after {signal} during {point}");
            let (out, err) = stop_with(koko, signal, signo, &what);
            assert!(err.contains("undid"), "{what}: {err}");
            assert!(!out.contains("not reached"), "{what}: {out}");
            assert_clean(&sb, &what);
            if let Some(m) = &marker {
                assert_no_process(m, &what);
            }
        }
    }
}

#[test]
fn stopping_a_probe_with_a_long_interval_does_not_wait_for_it() {
    let sb = Sandbox::new();
    let file = long_script(
        "probe",
        "let p = probe_start(a, \"10.9.0.1\", 9, #{interval_ms: 600000, timeout_ms: 100});\n\
         sleep(100);\nlet t = now_ms();\np.stop();\n\
         print(`stopped in ${now_ms() - t} ms`);\nexit();",
    );
    let r = run(&sb, &[&file]);
    let ms: f64 = r
        .line("stopped in")
        .trim_start_matches("stopped in ")
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!(ms < 1000.0, "probe.stop() took {ms} ms");
}

#[test]
fn programs_started_by_exec_die_with_a_killed_koko() {
    let sb = Sandbox::new();
    let marker = "4999.75";
    let file = long_script("kill9", &format!("a.exec([\"sleep\", \"{marker}\"]);"));
    let koko = Running::koko(&sb, &["run", &file], &[]);
    koko.out.wait_for_text("ready", Duration::from_secs(10));
    wait_until("sleep runs", Duration::from_secs(5), || {
        !processes_with(marker).is_empty()
    });
    send(koko.pid(), "SIGKILL");
    let (code, _, _) = koko.exit("koko after SIGKILL", Duration::from_secs(5));
    assert_eq!(code, -1, "killed by a signal");
    assert_no_process(marker, "SIGKILL of koko");
}

#[test]
fn a_memory_bomb_ends_with_exit_1_naming_the_limit_and_leaves_nothing() {
    let bombs = [
        (
            "curried functions",
            "let s = \"x\"; for i in 0..18 { s += s; }\n\
             let f = |x, y| x;\nloop { f = f.curry(s + \"!\"); }",
            "memory limit",
        ),
        (
            "closures in an array",
            "let s = \"x\"; for i in 0..18 { s += s; }\nlet keep = [];\n\
             loop { let t = s + keep.len(); keep.push(|| t); }",
            "memory limit",
        ),
        (
            // Rhai counts the strings inside a map or an array against its
            // own limits, but not those a closure captured.
            "maps captured by closures",
            "let s = \"x\"; for i in 0..18 { s += s; }\nlet keep = [];\n\
             loop { let m = #{v: s + keep.len()}; keep.push(|| m); }",
            "memory limit",
        ),
        (
            "exec output",
            "let r = a.exec([\"sh\", \"-c\", \"while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done\"]);",
            "exec output limit",
        ),
    ];
    for (what, bomb, limit) in bombs {
        let sb = Sandbox::new();
        let file = long_script("bomb", bomb);
        let r = run(&sb, &["--max-memory", "128M", &file]);
        r.fails(1, limit);
        r.stderr_has("undid");
        assert!(
            !r.stderr.contains("memory allocation"),
            "{what}: {}",
            r.stderr
        );
        assert_clean(&sb, what);
    }
}

#[test]
fn a_script_whose_output_cannot_be_written_stops_and_undoes() {
    for how in ["closed pipe", "/dev/full"] {
        let sb = Sandbox::new();
        let file = long_script("print", "for i in 0..100000 { print(`line ${i}`); }");
        let stdout: Stdio = if how == "closed pipe" {
            closed_pipe().into()
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap()
                .into()
        };
        let out = sb
            .command(koko_bin())
            .args(["run", &file])
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{how}: {err}");
        assert!(err.contains("writing to standard output"), "{how}: {err}");
        assert!(err.contains("undid"), "{how}: {err}");
        assert_clean(&sb, how);
    }
}

#[test]
fn a_failing_script_whose_stderr_is_gone_still_undoes() {
    let sb = Sandbox::new();
    let file = long_script(
        "stderr",
        "for i in 0..2000 { debug(`noise ${i}`); }\nthrow \"boom\";",
    );
    let out = sb
        .command(koko_bin())
        .args(["run", &file])
        .stdout(Stdio::null())
        .stderr(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_clean(&sb, "stderr gone");
}

#[test]
fn a_failing_hook_fails_the_run_names_the_hook_and_undoes() {
    let sb = Sandbox::new();
    let file = long_script(
        "hook",
        "fn broken(ev) { throw \"the repair failed\"; }\n\
         on_link_down(l, Fn(\"broken\"));\n\
         b.link(\"vb\").down();\nwatch(5000);",
    );
    let r = run(&sb, &[&file]);
    r.fails(1, "the hook 'broken' (link_down of va in a) failed");
    r.stderr_has("the repair failed");
    r.stderr_has("undid");
    assert_clean(&sb, "failing hook");
}

#[test]
fn a_namespace_deleted_from_outside_is_reported_gone_and_not_kept_alive() {
    let sb = Sandbox::new();
    sb.netns_add(&["x"]);
    let file = write_script(
        "dead",
        "dead.rhai",
        "let a = netns(\"a\"); let x = netns(\"x\");\n\
         veth(a, \"va\", x, \"vx\");\n\
         print(`links in x: ${x.links().len()}`);\n\
         a.exec([\"ip\", \"netns\", \"del\", \"x\"]);\n\
         try { x.links(); print(\"x still answers\"); } catch (e) { print(`x: ${e.message}`); }\n\
         try { x.ip(\"link set lo up\"); print(\"x.ip works\"); } catch (e) { print(`x.ip: ${e.kind}`); }\n\
         // koko dropped its socket: the kernel destroys x, and the veth with it.\n\
         let t = now_ms();\n\
         while a.links().filter(|l| l.name == \"va\").len() > 0 && now_ms() - t < 5000 { sleep(10); }\n\
         print(`va left in a: ${a.links().filter(|l| l.name == \"va\").len()}`);\n\
         cleanup();\n",
    );
    let r = run(&sb, &[file.to_str().unwrap()]);
    r.ok();
    assert_eq!(
        r.line("x: "),
        "x: netns 'x': is gone (No such file or directory (os error 2))"
    );
    assert_eq!(r.line("x.ip: "), "x.ip: not_found");
    assert_eq!(r.line("va left"), "va left in a: 0");
    assert_clean(&sb, "dead namespace");
}

/// The REPL: SIGTERM and SIGHUP at the prompt, or while an input runs,
/// undo the session and exit 128+signo.
#[test]
fn sigterm_and_sighup_at_the_repl_prompt_undo_the_session() {
    for (signal, signo, during) in [
        ("SIGTERM", 15, ""),
        ("SIGHUP", 1, ""),
        ("SIGTERM", 15, " sleep(60000);"),
        ("SIGHUP", 1, " sleep(60000);"),
    ] {
        let sb = Sandbox::new();
        let mut cmd = sb.command(koko_bin());
        cmd.args(["repl", "--history", "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let out = Tail::new(child.stdout.take().unwrap());
        let err = Tail::new(child.stderr.take().unwrap());
        writeln!(stdin, "let a = netns(\"a\"); print(\"made a\");{during}").unwrap();
        out.wait_for_text("made a", Duration::from_secs(10));
        assert_eq!(sb.netns_list(), vec!["a"]);
        // The REPL now waits at its prompt (stdin still open), or in sleep.
        send(child.id(), signal);
        let status = wait_exit(&mut child, "koko repl", Duration::from_secs(5));
        drop(stdin);
        let err = err.finish();
        assert_eq!(status.code(), Some(128 + signo), "{signal}: {err}");
        assert!(err.contains(&format!("interrupted by {signal}")), "{err}");
        assert_clean(&sb, signal);
        let _ = out.finish();
    }
}

/// The same on a pseudo-terminal, where the line editor holds the terminal
/// in raw mode and restarts its reads after a signal.
#[test]
fn sigterm_at_the_repl_prompt_on_a_terminal_undoes_the_session() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::support::skip("no `script` (util-linux) for a pseudo-terminal");
        return;
    }
    let sb = Sandbox::new();
    let history = crate::support::script::tmp_dir("repl-pty-term").join("h");
    let cmd = format!(
        "{} repl --history {}",
        koko_bin().display(),
        history.display()
    );
    let mut child = sb
        .command("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    let out = Tail::new(child.stdout.take().unwrap());
    out.wait_for_text("koko> ", Duration::from_secs(10));
    keys.write_all(b"let a = netns(\"a\"); print(\"made a\");\r")
        .unwrap();
    out.wait_for_text("made a", Duration::from_secs(10));
    out.wait_until("a fresh prompt", Duration::from_secs(10), |t| {
        t.rsplit("made a").next().unwrap_or("").contains("koko> ")
    });
    let marker = history.display().to_string();
    let koko = processes_with(&marker)
        .into_iter()
        // "PID: /path/koko repl ...", not the shell or `script` around it.
        .find(|p| {
            p.split_once(": ")
                .is_some_and(|(_, cmd)| cmd.starts_with(&format!("{} repl", koko_bin().display())))
        })
        .expect("koko's process");
    let pid: u32 = koko.split(':').next().unwrap().parse().unwrap();
    send(pid, "SIGTERM");
    let status = wait_exit(
        &mut child,
        "script around koko repl",
        Duration::from_secs(5),
    );
    drop(keys);
    let text = out.finish();
    assert!(text.contains("interrupted by SIGTERM"), "{text}");
    // `script` exits with its child's status (-e).
    assert_eq!(status.code(), Some(143), "{text}");
    assert_clean(&sb, "SIGTERM at a terminal prompt");
}

/// A container engine that accepts the connection and never answers: a
/// signal ends the wait at once (the engine's timeouts are 3 and 15 s).
#[test]
fn a_signal_ends_a_wait_for_a_silent_container_engine() {
    let sb = Sandbox::new();
    sb.netns_add(&["b"]);
    let dir = crate::support::script::tmp_dir("silent-engine");
    let socket = dir.join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let koko = Running::koko(
        &sb,
        &["-d", "ctr,l1", "-n", "b,l2"],
        &[("DOCKER_HOST", &format!("unix://{}", socket.display()))],
    );
    // koko is connected and waiting for an answer that never comes.
    let (_conn, _) = listener.accept().unwrap();
    let sent = Instant::now();
    send(koko.pid(), "SIGTERM");
    let (code, _, err) = koko.exit("koko waiting for a silent engine", Duration::from_secs(5));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "took {:?}: {err}",
        sent.elapsed()
    );
    assert_eq!(code, 143, "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert!(sb.link(Some("b"), "l2").is_none());
}

//! `koko repl` driven through piped stdin (rustyline reads plain lines when
//! stdin is not a terminal) and through a pseudo-terminal (`script` from
//! util-linux) for Tab completion.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::script::{assert_clean, tmp_dir};
use crate::support::{koko_bin, skip, wait_exit, Run, Sandbox, Tail};

/// Feed `input` to `koko repl --history HISTORY` on a pipe.
fn repl(sb: &Sandbox, input: &str, history: &std::path::Path) -> Run {
    let mut cmd = sb.command(koko_bin());
    cmd.args(["repl", "--history"]).arg(history);
    Run::with_input(&mut cmd, input, "koko repl")
}

const INPUT: &str = r#"let a = netns("a");
fn add(x,
       y) {
  x + y
}
add(2, 3)
if a.name == "a" {
  print("in the if block");
}
import "assert" as t;
let b = netns("b");
t::eq(a.name, "a", "name");
nosuch(1);
let l = veth(a, "va", b, "vb",
             #{a_addrs: ["10.0.1.1/24"], b_addrs: ["10.0.1.2/24"]});
l
t::reachable(a, "10.0.1.2").ok
:help veth
t::eq(1, 2, "one is not two");
netns("a").link("nope");
print(`still here: ${add(40, 2)}`);
"#;

#[test]
fn piped_session_multiline_variables_imports_errors_help_history() {
    let sb = Sandbox::new();
    let dir = tmp_dir("repl");
    let history = dir.join("history");
    let s = repl(&sb, INPUT, &history);
    assert_eq!(s.code, 0, "stdout:\n{}\nstderr:\n{}", s.stdout, s.stderr);
    let out = &s.stdout;
    // A fn split over lines, then called in a later line.
    assert!(out.contains("=> 5"), "{out}");
    // An if block split over lines, using a variable of an earlier line.
    assert!(out.contains("in the if block"), "{out}");
    // The import of one line is usable in later lines.
    assert!(out.contains("=> true"), "{out}");
    // A value of the API's types shows as the script sees it.
    assert!(out.contains("=> Link(va in netns 'a')"), "{out}");
    // :help NAME.
    assert!(
        out.contains("veth(a: Ns, name_a: string, b: Ns, name_b: string"),
        "{out}"
    );
    // Errors are reported and the session goes on.
    s.stderr_has("error: <repl>:1:1: unknown function nosuch (int)");
    s.stderr_has("one is not two: expected 2, got 1");
    s.stderr_has("no link 'nope' in netns 'a'");
    assert!(out.contains("still here: 42"), "{out}");
    // What the session built is in the kernel (the REPL keeps it).
    assert_eq!(sb.netns_list(), vec!["a", "b"]);
    assert_eq!(sb.addrs(Some("a"), "va"), vec!["10.0.1.1/24"]);
    assert!(out.contains("leaving"), "{out}");
    // History: every complete input, multi-line ones as one entry.
    let h = std::fs::read_to_string(&history).unwrap();
    assert!(h.contains("let a = netns(\"a\");"), "{h}");
    assert!(h.contains("fn add(x,"), "{h}");
    assert!(h.contains("print(`still here: ${add(40, 2)}`);"), "{h}");
    // A second session loads the history and appends to it.
    let s2 = repl(&sb, "1 + 1\n", &history);
    assert_eq!(s2.code, 0);
    assert!(s2.stdout.contains("=> 2"));
    let h2 = std::fs::read_to_string(&history).unwrap();
    assert!(h2.contains("fn add(x,") && h2.contains("1 + 1"), "{h2}");
}

#[test]
fn cleanup_in_the_repl_undoes_the_session() {
    let sb = Sandbox::new();
    let dir = tmp_dir("repl");
    let s = repl(
        &sb,
        "let a = netns(\"a\");\nveth(a, \"x\", host(), \"y\");\ncleanup();\n:quit\nprint(\"after quit\");\n",
        &dir.join("h"),
    );
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert!(!s.stdout.contains("after quit"), "{}", s.stdout);
    assert_clean(&sb, "cleanup() in the repl");
}

#[test]
fn syntax_error_in_the_repl_shows_the_caret_and_goes_on() {
    let sb = Sandbox::new();
    let dir = tmp_dir("repl");
    let s = repl(&sb, "let x = (1 + ;\nlet y = 7;\ny * 6\n", &dir.join("h"));
    assert_eq!(s.code, 0);
    s.stderr_has("<repl>:1:14: syntax error");
    s.stderr_has("^");
    s.stdout_has("=> 42");
}

/// How long a step on the pseudo-terminal may take.
const LIMIT: Duration = Duration::from_secs(10);

/// Keys typed into `script`'s pseudo-terminal, and what it shows.
struct Terminal {
    keys: std::process::ChildStdin,
    out: Tail,
}

impl Terminal {
    /// Type `keys`; returns where the output stood before them.
    fn send(&mut self, keys: &str) -> usize {
        let at = self.out.text().len();
        self.keys.write_all(keys.as_bytes()).unwrap();
        at
    }

    /// Type `typed` and Tab; wait until the editor shows `expected`.
    #[track_caller]
    fn complete(&mut self, typed: &str, expected: &str) {
        let at = self.send(&format!("{typed}\t"));
        self.out.wait_until(
            &format!("{typed:?} is completed to {expected:?}"),
            LIMIT,
            |t| t.get(at..).is_some_and(|r| r.contains(expected)),
        );
    }

    /// Type the rest of a line and Enter; wait until it printed `marker`
    /// and the editor shows a prompt after it (it reads again).
    #[track_caller]
    fn line(&mut self, rest: &str, marker: &str) {
        let at = self.send(&format!("{rest}\r"));
        self.out
            .wait_until(&format!("{marker:?} and then a prompt"), LIMIT, |t| match t
                .get(at..)
                .and_then(|r| r.find(marker))
            {
                Some(i) => t[at + i..].contains("koko> "),
                None => false,
            });
    }
}

/// Tab completion on a real terminal: `script` gives koko a pty.
///
/// Each key is sent once koko shows it is ready for it: the line editor
/// only edits (and completes) while it reads a line in raw mode; keys typed
/// while a line runs would meet the terminal's cooked mode instead. So the
/// test waits for what each step prints — the completed word, the line's
/// output, then a fresh prompt after it.
#[test]
fn tab_completes_on_a_pseudo_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("no `script` (util-linux) for a pseudo-terminal");
        return;
    }
    let sb = Sandbox::new();
    let dir = tmp_dir("repl-pty");
    let cmd = format!(
        "{} repl --history {}",
        koko_bin().display(),
        dir.join("h").display()
    );
    let mut child = sb
        .command("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm") // rustyline does not edit on "dumb"
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut term = Terminal {
        keys: child.stdin.take().unwrap(),
        out: Tail::new(child.stdout.take().unwrap()),
    };
    term.out.wait_for_text("koko> ", LIMIT);
    // "net" + Tab -> "netns"; then finish the line and print the result.
    term.complete("let a = net", "netns");
    term.line("(\"a\"); print(`made ${a.name}`)", "made a");
    // A method after a dot: "a.forw" + Tab -> "a.forwarding".
    term.complete("a.forw", "forwarding");
    term.line("(true); print(a.sysctl(\"net.ipv4.ip_forward\"))", "\n1\r");
    // A link name inside a string: "linkz" + Tab -> "linkzz" (read from the kernel).
    term.line("veth(a, \"linkzz\", host(), \"linkyy\");", "\n");
    term.complete("print(\"linkz", "linkzz");
    term.line("\".len())", "\n6\r");
    term.send(":quit\r");
    let status = wait_exit(&mut child, "koko repl on a pty after :quit", LIMIT);
    let Terminal { keys, out } = term;
    drop(keys);
    let out = out.finish();
    assert!(status.success(), "{out}");
    assert!(out.contains("netns"), "completion of 'net': {out}");
    assert!(out.contains("made a"), "{out}");
    assert!(out.contains("forwarding"), "{out}");
    // "linkzz".len() is 6: the name was completed before the line ran.
    assert!(
        out.lines().any(|l| l.trim() == "6"),
        "completion of a link name: {out}"
    );
    assert_eq!(sb.netns_list(), vec!["a"]);
    assert_eq!(sb.sysctl(Some("a"), "net.ipv4.ip_forward"), "1");
}

/// Ctrl-C stops the running input, not the session.
#[test]
fn ctrl_c_stops_the_running_input_and_the_session_goes_on() {
    let sb = Sandbox::new();
    let dir = tmp_dir("repl-int");
    let mut child = sb
        .command(koko_bin())
        .args(["repl", "--history"])
        .arg(dir.join("h"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = Tail::new(child.stdout.take().unwrap());
    // The input prints before it sleeps, in one evaluation: once "sleeping"
    // shows, the signal lands in the running input.
    stdin
        .write_all(b"let a = netns(\"a\");\nprint(\"sleeping\"); sleep(10000);\n")
        .unwrap();
    stdout.wait_for_text("sleeping", Duration::from_secs(10));
    let started = Instant::now();
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    stdin.write_all(b"print(`after ${a.name}`);\n").unwrap();
    drop(stdin);
    let status = wait_exit(
        &mut child,
        "koko repl at the end of its input",
        Duration::from_secs(15),
    );
    let stdout = stdout.finish();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "Ctrl-C did not stop sleep()"
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGINT (Ctrl-C)"),
        "{stderr}"
    );
    assert!(stdout.contains("after a"), "{stdout}");
}

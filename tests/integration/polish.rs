//! Output a person reads: progress on a terminal (and nowhere else), and
//! durations/RTTs rounded where they are printed while `--json` and the
//! values scripts compute with keep every digit.
//!
//! The terminal is a real pseudo-terminal, from `script` (util-linux): it
//! gives koko a pty as stdin, stdout and stderr, and copies what koko
//! writes there to its own stdout, which the test reads.

use crate::support::script::{assert_clean, tmp_dir, write_script};
use crate::support::{koko_bin, skip, wait_exit, Run, Sandbox, Tail};

fn repo_file(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Is `script` (util-linux) here to give koko a pseudo-terminal?
fn have_script() -> bool {
    let there = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok();
    if !there {
        skip("no `script` (util-linux) for a pseudo-terminal");
    }
    there
}

/// Run the shell command `line` on a pseudo-terminal inside the sandbox
/// (`script -qec`); returns what appeared on the terminal.
fn on_terminal(sb: &Sandbox, line: &str) -> Run {
    let mut cmd = sb.command("script");
    cmd.args(["-qec", line, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null());
    let run = Run::of(&mut cmd, format!("script -qec {line:?}"));
    assert_eq!(run.code, 0, "{line}: {}\n{}", run.stdout, run.stderr);
    run
}

fn names(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn netns_add_and_del_of_many_show_progress_on_a_terminal_only() {
    if !have_script() {
        return;
    }
    let sb = Sandbox::new();
    let koko = koko_bin().display().to_string();
    let dir = tmp_dir("progress");
    let out = dir.join("out");

    // stderr on the terminal, stdout to a file: progress on the terminal,
    // none of it in stdout.
    let t = on_terminal(
        &sb,
        &format!("{koko} netns add {} > {}", names("p", 60), out.display()),
    );
    assert!(t.stdout.contains("creating namespaces: "), "{:?}", t.stdout);
    assert!(t.stdout.contains("/60"), "{:?}", t.stdout);
    // The line is erased at the end (carriage return, erase to the end).
    assert!(t.stdout.ends_with("\r\x1b[K"), "{:?}", t.stdout);
    let printed = std::fs::read_to_string(&out).unwrap();
    assert_eq!(printed.lines().count(), 60, "{printed}");
    assert!(
        !printed.contains('\r') && !printed.contains("creating"),
        "{printed:?}"
    );
    assert_eq!(sb.netns_list().len(), 60);

    // stderr to a file: no progress anywhere.
    let err = dir.join("err");
    let quiet = on_terminal(
        &sb,
        &format!("{koko} netns del {} 2> {}", names("p", 60), err.display()),
    );
    assert!(
        !quiet.stdout.contains("deleting namespaces"),
        "{:?}",
        quiet.stdout
    );
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "");
    assert!(sb.netns_list().is_empty());

    // And a piped stderr (no terminal at all): the same command is silent.
    sb.koko(&["netns", "add", "q1"]).ok();
    let piped = sb.koko(&["netns", "del", "q1"]);
    piped.ok();
    assert_eq!(piped.stderr, "");
}

/// A chain built in bulk, a long watch, the chain destroyed in bulk, and
/// the undo at the end of the run: each shows its line on a terminal; the same script piped shows
/// none, and its stdout is the same.
#[test]
fn chain_watch_and_undo_show_progress_on_a_terminal() {
    if !have_script() {
        return;
    }
    let sb = Sandbox::new();
    let file = write_script(
        "progress",
        "long.rhai",
        r#"
let names = [];
for i in 0..30 { names.push(`c${i}`); }
let c = chain_build(names, #{});
print(`built ${c.nodes.len()}`);
watch(1200);
print("watched");
destroy_all(names);
print("destroyed");
"#,
    );
    let koko = koko_bin().display().to_string();
    let t = on_terminal(&sb, &format!("{koko} run --cleanup {}", file.display()));
    for needle in [
        "creating namespaces: ",
        "wiring the chain: links",
        "watching: ",
        "of 1.2 s, 0 hooks fired",
        "deleting namespaces: ",
        "undoing: ",
    ] {
        assert!(t.stdout.contains(needle), "{needle} in {:?}", t.stdout);
    }
    assert!(t.stdout.contains("built 30") && t.stdout.contains("watched"));
    assert_clean(&sb, "long.rhai on a terminal");

    let piped = sb.koko(&["run", "--cleanup", &file.display().to_string()]);
    piped.ok();
    assert_eq!(piped.stdout, "built 30\nwatched\ndestroyed\n");
    assert!(
        !piped.stderr.contains("watching") && !piped.stderr.contains('\r'),
        "{:?}",
        piped.stderr
    );
    assert_clean(&sb, "long.rhai piped");
}

/// A hook that prints while the watch's progress line stands on the
/// terminal: the line is erased first, so the hook's text starts at the
/// left margin instead of being glued to "watching: ...".
#[test]
fn a_hooks_print_during_a_watch_starts_on_a_clean_line() {
    if !have_script() {
        return;
    }
    let sb = Sandbox::new();
    let file = write_script(
        "progress",
        "hook.rhai",
        r#"
let a = netns("a"); let b = netns("b");
veth(a, "va", b, "vb");
on_link_down(a, "va", |ev| { print(`hook: ${ev.kind}`); stop_watch(); });
watch(60000);
print("after the watch");
"#,
    );
    let cmd = format!("{} run --cleanup {}", koko_bin().display(), file.display());
    let mut child = sb
        .command("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = Tail::new(child.stdout.take().unwrap());
    let limit = std::time::Duration::from_secs(20);
    out.wait_for_text("watching: ", limit);
    sb.sh("ip -n a link set va down");
    let status = wait_exit(&mut child, "the script after its hook", limit);
    let text = out.finish();
    assert!(status.success(), "{text:?}");
    let at = text.find("hook: link_down").expect("the hook printed");
    // What stands on the hook's line before its text: the terminal shows
    // what follows the last carriage return there, and that must be an
    // erasure (ESC [ K) or nothing — not "watching: ...".
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let shown = text[line_start..at].rsplit('\r').next().unwrap_or("");
    assert!(
        text[line_start..at].contains("watching: "),
        "the progress line stood there: {text:?}"
    );
    assert_eq!(
        shown.replace("\x1b[K", ""),
        "",
        "glued to the hook's print: {text:?}"
    );
    assert!(text.contains("after the watch"), "{text:?}");
    assert_clean(&sb, "hook.rhai");
}

/// Every number followed by "ms" in `text`, as written.
fn ms_numbers(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[1] == "ms" || w[1].starts_with("ms"))
        .map(|w| w[0].trim_start_matches(['(', '=']).to_string())
        .filter(|n| n.parse::<f64>().is_ok())
        .collect()
}

fn decimals(number: &str) -> usize {
    number.split_once('.').map_or(0, |(_, d)| d.len())
}

#[test]
fn failover_prints_rounded_milliseconds_and_its_json_keeps_every_digit() {
    let sb = Sandbox::new();
    let run = sb.koko(&["run", &repo_file("scripts/failover.rhai")]);
    run.ok();
    let numbers = ms_numbers(&run.stdout);
    // detection, hook, repair and outage.
    assert_eq!(numbers.len(), 4, "{}", run.stdout);
    for n in &numbers {
        assert!(decimals(n) <= 3, "{n} ms in:\n{}", run.stdout);
    }
    assert_clean(&sb, "failover.rhai");

    // The JSON line carries the measured values, not the rounded text: the
    // detection time as the probe took it, more precise than the printed
    // rule allows (a clock in nanoseconds divided into milliseconds).
    let json = sb.koko(&["run", &repo_file("scripts/failover.rhai"), "--", "--json"]);
    json.ok();
    let v = json.json();
    let full: Vec<f64> = ["detection_ms", "repair_ms", "outage_ms"]
        .iter()
        .map(|k| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}")))
        .collect();
    assert!(
        full.iter().any(|x| decimals(&x.to_string()) > 3),
        "no value with more than 3 decimals: the JSON was rounded? {v}"
    );
    assert_clean(&sb, "failover.rhai --json");
}

#[test]
fn scripts_format_milliseconds_and_the_repl_shows_them_rounded() {
    let sb = Sandbox::new();
    let file = write_script(
        "fmt",
        "fmt.rhai",
        r#"
print(fmt_ms(20.237548828125));
print(fmt_ms(0.12152800000000001));
print(fmt_ms(1503.4));
print(fmt_ms(42));
print(fmt_ms(()));
sb_ping();
fn sb_ping() {
    let a = netns("a"); let b = netns("b");
    veth(a, "va", b, "vb", #{a_addrs: ["10.9.0.1/24"], b_addrs: ["10.9.0.2/24"]});
    let r = a.ping("10.9.0.2");
    print(`rtt ${fmt_ms(r.rtt_ms)} ms`);
}
"#,
    );
    let run = sb.koko(&["run", "--cleanup", &file.display().to_string()]);
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[..5],
        ["20.2", "0.122", "1503", "42", "-"],
        "{}",
        run.stdout
    );
    let rtt = &ms_numbers(lines[5])[0];
    assert!(decimals(rtt) <= 3, "{}", lines[5]);
    assert_clean(&sb, "fmt.rhai");

    // The REPL rounds what it shows of a map's milliseconds, not the value.
    let dir = tmp_dir("repl-round");
    let mut cmd = sb.command(koko_bin());
    cmd.args(["repl", "--history"]).arg(dir.join("h"));
    let repl = Run::with_input(
        &mut cmd,
        "let m = #{rtt_ms: 0.12152800000000001, sent: 1, note: 2.5555};\nm\nm.rtt_ms\n",
        "koko repl",
    );
    repl.ok();
    assert!(repl.stdout.contains("\"rtt_ms\": 0.122"), "{}", repl.stdout);
    // Not an _ms key: shown as it is.
    assert!(repl.stdout.contains("2.5555"), "{}", repl.stdout);
    // The variable itself is exact.
    assert!(repl.stdout.contains("=> 0.121528"), "{}", repl.stdout);
}

//! Shell completions (`koko completions bash|zsh|fish`), the man page
//! (`koko man`) and the hidden `koko __complete KIND`, checked with the
//! real shells and groff: bash's completion function is driven with
//! COMP_WORDS/COMP_CWORD, fish answers `complete -C`, zsh and fish parse
//! their scripts, groff renders the page. And the consistency the single
//! definition promises: every command `koko -h` lists is in every script
//! and in the man page, and no script offers a command the help does not.

use std::collections::BTreeSet;

use crate::support::script::tmp_dir;
use crate::support::{engine_sandbox, koko_bin, Ctr, Run, Sandbox};

/// `PATH` with the koko under test first: the scripts call `koko
/// __complete` for live names, as an installed koko would be called.
fn path_with_koko() -> String {
    let dir = koko_bin().parent().unwrap().to_path_buf();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn script(sb: &Sandbox, shell: &str) -> String {
    let run = sb.koko(&["completions", shell]);
    run.ok();
    assert!(!run.stdout.trim().is_empty(), "empty {shell} script");
    run.stdout.clone()
}

/// Write `text` to a fresh file named `name`.
fn file(name: &str, text: &str) -> std::path::PathBuf {
    let path = tmp_dir("completions").join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The subcommands `koko -h` lists: the word after `koko` on each usage
/// line, when it is a lower-case word (not ENDPOINT, DELETE or -h).
fn help_commands(help: &str) -> BTreeSet<String> {
    help.lines()
        .take_while(|l| !l.starts_with("ENDPOINT"))
        .filter_map(|l| l.strip_prefix("  koko "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase()))
        .map(str::to_string)
        .collect()
}

/// The `--flags` the help's usage line of `command` shows.
fn help_flags(help: &str, command: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| l.strip_prefix(&format!("  koko {command} ")))
        .flat_map(|rest| {
            rest.split(|c: char| c.is_whitespace() || "[]|".contains(c))
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What bash's completion function answers for a command line whose last
/// word is being completed (`words` ends with the partial word).
fn bash_complete(sb: &Sandbox, script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect();
    let program = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); \
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; _koko; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" ")
    );
    let mut cmd = sb.command("bash");
    cmd.args(["--norc", "-c", &program])
        .env("PATH", path_with_koko());
    let run = Run::of(&mut cmd, format!("bash completion of {words:?}"));
    run.ok();
    run.stdout.lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_subcommands_flags_choices_and_live_names() {
    let sb = Sandbox::new();
    sb.netns_add(&["blue", "green"]);
    let path = file("koko.bash", &script(&sb, "bash"));

    // The script registers itself for `koko`.
    let mut cmd = sb.command("bash");
    cmd.args([
        "--norc",
        "-c",
        &format!("source {}; complete -p koko", path.display()),
    ]);
    Run::of(&mut cmd, "complete -p koko")
        .ok()
        .stdout_has("complete -F _koko koko");

    let c = |words: &[&str]| bash_complete(&sb, &path, words);
    assert_eq!(c(&["koko", "gr"]), vec!["graph"]);
    let all = c(&["koko", ""]);
    for sub in ["netns", "run", "graph", "capture", "completions", "man"] {
        assert!(all.iter().any(|w| w == sub), "{sub} in {all:?}");
    }
    assert!(c(&["koko", "-"]).iter().any(|w| w == "-n"));
    let run_flags = c(&["koko", "run", "--k"]);
    assert_eq!(run_flags, vec!["--keep", "--keep-wired"]);
    assert_eq!(
        c(&["koko", "graph", "--format", ""]),
        vec!["dot", "mermaid", "json", "svg"]
    );
    assert_eq!(
        c(&["koko", "capture", "host", "eth0", "--dir", "b"]),
        vec!["both"]
    );
    assert_eq!(c(&["koko", "completions", "f"]), vec!["fish"]);
    // A macvlan mode after the parent's comma, in the case typed.
    assert_eq!(
        c(&["koko", "-n", "blue,mv0", "-M", "eth0,br"]),
        vec!["eth0,bridge"]
    );
    // Live names: the sandbox's namespaces, from `koko __complete netns`.
    assert_eq!(c(&["koko", "-n", ""]), vec!["blue", "green"]);
    assert_eq!(c(&["koko", "-N", "g"]), vec!["green"]);
    assert_eq!(c(&["koko", "ip", "ipnetns", "b"]), vec!["blue"]);
    assert_eq!(
        c(&["koko", "netns", "del", "blue", ""]),
        vec!["blue", "green"]
    );
    // After the target, the koro commands.
    assert!(c(&["koko", "ip", "ipnetns", "blue", "ro"]) == vec!["route"]);
}

#[test]
fn zsh_and_fish_scripts_parse_and_fish_completes() {
    let sb = Sandbox::new();
    sb.netns_add(&["violet"]);
    let zsh = file("_koko", &script(&sb, "zsh"));
    let mut cmd = sb.command("zsh");
    cmd.arg("-n").arg(&zsh);
    Run::of(&mut cmd, "zsh -n _koko").ok();
    assert!(std::fs::read_to_string(&zsh)
        .unwrap()
        .starts_with("#compdef koko"));

    let fish = file("koko.fish", &script(&sb, "fish"));
    let mut cmd = sb.command("fish");
    cmd.arg("-n").arg(&fish);
    Run::of(&mut cmd, "fish -n koko.fish").ok();

    let complete = |line: &str| -> Vec<String> {
        let mut cmd = sb.command("fish");
        cmd.args([
            "--no-config",
            "-c",
            &format!("source {}; complete -C '{line}'", fish.display()),
        ])
        .env("PATH", path_with_koko());
        let run = Run::of(&mut cmd, format!("fish complete -C '{line}'"));
        run.ok();
        // "word<TAB>description": the word.
        run.stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(complete("koko gr"), vec!["graph"]);
    assert_eq!(complete("koko -n "), vec!["violet"]);
    assert_eq!(complete("koko ip ipnetns "), vec!["violet"]);
    assert_eq!(
        complete("koko graph --format "),
        vec!["dot", "json", "mermaid", "svg"]
    );
    assert!(complete("koko run --keep-").contains(&"--keep-wired".to_string()));
}

/// zsh's function driven with `words`/`CURRENT` as the completion system
/// sets them, its builtins (`compadd`, `_describe`, `_files`) replaced by
/// stand-ins that print what they were offered, one a line.
fn zsh_complete(sb: &Sandbox, script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect();
    let program = format!(
        r#"compdef() {{ : }}
compset() {{ : }}
compadd() {{ while [[ $1 == -* && $1 != -- ]]; do shift; done; [[ $1 == -- ]] && shift; print -rl -- "$@" }}
_describe() {{ local name=${{@[-1]}}; print -rl -- ${{(P)name}} }}
_files() {{ print -r -- '<files>' }}
source {}
words=({}); CURRENT=${{#words}}
_koko"#,
        script.display(),
        quoted.join(" ")
    );
    let mut cmd = sb.command("zsh");
    cmd.args(["-f", "-c", &program])
        .env("PATH", path_with_koko());
    let run = Run::of(&mut cmd, format!("zsh completion of {words:?}"));
    run.ok();
    run.stdout.lines().map(str::to_string).collect()
}

#[test]
fn zsh_function_offers_commands_flags_choices_and_live_names() {
    let sb = Sandbox::new();
    sb.netns_add(&["indigo"]);
    let path = file("_koko", &script(&sb, "zsh"));
    let c = |words: &[&str]| zsh_complete(&sb, &path, words);
    let subcommands = c(&["koko", ""]);
    assert!(
        subcommands.iter().any(|l| l.starts_with("graph:")),
        "{subcommands:?}"
    );
    assert!(c(&["koko", "run", "--"])
        .iter()
        .any(|l| l.starts_with("--keep-wired:")));
    assert_eq!(
        c(&["koko", "graph", "--format", ""]),
        vec!["dot", "mermaid", "json", "svg"]
    );
    assert_eq!(c(&["koko", "-n", ""]), vec!["indigo"]);
    assert_eq!(c(&["koko", "ip", "ipnetns", ""]), vec!["indigo"]);
    assert_eq!(c(&["koko", "run", ""]), vec!["<files>"]);
}

#[test]
fn man_page_renders_without_warnings_and_names_every_command() {
    let sb = Sandbox::new();
    let run = sb.koko(&["man"]);
    run.ok();
    let page = file("koko.1", &run.stdout);
    // -ww: every warning; -z: no output, only the diagnostics.
    let mut cmd = sb.command("groff");
    cmd.args(["-man", "-Tutf8", "-ww", "-z"]).arg(&page);
    let groff = Run::of(&mut cmd, "groff -man koko.1");
    groff.ok();
    assert_eq!(groff.stderr.trim(), "", "groff warnings");
    let mut cmd = sb.command("man");
    cmd.arg("-l")
        .arg(&page)
        .env("MANWIDTH", "200")
        .env("MAN_KEEP_FORMATTING", "");
    let man = Run::of(&mut cmd, "man -l koko.1");
    man.ok();
    assert_eq!(man.stderr.trim(), "", "man -l warnings");
    let text = &man.stdout;
    for section in [
        "SYNOPSIS",
        "COMMANDS",
        "ENDPOINT",
        "EXIT STATUS",
        "EXAMPLES",
    ] {
        assert!(text.contains(section), "{section} in:\n{text}");
    }
    let help = sb.koko(&["-h"]).stdout.clone();
    for name in help_commands(&help) {
        assert!(
            text.contains(&format!("koko {name}")),
            "koko {name} in:\n{text}"
        );
    }
    assert!(text.contains("-n NETNS,LINK[,ITEM...]"), "{text}");
    assert!(text.contains("--keep-wired"), "{text}");
    assert!(text.contains("128+N"), "{text}");
}

/// The single definition: a command or a flag in `koko -h` and not in a
/// completion script or the man page (or the other way round) fails here.
#[test]
fn every_command_and_flag_of_the_help_is_in_each_script_and_the_man_page() {
    let sb = Sandbox::new();
    let help = sb.koko(&["-h"]).stdout.clone();
    let commands = help_commands(&help);
    for expected in ["netns", "run", "graph", "capture", "completions", "man"] {
        assert!(commands.contains(expected), "{expected} in {commands:?}");
    }
    let bash = script(&sb, "bash");
    let zsh = script(&sb, "zsh");
    let fish = script(&sb, "fish");
    let man = sb.koko(&["man"]).stdout.clone();

    // bash: the word list of the first word is exactly the help's commands.
    let first = bash
        .lines()
        .find_map(|l| l.trim().strip_prefix("COMPREPLY=( $(compgen -W \""))
        .and_then(|l| l.split('"').next())
        .expect("bash's list of subcommands");
    let bash_commands: BTreeSet<String> = first.split_whitespace().map(str::to_string).collect();
    assert_eq!(bash_commands, commands, "bash vs koko -h");
    // fish: one `-a NAME` line per subcommand, and no other.
    let fish_commands: BTreeSet<String> = fish
        .lines()
        .filter(|l| l.contains("-eq 1' -a "))
        .filter_map(|l| {
            l.split(" -a ")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(fish_commands, commands, "fish vs koko -h");
    for name in &commands {
        assert!(zsh.contains(&format!("'{name}:")), "zsh lacks {name}");
        assert!(man.contains(&format!("koko {name}")), "man lacks {name}");
    }
    // Every --flag of a subcommand's usage line is offered by every script.
    for name in &commands {
        for flag in help_flags(&help, name) {
            let roff = flag.replace('-', "\\-");
            assert!(bash.contains(&flag), "bash lacks {name} {flag}");
            assert!(
                zsh.contains(&format!("'{flag}:")),
                "zsh lacks {name} {flag}"
            );
            let long = flag.trim_start_matches('-');
            assert!(
                fish.contains(&format!("-l {long} ")),
                "fish lacks {name} {flag}"
            );
            assert!(man.contains(&roff), "man lacks {name} {flag}");
        }
    }
}

#[test]
fn hidden_complete_lists_live_names_and_is_silent_without_an_engine() {
    let sb = Sandbox::new();
    let none = sb.koko(&["__complete", "netns"]);
    none.ok();
    assert_eq!(none.stdout, "");
    sb.netns_add(&["n2", "n1"]);
    let names = sb.koko(&["__complete", "netns"]);
    names.ok();
    assert_eq!(names.stdout, "n1\nn2\n");
    // No engine at that socket: no candidates, no error, exit 0.
    let dir = tmp_dir("no-engine");
    let host = format!("unix://{}", dir.join("absent.sock").display());
    let quiet = sb.koko_env(
        &[("DOCKER_HOST", host.as_str())],
        &["__complete", "containers"],
    );
    quiet.ok();
    assert_eq!(quiet.stdout, "");
    assert_eq!(quiet.stderr, "");
    sb.koko(&["completions", "tcsh"])
        .fails(2, "unknown shell 'tcsh'");
}

#[test]
fn containers_complete_to_the_running_docker_containers() {
    let Some(sb) = engine_sandbox("docker") else {
        return;
    };
    let running = Ctr::docker("compl");
    let stopped = Ctr::created("complx");
    let listed = sb.koko(&["__complete", "containers"]);
    listed.ok();
    let names: Vec<&str> = listed.stdout.lines().collect();
    assert!(names.contains(&running.name.as_str()), "{names:?}");
    assert!(!names.contains(&stopped.name.as_str()), "{names:?}");
    // Through bash's completion of `-d` and of koro's `docker` target.
    let path = file("koko.bash", &script(&sb, "bash"));
    let prefix = &running.name[..running.name.len() - 2];
    for words in [
        vec!["koko", "-d", prefix],
        vec!["koko", "ip", "docker", prefix],
    ] {
        assert_eq!(
            bash_complete(&sb, &path, &words),
            vec![running.name.clone()],
            "{words:?}"
        );
    }
}

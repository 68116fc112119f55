//! The whole command line, declared once.
//!
//! koko has several faces — the one-shot grammar of the original koko
//! (hand-parsed in [`crate::plan::oneshot`]), subcommands parsed with clap
//! derive (`run`, `repl`, `test`), the koro grammar (`koko ip`), and small
//! hand-parsed verbs (`netns`, `show`, `runs`, ...). Users meet them through
//! four texts: `koko -h`, the shell completions, the man page, and the error
//! messages. The first three are generated from the data in this module, so
//! a command added here shows up in all of them, and a command that is not
//! here shows up in none (a test checks that the three agree).
//!
//! Where a subcommand is parsed by clap derive, its flags are read from the
//! derive struct ([`clap::CommandFactory`]) instead of being listed twice;
//! the synopsis line stays hand-written because it is curated for people.
//!
//! What a word completes to is described by [`Values`]: fixed choices, or
//! live names that only the running system knows (named namespaces,
//! running containers), which the completion scripts ask of the hidden
//! `koko __complete KIND`.

use clap::CommandFactory;

/// What the value of a flag, or a positional word, completes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Values {
    /// Nothing to offer (a number, an address, free text).
    Any,
    /// One of these words.
    Choices(Vec<String>),
    /// `PREFIX,CHOICE`: the word before the comma is free (a parent link),
    /// the one after it is one of these (macvlan's `PARENT,MODE`).
    AfterComma(Vec<String>),
    /// A named network namespace (/run/netns), asked of `koko __complete netns`.
    Netns,
    /// A running Docker/Podman container, asked of `koko __complete containers`.
    Containers,
    /// A file name.
    File,
}

impl Values {
    /// The `koko __complete KIND` that lists these, if they are live names.
    pub fn live_kind(&self) -> Option<&'static str> {
        match self {
            Values::Netns => Some("netns"),
            Values::Containers => Some("containers"),
            _ => None,
        }
    }
}

/// One option of a command.
#[derive(Debug, Clone)]
pub struct Flag {
    pub short: Option<char>,
    pub long: Option<String>,
    /// The name of its value (`N`, `FILE`), if it takes one.
    pub value: Option<String>,
    /// What its value completes to (`Any` for a flag without a value).
    pub values: Values,
    pub help: String,
}

impl Flag {
    fn new(short: Option<char>, long: Option<&str>, value: Option<&str>, help: &str) -> Flag {
        Flag {
            short,
            long: long.map(str::to_string),
            value: value.map(str::to_string),
            values: Values::Any,
            help: help.to_string(),
        }
    }

    fn short(c: char, value: &str, help: &str) -> Flag {
        Flag::new(Some(c), None, Some(value), help)
    }

    fn long(name: &str, value: Option<&str>, help: &str) -> Flag {
        Flag::new(None, Some(name), value, help)
    }

    fn values(mut self, values: Values) -> Flag {
        self.values = values;
        self
    }

    /// The words that spell it: `-n`, `--mtu`.
    pub fn spellings(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(c) = self.short {
            v.push(format!("-{c}"));
        }
        if let Some(l) = &self.long {
            v.push(format!("--{l}"));
        }
        v
    }

    /// `-n NETNS,LINK[,ITEM...]` or `--mtu N`.
    pub fn synopsis(&self) -> String {
        let names = self.spellings().join(", ");
        match &self.value {
            Some(v) => format!("{names} {v}"),
            None => names,
        }
    }
}

/// One line of a synopsis, with what it does.
#[derive(Debug, Clone)]
pub struct Usage {
    /// Without the leading `koko `.
    pub line: &'static str,
    pub what: &'static str,
}

/// One command (`name` is empty for the one-shot grammar: `koko ENDPOINT...`).
#[derive(Debug, Clone)]
pub struct Command {
    pub name: &'static str,
    /// One sentence, for completion menus and the man page.
    pub about: &'static str,
    pub usage: Vec<Usage>,
    pub flags: Vec<Flag>,
    /// What its first positional word completes to.
    pub first: Values,
    /// What its later positional words complete to.
    pub rest: Values,
    /// A positional word that decides what the next word is (`ipnetns` →
    /// a namespace name).
    pub after: Vec<(&'static str, Values)>,
    /// A first word (verb) that decides what every later positional is
    /// (`netns del` → namespace names).
    pub verbs: Vec<(&'static str, Values)>,
}

impl Command {
    fn new(name: &'static str, about: &'static str) -> Command {
        Command {
            name,
            about,
            usage: Vec::new(),
            flags: Vec::new(),
            first: Values::Any,
            rest: Values::Any,
            after: Vec::new(),
            verbs: Vec::new(),
        }
    }

    fn usage(mut self, line: &'static str, what: &'static str) -> Command {
        self.usage.push(Usage { line, what });
        self
    }

    fn flag(mut self, flag: Flag) -> Command {
        self.flags.push(flag);
        self
    }

    /// The flags of a clap derive struct (help and version excepted: every
    /// command gets `-h` below), then `extra` ones it does not have (yet).
    fn flags_of<T: CommandFactory>(mut self, extra: Vec<Flag>) -> Command {
        let cmd = T::command();
        for arg in cmd.get_arguments() {
            if arg.is_positional() || arg.is_hide_set() {
                continue;
            }
            // The action says it: `bool` fields are SetTrue (no value),
            // whatever num_args says before the command is built.
            let takes_value = arg.get_action().takes_values();
            let value = if takes_value {
                Some(
                    arg.get_value_names()
                        .and_then(|v| v.first())
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase()),
                )
            } else {
                None
            };
            let choices: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|p| p.get_name().to_string())
                .collect();
            let values = if !choices.is_empty() {
                Values::Choices(choices)
            } else if matches!(value.as_deref(), Some("FILE")) {
                Values::File
            } else {
                Values::Any
            };
            let help = arg
                .get_help()
                .map(|h| h.to_string().replace('\n', " "))
                .unwrap_or_default();
            self.flags.push(Flag {
                short: arg.get_short(),
                long: arg.get_long().map(str::to_string),
                value,
                values,
                help,
            });
        }
        for flag in extra {
            if !self.flags.iter().any(|f| f.long == flag.long) {
                self.flags.push(flag);
            }
        }
        self
    }

    fn first(mut self, v: Values) -> Command {
        self.first = v;
        self
    }

    fn rest(mut self, v: Values) -> Command {
        self.rest = v;
        self
    }

    fn targets(self) -> Command {
        self.first(Values::Choices(words(TARGET_WORDS)))
            .after("docker", Values::Containers)
            .after("ipnetns", Values::Netns)
            .after("netns", Values::File)
    }

    fn after(mut self, word: &'static str, v: Values) -> Command {
        self.after.push((word, v));
        self
    }

    fn verb(mut self, word: &'static str, v: Values) -> Command {
        self.verbs.push((word, v));
        self
    }

    /// Every flag word of the command, `-h` included.
    pub fn flag_words(&self) -> Vec<String> {
        let mut words: Vec<String> = self.flags.iter().flat_map(Flag::spellings).collect();
        for h in ["-h", "--help"] {
            if !words.iter().any(|w| w == h) {
                words.push(h.into());
            }
        }
        words
    }
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}

/// The first word of a koro TARGET (`koko ip`, `show`, `graph`, `capture`).
pub const TARGET_WORDS: &[&str] = &[
    "docker", "cri", "netns", "ipnetns", "pid", "host", "current",
];

/// The macvlan modes `-M PARENT,MODE` accepts.
pub const MACVLAN_MODES: &[&str] = &["default", "private", "vepa", "bridge", "passthru"];

/// The shells `koko completions` writes for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// Every command, in the order `koko -h` lists them. Hidden helpers
/// (`__complete`, `__test-one`, ...) are not here.
pub fn commands() -> Vec<Command> {
    let endpoint = |c: char, value: &str, help: &str| Flag::short(c, value, help);
    let oneshot = Command::new(
        "",
        "connect two endpoints with a veth pair, or one with a vxlan/vlan/macvlan link; delete links",
    )
    .usage("ENDPOINT ENDPOINT [--mtu N]", "veth pair between two endpoints")
    .usage(
        "ENDPOINT -x PARENT,REMOTE,VNI[,port=N][,mtu=N][,local=IP][,ttl=N][,learning=off]",
        "vxlan into ENDPOINT (-X is the same)",
    )
    .usage("ENDPOINT -V PARENT,VID", "vlan into ENDPOINT")
    .usage(
        "ENDPOINT -M PARENT,MODE",
        "macvlan (default|private|vepa|bridge|passthru)",
    )
    .usage("DELETE...", "delete links (a veth's peer goes with it)")
    .flag(
        endpoint('d', "CONTAINER,LINK[,ITEM...]", "Docker (or Podman) container, by name or id")
            .values(Values::Containers),
    )
    .flag(
        endpoint('n', "NETNS,LINK[,ITEM...]", "`ip netns` namespace (/run/netns/NETNS)")
            .values(Values::Netns),
    )
    .flag(endpoint('p', "PID,LINK[,ITEM...]", "the network namespace of process PID"))
    .flag(
        endpoint('a', "PATH,LINK[,ITEM...]", "a namespace file, e.g. /proc/1/ns/net")
            .values(Values::File),
    )
    .flag(endpoint('c', "LINK[,ITEM...]", "koko's own namespace"))
    .flag(endpoint(
        'e',
        "ID,LINK[,ITEM...]",
        "CRI (containerd, CRI-O) container or pod sandbox, by id or unique prefix",
    ))
    .flag(endpoint('D', "CONTAINER,LINK", "delete a link of a container").values(Values::Containers))
    .flag(endpoint('N', "NETNS,LINK", "delete a link of a named namespace").values(Values::Netns))
    .flag(endpoint('P', "PID,LINK", "delete a link of a process's namespace"))
    .flag(endpoint('A', "PATH,LINK", "delete a link of a namespace file").values(Values::File))
    .flag(endpoint('C', "LINK", "delete a link of koko's own namespace"))
    .flag(endpoint('E', "ID,LINK", "delete a link of a CRI container or pod sandbox"))
    .flag(endpoint(
        'x',
        "PARENT,REMOTE,VNI[,KEY=VALUE...]",
        "vxlan over PARENT to REMOTE with id VNI (keys: port, mtu, local, ttl, learning)",
    ))
    .flag(endpoint('X', "PARENT,REMOTE,VNI[,KEY=VALUE...]", "the same as -x"))
    .flag(endpoint('V', "PARENT,VID", "vlan VID over PARENT"))
    .flag(
        endpoint('M', "PARENT,MODE", "macvlan over PARENT (default|private|vepa|bridge|passthru)")
            .values(Values::AfterComma(words(MACVLAN_MODES))),
    )
    .flag(Flag::long("mtu", Some("N"), "MTU of a new veth pair (default 1500)"))
    .flag(Flag::long("json", None, "print a machine-readable result"))
    .flag(Flag::long(
        "cri-socket",
        Some("unix:///PATH"),
        "the CRI runtime for -e/-E, `cri ID` and scripts' cri() (any command)",
    ))
    .flag(Flag::new(Some('h'), Some("help"), None, "print this help"))
    .flag(Flag::new(Some('v'), Some("version"), None, "print koko's version"));

    let netns = Command::new(
        "netns",
        "named network namespaces, as `ip netns` makes them",
    )
    .usage(
        "netns add|del NAME... | list",
        "named namespaces, as `ip netns` makes them",
    )
    .flag(Flag::long("json", None, "print a machine-readable result"))
    .first(Values::Choices(words(&["add", "del", "list"])))
    .verb("del", Values::Netns)
    .verb("delete", Values::Netns);

    let run = Command::new("run", "run a Rhai script")
        .usage(
            "run FILE [--keep|--cleanup] [--keep-wired] [--max-memory SIZE] [-- ARGS...]",
            "run a Rhai script",
        )
        .usage(
            "run --sandbox FILE ...",
            "the same, in a private network+mount namespace",
        )
        .flags_of::<super::RunArgs>(vec![])
        .first(Values::File);

    let test = Command::new("test", "run *_test.rhai tests, each in a sandbox of its own")
        .usage(
            "test [PATH...] [-j N] [--filter P] [--list] [--timeout S] [--junit FILE] [--tap] [--keep-failed]",
            "run *_test.rhai tests, each in a sandbox of its own",
        )
        .flags_of::<super::test::TestArgs>(Vec::new())
        .first(Values::File)
        .rest(Values::File);

    let repl = Command::new("repl", "interactive prompt with the script API")
        .usage("repl", "interactive prompt with the script API")
        .flags_of::<super::ReplArgs>(Vec::new());

    let ip = Command::new("ip", "addresses, routes, link state (koro)")
        .usage(
            "ip TARGET COMMAND...",
            "addresses, routes, link state (koro; see `koko ip -h`)",
        )
        .flag(Flag::long("json", None, "print a machine-readable result"))
        .targets()
        .rest(Values::Choices(words(&[
            "address",
            "route",
            "link",
            "sysctl",
            "forwarding",
        ])));

    let show = Command::new("show", "links, addresses and routes of a namespace")
        .usage("show TARGET", "links, addresses and routes of a namespace")
        .flag(Flag::long("json", None, "print a machine-readable result"))
        .targets();

    let graph = Command::new("graph", "the live wiring read from the kernel, as a graph")
        .usage(
            "graph [--format dot|mermaid|json|svg] [-o FILE] [--all | TARGET...]",
            "the live wiring (namespaces, containers, links) as a graph",
        )
        .flag(
            Flag::long(
                "format",
                Some("FORMAT"),
                "dot (default), mermaid, json, or svg (through Graphviz)",
            )
            .values(Values::Choices(words(&["dot", "mermaid", "json", "svg"]))),
        )
        .flag(
            Flag::new(Some('o'), None, Some("FILE"), "write the graph to FILE")
                .values(Values::File),
        )
        .flag(Flag::long(
            "all",
            None,
            "every namespace and container (the default)",
        ))
        .targets()
        .rest(Values::Choices(words(TARGET_WORDS)));

    let capture = Command::new("capture", "capture packets on a link into a pcap file")
        .usage(
            "capture TARGET DEV -w FILE [-c N] [--duration S] [--dir in|out|both] [--snaplen N]",
            "capture packets on DEV into a pcap file (no tcpdump needed)",
        )
        .flag(
            Flag::new(Some('w'), None, Some("FILE"), "the pcap file to write").values(Values::File),
        )
        .flag(Flag::new(
            Some('c'),
            None,
            Some("N"),
            "stop after N packets",
        ))
        .flag(Flag::long("duration", Some("S"), "stop after S seconds"))
        .flag(
            Flag::long(
                "dir",
                Some("DIR"),
                "which packets: in, out or both (default)",
            )
            .values(Values::Choices(words(&["in", "out", "both"]))),
        )
        .flag(Flag::long(
            "snaplen",
            Some("N"),
            "keep at most N bytes of each packet",
        ))
        .targets();

    let runs = Command::new("runs", "runs with a journal in /run/koko: alive or dead")
        .usage(
            "runs [--json]",
            "runs with a journal in /run/koko: alive or dead",
        )
        .flag(Flag::long("json", None, "print a machine-readable result"));

    let undo = Command::new("undo", "undo what a dead (killed, crashed) run left")
        .usage(
            "undo RUN... | --dead",
            "undo what a dead (killed, crashed) run left",
        )
        .flag(Flag::long("dead", None, "every dead run"));

    let cni = Command::new("cni", "the CNI plugin (also installed as koko-cni)").usage(
        "cni",
        "the CNI plugin (also installed as koko-cni): CNI_COMMAND\nand friends in the environment, the network config on stdin",
    );

    let completions = Command::new("completions", "print a shell completion script")
        .usage(
            "completions bash|zsh|fish",
            "print the completion script of a shell (see README: Install)",
        )
        .first(Values::Choices(words(SHELLS)));

    let man = Command::new("man", "print the man page koko(1) (roff)").usage(
        "man",
        "print the man page koko(1) (roff; `koko man | man -l -`)",
    );

    vec![
        oneshot,
        netns,
        run,
        test,
        repl,
        ip,
        show,
        graph,
        capture,
        runs,
        undo,
        cni,
        completions,
        man,
    ]
}

/// The names of the subcommands (the one-shot grammar has none).
pub fn subcommand_names() -> Vec<&'static str> {
    commands()
        .iter()
        .map(|c| c.name)
        .filter(|n| !n.is_empty())
        .collect()
}

/// The one-shot flags that name an endpoint to create a link in.
pub const ENDPOINT_FLAGS: &[char] = &['d', 'n', 'p', 'a', 'c', 'e'];

/// The ENDPOINT forms (`-n NETNS,LINK[,ITEM...]`) and what they mean: the
/// one-shot command's endpoint flags.
pub fn endpoint_forms() -> Vec<(String, String)> {
    let oneshot = commands().into_iter().find(|c| c.name.is_empty());
    oneshot
        .map(|c| c.flags)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.short.is_some_and(|c| ENDPOINT_FLAGS.contains(&c)))
        .map(|f| (f.synopsis(), f.help))
        .collect()
}

/// The other terms of the grammar and what they mean (DELETE, ITEM).
pub const GRAMMAR: &[(&str, &[(&str, &str)])] = &[
    (
        "DELETE",
        &[(
            "-D -N -P -A -C -E",
            "the same flags in upper case with NS,LINK",
        )],
    ),
    (
        "ITEM",
        &[
            ("ADDR/PREFIX", "IPv4 or IPv6, any number"),
            (
                "mirror:DIR:IFACE | mirror:DIR,IFACE",
                "copy IFACE's traffic out through LINK; DIR := ingress | egress | both",
            ),
        ],
    ),
];

/// Notes after the grammar.
pub const NOTES: &str = "\
PARENT is a link of koko's own namespace: run koko under `ip netns exec HOST`
to use a parent there. vxlan defaults: port 4789, learning on, MTU from the parent.";

/// The global options, as `koko -h` shows them.
pub const OPTIONS: &[(&str, &str)] = &[
    ("--mtu N", "MTU of a new veth pair (default 1500)"),
    ("--json", "print a machine-readable result"),
    (
        "--cri-socket unix:///PATH",
        "the CRI runtime for -e/-E, `cri ID` and scripts' cri()\n(default: $CONTAINER_RUNTIME_ENDPOINT, else the first that answers of\n/run/containerd/containerd.sock and /var/run/crio/crio.sock)",
    ),
];

pub const EXAMPLES: &[&str] = &[
    "koko -n testns1,link1,192.168.1.1/24 -n testns2,link2,192.168.1.2/24",
    "koko -d centos1,link1,192.168.1.1/24,2001:DB8::1/64 -d centos2,link2,192.168.1.2/24,2001:DB8::2/64",
    "koko -p 4242,eth1,10.0.0.1/24 -c veth-host,10.0.0.2/24",
    "koko -N testns1,link1",
    "ip netns exec hostA koko -n ca,vx0,10.200.0.1/24 -x eth1,10.9.0.2,42",
    "koko -n a,mir0,mirror:both:eth0 -n monitor,tap0",
    "koko run scripts/failover.rhai --cleanup",
    "koko graph --format svg -o lab.svg",
];

pub const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "done"),
    ("1", "the request could not be carried out"),
    ("2", "the request is wrong"),
    (
        "128+N",
        "stopped by signal N (SIGINT, SIGTERM, SIGHUP), what was done undone",
    ),
];

/// The column where a synopsis's description starts in `koko -h`.
const COLUMN: usize = 42;

fn push_pair(out: &mut String, indent: usize, term: &str, what: &str, column: usize) {
    let mut lines = what.lines();
    let first = lines.next().unwrap_or("");
    let head = format!("{:indent$}{term}", "");
    if head.len() + 1 < column {
        out.push_str(&format!("{head:<column$}{first}\n"));
    } else {
        out.push_str(&format!("{head}\n{:column$}{first}\n", ""));
    }
    for more in lines {
        out.push_str(&format!("{:column$}{more}\n", ""));
    }
}

/// The text of `koko -h`.
pub fn help() -> String {
    let mut out = String::from(
        "koko: connect containers and network namespaces with veth, vxlan, vlan and macvlan links\n\nUsage:\n",
    );
    for cmd in commands() {
        for u in &cmd.usage {
            push_pair(&mut out, 2, &format!("koko {}", u.line), u.what, COLUMN);
        }
    }
    out.push_str("  koko -h | -v\n\nENDPOINT:\n");
    for (form, what) in endpoint_forms() {
        push_pair(&mut out, 2, &form, &what, 32);
    }
    for (term, entries) in GRAMMAR {
        out.push_str(&format!("{term}:\n"));
        for (form, what) in *entries {
            push_pair(&mut out, 2, form, what, 32);
        }
    }
    out.push_str(&format!("{NOTES}\n\nOptions:\n"));
    for (flag, what) in OPTIONS {
        push_pair(&mut out, 2, flag, what, 12);
    }
    out.push_str("\nExamples:\n");
    for e in EXAMPLES {
        out.push_str(&format!("  {e}\n"));
    }
    out.push_str("\nExit status:\n");
    for (code, what) in EXIT_STATUS {
        push_pair(&mut out, 2, code, what, 10);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_synopsis_and_the_derived_flags() {
        for cmd in commands() {
            assert!(!cmd.usage.is_empty(), "{}", cmd.name);
        }
        let run = commands().into_iter().find(|c| c.name == "run").unwrap();
        let words = run.flag_words();
        for w in [
            "--keep",
            "--cleanup",
            "--sandbox",
            "--max-memory",
            "--keep-wired",
        ] {
            assert!(words.iter().any(|x| x == w), "{w} in {words:?}");
        }
        // Switches take no value; value flags name theirs.
        let value_of = |long: &str| {
            let flag = run.flags.iter().find(|f| f.long.as_deref() == Some(long));
            flag.unwrap_or_else(|| panic!("--{long}")).value.clone()
        };
        assert_eq!(value_of("keep"), None);
        assert_eq!(value_of("keep-wired"), None);
        assert_eq!(value_of("max-memory").as_deref(), Some("SIZE"));
        let test = commands().into_iter().find(|c| c.name == "test").unwrap();
        assert!(test.flag_words().iter().any(|w| w == "-j"));
    }

    #[test]
    fn help_lists_every_command_and_the_grammar() {
        let h = help();
        for name in subcommand_names() {
            assert!(h.contains(&format!("koko {name}")), "{name}:\n{h}");
        }
        assert!(h.contains("-n NETNS,LINK"), "{h}");
        assert!(h.contains("Exit status"), "{h}");
    }
}

//! A grammar-aware fuzzer for the two command grammars: the one-shot flags
//! ([`super::oneshot::parse`]), the koro grammar ([`super::koro::parse`])
//! and the `ip`-style text of scripts' `ns.ip("...")`
//! ([`crate::ipcmd::parse`]).
//!
//! Purely random bytes rarely get past a parser's first check, so inputs
//! are built from the grammars' own words (flags, targets, verbs, keys,
//! endpoint fields), then damaged: words spliced, cut, repeated, joined by
//! commas, or replaced by hostile text (huge numbers, empty fields, Unicode
//! and control bytes, bytes the kernel counts as whitespace). The properties
//! checked for every input:
//!
//! * parsing never panics;
//! * a refusal is a usage error (exit 2) with a message, never a lookup or
//!   kernel error: the parsers must not touch the system.
//!
//! A short run is part of the unit tests. A long one, with a seed and a
//! time budget:
//!
//! ```text
//! KOKO_FUZZ_SECS=600 KOKO_FUZZ_SEED=7 cargo test --release --lib fuzz -- --nocapture
//! ```
//!
//! A failure prints the seed, the case number and the exact input, so it can
//! be replayed and turned into a unit test.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::error::Error;

/// Hostile replacements for a word or a field.
const HOSTILE: &[&str] = &[
    "",
    ",",
    ",,",
    ":",
    "::",
    "/",
    "=",
    "-",
    "--",
    "%",
    "99999999999999999999999",
    "-1",
    "4294967296",
    "1e309",
    "NaN",
    "inf",
    "é",
    "a\u{a0}b",
    "a b",
    "a\tb",
    "a\nb",
    "\0",
    "a\u{0}b",
    "\u{202e}x",
    "..",
    ".",
    "0123456789abcdef",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "10.0.0.1/33",
    "10.0.0.256/24",
    "::ffff:10.0.0.1/120",
    "ms",
    "%%",
];

/// xorshift64*: small, deterministic, good enough to explore a grammar.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Damage a word: cut it, double a character, or splice in hostile text.
fn mutate(rng: &mut Rng, word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let at = if chars.is_empty() {
        0
    } else {
        rng.below(chars.len() + 1)
    };
    let (head, tail) = chars.split_at(at);
    let head: String = head.iter().collect();
    let tail: String = tail.iter().collect();
    match rng.below(4) {
        0 => head,
        1 => format!("{head}{}{tail}", rng.pick(HOSTILE)),
        2 => format!("{head}{head}{tail}"),
        _ => format!("{head}{}", rng.pick(HOSTILE)),
    }
}

/// A value for a slot: usually a good one, sometimes hostile.
fn value(rng: &mut Rng, good: &[&str]) -> String {
    if rng.chance(90) {
        rng.pick(good).to_string()
    } else {
        rng.pick(HOSTILE).to_string()
    }
}

const NAMES: &[&str] = &[
    "a",
    "b",
    "link1",
    "eth0",
    "eth1",
    "lo",
    "veth-host",
    "centos1",
];
const ADDRS: &[&str] = &[
    "10.0.0.1/24",
    "192.168.1.2/32",
    "2001:db8::1/64",
    "fe80::1/64",
    "::/0",
    "0.0.0.0/0",
    "10.0.3.0/24",
    "default",
];
const IPS: &[&str] = &[
    "10.0.0.2",
    "10.9.0.2",
    "2001:db8::2",
    "::",
    "0.0.0.0",
    "fe80::1",
];
const NUMBERS: &[&str] = &[
    "0", "1", "42", "1400", "1500", "4095", "4096", "65535", "65536", "16777215", "16777216",
];

/// A one-shot endpoint argument: `NS,LINK[,ITEM...]` (or `LINK[,...]` for
/// `-c`/`-C`).
fn endpoint(rng: &mut Rng, flag: &str) -> String {
    let mut fields = Vec::new();
    if !matches!(flag, "-c" | "-C") {
        fields.push(match flag {
            "-p" | "-P" => value(rng, NUMBERS),
            "-a" | "-A" => value(rng, &["/proc/1/ns/net", "/run/netns/x", "relative"]),
            _ => value(rng, NAMES),
        });
    }
    fields.push(value(rng, NAMES));
    if flag.chars().nth(1).is_some_and(|c| c.is_ascii_lowercase()) {
        for _ in 0..rng.below(4) {
            fields.push(match rng.below(3) {
                0 | 1 => value(rng, ADDRS),
                _ => format!(
                    "mirror:{}{}{}",
                    value(rng, &["both", "ingress", "egress", "BOTH"]),
                    value(rng, &[":", ","]),
                    value(rng, NAMES)
                ),
            });
        }
    }
    fields.join(",")
}

/// A tunnel argument for `-x`, `-V` or `-M`.
fn tunnel(rng: &mut Rng, flag: &str) -> String {
    let mut fields = vec![value(rng, NAMES)];
    match flag {
        "-x" | "-X" => {
            fields.push(value(rng, IPS));
            fields.push(value(rng, NUMBERS));
            for _ in 0..rng.below(4) {
                fields.push(format!(
                    "{}={}",
                    value(rng, &["port", "mtu", "local", "ttl", "learning", "vni"]),
                    value(
                        rng,
                        &["4789", "1400", "10.0.0.2", "64", "off", "on", "0", "256"]
                    )
                ));
            }
        }
        "-V" => fields.push(value(rng, NUMBERS)),
        _ => fields.push(value(
            rng,
            &[
                "bridge", "BRIDGE", "passthru", "vepa", "private", "default", "Bridge",
            ],
        )),
    }
    fields.join(",")
}

/// A one-shot command line built from the grammar.
fn oneshot_words(rng: &mut Rng) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..rng.below(4) {
        let flag = rng.pick(&[
            "-d", "-n", "-p", "-a", "-c", "-e", "-D", "-N", "-P", "-A", "-C", "-E", "-x", "-X",
            "-V", "-M", "--mtu", "--json", "-h", "-v",
        ]);
        out.push(flag.to_string());
        match flag {
            "-x" | "-X" | "-V" | "-M" => out.push(tunnel(rng, flag)),
            "--mtu" => out.push(value(rng, NUMBERS)),
            "--json" | "-h" | "-v" => {}
            _ => out.push(endpoint(rng, flag)),
        }
    }
    out
}

/// The words of a `TARGET` for koro.
fn target_words(rng: &mut Rng) -> Vec<String> {
    match rng.below(6) {
        0 => vec!["docker".into(), value(rng, NAMES)],
        1 => vec![
            "netns".into(),
            value(rng, &["/run/netns/a", "/proc/1/ns/net"]),
        ],
        2 => vec!["ipnetns".into(), value(rng, NAMES)],
        3 => vec!["pid".into(), value(rng, NUMBERS)],
        4 => vec!["host".into()],
        _ => vec!["current".into()],
    }
}

/// An `ip`-style command built from the grammar.
fn ip_words(rng: &mut Rng) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if rng.chance(20) {
        out.push(value(rng, &["-4", "-6"]));
    }
    match rng.below(7) {
        0 => {
            out.push(value(rng, &["address", "addr", "a"]));
            out.push(value(rng, &["add", "del", "delete"]));
            out.push(value(rng, ADDRS));
            out.push("dev".into());
            out.push(value(rng, NAMES));
        }
        1 => {
            out.push(value(rng, &["route", "r"]));
            out.push(value(rng, &["add", "del", "replace"]));
            out.push(value(rng, ADDRS));
            for _ in 0..rng.below(4) {
                let key = rng.pick(&["via", "dev", "metric", "table"]);
                out.push(key.into());
                out.push(match key {
                    "via" => value(rng, IPS),
                    "dev" => value(rng, NAMES),
                    _ => value(rng, NUMBERS),
                });
            }
        }
        2 => {
            out.extend(["link".into(), "set".into(), value(rng, NAMES)]);
            match rng.below(3) {
                0 => out.push("up".into()),
                1 => out.push("down".into()),
                _ => out.extend(["mtu".into(), value(rng, NUMBERS)]),
            }
        }
        3 => {
            out.extend(["link".into(), "impair".into(), value(rng, NAMES)]);
            if rng.chance(15) {
                out.push("clear".into());
            }
            for _ in 0..rng.below(5) {
                let key = rng.pick(&crate::ipcmd::IMPAIR_KEYS);
                out.push(key.into());
                out.push(match key {
                    "delay" | "jitter" => value(rng, &["10ms", "1s", "0ms", "5us", "10"]),
                    "rate" => value(rng, &["10mbit", "1gbit", "0bit", "100kbit", "5"]),
                    "limit" => value(rng, NUMBERS),
                    "dir" => value(rng, &["egress", "ingress", "both"]),
                    _ => value(rng, &["5%", "100%", "101%", "0.5%", "1"]),
                });
            }
        }
        4 => {
            out.extend(["link".into(), "blackhole".into(), value(rng, NAMES)]);
            out.push(value(rng, &["on", "off"]));
        }
        5 => {
            out.push("sysctl".into());
            out.push(value(
                rng,
                &[
                    "net.ipv4.ip_forward=1",
                    "net.ipv6.conf.all.forwarding=0",
                    "kernel.panic=1",
                    "net.ipv4.ip_forward",
                    "net.=1",
                ],
            ));
        }
        _ => {
            out.push("forwarding".into());
            out.push(value(rng, &["on", "off", "maybe"]));
        }
    }
    out
}

/// Damage a sentence the way typos and hostile users do: drop, repeat,
/// swap or mangle words, or add a stray one.
fn damage(rng: &mut Rng, mut words: Vec<String>) -> Vec<String> {
    for _ in 0..rng.below(3) {
        if words.is_empty() {
            words.push(rng.pick(HOSTILE).to_string());
            continue;
        }
        let at = rng.below(words.len());
        match rng.below(5) {
            0 => {
                words.remove(at);
            }
            1 => {
                let w = words[at].clone();
                words.insert(at, w);
            }
            2 => {
                let other = rng.below(words.len());
                words.swap(at, other);
            }
            3 => words[at] = mutate(rng, &words[at]),
            _ => words.insert(at, rng.pick(HOSTILE).to_string()),
        }
    }
    words
}

/// Check one parser result: any refusal must be a usage error.
fn check<T>(grammar: &str, input: &str, outcome: std::thread::Result<crate::Result<T>>) {
    match outcome {
        Err(_) => panic!("the {grammar} parser panicked on {input}"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            assert_eq!(
                e.exit_code(),
                2,
                "the {grammar} parser refused {input} with a non-usage error: {e}"
            );
            assert!(
                !e.to_string().is_empty(),
                "the {grammar} parser refused {input} without a message"
            );
            assert!(
                !matches!(
                    e,
                    Error::Kernel { .. } | Error::Io { .. } | Error::Engine { .. }
                ),
                "the {grammar} parser touched the system on {input}: {e}"
            );
        }
    }
}

/// One case of each grammar from `rng`.
fn one_case(rng: &mut Rng) {
    let args = {
        let w = oneshot_words(rng);
        damage(rng, w)
    };
    let shown = format!("{args:?}");
    check(
        "one-shot",
        &shown,
        catch_unwind(AssertUnwindSafe(|| super::oneshot::parse(&args))),
    );

    let mut args = target_words(rng);
    args.extend(ip_words(rng));
    let args = damage(rng, args);
    let shown = format!("{args:?}");
    check(
        "koro",
        &shown,
        catch_unwind(AssertUnwindSafe(|| super::koro::parse(&args))),
    );

    let text = {
        let w = ip_words(rng);
        damage(rng, w)
    }
    .join(" ");
    let shown = format!("{text:?}");
    check(
        "ip command",
        &shown,
        catch_unwind(AssertUnwindSafe(|| crate::ipcmd::parse(&text))),
    );
}

#[test]
fn the_grammars_never_panic_and_refuse_only_with_usage_errors() {
    let seed: u64 = std::env::var("KOKO_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6b6f6b6f);
    let budget = std::env::var("KOKO_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let mut cases: u64 = 0;
    loop {
        let done = match budget {
            Some(budget) => started.elapsed() >= budget,
            // The unit-test run: a fixed number of cases, reproducible.
            None => cases >= 20_000,
        };
        if done {
            break;
        }
        // The case number and seed identify a failing input for replay.
        let case_seed = rng.next();
        let mut case_rng = Rng(case_seed | 1);
        let outcome = catch_unwind(AssertUnwindSafe(|| one_case(&mut case_rng)));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("fuzz seed {seed}, case {cases} (case seed {case_seed}): {message}");
        }
        cases += 1;
    }
    if budget.is_some() {
        eprintln!(
            "fuzz: {cases} cases of each grammar in {:.0?} (seed {seed}), no failure",
            started.elapsed()
        );
    }
}

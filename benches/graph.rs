//! `koko graph` over many namespaces: N `ip netns` namespaces in a chain
//! (N-1 veth pairs, built with `ip -batch`), drawn by `koko graph --format
//! json` and, for reference, listed by `ip -all netns exec ip -j -d link`
//! (one `ip` process per namespace, links only: no peers matched, no
//! addresses, no tc). Interleaved rounds in the same run; prints the
//! medians and the ratio (absolute times on shared machines are noise).
//!
//! Runs inside a private network + mount namespace of its own.
//!
//!     cargo bench --bench graph [-- ROUNDS]     (N = 300)

use std::process::Command;
use std::time::{Duration, Instant};

mod sandbox;

const N: usize = 300;

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn timed(cmd: &mut Command) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let out = cmd.output().expect("run");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, out.stdout)
}

fn main() {
    let rounds = sandbox::rounds_arg(5);
    sandbox::enter(&[rounds.to_string()]);
    let koko = env!("CARGO_BIN_EXE_koko");

    let dir = std::env::temp_dir().join(format!("koko-bench-graph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let netns: String = (0..N).map(|i| format!("netns add n{i}\n")).collect();
    let links: String = (1..N)
        .map(|i| {
            format!(
                "link add l{i}a netns n{} type veth peer name l{i}b netns n{i}\n",
                i - 1
            )
        })
        .collect();
    std::fs::write(dir.join("netns"), netns).unwrap();
    std::fs::write(dir.join("links"), links).unwrap();
    sandbox::sh(&format!(
        "ip -batch {0}/netns && ip -batch {0}/links",
        dir.display()
    ));

    let (mut k, mut r) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (t, out) = timed(Command::new(koko).args(["graph", "--format", "json"]));
        let g: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let chain = g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["a"]["node"].as_str().unwrap().starts_with("netns:n"))
            .count();
        assert_eq!(chain, N - 1, "every veth of the chain is drawn");
        k.push(t);
        r.push(
            timed(Command::new("ip").args(["-all", "netns", "exec", "ip", "-j", "-d", "link"])).0,
        );
    }
    let (km, rm) = (median(k), median(r));
    println!(
        "graph of {N} namespaces, {} veth pairs, median of {rounds} rounds:",
        N - 1
    );
    println!("  koko graph --format json              {km:8.1} ms");
    println!("  ip -all netns exec ip -j -d link      {rm:8.1} ms");
    println!("  ratio koko/ip                         {:8.2}", km / rm);
    println!(
        "{}",
        serde_json::json!({"bench": "graph", "namespaces": N, "koko_ms": km, "ip_ms": rm, "ratio": km / rm})
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! `koko test` benchmark (issue 17): 50 small tests (two namespaces, one
//! veth, one ping each) run with `-j 2` and with `-j 1`, interleaved, and
//! the cost of the sandbox itself: a trivial program started plainly and
//! started in a fresh sandbox (private network + mount namespace, tmpfs on
//! /run/netns and /run/koko), the difference being the sandbox's set-up
//! and teardown. Prints medians, the ratio and a JSON line.
//!
//!     cargo bench --bench suite [-- ROUNDS]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod sandbox;

const TESTS: usize = 50;
const SPAWNS: usize = 200;

fn main() {
    let rounds = sandbox::rounds_arg(3);
    sandbox::enter(&[rounds.to_string()]);
    let koko = env!("CARGO_BIN_EXE_koko");
    let dir = std::env::temp_dir().join(format!("koko-bench-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // 50 tests in one file: each its own sandbox, so the names repeat.
    let mut small = String::new();
    for i in 0..TESTS {
        small.push_str(&format!(
            "fn test_{i}() {{\n  let a = netns(\"a\"); let b = netns(\"b\");\n  \
             veth(a, \"x\", b, \"y\", #{{a_addrs: [\"10.0.0.1/24\"], b_addrs: [\"10.0.0.2/24\"]}});\n  \
             if !a.ping(\"10.0.0.2\", #{{count: 3, timeout_ms: 500}}).ok {{ throw \"no ping\"; }}\n}}\n"
        ));
    }
    let small_file = dir.join("small_test.rhai");
    std::fs::write(&small_file, small).unwrap();
    // 50 empty tests: what a test costs koko test whatever it does
    // (a process, a sandbox, the engine, the file compiled).
    let empty: String = (0..TESTS)
        .map(|i| format!("fn test_{i}() {{}}\n"))
        .collect();
    let empty_file = dir.join("empty_test.rhai");
    std::fs::write(&empty_file, empty).unwrap();

    let suite = |file: &std::path::Path, jobs: &str| -> Duration {
        let start = Instant::now();
        let out = Command::new(koko)
            .args(["test", "-j", jobs])
            .arg(file)
            .output()
            .unwrap();
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "koko test -j {jobs} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    };
    suite(&small_file, "2"); // warm-up
    let (mut seq, mut par, mut idle) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        seq.push(suite(&small_file, "1"));
        par.push(suite(&small_file, "2"));
        idle.push(suite(&empty_file, "1"));
    }

    // The sandbox alone: /bin/true plain vs in a fresh sandbox, interleaved.
    let spawn = |sandboxed: bool| -> Duration {
        let mut cmd = Command::new("/bin/true");
        cmd.stdout(Stdio::null());
        if sandboxed {
            koko::suite::sandbox::sandboxed(&mut cmd, true).unwrap();
        }
        let start = Instant::now();
        let status = cmd.status().unwrap();
        let took = start.elapsed();
        assert!(status.success());
        took
    };
    let (mut plain, mut boxed) = (vec![], vec![]);
    let all = Instant::now();
    for _ in 0..SPAWNS {
        plain.push(spawn(false));
        boxed.push(spawn(true));
    }
    let all = all.elapsed();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (seq, par, idle) = (median(&mut seq), median(&mut par), median(&mut idle));
    let (plain, boxed) = (median(&mut plain), median(&mut boxed));
    let ratio = par.as_secs_f64() / seq.as_secs_f64();
    let overhead = ms(boxed) - ms(plain);
    println!("koko test, {TESTS} small tests (2 namespaces, 1 veth, 1 ping), median of {rounds}:");
    println!(
        "  -j 1: {:8.1} ms ({:.1} ms/test)",
        ms(seq),
        ms(seq) / TESTS as f64
    );
    println!(
        "  -j 2: {:8.1} ms ({:.1} ms/test)",
        ms(par),
        ms(par) / TESTS as f64
    );
    println!("  ratio -j 2 / -j 1: {ratio:.2}");
    println!(
        "  {TESTS} empty tests, -j 1: {:.1} ms ({:.1} ms/test: process, sandbox, engine, compile)",
        ms(idle),
        ms(idle) / TESTS as f64
    );
    println!("sandbox alone, median of {SPAWNS} starts of /bin/true:");
    println!(
        "  plain {:.2} ms, in a sandbox {:.2} ms: set-up + teardown {overhead:.2} ms",
        ms(plain),
        ms(boxed)
    );
    println!(
        "  ({SPAWNS} of each, interleaved, took {:.0} ms in all; the kernel frees a network namespace later, off the test's clock)",
        ms(all)
    );
    println!(
        "{}",
        serde_json::json!({
            "bench": "suite", "tests": TESTS, "rounds": rounds,
            "seq_ms": ms(seq), "par_ms": ms(par), "ratio": ratio,
            "empty_test_ms": ms(idle) / TESTS as f64,
            "spawn_plain_ms": ms(plain), "spawn_sandboxed_ms": ms(boxed),
            "sandbox_overhead_ms": overhead,
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

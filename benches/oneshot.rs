//! One-shot CLI benchmark: create + delete one veth between two namespaces
//! with one address on each end, by koko and by the equivalent `ip` command
//! sequence, interleaved in the same run. Prints medians and the ratio
//! (absolute times on shared machines are noise; the ratio is the figure).
//!
//! Runs inside a private network + mount namespace of its own (it re-executes
//! itself under `unshare`), so it never touches the machine's interfaces.
//!
//!     cargo bench --bench oneshot [-- ROUNDS]

use std::process::Command;
use std::time::{Duration, Instant};

mod sandbox;

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(40);
    sandbox::enter(&[rounds.to_string()]);

    let koko = env!("CARGO_BIN_EXE_koko");
    sandbox::sh("ip netns add a && ip netns add b");

    let koko_create: Vec<Vec<&str>> = vec![vec![
        koko,
        "-n",
        "a,l1,10.0.0.1/24",
        "-n",
        "b,l2,10.0.0.2/24",
    ]];
    let koko_delete: Vec<Vec<&str>> = vec![vec![koko, "-N", "a,l1"]];
    let ip_create: Vec<Vec<&str>> = vec![
        vec![
            "ip", "-n", "a", "link", "add", "l1", "type", "veth", "peer", "name", "l2", "netns",
            "b",
        ],
        vec!["ip", "-n", "a", "addr", "add", "10.0.0.1/24", "dev", "l1"],
        vec!["ip", "-n", "b", "addr", "add", "10.0.0.2/24", "dev", "l2"],
        vec!["ip", "-n", "a", "link", "set", "l1", "up"],
        vec!["ip", "-n", "b", "link", "set", "l2", "up"],
    ];
    let ip_delete: Vec<Vec<&str>> = vec![vec!["ip", "-n", "a", "link", "del", "l1"]];

    // Warm up both (page cache, binaries), then interleave the two ways so
    // machine noise hits both alike.
    for _ in 0..2 {
        run_steps(&koko_create);
        run_steps(&koko_delete);
        run_steps(&ip_create);
        run_steps(&ip_delete);
    }
    let (mut kc, mut kd, mut ic, mut id, mut kt, mut it) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    // The kernel's unregister waits for pending RCU callbacks (rcu_barrier),
    // so a delete issued right after a create pays for the create's
    // callbacks too. A fixed pause before each phase keeps the two ways
    // comparable (and is not counted).
    let settle = || std::thread::sleep(Duration::from_millis(60));
    for _ in 0..rounds {
        settle();
        let c = run_steps(&koko_create);
        settle();
        let d = run_steps(&koko_delete);
        kc.push(c);
        kd.push(d);
        kt.push(c + d);
        settle();
        let c = run_steps(&ip_create);
        settle();
        let d = run_steps(&ip_delete);
        ic.push(c);
        id.push(d);
        it.push(c + d);
    }
    let rows = [
        (
            "create (koko 1 process, ip 5)",
            median(&mut kc),
            median(&mut ic),
        ),
        ("delete (1 process each)", median(&mut kd), median(&mut id)),
        ("create + delete", median(&mut kt), median(&mut it)),
    ];
    println!("one-shot veth between two namespaces, 1 address per end; {rounds} interleaved rounds, medians");
    println!(
        "{:<32} {:>10} {:>10} {:>8}",
        "phase", "koko ms", "ip ms", "ratio"
    );
    for (name, k, i) in rows {
        println!(
            "{name:<32} {:>10.2} {:>10.2} {:>8.2}",
            ms(k),
            ms(i),
            ms(k) / ms(i)
        );
    }
    println!("(target for create + delete: ratio <= 0.50; the kernel's unregister of a veth");
    println!(" costs the same ~20 ms whoever asks, see benches/README.md)");
    let json: Vec<String> = rows
        .iter()
        .map(|(name, k, i)| {
            format!(
                "{{\"phase\":\"{name}\",\"koko_ms\":{:.3},\"ip_ms\":{:.3},\"ratio\":{:.3}}}",
                ms(*k),
                ms(*i),
                ms(*k) / ms(*i)
            )
        })
        .collect();
    println!(
        "{{\"bench\":\"oneshot\",\"rounds\":{rounds},\"phases\":[{}]}}",
        json.join(",")
    );
}

fn run_steps(steps: &[Vec<&str>]) -> Duration {
    let start = Instant::now();
    for step in steps {
        let out = Command::new(step[0]).args(&step[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{step:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    start.elapsed()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

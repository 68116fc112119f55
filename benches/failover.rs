//! Failover benchmark: runs scripts/failover.rhai 20 times (the firewall of
//! the client -> firewall -> router -> webserver chain dies, a hook repairs
//! the chain) and prints the p50/p95 of
//!
//! * detection: the firewall destroyed -> the client's link-down hook runs;
//! * repair: failure detected -> traffic flows again (first successful TCP
//!   connect of a probe running every 2 ms);
//! * the outage as the probe saw it.
//!
//! Runs inside a private network + mount namespace of its own.
//!
//!     cargo bench --bench failover [-- RUNS]

use std::process::Command;

mod sandbox;

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    sandbox::enter(&[runs.to_string()]);
    let koko = env!("CARGO_BIN_EXE_koko");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/failover.rhai");
    let (mut detection, mut repair, mut outage) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let out = Command::new(koko)
            .args(["run", script, "--", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON timings");
        detection.push(v["detection_ms"].as_f64().unwrap());
        repair.push(v["repair_ms"].as_f64().unwrap());
        outage.push(v["outage_ms"].as_f64().unwrap());
    }
    println!("failover of the firewall in client -> firewall -> router -> webserver, {runs} runs");
    println!("{:<44} {:>8} {:>8}   target", "", "p50 ms", "p95 ms");
    for (name, v, target) in [
        (
            "repair (detected -> traffic flows again)",
            &mut repair,
            "p50 <= 20, p95 <= 50",
        ),
        ("detection (destroyed -> hook runs)", &mut detection, ""),
        ("outage seen by a 2 ms TCP probe", &mut outage, ""),
    ] {
        println!(
            "{name:<44} {:>8.2} {:>8.2}   {target}",
            pct(v, 50.0),
            pct(v, 95.0)
        );
    }
    println!(
        "{{\"bench\":\"failover\",\"runs\":{runs},\"repair_p50\":{:.3},\"repair_p95\":{:.3},\"detection_p50\":{:.3},\"detection_p95\":{:.3}}}",
        pct(&mut repair, 50.0),
        pct(&mut repair, 95.0),
        pct(&mut detection, 50.0),
        pct(&mut detection, 95.0)
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

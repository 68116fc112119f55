//! Scale benchmark: build and tear down a chain of N namespaces (N-1 veth
//! links, an address on each end, links up) three ways, in one run on the
//! same machine:
//!
//! * koko: `koko run` on a script using the `chain` stdlib module (with
//!   `routes: false`, so it does the same work as the references);
//! * ip -batch: the fastest iproute2 way (one `ip -batch` for namespaces and
//!   links, one `ip -n NS -batch` per namespace for addresses and "up");
//! * ip per step: one `ip` process per step.
//!
//! Teardown is timed until every interface is actually gone: a witness veth
//! joins the benchmark's own namespace to the namespace deleted last, and the
//! clock stops when the witness vanishes (the kernel's netns cleanup runs on
//! an ordered workqueue, so by then every earlier namespace is gone too).
//! koko's teardown deletes the namespaces in one batch (`destroy_all`); it is
//! also compared with deleting the links one RTM_DELLINK at a time.
//!
//! Runs inside a private network + mount namespace (re-executes itself under
//! `unshare`). Writes target/bench-scale/scale.json and scale.png (plotted
//! with Python matplotlib: Debian's python3-matplotlib, as
//! tests/setup/tools.sh installs it, for /usr/bin/python3).
//!
//!     cargo bench --bench scale [-- SIZES] [--rounds R] [--per-step-max N]
//!
//! SIZES defaults to 100,300,1000. The one-process-per-step way is run up to
//! --per-step-max (default 1000); above it, it is extrapolated linearly from
//! the largest size measured and labelled so. With --rounds R (default 1)
//! each size is measured R times and the medians are reported (peak memory:
//! the maximum).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod sandbox;
use sandbox::sh;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    sandbox::enter(&args);
    let mut sizes = vec![100usize, 300, 1000];
    let mut per_step_max = 1000usize;
    let mut rounds = 1usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--rounds" {
            rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds R");
        } else if a == "--per-step-max" {
            per_step_max = it
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--per-step-max N");
        } else if a.contains(|c: char| c.is_ascii_digit()) && !a.starts_with('-') {
            sizes = a
                .split(',')
                .map(|s| s.parse().expect("sizes: 100,300,1000"))
                .collect();
        }
    }
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-scale");
    std::fs::create_dir_all(&out_dir).unwrap();
    let work = out_dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    sh("ip link set lo up");
    write_scripts(&work);

    let machine = machine();
    println!("koko scale benchmark: chain of N namespaces; {machine}");
    let mut results = Vec::new();
    for &n in &sizes {
        let mut all = Vec::new();
        for round in 0..rounds {
            eprintln!("N = {n}, round {}/{rounds}: koko ...", round + 1);
            all.push(measure(n, n <= per_step_max, &work));
        }
        results.push(median_sample(all));
    }
    // Extrapolate per-step where it was not run (linear in N from the
    // largest measured size).
    let measured: Vec<&Sample> = results.iter().filter(|r| r.step_build.is_some()).collect();
    let base = measured
        .last()
        .map(|r| (r.n, r.step_build.unwrap(), r.step_teardown.unwrap()));
    for r in results.iter_mut() {
        if r.step_build.is_none() {
            if let Some((bn, b, t)) = base {
                let f = r.n as f64 / bn as f64;
                r.step_build = Some(b * f);
                r.step_teardown = Some(t * f);
                r.step_extrapolated = true;
            }
        }
    }
    report(&results, &machine, &out_dir);
}

struct Sample {
    n: usize,
    koko_build: f64,
    koko_teardown: f64,
    koko_maxrss_kib: i64,
    koko_teardown_links: f64,
    batch_build: f64,
    batch_teardown: f64,
    step_build: Option<f64>,
    step_teardown: Option<f64>,
    step_extrapolated: bool,
}

/// Field by field, the median of the rounds.
fn median_sample(all: Vec<Sample>) -> Sample {
    let med = |f: &dyn Fn(&Sample) -> f64| {
        let mut v: Vec<f64> = all.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let has_step = all[0].step_build.is_some();
    Sample {
        n: all[0].n,
        koko_build: med(&|s| s.koko_build),
        koko_teardown: med(&|s| s.koko_teardown),
        koko_maxrss_kib: all.iter().map(|s| s.koko_maxrss_kib).max().unwrap_or(0),
        koko_teardown_links: med(&|s| s.koko_teardown_links),
        batch_build: med(&|s| s.batch_build),
        batch_teardown: med(&|s| s.batch_teardown),
        step_build: has_step.then(|| med(&|s| s.step_build.unwrap_or(0.0))),
        step_teardown: has_step.then(|| med(&|s| s.step_teardown.unwrap_or(0.0))),
        step_extrapolated: false,
    }
}

fn measure(n: usize, per_step: bool, work: &Path) -> Sample {
    let koko = env!("CARGO_BIN_EXE_koko");
    let ns = |i: usize| format!("n{i}");
    let settle = || std::thread::sleep(Duration::from_millis(1500));
    let nn = n.to_string();

    // koko: build, then batched teardown.
    settle();
    let (koko_build, rss) = run(&[koko, "run", s(work, "build.rhai"), "--", &nn]);
    check_chain(n);
    witness(&ns(n - 1));
    settle();
    let (t, _) = run(&[koko, "run", s(work, "destroy.rhai"), "--", &nn]);
    let koko_teardown = t + wait_witness();
    assert_empty();

    // koko build again, then the links deleted one request at a time.
    settle();
    run(&[koko, "run", s(work, "build.rhai"), "--", &nn]);
    settle();
    let (koko_teardown_links, _) = run(&[koko, "run", s(work, "dellinks.rhai"), "--", &nn]);
    witness(&ns(n - 1));
    run(&[koko, "run", s(work, "destroy.rhai"), "--", &nn]);
    wait_witness();
    assert_empty();

    // ip -batch.
    eprintln!("N = {n}: ip -batch ...");
    let mut top = String::new();
    for i in 0..n {
        top += &format!("netns add {}\n", ns(i));
    }
    for i in 0..n - 1 {
        top += &format!(
            "link add link{} netns {} type veth peer name link{} netns {}\n",
            2 * i + 1,
            ns(i),
            2 * i + 2,
            ns(i + 1)
        );
    }
    std::fs::write(work.join("top.batch"), top).unwrap();
    for i in 0..n {
        let mut f = String::new();
        for (link, addr) in ends(n, i) {
            f += &format!("addr add {addr} dev {link}\nlink set {link} up\n");
        }
        std::fs::write(work.join(format!("{}.batch", ns(i))), f).unwrap();
    }
    settle();
    let start = Instant::now();
    run(&["ip", "-batch", s(work, "top.batch")]);
    for i in 0..n {
        let f = work.join(format!("{}.batch", ns(i)));
        run(&["ip", "-n", &ns(i), "-batch", f.to_str().unwrap()]);
    }
    let batch_build = start.elapsed().as_secs_f64();
    check_chain(n);
    witness(&ns(n - 1));
    let del: String = (0..n).map(|i| format!("netns del {}\n", ns(i))).collect();
    std::fs::write(work.join("del.batch"), del).unwrap();
    settle();
    let (t, _) = run(&["ip", "-batch", s(work, "del.batch")]);
    let batch_teardown = t + wait_witness();
    assert_empty();

    // One ip process per step.
    let (mut step_build, mut step_teardown) = (None, None);
    if per_step {
        eprintln!("N = {n}: ip per step ...");
        settle();
        let start = Instant::now();
        for i in 0..n {
            run(&["ip", "netns", "add", &ns(i)]);
        }
        for i in 0..n - 1 {
            let (a, b) = (format!("link{}", 2 * i + 1), format!("link{}", 2 * i + 2));
            run(&[
                "ip",
                "link",
                "add",
                &a,
                "netns",
                &ns(i),
                "type",
                "veth",
                "peer",
                "name",
                &b,
                "netns",
                &ns(i + 1),
            ]);
        }
        for i in 0..n {
            for (link, addr) in ends(n, i) {
                run(&["ip", "-n", &ns(i), "addr", "add", &addr, "dev", &link]);
                run(&["ip", "-n", &ns(i), "link", "set", &link, "up"]);
            }
        }
        step_build = Some(start.elapsed().as_secs_f64());
        check_chain(n);
        witness(&ns(n - 1));
        settle();
        let start = Instant::now();
        for i in 0..n {
            run(&["ip", "netns", "del", &ns(i)]);
        }
        step_teardown = Some(start.elapsed().as_secs_f64() + wait_witness());
        assert_empty();
    }
    Sample {
        n,
        koko_build,
        koko_teardown,
        koko_maxrss_kib: rss,
        koko_teardown_links,
        batch_build,
        batch_teardown,
        step_build,
        step_teardown,
        step_extrapolated: false,
    }
}

/// The (link, address) ends of node i in a chain of n, as chain.rhai
/// assigns them (10.0.{i+1}.0/24 for link i, carrying past 255).
fn ends(n: usize, i: usize) -> Vec<(String, String)> {
    let net = |k: usize| {
        let v = (10u32 << 24) + ((k as u32 + 1) << 8);
        format!("{}.{}.{}", v >> 24, (v >> 16) & 255, (v >> 8) & 255)
    };
    let mut v = Vec::new();
    if i > 0 {
        v.push((format!("link{}", 2 * i), format!("{}.2/24", net(i - 1))));
    }
    if i + 1 < n {
        v.push((format!("link{}", 2 * i + 1), format!("{}.1/24", net(i))));
    }
    v
}

fn s<'a>(work: &'a Path, f: &str) -> &'a str {
    Box::leak(work.join(f).into_boxed_path()).to_str().unwrap()
}

fn write_scripts(work: &Path) {
    let names =
        "let n = parse_int(ARGS[0]);\nlet names = [];\nfor i in 0..n { names.push(`n${i}`); }\n";
    std::fs::write(
        work.join("build.rhai"),
        format!("import \"chain\" as chain;\n{names}chain::build(names, #{{routes: false}});\n"),
    )
    .unwrap();
    std::fs::write(
        work.join("destroy.rhai"),
        format!("{names}destroy_all(names);\n"),
    )
    .unwrap();
    std::fs::write(
        work.join("dellinks.rhai"),
        format!(
            "{names}for i in 0..n - 1 {{ netns(names[i]).link(`link${{2 * i + 1}}`).delete(); }}\n"
        ),
    )
    .unwrap();
}

/// Run a command to completion; its wall time in seconds and peak RSS (KiB).
fn run(argv: &[&str]) -> (f64, i64) {
    let start = Instant::now();
    let child = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child, into locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let t = start.elapsed().as_secs_f64();
    assert!(
        rc == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{argv:?} failed"
    );
    std::mem::forget(child);
    (t, usage.ru_maxrss)
}

/// Spot-check a built chain: the middle node's links are up with addresses.
fn check_chain(n: usize) {
    let m = n / 2;
    let out = sh(&format!("ip -n n{m} -br addr"));
    for (link, addr) in ends(n, m) {
        let line = out
            .lines()
            .find(|l| l.starts_with(&link))
            .unwrap_or_else(|| panic!("{link}: {out}"));
        assert!(line.contains("UP") && line.contains(&addr), "{line}");
    }
}

/// A veth from the benchmark's namespace into `ns`: it vanishes when `ns`
/// is torn down.
fn witness(ns: &str) {
    sh(&format!(
        "ip link add witness type veth peer name witness netns {ns}"
    ));
}

/// Wait until the witness is gone; the extra seconds waited.
fn wait_witness() -> f64 {
    let start = Instant::now();
    loop {
        let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap();
        if !dev.contains("witness:") {
            return start.elapsed().as_secs_f64();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "teardown never finished"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn assert_empty() {
    let left = std::fs::read_dir("/run/netns").unwrap().count();
    assert_eq!(left, 0, "namespaces left behind");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = sh("uname -r").trim().to_string();
    let ip = sh("ip -V").trim().to_string();
    format!("{cores} cores ({cpu}), kernel {kernel}, {ip}")
}

fn report(rs: &[Sample], machine: &str, out_dir: &Path) {
    let f = |x: f64| format!("{:.2}", x);
    let step = |r: &Sample, x: Option<f64>| match x {
        Some(v) if r.step_extrapolated => format!("~{} (extrap.)", f(v)),
        Some(v) => f(v),
        None => "-".into(),
    };
    println!();
    println!(
        "| N | phase | koko s | ip -batch s | ip per step s | koko / ip -batch | koko / per step |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in rs {
        for (phase, k, b, p) in [
            ("build", r.koko_build, r.batch_build, r.step_build),
            (
                "teardown",
                r.koko_teardown,
                r.batch_teardown,
                r.step_teardown,
            ),
        ] {
            println!(
                "| {} | {phase} | {} | {} | {} | {:.3} | {} |",
                r.n,
                f(k),
                f(b),
                step(r, p),
                k / b,
                p.map(|p| format!("{:.3}", k / p)).unwrap_or("-".into())
            );
        }
    }
    println!();
    println!("| N | koko teardown (batched) s | links deleted one request at a time s | ratio | koko peak RSS MiB |");
    println!("| --- | --- | --- | --- | --- |");
    for r in rs {
        println!(
            "| {} | {} | {} | {:.3} | {:.1} |",
            r.n,
            f(r.koko_teardown),
            f(r.koko_teardown_links),
            r.koko_teardown / r.koko_teardown_links,
            r.koko_maxrss_kib as f64 / 1024.0
        );
    }
    if let (Some(a), Some(z)) = (rs.first(), rs.last()) {
        if z.n != a.n {
            println!();
            println!(
                "cost growth N={} vs N={} ({}x the nodes): koko build {:.1}x, koko teardown {:.1}x, ip -batch build {:.1}x",
                z.n,
                a.n,
                z.n / a.n,
                z.koko_build / a.koko_build,
                z.koko_teardown / a.koko_teardown,
                z.batch_build / a.batch_build
            );
        }
    }
    let json = serde_json::json!({
        "bench": "scale",
        "machine": machine,
        "samples": rs.iter().map(|r| serde_json::json!({
            "n": r.n,
            "koko_build_s": r.koko_build,
            "koko_teardown_s": r.koko_teardown,
            "koko_teardown_links_one_at_a_time_s": r.koko_teardown_links,
            "koko_peak_rss_kib": r.koko_maxrss_kib,
            "ip_batch_build_s": r.batch_build,
            "ip_batch_teardown_s": r.batch_teardown,
            "ip_per_step_build_s": r.step_build,
            "ip_per_step_teardown_s": r.step_teardown,
            "ip_per_step_extrapolated": r.step_extrapolated,
        })).collect::<Vec<_>>(),
    });
    let path = out_dir.join("scale.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!();
    println!("{}", json);
    println!("JSON: {}", path.display());
    plot(&path, &out_dir.join("scale.png"));
}

const PLOT: &str = r#"
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
d = json.load(open(sys.argv[1]))
s = d["samples"]
n = [x["n"] for x in s]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, phase in zip(axes, ["build", "teardown"]):
    ax.plot(n, [x["koko_%s_s" % phase] for x in s], "o-", label="koko script")
    ax.plot(n, [x["ip_batch_%s_s" % phase] for x in s], "s-", label="ip -batch")
    ps = [(x["n"], x["ip_per_step_%s_s" % phase], x["ip_per_step_extrapolated"]) for x in s if x["ip_per_step_%s_s" % phase] is not None]
    ax.plot([p[0] for p in ps], [p[1] for p in ps], "^-", label="ip per step")
    ex = [p for p in ps if p[2]]
    if ex:
        ax.plot([p[0] for p in ex], [p[1] for p in ex], "^", mfc="none", ms=12, label="(extrapolated)")
    if phase == "teardown":
        ax.plot(n, [x["koko_teardown_links_one_at_a_time_s"] for x in s], "x--", label="links one request at a time")
    ax.set_xlabel("namespaces in the chain (N)")
    ax.set_ylabel("seconds")
    ax.set_yscale("log")
    ax.set_title("chain of N namespaces: %s" % phase)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
fig.suptitle(d["machine"], fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
"#;

/// The Python interpreters to try, in order. Debian's own first: a
/// `python3` earlier on PATH (pyenv, a virtualenv) usually lacks the
/// distribution's python3-matplotlib.
const PYTHONS: &[&str] = &["/usr/bin/python3", "python3"];

fn plot(json: &Path, png: &Path) {
    let has_matplotlib = |py: &str| {
        Command::new(py)
            .args(["-c", "import matplotlib"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    // No pip here: the benchmark runs in a private network namespace (see
    // sandbox.rs) where no package registry is reachable, so matplotlib
    // must be installed beforehand (tests/setup/tools.sh).
    let Some(python) = PYTHONS.iter().copied().find(|py| has_matplotlib(py)) else {
        eprintln!(
            "could not plot: no python3 with matplotlib (tried {}); install Debian's \
             python3-matplotlib (tests/setup/tools.sh does). The JSON has the figures.",
            PYTHONS.join(", ")
        );
        return;
    };
    let script = json.with_file_name("plot.py");
    let mut f = std::fs::File::create(&script).unwrap();
    f.write_all(PLOT.as_bytes()).unwrap();
    let ok = Command::new(python)
        .arg(&script)
        .arg(json)
        .arg(png)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        println!("plot: {}", png.display());
    } else {
        eprintln!("could not plot with {python}; the JSON has the figures");
    }
}

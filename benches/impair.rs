//! Degraded links: how long koko takes to apply, change and clear an
//! impairment inside a run, against `tc` doing the same (one process per
//! change, as a drill driven from a shell would), and how accurate the
//! impairments are, measured with real traffic.
//!
//! Runs inside a private network + mount namespace of its own: two
//! namespaces joined by a veth, nothing else.
//!
//!     cargo bench --bench impair [-- ROUNDS]

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use koko::impair::{self, End, Impairment, LinkPair, Rate};
use koko::journal::Journal;
use koko::net::tc::MirrorDir;
use koko::net::Session;
use koko::ns::Namespace;

mod sandbox;

// The tests' traffic helpers, shared rather than copied (traffic.rs finds
// `poll` in its parent module, here the crate root).
#[allow(dead_code)]
#[path = "../tests/integration/support/traffic.rs"]
mod traffic;
#[path = "../tests/integration/support/wait.rs"]
mod wait;
use wait::poll;

fn sh(cmd: &str) {
    let ok = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd}");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Time `f` once, in microseconds.
fn us(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e6
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    sandbox::enter(&[rounds.to_string()]);
    sh("ip netns add a && ip netns add b && \
        ip link add la netns a type veth peer name lb netns b && \
        ip -n a addr add 10.9.0.1/24 dev la && ip -n b addr add 10.9.0.2/24 dev lb && \
        ip -n a link set la up && ip -n b link set lb up");
    let session = Session::new().unwrap();
    let pair = LinkPair {
        end: End {
            ns: Namespace::netns("a").unwrap(),
            link: "la".into(),
        },
        peer: Some(End {
            ns: Namespace::netns("b").unwrap(),
            link: "lb".into(),
        }),
    };
    let backend = impair::Backend::detect();
    let rate = |r: &str| Impairment {
        rate: Some(r.parse::<Rate>().unwrap()),
        ..Default::default()
    };
    let loss = |p: f64| Impairment {
        loss_pct: p,
        ..Default::default()
    };
    // Warm up: sockets open, the backend probed.
    let mut journal = Journal::new();
    impair::impair(
        &session,
        &mut journal,
        &pair,
        MirrorDir::Egress,
        &rate("10mbit"),
    )
    .unwrap();
    impair::clear(&session, &mut journal, &pair).unwrap();

    // (what, koko's times, tc's times where tc can do it too)
    type Row = (&'static str, Vec<f64>, Option<Vec<f64>>);
    let mut rows: Vec<Row> = Vec::new();
    let mut times = |name: &'static str, koko: &mut dyn FnMut(), tc: Option<&str>| {
        let mut k = Vec::new();
        let mut t = tc.map(|_| Vec::new());
        for _ in 0..rounds {
            k.push(us(&mut *koko));
            if let (Some(cmd), Some(t)) = (tc, t.as_mut()) {
                t.push(us(|| sh(cmd)));
            }
        }
        rows.push((name, k, t));
    };
    let s = &session;
    let p = &pair;
    let j = std::cell::RefCell::new(Journal::new());
    let set = |i: &Impairment| {
        impair::impair(s, &mut j.borrow_mut(), p, MirrorDir::Egress, i).unwrap();
    };
    let clear = || {
        impair::clear(s, &mut j.borrow_mut(), p).unwrap();
    };
    // Each pair of rows leaves the link as it found it, so koko and tc
    // always do the same work.
    times(
        "apply rate 10mbit",
        &mut || set(&rate("10mbit")),
        Some("tc -n a qdisc replace dev la root handle 6b6f: tbf rate 10mbit burst 12500 limit 125000"),
    );
    times(
        "change rate 10 -> 20mbit (in place)",
        &mut || set(&rate("20mbit")),
        Some("tc -n a qdisc replace dev la root handle 6b6f: tbf rate 20mbit burst 25000 limit 250000"),
    );
    times(
        "clear",
        &mut || {
            set(&rate("10mbit"));
            clear()
        },
        Some("tc -n a qdisc replace dev la root handle 6b6f: tbf rate 10mbit burst 12500 limit 125000 && tc -n a qdisc del dev la root"),
    );
    times("apply loss 5 %", &mut || set(&loss(5.0)), None);
    times("change loss 5 -> 10 %", &mut || set(&loss(10.0)), None);
    times(
        "blackhole + restore",
        &mut || {
            let mut jj = j.borrow_mut();
            impair::blackhole(s, &mut jj, p).unwrap();
            impair::restore(s, &mut jj, p).unwrap();
        },
        None,
    );
    clear();

    println!(
        "impairment operations inside a run ({} backend), {rounds} rounds",
        backend.as_str()
    );
    println!(
        "{:<40} {:>10} {:>10} {:>8}",
        "", "koko µs", "tc µs", "ratio"
    );
    for (name, mut k, t) in rows {
        let km = median(&mut k);
        match t {
            Some(mut t) => {
                let tm = median(&mut t);
                println!("{name:<40} {km:>10.0} {tm:>10.0} {:>8.3}", km / tm);
            }
            None => println!("{name:<40} {km:>10.0} {:>10} {:>8}", "-", "-"),
        }
    }
    println!("(clear: koko applies and clears, tc replaces and deletes; loss and blackholes have no tc reference here: tc would need a compiled BPF object)");

    // Accuracy, with real traffic between a and b.
    let na = std::path::PathBuf::from("/run/netns/a");
    let nb = std::path::PathBuf::from("/run/netns/b");
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    println!();
    println!("accuracy ({} backend)", backend.as_str());
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "", "configured", "measured", "ratio"
    );
    for (i, r) in ["1mbit", "10mbit", "100mbit"].iter().enumerate() {
        set(&rate(r));
        let port = 7000 + i as u16;
        let got = traffic::tcp_goodput(
            &nb,
            &na,
            addr(&format!("10.9.0.2:{port}")),
            Duration::from_secs(3),
        );
        let want = r.parse::<Rate>().unwrap().0 as f64;
        println!(
            "{:<28} {:>12} {:>10.2}Mb {:>8.3}",
            format!("rate {r} (TCP goodput)"),
            r,
            got / 1e6,
            got / want
        );
    }
    for (i, pct) in [1.0, 5.0, 30.0].iter().enumerate() {
        set(&loss(*pct));
        let n = 4000u32;
        let port = 7100 + i as u16;
        let got = traffic::udp_delivered(
            &na,
            &nb,
            addr(&format!("10.9.0.2:{port}")),
            n,
            Duration::from_micros(50),
        );
        let lost = 100.0 * (n - got) as f64 / n as f64;
        println!(
            "{:<28} {:>11.1}% {:>11.2}% {:>8.3}",
            format!("loss (UDP, {n} datagrams)"),
            pct,
            lost,
            lost / pct
        );
    }
    clear();
    session.forget_all();
}

//! The sandbox every kernel test runs in, and the kernel queries that read
//! any place in it.
//!
//! A sandbox is a private network + mount namespace held open by a sleeping
//! `unshare` process; /run/netns is a tmpfs inside it, so `ip netns add` and
//! koko's named namespaces stay private to the test. Commands enter it with
//! `nsenter -t PID -n -m`. A [`Place`] says which network namespace a query
//! reads: the sandbox's own, a named netns, any pid's (a process the test
//! started, a container's pid 1). Queries run the host's iproute2 (`ip -j`,
//! `tc -j`) inside the place with `nsenter --net=FILE`, so a container's
//! links are read exactly like a netns's, and busybox in the container (no
//! JSON) plays no part.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use super::{koko_bin, Ctr, Run};

/// Where a kernel query runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Place {
    /// The sandbox's own network namespace (koko's "current" one there).
    Own,
    /// A named netns of the sandbox (/run/netns/NAME).
    Netns(String),
    /// The network namespace of a process (/proc/PID/ns/net).
    Pid(u32),
}

impl Place {
    /// The command prefix that runs a program in this place (inside the
    /// sandbox's mount namespace, where /run/netns is the sandbox's own).
    fn enter(&self) -> String {
        match self {
            Place::Own => String::new(),
            Place::Netns(name) => format!("nsenter --net=/run/netns/{name} "),
            Place::Pid(pid) => format!("nsenter --net=/proc/{pid}/ns/net "),
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Own => write!(f, "the sandbox's own namespace"),
            Place::Netns(n) => write!(f, "netns '{n}'"),
            Place::Pid(p) => write!(f, "pid {p}'s namespace"),
        }
    }
}

/// `None` is the sandbox's own namespace, `Some(NAME)` a named netns: the
/// spelling of `ip [-n NAME]`.
impl From<Option<&str>> for Place {
    fn from(ns: Option<&str>) -> Place {
        match ns {
            None => Place::Own,
            Some(n) => Place::Netns(n.to_string()),
        }
    }
}

/// A container's namespace, by the pid of its first process.
impl From<&Ctr> for Place {
    fn from(c: &Ctr) -> Place {
        Place::Pid(c.pid())
    }
}

/// A private network + mount namespace, held open by a sleeping process.
pub struct Sandbox {
    holder: Child,
    pid: u32,
    extra: Vec<Child>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        std::fs::create_dir_all("/run/netns").expect("mkdir /run/netns");
        std::fs::create_dir_all("/run/koko").expect("mkdir /run/koko");
        // /run/netns gets a tmpfs inside the private mount namespace, so
        // `ip netns add` and koko's named namespaces stay in the sandbox;
        // so does /run/koko, so each test sees only its own runs'
        // journals (`koko runs`, `koko undo --dead`).
        let mut holder = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs koko-test /run/netns && mount -t tmpfs -o mode=0700 koko-runs /run/koko && ip link set lo up && echo ready && exec sleep 3600")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) must be installed and koko's tests run as root");
        let pid = holder.id();
        let mut line = String::new();
        BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "sandbox did not start");
        Sandbox {
            holder,
            pid,
            extra: Vec::new(),
        }
    }

    /// A command that runs inside the sandbox.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid.to_string())
            .args(["-n", "-m", "--"])
            .arg(program);
        c
    }

    // ------------------------------------------------------------ koko

    /// Run koko inside the sandbox.
    pub fn koko(&self, args: &[&str]) -> Run {
        self.koko_env(&[], args)
    }

    /// Run koko with a whole command line split on whitespace.
    pub fn koko_line(&self, line: &str) -> Run {
        let args: Vec<&str> = line.split_whitespace().collect();
        self.koko(&args)
    }

    /// Run koko inside the sandbox with extra environment variables.
    pub fn koko_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = self.command(koko_bin());
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let what = if env.is_empty() {
            format!("koko {}", args.join(" "))
        } else {
            format!("{env:?} koko {}", args.join(" "))
        };
        Run::of(&mut cmd, what)
    }

    /// Run `koro LINE`: koko invoked through a symlink named koro.
    pub fn koro(&self, line: &str) -> Run {
        let mut cmd = self.command(koro_bin());
        cmd.args(line.split_whitespace());
        Run::of(&mut cmd, format!("koro {line}"))
    }

    /// Run koko inside namespace `host` of the sandbox, as the original is
    /// used (`ip netns exec HOST koko ...`; it also makes /run/netns
    /// visible, so `-n NAME` works there).
    pub fn koko_in(&self, host: &str, line: &str) -> Run {
        let mut cmd = self.command("ip");
        cmd.args(["netns", "exec", host])
            .arg(koko_bin())
            .args(line.split_whitespace());
        Run::of(&mut cmd, format!("ip netns exec {host} koko {line}"))
    }

    // ------------------------------------------------------------ setup

    /// Run a shell command inside the sandbox; panics if it fails.
    #[track_caller]
    pub fn sh(&self, script: &str) -> String {
        let out = self.command("sh").arg("-c").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "sh -c {script:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip netns add` (the reference implementation, for test setup).
    pub fn netns_add(&self, names: &[&str]) {
        for n in names {
            self.sh(&format!("ip netns add {n}"));
        }
    }

    /// Start a process in a fresh network namespace of its own (inside the
    /// sandbox); returns its pid. It lives until the sandbox is dropped.
    pub fn spawn_pid_namespace(&mut self) -> u32 {
        let mut child = self
            .command("unshare")
            .args(["--net", "--", "sh", "-c", "echo $$; exec sleep 3600"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.extra.push(child);
        line.trim().parse().unwrap()
    }

    // ------------------------------------------------------------ places

    /// Named namespaces in the sandbox.
    pub fn netns_list(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sh("ls /run/netns")
            .split_whitespace()
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    /// The path (from this test process) of a named namespace's file.
    pub fn netns_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/run/netns/{name}", self.pid))
    }

    /// The sandbox's own namespace (koko's "current" namespace there).
    pub fn own_ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }

    /// [`assert_tcp`](super::assert_tcp) between two named namespaces of
    /// the sandbox: a listener on `addr` in `server`, the client in `client`.
    #[track_caller]
    pub fn assert_tcp(&self, server: &str, client: &str, addr: &str) {
        super::assert_tcp(self.netns_path(server), self.netns_path(client), addr);
    }

    // ------------------------------------------------------------ kernel queries

    /// `PROGRAM -j ARGS` run in `place`, parsed (empty output is `[]`).
    fn json_in(&self, place: &Place, program: &str, args: &str) -> Value {
        let cmd = format!("{}{program} -j {args}", place.enter());
        let text = self.sh(&cmd);
        if text.trim().is_empty() {
            Value::Array(vec![])
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{cmd}: bad JSON {e}: {text}"))
        }
    }

    /// `ip -j ARGS` in a place, parsed.
    pub fn ip_json(&self, place: impl Into<Place>, args: &str) -> Value {
        self.json_in(&place.into(), "ip", args)
    }

    /// `tc -j ARGS` in a place, parsed.
    pub fn tc_json(&self, place: impl Into<Place>, args: &str) -> Value {
        self.json_in(&place.into(), "tc", args)
    }

    /// Every link in a place, with details (`ip -j -d link show`).
    pub fn links(&self, place: impl Into<Place>) -> Vec<Value> {
        as_vec(self.ip_json(place, "-d link show"))
    }

    /// The kernel's view of one link (with details), if it exists.
    pub fn link(&self, place: impl Into<Place>, name: &str) -> Option<Value> {
        self.links(place).into_iter().find(|l| l["ifname"] == name)
    }

    /// Names of every link in a place, except lo.
    pub fn link_names(&self, place: impl Into<Place>) -> Vec<String> {
        self.links(place)
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .filter(|n| n != "lo")
            .collect()
    }

    /// Addresses (`addr/prefix`) on one link, from the kernel, in the
    /// kernel's order (IPv4 first); link-local IPv6 excluded.
    pub fn addrs(&self, place: impl Into<Place>, link: &str) -> Vec<String> {
        let mut out = Vec::new();
        for l in as_vec(self.ip_json(place, &format!("addr show dev {link}"))) {
            for a in l["addr_info"].as_array().unwrap() {
                if a["scope"] == "link" {
                    continue;
                }
                out.push(format!(
                    "{}/{}",
                    a["local"].as_str().unwrap(),
                    a["prefixlen"]
                ));
            }
        }
        out
    }

    /// The IPv4 routes of the main table (`ip -j route show`).
    pub fn routes(&self, place: impl Into<Place>) -> Vec<Value> {
        as_vec(self.ip_json(place, "route show"))
    }

    /// The route to `dst` ("default" or "a.b.c.d/n") in the main table.
    pub fn route(&self, place: impl Into<Place>, dst: &str) -> Option<Value> {
        self.routes(place).into_iter().find(|r| r["dst"] == dst)
    }

    /// A sysctl's value in a place, read from /proc/sys (per network
    /// namespace for net.*), e.g. `net.ipv4.ip_forward`.
    pub fn sysctl(&self, place: impl Into<Place>, key: &str) -> String {
        let file = format!("/proc/sys/{}", key.replace('.', "/"));
        self.sh(&format!("{}cat {file}", place.into().enter()))
            .trim()
            .to_string()
    }

    /// Packets a link has received (`ip -s`).
    pub fn rx_packets(&self, place: impl Into<Place>, link: &str) -> u64 {
        let l = self.ip_json(place, &format!("-s link show dev {link}"));
        l[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
    }

    /// The tc filters on `dev` at `hook` ("ingress" or "egress").
    pub fn tc_filters(&self, place: impl Into<Place>, dev: &str, hook: &str) -> Vec<Value> {
        as_vec(self.tc_json(place, &format!("filter show dev {dev} {hook}")))
    }

    /// The kinds of the qdiscs on `dev`.
    pub fn qdisc_kinds(&self, place: impl Into<Place>, dev: &str) -> Vec<String> {
        as_vec(self.tc_json(place, &format!("qdisc show dev {dev}")))
            .iter()
            .map(|q| q["kind"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for c in &mut self.extra {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn as_vec(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => panic!("expected a JSON array, got {other}"),
    }
}

/// A symlink named `koro` to the koko binary (koko speaks the koro grammar
/// when invoked by that name), made once per test process.
pub fn koro_bin() -> PathBuf {
    static KORO: OnceLock<PathBuf> = OnceLock::new();
    KORO.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("koko-koro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let koro = dir.join("koro");
        let _ = std::fs::remove_file(&koro);
        std::os::unix::fs::symlink(koko_bin(), &koro).unwrap();
        koro
    })
    .clone()
}

/// A route as `ip route` writes it: `DST [via GW] dev DEV [metric M]`.
pub fn route_text(r: &Value) -> String {
    let mut s = r["dst"].as_str().unwrap().to_string();
    if let Some(gw) = r["gateway"].as_str() {
        s += &format!(" via {gw}");
    }
    s += &format!(" dev {}", r["dev"].as_str().unwrap());
    if let Some(m) = r["metric"].as_u64() {
        s += &format!(" metric {m}");
    }
    s
}

/// Assert that `a` and `b` (from [`Sandbox::link`]) are the two ends of one
/// veth pair, both admin-up, MTU 1500.
#[track_caller]
pub fn assert_pair(a: &Value, b: &Value) {
    for l in [a, b] {
        assert_eq!(l["linkinfo"]["info_kind"], "veth", "{l}");
        // Admin-up (operstate follows a moment later, once the kernel's
        // link watcher has seen the carrier of both ends).
        assert!(
            l["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            "{l}"
        );
        assert_eq!(l["mtu"], 1500, "{l}");
    }
    assert_eq!(a["link_index"], b["ifindex"], "{a}\n{b}");
    assert_eq!(b["link_index"], a["ifindex"], "{a}\n{b}");
}

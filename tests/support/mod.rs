//! The test harness: every kernel test runs in its own sandbox, a private
//! network AND mount namespace with a tmpfs on /run/netns. Tests run in
//! parallel, never see each other's namespaces, and never touch this
//! machine's own interfaces. The sandbox dies with the test (its holder
//! process is killed on drop), taking every namespace and link with it.
//!
//! Results are checked through the kernel (`ip -j`, `tc -j`), never through
//! koko's own report.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The koko binary under test.
pub fn koko_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_koko"))
}

/// A loud skip: under CI a skip of something this machine can run fails.
pub fn skip(reason: &str) {
    eprintln!("\n*** SKIP: {reason} ***\n");
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false)
        && std::env::var("KOKO_ALLOW_SKIP").is_err()
    {
        panic!("SKIP under CI is a failure: {reason}");
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
        // /run/netns gets a tmpfs inside the private mount namespace, so
        // `ip netns add` and koko's named namespaces stay in the sandbox.
        let mut holder = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs koko-test /run/netns && ip link set lo up && echo ready && exec sleep 3600")
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

    pub fn pid(&self) -> u32 {
        self.pid
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

    /// Run koko inside the sandbox.
    pub fn koko(&self, args: &[&str]) -> Run {
        let out = self
            .command(koko_bin())
            .args(args)
            .output()
            .expect("run koko");
        Run::from(out, format!("koko {}", args.join(" ")))
    }

    /// Run koko with a whole command line split on whitespace.
    pub fn koko_line(&self, line: &str) -> Run {
        let args: Vec<&str> = line.split_whitespace().collect();
        self.koko(&args)
    }

    /// Run a shell command inside the sandbox; panics if it fails.
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

    /// `ip -j ARGS` parsed; `ns` selects `-n NS`.
    pub fn ip_json(&self, ns: Option<&str>, args: &str) -> Value {
        let cmd = match ns {
            Some(n) => format!("ip -j -n {n} {args}"),
            None => format!("ip -j {args}"),
        };
        let text = self.sh(&cmd);
        if text.trim().is_empty() {
            Value::Array(vec![])
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{cmd}: bad JSON {e}: {text}"))
        }
    }

    /// The kernel's view of one link (with details), if it exists.
    pub fn link(&self, ns: Option<&str>, name: &str) -> Option<Value> {
        let all = self.ip_json(ns, "-d link show");
        all.as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    /// Names of every link in a namespace, except lo.
    pub fn link_names(&self, ns: Option<&str>) -> Vec<String> {
        let all = self.ip_json(ns, "link show");
        all.as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .filter(|n| n != "lo")
            .collect()
    }

    /// Addresses (`addr/prefix`) on one link, from the kernel; link-local
    /// IPv6 excluded.
    pub fn addrs(&self, ns: Option<&str>, link: &str) -> Vec<String> {
        let all = self.ip_json(ns, &format!("addr show dev {link}"));
        let mut out = Vec::new();
        for l in all.as_array().unwrap() {
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

    /// The sandbox's own network namespace (koko's "current" namespace there).
    pub fn own_ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
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

/// The result of running a command, with helpers that print everything on
/// failure.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Run {
    fn from(out: Output, what: String) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what,
        }
    }

    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "{} failed:\nstdout: {}\nstderr: {}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    /// Assert the exit code and that stderr contains `needle`.
    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) -> &Run {
        assert_eq!(
            self.code, code,
            "{}: expected exit {code}\nstdout: {}\nstderr: {}",
            self.what, self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "{}: stderr lacks {needle:?}:\n{}",
            self.what,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.stdout))
    }
}

/// Run `f` on a new thread that has entered the namespace at `ns_path`.
pub fn in_netns<T: Send + 'static>(
    ns_path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let file =
        std::fs::File::open(ns_path).unwrap_or_else(|e| panic!("open {}: {e}", ns_path.display()));
    std::thread::spawn(move || {
        // SAFETY: plain syscall on a valid fd; this thread is ours alone.
        let rc = unsafe { libc_setns(file.as_raw_fd(), 0x4000_0000) };
        assert_eq!(rc, 0, "setns failed");
        f()
    })
}

extern "C" {
    #[link_name = "setns"]
    fn libc_setns(fd: i32, nstype: i32) -> i32;
}

/// Prove TCP traffic flows: a listener in `server_ns` on `addr`, a client in
/// `client_ns` connects, sends a line and reads the echo.
pub fn tcp_roundtrip(
    server_ns: &Path,
    client_ns: &Path,
    addr: SocketAddr,
) -> Result<String, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = in_netns(server_ns, move || -> Result<(), String> {
        // A new IPv6 address is "tentative" until duplicate address
        // detection finishes (~1-2 s); binding to it fails until then.
        let mut attempt = 0;
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(format!("bind {addr}: {e}")),
            }
        };
        listener.set_nonblocking(false).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
        conn.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        Ok(())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "server did not start".to_string())?;
    let client = in_netns(client_ns, move || -> Result<String, String> {
        let mut last = String::new();
        // IPv6 addresses may still be tentative (DAD) for a moment.
        for _ in 0..30 {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(mut s) => {
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s.write_all(b"hello koko").map_err(|e| e.to_string())?;
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
                    return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                Err(e) => {
                    last = e.to_string();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Err(format!("connect {addr}: {last}"))
    });
    let reply = client.join().unwrap();
    if reply.is_err() {
        // Unblock the server's accept so its thread can end.
        drop(server);
        return reply;
    }
    server.join().unwrap()?;
    reply
}

/// Prove that no TCP connection to `addr` opens from `client_ns` within 1 s.
pub fn tcp_blocked(client_ns: &Path, addr: SocketAddr) -> bool {
    in_netns(client_ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
    })
    .join()
    .unwrap()
}

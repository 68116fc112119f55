//! Container engines for the tests: Debian's Docker engine and Podman's
//! Docker-compatible API service, started by tests/setup/docker.sh with a
//! tiny local image ([`IMAGE`], busybox). Every test makes its own
//! containers (`--network none` unless it says otherwise, unique names) and
//! removes them when it ends, even on panic ([`Ctr`]'s Drop). The
//! containers' namespaces are read through the kernel like any other
//! place (`Place::from(&ctr)` is its pid's namespace); `exec` runs busybox
//! applets inside, for traffic.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{poll, skip, wait_for, Sandbox};

const IMAGE: &str = "koko-test/busybox:1";
const DOCKER_SOCK: &str = "/var/run/docker.sock";
pub const PODMAN_SOCK: &str = "/run/podman/podman.sock";

/// Does the engine behind this unix socket answer `GET /_ping`?
fn engine_answers(sock: &str) -> bool {
    let Ok(mut s) = UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.") && reply.contains(" 200 ") && reply.ends_with("OK")
}

/// Is the engine (`cli` is "docker" or "podman") up with the test image?
/// If not, a loud skip (a failure under CI, where tests/setup/docker.sh
/// must have started it) and false: the test then returns.
#[track_caller]
fn engine(cli: &'static str) -> bool {
    let sock = if cli == "podman" {
        PODMAN_SOCK
    } else {
        DOCKER_SOCK
    };
    let image = Command::new(cli)
        .args(["image", "inspect", IMAGE])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !engine_answers(sock) || !image {
        skip(&format!(
            "{cli}: no engine answering on {sock} or no image {IMAGE} (run tests/setup/docker.sh)"
        ));
        return false;
    }
    true
}

/// The engine is up with the test image: a sandbox for the test. If not,
/// a loud skip (a failure under CI) and None: the test returns.
///
/// ```ignore
/// let Some(sb) = engine_sandbox("docker") else {
///     return;
/// };
/// ```
#[track_caller]
pub fn engine_sandbox(cli: &'static str) -> Option<Sandbox> {
    engine(cli).then(Sandbox::new)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A test container: started with a unique name, removed (with its
/// namespace and every link end in it) on drop.
pub struct Ctr {
    pub cli: &'static str,
    pub name: String,
}

impl Ctr {
    /// A Docker container with `--network none`, running `sleep`.
    pub fn docker(tag: &str) -> Ctr {
        Ctr::start("docker", tag, &["--network", "none"])
    }

    /// A unique container name for `tag`.
    fn unique(tag: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!(
            "koko-{tag}-{}-{}-{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos & 0xffff
        )
    }

    /// `CLI run -d OPTS IMAGE sleep 1000`.
    pub fn start(cli: &'static str, tag: &str, opts: &[&str]) -> Ctr {
        Ctr::engine_cmd(cli, "run -d", tag, opts, &["sleep", "1000"])
    }

    /// `docker create --network none IMAGE`: a container that was never
    /// started (its pid is 0).
    pub fn created(tag: &str) -> Ctr {
        Ctr::engine_cmd("docker", "create", tag, &["--network", "none"], &[])
    }

    fn engine_cmd(cli: &'static str, verb: &str, tag: &str, opts: &[&str], cmd: &[&str]) -> Ctr {
        let ctr = Ctr {
            cli,
            name: Ctr::unique(tag),
        };
        let mut args: Vec<&str> = verb.split_whitespace().collect();
        args.extend(["--name", &ctr.name]);
        args.extend(opts);
        args.push(IMAGE);
        args.extend(cmd);
        engine_cli(cli, &args);
        ctr
    }

    /// `CLI inspect -f FORMAT NAME`.
    pub fn inspect(&self, format: &str) -> String {
        engine_cli(self.cli, &["inspect", "-f", format, &self.name])
            .trim()
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.inspect("{{.State.Pid}}").parse().unwrap()
    }

    pub fn id(&self) -> String {
        self.inspect("{{.Id}}")
    }

    pub fn ns_path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// `docker exec C sh -c SCRIPT`: (success, stdout + stderr).
    pub fn exec(&self, script: &str) -> (bool, String) {
        let out = Command::new(self.cli)
            .args(["exec", &self.name, "sh", "-c", script])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `docker exec C sh -c SCRIPT`, which must succeed; its output.
    #[track_caller]
    pub fn sh(&self, script: &str) -> String {
        let (ok, text) = self.exec(script);
        assert!(
            ok,
            "{} exec {} {script:?} failed: {text}",
            self.cli, self.name
        );
        text
    }

    /// Ping from inside the container (retrying while an IPv6 address is
    /// still tentative).
    #[track_caller]
    pub fn ping(&self, addr: &str) {
        wait_for(
            &format!("{} can ping {addr}", self.name),
            Duration::from_secs(12),
            || match self.exec(&format!("ping -c1 -W2 {addr}")) {
                (true, _) => Ok(()),
                (false, text) => Err(text),
            },
        );
    }

    /// The ping fails (the path is broken).
    pub fn cannot_ping(&self, addr: &str) -> bool {
        !self.exec(&format!("ping -c1 -W1 {addr}")).0
    }

    /// `docker kill`, and `docker wait` until the engine reports it stopped.
    pub fn kill(&self) {
        engine_cli(self.cli, &["kill", &self.name]);
        let _ = Command::new(self.cli).args(["wait", &self.name]).output();
    }
}

/// `CLI ARGS...` (docker or podman), which must succeed; its stdout.
#[track_caller]
fn engine_cli(cli: &str, args: &[&str]) -> String {
    let out = Command::new(cli)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cli}: {e}"));
    assert!(
        out.status.success(),
        "{cli} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let mut rm = Command::new(self.cli);
        rm.args(["rm", "-f"]);
        if self.cli == "podman" {
            // Podman's `rm -f` first waits 10 s for `sleep` (pid 1) to obey SIGTERM.
            rm.args(["-t", "0"]);
        }
        let _ = rm
            .arg(&self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// TCP across the link with busybox nc: a listener in `server`, a client in
/// `client` sends a line and gets the server's line back.
#[track_caller]
pub fn nc_roundtrip(server: &Ctr, client: &Ctr, addr: &str, port: u16) {
    let listen = Command::new(server.cli)
        .args([
            "exec",
            "-d",
            &server.name,
            "sh",
            "-c",
            &format!("echo pong-from-{port} | nc -l -p {port}"),
        ])
        .status()
        .unwrap();
    assert!(listen.success());
    // `exec -d` returns before nc listens: retry until it answers.
    let answered = poll(Duration::from_secs(20), || {
        let (_, text) = client.exec(&format!("echo ping | timeout 3 nc {addr} {port}"));
        if text.contains(&format!("pong-from-{port}")) {
            Ok(())
        } else {
            Err(text)
        }
    });
    if let Err(last) = answered {
        panic!(
            "no TCP answer from {addr}:{port} ({} -> {}): {last}",
            client.name, server.name
        );
    }
}

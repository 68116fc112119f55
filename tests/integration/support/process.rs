//! Processes the tests run: a finished command ([`Run`]), the output of a
//! running one read as it comes ([`Tail`], to wait on what it prints), and
//! a process's exit awaited with a limit ([`wait_exit`]).

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::wait_for;

/// The result of running a command, with helpers that print everything on
/// failure.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Run {
    /// Run `cmd` to completion; `what` names it in failure messages.
    pub fn of(cmd: &mut Command, what: impl Into<String>) -> Run {
        let what = what.into();
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what,
        }
    }

    /// Run `cmd` with `input` on its stdin, to completion.
    pub fn with_input(cmd: &mut Command, input: &str, what: impl Into<String>) -> Run {
        let what = what.into();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        // Dropping stdin after the write closes it: the end of input.
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
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
        self.stderr_has(needle)
    }

    /// Assert that stdout contains `needle`; print it if not.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Run {
        self.has("stdout", &self.stdout, needle)
    }

    /// Assert that stderr contains `needle`; print it if not.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        self.has("stderr", &self.stderr, needle)
    }

    #[track_caller]
    fn has(&self, stream: &str, text: &str, needle: &str) -> &Run {
        assert!(
            text.contains(needle),
            "{}: {stream} lacks {needle:?}:\n{text}",
            self.what
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.stdout))
    }

    /// The first line of stdout that starts with `prefix`.
    #[track_caller]
    pub fn line(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{}: no line {prefix:?} in:\n{}", self.what, self.stdout))
    }
}

/// The output of a running process, collected by a thread as it comes, so
/// a test can wait until the process has printed something.
pub struct Tail {
    text: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Tail {
    pub fn new(mut from: impl Read + Send + 'static) -> Tail {
        let text = Arc::new(Mutex::new(Vec::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Tail { text, reader }
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Wait until `condition` holds for the text read so far.
    #[track_caller]
    pub fn wait_until(&self, what: &str, timeout: Duration, condition: impl Fn(&str) -> bool) {
        wait_for(what, timeout, || {
            let text = self.text();
            if condition(&text) {
                Ok(())
            } else {
                Err(format!("output so far: {text:?}"))
            }
        })
    }

    /// Wait until the output contains `needle`.
    #[track_caller]
    pub fn wait_for_text(&self, needle: &str, timeout: Duration) {
        self.wait_until(&format!("the output shows {needle:?}"), timeout, |t| {
            t.contains(needle)
        })
    }

    /// Everything, once the process has closed its end.
    pub fn finish(self) -> String {
        self.reader.join().unwrap();
        let text = self.text.lock().unwrap();
        String::from_utf8_lossy(&text).into_owned()
    }
}

/// Wait (at most `timeout`) for `child` to exit; kill it and fail naming
/// `what` if it does not.
#[track_caller]
pub fn wait_exit(child: &mut Child, what: &str, timeout: Duration) -> ExitStatus {
    let status = super::poll(timeout, || match child.try_wait() {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err("still running".to_string()),
        Err(e) => panic!("waiting for {what}: {e}"),
    });
    match status {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {timeout:?}");
        }
    }
}

/// A process running in the background (koko, usually), its stdout and
/// stderr read as they come. Killed on drop if the test did not wait for
/// its exit.
pub struct Running {
    child: Option<Child>,
    pub out: Tail,
    pub err: Tail,
}

impl Running {
    /// `koko ARGS...` in the sandbox, with `env` (and no KOKO_PATH).
    pub fn koko(sb: &super::Sandbox, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = sb.command(super::koko_bin());
        cmd.args(args).env_remove("KOKO_PATH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Running::spawn(cmd)
    }

    /// Start `cmd` with stdin closed and its output collected.
    pub fn spawn(mut cmd: Command) -> Running {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let out = Tail::new(child.stdout.take().unwrap());
        let err = Tail::new(child.stderr.take().unwrap());
        Running {
            child: Some(child),
            out,
            err,
        }
    }

    /// The process's pid (a sandbox's nsenter execs koko: no fork without
    /// -p, so this is koko's own pid).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("still running").id()
    }

    /// Send `signal` (a name such as "INT") with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {}", self.pid());
    }

    /// Wait for the exit (at most `timeout`): the exit code, stdout and
    /// stderr.
    pub fn exit(mut self, what: &str, timeout: Duration) -> (i32, String, String) {
        let mut child = self.child.take().expect("waited for once");
        let status = wait_exit(&mut child, what, timeout);
        let out = std::mem::replace(&mut self.out, Tail::new(std::io::empty()));
        let err = std::mem::replace(&mut self.err, Tail::new(std::io::empty()));
        (status.code().unwrap_or(-1), out.finish(), err.finish())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

//! The sandbox a test (or `koko run --sandbox`) runs in: a child process
//! born in a private network namespace and a private mount namespace.
//!
//! A network namespace is the whole of a test's world: its links, addresses,
//! routes, sysctls and its `lo`. The named namespaces a script makes are
//! files under /run/netns (bind mounts of namespace files), and a run's
//! journal lives in /run/koko: both directories get a tmpfs of their own in
//! the private mount namespace, so two tests can create a netns of the same
//! name at the same moment, and `koko runs` / `koko undo --dead` inside a
//! test see only that test's journals. The host's /run/netns and /run/koko
//! are never written.
//!
//! Making `/` a recursive *private* mount first matters: on systemd hosts
//! `/` is a shared mount, and without it the two tmpfs mounts would
//! propagate back into the host's mount namespace.
//!
//! The namespaces belong to the child process alone: when it (and whatever
//! it started) exits, the kernel tears the sandbox down with every link in
//! it. Nothing needs to be deleted afterwards, and a hung test is stopped by
//! killing its process group. This is done between fork and exec
//! (`pre_exec`), where the child is still single-threaded (unsharing a mount
//! namespace is refused to a multi-threaded process) and may only make raw
//! system calls: every string is prepared before the fork.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::error::{Error, Result};

/// The directories that get a private tmpfs in every sandbox.
pub const PRIVATE_DIRS: [&str; 2] = ["/run/netns", crate::runs::RUN_DIR];

/// Make `cmd` start in a fresh sandbox. With `own_group`, the child also
/// leads a process group of its own, so that it and everything it started
/// can be killed at once (`kill(-pid)`); `koko run --sandbox` keeps the
/// terminal's group instead, so Ctrl-C reaches the script.
pub fn sandboxed(cmd: &mut Command, own_group: bool) -> Result<()> {
    for dir in PRIVATE_DIRS {
        // The mount points must exist; creating an empty directory in the
        // host's /run is all the sandbox ever does outside itself.
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {dir}"), e))?;
    }
    let root = CString::new("/").unwrap();
    let tmpfs = CString::new("tmpfs").unwrap();
    let source = CString::new("koko-sandbox").unwrap();
    let targets: Vec<CString> = PRIVATE_DIRS
        .iter()
        .map(|d| CString::new(*d).unwrap())
        .collect();
    let mode = CString::new("mode=0755").unwrap();
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if own_group && libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let private = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                private,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for target in &targets {
                if libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    tmpfs.as_ptr(),
                    0,
                    mode.as_ptr().cast(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// Bring `lo` up in the current namespace: a fresh network namespace has
/// it down, and a test that pings its own address expects it up, as on
/// any machine.
pub fn loopback_up(session: &crate::net::Session) -> Result<()> {
    let here = crate::ns::Namespace::current()?;
    let target = session.target(&here)?;
    let up = crate::net::link::LinkChange {
        up: Some(true),
        mtu: None,
    };
    session.block_on(crate::net::link::set(&target, "lo", up))
}

/// Keep the current sandbox alive after this process exits (`--keep-failed`):
/// start a detached process of this binary (`koko __sandbox-hold`) that
/// waits forever in it. Returns its pid, for `nsenter -t PID -n -m`.
pub fn hold() -> Result<u32> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding koko's own binary", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__sandbox-hold")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe; a session of its own keeps the
    // holder out of the test's process group, which is killed at its end.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("starting the sandbox holder", e))?;
    Ok(child.id())
}

/// The holder's life: wait for a signal that ends it.
pub fn hold_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe {
            libc::pause();
        }
    }
}

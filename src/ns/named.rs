//! Named namespaces, compatible with `ip netns add` / `ip netns del`.
//!
//! `ip netns add NAME` does three things, and so do we, in-process:
//!
//! 1. makes `/run/netns` a mount point with *shared* propagation (bind-mounting
//!    it onto itself the first time), so that namespace mounts made later are
//!    seen by every mount namespace that shares it (e.g. `ip netns exec`);
//! 2. creates an empty file `/run/netns/NAME`;
//! 3. creates a new network namespace (unshare on a throwaway thread, so no
//!    thread of koko ever lives in it) and bind-mounts that thread's
//!    `/proc/thread-self/ns/net` onto the file. The bind mount is what keeps
//!    the namespace alive once the thread is gone.
//!
//! Deleting is the reverse: lazily unmount the file, then remove it. The
//! namespace itself dies when the last reference (a process, another mount,
//! an open fd) goes away; its veth ends vanish with it, and so do their peers.

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::{Namespace, NETNS_RUN_DIR};
use crate::error::{Error, Result};

/// Check a name `ip netns` would accept: a single path component.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::Invalid(format!(
            "'{name}' is not a valid netns name (it must be a single file name: no '/', not empty, not '.' or '..')"
        )));
    }
    Ok(())
}

/// Create the named namespace `name`. Fails if it already exists.
pub fn create(name: &str) -> Result<Namespace> {
    validate_name(name)?;
    let what = format!("creating netns '{name}'");
    let path = prepare_run_dir(&what)?.join(name);
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Invalid(format!("netns '{name}' already exists")));
        }
        Err(e) => return Err(Error::io(what, e)),
    }
    if let Err(err) = bind_new_netns(&path) {
        let _ = fs::remove_file(&path);
        return Err(Error::kernel(what, err));
    }
    Namespace::netns(name)
}

/// Return the named namespace `name`, creating it if it does not exist.
/// The flag says whether it was created.
pub fn ensure(name: &str) -> Result<(Namespace, bool)> {
    match Namespace::netns(name) {
        Ok(ns) => Ok((ns, false)),
        Err(Error::NamespaceNotFound { .. }) if !Path::new(NETNS_RUN_DIR).join(name).exists() => {
            create(name).map(|ns| (ns, true))
        }
        Err(e) => Err(e),
    }
}

/// Delete the named namespace `name` (like `ip netns del`).
pub fn delete(name: &str) -> Result<()> {
    validate_name(name)?;
    let path = Path::new(NETNS_RUN_DIR).join(name);
    if !path.exists() {
        return Err(Error::NamespaceNotFound {
            ns: format!("netns '{name}'"),
            cause: format!("does not exist (no {})", path.display()),
        });
    }
    // MNT_DETACH: succeed even if something (ip netns exec, another mount
    // namespace) still uses the mount; the namespace dies when they let go.
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(errno) => return Err(Error::kernel(format!("deleting netns '{name}'"), errno)),
    }
    fs::remove_file(&path).map_err(|e| Error::io(format!("deleting netns '{name}'"), e))
}

/// The names under /run/netns, sorted.
pub fn list() -> Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = match fs::read_dir(NETNS_RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(Error::io(format!("reading {NETNS_RUN_DIR}"), e)),
    };
    for entry in entries.flatten() {
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Make sure /run/netns exists and is a shared mount point, as iproute2 does.
fn prepare_run_dir(what: &str) -> Result<PathBuf> {
    let dir = PathBuf::from(NETNS_RUN_DIR);
    match fs::create_dir(&dir) {
        Ok(()) => {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("{what}: creating {NETNS_RUN_DIR}"), e)),
    }
    let none: Option<&str> = None;
    loop {
        match mount(
            none,
            &dir,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            none,
        ) {
            Ok(()) => return Ok(dir),
            // EINVAL: not a mount point yet. Bind it onto itself, then retry.
            Err(Errno::EINVAL) => {
                mount(
                    Some(&dir),
                    &dir,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none,
                )
                .map_err(|errno| {
                    Error::kernel(
                        format!("{what}: making {NETNS_RUN_DIR} a mount point"),
                        errno,
                    )
                })?;
            }
            Err(errno) => {
                return Err(Error::kernel(
                    format!("{what}: sharing {NETNS_RUN_DIR}"),
                    errno,
                ))
            }
        }
    }
}

/// On a throwaway thread: unshare a new network namespace and bind-mount it
/// onto `path`. The thread exits afterwards, so no koko thread ever lives in
/// the new namespace; the bind mount keeps it alive.
fn bind_new_netns(path: &Path) -> std::result::Result<(), Errno> {
    let path = path.to_path_buf();
    std::thread::spawn(move || -> std::result::Result<(), Errno> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        let none: Option<&str> = None;
        mount(
            Some("/proc/thread-self/ns/net"),
            &path,
            Some("none"),
            MsFlags::MS_BIND,
            none,
        )
    })
    .join()
    .unwrap_or(Err(Errno::EIO))
}

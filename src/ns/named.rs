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
use crate::error::{Error, Object, Result};

/// The longest file name the kernel takes (NAME_MAX), so the longest netns
/// name: `ip netns add` refuses longer ones up front too.
pub const MAX_NAME_LEN: usize = 255;

/// Check a name `ip netns` would accept: a single path component of at most
/// [`MAX_NAME_LEN`] bytes. (A name starting with '-' is a valid file name;
/// the command line decides whether a word is a flag.)
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::Invalid(format!(
            "'{name}' is not a valid netns name (it must be a single file name: no '/', not empty, not '.' or '..')"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::Invalid(format!(
            "netns name '{name}' is {} bytes long; a file name (and so a netns name) has at most {MAX_NAME_LEN}",
            name.len()
        )));
    }
    Ok(())
}

/// How long a lookup waits for a namespace file that exists but is not
/// mounted yet (see [`await_mount`]).
pub const MOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Wait (at most [`MOUNT_WAIT`], polling) while `path` looks like a named
/// namespace in the middle of being made or removed by another process.
///
/// `ip netns add` (and [`create`]) first creates an empty regular file, then
/// bind-mounts the new namespace onto it; `ip netns del` unmounts, then
/// removes the file. Between the two steps the file is an ordinary empty
/// file, and a process that looks at that moment would call it "not a
/// namespace file". So: while the path is an empty regular file that is not
/// an nsfs mount, wait; return as soon as it is mounted, gone, or anything
/// else. Nothing is opened (a FIFO at the path must not block us), and a
/// non-empty file (`/etc/hostname`) is not waited on: no namespace is ever
/// made on one.
pub fn await_mount(path: &Path) {
    let start = std::time::Instant::now();
    while is_unmounted_placeholder(path) && start.elapsed() < MOUNT_WAIT {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Is `path` an empty regular file with no nsfs mounted on it?
fn is_unmounted_placeholder(path: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.file_type().is_file() || meta.len() != 0 {
        return false;
    }
    // statfs names the file system of whatever is mounted at the path;
    // it does not open the file.
    match nix::sys::statfs::statfs(path) {
        Ok(fs) => fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC,
        Err(_) => false,
    }
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
            // Another process may be making it right now: give it the
            // moment it needs, then tell a namespace from a leftover file.
            await_mount(&path);
            if is_unmounted_placeholder(&path) {
                return Err(Error::Kernel {
                    what,
                    cause: format!(
                        "{} exists but no namespace is mounted on it (left behind by an interrupted `ip netns add`?); `ip netns del {name}` removes it",
                        path.display()
                    ),
                    errno: None,
                });
            }
            return Err(Error::Exists {
                object: Object::netns(name),
                place: None,
            });
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
/// The flag says whether it was created (by this call: the caller owns it).
///
/// Several processes may ensure the same name at once: a namespace that
/// another one is still making is waited for (see [`await_mount`]), and a
/// `create` that loses the race to another process (it exists now) looks
/// again instead of failing.
pub fn ensure(name: &str) -> Result<(Namespace, bool)> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match Namespace::netns(name) {
            Ok(ns) => return Ok((ns, false)),
            Err(e) if e.is_namespace_not_found() && !path.exists() => match create(name) {
                Ok(ns) => return Ok((ns, true)),
                // Someone else made it between our look and our create.
                Err(Error::Exists { .. }) if attempts < 5 => continue,
                Err(e) => return Err(e),
            },
            // Someone else deleted it between our look and our open.
            Err(e) if e.is_namespace_not_found() && attempts < 5 && !path.exists() => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Delete the named namespace `ns` only if its name still refers to that
/// very namespace (same device and inode), never to one somebody else made
/// under the same name since. Returns whether it was deleted; `Ok(false)`
/// means the name is gone or now names another namespace, which is left
/// alone.
pub fn delete_same(ns: &Namespace) -> Result<bool> {
    if !ns.exists() {
        return Ok(false);
    }
    delete(ns.name())?;
    Ok(true)
}

/// Check every name of a request that makes several namespaces, before
/// any is made: each valid, none named twice.
fn validate_names(names: &[String]) -> Result<()> {
    for name in names {
        validate_name(name)?;
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(Error::Invalid(format!(
            "netns '{dup}' is named twice in one request"
        )));
    }
    Ok(())
}

/// Create every namespace of `names`, all or nothing: every name is checked
/// first (valid, not named twice), then they are made in order; if one
/// cannot be (taken, refused), those this call made are deleted again, by
/// identity ([`delete_same`]), so nothing is left and nobody else's
/// namespace is touched. The error names the one that failed.
pub fn create_all(names: &[String]) -> Result<Vec<Namespace>> {
    validate_names(names)?;
    let mut made: Vec<Namespace> = Vec::with_capacity(names.len());
    let mut progress = crate::progress::Progress::counted("creating namespaces", names.len());
    for name in names {
        progress.add(1);
        // A stop signal between two names ends the request like a failure
        // (see crate::interrupt): what it made goes again.
        match crate::interrupt::check().and_then(|()| create(name)) {
            Ok(ns) => made.push(ns),
            Err(e) => return Err(unmake(&made, e)),
        }
        crate::interrupt::test_pause("AFTER_NETNS").map_err(|e| unmake(&made, e))?;
    }
    // A signal during the last creation: the user asked for none of it.
    crate::interrupt::check().map_err(|e| unmake(&made, e))?;
    Ok(made)
}

/// Delete again, newest first and by identity, the namespaces a failed
/// all-or-nothing request made; returns the request's error.
fn unmake(made: &[Namespace], error: Error) -> Error {
    for ns in made.iter().rev() {
        match delete_same(ns) {
            Ok(true) => crate::say!(
                "koko: deleted {ns} again (made by this request, which is all or nothing)"
            ),
            Ok(false) => crate::say!(
                "koko: {ns}, made by this request, was already gone or replaced by another: left alone"
            ),
            Err(undo) => crate::say!("koko: while rolling back: {undo}"),
        }
    }
    error
}

/// Delete the named namespace `name` (like `ip netns del`).
pub fn delete(name: &str) -> Result<()> {
    validate_name(name)?;
    let path = Path::new(NETNS_RUN_DIR).join(name);
    if !path.exists() {
        return Err(Error::namespace_not_found(
            Object::netns(name),
            format!("does not exist (no {})", path.display()),
        ));
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

/// Create many named namespaces at once (all must be new). One helper
/// thread creates them all: it unshares a new network namespace, bind-mounts
/// it onto its file, and moves on to the next (a thread may unshare again and
/// again; each bind mount keeps its namespace alive). While the thread is in
/// namespace `i` it calls `inside(i)`, which can set sysctls there without
/// any further namespace switch (`/proc/sys/net` belongs to the namespace of
/// the thread that opens it).
///
/// All or nothing: on failure every namespace made here is deleted again and
/// the error names the one that failed.
pub fn create_many(
    names: &[String],
    inside: impl Fn(usize) -> std::io::Result<()> + Sync,
) -> Result<Vec<Namespace>> {
    validate_names(names)?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let dir = prepare_run_dir(&format!("creating netns '{}'", names[0]))?;
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    for (i, path) in paths.iter().enumerate() {
        let made = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path);
        if let Err(e) = made {
            for p in &paths[..i] {
                let _ = fs::remove_file(p);
            }
            let name = &names[i];
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists {
                    object: Object::netns(name.as_str()),
                    place: None,
                }
            } else {
                Error::io(format!("creating netns '{name}'"), e)
            });
        }
    }
    // Ok(n): all n made; Err((i, cause)): the first i were made, i failed.
    let made = std::thread::scope(|s| {
        s.spawn(|| -> std::result::Result<(), (usize, Error)> {
            let none: Option<&str> = None;
            let mut progress =
                crate::progress::Progress::counted("creating namespaces", paths.len());
            for (i, path) in paths.iter().enumerate() {
                progress.set(i);
                let what = || format!("creating netns '{}'", names[i]);
                unshare(CloneFlags::CLONE_NEWNET).map_err(|e| (i, Error::kernel(what(), e)))?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    Some("none"),
                    MsFlags::MS_BIND,
                    none,
                )
                .map_err(|e| (i, Error::kernel(what(), e)))?;
                inside(i).map_err(|e| (i + 1, Error::io(what(), e)))?;
            }
            Ok(())
        })
        .join()
        .unwrap_or(Err((
            0,
            Error::Internal("the namespace helper thread panicked".into()),
        )))
    });
    if let Err((i, e)) = made {
        for name in &names[..i] {
            let _ = delete(name);
        }
        for p in &paths[i..] {
            let _ = umount2(p, MntFlags::MNT_DETACH);
            let _ = fs::remove_file(p);
        }
        return Err(e);
    }
    names.iter().map(|n| Namespace::netns(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_file_names_of_at_most_255_bytes() {
        assert!(validate_name("client").is_ok());
        assert!(validate_name("-dash").is_ok());
        assert!(validate_name(&"n".repeat(255)).is_ok());
        let e = validate_name(&"n".repeat(256)).unwrap_err().to_string();
        assert!(e.contains("256 bytes") && e.contains("255"), "{e}");
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(
                matches!(validate_name(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_an_empty_unmounted_regular_file_is_waited_for() {
        let dir = std::env::temp_dir().join(format!("koko-named-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        fs::write(&empty, b"").unwrap();
        let full = dir.join("full");
        fs::write(&full, b"x").unwrap();
        assert!(is_unmounted_placeholder(&empty));
        assert!(!is_unmounted_placeholder(&full), "a non-empty file");
        assert!(!is_unmounted_placeholder(&dir), "a directory");
        assert!(!is_unmounted_placeholder(&dir.join("absent")), "nothing");
        // /proc/self/ns/net is a namespace: never waited for.
        assert!(!is_unmounted_placeholder(Path::new("/proc/self/ns/net")));
        let start = std::time::Instant::now();
        await_mount(&full);
        assert!(start.elapsed() < MOUNT_WAIT);
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! Network namespaces: how koko names them, finds them and (briefly) enters them.
//!
//! A Linux network namespace is a separate copy of the network stack: its own
//! links, addresses, routes and firewall. A namespace has no name of its own;
//! it is reached through a file that refers to it:
//!
//! * `/proc/PID/ns/net` for any process (a container's init process, say);
//! * `/run/netns/NAME`, a bind mount of such a file that `ip netns add` makes
//!   so the namespace outlives every process (a "named" namespace);
//! * any other bind mount or magic link a user points us at.
//!
//! A namespace lives as long as something refers to it: a process, a bind
//! mount, or an open file descriptor or socket. That last point matters: an
//! fd koko keeps open would keep a deleted namespace (and its veth ends)
//! alive. So [`Namespace`] stores only the *path* and the namespace's
//! identity; it opens the file when work needs it ([`Namespace::open`]) and
//! the caller drops the fd when the work is done.
//!
//! koko never runs work "inside" a namespace. The only thing that happens in
//! a foreign namespace is the creation of a socket or the opening of a file,
//! in a short window guarded by [`NetnsGuard`], which always brings the thread
//! home again (on `?` and on panic). A netlink socket stays bound to the
//! namespace it was created in, so everything after that runs at home.

pub mod cri;
pub mod docker;
pub mod named;

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

use crate::error::{Error, Object, Result};

/// The directory where `ip netns` keeps its bind mounts.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// How the user named a namespace, before it was looked up: the typed form of
/// a CLI endpoint's first field or of a script's `netns("x")` / `pid(42)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsSpec {
    /// An `ip netns` name (`/run/netns/NAME`).
    Netns(String),
    /// The network namespace of a process.
    Pid(u32),
    /// A namespace file, e.g. `/proc/1/ns/net` or `/var/run/netns/x`.
    Path(PathBuf),
    /// koko's own namespace.
    Current,
    /// A Docker (or Podman) container, by name or id.
    Docker(String),
    /// A CRI (containerd, CRI-O) container or pod sandbox, by id or unique
    /// id prefix.
    Cri(String),
}

impl fmt::Display for NsSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsSpec::Netns(name) => write!(f, "netns '{name}'"),
            NsSpec::Pid(pid) => write!(f, "the namespace of pid {pid}"),
            NsSpec::Path(path) => write!(f, "namespace file {}", path.display()),
            NsSpec::Current => write!(f, "koko's own namespace"),
            NsSpec::Docker(name) => write!(f, "container '{name}'"),
            NsSpec::Cri(name) => write!(f, "CRI id '{name}'"),
        }
    }
}

/// What kind of thing a namespace belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsKind {
    Netns,
    Pid,
    Path,
    Host,
    Docker,
    /// A CRI container or pod sandbox (containerd, CRI-O).
    Cri,
}

impl NsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NsKind::Netns => "netns",
            NsKind::Pid => "pid",
            NsKind::Path => "path",
            NsKind::Host => "host",
            NsKind::Docker => "docker",
            NsKind::Cri => "cri",
        }
    }
}

/// The identity of a namespace: the (device, inode) pair of its nsfs file.
/// Two paths refer to the same namespace exactly when their ids are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

/// A handle on a network namespace that exists. Cheap to clone; holds no fd.
///
/// It serialises (for a run's journal on disk) with its identity: a
/// handle read back by another process refers to the very namespace that
/// was looked up, and [`Namespace::open`] / [`Namespace::exists`] refuse
/// whatever its path refers to now if that is another one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Namespace {
    kind: NsKind,
    name: String,
    path: PathBuf,
    id: NsId,
}

impl Namespace {
    /// Look up a namespace the user named. Docker (and Podman) containers
    /// are resolved through the engine ([`docker`]), CRI ids through the
    /// runtime ([`cri`]).
    pub fn resolve(spec: &NsSpec) -> Result<Namespace> {
        match spec {
            NsSpec::Netns(name) => Namespace::netns(name),
            NsSpec::Pid(pid) => Namespace::pid(*pid),
            NsSpec::Path(path) => Namespace::path(path),
            NsSpec::Current => Namespace::current(),
            NsSpec::Docker(name) => docker::resolve(name),
            NsSpec::Cri(id) => cri::resolve(id),
        }
    }

    /// An existing `ip netns` namespace.
    pub fn netns(name: &str) -> Result<Namespace> {
        named::validate_name(name)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        // Another process may be half-way through making (or removing) it.
        named::await_mount(&path);
        let id = identify(&path).map_err(|cause| {
            Error::namespace_not_found(
                Object::netns(name),
                cause.unwrap_or_else(|| format!("does not exist (no {})", path.display())),
            )
        })?;
        Ok(Namespace {
            kind: NsKind::Netns,
            name: name.to_string(),
            path,
            id,
        })
    }

    /// The network namespace of process `pid`.
    pub fn pid(pid: u32) -> Result<Namespace> {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let id = identify(&path).map_err(|cause| {
            Error::namespace_not_found(
                Object::new("pid", pid.to_string()),
                cause.unwrap_or_else(|| "no such process".to_string()),
            )
        })?;
        Ok(Namespace {
            kind: NsKind::Pid,
            name: pid.to_string(),
            path,
            id,
        })
    }

    /// A namespace file given by path (an nsfs magic link or bind mount).
    pub fn path(path: &Path) -> Result<Namespace> {
        named::await_mount(path);
        let id = identify(path).map_err(|cause| {
            Error::namespace_not_found(
                Object::new("path", path.display().to_string()),
                cause.unwrap_or_else(|| "does not exist".to_string()),
            )
        })?;
        Ok(Namespace {
            kind: NsKind::Path,
            name: path.display().to_string(),
            path: path.to_path_buf(),
            id,
        })
    }

    /// koko's own network namespace (the one its main thread lives in).
    pub fn current() -> Result<Namespace> {
        // /proc/thread-self, not /proc/self: the latter names the thread
        // group leader, which is not necessarily the thread asking.
        let path = PathBuf::from("/proc/thread-self/ns/net");
        let id = identify(&path).map_err(|cause| {
            Error::namespace_not_found(
                Object::new("host", ""),
                cause.unwrap_or_else(|| "cannot be read".into()),
            )
        })?;
        // Keep a stable path that does not depend on which thread reads it.
        let stable = PathBuf::from(format!("/proc/{}/ns/net", std::process::id()));
        Ok(Namespace {
            kind: NsKind::Host,
            name: "host".into(),
            path: if identify(&stable).ok() == Some(id) {
                stable
            } else {
                path
            },
            id,
        })
    }

    /// Build a handle for a container's namespace once its runtime told us
    /// the pid (used by the container endpoint modules).
    pub fn for_container(kind: NsKind, name: &str, pid: u32) -> Result<Namespace> {
        let ns = Namespace::pid(pid)?;
        Ok(Namespace {
            kind,
            name: name.to_string(),
            ..ns
        })
    }

    /// The same namespace under another kind and name (a container
    /// runtime's namespace, found through its pid or path).
    pub fn relabel(self, kind: NsKind, name: &str) -> Namespace {
        Namespace {
            kind,
            name: name.to_string(),
            ..self
        }
    }

    pub fn kind(&self) -> NsKind {
        self.kind
    }

    /// The user's name for it: the netns name, the pid, the path, "host".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process whose namespace this is (pid and container namespaces).
    pub fn process(&self) -> Option<u32> {
        match self.kind {
            NsKind::Pid | NsKind::Docker | NsKind::Cri => self
                .path
                .strip_prefix("/proc")
                .ok()?
                .iter()
                .next()?
                .to_str()?
                .parse()
                .ok(),
            _ => None,
        }
    }

    pub fn file_path(&self) -> &Path {
        &self.path
    }

    pub fn id(&self) -> NsId {
        self.id
    }

    /// Open the namespace file. Hold the fd only while the work needs it: an
    /// open fd keeps the namespace alive. Fails if the path now refers to a
    /// different namespace than the one that was looked up (a recycled pid,
    /// a re-created netns): work must never land in the wrong place.
    pub fn open(&self) -> Result<OwnedFd> {
        let file = open_ns_file(&self.path).map_err(|e| {
            Error::namespace_not_found(Object::namespace(self), format!("is gone ({e})"))
        })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(self.to_string(), e))?;
        let id = NsId {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        if id != self.id {
            return Err(Error::namespace_not_found(
                Object::namespace(self),
                "is gone (its name now refers to another namespace)",
            ));
        }
        Ok(OwnedFd::from(file))
    }

    /// Still there? (Its file exists and refers to the same namespace.)
    /// One stat: the (device, inode) pair was checked to be a network
    /// namespace's when the handle was made, and no other file has it.
    /// Cheap enough to ask before every reuse of a cached socket.
    pub fn exists(&self) -> bool {
        std::fs::metadata(&self.path)
            .map(|m| NsId {
                dev: m.dev(),
                ino: m.ino(),
            })
            .ok()
            == Some(self.id)
    }
}

impl PartialEq for Namespace {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Namespace {}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            NsKind::Netns => write!(f, "netns '{}'", self.name),
            NsKind::Pid => write!(f, "the namespace of pid {}", self.name),
            NsKind::Path => write!(f, "namespace file {}", self.name),
            NsKind::Host => write!(f, "koko's own namespace"),
            NsKind::Docker => write!(f, "container '{}'", self.name),
            NsKind::Cri => write!(f, "CRI container '{}'", self.name),
        }
    }
}

/// Stat a namespace file and check that it is a network namespace.
/// `Err(None)` means "does not exist"; `Err(Some(cause))` anything else.
fn identify(path: &Path) -> std::result::Result<NsId, Option<String>> {
    let file = match open_ns_file(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(format!("cannot open {}: {e}", path.display()))),
    };
    let fs = nix::sys::statfs::fstatfs(file.as_fd())
        .map_err(|e| Some(format!("cannot inspect {}: {e}", path.display())))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(Some(format!(
            "{} is not a namespace file (is the namespace mounted there?)",
            path.display()
        )));
    }
    if ns_type(&file) != Some(libc::CLONE_NEWNET) {
        return Err(Some(format!(
            "{} is not a network namespace",
            path.display()
        )));
    }
    let meta = file
        .metadata()
        .map_err(|e| Some(format!("cannot inspect {}: {e}", path.display())))?;
    Ok(NsId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Open a file that should be a namespace file, without ever blocking.
///
/// Namespace files (nsfs inodes, and bind mounts of them) are regular
/// files. Anything else is refused before it is opened: opening a FIFO
/// for reading blocks until a writer comes (koko would hang forever), and
/// opening a device can have effects of its own. O_NONBLOCK covers the
/// race of a path replaced between the stat and the open.
fn open_ns_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let meta = std::fs::metadata(path)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {what}, not a namespace file"),
        ));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// The namespace type of an nsfs fd (ioctl NS_GET_NSTYPE).
fn ns_type(file: &File) -> Option<i32> {
    use std::os::fd::AsRawFd;
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703; // _IO(0xb7, 0x3)
                                                 // SAFETY: NS_GET_NSTYPE takes no argument and only returns an int.
    let ty = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    (ty >= 0).then_some(ty)
}

/// While alive, the current thread is in another network namespace; on drop
/// (normal return, `?`, or panic unwinding) it is back home.
///
/// Keep the window short and synchronous: create a socket or open a file,
/// then drop the guard. Never `.await` or spawn a thread inside it: a new
/// thread inherits the namespace, and an executor may run other work here.
pub struct NetnsGuard {
    home: OwnedFd,
}

impl NetnsGuard {
    pub fn enter(target: &OwnedFd) -> Result<NetnsGuard> {
        let home: OwnedFd = File::open("/proc/thread-self/ns/net")
            .map_err(|e| Error::io("reading koko's own namespace", e))?
            .into();
        setns(target, CloneFlags::CLONE_NEWNET).map_err(|errno| {
            if errno == nix::errno::Errno::EPERM {
                Error::NotPermitted(
                    "entering a network namespace needs root (CAP_SYS_ADMIN)".into(),
                )
            } else {
                Error::kernel("entering a network namespace", errno)
            }
        })?;
        Ok(NetnsGuard { home })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(errno) = setns(&self.home, CloneFlags::CLONE_NEWNET) {
            // A thread stranded in a foreign namespace would silently do the
            // rest of the run's work in the wrong place. Nothing is safer
            // than stopping here.
            eprintln!("koko: fatal: cannot return to its own network namespace: {errno}");
            std::process::abort();
        }
    }
}

/// Run `f` with the current thread inside namespace `ns`, and come back.
/// `f` must be short and synchronous (see [`NetnsGuard`]).
pub fn with_netns<T>(ns: &Namespace, f: impl FnOnce() -> T) -> Result<T> {
    let fd = ns.open()?;
    let _guard = NetnsGuard::enter(&fd)?;
    Ok(f())
}

/// Whether this process has what koko needs to change namespaces:
/// CAP_NET_ADMIN (links, addresses) and CAP_SYS_ADMIN (setns, mounts).
pub fn check_privileges() -> Result<()> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("reading /proc/self/status", e))?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ]
    .iter()
    .filter(|(bit, _)| eff & (1u64 << bit) == 0)
    .map(|(_, name)| *name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotPermitted(format!(
            "koko must run as root: it needs {} to change network namespaces (try sudo)",
            missing.join(" and ")
        )))
    }
}

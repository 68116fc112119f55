//! koko's typed errors.
//!
//! Every error names the object it is about (a namespace, a link, an
//! address), the place it was looked for or acted in, and the cause, each
//! as its own field: the binary prints them as one sentence, `--json` and
//! scripts that catch errors get them separately. The kernel's errno is
//! translated where it is caught, because only there do we know what was
//! being attempted.
//!
//! Exit codes ([`Error::exit_code`]): 2 when the request itself is wrong
//! ([`Error::Invalid`], [`Error::NotSupported`]) and nothing was attempted;
//! 1 for everything else, a valid request that could not be carried out —
//! including an object that already exists or does not exist, which depends
//! on the state of the machine, not on what was typed.

use std::fmt;

use nix::errno::Errno;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an error is about: a kind of object and its name, e.g. link
/// `eth1`, netns `client`, address `10.0.1.1/24`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Object {
    /// "link", "netns", "container", "namespace", "address", "route",
    /// "sysctl", "module", ...
    pub kind: &'static str,
    pub name: String,
}

impl Object {
    pub fn new(kind: &'static str, name: impl Into<String>) -> Object {
        Object {
            kind,
            name: name.into(),
        }
    }

    pub fn link(name: impl Into<String>) -> Object {
        Object::new("link", name)
    }

    pub fn netns(name: impl Into<String>) -> Object {
        Object::new("netns", name)
    }

    pub fn address(cidr: impl fmt::Display) -> Object {
        Object::new("address", cidr.to_string())
    }

    pub fn sysctl(key: impl Into<String>) -> Object {
        Object::new("sysctl", key)
    }

    /// A namespace handle as an object; its kind says which sort of place it
    /// is ("netns", "container", "pid", "path", "host").
    pub fn namespace(ns: &crate::ns::Namespace) -> Object {
        let kind = match ns.kind() {
            crate::ns::NsKind::Docker => "container",
            other => other.as_str(),
        };
        Object::new(kind, ns.name())
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            "pid" => write!(f, "the namespace of pid {}", self.name),
            "path" => write!(f, "namespace file {}", self.name),
            "host" => write!(f, "koko's own namespace"),
            "address" | "route" => write!(f, "{} {}", self.kind, self.name),
            kind => write!(f, "{kind} '{}'", self.name),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (bad syntax, bad value, conflicting
    /// options). Nothing was attempted. Exit 2.
    #[error("{0}")]
    Invalid(String),

    /// A feature koko (or this build) does not offer. Exit 2.
    #[error("{0}")]
    NotSupported(String),

    /// koko lacks the privileges it needs.
    #[error("{0}")]
    NotPermitted(String),

    /// An object that is not where it was looked for (`place`, e.g. the
    /// namespace of a link), or that could not be opened (`cause`).
    #[error("{}", not_found_text(object, place.as_deref(), cause.as_deref()))]
    NotFound {
        object: Object,
        place: Option<String>,
        cause: Option<String>,
    },

    /// An object that already exists where koko was asked to create it.
    #[error("{object} already exists{}", place.as_ref().map(|p| format!(" in {p}")).unwrap_or_default())]
    Exists {
        object: Object,
        place: Option<String>,
    },

    /// What this kernel cannot do (a missing module or config option).
    #[error("{what}: this kernel has no {feature}")]
    KernelFeature { what: String, feature: String },

    /// The kernel refused a request; `what` says what was being attempted.
    #[error("{what}: {cause}")]
    Kernel {
        what: String,
        cause: String,
        errno: Option<Errno>,
    },

    /// A container engine (Docker, Podman) that could not be reached, or
    /// refused a request; also a malformed `DOCKER_HOST`.
    #[error("{what}: {cause}")]
    Engine { what: String, cause: String },

    /// A probe whose peer answered, but not as hoped (an HTTP error status).
    #[error("{what}: {cause}")]
    Probe { what: String, cause: String },

    /// Undoing a run's work failed for some steps; each is listed.
    #[error("undo left {} step(s) behind: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Undo(Vec<Error>),

    /// A failure inside koko itself (a helper thread that panicked): a bug.
    #[error("internal error: {0}")]
    Internal(String),

    /// A stop signal (SIGINT, SIGTERM, SIGHUP) arrived: the run stopped
    /// where it was and its work is undone (unless `--keep`). Exit 128 +
    /// the signal's number, as a shell reports a process the signal killed.
    #[error("interrupted by {}", crate::interrupt::describe(*signal))]
    Interrupted { signal: nix::sys::signal::Signal },

    /// A limit of the run was reached (`limit` names it: "memory",
    /// "exec output"); the run stopped and its work is undone.
    #[error("{what}: over the {limit} limit ({cause})")]
    Limit {
        limit: &'static str,
        what: String,
        cause: String,
    },

    /// A file-system or other I/O failure while doing `what`.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn not_found_text(object: &Object, place: Option<&str>, cause: Option<&str>) -> String {
    match (place, cause) {
        (Some(place), None) => format!("no {object} in {place}"),
        (Some(place), Some(cause)) => format!("no {object} in {place}: {cause}"),
        (None, Some(cause)) => format!("{object}: {cause}"),
        (None, None) => format!("{object} does not exist"),
    }
}

impl Error {
    /// The process exit code for this error: 2 for a wrong request, 1 for a
    /// valid request that could not be carried out.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::NotSupported(_) => 2,
            Error::Interrupted { signal } => 128 + *signal as i32,
            _ => 1,
        }
    }

    /// A short, stable name for the kind of error (used by `--json` and by
    /// scripts that catch errors).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::NotSupported(_) => "not_supported",
            Error::NotPermitted(_) => "not_permitted",
            Error::NotFound { .. } => "not_found",
            Error::Exists { .. } => "exists",
            Error::KernelFeature { .. } => "kernel_feature",
            Error::Kernel { .. } => "kernel",
            Error::Engine { .. } => "engine",
            Error::Probe { .. } => "probe",
            Error::Undo(_) => "undo",
            Error::Internal(_) => "internal",
            Error::Interrupted { .. } => "interrupted",
            Error::Limit { .. } => "limit",
            Error::Io { .. } => "io",
        }
    }

    /// No link `name` in namespace `ns`.
    pub fn link_not_found(name: impl Into<String>, ns: impl fmt::Display) -> Error {
        Error::NotFound {
            object: Object::link(name),
            place: Some(ns.to_string()),
            cause: None,
        }
    }

    /// Link `name` is already taken in namespace `ns`.
    pub fn link_exists(name: impl Into<String>, ns: impl fmt::Display) -> Error {
        Error::Exists {
            object: Object::link(name),
            place: Some(ns.to_string()),
        }
    }

    /// A namespace that cannot be found or opened, and why.
    pub fn namespace_not_found(object: Object, cause: impl Into<String>) -> Error {
        Error::NotFound {
            object,
            place: None,
            cause: Some(cause.into()),
        }
    }

    /// Is this "the object is not there" about a link?
    pub fn is_link_not_found(&self) -> bool {
        matches!(self, Error::NotFound { object, .. } if object.kind == "link")
    }

    /// Is this "the object is not there" about a namespace (of any sort)?
    pub fn is_namespace_not_found(&self) -> bool {
        matches!(self, Error::NotFound { object, .. }
            if matches!(object.kind, "netns" | "container" | "pid" | "path" | "host" | "namespace"))
    }

    /// The error's fields as JSON: `kind`, `message`, `exit_code`, and where
    /// known `object` (`{kind, name}`), `place`, `cause`, `errno`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "kind": self.kind(),
            "message": self.to_string(),
            "exit_code": self.exit_code(),
        });
        let fields = v.as_object_mut().expect("an object");
        match self {
            Error::NotFound {
                object,
                place,
                cause,
            } => {
                fields.insert("object".into(), serde_json::json!(object));
                if let Some(p) = place {
                    fields.insert("place".into(), p.clone().into());
                }
                if let Some(c) = cause {
                    fields.insert("cause".into(), c.clone().into());
                }
            }
            Error::Exists { object, place } => {
                fields.insert("object".into(), serde_json::json!(object));
                if let Some(p) = place {
                    fields.insert("place".into(), p.clone().into());
                }
            }
            Error::Kernel { what, cause, errno } => {
                fields.insert("what".into(), what.clone().into());
                fields.insert("cause".into(), cause.clone().into());
                if let Some(e) = errno {
                    fields.insert("errno".into(), format!("{e}").into());
                }
            }
            Error::KernelFeature { what, feature } => {
                fields.insert("what".into(), what.clone().into());
                fields.insert("feature".into(), feature.clone().into());
            }
            Error::Engine { what, cause } | Error::Probe { what, cause } => {
                fields.insert("what".into(), what.clone().into());
                fields.insert("cause".into(), cause.clone().into());
            }
            Error::Interrupted { signal } => {
                fields.insert("signal".into(), signal.as_str().into());
            }
            Error::Limit { limit, what, cause } => {
                fields.insert("limit".into(), (*limit).into());
                fields.insert("what".into(), what.clone().into());
                fields.insert("cause".into(), cause.clone().into());
            }
            Error::Undo(errors) => {
                let list: Vec<_> = errors.iter().map(Error::to_json).collect();
                fields.insert("errors".into(), list.into());
            }
            _ => {}
        }
        v
    }

    /// A kernel refusal of `what`, with the errno explained in words.
    pub fn kernel(what: impl Into<String>, errno: Errno) -> Error {
        Error::Kernel {
            what: what.into(),
            cause: explain_errno(errno),
            errno: Some(errno),
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// Did a stop signal end the work (see [`crate::interrupt`])?
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Error::Interrupted { .. })
    }

    /// The errno behind a kernel refusal, if this is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { errno, .. } => *errno,
            Error::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }
}

/// The kernel's errno in words, phrased for networking requests.
pub fn explain_errno(errno: Errno) -> String {
    let words = match errno {
        Errno::EPERM | Errno::EACCES => "permission denied (koko must run as root)",
        Errno::EEXIST => "already exists",
        Errno::ENODEV => "no such device",
        Errno::ENOENT => "not found",
        Errno::ESRCH => "no such process or route",
        Errno::EADDRNOTAVAIL => "address not available on this link",
        Errno::ENETUNREACH => "network is unreachable",
        Errno::EOPNOTSUPP => "operation not supported by this kernel or device",
        Errno::EINVAL => "invalid argument (the kernel rejected the request)",
        Errno::ERANGE => "value out of range",
        Errno::EBUSY => "device or resource busy",
        Errno::ENOBUFS | Errno::ENOMEM => "out of kernel memory",
        Errno::EAFNOSUPPORT => "address family not supported (is IPv6 disabled?)",
        _ => return format!("{} ({})", errno.desc().to_lowercase(), errno),
    };
    format!("{words} ({errno})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exists_and_not_found_are_exit_1_usage_is_exit_2() {
        assert_eq!(Error::link_exists("a", "netns 'x'").exit_code(), 1);
        assert_eq!(Error::link_not_found("a", "netns 'x'").exit_code(), 1);
        assert_eq!(
            Error::Exists {
                object: Object::netns("x"),
                place: None
            }
            .exit_code(),
            1
        );
        assert_eq!(Error::Invalid("bad".into()).exit_code(), 2);
        assert_eq!(Error::Internal("x".into()).exit_code(), 1);
    }

    #[test]
    fn messages_name_object_place_and_cause() {
        assert_eq!(
            Error::link_not_found("eth1", "netns 'a'").to_string(),
            "no link 'eth1' in netns 'a'"
        );
        assert_eq!(
            Error::link_exists("eth1", "netns 'a'").to_string(),
            "link 'eth1' already exists in netns 'a'"
        );
        assert_eq!(
            Error::Exists {
                object: Object::netns("a"),
                place: None
            }
            .to_string(),
            "netns 'a' already exists"
        );
        assert_eq!(
            Error::namespace_not_found(Object::netns("a"), "does not exist").to_string(),
            "netns 'a': does not exist"
        );
        assert_eq!(
            Error::namespace_not_found(Object::new("pid", "42"), "no such process").to_string(),
            "the namespace of pid 42: no such process"
        );
    }

    #[test]
    fn json_carries_fields() {
        let j = Error::link_not_found("eth1", "netns 'a'").to_json();
        assert_eq!(j["kind"], "not_found");
        assert_eq!(j["object"]["kind"], "link");
        assert_eq!(j["object"]["name"], "eth1");
        assert_eq!(j["place"], "netns 'a'");
        assert_eq!(j["exit_code"], 1);
        assert!(!Error::link_exists("x", "y").is_link_not_found());
        assert!(Error::link_not_found("x", "y").is_link_not_found());
        assert!(Error::namespace_not_found(Object::netns("a"), "gone").is_namespace_not_found());
    }
}

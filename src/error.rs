//! koko's typed errors.
//!
//! Every error names the object it is about (a namespace, a link, an
//! address) and the cause, in words a user understands: the kernel's errno is
//! translated where it is caught, because only there do we know what was being
//! attempted. The binary maps errors to exit codes with [`Error::exit_code`]:
//! 2 when the request itself is wrong, 1 when a valid request could not be
//! carried out.

use nix::errno::Errno;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong (bad syntax, bad value, conflicting
    /// options). Nothing was attempted.
    #[error("{0}")]
    Invalid(String),

    /// A feature koko (or this build) does not offer.
    #[error("{0}")]
    NotSupported(String),

    /// koko lacks the privileges it needs.
    #[error("{0}")]
    NotPermitted(String),

    /// A namespace that could not be found or opened.
    #[error("{ns}: {cause}")]
    NamespaceNotFound { ns: String, cause: String },

    /// A link that is not where it was looked for.
    #[error("no link '{link}' in {ns}")]
    LinkNotFound { link: String, ns: String },

    /// A link name that is already taken in its target namespace.
    #[error("link '{link}' already exists in {ns}")]
    LinkExists { link: String, ns: String },

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

    /// A file-system or other I/O failure while doing `what`.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error: 2 for a wrong request, 1 for a
    /// valid request that could not be carried out.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::NotSupported(_) => 2,
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
            Error::NamespaceNotFound { .. } => "namespace_not_found",
            Error::LinkNotFound { .. } => "link_not_found",
            Error::LinkExists { .. } => "link_exists",
            Error::KernelFeature { .. } => "kernel_feature",
            Error::Kernel { .. } => "kernel",
            Error::Engine { .. } => "engine",
            Error::Io { .. } => "io",
        }
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

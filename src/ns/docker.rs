//! Docker and Podman containers as endpoints.
//!
//! A container's network namespace is the namespace of its init process. The
//! engine knows that process: `GET /containers/NAME/json` answers with
//! `State.Pid`, and `/proc/PID/ns/net` is the namespace. koko asks the engine
//! once, while it resolves an endpoint, and from then on works with an
//! ordinary [`Namespace`] handle (which holds no fd; see [`super`]).
//!
//! Why the pid and not `NetworkSettings.SandboxKey` (a path under
//! /var/run/docker/netns): dockerd may live in another mount namespace than
//! koko, and Podman has no such file at all. `/proc/PID/ns/net` is the same
//! for every engine, as long as koko sees the engine's pid namespace.
//!
//! The engine is found as the docker CLI finds it: `DOCKER_HOST`
//! (`unix:///path` or `tcp://host:port`), else `unix:///var/run/docker.sock`.
//! Podman serves the same API (`podman system service`), so
//! `DOCKER_HOST=unix:///run/podman/podman.sock koko -d ...` works with Podman
//! containers.
//!
//! Engines speak different API versions (Debian 12's dockerd speaks 1.41,
//! Podman 4 speaks 1.41, bollard asks for 1.53 by default), so every
//! connection negotiates the version first. Every request has a short time
//! limit: an engine that is not there must be reported at once, not after a
//! client library's two-minute default.
//!
//! The engine client is async (hyper). A run talks to the engine through
//! one [`Engine`] that its [`crate::net::Session`] makes on first use and
//! keeps (one connection, one version negotiation, the session's runtime).
//! The free functions ([`resolve`], [`kill`], ...) are for one-off callers
//! without a session: each runs on a small current-thread runtime of its
//! own (on a helper thread when the caller is itself inside a runtime, since
//! runtimes must not nest).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptions, ListContainersOptions, StopContainerOptions,
    WaitContainerOptions,
};
use bollard::Docker;

use crate::error::{Error, Object, Result};
use crate::ns::{Namespace, NsKind};

/// Where the engine listens when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long the first contact (version negotiation) may take. An engine that
/// is not running is noticed at once (no socket, or connection refused); this
/// bounds the case of an engine that accepts connections but does not answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one request after the first contact may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The address of a container engine's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineHost {
    /// A unix socket (`unix:///var/run/docker.sock`).
    Unix(PathBuf),
    /// Plain HTTP over TCP (`tcp://host:port` or `http://host:port`).
    Tcp(String),
}

impl fmt::Display for EngineHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineHost::Unix(path) => write!(f, "unix://{}", path.display()),
            EngineHost::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

impl EngineHost {
    /// The engine named by `DOCKER_HOST`, or the default socket.
    pub fn from_env() -> Result<EngineHost> {
        match std::env::var("DOCKER_HOST") {
            Ok(v) if !v.trim().is_empty() => EngineHost::parse(&v),
            _ => EngineHost::parse(DEFAULT_HOST),
        }
    }

    /// Parse a `DOCKER_HOST` value. A malformed one is an engine error (exit
    /// 1): the request on the command line is fine, the environment is not.
    pub fn parse(value: &str) -> Result<EngineHost> {
        let bad = |why: &str| Error::Engine {
            what: format!("DOCKER_HOST={value:?}"),
            cause: format!(
                "{why} (expected unix:///path/to/socket or tcp://host:port, \
                 e.g. unix:///var/run/docker.sock, or unix:///run/podman/podman.sock for Podman)"
            ),
        };
        if let Some(path) = value.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("the socket path must be absolute"));
            }
            return Ok(EngineHost::Unix(PathBuf::from(path)));
        }
        let rest = value
            .strip_prefix("tcp://")
            .or_else(|| value.strip_prefix("http://"));
        if let Some(rest) = rest {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            let valid = !authority.is_empty()
                && !authority.contains('/')
                && !authority
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
                && authority.parse::<http_authority::Authority>().is_ok();
            if !valid {
                return Err(bad("not a host:port address"));
            }
            return Ok(EngineHost::Tcp(authority.to_string()));
        }
        match value.split_once("://") {
            Some((scheme, _)) => Err(bad(&format!(
                "koko talks to container engines over unix:// and tcp:// only, not {scheme}://"
            ))),
            None => Err(bad("no scheme")),
        }
    }
}

/// A tiny `host:port` check, so a malformed address is reported up front
/// instead of as an obscure URI error on the first request.
mod http_authority {
    pub struct Authority;

    impl std::str::FromStr for Authority {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let (host, port) = if let Some(rest) = s.strip_prefix('[') {
                let (host, rest) = rest.split_once(']').ok_or(())?;
                host.parse::<std::net::Ipv6Addr>().map_err(|_| ())?;
                (host, rest.strip_prefix(':').ok_or(())?)
            } else {
                s.rsplit_once(':').ok_or(())?
            };
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
            if host_ok && port.parse::<u16>().is_ok() {
                Ok(Authority)
            } else {
                Err(())
            }
        }
    }
}

/// What koko needs to know about a running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The full id.
    pub id: String,
    /// The engine's name for it (without the leading '/').
    pub name: String,
    /// Its init process, in koko's pid namespace.
    pub pid: u32,
}

/// A connection to one container engine: connected and version-negotiated
/// once, then reused for every request. A [`crate::net::Session`] keeps one
/// for a whole run (made on first use), so a script that resolves, watches
/// and kills many containers talks to one client on one runtime.
pub struct Engine {
    docker: Docker,
    host: EngineHost,
}

impl Engine {
    /// Connect to the engine named by `DOCKER_HOST` (or the default socket)
    /// and agree on an API version. `for_container` only names, in an
    /// error, the container this connection was first wanted for.
    pub async fn connect(for_container: &str) -> Result<Engine> {
        let host = EngineHost::from_env()?;
        let docker = connect(&host, for_container).await?;
        Ok(Engine { docker, host })
    }

    /// Connect to the engine at `host` (whatever `DOCKER_HOST` says), for
    /// callers that consult several engines (`koko graph`).
    pub async fn connect_to(host: EngineHost) -> Result<Engine> {
        let docker = connect(&host, "(every running container)").await?;
        Ok(Engine { docker, host })
    }

    /// Where this engine listens.
    pub fn host(&self) -> &EngineHost {
        &self.host
    }

    /// Every running container with a network namespace of its own (those
    /// on the host's network, or that stopped while koko looked, are left
    /// out), in the engine's order.
    pub async fn running(&self) -> Result<Vec<Container>> {
        let what = "(every running container)";
        let listed = timed(
            &self.host,
            what,
            self.docker.list_containers(None::<ListContainersOptions>),
        )
        .await?
        .map_err(|e| engine_error(&self.host, what, e))?;
        let mut out = Vec::new();
        for summary in listed {
            let Some(id) = summary.id else { continue };
            if let Ok(container) = self.inspect(&id).await {
                out.push(container);
            }
        }
        Ok(out)
    }

    /// Look up a running container (by name, full id or unique id prefix)
    /// and return a handle on its network namespace.
    pub async fn resolve(&self, name: &str) -> Result<Namespace> {
        let container = self.inspect(name).await?;
        let ns = Namespace::for_container(NsKind::Docker, name, container.pid).map_err(|e| {
            match e {
                // The process went away between the engine's answer and our look.
                e if e.is_namespace_not_found() => Error::namespace_not_found(
                    Object::new("container", name),
                    "is not running (it stopped while koko was looking it up)",
                ),
                other => other,
            }
        })?;
        // `--network host` (directly or through `container:X`) is refused in
        // `inspect`. Belt and braces, where /proc/1 is readable: a container
        // in the namespace of this machine's init is on the host network,
        // whatever words its engine uses for that.
        if Namespace::pid(1).is_ok_and(|init| init == ns) {
            return Err(Error::Invalid(format!(
                "container '{name}' shares the host's network namespace: koko refuses to add \
                 links to it, it would wire the host's own network"
            )));
        }
        Ok(ns)
    }

    /// Ask the engine about a container; it must be running and must have a
    /// network namespace of its own.
    pub async fn inspect(&self, name: &str) -> Result<Container> {
        let name = validate_name(name)?;
        let (docker, host) = (&self.docker, &self.host);
        let what = || format!("container '{name}'");
        let info = timed(
            host,
            name,
            docker.inspect_container(name, None::<InspectContainerOptions>),
        )
        .await?
        .map_err(|e| engine_error(host, name, e))?;
        let state = info.state.unwrap_or_default();
        let pid = state.pid.unwrap_or(0);
        if state.running != Some(true) || pid <= 0 {
            let status = state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into());
            return Err(Error::namespace_not_found(
                Object::new("container", name),
                format!("is not running (status: {status}); start it first"),
            ));
        }
        let mut mode = info
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default();
        if mode == "host" {
            return Err(Error::Invalid(format!(
                "container '{name}' uses the host's network (--network host): koko refuses to \
                 add links to it, it would wire the host's own network"
            )));
        }
        // `--network container:X` shares X's namespace: follow the chain (a
        // few steps; the engine refuses cycles) to see whether it ends on
        // the host's network.
        for _ in 0..8 {
            let Some(other) = mode.strip_prefix("container:").map(str::to_string) else {
                break;
            };
            let Ok(Ok(shared)) = tokio::time::timeout(
                REQUEST_TIMEOUT,
                docker.inspect_container(&other, None::<InspectContainerOptions>),
            )
            .await
            else {
                break;
            };
            mode = shared
                .host_config
                .and_then(|h| h.network_mode)
                .unwrap_or_default();
            if mode == "host" {
                return Err(Error::Invalid(format!(
                    "container '{name}' shares the network of container '{other}', which uses \
                     the host's network: koko refuses to add links to it, it would wire the \
                     host's own network"
                )));
            }
        }
        let pid = u32::try_from(pid).map_err(|_| Error::Engine {
            what: what(),
            cause: format!("the engine reported an impossible pid {pid}"),
        })?;
        Ok(Container {
            id: info.id.unwrap_or_default(),
            name: info
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            pid,
        })
    }

    /// Kill a container (SIGKILL, like `docker kill`) and return once the
    /// engine reports it stopped: its namespace, and every link end in it,
    /// goes away with it. For scripts that rehearse failures.
    pub async fn kill(&self, name: &str) -> Result<()> {
        let name = validate_name(name)?;
        let opts = KillContainerOptions {
            signal: "SIGKILL".into(),
        };
        timed(
            &self.host,
            name,
            self.docker.kill_container(name, Some(opts)),
        )
        .await?
        .map_err(|e| engine_error(&self.host, name, e))?;
        // The engine answers once the signal is sent; its wait endpoint
        // answers once the container is no longer running (at once if it
        // already is not).
        self.wait_stopped(name, REQUEST_TIMEOUT, "killing").await
    }

    /// Stop a container like `docker stop`: SIGTERM, then SIGKILL after
    /// `grace`. Returns once it has stopped.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<()> {
        let name = validate_name(name)?;
        let opts = StopContainerOptions {
            signal: None,
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
        };
        tokio::time::timeout(
            grace + REQUEST_TIMEOUT,
            self.docker.stop_container(name, Some(opts)),
        )
        .await
        .map_err(|_| no_engine(&self.host, name, "no answer to the stop request".into()))?
        .map_err(|e| engine_error(&self.host, name, e))?;
        self.wait_stopped(name, REQUEST_TIMEOUT, "stopping").await
    }

    /// Wait (at most `limit`) until the engine says `name` is not running.
    async fn wait_stopped(&self, name: &str, limit: Duration, doing: &str) -> Result<()> {
        use futures::StreamExt;
        let opts = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut waiting = self.docker.wait_container(name, Some(opts));
        match tokio::time::timeout(limit, waiting.next()).await {
            Err(_) => Err(Error::Engine {
                what: format!("{doing} container '{name}'"),
                cause: format!("still running {} s later", limit.as_secs()),
            }),
            // A non-zero exit status (137 after SIGKILL) is reported by the
            // client as an error, but it is what we were waiting for.
            Ok(Some(Ok(_)))
            | Ok(Some(Err(BollardError::DockerContainerWaitError { .. })))
            | Ok(None) => Ok(()),
            Ok(Some(Err(e))) => Err(engine_error(&self.host, name, e)),
        }
    }
}

/// One container event from the engine's event stream (`GET /events`):
/// what happened (`start`, `die`, `destroy`; Podman says `died` and
/// `remove` too), to which container, and when (the engine's `timeNano`,
/// as ms since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEvent {
    pub action: String,
    pub id: String,
    pub name: String,
    pub time_ms: f64,
}

impl Engine {
    /// The engine's container events from `since_secs` (seconds since the
    /// epoch, with a fraction) on, as they happen. Events between
    /// `since_secs` and the moment the stream starts are replayed by the
    /// engine, so a caller that notes the time before it subscribes
    /// misses nothing. The stream never ends while the engine runs.
    pub fn container_events(
        &self,
        since_secs: f64,
    ) -> impl futures::Stream<Item = Result<ContainerEvent>> + '_ {
        use futures::StreamExt;
        let mut filters = std::collections::HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        let opts = bollard::query_parameters::EventsOptions {
            since: Some(format!("{since_secs:.9}")),
            until: None,
            filters: Some(filters),
        };
        self.docker.events(Some(opts)).map(move |item| {
            let ev = item.map_err(|e| engine_error(&self.host, "(events)", e))?;
            let actor = ev.actor.unwrap_or_default();
            let name = actor
                .attributes
                .as_ref()
                .and_then(|a| a.get("name").cloned())
                .unwrap_or_default();
            let time_ms = match (ev.time_nano, ev.time) {
                (Some(ns), _) if ns > 0 => ns as f64 / 1e6,
                (_, Some(s)) => s as f64 * 1000.0,
                _ => 0.0,
            };
            Ok(ContainerEvent {
                action: ev.action.unwrap_or_default(),
                id: actor.id.unwrap_or_default(),
                name,
                time_ms,
            })
        })
    }
}

/// Look up a running container with a client of its own (for one-off use;
/// a run resolves through its [`crate::net::Session`], which reuses one).
pub fn resolve(name: &str) -> Result<Namespace> {
    run(async { Engine::connect(name).await?.resolve(name).await })
}

/// The names of the running containers (for shell completion): one short
/// request; an engine that is absent or slow gives an error the caller may
/// ignore.
pub fn running_names() -> Result<Vec<String>> {
    run(async {
        let engine = Engine::connect("(any)").await?;
        let list = engine
            .docker
            .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
            .await
            .map_err(|e| engine_error(&engine.host, "(any)", e))?;
        let mut names: Vec<String> = list
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        names.sort();
        Ok(names)
    })
}

/// [`Engine::inspect`] with a client of its own.
pub fn inspect(name: &str) -> Result<Container> {
    run(async { Engine::connect(name).await?.inspect(name).await })
}

/// [`Engine::kill`] with a client of its own.
pub fn kill(name: &str) -> Result<()> {
    run(async { Engine::connect(name).await?.kill(name).await })
}

/// [`Engine::stop`] with a client of its own.
pub fn stop(name: &str, grace: Duration) -> Result<()> {
    run(async { Engine::connect(name).await?.stop(name, grace).await })
}

/// Docker names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (a leading '/' is allowed,
/// as the engine prints them); ids are hex. Anything else would end up in a
/// URL path, so it is refused up front.
pub fn validate_name(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(bare)
    } else {
        Err(Error::Invalid(format!(
            "'{name}' is not a container name or id (names are letters, digits, '_', '.' and '-', \
             starting with a letter or digit)"
        )))
    }
}

/// Run `fut` to completion on a runtime of its own.
fn run<T: Send>(fut: impl std::future::Future<Output = Result<T>> + Send) -> Result<T> {
    let block = |fut| -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the container engine client", e))?;
        rt.block_on(fut)
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        // Called from async code: a runtime cannot block inside another, so
        // the request runs on a helper thread (which never enters a namespace).
        std::thread::scope(|s| {
            s.spawn(|| block(fut))
                .join()
                .expect("engine client thread panicked")
        })
    } else {
        block(fut)
    }
}

/// Connect to the engine and agree on an API version.
async fn connect(host: &EngineHost, name: &str) -> Result<Docker> {
    let secs = REQUEST_TIMEOUT.as_secs();
    let docker = match host {
        EngineHost::Unix(path) => Docker::connect_with_unix(
            &path.display().to_string(),
            secs,
            bollard::API_DEFAULT_VERSION,
        ),
        EngineHost::Tcp(addr) => {
            Docker::connect_with_http(&format!("tcp://{addr}"), secs, bollard::API_DEFAULT_VERSION)
        }
    }
    .map_err(|e| engine_error(host, name, e))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Ok(result) => result.map_err(|e| engine_error(host, name, e)),
        Err(_) => Err(no_engine(
            host,
            name,
            format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        )),
    }
}

async fn timed<T>(
    host: &EngineHost,
    name: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| {
            no_engine(
                host,
                name,
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            )
        })
}

fn no_engine(host: &EngineHost, name: &str, cause: String) -> Error {
    let hint = match host {
        EngineHost::Unix(_) => {
            "; is the engine running? Set DOCKER_HOST to use another one, \
             e.g. unix:///run/podman/podman.sock for Podman"
        }
        EngineHost::Tcp(_) => "; is the engine running and listening there?",
    };
    Error::Engine {
        what: format!("looking up container '{name}'"),
        cause: format!("cannot reach the container engine at {host}: {cause}{hint}"),
    }
}

/// The engine's or the transport's error, in words.
fn engine_error(host: &EngineHost, name: &str, e: BollardError) -> Error {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => Error::namespace_not_found(
            Object::new("container", name),
            format!("no such container (the engine at {host} does not know it)"),
        ),
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => Error::namespace_not_found(
            Object::new("container", name),
            format!("is not running ({})", message.trim()),
        ),
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => Error::Engine {
            what: format!("container '{name}'"),
            cause: format!(
                "the engine at {host} refused: {} (HTTP {status_code})",
                message.trim()
            ),
        },
        BollardError::SocketNotFoundError(_) => no_engine(host, name, "no such socket".into()),
        other => {
            // Transport failures: find the io::Error at the bottom (connection
            // refused, permission denied) and say that.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&other);
            while let Some(s) = source {
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    let cause = match io.kind() {
                        std::io::ErrorKind::NotFound => "no such socket".to_string(),
                        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                        std::io::ErrorKind::PermissionDenied => {
                            "permission denied (koko must run as root)".to_string()
                        }
                        _ => io.to_string(),
                    };
                    return no_engine(host, name, cause);
                }
                source = s.source();
            }
            no_engine(host, name, other.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_forms() {
        assert_eq!(
            EngineHost::parse("unix:///run/podman/podman.sock").unwrap(),
            EngineHost::Unix("/run/podman/podman.sock".into())
        );
        assert_eq!(
            EngineHost::parse("tcp://127.0.0.1:2375").unwrap(),
            EngineHost::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            EngineHost::parse("http://engine:2375/").unwrap(),
            EngineHost::Tcp("engine:2375".into())
        );
        assert_eq!(
            EngineHost::parse("tcp://[::1]:2375").unwrap(),
            EngineHost::Tcp("[::1]:2375".into())
        );
        assert_eq!(
            EngineHost::parse(DEFAULT_HOST).unwrap().to_string(),
            DEFAULT_HOST
        );
    }

    #[test]
    fn malformed_docker_host_is_an_engine_error() {
        for bad in [
            "/var/run/docker.sock",
            "unix://relative.sock",
            "tcp://",
            "tcp://host",
            "tcp://a b:1",
            "tcp://h:99999",
            "ssh://me@box",
            "npipe:////./pipe/docker_engine",
        ] {
            let e = EngineHost::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 1, "{bad}: {e}");
            assert!(e.to_string().contains("DOCKER_HOST"), "{bad}: {e}");
        }
    }

    #[test]
    fn container_names() {
        assert_eq!(validate_name("centos1").unwrap(), "centos1");
        assert_eq!(validate_name("/web_1.x-y").unwrap(), "web_1.x-y");
        assert_eq!(validate_name("4f2a9c").unwrap(), "4f2a9c");
        for bad in ["", "/", "../x", "a/b", "-x", "a b", "x?y"] {
            assert_eq!(validate_name(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}

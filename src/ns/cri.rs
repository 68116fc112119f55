//! CRI runtimes (containerd, CRI-O) as endpoints: `-e ID,...`, `cri("ID")`.
//!
//! Kubernetes talks to a node's container runtime through the CRI, a gRPC
//! API on a unix socket (`RuntimeService`). Pods are *sandboxes*: a pause
//! process that owns the pod's network namespace, which every container of
//! the pod joins. So a CRI id names a network namespace whether it is a
//! container's id or its sandbox's.
//!
//! How an id becomes a namespace:
//!
//! 1. The id may be full or a unique prefix, as crictl takes it: koko lists
//!    the runtime's containers and pod sandboxes and looks for ids that start
//!    with it (none: not found; several: ambiguous, and the message lists
//!    them).
//! 2. `ContainerStatus` / `PodSandboxStatus` with `verbose: true` return,
//!    besides the state, a map of runtime-specific details. Current
//!    containerd and CRI-O put one JSON document under the key `"info"`
//!    (`{"pid": ..., "sandboxID": ..., "runtimeSpec": ...}`); older runtimes
//!    (and the Go koko, which reads only this) put `"pid"` at the top level.
//!    koko reads both shapes ([`VerboseInfo`]).
//! 3. The pid gives `/proc/PID/ns/net`, as for Docker. When a runtime gives
//!    no pid for a sandbox, the network namespace path from its OCI runtime
//!    spec (`linux.namespaces[type=network].path`) is used instead.
//!
//! A pod on the host's network (`hostNetwork: true`, namespace mode NODE)
//! is refused, as Docker's `--network host` is: links added there would
//! wire the node itself. A stopped container or a sandbox that is not ready
//! has no namespace to wire.
//!
//! The runtime's socket: `--cri-socket` (see [`set_socket`]), else
//! `CONTAINER_RUNTIME_ENDPOINT` (`unix:///path`, as crictl takes it), else
//! the first of [`DEFAULT_SOCKETS`] that answers. The API version is
//! negotiated: `runtime.v1`, else `runtime.v1alpha2` (containerd before
//! 1.7 and old CRI-O serve only that, or both). Every call has a short time
//! limit, so a runtime that is not there is reported at once.
//!
//! Like the Docker client ([`super::docker`]), a run talks to the runtime
//! through one [`Runtime`] that its [`crate::net::Session`] connects on first
//! use and keeps.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::{v1, v1alpha2};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Object, Result};
use crate::ns::{Namespace, NsKind};

/// The sockets tried, in order, when neither `--cri-socket` nor
/// `CONTAINER_RUNTIME_ENDPOINT` names one.
pub const DEFAULT_SOCKETS: [&str; 2] =
    ["/run/containerd/containerd.sock", "/var/run/crio/crio.sock"];

/// The environment variable crictl and the kubelet read.
pub const ENDPOINT_ENV: &str = "CONTAINER_RUNTIME_ENDPOINT";

/// How long connecting and the version handshake may take. A runtime that
/// is not running is noticed at once (no socket, or connection refused);
/// this bounds one that accepts connections but does not answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one request after the handshake may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The socket `--cri-socket` named, for the whole process.
static SOCKET_OVERRIDE: OnceLock<PathBuf> = OnceLock::new();

/// Use this runtime socket instead of `CONTAINER_RUNTIME_ENDPOINT` and the
/// defaults (the `--cri-socket` flag). Accepts `unix:///path` or a path.
/// The first call wins; later calls are ignored.
pub fn set_socket(value: &str) -> Result<()> {
    let path = parse_endpoint(value, "--cri-socket")?;
    let _ = SOCKET_OVERRIDE.set(path);
    Ok(())
}

/// Parse `unix:///path` (or an absolute path) into the socket path.
pub fn parse_endpoint(value: &str, source: &str) -> Result<PathBuf> {
    let path = value.strip_prefix("unix://").unwrap_or(value);
    if path.starts_with('/') && !path.contains('\0') {
        Ok(PathBuf::from(path))
    } else {
        Err(Error::Invalid(format!(
            "{source} {value:?}: expected a CRI runtime socket as unix:///path/to/socket \
             (e.g. unix:///run/containerd/containerd.sock or unix:///var/run/crio/crio.sock)"
        )))
    }
}

/// Which sockets to try, and whether the user named them.
fn candidates() -> Result<(Vec<PathBuf>, bool)> {
    if let Some(path) = SOCKET_OVERRIDE.get() {
        return Ok((vec![path.clone()], true));
    }
    match std::env::var(ENDPOINT_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            let path = parse_endpoint(v.trim(), ENDPOINT_ENV).map_err(|_| Error::Engine {
                what: format!("{ENDPOINT_ENV}={v:?}"),
                cause: "expected unix:///path/to/socket".into(),
            })?;
            Ok((vec![path], true))
        }
        _ => Ok((DEFAULT_SOCKETS.iter().map(PathBuf::from).collect(), false)),
    }
}

/// The CRI API version a runtime speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V1,
    V1alpha2,
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::V1 => "runtime.v1",
            Api::V1alpha2 => "runtime.v1alpha2",
        })
    }
}

/// The gRPC client of the negotiated version.
#[derive(Clone)]
enum Client {
    V1(v1::runtime_service_client::RuntimeServiceClient<Channel>),
    V1alpha2(v1alpha2::runtime_service_client::RuntimeServiceClient<Channel>),
}

/// Run `$body` with `$c` bound to a clone of the client and `$api` to the
/// generated module of its version: the two versions' messages have the
/// same names and fields, so one body serves both.
macro_rules! with_api {
    ($client:expr, |$c:ident, $api:ident| $body:expr) => {
        match $client {
            Client::V1(c) => {
                #[allow(unused_mut)]
                let mut $c = c.clone();
                use k8s_cri::v1 as $api;
                $body
            }
            Client::V1alpha2(c) => {
                #[allow(unused_mut)]
                let mut $c = c.clone();
                use k8s_cri::v1alpha2 as $api;
                $body
            }
        }
    };
}

/// What the runtime knows about one id: a container or a pod sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Container,
    Sandbox,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Container => "container",
            Kind::Sandbox => "pod sandbox",
        })
    }
}

/// One entry of the runtime's lists.
#[derive(Debug, Clone)]
struct Listed {
    id: String,
    kind: Kind,
    name: String,
    /// The pod sandbox (its own id for a sandbox).
    sandbox_id: String,
}

/// A container or sandbox's status, reduced to what koko needs.
#[derive(Debug, Clone, Default)]
struct Status {
    /// "running" / "ready" when usable; the state's name otherwise.
    state: String,
    usable: bool,
    /// The sandbox a container belongs to.
    sandbox_id: Option<String>,
    /// The sandbox's network namespace mode is NODE (host network).
    host_network: bool,
    info: VerboseInfo,
}

/// The runtime-specific part of a verbose status, in either shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerboseInfo {
    pub pid: Option<u32>,
    pub sandbox_id: Option<String>,
    /// `runtimeSpec.linux.namespaces[type=network].path`, when set.
    pub netns_path: Option<PathBuf>,
}

impl VerboseInfo {
    /// Read the verbose `info` map: the current shape (a JSON document under
    /// `"info"`) and the old one (`"pid"` and friends at the top level).
    pub fn parse(info: &HashMap<String, String>) -> VerboseInfo {
        let doc: serde_json::Value = info
            .get("info")
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(serde_json::Value::Null);
        let pid_of = |v: &serde_json::Value| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0)
        };
        let pid = doc
            .get("pid")
            .and_then(pid_of)
            .or_else(|| info.get("pid").and_then(|p| p.trim().parse().ok()))
            .filter(|p: &u32| *p > 0);
        let sandbox_id = ["sandboxID", "sandboxId", "sandbox_id"]
            .iter()
            .find_map(|k| doc.get(*k).and_then(|v| v.as_str()))
            .or_else(|| info.get("sandboxID").map(String::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let spec = match doc.get("runtimeSpec") {
            Some(spec) => spec.clone(),
            None => info
                .get("runtimeSpec")
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(serde_json::Value::Null),
        };
        let netns_path = spec
            .pointer("/linux/namespaces")
            .and_then(|n| n.as_array())
            .and_then(|list| {
                list.iter()
                    .find(|n| n.get("type").and_then(|t| t.as_str()) == Some("network"))
            })
            .and_then(|n| n.get("path").and_then(|p| p.as_str()))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        VerboseInfo {
            pid,
            sandbox_id,
            netns_path,
        }
    }
}

/// What koko found for an id: its kind, full id, the pod it is part of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    pub id: String,
    /// The pod sandbox: its own id for a sandbox.
    pub sandbox_id: String,
}

/// What identifies a pod across re-creations of its sandbox: its
/// Kubernetes namespace and name. When a sandbox dies, the kubelet removes
/// it and runs a new one for the same pod — a new sandbox id, a new network
/// namespace, `attempt` + 1 (and, for a pod that was deleted and made
/// again, a new `uid`) — with the same namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodKey {
    /// "k8s-namespace/pod-name", as kubectl names a pod.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One pod sandbox of the runtime's list.
#[derive(Debug, Clone)]
pub struct PodSandbox {
    pub id: String,
    pub key: PodKey,
    pub ready: bool,
    /// When the runtime created it, ms since the epoch.
    pub created_ms: f64,
}

/// A connection to one CRI runtime, version-negotiated once.
pub struct Runtime {
    client: Client,
    socket: PathBuf,
    api: Api,
    name: String,
}

impl Runtime {
    /// Connect to the runtime (see the module docs for which socket) and
    /// negotiate the API version. `for_id` only names, in an error, the id
    /// this connection was first wanted for.
    pub async fn connect(for_id: &str) -> Result<Runtime> {
        let (sockets, named) = candidates()?;
        let mut failures = Vec::new();
        for socket in &sockets {
            match Runtime::connect_to(socket).await {
                Ok(rt) => return Ok(rt),
                Err(cause) => failures.push(format!("unix://{}: {cause}", socket.display())),
            }
        }
        let hint = if named {
            "is the runtime running there?"
        } else {
            "is containerd or CRI-O running? Name its socket with --cri-socket or \
             CONTAINER_RUNTIME_ENDPOINT=unix:///path"
        };
        Err(Error::Engine {
            what: format!("looking up CRI id '{for_id}'"),
            cause: format!(
                "cannot reach a CRI runtime ({}); {hint}",
                failures.join("; ")
            ),
        })
    }

    /// Connect to one socket; the error is a short cause.
    async fn connect_to(socket: &Path) -> std::result::Result<Runtime, String> {
        // Fail fast and plainly when nothing is there: gRPC would only say
        // "transport error".
        match std::fs::metadata(socket) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("no such socket".into())
            }
            Err(e) => return Err(e.to_string()),
            Ok(_) => {}
        }
        let path = socket.to_path_buf();
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        });
        // The URI is a placeholder: the connector ignores it.
        let endpoint = Endpoint::from_static("http://cri.invalid")
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        let channel =
            tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect_with_connector(connector))
                .await
                .map_err(|_| format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))?
                .map_err(|e| transport_cause(&e))?;

        // runtime.v1 first; a runtime that does not know it answers
        // UNIMPLEMENTED, and then runtime.v1alpha2 is asked.
        let v1 = v1::runtime_service_client::RuntimeServiceClient::new(channel.clone());
        let client = Client::V1(v1);
        match version(&client).await {
            Ok(name) => {
                return Ok(Runtime {
                    client,
                    socket: socket.to_path_buf(),
                    api: Api::V1,
                    name,
                })
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {}
            Err(status) => return Err(status_cause(&status)),
        }
        let client = Client::V1alpha2(v1alpha2::runtime_service_client::RuntimeServiceClient::new(
            channel,
        ));
        match version(&client).await {
            Ok(name) => Ok(Runtime {
                client,
                socket: socket.to_path_buf(),
                api: Api::V1alpha2,
                name,
            }),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                Err("it speaks neither CRI runtime.v1 nor runtime.v1alpha2".into())
            }
            Err(status) => Err(status_cause(&status)),
        }
    }

    /// The socket this runtime answers on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The negotiated API version.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The runtime's name and version ("containerd 1.6.20~ds1").
    pub fn name(&self) -> &str {
        &self.name
    }

    fn place(&self) -> String {
        format!("the CRI runtime at unix://{}", self.socket.display())
    }

    fn rpc_error(&self, what: String, status: tonic::Status) -> Error {
        Error::Engine {
            what,
            cause: format!("{} answered: {}", self.place(), status_cause(&status)),
        }
    }

    /// Find the container or sandbox `id` names (full id or unique prefix).
    pub async fn find(&self, id: &str) -> Result<Found> {
        validate_id(id)?;
        let listed = self.list().await?;
        let matches: Vec<&Listed> = match listed.iter().find(|l| l.id == id) {
            Some(exact) => vec![exact],
            None => listed.iter().filter(|l| l.id.starts_with(id)).collect(),
        };
        let one = match matches.as_slice() {
            [] => {
                return Err(Error::namespace_not_found(
                    Object::new("CRI id", id),
                    format!(
                        "no such container or pod sandbox ({} does not know it)",
                        self.place()
                    ),
                ))
            }
            [one] => *one,
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|l| format!("{} {} ({})", l.kind, short(&l.id), l.name))
                    .collect();
                return Err(Error::Invalid(format!(
                    "CRI id '{id}' is ambiguous: it starts {}; give more of the id",
                    names.join(", ")
                )));
            }
        };
        Ok(Found {
            kind: one.kind.clone(),
            id: one.id.clone(),
            sandbox_id: one.sandbox_id.clone(),
        })
    }

    /// Look up a running container or ready sandbox and return a handle on
    /// its network namespace, named `id` (as the user gave it).
    pub async fn resolve(&self, id: &str) -> Result<Namespace> {
        let found = self.find(id).await?;
        let what = format!("CRI {} '{id}'", found.kind);
        let object = || {
            Object::new(
                match found.kind {
                    Kind::Container => "CRI container",
                    Kind::Sandbox => "CRI pod sandbox",
                },
                id,
            )
        };
        let status = match found.kind {
            Kind::Container => self.container_status(&found.id).await?,
            Kind::Sandbox => self.sandbox_status(&found.id).await?,
        };
        if !status.usable {
            return Err(Error::namespace_not_found(
                object(),
                format!("is not running (state: {}); start it first", status.state),
            ));
        }
        // A container's network is its pod's: ask the sandbox how it is set
        // (the list names the pod; the verbose info does too).
        let pod = match status.sandbox_id.as_deref() {
            Some(id) if found.sandbox_id.is_empty() => id.to_string(),
            _ => found.sandbox_id.clone(),
        };
        let sandbox = match found.kind {
            Kind::Sandbox => status.clone(),
            Kind::Container if !pod.is_empty() => self.sandbox_status(&pod).await?,
            Kind::Container => Status::default(),
        };
        if sandbox.host_network {
            return Err(Error::Invalid(format!(
                "{what} is on the host's network (its pod uses hostNetwork): koko refuses to \
                 add links to it, it would wire the node's own network"
            )));
        }
        let ns = match (status.info.pid, &status.info.netns_path) {
            (Some(pid), _) => Namespace::pid(pid),
            (None, Some(path)) => Namespace::path(path),
            (None, None) => {
                return Err(Error::Engine {
                    what,
                    cause: format!(
                        "{} reported neither a pid nor a network namespace path in its \
                         verbose status",
                        self.place()
                    ),
                })
            }
        }
        .map_err(|e| {
            if e.is_namespace_not_found() {
                Error::namespace_not_found(
                    object(),
                    "is not running (it stopped while koko was looking it up)",
                )
            } else {
                e
            }
        })?
        .relabel(NsKind::Cri, id);
        // Belt and braces, where /proc/1 is readable: a namespace equal to
        // this machine's init's is the host network, whatever the runtime says.
        if Namespace::pid(1).is_ok_and(|init| init == ns) {
            return Err(Error::Invalid(format!(
                "{what} shares the host's network namespace: koko refuses to add links to it, \
                 it would wire the host's own network"
            )));
        }
        Ok(ns)
    }

    /// Stop the pod `id` belongs to (the sandbox itself, or a container's
    /// pod): its containers stop and its network namespace, with every link
    /// end in it, goes away. For scripts that rehearse failures.
    pub async fn stop_pod(&self, id: &str) -> Result<()> {
        let found = self.find(id).await?;
        let sandbox = found.sandbox_id;
        let what = format!("stopping the pod of CRI id '{id}'");
        with_api!(&self.client, |c, api| {
            c.stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: sandbox.clone(),
            })
            .await
            .map(drop)
            .map_err(|s| self.rpc_error(what.clone(), s))
        })
    }

    /// The pod `id` (a container's or a sandbox's id, or a prefix) is part
    /// of: its sandbox's id and the metadata that survives a re-creation.
    pub async fn pod_of(&self, id: &str) -> Result<PodSandbox> {
        let found = self.find(id).await?;
        self.pod_sandboxes()
            .await?
            .into_iter()
            .find(|p| p.id == found.sandbox_id)
            .ok_or_else(|| {
                Error::namespace_not_found(
                    Object::new("CRI id", id),
                    format!("its pod sandbox is not known to {}", self.place()),
                )
            })
    }

    /// Every pod sandbox the runtime knows (ready or not), with its
    /// metadata: one `ListPodSandbox`.
    pub async fn pod_sandboxes(&self) -> Result<Vec<PodSandbox>> {
        let what = || "listing the CRI runtime's pod sandboxes".to_string();
        with_api!(&self.client, |c, api| {
            let pods = c
                .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
                .await
                .map_err(|s| self.rpc_error(what(), s))?
                .into_inner()
                .items;
            Ok(pods
                .into_iter()
                .map(|p| {
                    let m = p.metadata.unwrap_or_default();
                    PodSandbox {
                        ready: p.state == api::PodSandboxState::SandboxReady as i32,
                        created_ms: p.created_at as f64 / 1e6,
                        key: PodKey {
                            namespace: m.namespace,
                            name: m.name,
                        },
                        id: p.id,
                    }
                })
                .collect())
        })
    }

    /// Every ready pod sandbox with a network namespace of its own, as
    /// (pod name, namespace labelled with the sandbox id), for `koko
    /// graph`. Sandboxes that are not ready or on the node's network are
    /// left out.
    pub async fn sandboxes(&self) -> Result<Vec<(String, Namespace)>> {
        let mut out = Vec::new();
        for listed in self.list().await? {
            if listed.kind != Kind::Sandbox {
                continue;
            }
            if let Ok(ns) = self.resolve(&listed.id).await {
                out.push((listed.name, ns));
            }
        }
        Ok(out)
    }

    /// Every container and pod sandbox the runtime knows.
    async fn list(&self) -> Result<Vec<Listed>> {
        let mut all: Vec<Listed> = self
            .pod_sandboxes()
            .await?
            .into_iter()
            .map(|p| Listed {
                sandbox_id: p.id.clone(),
                id: p.id,
                kind: Kind::Sandbox,
                name: p.key.name,
            })
            .collect();
        let what = || "listing the CRI runtime's containers".to_string();
        let containers = with_api!(&self.client, |c, api| {
            let containers = c
                .list_containers(api::ListContainersRequest { filter: None })
                .await
                .map_err(|s| self.rpc_error(what(), s))?
                .into_inner()
                .containers;
            Ok::<_, Error>(
                containers
                    .into_iter()
                    .map(|c| Listed {
                        id: c.id,
                        kind: Kind::Container,
                        name: c.metadata.map(|m| m.name).unwrap_or_default(),
                        sandbox_id: c.pod_sandbox_id,
                    })
                    .collect::<Vec<_>>(),
            )
        })?;
        all.extend(containers);
        Ok(all)
    }

    async fn container_status(&self, id: &str) -> Result<Status> {
        let what = format!("CRI container '{id}'");
        with_api!(&self.client, |c, api| {
            let answer = c
                .container_status(api::ContainerStatusRequest {
                    container_id: id.to_string(),
                    verbose: true,
                })
                .await
                .map_err(|s| self.rpc_error(what.clone(), s))?
                .into_inner();
            let info = VerboseInfo::parse(&answer.info);
            let state = answer
                .status
                .map(|s| s.state)
                .unwrap_or(api::ContainerState::ContainerUnknown as i32);
            let name = api::ContainerState::try_from(state)
                .map(|s| s.as_str_name())
                .unwrap_or("unknown");
            Ok(Status {
                usable: state == api::ContainerState::ContainerRunning as i32,
                state: name.trim_start_matches("CONTAINER_").to_lowercase(),
                sandbox_id: info.sandbox_id.clone(),
                host_network: false,
                info,
            })
        })
    }

    async fn sandbox_status(&self, id: &str) -> Result<Status> {
        let what = format!("CRI pod sandbox '{id}'");
        with_api!(&self.client, |c, api| {
            let answer = c
                .pod_sandbox_status(api::PodSandboxStatusRequest {
                    pod_sandbox_id: id.to_string(),
                    verbose: true,
                })
                .await
                .map_err(|s| self.rpc_error(what.clone(), s))?
                .into_inner();
            let info = VerboseInfo::parse(&answer.info);
            let status = answer.status.unwrap_or_default();
            let host_network = status
                .linux
                .as_ref()
                .and_then(|l| l.namespaces.as_ref())
                .and_then(|n| n.options.as_ref())
                .is_some_and(|o| o.network == api::NamespaceMode::Node as i32);
            let name = api::PodSandboxState::try_from(status.state)
                .map(|s| s.as_str_name())
                .unwrap_or("unknown");
            Ok(Status {
                usable: status.state == api::PodSandboxState::SandboxReady as i32,
                state: name
                    .trim_start_matches("SANDBOX_")
                    .to_lowercase()
                    .replace("notready", "not ready"),
                sandbox_id: Some(id.to_string()),
                host_network,
                info,
            })
        })
    }
}

/// Ask for the runtime's version; returns "NAME VERSION".
async fn version(client: &Client) -> std::result::Result<String, tonic::Status> {
    let ask = with_api!(client, |c, api| {
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            c.version(api::VersionRequest {
                version: String::new(),
            }),
        )
        .await
        .map(|r| {
            r.map(|v| {
                let v = v.into_inner();
                format!("{} {}", v.runtime_name, v.runtime_version)
            })
        })
    });
    ask.unwrap_or_else(|_| {
        Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )))
    })
}

/// A gRPC status in words (the transport's own cause when there is one).
fn status_cause(status: &tonic::Status) -> String {
    use std::error::Error as _;
    let mut source = status.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_cause(io);
        }
        source = s.source();
    }
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_string()
    }
}

fn transport_cause(e: &tonic::transport::Error) -> String {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_cause(io);
        }
        source = s.source();
    }
    e.to_string()
}

fn io_cause(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::NotFound => "no such socket".into(),
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied (koko must run as root)".into(),
        _ => io.to_string(),
    }
}

/// The first 13 characters of an id, as crictl prints them.
fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

/// CRI ids are hex (containerd, CRI-O); names the runtime made up may hold
/// letters, digits, '_', '.' and '-'. Anything else is a typo.
pub fn validate_id(id: &str) -> Result<&str> {
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(id)
    } else {
        Err(Error::Invalid(format!(
            "'{id}' is not a CRI container or pod sandbox id (a full id or a unique prefix of one)"
        )))
    }
}

/// Look up a CRI id with a client of its own (for one-off use; a run
/// resolves through its [`crate::net::Session`], which reuses one).
pub fn resolve(id: &str) -> Result<Namespace> {
    validate_id(id)?;
    run(async { Runtime::connect(id).await?.resolve(id).await })
}

/// Run `fut` on a runtime of its own (on a helper thread when the caller is
/// itself inside a runtime: runtimes must not nest).
fn run<T: Send>(fut: impl std::future::Future<Output = Result<T>> + Send) -> Result<T> {
    let block = |fut| -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the CRI client", e))?;
        rt.block_on(fut)
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| block(fut))
                .join()
                .expect("CRI client thread panicked")
        })
    } else {
        block(fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn verbose_info_current_shape() {
        // containerd 1.6+ and current CRI-O: one JSON document under "info".
        let info = map(&[(
            "info",
            r#"{"sandboxID":"abc","pid":4242,"runtimeSpec":{"linux":{"namespaces":[
                {"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}]}}}"#,
        )]);
        assert_eq!(
            VerboseInfo::parse(&info),
            VerboseInfo {
                pid: Some(4242),
                sandbox_id: Some("abc".into()),
                netns_path: Some("/var/run/netns/cni-1".into()),
            }
        );
    }

    #[test]
    fn verbose_info_old_shape() {
        // What the Go koko read: "pid" at the top level.
        let info = map(&[("pid", "77"), ("sandboxID", "s1")]);
        let parsed = VerboseInfo::parse(&info);
        assert_eq!(parsed.pid, Some(77));
        assert_eq!(parsed.sandbox_id.as_deref(), Some("s1"));
        assert_eq!(parsed.netns_path, None);
    }

    #[test]
    fn verbose_info_without_pid() {
        // A stopped container reports pid 0; a sandbox may give only its
        // namespace's path.
        let info = map(&[(
            "info",
            r#"{"pid":0,"runtimeSpec":{"linux":{"namespaces":[{"type":"network","path":"/proc/9/ns/net"}]}}}"#,
        )]);
        let parsed = VerboseInfo::parse(&info);
        assert_eq!(parsed.pid, None);
        assert_eq!(parsed.netns_path, Some("/proc/9/ns/net".into()));
        assert_eq!(VerboseInfo::parse(&map(&[])), VerboseInfo::default());
        assert_eq!(
            VerboseInfo::parse(&map(&[("info", "not json")])),
            VerboseInfo::default()
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("unix:///run/containerd/containerd.sock", "x").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(
            parse_endpoint("/var/run/crio/crio.sock", "x").unwrap(),
            PathBuf::from("/var/run/crio/crio.sock")
        );
        for bad in ["", "tcp://1.2.3.4:5", "unix://rel.sock", "crio.sock"] {
            assert_eq!(
                parse_endpoint(bad, "x").unwrap_err().exit_code(),
                2,
                "{bad}"
            );
        }
    }

    #[test]
    fn ids() {
        assert!(validate_id("4f2a9c").is_ok());
        for bad in ["", "a/b", "x y", "../z"] {
            assert_eq!(validate_id(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }
}

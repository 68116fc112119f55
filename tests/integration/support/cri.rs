//! A CRI runtime for the tests: the private containerd that
//! tests/setup/containerd.sh starts (its own root, state and socket under
//! /run/koko-test-containerd, CRI plugin on, the tiny `koko-test/pause:1`
//! image as sandbox image, a CNI plugin that wires nothing). Tests make pods
//! and containers through the CRI API itself, as a kubelet would
//! (RunPodSandbox / CreateContainer / StartContainer), with a small client
//! of the same crate koko uses; each [`Pod`] stops and removes itself on
//! drop, even on panic. A pod's namespace is read through the kernel by its
//! pause process's pid (`Place::from(&pod)`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{skip, Place, Sandbox};

/// The test containerd's socket.
pub const CRI_SOCK: &str = "/run/koko-test-containerd/containerd.sock";
/// The same, as `--cri-socket` / `CONTAINER_RUNTIME_ENDPOINT` take it.
pub const CRI_ENDPOINT: &str = "unix:///run/koko-test-containerd/containerd.sock";
const IMAGE: &str = "koko-test/pause:1";

/// Run one CRI call on a runtime of its own.
fn call<T>(
    f: impl FnOnce(
        RuntimeServiceClient<Channel>,
    ) -> futures::future::BoxFuture<'static, Result<T, String>>,
) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let connector = tower::service_fn(|_: Uri| async {
            Ok::<_, std::io::Error>(TokioIo::new(
                tokio::net::UnixStream::connect(CRI_SOCK).await?,
            ))
        });
        let channel = Endpoint::from_static("http://cri.test")
            .timeout(Duration::from_secs(30))
            .connect_with_connector(connector)
            .await
            .map_err(|e| format!("cannot connect to {CRI_SOCK}: {e}"))?;
        f(RuntimeServiceClient::new(channel)).await
    })
}

/// Is the test containerd there? If not, a loud skip (a failure under CI,
/// where tests/setup/containerd.sh must have started it) and None; else a
/// sandbox for the test.
#[track_caller]
pub fn cri_sandbox() -> Option<Sandbox> {
    cri_up().then(Sandbox::new)
}

/// Is the test containerd there? If not, a loud skip and false.
#[track_caller]
pub fn cri_up() -> bool {
    let answer = call(|mut c| {
        Box::pin(async move {
            c.version(cri::VersionRequest::default())
                .await
                .map_err(|e| e.to_string())
        })
    });
    if let Err(e) = answer {
        skip(&format!(
            "no CRI runtime answering on {CRI_SOCK} ({e}); run tests/setup/containerd.sh"
        ));
        return false;
    }
    true
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A pod sandbox (and its containers), stopped and removed on drop.
pub struct Pod {
    pub id: String,
    pub name: String,
    config: cri::PodSandboxConfig,
}

impl Pod {
    /// A pod with its own network namespace (no CNI wiring: only `lo`).
    pub fn new(tag: &str) -> Pod {
        Pod::run(tag, cri::NamespaceMode::Pod)
    }

    /// A pod on the node's network (`hostNetwork: true`).
    pub fn host_network(tag: &str) -> Pod {
        Pod::run(tag, cri::NamespaceMode::Node)
    }

    /// A pod with its own network namespace under the exact name `name`
    /// (what CNI plugins see as K8S_POD_NAME).
    pub fn named(name: &str) -> Pod {
        Pod::run_as(name.to_string(), name, cri::NamespaceMode::Pod)
    }

    fn run(tag: &str, network: cri::NamespaceMode) -> Pod {
        let name = format!(
            "koko-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Pod::run_as(name, tag, network)
    }

    fn run_as(name: String, tag: &str, network: cri::NamespaceMode) -> Pod {
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: name.clone(),
                namespace: "koko-test".into(),
                attempt: 0,
            }),
            // A pod on the node's network has no UTS namespace of its own.
            hostname: if network == cri::NamespaceMode::Node {
                String::new()
            } else {
                tag.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
            },
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: network as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = run_pod_sandbox(&config).unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}"));
        Pod { id, name, config }
    }

    /// Create a container in the pod (it sleeps); started if `start`.
    pub fn container(&self, tag: &str, start: bool) -> String {
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: tag.to_string(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                args: vec!["1000".into()],
                ..Default::default()
            }),
            sandbox_config: Some(self.config.clone()),
        };
        let id = call(|mut c| {
            Box::pin(async move {
                let id = c
                    .create_container(request)
                    .await
                    .map_err(|e| format!("CreateContainer: {e}"))?
                    .into_inner()
                    .container_id;
                if start {
                    c.start_container(cri::StartContainerRequest {
                        container_id: id.clone(),
                    })
                    .await
                    .map_err(|e| format!("StartContainer: {e}"))?;
                }
                Ok(id)
            })
        })
        .unwrap_or_else(|e| panic!("container {tag} in pod {}: {e}", self.name));
        id
    }

    /// The pause process (from the verbose status: `info["info"].pid`).
    pub fn pid(&self) -> u32 {
        let id = self.id.clone();
        let info: HashMap<String, String> = call(|mut c| {
            Box::pin(async move {
                c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: true,
                })
                .await
                .map(|r| r.into_inner().info)
                .map_err(|e| e.to_string())
            })
        })
        .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
        doc["pid"].as_u64().expect("a pid in the verbose status") as u32
    }

    pub fn ns_path(&self) -> std::path::PathBuf {
        format!("/proc/{}/ns/net", self.pid()).into()
    }

    /// Is the sandbox still READY?
    pub fn ready(&self) -> bool {
        let id = self.id.clone();
        call(|mut c| {
            Box::pin(async move {
                c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: false,
                })
                .await
                .map(|r| {
                    r.into_inner().status.map(|s| s.state)
                        == Some(cri::PodSandboxState::SandboxReady as i32)
                })
                .map_err(|e| e.to_string())
            })
        })
        .unwrap()
    }

    /// StopPodSandbox: its containers stop, its namespace goes.
    pub fn stop(&self) {
        let id = self.id.clone();
        call(|mut c| {
            Box::pin(async move {
                c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        })
        .unwrap();
    }
}

impl Pod {
    /// What the kubelet does when a pod's sandbox died: stop and remove
    /// the sandbox, and run a new one for the same pod (same name and
    /// namespace, `attempt` + 1): a new sandbox id and network namespace.
    pub fn recreate(&mut self) {
        let old = self.id.clone();
        call(|mut c| {
            Box::pin(async move {
                c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: old.clone(),
                })
                .await
                .map_err(|e| e.to_string())?;
                c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: old,
                })
                .await
                .map(drop)
                .map_err(|e| e.to_string())
            })
        })
        .unwrap_or_else(|e| panic!("removing the sandbox of pod {}: {e}", self.name));
        if let Some(m) = self.config.metadata.as_mut() {
            m.attempt += 1;
        }
        self.id = run_pod_sandbox(&self.config)
            .unwrap_or_else(|e| panic!("RunPodSandbox {} again: {e}", self.name));
    }

    /// Stop and remove the container `id` (a container of the pod that
    /// exited, as the kubelet cleans it up before starting its next attempt).
    pub fn remove_container(&self, id: &str) {
        let id = id.to_string();
        call(|mut c| {
            Box::pin(async move {
                c.stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await
                .map_err(|e| e.to_string())?;
                c.remove_container(cri::RemoveContainerRequest { container_id: id })
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        })
        .unwrap_or_else(|e| panic!("removing a container of pod {}: {e}", self.name));
    }
}

impl From<&Pod> for Place {
    fn from(p: &Pod) -> Place {
        Place::Pid(p.pid())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let id = self.id.clone();
        let _ = call(|mut c| {
            Box::pin(async move {
                let _ = c
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await;
                c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        });
    }
}

/// Every container and sandbox id the runtime knows.
pub fn all_ids() -> Vec<String> {
    call(|mut c| {
        Box::pin(async move {
            let mut ids: Vec<String> = c
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                .await
                .map_err(|e| e.to_string())?
                .into_inner()
                .items
                .into_iter()
                .map(|p| p.id)
                .collect();
            ids.extend(
                c.list_containers(cri::ListContainersRequest { filter: None })
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .containers
                    .into_iter()
                    .map(|c| c.id),
            );
            Ok(ids)
        })
    })
    .unwrap()
}

/// RunPodSandbox with `config`: the new sandbox's id.
fn run_pod_sandbox(config: &cri::PodSandboxConfig) -> Result<String, String> {
    let sent = config.clone();
    call(|mut c| {
        Box::pin(async move {
            c.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sent),
                runtime_handler: String::new(),
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id)
            .map_err(|e| e.to_string())
        })
    })
}

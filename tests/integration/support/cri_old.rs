//! An "older runtime" for the CRI version negotiation: a gRPC server on a
//! unix socket of its own that serves only `runtime.v1alpha2` (as
//! containerd before 1.7 did by default) and forwards every call to the
//! test containerd's v1alpha2 service. A `runtime.v1` request gets the
//! server's UNIMPLEMENTED answer, so a client that does not fall back to
//! v1alpha2 fails against it. It counts the calls it forwarded, so a test
//! can tell that the v1alpha2 path was used. Stops on drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use k8s_cri::v1alpha2 as api;
use k8s_cri::v1alpha2::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1alpha2::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Request, Response, Status};

use super::CRI_SOCK;

struct Forward {
    client: RuntimeServiceClient<Channel>,
    calls: Arc<AtomicUsize>,
}

/// Every RPC of the v1alpha2 RuntimeService, forwarded as it is.
macro_rules! forward_all {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl RuntimeService for Forward {
            $(
                async fn $name(
                    &self,
                    request: Request<api::$req>,
                ) -> Result<Response<api::$resp>, Status> {
                    self.calls.fetch_add(1, Ordering::SeqCst);
                    self.client.clone().$name(request.into_inner()).await
                }
            )*
        }
    };
}

forward_all! {
    version(VersionRequest) -> VersionResponse;
    run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
    stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
    remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
    pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
    list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
    create_container(CreateContainerRequest) -> CreateContainerResponse;
    start_container(StartContainerRequest) -> StartContainerResponse;
    stop_container(StopContainerRequest) -> StopContainerResponse;
    remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
    list_containers(ListContainersRequest) -> ListContainersResponse;
    container_status(ContainerStatusRequest) -> ContainerStatusResponse;
    update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
    reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
    exec_sync(ExecSyncRequest) -> ExecSyncResponse;
    exec(ExecRequest) -> ExecResponse;
    attach(AttachRequest) -> AttachResponse;
    port_forward(PortForwardRequest) -> PortForwardResponse;
    container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
    list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
    pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
    list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
    update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
    status(StatusRequest) -> StatusResponse;
}

/// The v1alpha2-only runtime, serving on [`OldRuntime::socket`].
pub struct OldRuntime {
    pub socket: PathBuf,
    calls: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OldRuntime {
    pub fn start() -> OldRuntime {
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = PathBuf::from(format!(
            "/tmp/koko-test-cri-v1alpha2-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&socket);
        let calls = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (path, counter) = (socket.clone(), calls.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                let channel = Endpoint::from_static("http://cri.test").connect_with_connector_lazy(
                    tower::service_fn(|_: Uri| async {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(CRI_SOCK).await?,
                        ))
                    }),
                );
                let service = RuntimeServiceServer::new(Forward {
                    client: RuntimeServiceClient::new(channel),
                    calls: counter,
                });
                ready_tx.send(()).unwrap();
                Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::UnixListenerStream::new(listener),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                    .unwrap();
            });
        });
        ready_rx.recv().expect("the v1alpha2 test runtime started");
        OldRuntime {
            socket,
            calls,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// How many calls it forwarded (all of them v1alpha2).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for OldRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

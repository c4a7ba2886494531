//! The CRI boundary: the runtime.v1 messages and the RuntimeService /
//! ImageService traits over them. A leaf: it imports nothing of deckhand's,
//! so the node agent (above) and the runtime (below) both stand on it.
//!
//! Implementations: the in-process runtime (`crate::runtime::Runtime`), the
//! remote runtime over a unix socket (`crate::cri::remote::RemoteRuntime`);
//! the tonic server (`crate::cri::server`) serves any implementation.

mod error;

pub use error::CriError;

/// The CRI v1 messages and services, generated from proto/runtime/v1/api.proto.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

/// A stream of container events, as GetContainerEvents returns it.
pub type ContainerEventStream =
    futures::stream::BoxStream<'static, Result<v1::ContainerEventResponse, CriError>>;

/// Calls `$m!` with the unary RuntimeService calls, as
/// `method(Request) -> Response;`, so the trait, the gRPC server adapter and
/// the remote client are written from one list. (The Stream* calls are
/// served from their List* counterparts; GetContainerEvents is apart.)
#[macro_export]
macro_rules! cri_runtime_calls {
    ($m:ident) => {
        $m! {
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
            checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
            list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
            list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
            runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
            update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse;
        }
    };
}

/// The unary ImageService calls, as [`cri_runtime_calls`] lists the runtime's.
#[macro_export]
macro_rules! cri_image_calls {
    ($m:ident) => {
        $m! {
            list_images(ListImagesRequest) -> ListImagesResponse;
            image_status(ImageStatusRequest) -> ImageStatusResponse;
            pull_image(PullImageRequest) -> PullImageResponse;
            remove_image(RemoveImageRequest) -> RemoveImageResponse;
            image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
        }
    };
}

/// The traits' methods; each answers Unimplemented unless the implementation
/// overrides it. (async_trait must see the generated methods, so the macro
/// emits the whole trait.)
macro_rules! runtime_service_trait {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        /// `runtime.v1.RuntimeService` over plain messages.
        #[async_trait::async_trait]
        pub trait RuntimeService: Send + Sync {
            $(
                async fn $name(&self, request: v1::$req) -> Result<v1::$resp, CriError> {
                    let _ = request;
                    Err(CriError::unimplemented(stringify!($name)))
                }
            )*

            /// GetContainerEvents: lifecycle events of containers and
            /// sandboxes. A subscriber that falls too far behind gets
            /// `ResourceExhausted` as the stream's last item and must
            /// subscribe again (and relist).
            async fn get_container_events(
                &self,
                request: v1::GetEventsRequest,
            ) -> Result<ContainerEventStream, CriError> {
                let _ = request;
                Err(CriError::unimplemented("get_container_events"))
            }
        }
    };
}

macro_rules! image_service_trait {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        /// `runtime.v1.ImageService` over plain messages.
        #[async_trait::async_trait]
        pub trait ImageService: Send + Sync {
            $(
                async fn $name(&self, request: v1::$req) -> Result<v1::$resp, CriError> {
                    let _ = request;
                    Err(CriError::unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

cri_runtime_calls!(runtime_service_trait);
cri_image_calls!(image_service_trait);

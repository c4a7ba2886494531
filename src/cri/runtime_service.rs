//! `runtime.v1.RuntimeService`. Version, RuntimeConfig, Status, the pod
//! sandbox calls, the container lifecycle, stats, resource updates and
//! container events are served; the rest answer Unimplemented until the
//! runtime lands them.

use std::sync::Arc;

use crate::cri::v1 as cri;
use crate::cri::v1::runtime_service_server::RuntimeService;
use crate::cri::{OneMessage, one_message};
use tonic::{Request, Response, Status};

use crate::runtime::container::{ContainerError, ContainerManager};
use crate::runtime::sandbox::{SandboxError, SandboxManager};
use crate::runtime::streaming::server::StreamingServer;

/// The CRI API version we speak.
pub const CRI_API_VERSION: &str = "v1";
pub const RUNTIME_NAME: &str = "deckhand";

pub struct CriRuntimeService {
    sandboxes: Arc<SandboxManager>,
    containers: Arc<ContainerManager>,
    streaming: Arc<StreamingServer>,
}

impl CriRuntimeService {
    pub fn new(
        sandboxes: Arc<SandboxManager>,
        containers: Arc<ContainerManager>,
        streaming: Arc<StreamingServer>,
    ) -> Self {
        Self {
            sandboxes,
            containers,
            streaming,
        }
    }
}

impl CriRuntimeService {
    /// The sandbox's status now, if it exists (for its lifecycle events).
    fn sandbox_state(&self, id: &str) -> Option<cri::PodSandboxStatus> {
        self.sandboxes.status(id, false).ok().and_then(|r| r.status)
    }
}

fn container_status(e: ContainerError) -> Status {
    match e {
        ContainerError::InvalidArgument(m) => Status::invalid_argument(m),
        ContainerError::NotFound(m) => Status::not_found(m),
        ContainerError::AlreadyExists(m) => Status::already_exists(m),
        ContainerError::FailedPrecondition(m) => Status::failed_precondition(m),
        ContainerError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
        ContainerError::Failed(m) => Status::internal(m),
    }
}

fn status(e: SandboxError) -> Status {
    match e {
        SandboxError::InvalidArgument(m) => Status::invalid_argument(m),
        SandboxError::AlreadyExists(m) => Status::already_exists(m),
        e @ SandboxError::NotFound(_) => Status::not_found(e.to_string()),
        SandboxError::Failed(m) => Status::internal(m),
    }
}

/// The impl block, with the calls not built yet answering Unimplemented.
/// (async_trait must see the generated methods, so the macro emits the block.)
macro_rules! runtime_service_impl {
    ({ $($implemented:item)* } unimplemented { $($name:ident($req:ident) -> $resp:ident;)* }) => {
        #[tonic::async_trait]
        impl RuntimeService for CriRuntimeService {
            $($implemented)*
            $(
                async fn $name(&self, _request: Request<cri::$req>) -> Result<Response<cri::$resp>, Status> {
                    Err(Status::unimplemented(concat!(stringify!($name), " is not implemented by deckhand yet")))
                }
            )*
        }
    };
}

runtime_service_impl! {{
    async fn version(&self, _request: Request<cri::VersionRequest>) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_API_VERSION.into(),
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }

    type GetContainerEventsStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        use futures::StreamExt;
        let events = self
            .containers
            .subscribe_events()
            .map(|event| event.map_err(|lagged| Status::resource_exhausted(lagged.to_string())));
        Ok(Response::new(Box::pin(events)))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let pod_sandbox_id = self.sandboxes.run(request.into_inner()).await.map_err(status)?;
        for kind in [cri::ContainerEventType::ContainerCreatedEvent, cri::ContainerEventType::ContainerStartedEvent] {
            self.containers.sandbox_event(&pod_sandbox_id, kind, None);
        }
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let was_ready = self.sandbox_state(&id).is_some_and(|s| s.state == cri::PodSandboxState::SandboxReady as i32);
        // Containers first: they live in the sandbox's namespaces and cgroup.
        self.containers.stop_in_sandbox(&id).await.map_err(container_status)?;
        self.sandboxes.stop(&id).await.map_err(status)?;
        if was_ready && let Some(s) = self.sandbox_state(&id) {
            self.containers.sandbox_event(&s.id, cri::ContainerEventType::ContainerStoppedEvent, None);
        }
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.containers.remove_in_sandbox(&id).await.map_err(container_status)?;
        let before = self.sandbox_state(&id);
        self.sandboxes.remove(&id).await.map_err(status)?;
        if let Some(mut last) = before {
            last.state = cri::PodSandboxState::SandboxNotready as i32;
            let sandbox_id = last.id.clone();
            self.containers.sandbox_event(&sandbox_id, cri::ContainerEventType::ContainerDeletedEvent, Some(last));
        }
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let request = request.into_inner();
        let mut response = self
            .sandboxes
            .status(&request.pod_sandbox_id, request.verbose)
            .map_err(status)?;
        // Read by the kubelet's Evented PLEG.
        if let Some(s) = &response.status {
            response.containers_statuses = self.containers.statuses_in_sandbox(&s.id);
        }
        Ok(Response::new(response))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let items = self.sandboxes.list(request.into_inner().filter.as_ref());
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn status(&self, _request: Request<cri::StatusRequest>) -> Result<Response<cri::StatusResponse>, Status> {
        let network = self.sandboxes.network_status().await;
        let conditions = vec![
            cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: network.ready,
                reason: if network.ready { String::new() } else { "NetworkPluginNotReady".into() },
                message: if network.ready { String::new() } else { network.message },
            },
        ];
        // One handler, the default (""): runc. User namespaces are claimed
        // only when this kernel makes them and ID-maps mounts; recursive
        // read-only mounts when runc and the kernel make them.
        let user_namespaces = self.sandboxes.user_namespaces_supported().await.is_ok();
        let runtime_handlers = vec![cri::RuntimeHandler {
            name: String::new(),
            features: Some(cri::RuntimeHandlerFeatures {
                user_namespaces,
                recursive_read_only_mounts: self.containers.supports_recursive_read_only_mounts(),
            }),
        }];
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            runtime_handlers,
            features: Some(cri::RuntimeFeatures { supplemental_groups_policy: true, ..Default::default() }),
            ..Default::default()
        }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let container_id = self.containers.create(request.into_inner()).await.map_err(container_status)?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        self.containers.start(&request.into_inner().container_id).await.map_err(container_status)?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let request = request.into_inner();
        self.containers
            .stop(&request.container_id, request.timeout)
            .await
            .map_err(container_status)?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        self.containers.remove(&request.into_inner().container_id).await.map_err(container_status)?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let containers = self.containers.list(request.into_inner().filter.as_ref());
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let request = request.into_inner();
        let response = self
            .containers
            .status(&request.container_id, request.verbose)
            .map_err(container_status)?;
        Ok(Response::new(response))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        self.containers.reopen_log(&request.into_inner().container_id).await.map_err(container_status)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let request = request.into_inner();
        let output = self
            .containers
            .exec_sync(&request.container_id, request.cmd, request.timeout)
            .await
            .map_err(container_status)?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code: output.exit_code,
        }))
    }

    // Exec, Attach and PortForward hand out a URL on the streaming server.
    async fn exec(&self, request: Request<cri::ExecRequest>) -> Result<Response<cri::ExecResponse>, Status> {
        let url = self.streaming.exec_url(request.into_inner()).map_err(container_status)?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, request: Request<cri::AttachRequest>) -> Result<Response<cri::AttachResponse>, Status> {
        let url = self.streaming.attach_url(request.into_inner()).map_err(container_status)?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let url = self.streaming.port_forward_url(request.into_inner()).map_err(container_status)?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let request = request.into_inner();
        self.containers
            .update_resources(&request.container_id, request.linux)
            .await
            .map_err(container_status)?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        let request = request.into_inner();
        self.sandboxes
            .update_resources(&request.pod_sandbox_id, request.overhead.as_ref(), request.resources.as_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(cri::UpdatePodSandboxResourcesResponse {}))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let stats = self
            .containers
            .container_stats(&request.into_inner().container_id)
            .await
            .map_err(container_status)?;
        Ok(Response::new(cri::ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let stats = self.containers.list_container_stats(filter.as_ref()).await.map_err(container_status)?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let stats = self
            .containers
            .pod_sandbox_stats(&request.into_inner().pod_sandbox_id)
            .await
            .map_err(container_status)?;
        Ok(Response::new(cri::PodSandboxStatsResponse { stats: Some(stats) }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let stats = self.containers.list_pod_sandbox_stats(filter.as_ref()).await.map_err(container_status)?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    // The Stream* calls (KEP-5335) page large lists over a server stream; our
    // lists are built in memory, so each answers with a single message.
    type StreamPodSandboxesStream = OneMessage<cri::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        request: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let filter = request.into_inner().filter;
        let list = self.list_pod_sandbox(Request::new(cri::ListPodSandboxRequest { filter })).await?;
        Ok(one_message(cri::StreamPodSandboxesResponse { pod_sandboxes: list.into_inner().items }))
    }

    type StreamContainersStream = OneMessage<cri::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        request: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let filter = request.into_inner().filter;
        let list = self.list_containers(Request::new(cri::ListContainersRequest { filter })).await?;
        Ok(one_message(cri::StreamContainersResponse { containers: list.into_inner().containers }))
    }

    type StreamContainerStatsStream = OneMessage<cri::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        request: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let filter = request.into_inner().filter;
        let list = self.list_container_stats(Request::new(cri::ListContainerStatsRequest { filter })).await?;
        Ok(one_message(cri::StreamContainerStatsResponse { container_stats: list.into_inner().stats }))
    }

    type StreamPodSandboxStatsStream = OneMessage<cri::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let filter = request.into_inner().filter;
        let list = self.list_pod_sandbox_stats(Request::new(cri::ListPodSandboxStatsRequest { filter })).await?;
        Ok(one_message(cri::StreamPodSandboxStatsResponse { pod_sandbox_stats: list.into_inner().stats }))
    }

    type StreamPodSandboxMetricsStream = OneMessage<cri::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        let list = self.list_pod_sandbox_metrics(Request::new(cri::ListPodSandboxMetricsRequest {})).await?;
        Ok(one_message(cri::StreamPodSandboxMetricsResponse { pod_sandbox_metrics: list.into_inner().pod_metrics }))
    }

} unimplemented {
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
    }
}

//! The in-process runtime: the CRI traits over the sandbox, container and
//! image managers. The orchestration that spans managers lives here (a
//! sandbox's containers stop before it, a sandbox's status carries its
//! containers', sandbox lifecycle events), so the gRPC server and the
//! in-process node agent see the same behaviour.

use std::sync::Arc;

use crate::cri::api::{ContainerEventStream, CriError, RuntimeService, v1};

use super::container::{ContainerError, ContainerManager};
use super::sandbox::{SandboxError, SandboxManager};
use super::streaming::server::StreamingServer;

/// The CRI API version we speak.
pub const CRI_API_VERSION: &str = "v1";
pub const RUNTIME_NAME: &str = "deckhand";

/// deckhand's runtime, in process: what `deckhand cri` serves over gRPC and
/// what `deckhand node` calls directly. (Its ImageService is the image
/// manager itself.)
pub struct Runtime {
    sandboxes: Arc<SandboxManager>,
    containers: Arc<ContainerManager>,
    streaming: Arc<StreamingServer>,
}

impl Runtime {
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

    /// The sandbox's status now, if it exists (for its lifecycle events).
    fn sandbox_state(&self, id: &str) -> Option<v1::PodSandboxStatus> {
        self.sandboxes.status(id, false).ok().and_then(|r| r.status)
    }
}

impl From<ContainerError> for CriError {
    fn from(e: ContainerError) -> Self {
        use tonic::Code;
        let code = match &e {
            ContainerError::InvalidArgument(_) => Code::InvalidArgument,
            ContainerError::NotFound(_) => Code::NotFound,
            ContainerError::AlreadyExists(_) => Code::AlreadyExists,
            ContainerError::FailedPrecondition(_) => Code::FailedPrecondition,
            ContainerError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ContainerError::ResourceExhausted(_) => Code::ResourceExhausted,
            ContainerError::Failed(_) => Code::Internal,
        };
        CriError::new(code, e.to_string())
    }
}

impl From<SandboxError> for CriError {
    fn from(e: SandboxError) -> Self {
        use tonic::Code;
        let code = match &e {
            SandboxError::InvalidArgument(_) => Code::InvalidArgument,
            SandboxError::AlreadyExists(_) => Code::AlreadyExists,
            SandboxError::NotFound(_) | SandboxError::HandlerNotFound(_) => Code::NotFound,
            SandboxError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            SandboxError::Failed(_) => Code::Internal,
        };
        CriError::new(code, e.to_string())
    }
}

#[async_trait::async_trait]
impl RuntimeService for Runtime {
    async fn version(&self, _request: v1::VersionRequest) -> Result<v1::VersionResponse, CriError> {
        Ok(v1::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_API_VERSION.into(),
        })
    }

    async fn runtime_config(
        &self,
        _request: v1::RuntimeConfigRequest,
    ) -> Result<v1::RuntimeConfigResponse, CriError> {
        Ok(v1::RuntimeConfigResponse {
            linux: Some(v1::LinuxRuntimeConfiguration {
                cgroup_driver: v1::CgroupDriver::Cgroupfs as i32,
            }),
        })
    }

    async fn get_container_events(
        &self,
        _request: v1::GetEventsRequest,
    ) -> Result<ContainerEventStream, CriError> {
        use futures::StreamExt;
        let events = self.containers.subscribe_events().map(|event| {
            event
                .map_err(|lagged| CriError::new(tonic::Code::ResourceExhausted, lagged.to_string()))
        });
        Ok(Box::pin(events))
    }

    async fn run_pod_sandbox(
        &self,
        request: v1::RunPodSandboxRequest,
    ) -> Result<v1::RunPodSandboxResponse, CriError> {
        let pod_sandbox_id = self.sandboxes.run(request).await?;
        for kind in [
            v1::ContainerEventType::ContainerCreatedEvent,
            v1::ContainerEventType::ContainerStartedEvent,
        ] {
            self.containers.sandbox_event(&pod_sandbox_id, kind, None);
        }
        Ok(v1::RunPodSandboxResponse { pod_sandbox_id })
    }

    async fn stop_pod_sandbox(
        &self,
        request: v1::StopPodSandboxRequest,
    ) -> Result<v1::StopPodSandboxResponse, CriError> {
        let id = request.pod_sandbox_id;
        let was_ready = self
            .sandbox_state(&id)
            .is_some_and(|s| s.state == v1::PodSandboxState::SandboxReady as i32);
        // Containers first: they live in the sandbox's namespaces and cgroup.
        self.containers.stop_in_sandbox(&id).await?;
        self.sandboxes.stop(&id).await?;
        if was_ready && let Some(s) = self.sandbox_state(&id) {
            self.containers.sandbox_event(
                &s.id,
                v1::ContainerEventType::ContainerStoppedEvent,
                None,
            );
        }
        Ok(v1::StopPodSandboxResponse {})
    }

    async fn remove_pod_sandbox(
        &self,
        request: v1::RemovePodSandboxRequest,
    ) -> Result<v1::RemovePodSandboxResponse, CriError> {
        let id = request.pod_sandbox_id;
        self.containers.remove_in_sandbox(&id).await?;
        let before = self.sandbox_state(&id);
        self.sandboxes.remove(&id).await?;
        if let Some(mut last) = before {
            last.state = v1::PodSandboxState::SandboxNotready as i32;
            let sandbox_id = last.id.clone();
            self.containers.sandbox_event(
                &sandbox_id,
                v1::ContainerEventType::ContainerDeletedEvent,
                Some(last),
            );
        }
        Ok(v1::RemovePodSandboxResponse {})
    }

    async fn pod_sandbox_status(
        &self,
        request: v1::PodSandboxStatusRequest,
    ) -> Result<v1::PodSandboxStatusResponse, CriError> {
        let mut response = self
            .sandboxes
            .status(&request.pod_sandbox_id, request.verbose)?;
        // Read by the kubelet's Evented PLEG.
        if let Some(s) = &response.status {
            response.containers_statuses = self.containers.statuses_in_sandbox(&s.id);
        }
        Ok(response)
    }

    async fn list_pod_sandbox(
        &self,
        request: v1::ListPodSandboxRequest,
    ) -> Result<v1::ListPodSandboxResponse, CriError> {
        let items = self.sandboxes.list(request.filter.as_ref());
        Ok(v1::ListPodSandboxResponse { items })
    }

    async fn status(&self, _request: v1::StatusRequest) -> Result<v1::StatusResponse, CriError> {
        let network = self.sandboxes.network_status().await;
        let conditions = vec![
            v1::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            v1::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: network.ready,
                reason: if network.ready {
                    String::new()
                } else {
                    "NetworkPluginNotReady".into()
                },
                message: if network.ready {
                    String::new()
                } else {
                    network.message
                },
            },
        ];
        // One handler, the default (""): runc. User namespaces are claimed
        // only when this kernel makes them and ID-maps mounts; recursive
        // read-only mounts when runc and the kernel make them.
        let user_namespaces = self.sandboxes.user_namespaces_supported().await.is_ok();
        let runtime_handlers = vec![v1::RuntimeHandler {
            name: String::new(),
            features: Some(v1::RuntimeHandlerFeatures {
                user_namespaces,
                recursive_read_only_mounts: self.containers.supports_recursive_read_only_mounts(),
            }),
        }];
        Ok(v1::StatusResponse {
            status: Some(v1::RuntimeStatus { conditions }),
            runtime_handlers,
            features: Some(v1::RuntimeFeatures {
                supplemental_groups_policy: true,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn create_container(
        &self,
        request: v1::CreateContainerRequest,
    ) -> Result<v1::CreateContainerResponse, CriError> {
        let container_id = self.containers.create(request).await?;
        Ok(v1::CreateContainerResponse { container_id })
    }

    async fn start_container(
        &self,
        request: v1::StartContainerRequest,
    ) -> Result<v1::StartContainerResponse, CriError> {
        self.containers.start(&request.container_id).await?;
        Ok(v1::StartContainerResponse {})
    }

    async fn stop_container(
        &self,
        request: v1::StopContainerRequest,
    ) -> Result<v1::StopContainerResponse, CriError> {
        self.containers
            .stop(&request.container_id, request.timeout)
            .await?;
        Ok(v1::StopContainerResponse {})
    }

    async fn remove_container(
        &self,
        request: v1::RemoveContainerRequest,
    ) -> Result<v1::RemoveContainerResponse, CriError> {
        self.containers.remove(&request.container_id).await?;
        Ok(v1::RemoveContainerResponse {})
    }

    async fn list_containers(
        &self,
        request: v1::ListContainersRequest,
    ) -> Result<v1::ListContainersResponse, CriError> {
        let containers = self.containers.list(request.filter.as_ref());
        Ok(v1::ListContainersResponse { containers })
    }

    async fn container_status(
        &self,
        request: v1::ContainerStatusRequest,
    ) -> Result<v1::ContainerStatusResponse, CriError> {
        Ok(self
            .containers
            .status(&request.container_id, request.verbose)?)
    }

    async fn reopen_container_log(
        &self,
        request: v1::ReopenContainerLogRequest,
    ) -> Result<v1::ReopenContainerLogResponse, CriError> {
        self.containers.reopen_log(&request.container_id).await?;
        Ok(v1::ReopenContainerLogResponse {})
    }

    async fn exec_sync(
        &self,
        request: v1::ExecSyncRequest,
    ) -> Result<v1::ExecSyncResponse, CriError> {
        let output = self
            .containers
            .exec_sync(&request.container_id, request.cmd, request.timeout)
            .await?;
        Ok(v1::ExecSyncResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code: output.exit_code,
        })
    }

    // Exec, Attach and PortForward hand out a URL on the streaming server.
    async fn exec(&self, request: v1::ExecRequest) -> Result<v1::ExecResponse, CriError> {
        let url = self.streaming.exec_url(request)?;
        Ok(v1::ExecResponse { url })
    }

    async fn attach(&self, request: v1::AttachRequest) -> Result<v1::AttachResponse, CriError> {
        let url = self.streaming.attach_url(request)?;
        Ok(v1::AttachResponse { url })
    }

    async fn port_forward(
        &self,
        request: v1::PortForwardRequest,
    ) -> Result<v1::PortForwardResponse, CriError> {
        let url = self.streaming.port_forward_url(request)?;
        Ok(v1::PortForwardResponse { url })
    }

    async fn update_container_resources(
        &self,
        request: v1::UpdateContainerResourcesRequest,
    ) -> Result<v1::UpdateContainerResourcesResponse, CriError> {
        self.containers
            .update_resources(&request.container_id, request.linux)
            .await?;
        Ok(v1::UpdateContainerResourcesResponse {})
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: v1::UpdatePodSandboxResourcesRequest,
    ) -> Result<v1::UpdatePodSandboxResourcesResponse, CriError> {
        self.sandboxes
            .update_resources(
                &request.pod_sandbox_id,
                request.overhead.as_ref(),
                request.resources.as_ref(),
            )
            .await?;
        Ok(v1::UpdatePodSandboxResourcesResponse {})
    }

    async fn container_stats(
        &self,
        request: v1::ContainerStatsRequest,
    ) -> Result<v1::ContainerStatsResponse, CriError> {
        let stats = self
            .containers
            .container_stats(&request.container_id)
            .await?;
        Ok(v1::ContainerStatsResponse { stats: Some(stats) })
    }

    async fn list_container_stats(
        &self,
        request: v1::ListContainerStatsRequest,
    ) -> Result<v1::ListContainerStatsResponse, CriError> {
        let stats = self
            .containers
            .list_container_stats(request.filter.as_ref())
            .await?;
        Ok(v1::ListContainerStatsResponse { stats })
    }

    async fn pod_sandbox_stats(
        &self,
        request: v1::PodSandboxStatsRequest,
    ) -> Result<v1::PodSandboxStatsResponse, CriError> {
        let stats = self
            .containers
            .pod_sandbox_stats(&request.pod_sandbox_id)
            .await?;
        Ok(v1::PodSandboxStatsResponse { stats: Some(stats) })
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: v1::ListPodSandboxStatsRequest,
    ) -> Result<v1::ListPodSandboxStatsResponse, CriError> {
        let stats = self
            .containers
            .list_pod_sandbox_stats(request.filter.as_ref())
            .await?;
        Ok(v1::ListPodSandboxStatsResponse { stats })
    }
}

//! UpdateContainerResources: the new limits are merged into the container's
//! stored OCI spec (a created container starts with them, a restarted
//! deckhand reports them), then, for a running container, applied to its
//! cgroup by containerd's Task Update (runc update). A field the request
//! leaves at zero keeps its value, as in containerd.

use std::sync::Arc;

use containerd_client::services::v1::UpdateTaskRequest;
use oci_spec::runtime::LinuxResources;

use crate::cri::api::v1 as cri;

use super::{Container, ContainerError, ContainerManager, State, blocking, detached, spec};
use crate::sys::cgroup_support;

/// The type containerd's Task Update reads its resources as.
const RESOURCES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

impl ContainerManager {
    pub async fn update_resources(
        self: &Arc<Self>,
        id: &str,
        linux: Option<cri::LinuxContainerResources>,
    ) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        let Some(linux) = linux else {
            // Nothing for Linux to change (a Windows-only request).
            return Ok(());
        };
        let cgroup = container.cgroup.clone();
        let host = blocking(move || cgroup_support::for_cgroup(&cgroup)).await?;
        let requested = spec::resources(&linux, &host)
            .map_err(|e| ContainerError::InvalidArgument(e.to_string()))?;
        let manager = self.clone();
        detached(async move {
            let _op = container.op.lock().await;
            manager.update_locked(&container, &requested).await
        })
        .await
    }

    async fn update_locked(
        &self,
        container: &Container,
        requested: &LinuxResources,
    ) -> Result<(), ContainerError> {
        let cd = &self.containerd;
        let (mut spec, stored) = self.stored_spec(&container.id).await?;
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut resources = linux.resources().clone().unwrap_or_default();
        merge(&mut resources, requested);
        linux.set_resources(Some(resources.clone()));
        spec.set_linux(Some(linux));
        let updated = serde_json::to_vec(&spec)
            .map_err(|e| ContainerError::failed("serialising OCI spec", e))?;
        self.store_spec(&container.id, updated).await?;

        if container.snapshot().state != State::Running {
            // A created container starts with the new spec; an exited one
            // keeps it for the record.
            return Ok(());
        }
        let body = serde_json::to_vec(&resources)
            .map_err(|e| ContainerError::failed("serialising resources", e))?;
        let applied = cd
            .tasks()
            .update(cd.call(UpdateTaskRequest {
                container_id: container.id.clone(),
                resources: Some(prost_types::Any {
                    type_url: RESOURCES_TYPE_URL.into(),
                    value: body,
                }),
                annotations: Default::default(),
            }))
            .await;
        match applied {
            Ok(_) => {
                tracing::info!(id = %container.id, "container resources updated");
                Ok(())
            }
            Err(status) => {
                // The cgroup kept its limits: so does the spec.
                if let Err(e) = self.store_spec(&container.id, stored).await {
                    tracing::warn!(id = %container.id, error = %e, "restoring spec after a failed update");
                }
                let message = format!("updating container resources: {}", status.message());
                Err(match status.code() {
                    tonic::Code::InvalidArgument => ContainerError::InvalidArgument(message),
                    tonic::Code::NotFound => ContainerError::FailedPrecondition(format!(
                        "container {} is not running: {message}",
                        container.id
                    )),
                    _ => ContainerError::Failed(message),
                })
            }
        }
    }
}

/// Lays the requested limits over the current ones: only what the request
/// sets changes.
fn merge(current: &mut LinuxResources, requested: &LinuxResources) {
    if let Some(req) = requested.cpu() {
        let mut cpu = current.cpu().clone().unwrap_or_default();
        if let Some(v) = req.shares() {
            cpu.set_shares(Some(v));
        }
        if let Some(v) = req.quota() {
            cpu.set_quota(Some(v));
        }
        if let Some(v) = req.period() {
            cpu.set_period(Some(v));
        }
        if let Some(v) = req.cpus() {
            cpu.set_cpus(Some(v.clone()));
        }
        if let Some(v) = req.mems() {
            cpu.set_mems(Some(v.clone()));
        }
        current.set_cpu(Some(cpu));
    }
    if let Some(req) = requested.memory() {
        let mut memory = current.memory().unwrap_or_default();
        if let Some(limit) = req.limit() {
            // A swap limit that was the memory limit (no swap) follows it,
            // or the kernel would refuse a limit above it.
            if req.swap().is_none() && memory.swap().is_some() && memory.swap() == memory.limit() {
                memory.set_swap(Some(limit));
            }
            memory.set_limit(Some(limit));
        }
        if let Some(swap) = req.swap() {
            memory.set_swap(Some(swap));
        }
        current.set_memory(Some(memory));
    }
    if let Some(req) = requested.hugepage_limits() {
        let mut limits = current.hugepage_limits().clone().unwrap_or_default();
        for new in req {
            limits.retain(|l| l.page_size() != new.page_size());
            limits.push(new.clone());
        }
        current.set_hugepage_limits(Some(limits));
    }
    if let Some(req) = requested.unified() {
        let mut unified = current.unified().clone().unwrap_or_default();
        unified.extend(req.iter().map(|(k, v)| (k.clone(), v.clone())));
        current.set_unified(Some(unified));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cgroup_support::HostCgroups;

    #[test]
    fn a_request_changes_only_what_it_sets() {
        let mut current = spec::resources(
            &cri::LinuxContainerResources {
                cpu_shares: 512,
                cpu_quota: 20_000,
                cpu_period: 100_000,
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            },
            &HostCgroups::ALL,
        )
        .unwrap();
        let requested = spec::resources(
            &cri::LinuxContainerResources {
                cpu_quota: 50_000,
                memory_limit_in_bytes: 128 << 20,
                cpuset_cpus: "0".into(),
                unified: [("pids.max".to_string(), "100".to_string())].into(),
                ..Default::default()
            },
            &HostCgroups::ALL,
        )
        .unwrap();
        merge(&mut current, &requested);
        let cpu = current.cpu().clone().unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(current.memory().unwrap().limit(), Some(128 << 20));
        assert_eq!(
            current
                .unified()
                .as_ref()
                .unwrap()
                .get("pids.max")
                .map(String::as_str),
            Some("100")
        );
    }

    #[test]
    fn a_swap_equal_to_the_memory_limit_follows_it() {
        let mut current = spec::resources(
            &cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                memory_swap_limit_in_bytes: 64 << 20,
                ..Default::default()
            },
            &HostCgroups::ALL,
        )
        .unwrap();
        let requested = spec::resources(
            &cri::LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                ..Default::default()
            },
            &HostCgroups::ALL,
        )
        .unwrap();
        merge(&mut current, &requested);
        let memory = current.memory().unwrap();
        assert_eq!(
            (memory.limit(), memory.swap()),
            (Some(128 << 20), Some(128 << 20))
        );
    }
}

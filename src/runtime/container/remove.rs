//! RemoveContainer: killed if running, then its task, containerd container,
//! snapshot and files go. Idempotent: an unknown container is fine.

use std::sync::Arc;

use super::create::{Made, Plan};
use super::{ContainerError, ContainerManager, State, detached};

/// How long RemoveContainer waits for an exit being recorded.
const EXIT_HANDLER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl ContainerManager {
    pub async fn remove(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let (manager, id) = (self.clone(), id.to_string());
        detached(async move { manager.remove_to_end(&id).await }).await
    }

    async fn remove_to_end(&self, id: &str) -> Result<(), ContainerError> {
        let container = match self.get(id) {
            Ok(c) => c,
            Err(ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _op = container.op.lock().await;
        self.stop_locked(&container, 0).await?;
        if container.snapshot().state == State::Exited {
            // The exit handler may be deleting the task right now; a second
            // delete racing it fails as the shim goes away.
            let mut exited = container.exited.subscribe();
            let _ = tokio::time::timeout(EXIT_HANDLER_WAIT, exited.wait_for(|e| *e)).await;
        }
        // The exit handler deletes the task; a created-only container may
        // still have none, or a handler that timed out may have left one.
        if let Err(status) = self.delete_task(&container.id).await {
            let error = ContainerError::from_status("deleting task", &status);
            // A wedged shim (a deadline, or containerd failing fast on a
            // shim connection it gave up on): kill it, and containerd
            // drops the task. Without a shim there is nothing to kill.
            if !super::stop::kill_shim(container.snapshot().pid) {
                return Err(error);
            }
            tracing::warn!(id = %container.id, "shim not answering a delete; killed it");
            let mut exited = container.exited.subscribe();
            let _ = tokio::time::timeout(EXIT_HANDLER_WAIT, exited.wait_for(|e| *e)).await;
            if let Err(status) = self.delete_task(&container.id).await {
                return Err(ContainerError::from_status("deleting task", &status));
            }
        }
        let plan = Plan {
            id: container.id.clone(),
            chain_id: String::new(),
            image_name: String::new(),
            cgroup: container.cgroup.clone(),
            dir: container.dir.clone(),
            container: None,
        };
        self.unmake(
            &plan,
            &Made {
                dir: true,
                snapshot: true,
                container: true,
            },
        )
        .await?;
        {
            let _order = self.events.order();
            self.containers.lock().remove(&container.id);
            self.emit(
                &container.id,
                &container.sandbox_id,
                crate::cri::api::v1::ContainerEventType::ContainerDeletedEvent,
            );
        }
        self.cpu_rates.forget(&container.id);
        let mut names = self.names.lock();
        if names.get(&container.reserved_name) == Some(&container.id) {
            names.remove(&container.reserved_name);
        }
        tracing::info!(id = %container.id, "container removed");
        Ok(())
    }
}

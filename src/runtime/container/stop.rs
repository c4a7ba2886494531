//! StopContainer: SIGTERM, the grace period, SIGKILL; done once the exit
//! event is recorded. Idempotent: a stopped or unknown container is fine.

use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::KillRequest;

use super::{Container, ContainerError, ContainerManager, State, detached, is_not_found};

/// How long an exit may take after SIGKILL before we report failure.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl ContainerManager {
    pub async fn stop(self: &Arc<Self>, id: &str, timeout_s: i64) -> Result<(), ContainerError> {
        let (manager, id) = (self.clone(), id.to_string());
        detached(async move {
            let container = match manager.get(&id) {
                Ok(c) => c,
                Err(ContainerError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            let _op = container.op.lock().await;
            manager.stop_locked(&container, timeout_s).await
        })
        .await
    }

    /// Stops a container whose `op` lock the caller holds.
    pub(super) async fn stop_locked(
        &self,
        container: &Container,
        timeout_s: i64,
    ) -> Result<(), ContainerError> {
        if container.snapshot().state != State::Running {
            return Ok(());
        }
        let mut exited = container.exited.subscribe();
        if timeout_s > 0 {
            self.kill(container, libc::SIGTERM).await?;
            let grace = Duration::from_secs(timeout_s as u64);
            if tokio::time::timeout(grace, exited.wait_for(|e| *e))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tracing::info!(id = %container.id, "container outlived its grace period; killing");
        }
        self.kill(container, libc::SIGKILL).await?;
        tokio::time::timeout(KILL_WAIT, exited.wait_for(|e| *e))
            .await
            .map(|_| ())
            .map_err(|_| {
                ContainerError::Failed(format!(
                    "container {} did not exit after SIGKILL",
                    container.id
                ))
            })
    }

    async fn kill(&self, container: &Container, signal: i32) -> Result<(), ContainerError> {
        let cd = &self.containerd;
        let killed = cd
            .tasks()
            .kill(cd.request(KillRequest {
                container_id: container.id.clone(),
                exec_id: String::new(),
                signal: signal as u32,
                // Every process of the container, not only its init.
                all: true,
            }))
            .await;
        match killed {
            Ok(_) => Ok(()),
            // Gone already: its exit event is on its way (or was handled).
            Err(status) if is_not_found(&status) => Ok(()),
            Err(status) => Err(ContainerError::failed(
                &format!("signalling container {}", container.id),
                status.message(),
            )),
        }
    }
}

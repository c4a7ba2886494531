//! ReopenContainerLog: the kubelet rotated the log file; SIGUSR1 tells the
//! container's deckhand-log-driver (run by the shim) to open a new one, and
//! the call returns once that file exists, as the kubelet expects.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the log driver gets to open the new file.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

use super::{ContainerError, ContainerManager, State, blocking};

impl ContainerManager {
    pub async fn reopen_log(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        if container.snapshot().state != State::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                container.id
            )));
        }
        let Some(log_path) = container.log_path.clone() else {
            return Ok(());
        };
        let pid_file = container.dir.join("log-driver.pid");
        let pid = blocking(move || std::fs::read_to_string(pid_file))
            .await?
            .map_err(|e| ContainerError::failed("reading the log driver's pid file", e))?;
        let pid: i32 = pid
            .trim()
            .parse()
            .map_err(|e| ContainerError::failed("the log driver's pid file", e))?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(|e| ContainerError::failed("signalling the log driver", e))?;
        let deadline = Instant::now() + REOPEN_WAIT;
        loop {
            let path = log_path.clone();
            if blocking(move || path.exists()).await? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ContainerError::Failed(format!(
                    "the log driver did not reopen {} within {REOPEN_WAIT:?}",
                    log_path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

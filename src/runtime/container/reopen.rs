//! ReopenContainerLog: the kubelet rotated the log file; SIGUSR1 tells the
//! container's deckhand-log-driver (run by the shim) to open a new one.

use std::sync::Arc;

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
        if container.log_path.is_none() {
            return Ok(());
        }
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
        .map_err(|e| ContainerError::failed("signalling the log driver", e))
    }
}

//! StopContainer, as containerd's CRI plugin: the stop signal (the
//! request's, the image's, else SIGTERM) to the container's init process
//! only, so an application that traps it shuts its children down in its own
//! order; after the grace period SIGKILL to every process; done once the
//! exit event is recorded. Idempotent: a stopped or unknown container is
//! fine.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use containerd_client::services::v1::KillRequest;
use nix::sys::signal::Signal;

use crate::cri::v1 as cri;

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
            if container.stop_signaled.swap(true, Ordering::SeqCst) {
                tracing::info!(id = %container.id, "stop signal sent already; waiting again");
            } else {
                self.kill(container, container.stop_signal as i32, false)
                    .await?;
            }
            let grace = Duration::from_secs(timeout_s as u64);
            if tokio::time::timeout(grace, exited.wait_for(|e| *e))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tracing::info!(id = %container.id, "container outlived its grace period; killing");
        }
        self.kill(container, libc::SIGKILL, true).await?;
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

    /// `all`: every process of the container, else its init only.
    async fn kill(
        &self,
        container: &Container,
        signal: i32,
        all: bool,
    ) -> Result<(), ContainerError> {
        let cd = &self.containerd;
        let killed = cd
            .tasks()
            .kill(cd.request(KillRequest {
                container_id: container.id.clone(),
                exec_id: String::new(),
                signal: signal as u32,
                all,
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

/// The signal StopContainer sends first: the request's (`stop_signal` in
/// the container config), else the image's `StopSignal`, else SIGTERM.
pub(super) fn stop_signal(requested: i32, image: Option<&str>) -> Signal {
    let requested = cri::Signal::try_from(requested).unwrap_or(cri::Signal::RuntimeDefault);
    if requested != cri::Signal::RuntimeDefault
        && let Some(signal) = parse_signal(requested.as_str_name())
    {
        return signal;
    }
    match image.filter(|s| !s.is_empty()) {
        Some(name) => parse_signal(name).unwrap_or_else(|| {
            tracing::warn!(signal = name, "unknown image stop signal; using SIGTERM");
            Signal::SIGTERM
        }),
        None => Signal::SIGTERM,
    }
}

/// `SIGQUIT`, `QUIT`, `quit` or `3`.
fn parse_signal(name: &str) -> Option<Signal> {
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).ok()
}

/// The CRI's name for a signal (ContainerStatus.stop_signal).
pub(super) fn cri_signal(signal: Signal) -> cri::Signal {
    cri::Signal::from_str_name(signal.as_str()).unwrap_or(cri::Signal::Sigterm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_wins_then_the_image_then_sigterm() {
        let quit = cri::Signal::Sigquit as i32;
        assert_eq!(stop_signal(quit, Some("SIGUSR1")), Signal::SIGQUIT);
        assert_eq!(stop_signal(0, Some("SIGUSR1")), Signal::SIGUSR1);
        assert_eq!(stop_signal(0, Some("usr2")), Signal::SIGUSR2);
        assert_eq!(stop_signal(0, Some("9")), Signal::SIGKILL);
        assert_eq!(stop_signal(0, Some("SIGNOPE")), Signal::SIGTERM);
        assert_eq!(stop_signal(0, Some("")), Signal::SIGTERM);
        assert_eq!(stop_signal(0, None), Signal::SIGTERM);
        assert_eq!(cri_signal(Signal::SIGQUIT), cri::Signal::Sigquit);
        assert_eq!(cri_signal(Signal::SIGTERM), cri::Signal::Sigterm);
    }
}

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
use crate::sys::process;

use super::{Container, ContainerError, ContainerManager, State, detached, is_not_found};

/// How long an exit may take after SIGKILL before we report failure.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl ContainerManager {
    pub async fn stop(self: &Arc<Self>, id: &str, timeout_s: i64) -> Result<(), ContainerError> {
        if id.is_empty() {
            return Err(ContainerError::InvalidArgument(
                "container id is empty".into(),
            ));
        }
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
                match self
                    .kill(container, container.stop_signal as i32, false)
                    .await
                {
                    Ok(()) => {}
                    // A wedged shim: go on to SIGKILL, which kills it. Any
                    // other failure to signal (containerd may drop its
                    // connection to a shim that stopped answering, and then
                    // fails fast) also goes on to SIGKILL: StopContainer's
                    // promise is a stopped container, not a delivered signal.
                    Err(error) => {
                        let wedged = matches!(error, ContainerError::DeadlineExceeded(_));
                        tracing::warn!(id = %container.id, %error, "stop signal not delivered");
                        container.stop_signaled.store(false, Ordering::SeqCst);
                        return self.force_stop(container, &mut exited, wedged).await;
                    }
                }
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
        self.force_stop(container, &mut exited, false).await
    }

    /// SIGKILL to every process, then the exit; a shim that does not answer
    /// the kill is killed itself (containerd then cleans the task up and
    /// reports its exit).
    async fn force_stop(
        &self,
        container: &Container,
        exited: &mut tokio::sync::watch::Receiver<bool>,
        shim_wedged: bool,
    ) -> Result<(), ContainerError> {
        let killed = if shim_wedged {
            Err(ContainerError::DeadlineExceeded(
                "the stop signal was not delivered in time".into(),
            ))
        } else {
            self.kill(container, libc::SIGKILL, true).await
        };
        if let Err(error) = killed {
            tracing::warn!(id = %container.id, %error, "shim not answering; killing it");
            if !kill_shim(container.snapshot().pid) {
                return Err(error);
            }
        }
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
            .kill(cd.call(KillRequest {
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
            Err(status) => Err(ContainerError::from_status(
                &format!("signalling container {}", container.id),
                &status,
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

/// Kills the containerd shim that runs the container whose init is `pid`
/// (the shim is the init's parent: it reaps as a subreaper). Returns whether
/// a shim was found and signalled.
pub(super) fn kill_shim(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    let Some(shim) = process::parent(pid) else {
        return false;
    };
    if !process::comm(shim).is_some_and(|c| c.starts_with("containerd-shim")) {
        tracing::warn!(pid, parent = shim, "the container's parent is not a shim");
        return false;
    }
    let shim = nix::unistd::Pid::from_raw(shim);
    // SIGKILL reaches a stopped process too.
    nix::sys::signal::kill(shim, Signal::SIGKILL).is_ok()
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

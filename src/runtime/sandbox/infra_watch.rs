//! Watching the infra process: a pidfd, a reaper task, and what its exit
//! does to the sandbox.

use super::*;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

impl SandboxManager {
    /// When the infra process dies by itself, the sandbox is no longer ready.
    pub(super) fn on_infra_exit(self: &Arc<Self>, sandbox: Arc<Sandbox>, mut handle: InfraHandle) {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            let _ = handle.exited.wait_for(|e| *e).await;
            {
                let mut record = sandbox.record.lock();
                if record.state != SandboxState::Ready {
                    return;
                }
                tracing::warn!(id = %record.id, "infra process exited by itself; sandbox not ready");
                record.state = SandboxState::NotReady;
            }
            // Persist under `op`, after any stop/remove in flight, and only
            // while the sandbox still exists (a removed one has no record).
            let _op = sandbox.op.lock().await;
            let Some(manager) = manager.upgrade() else {
                return;
            };
            let current = sandbox.record.lock().clone();
            let listed = manager
                .sandboxes
                .lock()
                .get(&current.id)
                .is_some_and(|s| Arc::ptr_eq(s, &sandbox));
            if listed {
                let _ = manager.save(&current).await;
            }
        });
    }
}

/// Opens a pidfd on the infra process and spawns the task that reaps it when
/// it exits (a child of ours would stay a zombie otherwise).
pub(super) fn watch_pidfd(infra: InfraProcess) -> std::io::Result<InfraHandle> {
    let pidfd = process::PidFd::open(infra.pid)?;
    // The pid may have been recycled between the liveness check and the open.
    if process::start_time(infra.pid)? != infra.start_time {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: PidFd owns its descriptor and never replaces or closes it while
    // the AsyncFd holds it; as_raw_fd always returns that one descriptor.
    let pidfd = Arc::new(
        unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?,
    );
    let (tx, rx) = watch::channel(false);
    let fd = pidfd.clone();
    tokio::spawn(async move {
        // A pidfd turns readable once the process has exited.
        if let Ok(guard) = fd.readable().await {
            drop(guard);
        }
        process::reap(infra.pid);
        let _ = tx.send(true);
    });
    Ok(InfraHandle {
        pid: infra.pid,
        exited: rx,
        signal: Arc::new(move |signal| pidfd.get_ref().signal(signal)),
    })
}

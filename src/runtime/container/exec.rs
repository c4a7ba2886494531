//! ExecSync: a process in a running container, its output collected
//! through FIFOs the shim writes to; a timeout kills that process and what
//! it started, never the container.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, KillRequest, StartRequest, WaitRequest,
};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::{ContainerError, ContainerManager, State, blocking, detached};

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// Each stream keeps at most this much (a CRI reply must stay under 16 MiB).
const MAX_OUTPUT: usize = 6 << 20;
/// How long we wait for a killed exec to go, and for its output to end.
const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// ExecSync calls one container runs at once; more are ResourceExhausted.
/// A kubelet runs at most one per probe and hook.
const MAX_CONCURRENT_EXECS: usize = 16;

pub(super) fn exec_slots() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_EXECS))
}

pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl ContainerManager {
    pub async fn exec_sync(
        self: &Arc<Self>,
        id: &str,
        cmd: Vec<String>,
        timeout_s: i64,
    ) -> Result<ExecOutput, ContainerError> {
        if cmd.is_empty() {
            return Err(ContainerError::InvalidArgument(
                "exec cmd is required".into(),
            ));
        }
        let container = self.get(id)?;
        if container.snapshot().state != State::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                container.id
            )));
        }
        let slot = container.execs.clone().try_acquire_owned().map_err(|_| {
            ContainerError::ResourceExhausted(format!(
                "container {} already runs {MAX_CONCURRENT_EXECS} execs",
                container.id
            ))
        })?;
        let manager = self.clone();
        let exec_id = format!("exec-{}", &crate::runtime::sandbox::new_id()[..16]);
        let dir = container.dir.join(&exec_id);
        let container_id = container.id.clone();
        // The work runs detached so that its cleanup always completes; the
        // caller going away (a cancelled call, a client deadline) drops
        // `_cancel` and the exec is killed, as a timeout kills it.
        let (_cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        detached(async move {
            let _slot = slot;
            let d = dir.clone();
            blocking(move || make_fifos(&d))
                .await?
                .map_err(|e| ContainerError::failed("creating exec FIFOs", e))?;
            let cancelled = async {
                let _ = cancelled.await;
            };
            let result = manager
                .exec_in(&container_id, &exec_id, &dir, cmd, timeout_s, cancelled)
                .await;
            let d = dir.clone();
            let _ = blocking(move || std::fs::remove_dir_all(d)).await;
            result
        })
        .await
    }

    async fn exec_in(
        &self,
        container_id: &str,
        exec_id: &str,
        dir: &Path,
        cmd: Vec<String>,
        timeout_s: i64,
        cancelled: impl Future<Output = ()>,
    ) -> Result<ExecOutput, ContainerError> {
        let cd = &self.containerd;
        let process = self.exec_process(container_id, cmd, false).await?;

        let (stdout_path, stderr_path) = (dir.join("stdout"), dir.join("stderr"));
        let open = |path: &Path| {
            // Our own write end keeps a read from seeing EOF before the shim
            // has opened the FIFO; it goes once the process has exited.
            let reader = pipe::OpenOptions::new().open_receiver(path)?;
            let writer = pipe::OpenOptions::new().open_sender(path)?;
            Ok::<_, std::io::Error>((reader, writer))
        };
        let (out_r, out_w) =
            open(&stdout_path).map_err(|e| ContainerError::failed("opening exec FIFO", e))?;
        let (err_r, err_w) =
            open(&stderr_path).map_err(|e| ContainerError::failed("opening exec FIFO", e))?;
        let stdout = tokio::spawn(collect(out_r));
        let stderr = tokio::spawn(collect(err_r));

        cd.tasks()
            .exec(cd.call(ExecProcessRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
                stdout: stdout_path.to_string_lossy().into_owned(),
                stderr: stderr_path.to_string_lossy().into_owned(),
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.into(),
                    value: process,
                }),
                ..Default::default()
            }))
            .await
            .map_err(|s| ContainerError::from_status("creating exec process", &s))?;
        let result = self
            .run_exec(container_id, exec_id, timeout_s, cancelled)
            .await;
        drop((out_w, err_w));
        self.delete_exec_process(container_id, exec_id).await;
        let exit_code = result?;
        let drained = |h: tokio::task::JoinHandle<Vec<u8>>| async move {
            match tokio::time::timeout(DRAIN_WAIT, h).await {
                Ok(Ok(bytes)) => bytes,
                _ => Vec::new(),
            }
        };
        Ok(ExecOutput {
            stdout: drained(stdout).await,
            stderr: drained(stderr).await,
            exit_code,
        })
    }

    /// Removes a finished exec process from containerd (its exit is
    /// already known, so a failure here is only logged).
    pub(super) async fn delete_exec_process(&self, container_id: &str, exec_id: &str) {
        let cd = &self.containerd;
        if let Err(status) = cd
            .tasks()
            .delete_process(cd.call(DeleteProcessRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
        {
            tracing::debug!(%exec_id, %status, "deleting exec process");
        }
    }

    /// The container's process spec with `cmd` as its arguments, as JSON.
    pub(super) async fn exec_process(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        tty: bool,
    ) -> Result<Vec<u8>, ContainerError> {
        let (spec, _) = self.stored_spec(container_id).await?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(cmd));
        process.set_terminal(Some(tty));
        if tty {
            // As containerd and docker: a terminal says what it is.
            let mut env = process.env().clone().unwrap_or_default();
            if !env.iter().any(|e| e.starts_with("TERM=")) {
                env.push("TERM=xterm".into());
            }
            process.set_env(Some(env));
        }
        serde_json::to_vec(&process)
            .map_err(|e| ContainerError::failed("serialising exec process", e))
    }

    /// Starts the exec and waits for its exit code; past the timeout (0:
    /// none) or once `cancelled` resolves, the exec process, and only it,
    /// is killed.
    pub(super) async fn run_exec(
        &self,
        container_id: &str,
        exec_id: &str,
        timeout_s: i64,
        cancelled: impl Future<Output = ()>,
    ) -> Result<i32, ContainerError> {
        let cd = &self.containerd;
        let pid = cd
            .tasks()
            .start(cd.call(StartRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(|s| ContainerError::from_status("starting exec process", &s))?
            .into_inner()
            .pid;
        let wait = || {
            let mut tasks = cd.tasks();
            let request = cd.request(WaitRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
            });
            async move { tasks.wait(request).await }
        };
        let deadline = async {
            if timeout_s > 0 {
                tokio::time::sleep(Duration::from_secs(timeout_s as u64)).await
            } else {
                std::future::pending().await
            }
        };
        let waited = tokio::select! {
            r = wait() => Ok(r),
            () = deadline => Err(ContainerError::DeadlineExceeded(format!(
                "command timed out after {timeout_s}s"
            ))),
            () = cancelled => Err(ContainerError::Failed("exec cancelled by the caller".into())),
        };
        match waited {
            Ok(r) => r
                .map(|r| r.into_inner().exit_status as i32)
                .map_err(|s| ContainerError::from_status("waiting for exec process", &s)),
            Err(why) => {
                // What the exec started (`sh -c "sleep 60"`'s sleep) goes
                // too: an orphan would linger in the container.
                let descendants =
                    blocking(move || crate::sys::process::descendants(pid as i32)).await?;
                let killed = cd
                    .tasks()
                    .kill(cd.call(KillRequest {
                        container_id: container_id.to_string(),
                        exec_id: exec_id.to_string(),
                        signal: libc::SIGKILL as u32,
                        all: false,
                    }))
                    .await;
                if let Err(status) = killed {
                    tracing::warn!(%exec_id, %status, "killing timed-out exec");
                }
                for child in descendants {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(child),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = tokio::time::timeout(DRAIN_WAIT, wait()).await;
                Err(why)
            }
        }
    }
}

fn make_fifos(dir: &Path) -> nix::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    for name in ["stdout", "stderr"] {
        nix::unistd::mkfifo(
            &dir.join(name),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )?;
    }
    Ok(())
}

/// Reads a FIFO to its end, keeping at most [`MAX_OUTPUT`] bytes (and
/// draining the rest, so the writer never blocks).
async fn collect(mut reader: pipe::Receiver) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

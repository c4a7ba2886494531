//! Exec over the streaming server: a process in a running container (as
//! ExecSync: a containerd exec with FIFOs), its stdio wired to a
//! [`Session`]: the client's stdin into the stdin FIFO, stdout and stderr
//! FIFOs out to the client, terminal sizes to ResizePty. A client that goes
//! away kills the process (as containerd's CRI plugin does).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::{
    CloseIoRequest, ExecProcessRequest, KillRequest, ResizePtyRequest, StartRequest, WaitRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::{ContainerError, ContainerManager, State, blocking};
use crate::runtime::containerd::Containerd;
use crate::runtime::streaming::remotecommand::{Exit, Output, Session, TermSize};

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// How long output may still flow after the process has exited.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

impl ContainerManager {
    /// NotFound / FailedPrecondition unless `id` names a running container.
    pub fn check_running(&self, id: &str) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        if container.snapshot().state != State::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                container.id
            )));
        }
        Ok(())
    }

    /// Runs `cmd` in the container with the session's streams, then tells
    /// the client how it ended.
    pub async fn exec_session(
        self: &Arc<Self>,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        mut session: Session,
    ) {
        let exit = match self.exec_streams(id, cmd, tty, &mut session).await {
            Ok(code) => Exit::Code(code),
            Err(e) => Exit::Error(e.to_string()),
        };
        session.finish(exit).await;
    }

    async fn exec_streams(
        self: &Arc<Self>,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        session: &mut Session,
    ) -> Result<i32, ContainerError> {
        self.check_running(id)?;
        let container = self.get(id)?;
        let exec_id = format!("exec-{}", &crate::runtime::sandbox::new_id()[..16]);
        let dir = container.dir.join(&exec_id);
        let d = dir.clone();
        let (stdin, stdout, stderr) = (
            session.stdin.is_some(),
            session.stdout.is_some(),
            session.stderr.is_some() && !tty,
        );
        blocking(move || make_fifos(&d, stdin, stdout, stderr))
            .await?
            .map_err(|e| ContainerError::failed("creating exec FIFOs", e))?;
        let result = self
            .exec_in_session(&container.id, &exec_id, &dir, cmd, tty, session)
            .await;
        let _ = blocking(move || std::fs::remove_dir_all(dir)).await;
        result
    }

    async fn exec_in_session(
        &self,
        container_id: &str,
        exec_id: &str,
        dir: &Path,
        cmd: Vec<String>,
        tty: bool,
        session: &mut Session,
    ) -> Result<i32, ContainerError> {
        let cd = &self.containerd;
        let process = self.exec_process(container_id, cmd, tty).await?;
        let path = |name: &str| dir.join(name);
        let fifo_err = |e| ContainerError::failed("opening exec FIFO", e);

        // Our own write ends keep the readers from seeing EOF before the
        // shim has opened the FIFOs; they go once the process has exited.
        let mut keep_open = Vec::new();
        let mut copies = Vec::new();
        let mut outputs = vec![];
        if let Some(out) = session.stdout.clone() {
            outputs.push(("stdout", out));
        }
        if let Some(err) = session.stderr.clone().filter(|_| !tty) {
            outputs.push(("stderr", err));
        }
        for (name, out) in &outputs {
            let reader = pipe::OpenOptions::new()
                .open_receiver(path(name))
                .map_err(fifo_err)?;
            keep_open.push(
                pipe::OpenOptions::new()
                    .open_sender(path(name))
                    .map_err(fifo_err)?,
            );
            copies.push(tokio::spawn(copy_out(reader, out.clone())));
        }
        let stdin = match session.stdin.take() {
            Some(rx) => Some((
                rx,
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(path("stdin"))
                    .map_err(fifo_err)?,
            )),
            None => None,
        };
        let named = |name: &str, wanted: bool| {
            if wanted {
                path(name).to_string_lossy().into_owned()
            } else {
                String::new()
            }
        };
        cd.tasks()
            .exec(cd.call(ExecProcessRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: named("stdin", stdin.is_some()),
                stdout: named("stdout", session.stdout.is_some()),
                stderr: named("stderr", session.stderr.is_some() && !tty),
                terminal: tty,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.into(),
                    value: process,
                }),
            }))
            .await
            .map_err(|s| ContainerError::from_status("creating exec process", &s))?;

        let result = self
            .run_session_process(container_id, exec_id, stdin, session)
            .await;
        drop(keep_open);
        self.delete_exec_process(container_id, exec_id).await;
        for copy in copies {
            let _ = tokio::time::timeout(DRAIN_WAIT, copy).await;
        }
        result
    }

    /// Starts the exec, feeds it stdin and terminal sizes, and waits for its
    /// exit; kills it if the client goes first.
    async fn run_session_process(
        &self,
        container_id: &str,
        exec_id: &str,
        stdin: Option<(mpsc::Receiver<bytes::Bytes>, pipe::Sender)>,
        session: &mut Session,
    ) -> Result<i32, ContainerError> {
        let cd = &self.containerd;
        cd.tasks()
            .start(cd.call(StartRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await
            .map_err(|s| ContainerError::from_status("starting exec process", &s))?;
        let feeders = Feeders::start(cd, container_id, exec_id, stdin, session.resize.take());
        let wait = {
            let mut tasks = cd.tasks();
            let request = cd.request(WaitRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
            });
            async move { tasks.wait(request).await }
        };
        let result = tokio::select! {
            waited = wait => waited
                .map(|r| r.into_inner().exit_status as i32)
                .map_err(|s| ContainerError::from_status("waiting for exec process", &s)),
            _ = session.gone() => {
                tracing::info!(%exec_id, "exec client went away; killing the process");
                let _ = cd.tasks().kill(cd.call(KillRequest {
                    container_id: container_id.to_string(),
                    exec_id: exec_id.to_string(),
                    signal: libc::SIGKILL as u32,
                    all: false,
                })).await;
                Err(ContainerError::Failed("client went away".into()))
            }
        };
        drop(feeders);
        result
    }
}

/// The tasks that feed an exec (or attach) its input; stopped on drop.
pub(super) struct Feeders(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Feeders {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Feeders {
    /// Copies stdin into the FIFO (closing the process's stdin when the
    /// client's ends) and applies terminal sizes through ResizePty.
    pub(super) fn start(
        cd: &Containerd,
        container_id: &str,
        exec_id: &str,
        stdin: Option<(mpsc::Receiver<bytes::Bytes>, pipe::Sender)>,
        resize: Option<mpsc::Receiver<TermSize>>,
    ) -> Feeders {
        let mut tasks = Vec::new();
        if let Some((mut rx, mut fifo)) = stdin {
            let cd = cd.clone();
            let (container_id, exec_id) = (container_id.to_string(), exec_id.to_string());
            tasks.push(tokio::spawn(async move {
                while let Some(chunk) = rx.recv().await {
                    if fifo.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                drop(fifo);
                // The shim holds a write end of its own: CloseIO drops it,
                // and the process reads EOF.
                let closed = cd
                    .tasks()
                    .close_io(cd.call(CloseIoRequest {
                        container_id: container_id.clone(),
                        exec_id: exec_id.clone(),
                        stdin: true,
                    }))
                    .await;
                if let Err(status) = closed {
                    tracing::debug!(%container_id, %exec_id, %status, "closing stdin");
                }
            }));
        }
        if let Some(mut sizes) = resize {
            let cd = cd.clone();
            let (container_id, exec_id) = (container_id.to_string(), exec_id.to_string());
            tasks.push(tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    let resized = cd
                        .tasks()
                        .resize_pty(cd.call(ResizePtyRequest {
                            container_id: container_id.clone(),
                            exec_id: exec_id.clone(),
                            width: u32::from(size.width),
                            height: u32::from(size.height),
                        }))
                        .await;
                    if let Err(status) = resized {
                        tracing::debug!(%container_id, %exec_id, %status, "resizing the terminal");
                    }
                }
            }));
        }
        Feeders(tasks)
    }
}

/// Copies a FIFO to the client until its end.
async fn copy_out(mut reader: pipe::Receiver, out: Output) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !out.write(&buf[..n]).await {
                    return;
                }
            }
        }
    }
}

fn make_fifos(dir: &Path, stdin: bool, stdout: bool, stderr: bool) -> nix::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    for (name, wanted) in [("stdin", stdin), ("stdout", stdout), ("stderr", stderr)] {
        if wanted {
            nix::unistd::mkfifo(
                &dir.join(name),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )?;
        }
    }
    Ok(())
}

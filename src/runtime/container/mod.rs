//! Containers: how a CRI container config becomes an OCI runtime spec
//! (spec.rs), which identity its process runs as (user.rs), and their life
//! in containerd: create, start, stop, remove, status, stats, resource
//! updates (one file each), with exits learnt from containerd's event stream
//! (events.rs) and every step told to GetContainerEvents subscribers
//! (cri_events.rs).

mod adopt;
mod attach;
mod create;
pub mod cri_events;
pub mod devices;
mod events;
mod exec;
mod exec_session;
pub mod features;
mod remove;
mod reopen;
pub mod request_checks;
mod rootfs;
pub mod spec;
mod start;
mod stats;
mod status;
mod stdio;
mod stop;
mod stored_spec;
mod update;
pub mod user;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cri::api::v1 as cri;
use tokio::sync::watch;

use crate::runtime::containerd::Containerd;
use crate::runtime::image::ImageManager;
use crate::runtime::sandbox::{SandboxError, SandboxManager};

/// The runtime every container runs under.
const RUNTIME: &str = "io.containerd.runc.v2";
/// The type containerd stores an OCI spec under.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Failed(String),
}

impl ContainerError {
    fn failed(context: &str, e: impl std::fmt::Display) -> Self {
        ContainerError::Failed(format!("{context}: {e}"))
    }

    /// A failed containerd call: DeadlineExceeded stays that (the shim or
    /// containerd did not answer in time), the rest is Internal.
    fn from_status(context: &str, status: &tonic::Status) -> Self {
        // containerd passes the deadline on to the shim over ttrpc; when
        // that inner deadline fires first, the answer is Unknown with Go's
        // "context deadline exceeded" as its message, not DeadlineExceeded.
        let timed_out = match status.code() {
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => true,
            tonic::Code::Unknown => status.message().contains("context deadline exceeded"),
            _ => false,
        };
        if timed_out {
            ContainerError::DeadlineExceeded(format!(
                "{context}: containerd did not answer within {:?} (the container's shim may be wedged): {}",
                crate::runtime::containerd::CALL_TIMEOUT,
                status.message()
            ))
        } else {
            Self::failed(context, status.message())
        }
    }
}

impl From<SandboxError> for ContainerError {
    fn from(e: SandboxError) -> Self {
        match e {
            e @ (SandboxError::NotFound(_) | SandboxError::HandlerNotFound(_)) => {
                ContainerError::NotFound(e.to_string())
            }
            SandboxError::InvalidArgument(m) => ContainerError::InvalidArgument(m),
            SandboxError::AlreadyExists(m) => ContainerError::AlreadyExists(m),
            SandboxError::DeadlineExceeded(m) => ContainerError::DeadlineExceeded(m),
            SandboxError::Failed(m) => ContainerError::Failed(m),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ContainerManagerConfig {
    /// Per-container files (the log driver's pid file, the passwd view's
    /// mount point): `<run_dir>/containers/<id>/`.
    pub run_dir: PathBuf,
    /// `deckhand-log-driver`: a link to this binary under that name (the
    /// driver dispatches on argv[0]).
    pub log_driver: PathBuf,
    pub snapshotter: String,
    /// Where `Localhost` seccomp profiles live.
    pub seccomp_root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Exited,
}

/// What changes over a container's life.
#[derive(Debug, Clone)]
struct Runtime {
    state: State,
    pid: u32,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    reason: String,
    message: String,
    /// containerd reported an OOM kill in the container's cgroup.
    oom: bool,
}

struct Container {
    id: String,
    sandbox_id: String,
    metadata: cri::ContainerMetadata,
    /// The image as the request named it (and as the user wrote it, when
    /// the kubelet passes that along).
    image: String,
    user_specified_image: String,
    /// The image's first repo tag when the container was made (what
    /// ContainerStatus reports as its image, as containerd does: the
    /// kubelet creates containers by image id).
    image_tag: Option<String>,
    /// The image's repo digest (its id when it has none), and its id (the
    /// config digest).
    image_ref: String,
    image_id: String,
    /// The identity the first process starts with (set once resolved
    /// against the image's files, during CreateContainer).
    user: std::sync::OnceLock<cri::ContainerUser>,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    mounts: Vec<cri::Mount>,
    log_path: Option<PathBuf>,
    /// ExecSync calls in flight, capped: a shim given hundreds at once
    /// wedges for good (containerd-shim-runc-v2's own lock).
    execs: Arc<tokio::sync::Semaphore>,
    created_at: i64,
    /// `<sandbox id>/<name>/<attempt>`: the name this container holds.
    reserved_name: String,
    /// `<run_dir>/containers/<id>`.
    dir: PathBuf,
    /// The container's cgroup (cgroupfs path), for the OOM check.
    cgroup: String,
    runtime: Mutex<Runtime>,
    /// True once the init process's exit is recorded and its task deleted.
    exited: watch::Sender<bool>,
    /// The signal StopContainer sends first: the request's, else the
    /// image's, else SIGTERM.
    stop_signal: nix::sys::signal::Signal,
    /// StopContainer sent it already: a second stop with a grace period
    /// waits without signalling again (as containerd), so a process that
    /// traps it sees it once.
    stop_signaled: std::sync::atomic::AtomicBool,
    /// Serialises start/stop/remove of one container.
    op: tokio::sync::Mutex<()>,
    /// Serialises writes of the container's record to containerd, each
    /// taken from the state at the moment it is written: a start's save
    /// racing the exit's must not land last with "running" in it.
    record_write: tokio::sync::Mutex<()>,
    /// Its stdio as the request asked for it.
    stdio: Stdio,
    /// Our end of the container's stdin FIFO, while its stdin is open.
    stdin: tokio::sync::Mutex<Option<tokio::net::unix::pipe::Sender>>,
}

/// A container's stdio options (CRI `stdin`, `stdin_once`, `tty`).
#[derive(Debug, Clone, Copy, Default)]
struct Stdio {
    stdin: bool,
    stdin_once: bool,
    tty: bool,
}

impl Runtime {
    fn created() -> Self {
        Runtime {
            state: State::Created,
            pid: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            oom: false,
        }
    }
}

impl Container {
    fn snapshot(&self) -> Runtime {
        self.runtime.lock().clone()
    }

    /// The CRI-format log its output goes to: the log path the request
    /// named, or for an interactive container without one, a log of ours
    /// (so attach has output to follow).
    fn output_log(&self) -> Option<PathBuf> {
        self.log_path
            .clone()
            .or_else(|| (self.stdio.stdin || self.stdio.tty).then(|| self.dir.join("console.log")))
    }
}

pub struct ContainerManager {
    config: ContainerManagerConfig,
    containerd: Containerd,
    images: Arc<ImageManager>,
    sandboxes: Arc<SandboxManager>,
    features: features::Features,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    /// Reserved names to container ids.
    names: Mutex<HashMap<String, String>>,
    /// GetContainerEvents' subscribers.
    events: cri_events::EventFeed,
    /// The last CPU sample of each container and pod, for usage_nano_cores.
    cpu_rates: stats::CpuRates,
}

impl ContainerManager {
    /// Subscribes to containerd's task events before returning, so no exit
    /// of a container started through this manager can be missed.
    pub async fn new(
        config: ContainerManagerConfig,
        images: Arc<ImageManager>,
        sandboxes: Arc<SandboxManager>,
    ) -> Result<Arc<Self>, ContainerError> {
        let containerd = images.containerd().clone();
        let features = features::probe().await;
        let manager = Arc::new(ContainerManager {
            config,
            features,
            containerd,
            images,
            sandboxes,
            containers: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            events: cri_events::EventFeed::new(),
            cpu_rates: stats::CpuRates::default(),
        });
        events::watch(&manager).await?;
        manager.adopt().await;
        Ok(manager)
    }

    /// Whether containers may ask for recursive read-only mounts.
    pub fn supports_recursive_read_only_mounts(&self) -> bool {
        self.features.recursive_read_only
    }

    /// The container `id` names: the id itself or a unique prefix of one.
    fn get(&self, id: &str) -> Result<Arc<Container>, ContainerError> {
        let containers = self.containers.lock();
        if let Some(c) = containers.get(id) {
            return Ok(c.clone());
        }
        let mut matches = containers
            .iter()
            .filter(|(k, _)| crate::runtime::validate::id_matches(k, id));
        match (matches.next(), matches.next()) {
            (Some((_, c)), None) => Ok(c.clone()),
            _ => Err(ContainerError::NotFound(format!(
                "container {id:?} not found"
            ))),
        }
    }

    /// The ids of a sandbox's containers.
    fn in_sandbox(&self, sandbox_id: &str) -> Vec<String> {
        self.containers
            .lock()
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .map(|c| c.id.clone())
            .collect()
    }

    /// StopPodSandbox's first half: every container of the sandbox stopped
    /// (killed at once, as the kubelet has already stopped them gracefully).
    pub async fn stop_in_sandbox(self: &Arc<Self>, sandbox_id: &str) -> Result<(), ContainerError> {
        let Ok(info) = self.sandboxes.info(sandbox_id) else {
            return Ok(());
        };
        for id in self.in_sandbox(&info.id) {
            self.stop(&id, 0).await?;
        }
        Ok(())
    }

    /// RemovePodSandbox's first half: every container of the sandbox removed.
    pub async fn remove_in_sandbox(
        self: &Arc<Self>,
        sandbox_id: &str,
    ) -> Result<(), ContainerError> {
        let Ok(info) = self.sandboxes.info(sandbox_id) else {
            return Ok(());
        };
        for id in self.in_sandbox(&info.id) {
            self.remove(&id).await?;
        }
        self.cpu_rates.forget(&info.id);
        Ok(())
    }
}

impl crate::task::TaskFailed for ContainerError {
    fn task_failed(kind: crate::task::TaskKind, e: tokio::task::JoinError) -> Self {
        match kind {
            crate::task::TaskKind::Detached => ContainerError::failed("container task", e),
            crate::task::TaskKind::Blocking => ContainerError::failed("blocking task", e),
        }
    }
}

use crate::task::detached;

/// [`crate::task::blocking`] with this module's error (so call sites infer it).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ContainerError> {
    crate::task::blocking(f).await
}

use crate::runtime::clock::now_ns;

fn is_not_found(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::NotFound
}

impl ContainerManager {
    /// Deletes the container's task in containerd; a task already gone is
    /// not an error (the exit handler, a failed start and remove all race
    /// to do this).
    async fn delete_task(&self, id: &str) -> Result<(), tonic::Status> {
        use containerd_client::services::v1::DeleteTaskRequest;
        let cd = &self.containerd;
        match cd
            .tasks()
            .delete(cd.call(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await
        {
            Err(status) if !is_not_found(&status) => Err(status),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_a_deadline_whichever_code_containerd_gives_it() {
        for status in [
            tonic::Status::deadline_exceeded("context deadline exceeded"),
            tonic::Status::unknown("creating exec process: context deadline exceeded: unknown"),
        ] {
            let error = ContainerError::from_status("exec", &status);
            assert!(
                matches!(&error, ContainerError::DeadlineExceeded(m) if m.contains("shim")),
                "{error:?}"
            );
        }
        let other = ContainerError::from_status("exec", &tonic::Status::unknown("no such file"));
        assert!(!matches!(other, ContainerError::DeadlineExceeded(_)));
    }
}

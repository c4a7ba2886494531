//! Pod sandboxes: the namespaces, cgroup, infra process and network a pod's
//! containers will join. Built by deckhand itself (no pause image): see
//! [`infra`] for the process, [`crate::sys`] for the kernel calls.
//!
//! Every sandbox lives in memory (status and list never touch the disk) and
//! as a JSON record under the state dir, saved before each resource is made,
//! so that rollback, RemovePodSandbox and a restarted deckhand all release
//! resources from the same description.

pub mod files;
pub mod infra;
mod plan;
use plan::Plan;
mod create;
#[cfg(test)]
mod fake_kernel;
mod infra_watch;
pub mod kernel;
pub mod record;
mod resources;
pub mod stats;
mod teardown;
mod userns;
mod view;
use create::loopback_list;
pub use kernel::{InfraHandle, RealKernel, SandboxKernel, Step};
use kernel::{InfraSpawn, StepFuture};
use view::{matches_filter, metadata};

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cri::api::v1 as cri;

use crate::sys::cni::{self, Attachment, NetworkList, PortMapping};
use crate::sys::idmap::{self, IdMapping};
use crate::sys::ns::NsKind;
use crate::sys::process;
use infra::{InfraArgs, InfraProcess};
pub use record::UserNamespace;
use record::{RecordStore, SandboxRecord, SandboxState};

/// How long the infra process gets to exit on SIGTERM before SIGKILL. It
/// exits at once on SIGTERM; this only bounds a wedged one.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long we wait for an exit after SIGKILL before reporting failure.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// The cgroup parent for requests that name none.
const DEFAULT_CGROUP_PARENT: &str = "/deckhand";
/// How long one kernel step of a sandbox may take (the infra handshake has
/// its own, shorter bound; CNI calls get the CNI timeout on top).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("pod sandbox {0} not found")]
    NotFound(String),
    #[error(
        "runtime handler {0:?} not found: this node has only the default handler (\"\" or \"runc\")"
    )]
    HandlerNotFound(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Failed(String),
}

impl SandboxError {
    fn failed(context: &str, e: impl std::fmt::Display) -> Self {
        SandboxError::Failed(format!("{context}: {e}"))
    }
}

#[derive(Debug, Clone)]
pub struct SandboxManagerConfig {
    /// Pins, resolv.conf and friends: `<run_dir>/sandboxes/<id>/`.
    pub run_dir: PathBuf,
    /// Records: `<state_dir>/sandboxes/<id>.json`.
    pub state_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// How long one CNI plugin call may take before it is killed.
    pub cni_timeout: Duration,
    /// The binary to run as `sandbox-infra` (normally /proc/self/exe).
    pub infra_exe: PathBuf,
}

struct Sandbox {
    record: Mutex<SandboxRecord>,
    /// Serialises stop/remove of one sandbox.
    op: tokio::sync::Mutex<()>,
    /// The infra process's pidfd and its exit, while one runs.
    infra: Mutex<Option<InfraHandle>>,
}

pub struct SandboxManager {
    config: SandboxManagerConfig,
    records: RecordStore,
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
    /// Reserved names (see [`record::reserved_name`]) to sandbox ids.
    names: Mutex<HashMap<String, String>>,
    /// Whether pods may have user namespaces here, probed once.
    userns_support: tokio::sync::OnceCell<Result<(), String>>,
    /// The kernel-facing steps (the real kernel, or a fake in tests).
    kernel: Arc<dyn SandboxKernel>,
    /// How long one kernel step may take (CNI calls get the CNI timeout
    /// on top, their plugins being killed at it).
    step_timeout: Duration,
}

/// A sandbox as its containers see it.
#[derive(Debug, Clone)]
pub struct SandboxInfo {
    pub id: String,
    pub ready: bool,
    /// Holds the hostname, hosts and resolv.conf files.
    pub dir: PathBuf,
    pub cgroup: Option<String>,
    pub hostname: String,
    pub log_directory: String,
    /// The namespaces the sandbox owns and where they are pinned.
    pub namespaces: Vec<(NsKind, PathBuf)>,
    pub pid_mode: i32,
    /// The pod's user namespace maps, when it has one (pinned among
    /// `namespaces` as [`NsKind::User`]).
    pub userns: Option<UserNamespace>,
}

/// What NetworkReady should say.
pub struct NetworkStatus {
    pub ready: bool,
    pub message: String,
}

impl SandboxManager {
    /// Loads the records a previous deckhand left: running sandboxes are
    /// adopted, half-made ones are released.
    pub async fn new(config: SandboxManagerConfig) -> Arc<Self> {
        let kernel = Arc::new(RealKernel {
            infra_exe: config.infra_exe.clone(),
            cni_conf_dir: config.cni_conf_dir.clone(),
            cni: cni::Exec {
                bin_dirs: config.cni_bin_dirs.clone(),
                timeout: config.cni_timeout,
            },
        });
        Self::with_kernel(config, kernel, STEP_TIMEOUT).await
    }

    /// [`Self::new`] over any kernel, each step bounded by `step_timeout`.
    pub async fn with_kernel(
        config: SandboxManagerConfig,
        kernel: Arc<dyn SandboxKernel>,
        step_timeout: Duration,
    ) -> Arc<Self> {
        let records = RecordStore::new(config.state_dir.join("sandboxes"));
        let manager = Arc::new(SandboxManager {
            records,
            config,
            sandboxes: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            userns_support: tokio::sync::OnceCell::new(),
            kernel,
            step_timeout,
        });
        let store = manager.records.clone();
        let records = blocking(move || store.load_all()).await.unwrap_or_default();
        for mut record in records {
            let id = record.id.clone();
            if record.state == SandboxState::Creating {
                tracing::info!(%id, "releasing a sandbox whose creation was interrupted");
                if let Err(e) = manager.release(&mut record, None, true).await {
                    tracing::warn!(%id, error = %e, "releasing interrupted sandbox");
                }
                continue;
            }
            let handle = match record.infra {
                Some(infra) if manager.kernel.infra_alive(&infra) => {
                    manager.kernel.watch_infra(infra).ok()
                }
                _ => None,
            };
            if handle.is_none() && record.state == SandboxState::Ready {
                record.state = SandboxState::NotReady;
                let _ = manager.save(&record).await;
            }
            tracing::info!(%id, state = ?record.state, "adopted sandbox");
            manager.insert(record, handle);
        }
        manager
    }

    fn insert(self: &Arc<Self>, record: SandboxRecord, handle: Option<InfraHandle>) {
        let id = record.id.clone();
        self.names.lock().insert(record.reserved_name(), id.clone());
        let sandbox = Arc::new(Sandbox {
            record: Mutex::new(record),
            op: tokio::sync::Mutex::new(()),
            infra: Mutex::new(handle.clone()),
        });
        self.sandboxes.lock().insert(id, sandbox.clone());
        if let Some(handle) = handle {
            self.on_infra_exit(sandbox, handle);
        }
    }

    pub async fn network_status(&self) -> NetworkStatus {
        match self
            .step(Step::LoadNetwork, self.kernel.load_network())
            .await
        {
            Ok(list) => NetworkStatus {
                ready: true,
                message: format!("CNI network {:?} from {}", list.name, list.source.display()),
            },
            Err(e) => NetworkStatus {
                ready: false,
                message: format!("cni config uninitialized: {e}"),
            },
        }
    }

    fn get(&self, id: &str) -> Result<Arc<Sandbox>, SandboxError> {
        let sandboxes = self.sandboxes.lock();
        if let Some(s) = sandboxes.get(id) {
            return Ok(s.clone());
        }
        // A unique prefix is accepted, as crictl users expect.
        let mut matches = sandboxes
            .iter()
            .filter(|(k, _)| crate::runtime::validate::id_matches(k, id));
        match (matches.next(), matches.next()) {
            (Some((_, s)), None) => Ok(s.clone()),
            _ => Err(SandboxError::NotFound(id.to_string())),
        }
    }

    /// Runs one kernel step under its timeout. A step that does not finish
    /// is abandoned (its future dropped) and reported as DeadlineExceeded,
    /// so the caller rolls back and lets go of the sandbox.
    pub(super) async fn step<T>(
        &self,
        step: Step,
        future: StepFuture<'_, T>,
    ) -> Result<T, SandboxError> {
        let limit = match step {
            Step::CniAdd | Step::CniDel => self.config.cni_timeout + self.step_timeout,
            _ => self.step_timeout,
        };
        match tokio::time::timeout(limit, future).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(?step, ?limit, "sandbox step timed out");
                Err(SandboxError::DeadlineExceeded(format!(
                    "sandbox step {step:?} did not finish within {limit:?}"
                )))
            }
        }
    }

    /// Saves the record (fsync'd: off the async threads).
    async fn save(&self, record: &SandboxRecord) -> Result<(), SandboxError> {
        let (store, record) = (self.records.clone(), record.clone());
        blocking(move || store.save(&record))
            .await?
            .map_err(|e| SandboxError::failed("saving sandbox record", e))
    }
}

impl crate::task::TaskFailed for SandboxError {
    fn task_failed(kind: crate::task::TaskKind, e: tokio::task::JoinError) -> Self {
        match kind {
            crate::task::TaskKind::Detached => SandboxError::failed("sandbox task", e),
            crate::task::TaskKind::Blocking => SandboxError::failed("blocking task", e),
        }
    }
}

use crate::task::detached;

/// [`crate::task::blocking`] with this module's error (so call sites infer it).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SandboxError> {
    crate::task::blocking(f).await
}

use crate::runtime::clock::now_ns;

/// A random 64-hex-digit id, like containerd's.
pub(crate) fn new_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        // Not reachable on Linux in practice; still unique per process.
        use sha2::Digest;
        let seed = format!(
            "{}-{}-{:?}",
            std::process::id(),
            now_ns(),
            std::thread::current().id()
        );
        bytes.copy_from_slice(&sha2::Sha256::digest(seed.as_bytes()));
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;

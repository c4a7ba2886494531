//! Pod volumes, as the kubelet's volume manager lays them out:
//! `<root-dir>/pods/<uid>/volumes/<plugin>/<name>`, set up before the
//! pod's containers start, refreshed on every pod sync (configMap, secret,
//! downwardAPI and projected contents follow their objects through the
//! atomic writer), mounted into containers as CRI Mounts and torn down
//! (unmounted, removed) when the pod is removed.
//!
//! - `setup`: one volume source -> a host path (one function per plugin)
//! - `payload`: configMap/secret/downwardAPI/projected contents
//! - `atomic_writer`: kubelet's `..data` swap
//! - `host_path`, `pvc`, `token`, `subpath`, `ownership` (fsGroup), `mount`
//! - `mounts`: a container's volumeMounts -> CRI Mounts

pub mod atomic_writer;
pub mod host_path;
pub mod mount;
mod mounts;
pub mod ownership;
pub mod payload;
mod pvc;
mod setup;
pub mod size_limit;
pub mod subpath;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;

use crate::node::events::EventRecorder;
use crate::node::podspec::{NodeContext, ObjectLookup};
use crate::node::status::events as reasons;

pub use mounts::container_mounts;

pub const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
pub const HOST_PATH: &str = "kubernetes.io~host-path";
pub const CONFIG_MAP: &str = "kubernetes.io~configmap";
pub const SECRET: &str = "kubernetes.io~secret";
pub const PROJECTED: &str = "kubernetes.io~projected";
pub const DOWNWARD_API: &str = "kubernetes.io~downward-api";
pub const LOCAL_VOLUME: &str = "kubernetes.io~local-volume";

/// Why a volume cannot be set up; shown in the FailedMount event as
/// `MountVolume.SetUp failed for volume "x" : <this>`.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind}: {key}")]
    MissingKey { kind: String, key: String },
    #[error("{0}")]
    Lookup(String),
    #[error("{0}")]
    DownwardApi(String),
    #[error("{0}")]
    Token(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    HostPath(#[from] host_path::TypeCheckError),
    #[error(transparent)]
    Write(#[from] atomic_writer::WriteError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A volume as set up on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    pub path: PathBuf,
    /// configMap, secret, downwardAPI, projected, read-only claims: the
    /// containers get it read-only whatever the volumeMount says.
    pub read_only: bool,
}

#[derive(Debug, Default)]
pub(crate) struct PodState {
    pub(crate) volumes: BTreeMap<String, Mounted>,
    pub(crate) failures: u32,
}

/// What a sync of the pod's volumes says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeSync {
    /// Every volume has been set up (at least once): containers may start.
    pub ready: bool,
    /// Sync again within this long (a failed volume, a token to renew).
    pub retry: Option<Duration>,
}

pub struct VolumeManager {
    root_dir: PathBuf,
    client: Client,
    lookup: Arc<dyn ObjectLookup>,
    tokens: token::TokenManager,
    pods: Mutex<HashMap<String, PodState>>,
}

pub fn pod_dir(root_dir: &Path, uid: &str) -> PathBuf {
    root_dir.join("pods").join(uid)
}

pub fn volume_dir(root_dir: &Path, uid: &str, plugin: &str, name: &str) -> PathBuf {
    pod_dir(root_dir, uid)
        .join("volumes")
        .join(plugin)
        .join(name)
}

impl crate::task::TaskFailed for VolumeError {
    fn task_failed(_: crate::task::TaskKind, e: tokio::task::JoinError) -> Self {
        VolumeError::Io {
            what: "volume task",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        }
    }
}

/// Runs blocking file-system work off the executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, VolumeError> {
    crate::task::blocking::<_, VolumeError>(f).await?
}

impl VolumeManager {
    pub fn new(root_dir: PathBuf, client: Client, lookup: Arc<dyn ObjectLookup>) -> Self {
        Self {
            root_dir,
            tokens: token::TokenManager::new(client.clone()),
            client,
            lookup,
            pods: Mutex::new(HashMap::new()),
        }
    }

    pub fn root_dir(&self) -> &Path {
        &self.root_dir
    }

    /// Sets up (or refreshes) every volume of `pod`; failures are FailedMount
    /// events on the pod, retried with a back-off.
    pub async fn sync(&self, pod: &Pod, node: &NodeContext, events: &EventRecorder) -> VolumeSync {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        let mut done = BTreeMap::new();
        let mut failed = false;
        for v in &volumes {
            match setup::setup(self, pod, node, v).await {
                Ok(m) => {
                    done.insert(v.name.clone(), m);
                }
                Err(e) => {
                    failed = true;
                    tracing::info!(pod = %uid, volume = %v.name, error = %e, "volume setup failed");
                    events.pod_event(
                        pod,
                        None,
                        reasons::WARNING,
                        reasons::FAILED_MOUNT_VOLUME,
                        format!("MountVolume.SetUp failed for volume \"{}\" : {e}", v.name),
                    );
                }
            }
        }
        let Ok(mut pods) = self.pods.lock() else {
            return VolumeSync {
                ready: false,
                retry: Some(Duration::from_secs(5)),
            };
        };
        let state = pods.entry(uid.clone()).or_default();
        // A refresh that fails keeps what was set up before (the files stay
        // as they were), as kubelet's remount does.
        state
            .volumes
            .retain(|name, _| volumes.iter().any(|v| &v.name == name));
        state.volumes.extend(done);
        let ready = volumes.iter().all(|v| state.volumes.contains_key(&v.name));
        let retry = if failed {
            state.failures = state.failures.saturating_add(1);
            Some(Duration::from_secs(1 << state.failures.min(4)))
        } else {
            state.failures = 0;
            None
        };
        drop(pods);
        let token = self.tokens.next_refresh(&uid);
        let retry = match (retry, token) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        VolumeSync { ready, retry }
    }

    fn mounted(&self, uid: &str) -> BTreeMap<String, Mounted> {
        self.pods
            .lock()
            .ok()
            .and_then(|p| p.get(uid).map(|s| s.volumes.clone()))
            .unwrap_or_default()
    }

    /// Unmounts and removes `<root-dir>/pods/<uid>`: Err while something
    /// there stays mounted (nothing is removed then).
    pub async fn teardown(&self, uid: &str) -> Result<(), VolumeError> {
        let dir = pod_dir(&self.root_dir, uid);
        let result = blocking(move || {
            if std::fs::symlink_metadata(&dir).is_err() {
                return Ok(());
            }
            let io = |what, source| VolumeError::Io {
                what,
                path: dir.clone(),
                source,
            };
            mount::unmount_all(&dir).map_err(|e| io("unmounting under", e))?;
            std::fs::remove_dir_all(&dir).map_err(|e| io("removing", e))
        })
        .await;
        if result.is_ok() {
            if let Ok(mut p) = self.pods.lock() {
                p.remove(uid);
            }
            self.tokens.forget(uid);
        }
        result
    }
}

/// `config` with the container's volume mounts added (a
/// CreateContainerConfigError when one cannot be made).
pub async fn with_mounts(
    m: &VolumeManager,
    pod: &Pod,
    container: &k8s_openapi::api::core::v1::Container,
    mut config: crate::cri::api::v1::ContainerConfig,
) -> Result<crate::cri::api::v1::ContainerConfig, crate::node::podspec::PodSpecError> {
    let mounts = container_mounts(m, pod, container, &config.envs)
        .await
        .map_err(crate::node::podspec::PodSpecError::config)?;
    config.mounts.extend(mounts);
    Ok(config)
}

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
pub mod record;
mod resources;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cri::api::v1 as cri;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use crate::sys::cni::{self, Attachment, NetworkList, PortMapping};
use crate::sys::idmap::{self, IdMapping};
use crate::sys::ns::{self, NsKind};
use crate::sys::{cgroup, process, sysctl};
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

impl Sandbox {
    /// Marks the sandbox not ready from the moment it starts going away (this
    /// also tells the exit watcher that the infra's exit is expected) and
    /// returns a working copy of its record with the infra handle.
    fn begin_teardown(&self) -> (SandboxRecord, Option<InfraHandle>) {
        let record = {
            let mut current = self.record.lock().unwrap();
            current.state = SandboxState::NotReady;
            current.clone()
        };
        (record, self.infra.lock().unwrap().clone())
    }

    /// Publishes what a teardown step left of the record, done or not.
    fn end_teardown(&self, record: &mut SandboxRecord) {
        if record.infra.is_none() {
            *self.infra.lock().unwrap() = None;
        }
        record.state = SandboxState::NotReady;
        *self.record.lock().unwrap() = record.clone();
    }
}

#[derive(Clone)]
struct InfraHandle {
    pidfd: Arc<AsyncFd<process::PidFd>>,
    exited: watch::Receiver<bool>,
}

pub struct SandboxManager {
    config: SandboxManagerConfig,
    records: RecordStore,
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
    /// Reserved names (see [`record::reserved_name`]) to sandbox ids.
    names: Mutex<HashMap<String, String>>,
    /// Whether pods may have user namespaces here, probed once.
    userns_support: tokio::sync::OnceCell<Result<(), String>>,
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
        let records = RecordStore::new(config.state_dir.join("sandboxes"));
        let manager = Arc::new(SandboxManager {
            records,
            config,
            sandboxes: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            userns_support: tokio::sync::OnceCell::new(),
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
                Some(infra) if infra.alive() => watch_infra(infra).ok(),
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
        self.names
            .lock()
            .unwrap()
            .insert(record.reserved_name(), id.clone());
        let sandbox = Arc::new(Sandbox {
            record: Mutex::new(record),
            op: tokio::sync::Mutex::new(()),
            infra: Mutex::new(handle.clone()),
        });
        self.sandboxes.lock().unwrap().insert(id, sandbox.clone());
        if let Some(handle) = handle {
            self.on_infra_exit(sandbox, handle);
        }
    }

    /// When the infra process dies by itself, the sandbox is no longer ready.
    fn on_infra_exit(self: &Arc<Self>, sandbox: Arc<Sandbox>, mut handle: InfraHandle) {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            let _ = handle.exited.wait_for(|e| *e).await;
            {
                let mut record = sandbox.record.lock().unwrap();
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
            let current = sandbox.record.lock().unwrap().clone();
            let listed = manager
                .sandboxes
                .lock()
                .unwrap()
                .get(&current.id)
                .is_some_and(|s| Arc::ptr_eq(s, &sandbox));
            if listed {
                let _ = manager.save(&current).await;
            }
        });
    }

    /// Whether a pod may have a user namespace of its own: the kernel makes
    /// one for the infra process and ID-maps mounts of the filesystem under
    /// the state dir (where containerd's snapshots normally live too). The
    /// answer (or why not) is probed once and kept.
    pub async fn user_namespaces_supported(&self) -> Result<(), String> {
        let exe = self.config.infra_exe.clone();
        let dir = self.config.state_dir.clone();
        self.userns_support
            .get_or_init(|| async move {
                let probed = blocking(move || probe_user_namespaces(&exe, &dir)).await;
                let probed = probed.map_err(|e| e.to_string()).and_then(|r| r);
                if let Err(e) = &probed {
                    tracing::info!(error = %e, "user namespaces not available for pods");
                }
                probed
            })
            .await
            .clone()
    }

    pub async fn network_status(&self) -> NetworkStatus {
        let dir = self.config.cni_conf_dir.clone();
        let loaded = blocking(move || cni::load_default(&dir)).await;
        match loaded.and_then(|r| r.map_err(|e| SandboxError::Failed(e.to_string()))) {
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
        let sandboxes = self.sandboxes.lock().unwrap();
        if let Some(s) = sandboxes.get(id) {
            return Ok(s.clone());
        }
        // A unique prefix is accepted, as crictl users expect.
        let mut matches = sandboxes
            .iter()
            .filter(|(k, _)| !id.is_empty() && k.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some((_, s)), None) => Ok(s.clone()),
            _ => Err(SandboxError::NotFound(id.to_string())),
        }
    }

    /// RunPodSandbox. Runs to completion in its own task: a caller that
    /// gives up (a kubelet timeout drops the gRPC future) must not cut a
    /// creation or its rollback short and leak what was made so far.
    pub async fn run(
        self: &Arc<Self>,
        request: cri::RunPodSandboxRequest,
    ) -> Result<String, SandboxError> {
        let manager = self.clone();
        detached(async move { manager.run_to_end(request).await }).await
    }

    async fn run_to_end(
        self: &Arc<Self>,
        request: cri::RunPodSandboxRequest,
    ) -> Result<String, SandboxError> {
        let plan = Plan::from_request(request)?;
        if plan.userns.is_some()
            && let Err(why) = self.user_namespaces_supported().await
        {
            return Err(SandboxError::InvalidArgument(format!(
                "user namespaces are not available on this node: {why}"
            )));
        }
        let id = new_id();
        let reserved = record::reserved_name(&plan.name, &plan.namespace, &plan.uid, plan.attempt);
        {
            let mut names = self.names.lock().unwrap();
            if let Some(owner) = names.get(&reserved) {
                return Err(SandboxError::AlreadyExists(format!(
                    "pod sandbox name {reserved:?} is reserved for {owner}"
                )));
            }
            names.insert(reserved.clone(), id.clone());
        }
        let network = if plan.network_mode == cri::NamespaceMode::Node as i32 {
            None
        } else {
            let dir = self.config.cni_conf_dir.clone();
            match blocking(move || cni::load_default(&dir))
                .await
                .and_then(|r| r.map_err(|e| SandboxError::failed("network plugin not ready", e)))
            {
                Ok(list) => Some(list),
                Err(e) => {
                    self.names.lock().unwrap().remove(&reserved);
                    return Err(e);
                }
            }
        };
        let mut record = plan.record(id.clone(), &self.config.run_dir, network);
        let started = std::time::Instant::now();
        match self.create(&mut record, &plan).await {
            Ok(handle) => {
                tracing::info!(%id, pod = %reserved, ip = ?record.ips.first(), elapsed = ?started.elapsed(), "sandbox ready");
                self.insert(record, Some(handle));
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "RunPodSandbox failed; rolling back");
                if let Err(re) = self.release(&mut record, None, true).await {
                    tracing::error!(%id, error = %re, "rollback incomplete");
                }
                self.names.lock().unwrap().remove(&reserved);
                Err(e)
            }
        }
    }

    /// Makes every resource in `record`, saving it before each step so that
    /// [`Self::release`] can undo any prefix of them.
    async fn create(
        &self,
        record: &mut SandboxRecord,
        plan: &Plan,
    ) -> Result<InfraHandle, SandboxError> {
        self.save(record).await?;
        let dir = record.dir.join("ns");
        blocking(move || std::fs::create_dir_all(dir))
            .await?
            .map_err(|e| SandboxError::failed("creating sandbox dir", e))?;

        if let Some(cg) = record.cgroup.clone() {
            blocking(move || cgroup::create(&cg))
                .await?
                .map_err(|e| SandboxError::failed("creating pod cgroup", e))?;
        }

        let args = InfraArgs {
            namespaces: record.namespaces.clone(),
            hostname: record.owns(NsKind::Uts).then(|| record.hostname.clone()),
        };
        let exe = self.config.infra_exe.clone();
        let cg = record.cgroup.clone();
        let userns = record.userns.clone();
        let infra = blocking(move || {
            let maps = userns
                .as_ref()
                .map(|u| (u.uids.as_slice(), u.gids.as_slice()));
            infra::spawn(&exe, &args, cg.as_deref(), maps)
        })
        .await?;
        let infra = infra.map_err(|e| SandboxError::failed("starting infra process", e))?;
        record.infra = Some(infra);
        self.save(record).await?;
        let handle =
            watch_infra(infra).map_err(|e| SandboxError::failed("watching infra process", e))?;

        let pinned: Vec<(PathBuf, NsKind)> = record
            .namespaces
            .iter()
            .map(|k| (record.ns_path(*k), *k))
            .collect();
        let pins = pinned.clone();
        blocking(move || {
            pins.iter()
                .try_for_each(|(path, kind)| ns::pin(infra.pid, *kind, path))
        })
        .await?
        .map_err(|e| SandboxError::failed("pinning namespace", e))?;

        let sysctls = plan.sysctls.clone();
        blocking(move || sysctl::apply(&pinned, &sysctls))
            .await?
            .map_err(|e| match e {
                sysctl::SysctlError::InvalidName(_) | sysctl::SysctlError::NotNamespaced(_) => {
                    SandboxError::InvalidArgument(e.to_string())
                }
                e => SandboxError::failed("applying sysctls", e),
            })?;

        if let Some(network) = record.network.as_mut() {
            network.attached = true;
            self.save(record).await?;
            let (ips, result, loopback) = self.attach(record).await?;
            let network = record.network.as_mut().expect("network set");
            network.result = Some(result);
            network.loopback = loopback;
            record.ips = ips;
        }

        let (rec, dns) = (record.clone(), plan.dns.clone());
        blocking(move || write_files(&rec, dns.as_ref())).await??;
        record.state = SandboxState::Ready;
        self.save(record).await?;
        Ok(handle)
    }

    fn attachment(
        &self,
        record: &SandboxRecord,
        ifname: &str,
        ports: Vec<PortMapping>,
    ) -> Attachment {
        Attachment {
            container_id: record.id.clone(),
            netns: record.ns_path(NsKind::Net),
            ifname: ifname.to_string(),
            args: vec![
                ("K8S_POD_NAMESPACE".into(), record.namespace.clone()),
                ("K8S_POD_NAME".into(), record.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), record.id.clone()),
                ("K8S_POD_UID".into(), record.uid.clone()),
            ],
            port_mappings: ports,
        }
    }

    fn exec(&self) -> cni::Exec {
        cni::Exec {
            bin_dirs: self.config.cni_bin_dirs.clone(),
            timeout: self.config.cni_timeout,
        }
    }

    /// CNI ADD: loopback (when the plugin exists, as containerd does), then
    /// the pod network on eth0.
    async fn attach(
        &self,
        record: &SandboxRecord,
    ) -> Result<(Vec<String>, serde_json::Value, bool), SandboxError> {
        let network = record.network.as_ref().expect("network planned");
        let exec = self.exec();
        let loopback = self
            .config
            .cni_bin_dirs
            .iter()
            .any(|d| d.join("loopback").is_file());
        if loopback {
            exec.add(&loopback_list(), &self.attachment(record, "lo", vec![]))
                .await
                .map_err(|e| SandboxError::failed("setting up loopback", e))?;
        }
        let att = self.attachment(record, "eth0", network.port_mappings.clone());
        let result = exec.add(&network.list, &att).await.map_err(|e| {
            SandboxError::failed(&format!("CNI ADD on network {:?}", network.list.name), e)
        })?;
        Ok((cni::result_ips(&result, "eth0"), result, loopback))
    }

    /// Saves the record (fsync'd: off the async threads).
    async fn save(&self, record: &SandboxRecord) -> Result<(), SandboxError> {
        let (store, record) = (self.records.clone(), record.clone());
        blocking(move || store.save(&record))
            .await?
            .map_err(|e| SandboxError::failed("saving sandbox record", e))
    }

    /// CNI DEL (when owed) and the infra process's end. Idempotent. The
    /// infra is stopped even when DEL fails (a stopped pod must not keep
    /// running); the DEL error is returned so the caller can retry it.
    async fn stop_parts(
        &self,
        record: &mut SandboxRecord,
        handle: Option<InfraHandle>,
    ) -> Result<(), SandboxError> {
        let mut first_error = None;
        if let Some(network) = record.network.clone().filter(|n| n.attached) {
            let exec = self.exec();
            let att = self.attachment(record, "eth0", network.port_mappings.clone());
            match exec.del(&network.list, &att, network.result.as_ref()).await {
                Ok(()) => {
                    if network.loopback {
                        // lo goes away with the namespace: a failed DEL leaks nothing.
                        let _ = exec
                            .del(
                                &loopback_list(),
                                &self.attachment(record, "lo", vec![]),
                                None,
                            )
                            .await;
                    }
                    record.network.as_mut().expect("network").attached = false;
                    if let Err(e) = self.save(record).await {
                        first_error.get_or_insert(e);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(SandboxError::failed("CNI DEL", e));
                }
            }
        }
        if let Some(infra) = record.infra {
            let handle = match handle {
                Some(h) => Some(h),
                None if infra.alive() => watch_infra(infra).ok(),
                None => None,
            };
            match handle {
                Some(handle) => match stop_infra(&handle).await {
                    Ok(()) => record.infra = None,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                },
                None => record.infra = None,
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Releases everything the record holds, in reverse order of creation.
    /// Strict (RemovePodSandbox): stops at the first failure and keeps the
    /// record, so a retry resumes. Best effort (rollback of a failed
    /// RunPodSandbox, where e.g. DEL may fail for the same reason ADD did):
    /// every step is tried and the record goes regardless.
    async fn release(
        &self,
        record: &mut SandboxRecord,
        handle: Option<InfraHandle>,
        best_effort: bool,
    ) -> Result<(), SandboxError> {
        let mut first_error: Option<SandboxError> = None;
        let id = record.id.clone();
        let mut step = |result: Result<(), SandboxError>| -> Result<(), SandboxError> {
            match result {
                Ok(()) => Ok(()),
                Err(e) if best_effort => {
                    tracing::warn!(%id, error = %e, "release step failed; going on");
                    first_error.get_or_insert(e);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        step(self.stop_parts(record, handle).await)?;
        let pins: Vec<PathBuf> = record
            .namespaces
            .iter()
            .map(|k| record.ns_path(*k))
            .collect();
        step(
            blocking(move || pins.iter().try_for_each(|p| ns::unpin(p)))
                .await
                .and_then(|r| r.map_err(|e| SandboxError::failed("unpinning namespace", e))),
        )?;
        if let Some(cg) = record.cgroup.clone() {
            step(
                blocking(move || cgroup::remove(&cg))
                    .await
                    .and_then(|r| r.map_err(|e| SandboxError::failed("removing pod cgroup", e))),
            )?;
        }
        let dir = record.dir.clone();
        step(
            blocking(move || match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await
            .and_then(|r| r.map_err(|e| SandboxError::failed("removing sandbox dir", e))),
        )?;
        let (store, id) = (self.records.clone(), record.id.clone());
        step(
            blocking(move || store.delete(&id))
                .await
                .and_then(|r| r.map_err(|e| SandboxError::failed("removing sandbox record", e))),
        )?;
        first_error.map_or(Ok(()), Err)
    }

    /// The sandbox with `id`, or `None` when there is none: stop and remove
    /// of an unknown id succeed.
    fn existing(&self, id: &str) -> Result<Option<Arc<Sandbox>>, SandboxError> {
        match self.get(id) {
            Ok(s) => Ok(Some(s)),
            Err(SandboxError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// StopPodSandbox: unknown ids are fine (the kubelet retries stops).
    /// Like [`Self::run`], it finishes even if the caller goes away.
    pub async fn stop(self: &Arc<Self>, id: &str) -> Result<(), SandboxError> {
        let (manager, id) = (self.clone(), id.to_string());
        detached(async move { manager.stop_to_end(&id).await }).await
    }

    async fn stop_to_end(&self, id: &str) -> Result<(), SandboxError> {
        let Some(sandbox) = self.existing(id)? else {
            return Ok(());
        };
        let _op = sandbox.op.lock().await;
        let (mut record, handle) = sandbox.begin_teardown();
        let result = self.stop_parts(&mut record, handle).await;
        sandbox.end_teardown(&mut record);
        result?;
        self.save(&record).await
    }

    /// RemovePodSandbox: stops if needed, then frees everything; finishes
    /// even if the caller goes away.
    pub async fn remove(self: &Arc<Self>, id: &str) -> Result<(), SandboxError> {
        let (manager, id) = (self.clone(), id.to_string());
        detached(async move { manager.remove_to_end(&id).await }).await
    }

    async fn remove_to_end(&self, id: &str) -> Result<(), SandboxError> {
        let Some(sandbox) = self.existing(id)? else {
            return Ok(());
        };
        let _op = sandbox.op.lock().await;
        let (mut record, handle) = sandbox.begin_teardown();
        let result = self.release(&mut record, handle, false).await;
        sandbox.end_teardown(&mut record);
        result?;
        self.sandboxes.lock().unwrap().remove(&record.id);
        let mut names = self.names.lock().unwrap();
        if names.get(&record.reserved_name()) == Some(&record.id) {
            names.remove(&record.reserved_name());
        }
        Ok(())
    }

    /// What a container joining sandbox `id` (or a unique prefix of it)
    /// needs to know of it.
    pub fn info(&self, id: &str) -> Result<SandboxInfo, SandboxError> {
        let sandbox = self.get(id)?;
        let record = sandbox.record.lock().unwrap();
        Ok(SandboxInfo {
            id: record.id.clone(),
            ready: record.state == SandboxState::Ready,
            dir: record.dir.clone(),
            cgroup: record.cgroup.clone(),
            hostname: record.hostname.clone(),
            log_directory: record.log_directory.clone(),
            namespaces: record
                .namespaces
                .iter()
                .map(|k| (*k, record.ns_path(*k)))
                .collect(),
            pid_mode: record.pid_mode,
            userns: record.userns.clone(),
        })
    }

    /// PodSandboxStatus, from memory.
    pub fn status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::PodSandboxStatusResponse, SandboxError> {
        let sandbox = self.get(id)?;
        let record = sandbox.record.lock().unwrap();
        let mut info = HashMap::new();
        if verbose {
            let detail = serde_json::json!({
                "pid": record.infra.map(|i| i.pid).unwrap_or(0),
                "cgroup": record.cgroup,
                "namespaces": record.namespaces.iter().map(|k| (k.name(), record.ns_path(*k))).collect::<BTreeMap<_, _>>(),
                "dir": record.dir,
                "cniResult": record.network.as_ref().and_then(|n| n.result.clone()),
            });
            info.insert("info".to_string(), detail.to_string());
        }
        Ok(cri::PodSandboxStatusResponse {
            status: Some(cri::PodSandboxStatus {
                id: record.id.clone(),
                metadata: Some(metadata(&record)),
                state: cri_state(record.state) as i32,
                created_at: record.created_at,
                network: Some(cri::PodSandboxNetworkStatus {
                    ip: record.ips.first().cloned().unwrap_or_default(),
                    additional_ips: record
                        .ips
                        .iter()
                        .skip(1)
                        .map(|ip| cri::PodIp { ip: ip.clone() })
                        .collect(),
                }),
                linux: Some(cri::LinuxPodSandboxStatus {
                    namespaces: Some(cri::Namespace {
                        options: Some(cri::NamespaceOption {
                            network: record.network_mode,
                            pid: record.pid_mode,
                            ipc: record.ipc_mode,
                            userns_options: Some(match &record.userns {
                                Some(userns) => userns.to_cri(),
                                None => cri::UserNamespace {
                                    mode: cri::NamespaceMode::Node as i32,
                                    ..Default::default()
                                },
                            }),
                            ..Default::default()
                        }),
                    }),
                }),
                labels: record.labels.clone().into_iter().collect(),
                annotations: record.annotations.clone().into_iter().collect(),
                runtime_handler: record.runtime_handler.clone(),
            }),
            info,
            containers_statuses: vec![],
            timestamp: now_ns(),
        })
    }

    /// ListPodSandbox, from memory.
    pub fn list(&self, filter: Option<&cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        let sandboxes: Vec<Arc<Sandbox>> =
            self.sandboxes.lock().unwrap().values().cloned().collect();
        let mut out: Vec<cri::PodSandbox> = sandboxes
            .iter()
            .filter_map(|s| {
                let record = s.record.lock().unwrap();
                matches_filter(&record, filter).then(|| cri::PodSandbox {
                    id: record.id.clone(),
                    metadata: Some(metadata(&record)),
                    state: cri_state(record.state) as i32,
                    created_at: record.created_at,
                    labels: record.labels.clone().into_iter().collect(),
                    annotations: record.annotations.clone().into_iter().collect(),
                    runtime_handler: record.runtime_handler.clone(),
                })
            })
            .collect();
        out.sort_by_key(|s| s.created_at);
        out
    }
}

/// resolv.conf, hostname and hosts in the sandbox dir. Blocking.
fn write_files(record: &SandboxRecord, dns: Option<&cri::DnsConfig>) -> Result<(), SandboxError> {
    let write = |name: &str, body: &str| {
        std::fs::write(record.dir.join(name), body)
            .map_err(|e| SandboxError::failed(&format!("writing {name}"), e))
    };
    let resolv = match files::resolv_conf(dns) {
        Some(r) => r,
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    write("resolv.conf", &resolv)?;
    write("hostname", &format!("{}\n", record.hostname))?;
    let hosts = if record.owns(NsKind::Net) {
        files::hosts(&record.hostname, &record.ips)
    } else {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    };
    write("hosts", &hosts)
}

fn matches_filter(record: &SandboxRecord, filter: Option<&cri::PodSandboxFilter>) -> bool {
    let Some(filter) = filter else { return true };
    if !filter.id.is_empty() && !record.id.starts_with(&filter.id) {
        return false;
    }
    if let Some(state) = &filter.state
        && state.state != cri_state(record.state) as i32
    {
        return false;
    }
    filter
        .label_selector
        .iter()
        .all(|(k, v)| record.labels.get(k) == Some(v))
}

fn cri_state(state: SandboxState) -> cri::PodSandboxState {
    match state {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::Creating | SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

fn metadata(record: &SandboxRecord) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: record.name.clone(),
        uid: record.uid.clone(),
        namespace: record.namespace.clone(),
        attempt: record.attempt,
    }
}

/// containerd's loopback network, run with ifname `lo`.
fn loopback_list() -> NetworkList {
    NetworkList {
        name: "cni-loopback".into(),
        cni_version: "0.3.1".into(),
        plugins: vec![serde_json::json!({"type": "loopback"})],
        source: PathBuf::new(),
    }
}

/// Opens a pidfd on the infra process and spawns the task that reaps it when
/// it exits (a child of ours would stay a zombie otherwise).
fn watch_infra(infra: InfraProcess) -> std::io::Result<InfraHandle> {
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
    Ok(InfraHandle { pidfd, exited: rx })
}

/// SIGTERM, a grace period, SIGKILL; returns once the process has exited
/// and been reaped (the watcher reaps before it reports).
async fn stop_infra(handle: &InfraHandle) -> Result<(), SandboxError> {
    let mut exited = handle.exited.clone();
    let pidfd = handle.pidfd.get_ref();
    pidfd
        .signal(nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| SandboxError::failed("signalling infra process", e))?;
    if tokio::time::timeout(STOP_GRACE, exited.wait_for(|e| *e))
        .await
        .is_ok()
    {
        return Ok(());
    }
    tracing::warn!(pid = pidfd.pid(), "infra process ignored SIGTERM; killing");
    pidfd
        .signal(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| SandboxError::failed("killing infra process", e))?;
    tokio::time::timeout(KILL_WAIT, exited.wait_for(|e| *e))
        .await
        .map(|_| ())
        .map_err(|_| SandboxError::Failed(format!("infra process {} did not exit", pidfd.pid())))
}

/// Runs `f` as its own task and waits for it: dropping the wait does not
/// cancel the work.
async fn detached<T: Send + 'static>(
    f: impl Future<Output = Result<T, SandboxError>> + Send + 'static,
) -> Result<T, SandboxError> {
    tokio::spawn(f)
        .await
        .map_err(|e| SandboxError::failed("sandbox task", e))?
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SandboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SandboxError::failed("blocking task", e))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

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

/// Makes a user namespace as a pod would (an infra process with maps) and
/// ID-maps a mount of `dir` through it. Blocking.
fn probe_user_namespaces(exe: &Path, dir: &Path) -> Result<(), String> {
    let args = InfraArgs {
        namespaces: vec![NsKind::User],
        hostname: None,
    };
    // Any range works for the probe; this one is what the kubelet hands
    // out first (65536 ids from 65536).
    let maps = [IdMapping {
        container_id: 0,
        host_id: 65536,
        length: 65536,
    }];
    let infra = infra::spawn(exe, &args, None, Some((&maps, &maps)))
        .map_err(|e| format!("making a user namespace: {e}"))?;
    let result = std::fs::File::open(format!("/proc/{}/ns/user", infra.pid))
        .map_err(|e| format!("opening the user namespace: {e}"))
        .and_then(|userns| {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            idmap::supported(dir, &userns).map_err(|e| e.to_string())
        });
    let pid = nix::unistd::Pid::from_raw(infra.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    result
}

#[cfg(test)]
mod tests;

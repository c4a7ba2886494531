//! The kernel-facing steps of a sandbox (its dir, the pod cgroup, the infra
//! process, namespace pins, sysctls, CNI, the resolv.conf/hosts files)
//! behind one trait, so that the order of creation, its rollback, release
//! and re-adoption are tested with an in-memory fake (`fake_kernel.rs`) that
//! fails or hangs at any step, without root.
//!
//! Every method is one step: the manager runs each under a timeout
//! ([`super::SandboxManager::step`]), so a hung step fails the call instead
//! of wedging the sandbox.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use nix::sys::signal::Signal;
use tokio::sync::watch;

use super::infra::{self, InfraArgs, InfraProcess};
use super::record::{SandboxRecord, UserNamespace};
use super::{SandboxError, blocking, files};
use crate::cri::api::v1 as cri;
use crate::sys::cni::{self, Attachment, NetworkList};
use crate::sys::ns::{self, NsKind};
use crate::sys::{cgroup, sysctl};

/// What a kernel step returns: boxed so the trait stays object safe.
pub type StepFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SandboxError>> + Send + 'a>>;

/// The steps, in the order RunPodSandbox takes them, then the release steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    LoadNetwork,
    Dir,
    Cgroup,
    Infra,
    Pin,
    Sysctls,
    CniAdd,
    Files,
    CniDel,
    StopInfra,
    Unpin,
    CgroupRemove,
    DirRemove,
}

/// What the infra process is started with.
#[derive(Debug, Clone)]
pub struct InfraSpawn {
    pub args: InfraArgs,
    pub cgroup: Option<String>,
    pub userns: Option<UserNamespace>,
}

/// A running infra process: its pid, its exit, and how to signal it.
#[derive(Clone)]
pub struct InfraHandle {
    pub pid: i32,
    pub exited: watch::Receiver<bool>,
    pub signal: Arc<dyn Fn(Signal) -> std::io::Result<()> + Send + Sync>,
}

pub trait SandboxKernel: Send + Sync + 'static {
    /// The default CNI network list (the first config file).
    fn load_network(&self) -> StepFuture<'_, NetworkList>;
    fn make_dir(&self, dir: PathBuf) -> StepFuture<'_, ()>;
    fn create_cgroup(&self, path: String) -> StepFuture<'_, ()>;
    fn spawn_infra(&self, spawn: InfraSpawn) -> StepFuture<'_, InfraProcess>;
    /// Starts watching a live infra process (a pidfd and a reaper).
    fn watch_infra(&self, infra: InfraProcess) -> std::io::Result<InfraHandle>;
    fn infra_alive(&self, infra: &InfraProcess) -> bool;
    fn pin_namespaces(&self, pid: i32, pins: Vec<(PathBuf, NsKind)>) -> StepFuture<'_, ()>;
    fn apply_sysctls(
        &self,
        pins: Vec<(PathBuf, NsKind)>,
        sysctls: Vec<(String, String)>,
    ) -> StepFuture<'_, ()>;
    /// Whether the loopback plugin exists (then `lo` is brought up too).
    fn has_loopback(&self) -> bool;
    fn cni_add(&self, list: NetworkList, att: Attachment) -> StepFuture<'_, serde_json::Value>;
    fn cni_del(
        &self,
        list: NetworkList,
        att: Attachment,
        prev: Option<serde_json::Value>,
    ) -> StepFuture<'_, ()>;
    fn write_files(&self, record: SandboxRecord, dns: Option<cri::DnsConfig>)
    -> StepFuture<'_, ()>;
    fn unpin_namespaces(&self, pins: Vec<PathBuf>) -> StepFuture<'_, ()>;
    fn remove_cgroup(&self, path: String) -> StepFuture<'_, ()>;
    fn remove_dir(&self, dir: PathBuf) -> StepFuture<'_, ()>;
}

/// The real kernel: nix, cgroupfs, the infra binary, CNI plugins.
pub struct RealKernel {
    pub infra_exe: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni: cni::Exec,
}

impl SandboxKernel for RealKernel {
    fn load_network(&self) -> StepFuture<'_, NetworkList> {
        let dir = self.cni_conf_dir.clone();
        Box::pin(async move {
            blocking(move || cni::load_default(&dir))
                .await?
                .map_err(|e| SandboxError::failed("network plugin not ready", e))
        })
    }

    fn make_dir(&self, dir: PathBuf) -> StepFuture<'_, ()> {
        Box::pin(async move {
            blocking(move || std::fs::create_dir_all(dir))
                .await?
                .map_err(|e| SandboxError::failed("creating sandbox dir", e))
        })
    }

    fn create_cgroup(&self, path: String) -> StepFuture<'_, ()> {
        Box::pin(async move {
            blocking(move || cgroup::create(&path))
                .await?
                .map_err(|e| SandboxError::failed("creating pod cgroup", e))
        })
    }

    fn spawn_infra(&self, spawn: InfraSpawn) -> StepFuture<'_, InfraProcess> {
        let exe = self.infra_exe.clone();
        Box::pin(async move {
            blocking(move || {
                let maps = spawn
                    .userns
                    .as_ref()
                    .map(|u| (u.uids.as_slice(), u.gids.as_slice()));
                infra::spawn(&exe, &spawn.args, spawn.cgroup.as_deref(), maps)
            })
            .await?
            .map_err(|e| SandboxError::failed("starting infra process", e))
        })
    }

    fn watch_infra(&self, infra: InfraProcess) -> std::io::Result<InfraHandle> {
        super::infra_watch::watch_pidfd(infra)
    }

    fn infra_alive(&self, infra: &InfraProcess) -> bool {
        infra.alive()
    }

    fn pin_namespaces(&self, pid: i32, pins: Vec<(PathBuf, NsKind)>) -> StepFuture<'_, ()> {
        Box::pin(async move {
            blocking(move || {
                pins.iter()
                    .try_for_each(|(path, kind)| ns::pin(pid, *kind, path))
            })
            .await?
            .map_err(|e| SandboxError::failed("pinning namespace", e))
        })
    }

    fn apply_sysctls(
        &self,
        pins: Vec<(PathBuf, NsKind)>,
        sysctls: Vec<(String, String)>,
    ) -> StepFuture<'_, ()> {
        Box::pin(async move {
            blocking(move || sysctl::apply(&pins, &sysctls))
                .await?
                .map_err(|e| match e {
                    sysctl::SysctlError::InvalidName(_) | sysctl::SysctlError::NotNamespaced(_) => {
                        SandboxError::InvalidArgument(e.to_string())
                    }
                    e => SandboxError::failed("applying sysctls", e),
                })
        })
    }

    fn has_loopback(&self) -> bool {
        self.cni
            .bin_dirs
            .iter()
            .any(|d| d.join("loopback").is_file())
    }

    fn cni_add(&self, list: NetworkList, att: Attachment) -> StepFuture<'_, serde_json::Value> {
        Box::pin(async move {
            self.cni.add(&list, &att).await.map_err(|e| {
                SandboxError::failed(&format!("CNI ADD on network {:?}", list.name), e)
            })
        })
    }

    fn cni_del(
        &self,
        list: NetworkList,
        att: Attachment,
        prev: Option<serde_json::Value>,
    ) -> StepFuture<'_, ()> {
        Box::pin(async move {
            self.cni
                .del(&list, &att, prev.as_ref())
                .await
                .map_err(|e| SandboxError::failed("CNI DEL", e))
        })
    }

    fn write_files(
        &self,
        record: SandboxRecord,
        dns: Option<cri::DnsConfig>,
    ) -> StepFuture<'_, ()> {
        Box::pin(async move { blocking(move || write_files(&record, dns.as_ref())).await? })
    }

    fn unpin_namespaces(&self, pins: Vec<PathBuf>) -> StepFuture<'_, ()> {
        Box::pin(async move {
            blocking(move || pins.iter().try_for_each(|p| ns::unpin(p)))
                .await?
                .map_err(|e| SandboxError::failed("unpinning namespace", e))
        })
    }

    fn remove_cgroup(&self, path: String) -> StepFuture<'_, ()> {
        Box::pin(async move {
            blocking(move || cgroup::remove(&path))
                .await?
                .map_err(|e| SandboxError::failed("removing pod cgroup", e))
        })
    }

    fn remove_dir(&self, dir: PathBuf) -> StepFuture<'_, ()> {
        Box::pin(async move {
            blocking(move || match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .await?
            .map_err(|e| SandboxError::failed("removing sandbox dir", e))
        })
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

//! An in-memory [`SandboxKernel`] for unit tests: it keeps the set of
//! resources it "made" (dirs, cgroups, infra processes, pins, CNI
//! attachments), logs every step, and can be told to fail or hang at one.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::signal::Signal;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::SandboxError;
use super::infra::InfraProcess;
use super::kernel::{InfraHandle, InfraSpawn, SandboxKernel, Step, StepFuture};
use super::record::SandboxRecord;
use crate::cri::api::v1 as cri;
use crate::sys::cni::{Attachment, NetworkList};
use crate::sys::ns::NsKind;

/// What a step does when it is the faulty one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Fail,
    Hang,
}

/// One resource the fake holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Held {
    Dir(PathBuf),
    Cgroup(String),
    Infra(i32),
    Pin(PathBuf),
    Cni(String),
    Files(PathBuf),
}

#[derive(Default)]
struct State {
    held: BTreeSet<Held>,
    log: Vec<Step>,
    fault: Option<(Step, Fault)>,
    next_pid: i32,
    /// Exit senders of the live fake infra processes.
    infra: Vec<(i32, watch::Sender<bool>)>,
}

#[derive(Default, Clone)]
pub struct FakeKernel {
    state: Arc<Mutex<State>>,
}

impl FakeKernel {
    pub fn new() -> Self {
        let fake = Self::default();
        fake.state.lock().next_pid = 1000;
        fake
    }

    /// Makes `step` fail (or hang) from now on, until [`Self::clear`].
    pub fn fault(&self, step: Step, fault: Fault) {
        self.state.lock().fault = Some((step, fault));
    }

    pub fn clear(&self) {
        self.state.lock().fault = None;
    }

    pub fn held(&self) -> BTreeSet<Held> {
        self.state.lock().held.clone()
    }

    pub fn log(&self) -> Vec<Step> {
        self.state.lock().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().log.clear();
    }

    /// Ends a fake infra process as if it died by itself.
    pub fn kill_infra(&self, pid: i32) {
        let mut state = self.state.lock();
        state.held.remove(&Held::Infra(pid));
        for (_, tx) in state.infra.iter().filter(|(p, _)| *p == pid) {
            let _ = tx.send(true);
        }
    }

    /// Runs `step`: logs it, then fails, hangs or applies `change`.
    fn step<T: Send + 'static>(
        &self,
        step: Step,
        change: impl FnOnce(&mut State) -> T + Send + 'static,
    ) -> StepFuture<'_, T> {
        let state = self.state.clone();
        Box::pin(async move {
            let fault = {
                let mut s = state.lock();
                s.log.push(step);
                s.fault.filter(|(at, _)| *at == step).map(|(_, f)| f)
            };
            match fault {
                Some(Fault::Fail) => {
                    Err(SandboxError::Failed(format!("injected fault at {step:?}")))
                }
                Some(Fault::Hang) => std::future::pending().await,
                None => Ok(change(&mut state.lock())),
            }
        })
    }
}

fn test_network() -> NetworkList {
    NetworkList {
        name: "fake".into(),
        cni_version: "1.0.0".into(),
        plugins: vec![serde_json::json!({"type": "fake"})],
        source: PathBuf::from("/fake/10-fake.conflist"),
    }
}

impl SandboxKernel for FakeKernel {
    fn load_network(&self) -> StepFuture<'_, NetworkList> {
        self.step(Step::LoadNetwork, |_| test_network())
    }

    fn make_dir(&self, dir: PathBuf) -> StepFuture<'_, ()> {
        // A real dir too: the record store and the manager look at it.
        let _ = std::fs::create_dir_all(&dir);
        self.step(Step::Dir, move |s| {
            s.held.insert(Held::Dir(dir));
        })
    }

    fn create_cgroup(&self, path: String) -> StepFuture<'_, ()> {
        self.step(Step::Cgroup, move |s| {
            s.held.insert(Held::Cgroup(path));
        })
    }

    fn spawn_infra(&self, _spawn: InfraSpawn) -> StepFuture<'_, InfraProcess> {
        self.step(Step::Infra, move |s| {
            s.next_pid += 1;
            let pid = s.next_pid;
            s.held.insert(Held::Infra(pid));
            InfraProcess { pid, start_time: 1 }
        })
    }

    fn watch_infra(&self, infra: InfraProcess) -> std::io::Result<InfraHandle> {
        let mut state = self.state.lock();
        if !state.held.contains(&Held::Infra(infra.pid)) {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        let (tx, rx) = watch::channel(false);
        state.infra.push((infra.pid, tx));
        let fake = self.clone();
        let pid = infra.pid;
        Ok(InfraHandle {
            pid,
            exited: rx,
            signal: Arc::new(move |_signal: Signal| {
                fake.kill_infra(pid);
                Ok(())
            }),
        })
    }

    fn infra_alive(&self, infra: &InfraProcess) -> bool {
        self.state.lock().held.contains(&Held::Infra(infra.pid))
    }

    fn pin_namespaces(&self, _pid: i32, pins: Vec<(PathBuf, NsKind)>) -> StepFuture<'_, ()> {
        self.step(Step::Pin, move |s| {
            s.held.extend(pins.into_iter().map(|(p, _)| Held::Pin(p)));
        })
    }

    fn apply_sysctls(
        &self,
        _pins: Vec<(PathBuf, NsKind)>,
        _sysctls: Vec<(String, String)>,
    ) -> StepFuture<'_, ()> {
        self.step(Step::Sysctls, |_| ())
    }

    fn has_loopback(&self) -> bool {
        false
    }

    fn cni_add(&self, _list: NetworkList, att: Attachment) -> StepFuture<'_, serde_json::Value> {
        self.step(Step::CniAdd, move |s| {
            s.held.insert(Held::Cni(att.container_id));
            serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.9/16", "interface": 0}], "interfaces": [{"name": "eth0"}]})
        })
    }

    fn cni_del(
        &self,
        _list: NetworkList,
        att: Attachment,
        _prev: Option<serde_json::Value>,
    ) -> StepFuture<'_, ()> {
        self.step(Step::CniDel, move |s| {
            s.held.remove(&Held::Cni(att.container_id));
        })
    }

    fn write_files(
        &self,
        record: SandboxRecord,
        _dns: Option<cri::DnsConfig>,
    ) -> StepFuture<'_, ()> {
        self.step(Step::Files, move |s| {
            s.held.insert(Held::Files(record.dir));
        })
    }

    fn unpin_namespaces(&self, pins: Vec<PathBuf>) -> StepFuture<'_, ()> {
        self.step(Step::Unpin, move |s| {
            for p in pins {
                s.held.remove(&Held::Pin(p));
            }
        })
    }

    fn remove_cgroup(&self, path: String) -> StepFuture<'_, ()> {
        self.step(Step::CgroupRemove, move |s| {
            s.held.remove(&Held::Cgroup(path));
        })
    }

    fn remove_dir(&self, dir: PathBuf) -> StepFuture<'_, ()> {
        let _ = std::fs::remove_dir_all(&dir);
        self.step(Step::DirRemove, move |s| {
            s.held.remove(&Held::Files(dir.clone()));
            s.held
                .retain(|h| !matches!(h, Held::Dir(d) if d.starts_with(&dir)));
        })
    }
}

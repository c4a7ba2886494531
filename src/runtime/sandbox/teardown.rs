//! StopPodSandbox, RemovePodSandbox and rollback: releases what a record
//! holds, in reverse order of creation; idempotent.

use super::*;

impl Sandbox {
    /// Marks the sandbox not ready from the moment it starts going away (this
    /// also tells the exit watcher that the infra's exit is expected) and
    /// returns a working copy of its record with the infra handle.
    pub(super) fn begin_teardown(&self) -> (SandboxRecord, Option<InfraHandle>) {
        let record = {
            let mut current = self.record.lock();
            current.state = SandboxState::NotReady;
            current.clone()
        };
        (record, self.infra.lock().clone())
    }

    /// Publishes what a teardown step left of the record, done or not.
    pub(super) fn end_teardown(&self, record: &mut SandboxRecord) {
        if record.infra.is_none() {
            *self.infra.lock() = None;
        }
        record.state = SandboxState::NotReady;
        *self.record.lock() = record.clone();
    }
}

impl SandboxManager {
    /// CNI DEL (when owed) and the infra process's end. Idempotent. The
    /// infra is stopped even when DEL fails (a stopped pod must not keep
    /// running); the DEL error is returned so the caller can retry it.
    pub(super) async fn stop_parts(
        &self,
        record: &mut SandboxRecord,
        handle: Option<InfraHandle>,
    ) -> Result<(), SandboxError> {
        let mut first_error = None;
        if let Some(network) = record.network.clone().filter(|n| n.attached) {
            let att = self.attachment(record, "eth0", network.port_mappings.clone());
            let del = self
                .kernel
                .cni_del(network.list.clone(), att, network.result.clone());
            match self.step(Step::CniDel, del).await {
                Ok(()) => {
                    if network.loopback {
                        // lo goes away with the namespace: a failed DEL leaks nothing.
                        let att = self.attachment(record, "lo", vec![]);
                        let del = self.kernel.cni_del(loopback_list(), att, None);
                        let _ = self.step(Step::CniDel, del).await;
                    }
                    record.network.as_mut().expect("network").attached = false;
                    if let Err(e) = self.save(record).await {
                        first_error.get_or_insert(e);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(infra) = record.infra {
            let handle = match handle {
                Some(h) => Some(h),
                None if self.kernel.infra_alive(&infra) => self.kernel.watch_infra(infra).ok(),
                None => None,
            };
            match handle {
                Some(handle) => match self.stop_infra(&handle).await {
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
    pub(super) async fn release(
        &self,
        record: &mut SandboxRecord,
        handle: Option<InfraHandle>,
        best_effort: bool,
    ) -> Result<(), SandboxError> {
        let mut first_error: Option<SandboxError> = None;
        let id = record.id.clone();
        let mut done = |result: Result<(), SandboxError>| -> Result<(), SandboxError> {
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
        done(self.stop_parts(record, handle).await)?;
        let kernel = &self.kernel;
        let pins: Vec<PathBuf> = record
            .namespaces
            .iter()
            .map(|k| record.ns_path(*k))
            .collect();
        done(self.step(Step::Unpin, kernel.unpin_namespaces(pins)).await)?;
        if let Some(cg) = record.cgroup.clone() {
            done(
                self.step(Step::CgroupRemove, kernel.remove_cgroup(cg))
                    .await,
            )?;
        }
        let dir = record.dir.clone();
        done(self.step(Step::DirRemove, kernel.remove_dir(dir)).await)?;
        let (store, id) = (self.records.clone(), record.id.clone());
        done(
            blocking(move || store.delete(&id))
                .await
                .and_then(|r| r.map_err(|e| SandboxError::failed("removing sandbox record", e))),
        )?;
        first_error.map_or(Ok(()), Err)
    }

    /// The sandbox with `id`, or `None` when there is none: stop and remove
    /// of an unknown id succeed.
    pub(super) fn existing(&self, id: &str) -> Result<Option<Arc<Sandbox>>, SandboxError> {
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

    pub(super) async fn stop_to_end(&self, id: &str) -> Result<(), SandboxError> {
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

    pub(super) async fn remove_to_end(&self, id: &str) -> Result<(), SandboxError> {
        let Some(sandbox) = self.existing(id)? else {
            return Ok(());
        };
        let _op = sandbox.op.lock().await;
        let (mut record, handle) = sandbox.begin_teardown();
        let result = self.release(&mut record, handle, false).await;
        sandbox.end_teardown(&mut record);
        result?;
        self.sandboxes.lock().remove(&record.id);
        let mut names = self.names.lock();
        if names.get(&record.reserved_name()) == Some(&record.id) {
            names.remove(&record.reserved_name());
        }
        Ok(())
    }

    /// SIGTERM, a grace period, SIGKILL; returns once the process has
    /// exited and been reaped (the watcher reaps before it reports).
    pub(super) async fn stop_infra(&self, handle: &InfraHandle) -> Result<(), SandboxError> {
        let mut exited = handle.exited.clone();
        let pid = handle.pid;
        (handle.signal)(nix::sys::signal::Signal::SIGTERM)
            .map_err(|e| SandboxError::failed("signalling infra process", e))?;
        if tokio::time::timeout(STOP_GRACE, exited.wait_for(|e| *e))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tracing::warn!(pid, "infra process ignored SIGTERM; killing");
        (handle.signal)(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| SandboxError::failed("killing infra process", e))?;
        tokio::time::timeout(KILL_WAIT, exited.wait_for(|e| *e))
            .await
            .map(|_| ())
            .map_err(|_| SandboxError::Failed(format!("infra process {pid} did not exit")))
    }
}

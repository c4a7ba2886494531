//! One worker per pod (the kubelet's pod worker): syncs the pod whenever its
//! object changes, the runtime reports an event for it, a back-off ends or
//! the relist period passes, and ends once the pod is gone from both the
//! API and the runtime.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{Notify, watch};

use crate::cri::api::{CriError, v1};
use crate::node::backoff::ApiBackoff;
use crate::node::pods::actions::compute_pod_actions_with;
use crate::node::pods::ephemeral;
use crate::node::pods::kill::{self, grace_seconds};
use crate::node::pods::observe::{Observed, attempt, container_name, is_ready, observe};
use crate::node::pods::resize::ResizeState;
use crate::node::pods::start::{Sandbox, StartState, now, start_container};
use crate::node::pods::{NODE_LABEL, PodContext};
use crate::node::podspec;
use crate::node::probes::{self, ProbeManager};
use crate::node::status::events as reasons;
use crate::node::status::{self, ObservedPod};
use crate::node::volumes::size_limit;

const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
const EVICTED: &str = "Evicted";
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// What wakes a worker.
pub struct WorkerInputs {
    /// The pod as the API has it; None once it is gone from the API (or
    /// was never there: an orphan found in the runtime).
    pub pod: watch::Receiver<Option<Arc<Pod>>>,
    pub kick: Arc<Notify>,
}

enum Next {
    /// Sync again after this long at the latest.
    Wait(Duration),
    /// The pod is gone: the worker ends.
    Done,
}

pub struct PodWorker {
    ctx: Arc<PodContext>,
    uid: String,
    pod: Option<Arc<Pod>>,
    /// The last pod seen in the API, kept for its grace period and events.
    last_known: Option<Arc<Pod>>,
    /// The status last written (or seen) in the API.
    reported: Option<PodStatus>,
    start: StartState,
    deadline_exceeded: bool,
    probes: ProbeManager,
    resize: ResizeState,
    /// Why the eviction manager's emptyDir check evicted the pod.
    evicted: Option<String>,
    last_usage_check: Option<std::time::Instant>,
}

impl PodWorker {
    pub fn new(ctx: Arc<PodContext>, uid: String) -> Self {
        Self {
            ctx,
            uid,
            pod: None,
            last_known: None,
            reported: None,
            start: StartState::default(),
            deadline_exceeded: false,
            probes: ProbeManager::default(),
            resize: ResizeState::default(),
            evicted: None,
            last_usage_check: None,
        }
    }

    /// Runs until the pod is gone, or the manager stops (its sender dropped).
    pub async fn run(mut self, mut inputs: WorkerInputs) -> String {
        let mut errors = ApiBackoff::new(Duration::from_secs(1), Duration::from_secs(30));
        // A probe result that changes wakes the worker.
        self.probes.set_kick(inputs.kick.clone());
        loop {
            let pod = inputs.pod.borrow_and_update().clone();
            if let Some(p) = &pod {
                self.last_known = Some(p.clone());
            }
            self.pod = pod;
            let wait = match self.sync().await {
                Ok(Next::Done) => return self.uid,
                Ok(Next::Wait(d)) => {
                    errors = ApiBackoff::new(Duration::from_secs(1), Duration::from_secs(30));
                    d
                }
                Err(e) => {
                    let d = errors.next_delay();
                    tracing::warn!(pod = %self.uid, error = %e, retry_in = ?d, "syncing pod");
                    d
                }
            };
            tokio::select! {
                changed = inputs.pod.changed() => if changed.is_err() { return self.uid },
                _ = inputs.kick.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn sync(&mut self) -> Result<Next, SyncError> {
        let observed = observe(self.ctx.runtime.as_ref(), &self.uid).await?;
        let Some(pod) = self.pod.clone() else {
            self.probes.stop_all();
            return self.teardown(&observed).await;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            self.probes.stop_all();
            return self.terminate(&pod, &observed).await;
        }
        let status = pod.status.as_ref();
        let terminal = matches!(
            self.reported
                .as_ref()
                .or(status)
                .and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if terminal || self.deadline_check(&pod) || self.eviction_check(&pod).await {
            // A finished pod runs nothing; it stays until it is deleted.
            self.probes.stop_all();
            if observed.running().next().is_some() || observed.sandboxes.iter().any(is_ready) {
                kill::kill_pod(&self.ctx, Some(&pod), &observed, grace_seconds(Some(&pod))).await;
            }
            let observed = observe(self.ctx.runtime.as_ref(), &self.uid).await?;
            self.report(&pod, &observed).await?;
            return Ok(Next::Wait(self.ctx.relist_period));
        }

        self.start.wake_after = None;
        // Volumes before the sandbox and the containers, as the kubelet's
        // WaitForAttachAndMount; every sync also refreshes their contents.
        let volumes = self
            .ctx
            .volumes
            .sync(&pod, &self.ctx.node, &self.ctx.events)
            .await;
        self.start.wake_after = volumes.retry;
        self.probes.sync(&self.ctx, &pod, &observed);
        let unhealthy = self.probes.take_unhealthy(&pod);
        let observed = if unhealthy.is_empty() {
            observed
        } else {
            probes::kill_unhealthy(&self.ctx, &pod, &unhealthy).await;
            observe(self.ctx.runtime.as_ref(), &self.uid).await?
        };
        // In-place resizes of running containers (or their restarts).
        let restarts = self.resize.sync(&self.ctx, &pod, &observed).await;
        let observed = if restarts.is_empty() {
            observed
        } else {
            let messages: Vec<String> = restarts
                .iter()
                .map(|(_, n)| format!("Container {n} resize requires restart"))
                .collect();
            let stops: Vec<(&str, &str, Option<&str>)> = restarts
                .iter()
                .zip(&messages)
                .map(|((id, n), m)| (id.as_str(), n.as_str(), Some(m.as_str())))
                .collect();
            kill::stop_containers_because(&self.ctx, Some(&pod), &stops, grace_seconds(Some(&pod)))
                .await;
            observe(self.ctx.runtime.as_ref(), &self.uid).await?
        };
        let probes = &self.probes;
        let mut actions =
            compute_pod_actions_with(&pod, &observed, &|name| probes.started(&pod, name));
        if !actions.kill_pod && actions.create_sandbox.is_none() {
            // Ephemeral containers first: an init container ends the loop below.
            let mut debug = ephemeral::to_start(&pod, &observed);
            debug.append(&mut actions.start);
            actions.start = debug;
        }
        tracing::debug!(pod = %self.uid, ?actions, "pod actions");
        let grace = grace_seconds(Some(&pod));
        let kill: Vec<(&str, &str, Option<&str>)> = actions
            .kill
            .iter()
            .map(|k| (k.id.as_str(), k.name.as_str(), k.message.as_deref()))
            .collect();
        kill::stop_containers_because(&self.ctx, Some(&pod), &kill, grace).await;
        if actions.kill_pod {
            kill::kill_pod(&self.ctx, Some(&pod), &observed, grace).await;
        }
        let mut observed = observed;
        if let Some(attempt) = actions.create_sandbox.filter(|_| volumes.ready) {
            match self.create_sandbox(&pod, attempt).await {
                Ok(()) => observed = observe(self.ctx.runtime.as_ref(), &self.uid).await?,
                Err(message) => {
                    self.ctx.events.pod_event(
                        &pod,
                        None,
                        reasons::WARNING,
                        reasons::FAILED_CREATE_POD_SANDBOX,
                        format!("Failed to create pod sandbox: {message}"),
                    );
                    self.report(&pod, &observed).await?;
                    return Ok(Next::Wait(Duration::from_secs(10)));
                }
            }
        }
        if !actions.start.is_empty()
            && volumes.ready
            && let Some(sb) = observed.newest_sandbox().filter(|s| is_ready(s))
        {
            let sb_attempt = sb.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
            match self.sandbox_config(&pod, sb_attempt) {
                Ok(config) => {
                    let ips = observed.pod_ips();
                    let sandbox = Sandbox {
                        id: &sb.id,
                        config: &config,
                        pod_ips: &ips,
                    };
                    for want in &actions.start {
                        let ok =
                            start_container(&self.ctx, &mut self.start, &pod, want, &sandbox).await;
                        if ok {
                            self.prune_attempts(&observed, &want.name, want.restart_count)
                                .await;
                        }
                        if want.init {
                            break;
                        }
                    }
                }
                Err(e) => {
                    for want in &actions.start {
                        self.start
                            .waiting
                            .insert(want.name.clone(), (e.reason.to_string(), e.message.clone()));
                    }
                }
            }
            observed = observe(self.ctx.runtime.as_ref(), &self.uid).await?;
        }
        self.probes.sync(&self.ctx, &pod, &observed);
        self.report(&pod, &observed).await?;
        let mut wait = self.ctx.relist_period;
        if let Some(d) = self.start.wake_after {
            wait = wait.min(d + Duration::from_millis(100));
        }
        if let Some(d) = self.deadline_in(&pod) {
            wait = wait.min(d);
        }
        if size_limit::has_limits(&pod) {
            wait = wait.min(size_limit::CHECK_PERIOD);
        }
        Ok(Next::Wait(wait))
    }

    fn sandbox_config(
        &self,
        pod: &Pod,
        attempt: u32,
    ) -> Result<v1::PodSandboxConfig, podspec::PodSpecError> {
        let mut config = podspec::sandbox_config(pod, attempt, &self.ctx.node)?;
        // Which node started it: orphan teardown touches only ours, so a
        // runtime shared with another kubelet keeps that kubelet's pods.
        config
            .labels
            .insert(NODE_LABEL.into(), self.ctx.node.node_name.clone());
        Ok(config)
    }

    async fn create_sandbox(&self, pod: &Pod, attempt: u32) -> Result<(), String> {
        let config = self.sandbox_config(pod, attempt).map_err(|e| e.message)?;
        let handler = pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.clone())
            .unwrap_or_default();
        let call = self.ctx.runtime.run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: handler,
        });
        match tokio::time::timeout(Duration::from_secs(240), call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.message),
            Err(_) => Err("RunPodSandbox timed out".into()),
        }
    }

    /// Keeps the newest dead attempt of a restarted container (its
    /// lastState) and removes older ones, as the kubelet's container GC.
    async fn prune_attempts(&self, observed: &Observed, name: &str, started: u32) {
        for c in observed
            .containers
            .iter()
            .filter(|c| container_name(c) == name)
        {
            if attempt(c) + 1 < started && c.state == v1::ContainerState::ContainerExited as i32 {
                kill::remove_container(&self.ctx, &c.id).await;
            }
        }
    }

    fn deadline_in(&self, pod: &Pod) -> Option<Duration> {
        let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
        let start = self
            .reported
            .as_ref()
            .or(pod.status.as_ref())?
            .start_time
            .clone()?;
        let start: std::time::SystemTime = start.0.into();
        let end = start + Duration::from_secs(seconds.max(0) as u64);
        Some(
            end.duration_since(std::time::SystemTime::now())
                .unwrap_or_default(),
        )
    }

    /// True once activeDeadlineSeconds has passed (an Event the first time).
    fn deadline_check(&mut self, pod: &Pod) -> bool {
        if !self.deadline_exceeded && self.deadline_in(pod) == Some(Duration::ZERO) {
            self.deadline_exceeded = true;
            self.ctx.events.pod_event(
                pod,
                None,
                reasons::NORMAL,
                DEADLINE_EXCEEDED,
                DEADLINE_MESSAGE.into(),
            );
        }
        self.deadline_exceeded
    }

    /// True once an emptyDir went over its sizeLimit (measured at most
    /// every CHECK_PERIOD): the pod is evicted, with kubelet's event.
    async fn eviction_check(&mut self, pod: &Pod) -> bool {
        if self.evicted.is_some() {
            return true;
        }
        let due = self
            .last_usage_check
            .is_none_or(|t| t.elapsed() >= size_limit::CHECK_PERIOD);
        if !due || !size_limit::has_limits(pod) {
            return false;
        }
        self.last_usage_check = Some(std::time::Instant::now());
        let (root, p) = (self.ctx.volumes.root_dir().to_path_buf(), pod.clone());
        let over = tokio::task::spawn_blocking(move || size_limit::over_limit(&root, &p))
            .await
            .ok()
            .flatten();
        let Some(message) = over else {
            return false;
        };
        tracing::info!(pod = %self.uid, %message, "evicting pod");
        self.ctx
            .events
            .pod_event(pod, None, reasons::WARNING, EVICTED, message.clone());
        self.evicted = Some(message);
        true
    }

    /// The pod is being deleted: stop it within its grace period, report
    /// the final status, then delete the object (grace 0, UID precondition).
    async fn terminate(&mut self, pod: &Pod, observed: &Observed) -> Result<Next, SyncError> {
        kill::kill_pod(&self.ctx, Some(pod), observed, grace_seconds(Some(pod))).await;
        let observed = observe(self.ctx.runtime.as_ref(), &self.uid).await?;
        self.report(pod, &observed).await?;
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        match tokio::time::timeout(API_TIMEOUT, api.delete(&name, &params)).await {
            Ok(Ok(_)) => {}
            // Gone already, or replaced by another pod of the same name.
            Ok(Err(kube::Error::Api(s))) if s.code == 404 || s.code == 409 => {}
            Ok(Err(e)) => return Err(SyncError::Api(e)),
            Err(_) => return Err(SyncError::Timeout("deleting the pod")),
        }
        self.finish(&observed).await
    }

    /// Removes the pod's containers, sandboxes and log directory: Done once
    /// all are gone.
    async fn finish(&self, observed: &Observed) -> Result<Next, SyncError> {
        if !kill::remove_pod(&self.ctx, observed).await {
            return Ok(Next::Wait(Duration::from_secs(5)));
        }
        if let Err(e) = self.ctx.volumes.teardown(&self.uid).await {
            tracing::warn!(pod = %self.uid, error = %e, "tearing down the pod's volumes");
            return Ok(Next::Wait(Duration::from_secs(5)));
        }
        // /var/log/pods/<namespace>_<name>_<uid>, as the sandbox config names it.
        let names = self
            .last_known
            .as_ref()
            .map(|p| {
                (
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                )
            })
            .or_else(|| {
                let m = observed.sandboxes.first()?.metadata.as_ref()?;
                Some((m.namespace.clone(), m.name.clone()))
            });
        if let Some((ns, name)) = names {
            let dir = self
                .ctx
                .node
                .pod_logs_dir
                .join(format!("{ns}_{name}_{}", self.uid));
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
            if let Ok(Err(e)) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(pod = %self.uid, error = %e, "removing the pod's logs");
            }
        }
        tracing::info!(pod = %self.uid, "pod removed from the runtime");
        Ok(Next::Done)
    }

    /// The pod is not in the API (deleted with grace 0, or an orphan from
    /// before a restart): stop and remove whatever the runtime holds of it.
    async fn teardown(&mut self, observed: &Observed) -> Result<Next, SyncError> {
        if observed.sandboxes.is_empty() && observed.containers.is_empty() {
            return Ok(Next::Done);
        }
        tracing::info!(pod = %self.uid, "tearing down a pod that is not in the API");
        let grace = grace_seconds(self.last_known.as_deref());
        kill::kill_pod(&self.ctx, self.last_known.as_deref(), observed, grace).await;
        let observed = observe(self.ctx.runtime.as_ref(), &self.uid).await?;
        self.finish(&observed).await
    }

    /// Computes the status and patches it when it changed.
    async fn report(&mut self, pod: &Pod, observed: &Observed) -> Result<(), SyncError> {
        let mut current = pod.clone();
        if let Some(r) = &self.reported {
            current.status = Some(r.clone());
        }
        let qos = podspec::qos_class(pod);
        let (readiness, startup) = (self.probes.readiness(), self.probes.startup());
        let view = ObservedPod {
            sandboxes: &observed.sandboxes,
            containers: &observed.containers,
            waiting: &self.start.waiting,
            readiness: &readiness,
            startup: &startup,
            qos_class: qos.as_str(),
            runtime_name: &self.ctx.runtime_name,
        };
        let mut new = status::pod_status(&current, &view, &self.ctx.node.host_ips, now());
        if self.deadline_exceeded {
            new.phase = Some("Failed".into());
            new.reason = Some(DEADLINE_EXCEEDED.into());
            new.message = Some(DEADLINE_MESSAGE.into());
        }
        let generation = pod.metadata.generation.filter(|g| *g != 0);
        if let Some(message) = &self.evicted {
            new.phase = Some("Failed".into());
            new.reason = Some(EVICTED.into());
            new.message = Some(message.clone());
            let conds = new.conditions.get_or_insert_with(Vec::new);
            if !conds.iter().any(|c| c.type_ == "DisruptionTarget") {
                conds.push(k8s_openapi::api::core::v1::PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some("TerminationByKubelet".into()),
                    message: Some(message.clone()),
                    last_transition_time: Some(now()),
                    observed_generation: generation,
                    ..Default::default()
                });
            }
        }
        self.resize
            .report(current.status.as_ref(), &mut new, generation);
        let old_phase = current.status.as_ref().and_then(|s| s.phase.as_deref());
        crate::node::server::metrics::observe_pod_phase(pod, old_phase, new.phase.as_deref());
        let Some(patch) = status::pod_status_patch(&current, &new) else {
            return Ok(());
        };
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = PatchParams::default();
        let body = Patch::Strategic(&patch);
        let call = api.patch_status(&name, &params, &body);
        match tokio::time::timeout(API_TIMEOUT, call).await {
            Ok(Ok(updated)) => {
                self.reported = updated.status.or(Some(new));
                Ok(())
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 404 || s.code == 409 => Ok(()),
            Ok(Err(e)) => Err(SyncError::Api(e)),
            Err(_) => Err(SyncError::Timeout("patching pod status")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("runtime: {0}")]
    Cri(#[from] CriError),
    #[error("apiserver: {0}")]
    Api(#[from] kube::Error),
    #[error("{0} timed out")]
    Timeout(&'static str),
}

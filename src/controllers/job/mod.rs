//! The Job controller (kube-controller-manager's job controller, with the
//! ttl-after-finished controller folded in): runs a Job's pods to its
//! completions with its parallelism, re-creates failed pods after a
//! doubling back-off until backoffLimit, honours activeDeadlineSeconds,
//! podFailurePolicy (FailJob, Ignore, Count), suspend, Indexed completion,
//! and deletes a finished job after ttlSecondsAfterFinished. Pods are
//! tracked with the batch.kubernetes.io/job-tracking finalizer.
//!
//! Jobs and pods come from reflectors; a change marks the job's key in a
//! work queue; each due key is reconciled from the cache (level-triggered)
//! by the pure `plan`, then written: status first, then finalizers, pod
//! deletions and creations. Expectations keep a stale cache from creating
//! twice. Left out: backoffLimitPerIndex / maxFailedIndexes, successPolicy,
//! managedBy other than kube's (such jobs are skipped), adoption of
//! orphaned pods by selector.

pub mod expect;
pub mod failure_policy;
pub mod indexes;
pub mod plan;
pub mod pods;
pub mod workqueue;
pub mod write;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::controllers;
use crate::node::events::EventRecorder;
use expect::Expectations;
use plan::Backoff;
use workqueue::{CallError, WorkQueue, call, controller_key, controller_uid, key_of};

/// What `run` needs to know.
#[derive(Debug, Clone, Default)]
pub struct JobConfig {
    /// The back-off between re-creations of failed pods.
    pub backoff: Backoff,
}

/// How often the queue is looked at when nothing happens.
const TICK: Duration = Duration::from_secs(1);
const MANAGED_BY_US: &str = "kubernetes.io/job-controller";

struct Controller {
    client: kube::Client,
    config: JobConfig,
    events: EventRecorder,
    jobs: Store<Job>,
    pods: Store<Pod>,
    queue: WorkQueue,
    expect: Expectations,
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("default", key))
}

impl Controller {
    fn owned_pods(&self, key: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| controller_key(&p.metadata, "Job").as_deref() == Some(key))
            .collect()
    }

    /// Reconciles one job; when to look again.
    async fn sync(&mut self, key: &str) -> Result<Option<Duration>, CallError> {
        let (ns, name) = split(key);
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut owned = self.owned_pods(key);
        let job = self.jobs.get(&ObjectRef::new(name).within(ns));
        let live = job
            .as_ref()
            .filter(|j| j.metadata.deletion_timestamp.is_none());
        // Pods of a job that is gone (or of an older job of that name) are
        // no longer tracked.
        let uid = live.and_then(|j| j.metadata.uid.clone());
        let (mine, orphans): (Vec<_>, Vec<_>) = owned
            .drain(..)
            .partition(|p| uid.is_some() && controller_uid(&p.metadata) == uid.as_deref());
        for p in orphans.iter().filter(|p| pods::has_finalizer(p)) {
            write::remove_finalizer(&pod_api, p, pods::TRACKING_FINALIZER).await?;
        }
        let Some(job) = live else {
            self.expect.forget(key);
            return Ok(None);
        };
        let managed_by = job.spec.as_ref().and_then(|s| s.managed_by.as_deref());
        if managed_by.is_some_and(|m| m != MANAGED_BY_US) {
            return Ok(None);
        }
        let now = Instant::now();
        let cached = |n: &str| {
            mine.iter()
                .find(|p| pods::name(p) == n)
                .map(|p| pods::deleting(p))
        };
        if !self
            .expect
            .satisfied(key, job.metadata.resource_version.as_deref(), cached, now)
        {
            tracing::debug!(job = %key, "waiting for the cache");
            return Ok(Some(TICK));
        }
        let refs: Vec<&Pod> = mine.iter().map(|p| p.as_ref()).collect();
        let wall = Timestamp::now();
        let plan = plan::plan(job, &refs, wall, &self.config.backoff);
        let job_api: Api<Job> = Api::namespaced(self.client.clone(), ns);

        if job.status.as_ref() != Some(&plan.status) {
            let mut desired = Job::clone(job);
            desired.status = Some(plan.status.clone());
            call(
                format!("updating the status of job {key}"),
                job_api.replace_status(name, &PostParams::default(), &desired),
            )
            .await?;
            self.expect
                .wrote(key, job.metadata.resource_version.as_deref(), now);
        }
        for (type_, reason, message) in &plan.events {
            write::object_event(
                &self.events,
                "batch/v1",
                "Job",
                &job.metadata,
                type_,
                reason,
                message.clone(),
            );
        }
        for n in &plan.finalize {
            if let Some(p) = mine.iter().find(|p| pods::name(p) == n) {
                write::remove_finalizer(&pod_api, p, pods::TRACKING_FINALIZER).await?;
            }
        }
        for n in &plan.delete {
            if let Some(p) = mine.iter().find(|p| pods::name(p) == n) {
                write::delete_pod(&pod_api, p).await?;
                self.expect.deleted(key, n, now);
                write::object_event(
                    &self.events,
                    "batch/v1",
                    "Job",
                    &job.metadata,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {n}"),
                );
            }
        }
        for index in &plan.create {
            let pod = write::new_pod(job, *index);
            let created = write::create_pod(&pod_api, &pod).await?;
            self.expect.created(key, &created, now);
            write::object_event(
                &self.events,
                "batch/v1",
                "Job",
                &job.metadata,
                "Normal",
                "SuccessfulCreate",
                format!("Created pod: {created}"),
            );
        }
        if plan::finished(job).is_some() {
            return self.expire(job, &job_api, wall).await;
        }
        Ok(plan.requeue)
    }

    /// ttlSecondsAfterFinished: the finished job is deleted (Foreground,
    /// as kube's ttl-after-finished controller does) once it is due.
    async fn expire(
        &self,
        job: &Job,
        api: &Api<Job>,
        now: Timestamp,
    ) -> Result<Option<Duration>, CallError> {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
            return Ok(None);
        };
        let st = job.status.as_ref();
        let Some(done) = st
            .and_then(|s| s.completion_time.as_ref())
            .or_else(|| plan::finished(job).and_then(|c| c.last_transition_time.as_ref()))
        else {
            return Ok(None);
        };
        let due = done.0 + SignedDuration::from_secs(i64::from(ttl));
        let left = due.duration_since(now);
        if left.is_positive() {
            return Ok(Some(left.unsigned_abs()));
        }
        let name = job.metadata.name.as_deref().unwrap_or("");
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match call(
            format!("deleting finished job {name}"),
            api.delete(name, &dp),
        )
        .await
        {
            Ok(_) => {
                tracing::info!(job = %name, "deleted after ttlSecondsAfterFinished");
                Ok(None)
            }
            Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn work(&mut self) {
        let now = Instant::now();
        for key in self.queue.take_due(now) {
            match self.sync(&key).await {
                Ok(requeue) => {
                    self.queue.succeeded(&key);
                    if let Some(d) = requeue {
                        self.queue.add_at(&key, Instant::now() + d);
                    }
                }
                Err(err) => {
                    let wait = self.queue.failed(&key, Instant::now());
                    tracing::warn!(job = %key, error = %err, ?wait, "job sync failed; retrying");
                }
            }
        }
    }
}

/// Runs the Job controller until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: JobConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (events, poster) = controllers::component_events(client.clone(), "job-controller");
    let (jobs, job_watch) = controllers::reflected(Api::<Job>::all(client.clone()));
    let (pods, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let mut job_watch = pin!(job_watch);
    let mut pod_watch = pin!(pod_watch);
    let mut shutdown = pin!(shutdown);
    let mut poster = pin!(futures::FutureExt::fuse(poster));
    let mut c = Controller {
        client,
        config,
        events,
        jobs,
        pods,
        queue: WorkQueue::default(),
        expect: Expectations::default(),
    };
    let (mut jobs_synced, mut pods_synced) = (false, false);
    tracing::info!("job controller started");
    loop {
        let wake = c
            .queue
            .next_due()
            .map(|t| t.min(Instant::now() + TICK))
            .unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut poster => {}
            ev = job_watch.next() => if let Some(ev) = controllers::watch_item(ev, "jobs")? {
                let now = Instant::now();
                match &ev {
                    watcher::Event::InitDone => jobs_synced = true,
                    watcher::Event::Apply(j) | watcher::Event::InitApply(j) | watcher::Event::Delete(j) => {
                        c.queue.changed(&key_of(&j.metadata), now);
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = pod_watch.next() => if let Some(ev) = controllers::watch_item(ev, "pods")? {
                match &ev {
                    watcher::Event::InitDone => pods_synced = true,
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) => {
                        if let Some(key) = controller_key(&p.metadata, "Job") {
                            c.queue.changed(&key, Instant::now());
                        }
                    }
                    watcher::Event::Init => {}
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if jobs_synced && pods_synced {
            c.work().await;
        }
    }
    tracing::info!("job controller stopped");
    Ok(())
}

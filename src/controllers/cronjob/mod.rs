//! The CronJob controller (kube-controller-manager's cronjob controller
//! v2): starts a Job from the jobTemplate at each time of the schedule (in
//! spec.timeZone), named `<cronjob>-<minutes since the epoch>`, honouring
//! startingDeadlineSeconds, concurrencyPolicy Allow/Forbid/Replace,
//! suspend, and the successful/failed job history limits; status.active,
//! lastScheduleTime and lastSuccessfulTime as kube keeps them.
//!
//! CronJobs and Jobs come from reflectors; a change, or the next schedule
//! time, makes a CronJob's key due in the work queue; the pure `plan`
//! decides.

pub mod plan;
pub mod schedule;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Api;
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::controllers;
use crate::controllers::job::expect::Expectations;
use crate::controllers::job::workqueue::{
    CallError, WorkQueue, call, controller_key, controller_uid, key_of,
};
use crate::controllers::job::write::{controller_ref, object_event};
use crate::node::events::EventRecorder;

const TICK: Duration = Duration::from_secs(1);
pub const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

struct Controller {
    client: kube::Client,
    events: EventRecorder,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    queue: WorkQueue,
    expect: Expectations,
}

/// The Job a CronJob starts for `scheduled`.
pub fn new_job(cj: &CronJob, name: &str, scheduled: jiff::Timestamp) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    meta.name = Some(name.into());
    meta.generate_name = None;
    meta.namespace = cj.metadata.namespace.clone();
    meta.owner_references = Some(vec![controller_ref("batch/v1", "CronJob", &cj.metadata)]);
    let tz = schedule::time_zone(cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()))
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let stamp = scheduled
        .to_zoned(tz)
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    meta.annotations
        .get_or_insert_default()
        .insert(SCHEDULED_ANNOTATION.into(), stamp.replace("+00:00", "Z"));
    Job {
        metadata: meta,
        spec: template.spec,
        status: None,
    }
}

impl Controller {
    async fn sync(&mut self, key: &str) -> Result<Option<Duration>, CallError> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let Some(cj) = self.cronjobs.get(&ObjectRef::new(name).within(ns)) else {
            self.expect.forget(key);
            return Ok(None);
        };
        let owned: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| {
                controller_key(&j.metadata, "CronJob").as_deref() == Some(key)
                    && controller_uid(&j.metadata) == cj.metadata.uid.as_deref()
            })
            .collect();
        let now = Instant::now();
        let cached = |n: &str| {
            owned
                .iter()
                .find(|j| j.metadata.name.as_deref() == Some(n))
                .map(|j| j.metadata.deletion_timestamp.is_some())
        };
        if !self
            .expect
            .satisfied(key, cj.metadata.resource_version.as_deref(), cached, now)
        {
            return Ok(Some(TICK));
        }
        let refs: Vec<&Job> = owned.iter().map(|j| j.as_ref()).collect();
        let mut plan = plan::plan(&cj, &refs, jiff::Timestamp::now());
        let job_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        for (type_, reason, message) in &plan.events {
            object_event(
                &self.events,
                "batch/v1",
                "CronJob",
                &cj.metadata,
                type_,
                reason,
                message.clone(),
            );
        }
        for n in &plan.delete {
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            match call(format!("deleting job {ns}/{n}"), job_api.delete(n, &dp)).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(404) => {}
                Err(e) => return Err(e),
            }
            self.expect.deleted(key, n, now);
            object_event(
                &self.events,
                "batch/v1",
                "CronJob",
                &cj.metadata,
                "Normal",
                "SuccessfulDelete",
                format!("Deleted job {n}"),
            );
        }
        if let Some((job_name, scheduled)) = &plan.create {
            let job = new_job(&cj, job_name, *scheduled);
            match call(
                format!("creating job {ns}/{job_name}"),
                job_api.create(&PostParams::default(), &job),
            )
            .await
            {
                Ok(created) => {
                    self.expect.created(key, job_name, now);
                    object_event(
                        &self.events,
                        "batch/v1",
                        "CronJob",
                        &cj.metadata,
                        "Normal",
                        "SuccessfulCreate",
                        format!("Created job {job_name}"),
                    );
                    plan.status
                        .active
                        .get_or_insert_default()
                        .push(ObjectReference {
                            api_version: Some("batch/v1".into()),
                            kind: Some("Job".into()),
                            name: created.metadata.name.clone(),
                            namespace: created.metadata.namespace.clone(),
                            uid: created.metadata.uid.clone(),
                            resource_version: created.metadata.resource_version.clone(),
                            field_path: None,
                        });
                }
                // Made before (our cache lags): the next look counts it.
                Err(e) if e.code() == Some(409) => return Ok(Some(TICK)),
                Err(e) => return Err(e),
            }
        }
        if cj.status.as_ref() != Some(&plan.status) {
            let mut desired = CronJob::clone(&cj);
            desired.status = Some(plan.status.clone());
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), ns);
            call(
                format!("updating the status of cronjob {key}"),
                api.replace_status(name, &PostParams::default(), &desired),
            )
            .await?;
            self.expect
                .wrote(key, cj.metadata.resource_version.as_deref(), now);
        }
        Ok(plan.requeue)
    }

    async fn work(&mut self) {
        for key in self.queue.take_due(Instant::now()) {
            match self.sync(&key).await {
                Ok(requeue) => {
                    self.queue.succeeded(&key);
                    if let Some(d) = requeue {
                        self.queue.add_at(&key, Instant::now() + d);
                    }
                }
                Err(err) => {
                    let wait = self.queue.failed(&key, Instant::now());
                    tracing::warn!(cronjob = %key, error = %err, ?wait, "cronjob sync failed; retrying");
                }
            }
        }
    }
}

/// Runs the CronJob controller until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (events, poster) = controllers::component_events(client.clone(), "cronjob-controller");
    let (cronjobs, cj_watch) = controllers::reflected(Api::<CronJob>::all(client.clone()));
    let (jobs, job_watch) = controllers::reflected(Api::<Job>::all(client.clone()));
    let mut cj_watch = pin!(cj_watch);
    let mut job_watch = pin!(job_watch);
    let mut shutdown = pin!(shutdown);
    let mut poster = pin!(futures::FutureExt::fuse(poster));
    let mut c = Controller {
        client,
        events,
        cronjobs,
        jobs,
        queue: WorkQueue::default(),
        expect: Expectations::default(),
    };
    let (mut cj_synced, mut jobs_synced) = (false, false);
    tracing::info!("cronjob controller started");
    loop {
        let wake = c
            .queue
            .next_due()
            .map(|t| t.min(Instant::now() + TICK))
            .unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut poster => {}
            ev = cj_watch.next() => if let Some(ev) = controllers::watch_item(ev, "cronjobs")? {
                match &ev {
                    watcher::Event::InitDone => cj_synced = true,
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                        c.queue.changed(&key_of(&o.metadata), Instant::now());
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = job_watch.next() => if let Some(ev) = controllers::watch_item(ev, "jobs")? {
                match &ev {
                    watcher::Event::InitDone => jobs_synced = true,
                    watcher::Event::Apply(j) | watcher::Event::InitApply(j) | watcher::Event::Delete(j) => {
                        if let Some(key) = controller_key(&j.metadata, "CronJob") {
                            c.queue.changed(&key, Instant::now());
                        }
                    }
                    watcher::Event::Init => {}
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if cj_synced && jobs_synced {
            c.work().await;
        }
    }
    tracing::info!("cronjob controller stopped");
    Ok(())
}

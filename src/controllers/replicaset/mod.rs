//! The ReplicaSet controller, which is also the ReplicationController
//! controller (kube runs the same code for both, an RC being a ReplicaSet
//! with a map selector): creates pods from the template (`<set>-<5 random
//! chars>` by generateName, the controller ownerReference) in slow-start
//! batches to reach spec.replicas, deletes the surplus in kube's order of
//! preference, adopts orphans its selector matches and releases pods that
//! stop matching, ignores terminating pods, and writes the status counts
//! (replicas, fullyLabeled, ready, available after minReadySeconds,
//! terminating), observedGeneration and the ReplicaFailure condition when
//! the apiserver refuses a pod (quota, invalid template).
//!
//! Sets and pods come from reflectors; a change marks the set's key
//! (`<Kind>/<ns>/<name>`) in the work queue; each due key is reconciled
//! from the cache, and expectations keep a stale cache from creating or
//! deleting twice. Left out: the rank by pods of *related* sets on the
//! same node (kube counts the pods of the sets of one Deployment; here
//! those of the set itself).

pub mod plan;
pub mod set;

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;

use crate::controllers;
use crate::controllers::job::expect::Expectations;
use crate::controllers::job::pods as pod_state;
use crate::controllers::job::workqueue::{CallError, WorkQueue, call};
use crate::controllers::job::write::{controller_ref, create_pod, delete_pod, object_event};
use crate::node::events::EventRecorder;
use plan::{Diff, Failure};
use set::{Kind, Set};

const TICK: Duration = Duration::from_secs(1);

/// Why a sync is retried after the queue's back-off.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{key} cannot reach its replicas: {message}")]
    Refused { key: String, message: String },
}

/// The pod the set creates next.
pub fn new_pod(set: &Set) -> Pod {
    let mut pod = Pod {
        metadata: set.template.metadata.clone().unwrap_or_default(),
        spec: set.template.spec.clone(),
        status: None,
    };
    let meta = &mut pod.metadata;
    meta.name = None;
    meta.generate_name = Some(format!("{}-", set.name()));
    meta.namespace = set.meta.namespace.clone();
    meta.owner_references = Some(vec![controller_ref(
        set.kind.api_version(),
        set.kind.name(),
        &set.meta,
    )]);
    pod
}

/// The apiserver's message of a refused call (what kube puts in the
/// ReplicaFailure condition and the FailedCreate event).
fn api_message(e: &CallError) -> String {
    match e {
        CallError::Api {
            source: kube::Error::Api(s),
            ..
        } => s.message.clone(),
        other => other.to_string(),
    }
}

struct Controller {
    client: kube::Client,
    events: EventRecorder,
    replica_sets: Store<ReplicaSet>,
    controllers: Store<ReplicationController>,
    pods: Store<Pod>,
    queue: WorkQueue,
    expect: Expectations,
}

impl Controller {
    fn set(&self, kind: Kind, ns: &str, name: &str) -> Option<Set> {
        match kind {
            Kind::ReplicaSet => self
                .replica_sets
                .get(&ObjectRef::new(name).within(ns))
                .map(|rs| Set::from_replica_set(&rs)),
            Kind::ReplicationController => self
                .controllers
                .get(&ObjectRef::new(name).within(ns))
                .map(|rc| Set::from_controller(&rc)),
        }
    }

    /// The sets of `ns` a pod event concerns: its controller, or (an
    /// orphan) every set whose selector matches it.
    fn keys_for_pod(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        if let Some(o) = owner {
            return match o.kind.as_str() {
                "ReplicaSet" => vec![Kind::ReplicaSet.key(&format!("{ns}/{}", o.name))],
                "ReplicationController" => {
                    vec![Kind::ReplicationController.key(&format!("{ns}/{}", o.name))]
                }
                _ => Vec::new(),
            };
        }
        self.replica_sets
            .state()
            .iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns))
            .map(|rs| Set::from_replica_set(rs))
            .chain(
                self.controllers
                    .state()
                    .iter()
                    .filter(|rc| rc.metadata.namespace.as_deref() == Some(ns))
                    .map(|rc| Set::from_controller(rc)),
            )
            .filter(|s| plan::selects(s, pod))
            .map(|s| s.key())
            .collect()
    }

    async fn sync(&mut self, key: &str) -> Result<Option<Duration>, SyncError> {
        let Some((kind, ns, name)) = Kind::of_key(key) else {
            return Ok(None);
        };
        let Some(set) = self.set(kind, ns, name) else {
            self.expect.forget(key);
            return Ok(None);
        };
        let pods_here: Vec<std::sync::Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let now = Instant::now();
        let uid = set.meta.uid.as_deref();
        let owned_named = |n: &str| {
            pods_here
                .iter()
                .find(|p| pod_state::name(p) == n && controllers_uid(p) == uid)
                .map(|p| pod_state::deleting(p))
        };
        if !self
            .expect
            .satisfied(key, set.meta.resource_version.as_deref(), owned_named, now)
        {
            return Ok(Some(TICK));
        }
        let active: Vec<&Pod> = pods_here
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| plan::active(p))
            .collect();
        let claim = plan::claim(&set, &active);
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut mine = claim.mine.clone();
        if !claim.adopt.is_empty() && !self.can_adopt(&set).await? {
            mine.retain(|p| {
                !claim
                    .adopt
                    .iter()
                    .any(|a| pod_state::uid(a) == pod_state::uid(p))
            });
        } else {
            for p in &claim.adopt {
                if !self.adopt(&pod_api, &set, p).await? {
                    mine.retain(|m| pod_state::uid(m) != pod_state::uid(p));
                }
            }
        }
        for p in &claim.release {
            self.release(&pod_api, &set, p).await?;
        }
        let wall = Timestamp::now();
        let failure = if set.deleting() {
            None
        } else {
            self.manage(&set, &pod_api, &mine, wall).await?
        };
        let terminating = pods_here
            .iter()
            .filter(|p| {
                pod_state::terminating(p) && controllers_uid(p) == uid && plan::selects(&set, p)
            })
            .count();
        let mut status = plan::status(&set, &mine, terminating, failure.as_ref(), wall);
        if kind == Kind::ReplicationController {
            status.terminating_replicas = None;
        }
        if plan::status_differs(&set.status, &status) {
            self.write_status(&set, &status).await?;
            self.expect
                .wrote(key, set.meta.resource_version.as_deref(), now);
        }
        if let Some((_, message)) = failure {
            // Retried with the queue's back-off, as kube requeues it.
            return Err(SyncError::Refused {
                key: key.to_string(),
                message,
            });
        }
        Ok(plan::next_available(&mine, set.min_ready_seconds, wall))
    }

    /// kube's canAdopt: a fresh read of the set, still the same object
    /// and not being deleted.
    async fn can_adopt(&self, set: &Set) -> Result<bool, CallError> {
        let (ns, name) = (set.namespace(), set.name());
        let meta = match set.kind {
            Kind::ReplicaSet => {
                let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
                call(format!("reading replicaset {ns}/{name}"), api.get_opt(name))
                    .await?
                    .map(|o| o.metadata)
            }
            Kind::ReplicationController => {
                let api: Api<ReplicationController> = Api::namespaced(self.client.clone(), ns);
                call(
                    format!("reading replicationcontroller {ns}/{name}"),
                    api.get_opt(name),
                )
                .await?
                .map(|o| o.metadata)
            }
        };
        Ok(meta.is_some_and(|m| m.uid == set.meta.uid && m.deletion_timestamp.is_none()))
    }

    /// Adds the controller ownerReference (the pod's uid a precondition);
    /// false when the pod is gone or changed meanwhile.
    async fn adopt(&self, api: &Api<Pod>, set: &Set, pod: &Pod) -> Result<bool, CallError> {
        let owner = controller_ref(set.kind.api_version(), set.kind.name(), &set.meta);
        let patch = json!({"metadata": {"ownerReferences": [owner], "uid": pod_state::uid(pod)}});
        let name = pod_state::name(pod);
        match call(
            format!("adopting pod {name}"),
            api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)),
        )
        .await
        {
            Ok(_) => {
                tracing::info!(set = %set.key(), pod = %name, "adopted an orphan pod");
                Ok(true)
            }
            Err(e) if matches!(e.code(), Some(404 | 409 | 422)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the set's ownerReference from a pod it no longer selects.
    async fn release(&self, api: &Api<Pod>, set: &Set, pod: &Pod) -> Result<(), CallError> {
        let uid = set.meta.uid.clone().unwrap_or_default();
        let patch = json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": uid}],
            "uid": pod_state::uid(pod),
        }});
        let name = pod_state::name(pod);
        match call(
            format!("releasing pod {name}"),
            api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)),
        )
        .await
        {
            Ok(_) => {
                tracing::info!(set = %set.key(), pod = %name, "released a pod the selector no longer matches");
                Ok(())
            }
            Err(e) if matches!(e.code(), Some(404 | 409 | 422)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates or deletes pods; the failure kube reports in the
    /// ReplicaFailure condition, if the apiserver refused one.
    async fn manage(
        &mut self,
        set: &Set,
        api: &Api<Pod>,
        mine: &[&Pod],
        wall: Timestamp,
    ) -> Result<Option<Failure>, CallError> {
        let key = set.key();
        let (kind, version) = (set.kind.name(), set.kind.api_version());
        match plan::diff(set, mine, wall) {
            Diff::None => Ok(None),
            Diff::Create(n) => {
                let pod = new_pod(set);
                for batch in plan::batches(n) {
                    let made = futures::future::join_all((0..batch).map(|_| create_pod(api, &pod)));
                    let mut failed = None;
                    for r in made.await {
                        match r {
                            Ok(created) => {
                                self.expect.created(&key, &created, Instant::now());
                                object_event(
                                    &self.events,
                                    version,
                                    kind,
                                    &set.meta,
                                    "Normal",
                                    "SuccessfulCreate",
                                    format!("Created pod: {created}"),
                                );
                            }
                            Err(e) if e.code().is_some() => {
                                let message = api_message(&e);
                                object_event(
                                    &self.events,
                                    version,
                                    kind,
                                    &set.meta,
                                    "Warning",
                                    "FailedCreate",
                                    format!("Error creating: {message}"),
                                );
                                failed.get_or_insert(("FailedCreate", message));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    // The rest is skipped: a refused pod is likely to be
                    // refused again (kube's slow start stops likewise).
                    if failed.is_some() {
                        return Ok(failed);
                    }
                }
                Ok(None)
            }
            Diff::Delete(names) => {
                let mut failed = None;
                for n in &names {
                    let Some(p) = mine.iter().find(|p| pod_state::name(p) == n) else {
                        continue;
                    };
                    match delete_pod(api, p).await {
                        Ok(()) => {
                            self.expect.deleted(&key, n, Instant::now());
                            object_event(
                                &self.events,
                                version,
                                kind,
                                &set.meta,
                                "Normal",
                                "SuccessfulDelete",
                                format!("Deleted pod: {n}"),
                            );
                        }
                        Err(e) if e.code().is_some() => {
                            let message = api_message(&e);
                            object_event(
                                &self.events,
                                version,
                                kind,
                                &set.meta,
                                "Warning",
                                "FailedDelete",
                                format!("Error deleting: {message}"),
                            );
                            failed.get_or_insert(("FailedDelete", message));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(failed)
            }
        }
    }

    async fn write_status(
        &self,
        set: &Set,
        status: &k8s_openapi::api::apps::v1::ReplicaSetStatus,
    ) -> Result<(), CallError> {
        let (ns, name) = (set.namespace(), set.name());
        let body = set::status_patch(set.kind, status);
        let pp = PatchParams::default();
        let what = format!("updating the status of {}", set.key());
        let r = match set.kind {
            Kind::ReplicaSet => {
                let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
                call(what, api.patch_status(name, &pp, &Patch::Merge(&body)))
                    .await
                    .map(|_| ())
            }
            Kind::ReplicationController => {
                let api: Api<ReplicationController> = Api::namespaced(self.client.clone(), ns);
                call(what, api.patch_status(name, &pp, &Patch::Merge(&body)))
                    .await
                    .map(|_| ())
            }
        };
        match r {
            Err(e) if e.code() == Some(404) => Ok(()),
            other => other,
        }
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
                    tracing::warn!(set = %key, error = %err, ?wait, "replica set sync failed; retrying");
                }
            }
        }
    }
}

fn controllers_uid(p: &Pod) -> Option<&str> {
    crate::controllers::job::workqueue::controller_uid(&p.metadata)
}

fn ns_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    crate::controllers::job::workqueue::key_of(meta)
}

/// Runs the ReplicaSet and ReplicationController controller until
/// `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (events, poster) = controllers::component_events(client.clone(), "replicaset-controller");
    let (replica_sets, rs_watch) = controllers::reflected(Api::<ReplicaSet>::all(client.clone()));
    let (rcs, rc_watch) = controllers::reflected(Api::<ReplicationController>::all(client.clone()));
    let (pods, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let (mut rs_watch, mut rc_watch, mut pod_watch) =
        (pin!(rs_watch), pin!(rc_watch), pin!(pod_watch));
    let mut shutdown = pin!(shutdown);
    let mut poster = pin!(futures::FutureExt::fuse(poster));
    let mut c = Controller {
        client,
        events,
        replica_sets,
        controllers: rcs,
        pods,
        queue: WorkQueue::default(),
        expect: Expectations::default(),
    };
    let mut synced = [false; 3];
    tracing::info!("replicaset controller started");
    loop {
        let wake = c
            .queue
            .next_due()
            .map(|t| t.min(Instant::now() + TICK))
            .unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut poster => {}
            ev = rs_watch.next() => if let Some(ev) = controllers::watch_item(ev, "replicasets")? {
                match &ev {
                    watcher::Event::InitDone => synced[0] = true,
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                        c.queue.changed(&Kind::ReplicaSet.key(&ns_name(&o.metadata)), Instant::now());
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = rc_watch.next() => if let Some(ev) = controllers::watch_item(ev, "replicationcontrollers")? {
                match &ev {
                    watcher::Event::InitDone => synced[1] = true,
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                        c.queue.changed(&Kind::ReplicationController.key(&ns_name(&o.metadata)), Instant::now());
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = pod_watch.next() => if let Some(ev) = controllers::watch_item(ev, "pods")? {
                match &ev {
                    watcher::Event::InitDone => synced[2] = true,
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) => {
                        let now = Instant::now();
                        for key in c.keys_for_pod(p) {
                            c.queue.changed(&key, now);
                        }
                    }
                    watcher::Event::Init => {}
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if synced.iter().all(|s| *s) {
            c.work().await;
        }
    }
    tracing::info!("replicaset controller stopped");
    Ok(())
}

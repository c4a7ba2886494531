//! The disruption controller (kube-controller-manager's): the status of
//! each PodDisruptionBudget (currentHealthy, desiredHealthy, expectedPods,
//! disruptionsAllowed, observedGeneration, disruptedPods kept for two
//! minutes after an eviction, and the DisruptionAllowed condition), from
//! the pods its selector picks (budget.rs). When the budget needs the
//! pods' controllers' scale it reads their controllers live:
//! ReplicationController, ReplicaSet (its Deployment's replicas when a
//! Deployment owns it) and StatefulSet; pods without one of those make
//! the sync fail (SyncFailed, no disruption allowed, a NoControllers
//! event), as in kube. Left out: the generic scale subresource of custom
//! controllers, and the stale DisruptionTarget pod condition clean-up.

pub mod budget;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::controllers;
use crate::controllers::job::workqueue::{CallError, WorkQueue, call, key_of};
use crate::controllers::job::write::object_event;
use crate::controllers::scheduler::labels::selector_matches;
use crate::node::events::EventRecorder;

const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum ScaleError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("found no controllers for pod {0:?}")]
    NoController(String),
}

struct Controller {
    client: kube::Client,
    events: EventRecorder,
    budgets: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    queue: WorkQueue,
}

fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

impl Controller {
    fn selected(&self, pdb: &PodDisruptionBudget) -> Vec<std::sync::Arc<Pod>> {
        let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            return Vec::new();
        };
        self.pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace == pdb.metadata.namespace)
            .filter(|p| selector_matches(sel, &p.metadata.labels.clone().unwrap_or_default()))
            .collect()
    }

    /// The total scale of the controllers of `pods` (each counted once).
    async fn scale(&self, ns: &str, pods: &[&Pod]) -> Result<i32, ScaleError> {
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(owner) = controller_of(pod) else {
                return Err(ScaleError::NoController(name));
            };
            let c = self.client.clone();
            let (uid, replicas) = match (owner.api_version.as_str(), owner.kind.as_str()) {
                ("v1", "ReplicationController") => {
                    let rc = call(
                        format!("reading replicationcontroller {}", owner.name),
                        Api::<ReplicationController>::namespaced(c, ns).get(&owner.name),
                    )
                    .await?;
                    let n = rc.spec.and_then(|s| s.replicas).unwrap_or(1);
                    (rc.metadata.uid, n)
                }
                ("apps/v1", "StatefulSet") => {
                    let s = call(
                        format!("reading statefulset {}", owner.name),
                        Api::<StatefulSet>::namespaced(c, ns).get(&owner.name),
                    )
                    .await?;
                    let n = s.spec.and_then(|s| s.replicas).unwrap_or(1);
                    (s.metadata.uid, n)
                }
                ("apps/v1", "ReplicaSet") => {
                    let rs = call(
                        format!("reading replicaset {}", owner.name),
                        Api::<ReplicaSet>::namespaced(c.clone(), ns).get(&owner.name),
                    )
                    .await?;
                    let deployment = rs
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                        .cloned();
                    match deployment {
                        Some(d) => {
                            let dep = call(
                                format!("reading deployment {}", d.name),
                                Api::<Deployment>::namespaced(c, ns).get(&d.name),
                            )
                            .await?;
                            let n = dep.spec.and_then(|s| s.replicas).unwrap_or(1);
                            (dep.metadata.uid, n)
                        }
                        None => {
                            let n = rs.spec.and_then(|s| s.replicas).unwrap_or(1);
                            (rs.metadata.uid, n)
                        }
                    }
                }
                _ => return Err(ScaleError::NoController(name)),
            };
            if seen.insert(uid.unwrap_or_default()) {
                total += replicas;
            }
        }
        Ok(total)
    }

    /// Reconciles one budget; when to look again.
    async fn sync(&mut self, key: &str) -> Result<Option<Duration>, CallError> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let Some(pdb) = self.budgets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(None);
        };
        if pdb.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let all = self.selected(&pdb);
        let pods: Vec<&Pod> = all.iter().map(|p| p.as_ref()).collect();
        let now = Timestamp::now();
        let scale = if budget::needs_scale(&pdb) {
            match self.scale(ns, &pods).await {
                Ok(n) => Ok(n),
                Err(ScaleError::Call(e)) => return Err(e),
                Err(e @ ScaleError::NoController(_)) => {
                    object_event(
                        &self.events,
                        "policy/v1",
                        "PodDisruptionBudget",
                        &pdb.metadata,
                        "Warning",
                        "NoControllers",
                        e.to_string(),
                    );
                    Err(e.to_string())
                }
            }
        } else {
            Ok(0)
        };
        let mut again = None;
        let status = match scale.and_then(|s| budget::expected(&pdb, pods.len() as i32, s)) {
            Ok((expected, desired)) => {
                let (disrupted, next) = budget::disrupted(&pdb, &pods, now);
                if let Some(t) = next {
                    again = Some(t.duration_since(now).unsigned_abs() + Duration::from_millis(100));
                }
                let current = budget::healthy(&pods, &disrupted);
                budget::status(&pdb, expected, desired, current, disrupted, now)
            }
            Err(why) => budget::failed(&pdb, &why, now),
        };
        if pdb.status.as_ref() != Some(&status) {
            let mut desired = PodDisruptionBudget::clone(&pdb);
            desired.status = Some(status);
            let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), ns);
            call(
                format!("updating the status of poddisruptionbudget {key}"),
                api.replace_status(name, &PostParams::default(), &desired),
            )
            .await?;
        }
        Ok(again)
    }

    async fn work(&mut self) {
        for key in self.queue.take_due(Instant::now()) {
            match self.sync(&key).await {
                Ok(again) => {
                    self.queue.succeeded(&key);
                    if let Some(d) = again {
                        self.queue.add_at(&key, Instant::now() + d);
                    }
                }
                Err(err) => {
                    let wait = self.queue.failed(&key, Instant::now());
                    tracing::warn!(pdb = %key, error = %err, ?wait, "disruption budget sync failed; retrying");
                }
            }
        }
    }

    /// The budgets selecting `pod`.
    fn budgets_of(&self, pod: &Pod) -> Vec<String> {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.budgets
            .state()
            .iter()
            .filter(|b| b.metadata.namespace == pod.metadata.namespace)
            .filter(|b| {
                b.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|s| selector_matches(s, &labels))
            })
            .map(|b| key_of(&b.metadata))
            .collect()
    }
}

/// Runs the disruption controller until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (events, poster) = controllers::component_events(client.clone(), "controllermanager");
    let (budgets, pdb_watch) =
        controllers::reflected(Api::<PodDisruptionBudget>::all(client.clone()));
    let (pods, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let mut pdb_watch = pin!(pdb_watch);
    let mut pod_watch = pin!(pod_watch);
    let mut shutdown = pin!(shutdown);
    let mut poster = pin!(futures::FutureExt::fuse(poster));
    let mut c = Controller {
        client,
        events,
        budgets,
        pods,
        queue: WorkQueue::default(),
    };
    let mut synced = [false; 2];
    tracing::info!("disruption controller started");
    loop {
        let wake = c
            .queue
            .next_due()
            .map(|t| t.min(Instant::now() + TICK))
            .unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut poster => {}
            ev = pdb_watch.next() => if let Some(ev) = controllers::watch_item(ev, "poddisruptionbudgets")? {
                match &ev {
                    watcher::Event::InitDone => synced[0] = true,
                    watcher::Event::Apply(b) | watcher::Event::InitApply(b) | watcher::Event::Delete(b) => {
                        c.queue.changed(&key_of(&b.metadata), Instant::now());
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = pod_watch.next() => if let Some(ev) = controllers::watch_item(ev, "pods")? {
                match &ev {
                    watcher::Event::InitDone => synced[1] = true,
                    // A pod relabelled away from a budget is caught by the
                    // budget's next sync on any other change; kube too
                    // maps a pod only to the budgets it matches now.
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) => {
                        for key in c.budgets_of(p) {
                            c.queue.changed(&key, Instant::now());
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
    tracing::info!("disruption controller stopped");
    Ok(())
}

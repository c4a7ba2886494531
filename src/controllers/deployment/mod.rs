//! The Deployment controller (kube-controller-manager's deployment
//! controller): each Deployment gets one ReplicaSet per pod template
//! (`<deploy>-<hash>`, the pod-template-hash label in its selector and
//! pods, revision annotations), rolled to with RollingUpdate (`rollout`'s
//! maxSurge / maxUnavailable arithmetic) or Recreate, scaled (in
//! proportion across sets mid-rollout), paused, its history trimmed to
//! revisionHistoryLimit, and its status and conditions (Available,
//! Progressing with the progress deadline) written through /status, so
//! that `kubectl rollout status / history / undo` work against it.
//!
//! Deployments, ReplicaSets and Pods come from reflectors; a change marks
//! the deployment's key (`ns/name`) in the work queue, each due key is
//! reconciled from the cache (`sync`), a failed sync is retried with the
//! queue's back-off. Every ReplicaSet write is absolute (a size, an
//! annotation value), so a sync from a stale cache repeats a write rather
//! than overshooting.

pub mod plan;
pub mod rollout;
pub mod status;
mod sync;

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::controllers;
use crate::controllers::job::workqueue::{WorkQueue, controller_key, key_of};
use crate::controllers::scheduler::labels::selector_matches;
use crate::node::events::EventRecorder;

const TICK: Duration = Duration::from_secs(1);

struct Controller {
    client: kube::Client,
    events: EventRecorder,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue,
    /// ReplicaSet uid -> the resourceVersion our last write to it
    /// replaced, and when (see `sync`'s staleness check).
    written: std::sync::Mutex<std::collections::HashMap<String, (String, Instant)>>,
}

impl Controller {
    /// The deployments a ReplicaSet event concerns: its controller, or (an
    /// orphan) those of its namespace whose selector matches it.
    fn keys_for_set(&self, rs: &ReplicaSet) -> Vec<String> {
        if rs
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true))
        {
            return controller_key(&rs.metadata, "Deployment")
                .into_iter()
                .collect();
        }
        let labels = rs.metadata.labels.clone().unwrap_or_default();
        self.deployments
            .state()
            .iter()
            .filter(|d| d.metadata.namespace == rs.metadata.namespace)
            .filter(|d| {
                d.spec
                    .as_ref()
                    .is_some_and(|s| selector_matches(&s.selector, &labels))
            })
            .map(|d| key_of(&d.metadata))
            .collect()
    }

    /// The deployment of a pod's ReplicaSet (Recreate waits for old pods
    /// to be gone).
    fn key_for_pod(&self, pod: &Pod) -> Option<String> {
        let rs_key = controller_key(&pod.metadata, "ReplicaSet")?;
        let (ns, name) = rs_key.split_once('/')?;
        let rs = self.replica_sets.get(&ObjectRef::new(name).within(ns))?;
        controller_key(&rs.metadata, "Deployment")
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
                    tracing::warn!(deployment = %key, error = %err, ?wait, "deployment sync failed; retrying");
                }
            }
        }
    }
}

/// Runs the Deployment controller until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (events, poster) = controllers::component_events(client.clone(), "deployment-controller");
    let (deployments, d_watch) = controllers::reflected(Api::<Deployment>::all(client.clone()));
    let (replica_sets, rs_watch) = controllers::reflected(Api::<ReplicaSet>::all(client.clone()));
    let (pods, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let (mut d_watch, mut rs_watch, mut pod_watch) =
        (pin!(d_watch), pin!(rs_watch), pin!(pod_watch));
    let mut shutdown = pin!(shutdown);
    let mut poster = pin!(futures::FutureExt::fuse(poster));
    let mut c = Controller {
        client,
        events,
        deployments,
        replica_sets,
        pods,
        queue: WorkQueue::default(),
        written: Default::default(),
    };
    let mut synced = [false; 3];
    tracing::info!("deployment controller started");
    loop {
        let wake = c
            .queue
            .next_due()
            .map(|t| t.min(Instant::now() + TICK))
            .unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut poster => {}
            ev = d_watch.next() => if let Some(ev) = controllers::watch_item(ev, "deployments")? {
                match &ev {
                    watcher::Event::InitDone => synced[0] = true,
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                        c.queue.changed(&key_of(&o.metadata), Instant::now());
                    }
                    watcher::Event::Delete(o) => c.queue.forget(&key_of(&o.metadata)),
                    watcher::Event::Init => {}
                }
            },
            ev = rs_watch.next() => if let Some(ev) = controllers::watch_item(ev, "replicasets")? {
                match &ev {
                    watcher::Event::InitDone => synced[1] = true,
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                        let now = Instant::now();
                        for key in c.keys_for_set(o) {
                            c.queue.changed(&key, now);
                        }
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = pod_watch.next() => if let Some(ev) = controllers::watch_item(ev, "pods")? {
                match &ev {
                    watcher::Event::InitDone => synced[2] = true,
                    // Only a pod gone or finished can unblock a Recreate;
                    // the rest reaches deployments through set statuses.
                    watcher::Event::Delete(p) => {
                        if let Some(key) = c.key_for_pod(p) {
                            c.queue.changed(&key, Instant::now());
                        }
                    }
                    watcher::Event::Apply(p) if crate::controllers::job::pods::terminal(p) => {
                        if let Some(key) = c.key_for_pod(p) {
                            c.queue.changed(&key, Instant::now());
                        }
                    }
                    _ => {}
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if synced.iter().all(|s| *s) {
            c.work().await;
        }
    }
    tracing::info!("deployment controller stopped");
    Ok(())
}

#[cfg(test)]
mod plan_tests;

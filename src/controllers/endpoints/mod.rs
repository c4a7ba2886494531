//! The Endpoints controller (kube-controller-manager's endpoint
//! controller): for each Service with a selector, an Endpoints object of
//! its name listing the selected pods' IPs, ready ones in `addresses` and
//! the others in `notReadyAddresses` (all in `addresses` with
//! publishNotReadyAddresses), with their node, pod reference and hostname,
//! and the ports each pod serves (named target ports looked up per pod);
//! terminating and finished pods are left out. The Endpoints of a deleted
//! service are deleted; a service without a selector is left alone (its
//! Endpoints are written by hand). Labels: the service's, kube's
//! `endpoints.kubernetes.io/managed-by: endpoint-controller` and the
//! headless label; no skip-mirror label (kube's mirroring controller skips
//! Endpoints of services with a selector on its own).
//!
//! Services, pods and Endpoints come from reflectors; a change marks the
//! service's key in the shared work queue, and each due key is reconciled
//! from the caches (level-triggered), retried with back-off on errors.

pub mod membership;
pub mod pods;
pub mod subsets;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::controllers;
use crate::controllers::job::workqueue::{CallError, WorkQueue, call, key_of};
use membership::Membership;
use pods::TriggerTimes;

pub const MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpoint-controller";
const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// The annotation of a leader-election record kept in an Endpoints object:
/// such objects have no service and are not ours to delete.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const TICK: Duration = Duration::from_secs(1);

struct Controller {
    client: kube::Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    queue: WorkQueue,
    triggers: TriggerTimes,
    /// What this controller last wrote, by key, with the resourceVersion
    /// it replaced: while the cache still shows that version, the written
    /// object is the current one (no conflict on a stale cache).
    written: HashMap<String, (Option<String>, Endpoints)>,
}

/// The labels Endpoints of `svc` carry.
fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    l.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if pods::ip_set(svc) {
        l.remove(pods::HEADLESS_LABEL);
    } else {
        l.insert(pods::HEADLESS_LABEL.into(), String::new());
    }
    l
}

impl Controller {
    async fn sync(&mut self, key: &str) -> Result<(), CallError> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let cached = self.endpoints.get(&ObjectRef::new(name).within(ns));
        let current = match (self.written.get(key), cached) {
            (Some((replaced, mine)), Some(c)) if c.metadata.resource_version == *replaced => {
                Some(std::sync::Arc::new(mine.clone()))
            }
            (Some((None, mine)), None) => Some(std::sync::Arc::new(mine.clone())),
            (_, c) => {
                self.written.remove(key);
                c
            }
        };
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            self.triggers.forget(key);
            self.written.remove(key);
            let leader = current.as_ref().is_some_and(|e| {
                e.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(LEADER_ANNOTATION))
            });
            if current.is_some() && !leader {
                match call(
                    format!("deleting endpoints {key}"),
                    api.delete(name, &DeleteParams::default()),
                )
                .await
                {
                    Err(e) if e.code() != Some(404) => return Err(e),
                    _ => tracing::info!(endpoints = %key, "deleted: the service is gone"),
                }
            }
            return Ok(());
        };
        if pods::selector(&svc).is_none() {
            return Ok(());
        }
        let all = self.pods.state();
        let selected = membership::selected(&svc, &all);
        let (trigger, seen) = self.triggers.compute(key, &svc, &selected);
        let mut subsets = subsets::build(&svc, &selected);
        let labels = labels(&svc);
        if let Some(cur) = &current {
            let same_labels = cur.metadata.labels.clone().unwrap_or_default() == labels;
            let capacity_ok = {
                let n: usize = cur
                    .subsets
                    .iter()
                    .flatten()
                    .map(|s| {
                        s.addresses.as_ref().map_or(0, Vec::len)
                            + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
                    })
                    .sum();
                n <= subsets::MAX_ADDRESSES
                    && !cur
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(OVER_CAPACITY_ANNOTATION))
            };
            let cur_subsets = cur.subsets.clone().unwrap_or_default();
            if cur_subsets == subsets && same_labels && capacity_ok {
                self.triggers.record(key, seen);
                return Ok(());
            }
        }
        let mut desired = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            subsets: None,
        });
        let annotations = desired.metadata.annotations.get_or_insert_default();
        match trigger {
            Some(t) => annotations.insert(pods::TRIGGER_TIME_ANNOTATION.into(), t.to_string()),
            None => annotations.remove(pods::TRIGGER_TIME_ANNOTATION),
        };
        if subsets::truncate(&mut subsets) {
            annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
        } else {
            annotations.remove(OVER_CAPACITY_ANNOTATION);
        }
        desired.metadata.labels = Some(labels);
        desired.subsets = (!subsets.is_empty()).then_some(subsets);
        let replaced = current
            .as_ref()
            .and_then(|c| c.metadata.resource_version.clone());
        let stored = if current.is_some() {
            call(
                format!("updating endpoints {key}"),
                api.replace(name, &PostParams::default(), &desired),
            )
            .await?
        } else {
            call(
                format!("creating endpoints {key}"),
                api.create(&PostParams::default(), &desired),
            )
            .await?
        };
        self.triggers.record(key, seen);
        self.written.insert(key.to_string(), (replaced, stored));
        tracing::debug!(endpoints = %key, "written");
        Ok(())
    }

    async fn work(&mut self) {
        for key in self.queue.take_due(Instant::now()) {
            match self.sync(&key).await {
                Ok(()) => self.queue.succeeded(&key),
                Err(err) => {
                    let wait = self.queue.failed(&key, Instant::now());
                    tracing::warn!(service = %key, error = %err, ?wait, "endpoints sync failed; retrying");
                }
            }
        }
    }
}

/// Runs the Endpoints controller until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (services, svc_watch) = controllers::reflected(Api::<Service>::all(client.clone()));
    let (pods, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let (endpoints, ep_watch) = controllers::reflected(Api::<Endpoints>::all(client.clone()));
    let mut svc_watch = pin!(svc_watch);
    let mut pod_watch = pin!(pod_watch);
    let mut ep_watch = pin!(ep_watch);
    let mut shutdown = pin!(shutdown);
    let mut c = Controller {
        client,
        services,
        pods,
        endpoints,
        queue: WorkQueue::default(),
        triggers: TriggerTimes::default(),
        written: HashMap::new(),
    };
    let mut members = Membership::default();
    let mut synced = [false; 3];
    tracing::info!("endpoints controller started");
    loop {
        let wake = c
            .queue
            .next_due()
            .map(|t| t.min(Instant::now() + TICK))
            .unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = &mut shutdown => break,
            ev = svc_watch.next() => if let Some(ev) = controllers::watch_item(ev, "services")? {
                match &ev {
                    watcher::Event::InitDone => synced[0] = true,
                    watcher::Event::Apply(s) | watcher::Event::InitApply(s) | watcher::Event::Delete(s) => {
                        c.queue.changed(&key_of(&s.metadata), Instant::now());
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = pod_watch.next() => if let Some(ev) = controllers::watch_item(ev, "pods")? {
                match &ev {
                    watcher::Event::InitDone => synced[1] = true,
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        for key in members.changed(&c.services, p, false) {
                            c.queue.changed(&key, Instant::now());
                        }
                    }
                    watcher::Event::Delete(p) => {
                        for key in members.changed(&c.services, p, true) {
                            c.queue.changed(&key, Instant::now());
                        }
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = ep_watch.next() => if let Some(ev) = controllers::watch_item(ev, "endpoints")? {
                match &ev {
                    watcher::Event::InitDone => synced[2] = true,
                    // Leftover Endpoints of a service gone while we were
                    // down, and Endpoints deleted by hand (kube ignores
                    // other edits until the service or its pods change).
                    watcher::Event::InitApply(e) | watcher::Event::Delete(e) => {
                        c.queue.changed(&key_of(&e.metadata), Instant::now());
                    }
                    watcher::Event::Apply(_) => {}
                    watcher::Event::Init => {}
                }
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if synced.iter().all(|s| *s) {
            c.work().await;
        }
    }
    tracing::info!("endpoints controller stopped");
    Ok(())
}

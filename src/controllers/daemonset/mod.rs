//! The DaemonSet controller (kube-controller-manager's daemon controller):
//! one pod per node the DaemonSet wants (nodeSelector, required node
//! affinity, taints against its tolerations plus the ones kube adds to
//! daemon pods), pinned to its node by a required node affinity on
//! metadata.name as kube >= 1.12 does (the scheduler then binds it);
//! RollingUpdate within maxUnavailable (maxSurge is left out), OnDelete;
//! ControllerRevisions and the controller-revision-hash label; the status
//! counts with observedGeneration. A node whose pod keeps failing gets its
//! next pod after a doubling back-off (1 s to 5 min), never in a hot loop.

pub mod nodes;
pub mod plan;
pub mod revision;

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::controllers;
use crate::controllers::job::expect::Expectations;
use crate::controllers::job::pods as pod_state;
use crate::controllers::job::workqueue::{
    CallError, WorkQueue, call, controller_key, controller_uid, key_of,
};
use crate::controllers::job::write::{controller_ref, create_pod, delete_pod, object_event};
use crate::node::events::EventRecorder;

const TICK: Duration = Duration::from_secs(1);
const FAILED_POD_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The daemon pod for `node` from the current template.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    let name = ds.metadata.name.clone().unwrap_or_default();
    let meta = &mut pod.metadata;
    meta.name = None;
    meta.generate_name = Some(format!("{name}-"));
    meta.namespace = ds.metadata.namespace.clone();
    meta.owner_references = Some(vec![controller_ref("apps/v1", "DaemonSet", &ds.metadata)]);
    let labels = meta.labels.get_or_insert_default();
    labels.insert(revision::HASH_LABEL.into(), hash.into());
    if let Some(g) = ds.metadata.generation {
        labels.insert("pod-template-generation".into(), g.to_string());
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.affinity = Some(nodes::pin_to_node(spec.affinity.take(), node));
        nodes::add_default_tolerations(spec);
    }
    pod
}

struct Controller {
    client: kube::Client,
    events: EventRecorder,
    sets: Store<DaemonSet>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    queue: WorkQueue,
    expect: Expectations,
    /// Per (daemonset key, node): failures in a row and when the next pod may go.
    failed: HashMap<(String, String), (u32, Instant)>,
}

impl Controller {
    /// The current revision's hash, creating the revision when new.
    async fn current_revision(
        &self,
        ds: &DaemonSet,
        key: &str,
        ns: &str,
    ) -> Result<String, CallError> {
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = revision::template_hash(&template, collisions);
        let owned: Vec<Arc<ControllerRevision>> = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| controller_key(&r.metadata, "DaemonSet").as_deref() == Some(key))
            .collect();
        let exists = owned.iter().any(|r| {
            r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(revision::HASH_LABEL))
                == Some(&hash)
        });
        if !exists {
            let number = owned.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
            let rev = revision::revision("DaemonSet", &ds.metadata, &template, &hash, number);
            let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
            match call(
                format!("creating revision {number} of {key}"),
                api.create(&PostParams::default(), &rev),
            )
            .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some(409) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(hash)
    }

    async fn sync(&mut self, key: &str) -> Result<Option<Duration>, CallError> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let Some(ds) = self.sets.get(&ObjectRef::new(name).within(ns)) else {
            self.expect.forget(key);
            self.failed.retain(|(k, _), _| k != key);
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let owned: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| {
                controller_key(&p.metadata, "DaemonSet").as_deref() == Some(key)
                    && controller_uid(&p.metadata) == ds.metadata.uid.as_deref()
            })
            .collect();
        let now = Instant::now();
        let cached = |n: &str| {
            owned
                .iter()
                .find(|p| pod_state::name(p) == n)
                .map(|p| pod_state::deleting(p))
        };
        if !self
            .expect
            .satisfied(key, ds.metadata.resource_version.as_deref(), cached, now)
        {
            return Ok(Some(TICK));
        }
        let hash = self.current_revision(&ds, key, ns).await?;
        let all_nodes = self.nodes.state();
        let node_refs: Vec<&Node> = all_nodes.iter().map(|n| n.as_ref()).collect();
        let pod_refs: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let plan = plan::plan(
            &ds,
            &node_refs,
            &pod_refs,
            &hash,
            k8s_openapi::jiff::Timestamp::now(),
        );
        tracing::debug!(daemonset = %key, nodes = node_refs.len(), pods = pod_refs.len(), create = ?plan.create, delete = ?plan.delete, "plan");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        for node in &plan.failed_on {
            let entry = self
                .failed
                .entry((key.to_string(), node.clone()))
                .or_insert((0, now));
            entry.0 += 1;
            let wait = Duration::from_secs(1)
                .saturating_mul(2u32.saturating_pow(entry.0.min(20) - 1))
                .min(FAILED_POD_BACKOFF_MAX);
            entry.1 = now + wait;
        }
        for n in &plan.delete {
            if let Some(p) = owned.iter().find(|p| pod_state::name(p) == n) {
                delete_pod(&api, p).await?;
                self.expect.deleted(key, n, now);
                object_event(
                    &self.events,
                    "apps/v1",
                    "DaemonSet",
                    &ds.metadata,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {n}"),
                );
            }
        }
        let mut requeue: Option<Duration> = None;
        for node in &plan.create {
            if let Some((_, until)) = self.failed.get(&(key.to_string(), node.clone()))
                && *until > now
            {
                let wait = *until - now;
                requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
                continue;
            }
            let created = create_pod(&api, &new_pod(&ds, node, &hash)).await?;
            self.expect.created(key, &created, now);
            object_event(
                &self.events,
                "apps/v1",
                "DaemonSet",
                &ds.metadata,
                "Normal",
                "SuccessfulCreate",
                format!("Created pod: {created}"),
            );
        }
        // A node whose pod stayed up for a while starts its back-off afresh.
        self.failed
            .retain(|_, (_, until)| *until + FAILED_POD_BACKOFF_MAX > now);
        if ds.status.as_ref() != Some(&plan.status) {
            let mut desired = DaemonSet::clone(&ds);
            desired.status = Some(plan.status.clone());
            let sets: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            call(
                format!("updating the status of daemonset {key}"),
                sets.replace_status(name, &PostParams::default(), &desired),
            )
            .await?;
            self.expect
                .wrote(key, ds.metadata.resource_version.as_deref(), now);
        }
        Ok(requeue)
    }

    async fn work(&mut self) {
        for key in self.queue.take_due(Instant::now()) {
            let result = self.sync(&key).await;
            tracing::debug!(daemonset = %key, ?result, "synced");
            match result {
                Ok(requeue) => {
                    self.queue.succeeded(&key);
                    if let Some(d) = requeue {
                        self.queue.add_at(&key, Instant::now() + d);
                    }
                }
                Err(err) => {
                    let wait = self.queue.failed(&key, Instant::now());
                    tracing::warn!(daemonset = %key, error = %err, ?wait, "daemonset sync failed; retrying");
                }
            }
        }
    }

    fn all_changed(&mut self) {
        let now = Instant::now();
        for ds in self.sets.state() {
            self.queue.changed(&key_of(&ds.metadata), now);
        }
    }
}

/// Runs the DaemonSet controller until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (events, poster) = controllers::component_events(client.clone(), "daemonset-controller");
    let (sets, set_watch) = controllers::reflected(Api::<DaemonSet>::all(client.clone()));
    let (node_store, node_watch) = controllers::reflected(Api::<Node>::all(client.clone()));
    let (pods, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let (revisions, rev_watch) =
        controllers::reflected(Api::<ControllerRevision>::all(client.clone()));
    let (mut set_watch, mut node_watch, mut pod_watch, mut rev_watch) = (
        pin!(set_watch),
        pin!(node_watch),
        pin!(pod_watch),
        pin!(rev_watch),
    );
    let mut shutdown = pin!(shutdown);
    let mut poster = pin!(futures::FutureExt::fuse(poster));
    let mut c = Controller {
        client,
        events,
        sets,
        nodes: node_store,
        pods,
        revisions,
        queue: WorkQueue::default(),
        expect: Expectations::default(),
        failed: HashMap::new(),
    };
    let mut synced = [false; 4];
    tracing::info!("daemonset controller started");
    loop {
        let wake = c
            .queue
            .next_due()
            .map(|t| t.min(Instant::now() + TICK))
            .unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut poster => {}
            ev = set_watch.next() => if let Some(ev) = controllers::watch_item(ev, "daemonsets")? {
                match &ev {
                    watcher::Event::InitDone => synced[0] = true,
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
                        c.queue.changed(&key_of(&o.metadata), Instant::now());
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = node_watch.next() => if let Some(ev) = controllers::watch_item(ev, "nodes")? {
                synced[1] |= matches!(ev, watcher::Event::InitDone);
                c.all_changed();
            },
            ev = pod_watch.next() => if let Some(ev) = controllers::watch_item(ev, "pods")? {
                match &ev {
                    watcher::Event::InitDone => synced[2] = true,
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) => {
                        if let Some(key) = controller_key(&p.metadata, "DaemonSet") {
                            c.queue.changed(&key, Instant::now());
                        }
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = rev_watch.next() => if let Some(ev) = controllers::watch_item(ev, "controllerrevisions")? {
                synced[3] |= matches!(ev, watcher::Event::InitDone);
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if synced.iter().all(|s| *s) {
            c.work().await;
        }
    }
    tracing::info!("daemonset controller stopped");
    Ok(())
}

//! The scheduler: binds pods without a nodeName (and whose schedulerName is
//! ours) to a node through the `pods/binding` subresource, as kube-scheduler
//! does. Pods and nodes come from kube-rs reflectors; each cycle takes the
//! pending pods the queue lets through and runs the pure filter/score
//! framework on a snapshot (with the pods bound in this process assumed on
//! their nodes until the watch shows them).
//!
//! Priority and preemption are not implemented: pods go in creation order
//! (higher priority first), and nothing is ever evicted to make room.

mod binder;
#[cfg(test)]
mod fixtures;
pub mod framework;
pub mod labels;
pub mod node_affinity;
pub mod pod_affinity;
pub mod ports;
mod queue;
pub mod resources;
pub mod spread;
pub mod status;
pub mod taints;

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::{reflector, watcher};

use crate::controllers;
use crate::node::events::EventRecorder;
use framework::{Outcome, Snapshot};
use labels::Labels;

static NO_LABELS: Labels = Labels::new();

pub(crate) fn pod_labels(pod: &Pod) -> &Labels {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub(crate) fn node_labels(node: &Node) -> &Labels {
    node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub(crate) fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

pub(crate) fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// What `run` needs to know.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose spec.schedulerName is this are ours.
    pub scheduler_name: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            scheduler_name: "default-scheduler".into(),
        }
    }
}

/// How often the queue is looked at when nothing is watched happening
/// (back-offs expire on this tick).
const TICK: Duration = Duration::from_millis(500);

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// A pod this scheduler should place now.
fn is_pending(pod: &Pod, scheduler_name: &str) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    bound_node(pod).is_none()
        && spec
            .scheduler_name
            .as_deref()
            .unwrap_or("default-scheduler")
            == scheduler_name
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

struct Scheduler {
    client: kube::Client,
    config: SchedulerConfig,
    events: EventRecorder,
    pods: reflector::Store<Pod>,
    nodes: reflector::Store<Node>,
    queue: queue::Queue,
    /// Pods bound here that the watch does not show bound yet, by uid.
    assumed: HashMap<String, Pod>,
}

impl Scheduler {
    /// A watched pod changed. Only changes to bound pods (or deletions)
    /// can make room; a pending pod's own updates (our condition patch
    /// among them) must not retrigger it.
    fn pod_event(&mut self, event: &watcher::Event<Pod>) {
        match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                if bound_node(p).is_some() && self.assumed.remove(pod_uid(p)).is_none() {
                    self.queue.cluster_changed();
                }
            }
            watcher::Event::Delete(p) => {
                self.assumed.remove(pod_uid(p));
                self.queue.cluster_changed();
            }
            watcher::Event::Init | watcher::Event::InitDone => self.queue.cluster_changed(),
        }
    }

    async fn cycle(&mut self) {
        let pods = self.pods.state();
        let nodes = self.nodes.state();
        let mut pending: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| {
                is_pending(p, &self.config.scheduler_name) && !self.assumed.contains_key(pod_uid(p))
            })
            .collect();
        self.queue
            .retain(|uid| pending.iter().any(|p| pod_uid(p) == uid));
        let now = Instant::now();
        pending.retain(|p| self.queue.ready(pod_uid(p), now));
        pending.sort_by(|a, b| {
            let prio = |p: &Pod| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
            prio(b).cmp(&prio(a)).then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
        });
        for pod in pending {
            let outcome = {
                let placed = pods
                    .iter()
                    .map(|p| p.as_ref())
                    .filter(|p| bound_node(p).is_some())
                    .chain(self.assumed.values());
                let snapshot = Snapshot::new(nodes.iter().map(|n| n.as_ref()), placed);
                framework::schedule(pod, &snapshot)
            };
            let uid = pod_uid(pod).to_string();
            match outcome {
                Outcome::Bind(node) => match binder::bind(&self.client, pod, &node).await {
                    Ok(()) => {
                        tracing::info!(pod = %pod.metadata.name.as_deref().unwrap_or(""), %node, "bound");
                        binder::scheduled_event(&self.events, pod, &node);
                        let mut placed = pod.as_ref().clone();
                        if let Some(spec) = placed.spec.as_mut() {
                            spec.node_name = Some(node);
                        }
                        self.assumed.insert(uid.clone(), placed);
                        self.queue.forget(&uid);
                    }
                    Err(err) if err.is_conflict() => {
                        tracing::debug!(error = %err, "pod bound or gone meanwhile");
                        self.queue.forget(&uid);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "binding failed; retrying");
                        self.queue.errored(&uid, Instant::now());
                    }
                },
                Outcome::Unschedulable(message) => {
                    tracing::info!(pod = %pod.metadata.name.as_deref().unwrap_or(""), %message, "unschedulable");
                    binder::unschedulable(&self.client, &self.events, pod, &message).await;
                    self.queue.failed(&uid, Instant::now());
                }
            }
        }
        // Assumed pods the watch now shows bound (or gone) are its again.
        self.assumed.retain(|uid, _| {
            pods.iter()
                .any(|p| pod_uid(p) == uid && bound_node(p).is_none())
        });
    }
}

/// Schedule pods until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: SchedulerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (events, poster) = controllers::component_events(client.clone(), &config.scheduler_name);
    let (pod_store, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let (node_store, node_watch) = controllers::reflected(Api::<Node>::all(client.clone()));
    let mut pod_watch = pin!(pod_watch);
    let mut node_watch = pin!(node_watch);
    let mut shutdown = pin!(shutdown);
    let mut poster = pin!(futures::FutureExt::fuse(poster));
    let mut s = Scheduler {
        client,
        config,
        events,
        pods: pod_store,
        nodes: node_store,
        queue: queue::Queue::default(),
        assumed: HashMap::new(),
    };
    let (mut pods_synced, mut nodes_synced) = (false, false);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(scheduler_name = %s.config.scheduler_name, "scheduler started");
    loop {
        let mut dirty = false;
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut poster => {}
            ev = pod_watch.next() => if let Some(ev) = controllers::watch_item(ev, "pods")? {
                pods_synced |= matches!(ev, watcher::Event::InitDone);
                s.pod_event(&ev);
                dirty = true;
            },
            ev = node_watch.next() => if let Some(ev) = controllers::watch_item(ev, "nodes")? {
                nodes_synced |= matches!(ev, watcher::Event::InitDone);
                s.queue.cluster_changed();
                dirty = true;
            },
            _ = tick.tick() => dirty = true,
        }
        if dirty && pods_synced && nodes_synced {
            s.cycle().await;
        }
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

//! The node lifecycle controller (kube-controller-manager's nodelifecycle
//! and taint eviction): a node whose Lease (kube-node-lease) is not renewed
//! within the grace period becomes Ready=Unknown and is tainted
//! unreachable (NoSchedule and NoExecute); its pods are marked not Ready
//! and are evicted once their toleration of the taint runs out. When the
//! Lease is renewed again the taints go (the kubelet posts Ready itself).
//!
//! Freshness is judged by when this controller saw the Lease's renewTime
//! (or the Ready heartbeat) change, on its own clock, as kcm does, so that
//! clock skew between nodes and controller does not matter.

pub mod eviction;
pub mod health;

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::{reflector, watcher};
use serde_json::json;

use crate::controllers;
use crate::node::events::EventRecorder;

/// What `run` needs to know.
#[derive(Debug, Clone)]
pub struct NodeLifecycleConfig {
    /// A Lease older than this marks the node Unknown (kcm's
    /// --node-monitor-grace-period).
    pub grace_period: Duration,
    /// How long a pod without an unreachable toleration stays on an
    /// unreachable node (kube-apiserver's --default-unreachable-toleration-seconds).
    pub default_toleration_seconds: i64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(40),
            default_toleration_seconds: 300,
        }
    }
}

/// How often nodes are checked (kcm's --node-monitor-period is 5 s).
const MONITOR_PERIOD: Duration = Duration::from_secs(1);
/// A call that takes longer than this is abandoned (and retried next period).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const LEASE_NAMESPACE: &str = "kube-node-lease";

async fn call<T>(what: &str, f: impl Future<Output = Result<T, kube::Error>>) -> Option<T> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "{what}");
            None
        }
        Err(_) => {
            tracing::warn!("{what}: timed out");
            None
        }
    }
}

/// The last heartbeat seen for a node, and when it was seen.
struct Probe {
    heartbeat: String,
    seen: Instant,
}

struct Controller {
    client: kube::Client,
    config: NodeLifecycleConfig,
    events: EventRecorder,
    nodes: reflector::Store<Node>,
    leases: reflector::Store<Lease>,
    pods: reflector::Store<Pod>,
    probes: HashMap<String, Probe>,
    /// When a NoExecute taint without timeAdded was first seen, per node.
    taint_seen: HashMap<String, Timestamp>,
}

impl Controller {
    /// The node's heartbeat: its Lease's renewTime and its Ready
    /// condition's lastHeartbeatTime together.
    fn heartbeat(&self, node: &Node, name: &str) -> String {
        let lease = self
            .leases
            .get(&reflector::ObjectRef::new(name).within(LEASE_NAMESPACE))
            .and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .unwrap_or_default();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()))
            .unwrap_or_default();
        format!("{lease}|{ready}")
    }

    async fn monitor(&mut self) {
        let now = Instant::now();
        let wall = Time(Timestamp::now());
        let nodes = self.nodes.state();
        self.probes.retain(|n, _| {
            nodes
                .iter()
                .any(|node| node.metadata.name.as_deref() == Some(n))
        });
        for node in &nodes {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let beat = self.heartbeat(node, &name);
            let probe = self.probes.entry(name.clone()).or_insert(Probe {
                heartbeat: beat.clone(),
                seen: now,
            });
            if probe.heartbeat != beat {
                probe.heartbeat = beat;
                probe.seen = now;
            }
            let stale = now.saturating_duration_since(probe.seen) > self.config.grace_period;
            if let Some(taints) = health::desired_taints(node, stale, &wall) {
                let patch = json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "spec": {"taints": taints},
                });
                let api: Api<Node> = Api::all(self.client.clone());
                let (pp, patch) = (PatchParams::default(), Patch::Merge(&patch));
                if call(
                    &format!("tainting node {name}"),
                    api.patch(&name, &pp, &patch),
                )
                .await
                .is_some()
                {
                    tracing::info!(node = %name, unreachable = stale, "node taints updated");
                }
            }
            // After the taints: their patch carries the node's
            // resourceVersion, which the status patch would change.
            if stale {
                self.mark_unknown(node, &name, &wall).await;
            }
            self.evict(node, &name).await;
        }
    }

    async fn mark_unknown(&self, node: &Node, name: &str, now: &Time) {
        let Some(patch) = health::unknown_conditions_patch(node, now) else {
            return;
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let (pp, p) = (PatchParams::default(), Patch::Strategic(&patch));
        if call(
            &format!("marking node {name} Unknown"),
            api.patch_status(name, &pp, &p),
        )
        .await
        .is_none()
        {
            return;
        }
        tracing::info!(node = %name, "node stopped posting status: Ready=Unknown");
        for pod in self.pods_on(name) {
            self.mark_pod_not_ready(&pod).await;
        }
    }

    fn pods_on(&self, node: &str) -> Vec<std::sync::Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .collect()
    }

    async fn mark_pod_not_ready(&self, pod: &Pod) {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        if ready.is_none_or(|c| c.status == "False") {
            return;
        }
        let (ns, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let patch = json!({"status": {"conditions": [{
            "type": "Ready", "status": "False", "lastTransitionTime": Time(Timestamp::now()),
        }]}});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let (pp, p) = (PatchParams::default(), Patch::Strategic(&patch));
        if call(
            &format!("marking pod {ns}/{name} not ready"),
            api.patch_status(&name, &pp, &p),
        )
        .await
        .is_some()
        {
            self.events.pod_event(
                pod,
                None,
                "Warning",
                "NodeNotReady",
                "Node is not ready".into(),
            );
        }
    }

    async fn evict(&mut self, node: &Node, name: &str) {
        let taints = health::taints(node);
        if !taints.iter().any(|t| t.effect == "NoExecute") {
            self.taint_seen.remove(name);
            return;
        }
        let first_seen = *self
            .taint_seen
            .entry(name.to_string())
            .or_insert_with(Timestamp::now);
        let now = Timestamp::now();
        for pod in self.pods_on(name) {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(at) = eviction::eviction_time(
                &pod,
                taints,
                first_seen,
                self.config.default_toleration_seconds,
            ) else {
                continue;
            };
            if at > now {
                continue;
            }
            let (ns, pod_name) = (
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
            );
            self.events.pod_event(
                &pod,
                None,
                "Normal",
                "TaintManagerEviction",
                format!("Marking for deletion Pod {ns}/{pod_name}"),
            );
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            if call(
                &format!("evicting pod {ns}/{pod_name}"),
                api.delete(&pod_name, &DeleteParams::default()),
            )
            .await
            .is_some()
            {
                tracing::info!(pod = %format!("{ns}/{pod_name}"), node = %name, "evicted: NoExecute taint not tolerated");
            }
        }
    }
}

/// Watch nodes, leases and pods until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: NodeLifecycleConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (events, poster) = controllers::component_events(client.clone(), "node-controller");
    let (nodes, node_watch) = controllers::reflected(Api::<Node>::all(client.clone()));
    let (leases, lease_watch) =
        controllers::reflected(Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE));
    let (pods, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let (mut node_watch, mut lease_watch, mut pod_watch) =
        (pin!(node_watch), pin!(lease_watch), pin!(pod_watch));
    let mut shutdown = pin!(shutdown);
    let mut poster = pin!(futures::FutureExt::fuse(poster));
    let mut c = Controller {
        client,
        config,
        events,
        nodes,
        leases,
        pods,
        probes: HashMap::new(),
        taint_seen: HashMap::new(),
    };
    let mut synced = [false; 3];
    let mut tick = tokio::time::interval(MONITOR_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(grace = ?c.config.grace_period, "node lifecycle controller started");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut poster => {}
            ev = node_watch.next() => if let Some(ev) = controllers::watch_item(ev, "nodes")? {
                synced[0] |= matches!(ev, watcher::Event::InitDone);
            },
            ev = lease_watch.next() => if let Some(ev) = controllers::watch_item(ev, "leases")? {
                synced[1] |= matches!(ev, watcher::Event::InitDone);
            },
            ev = pod_watch.next() => if let Some(ev) = controllers::watch_item(ev, "pods")? {
                synced[2] |= matches!(ev, watcher::Event::InitDone);
            },
            _ = tick.tick() => if synced.iter().all(|s| *s) {
                c.monitor().await;
            },
        }
    }
    tracing::info!("node lifecycle controller stopped");
    Ok(())
}

//! The EndpointSlice controller (kube-controller-manager's
//! endpointslice-controller): for each Service with a selector,
//! discovery.k8s.io/v1 EndpointSlices (generateName `<service>-`, labels
//! kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by,
//! owned by the Service so the garbage collector removes them with it)
//! holding one endpoint per selected pod with an IP of the slice's address
//! type: conditions ready/serving/terminating, node, zone (the node's
//! topology.kubernetes.io/zone), hostname and pod reference; ports by name
//! (a pod serving a different set of ports goes to other slices); at most
//! 100 endpoints a slice, changed in place (pack.rs). deckhand's proxy and
//! DNS read these. Left out: topology hints and trafficDistribution.
//!
//! Services, pods, nodes and slices come from reflectors; writes are
//! remembered until the slice cache shows them, so a stale cache never
//! creates a slice twice.

pub mod pack;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::controllers;
use crate::controllers::endpoints::membership::{self, Membership};
use crate::controllers::endpoints::pods::{self, TriggerTimes};
use crate::controllers::job::workqueue::{CallError, WorkQueue, call, key_of};

const TICK: Duration = Duration::from_secs(1);
/// A write the cache has not shown after this long is no longer waited for.
const EXPECT_FOR: Duration = Duration::from_secs(30);

/// A write of ours the slice cache must show before the next sync of its
/// service: the slice at a resourceVersion at least this, or gone (None).
#[derive(Debug)]
struct Expected {
    slices: Vec<(String, Option<u64>)>,
    since: Instant,
}

struct Controller {
    client: kube::Client,
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    queue: WorkQueue,
    triggers: TriggerTimes,
    expect: HashMap<String, Expected>,
}

fn rv(s: &EndpointSlice) -> Option<u64> {
    s.metadata.resource_version.as_deref()?.parse().ok()
}

impl Controller {
    fn slices_of(&self, ns: &str, name: &str) -> Vec<std::sync::Arc<EndpointSlice>> {
        self.slices
            .state()
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .filter(|s| {
                let l = s.metadata.labels.as_ref();
                l.and_then(|l| l.get(pack::SERVICE_NAME_LABEL))
                    .map(String::as_str)
                    == Some(name)
                    && l.and_then(|l| l.get(pack::MANAGED_BY_LABEL))
                        .map(String::as_str)
                        == Some(pack::MANAGED_BY)
            })
            .collect()
    }

    /// The cache shows every write of ours to `key`'s slices.
    fn caught_up(&mut self, key: &str, ns: &str) -> bool {
        let Some(e) = self.expect.get(key) else {
            return true;
        };
        let done = e.since.elapsed() > EXPECT_FOR
            || e.slices.iter().all(|(name, want)| {
                let have = self.slices.get(&ObjectRef::new(name).within(ns));
                match (want, have) {
                    (None, h) => h.is_none(),
                    (Some(w), Some(h)) => rv(&h).is_some_and(|r| r >= *w),
                    (Some(_), None) => false,
                }
            });
        if done {
            self.expect.remove(key);
        }
        done
    }

    /// Reconciles one service; when to look again.
    async fn sync(&mut self, key: &str) -> Result<Option<Duration>, CallError> {
        let (ns, name) = key.split_once('/').unwrap_or(("default", key));
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            // Its slices go with it: the garbage collector follows their
            // ownerReferences.
            self.triggers.forget(key);
            self.expect.remove(key);
            return Ok(None);
        };
        if pods::selector(&svc).is_none() {
            return Ok(None);
        }
        if !self.caught_up(key, ns) {
            return Ok(Some(Duration::from_millis(100)));
        }
        let all = self.pods.state();
        let selected = membership::selected(&svc, &all);
        let publish = pods::publish_not_ready(&svc);
        let mut missing_node = false;
        let mut desired = BTreeMap::new();
        for address_type in pack::address_types(&svc) {
            let v6 = address_type == "IPv6";
            let mut eps = Vec::new();
            for pod in &selected {
                if !pods::should_be_in_endpoints(pod, true) {
                    continue;
                }
                let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                let node = node_name
                    .as_ref()
                    .and_then(|n| self.nodes.get(&ObjectRef::new(n)));
                if node.is_none() && !publish {
                    // kube leaves out a pod whose node is unknown (the pod
                    // GC will remove it) and looks again later.
                    missing_node = true;
                    continue;
                }
                let zone = node
                    .as_ref()
                    .and_then(|n| n.metadata.labels.as_ref())
                    .and_then(|l| l.get(pack::ZONE_LABEL))
                    .filter(|z| !z.is_empty())
                    .cloned();
                if let Some(ep) = pack::endpoint(&svc, pod, zone, v6) {
                    eps.push((pack::endpoint_ports(&svc, pod), ep));
                }
            }
            desired.insert(address_type, pack::group(eps));
        }
        let existing = self.slices_of(ns, name);
        let refs: Vec<&EndpointSlice> = existing.iter().map(|s| s.as_ref()).collect();
        let plan = pack::plan(&svc, &refs, &desired);
        let (trigger, seen) = self.triggers.compute(key, &svc, &selected);
        if plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty() {
            self.triggers.record(key, seen);
            return Ok(missing_node.then_some(Duration::from_secs(5)));
        }
        tracing::debug!(service = %key, plan = %pack::summary(&plan), "syncing slices");
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let pp = PostParams::default();
        let mut wrote = Vec::new();
        let stamp = |s: &mut EndpointSlice| {
            let a = s.metadata.annotations.get_or_insert_default();
            match trigger {
                Some(t) => a.insert(pods::TRIGGER_TIME_ANNOTATION.into(), t.to_string()),
                None => a.remove(pods::TRIGGER_TIME_ANNOTATION),
            };
        };
        let result = async {
            for mut s in plan.update {
                stamp(&mut s);
                let n = s.metadata.name.clone().unwrap_or_default();
                let done = call(
                    format!("updating endpointslice {ns}/{n}"),
                    api.replace(&n, &pp, &s),
                )
                .await?;
                wrote.push((n, rv(&done)));
            }
            if svc.metadata.deletion_timestamp.is_none() {
                for mut s in plan.create {
                    stamp(&mut s);
                    let done = call(
                        format!("creating an endpointslice of {key}"),
                        api.create(&pp, &s),
                    )
                    .await?;
                    wrote.push((done.metadata.name.clone().unwrap_or_default(), rv(&done)));
                }
            }
            for n in plan.delete {
                match call(
                    format!("deleting endpointslice {ns}/{n}"),
                    api.delete(&n, &DeleteParams::default()),
                )
                .await
                {
                    Err(e) if e.code() != Some(404) => return Err(e),
                    _ => wrote.push((n, None)),
                }
            }
            Ok(())
        }
        .await;
        if !wrote.is_empty() {
            self.expect.insert(
                key.to_string(),
                Expected {
                    slices: wrote,
                    since: Instant::now(),
                },
            );
        }
        result?;
        self.triggers.record(key, seen);
        Ok(missing_node.then_some(Duration::from_secs(5)))
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
                    tracing::warn!(service = %key, error = %err, ?wait, "endpointslice sync failed; retrying");
                }
            }
        }
    }
}

/// Runs the EndpointSlice controller until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (services, svc_watch) = controllers::reflected(Api::<Service>::all(client.clone()));
    let (pods, pod_watch) = controllers::reflected(Api::<Pod>::all(client.clone()));
    let (nodes, node_watch) = controllers::reflected(Api::<Node>::all(client.clone()));
    let (slices, slice_watch) = controllers::reflected(Api::<EndpointSlice>::all(client.clone()));
    let mut svc_watch = pin!(svc_watch);
    let mut pod_watch = pin!(pod_watch);
    let mut node_watch = pin!(node_watch);
    let mut slice_watch = pin!(slice_watch);
    let mut shutdown = pin!(shutdown);
    let mut c = Controller {
        client,
        services,
        pods,
        nodes,
        slices,
        queue: WorkQueue::default(),
        triggers: TriggerTimes::default(),
        expect: HashMap::new(),
    };
    let mut members = Membership::default();
    let mut synced = [false; 4];
    tracing::info!("endpointslice controller started");
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
                let gone = matches!(ev, watcher::Event::Delete(_));
                match &ev {
                    watcher::Event::InitDone => synced[1] = true,
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) => {
                        for key in members.changed(&c.services, p, gone) {
                            c.queue.changed(&key, Instant::now());
                        }
                    }
                    watcher::Event::Init => {}
                }
            },
            ev = node_watch.next() => if let Some(watcher::Event::InitDone) = controllers::watch_item(ev, "nodes")? {
                synced[2] = true;
            },
            ev = slice_watch.next() => if let Some(ev) = controllers::watch_item(ev, "endpointslices")? {
                match &ev {
                    watcher::Event::InitDone => synced[3] = true,
                    // A slice of ours changed or deleted by someone else.
                    watcher::Event::Apply(s) | watcher::Event::InitApply(s) | watcher::Event::Delete(s) => {
                        let l = s.metadata.labels.as_ref();
                        let ours = l.and_then(|l| l.get(pack::MANAGED_BY_LABEL)).map(String::as_str) == Some(pack::MANAGED_BY);
                        if let (true, Some(svc)) = (ours, l.and_then(|l| l.get(pack::SERVICE_NAME_LABEL))) {
                            let ns = s.metadata.namespace.as_deref().unwrap_or("default");
                            c.queue.changed(&format!("{ns}/{svc}"), Instant::now());
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
    tracing::info!("endpointslice controller stopped");
    Ok(())
}

//! The garbage collector (kube-controller-manager's garbagecollector):
//! metadata-only watches of every listable, watchable, deletable kind the
//! apiserver's discovery offers (events excepted, as kube does; looked at
//! again every `REDISCOVER` for new kinds) fill a graph of ownerReferences
//! (graph.rs). An object whose owners are all gone (by uid, confirmed by a
//! live read) is deleted in the background; one with some owners left
//! loses the references to the gone ones. Foreground deletion: an owner
//! with a deletionTimestamp and the `foregroundDeletion` finalizer gets
//! its dependents deleted, and its finalizer removed once no dependent
//! with blockOwnerDeletion is left. Orphan: an owner with the `orphan`
//! finalizer has its uid removed from its dependents' ownerReferences,
//! then the finalizer removed. Left out: kube's cycle breaking
//! (unblocking ownerReferences of a dependent that itself waits for its
//! dependents) and the events about invalid owner namespaces.

pub mod graph;

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PartialObjectMeta, Patch,
    PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::controllers::job::workqueue::{CallError, WorkQueue, call};
use graph::{FOREGROUND, Graph, Node, ORPHAN, Owner, Verdict};

const TICK: Duration = Duration::from_secs(1);
const REDISCOVER: Duration = Duration::from_secs(30);
/// Work starts once every watch listed, or after this long at the latest
/// (a kind that cannot be listed must not stop the collector).
const SYNC_GRACE: Duration = Duration::from_secs(60);

type MetaEvent = watcher::Event<PartialObjectMeta<DynamicObject>>;
type Tagged = (usize, Result<MetaEvent, watcher::Error>);

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("discovery: {0}")]
    Discovery(#[source] kube::Error),
    #[error("no resource serves {api_version} {kind}")]
    UnknownKind { api_version: String, kind: String },
}

struct Watched {
    resource: ApiResource,
    namespaced: bool,
    listed: bool,
}

struct Collector {
    client: kube::Client,
    discovery: Discovery,
    watched: Vec<Watched>,
    graph: Graph,
    queue: WorkQueue,
}

fn is_ignored(ar: &ApiResource) -> bool {
    ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io")
}

impl Collector {
    /// Watches for the kinds not watched yet.
    async fn discover(
        &mut self,
        streams: &mut SelectAll<BoxStream<'static, Tagged>>,
    ) -> Result<(), GcError> {
        let discovery = tokio::time::timeout(
            Duration::from_secs(30),
            Discovery::new(self.client.clone()).run(),
        )
        .await
        .map_err(|_| {
            GcError::Call(CallError::Timeout {
                what: "discovery".into(),
            })
        })?
        .map_err(GcError::Discovery)?;
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                    .iter()
                    .all(|v| caps.supports_operation(v));
                let known = self
                    .watched
                    .iter()
                    .any(|w| w.resource.group == ar.group && w.resource.plural == ar.plural);
                if !usable || known || is_ignored(&ar) {
                    continue;
                }
                let index = self.watched.len();
                // Metadata-only requests: the collector needs nothing else.
                let api: Api<PartialObjectMeta<DynamicObject>> =
                    Api::all_with(self.client.clone(), &ar);
                tracing::debug!(resource = %ar.plural, group = %ar.group, "watching for the garbage collector");
                streams.push(
                    watcher(api, watcher::Config::default())
                        .default_backoff()
                        .map(move |ev| (index, ev))
                        .boxed(),
                );
                self.watched.push(Watched {
                    resource: ar,
                    namespaced: caps.scope == Scope::Namespaced,
                    listed: false,
                });
            }
        }
        self.discovery = discovery;
        Ok(())
    }

    fn api_for(
        &self,
        resource: &ApiResource,
        namespaced: bool,
        ns: Option<&str>,
    ) -> Api<DynamicObject> {
        match (namespaced, ns) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, resource),
            _ => Api::all_with(self.client.clone(), resource),
        }
    }

    fn node_api(&self, node: &Node) -> Api<DynamicObject> {
        let w = &self.watched[node.resource];
        self.api_for(&w.resource, w.namespaced, node.namespace.as_deref())
    }

    /// The state of the owner `o` of `node`: from the graph, else read
    /// live (the graph may lag, or not watch the owner's kind).
    async fn owner_state(
        &self,
        node: &Node,
        o: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<Owner, GcError> {
        if let Some(n) = self.graph.get(&o.uid) {
            return Ok(if n.deleting_dependents() {
                Owner::Waiting
            } else {
                Owner::Solid
            });
        }
        let (group, version) = match o.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", o.api_version.as_str()),
        };
        let gvk = GroupVersionKind::gvk(group, version, &o.kind);
        let Some((ar, caps)) = self.discovery.resolve_gvk(&gvk) else {
            return Err(GcError::UnknownKind {
                api_version: o.api_version.clone(),
                kind: o.kind.clone(),
            });
        };
        let namespaced = caps.scope == Scope::Namespaced;
        if namespaced && node.namespace.is_none() {
            // A cluster-scoped object cannot be owned by a namespaced one:
            // kube leaves such a reference unresolved.
            return Ok(Owner::Solid);
        }
        let api = self.api_for(&ar, namespaced, node.namespace.as_deref());
        let what = format!("reading owner {} {}", o.kind, o.name);
        let live = call(what, api.get_metadata_opt(&o.name)).await?;
        Ok(match live {
            Some(m) if m.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
                let n = Node::from_meta(0, &m.metadata);
                if n.is_some_and(|n| n.deleting_dependents()) {
                    Owner::Waiting
                } else {
                    Owner::Solid
                }
            }
            _ => Owner::Absent,
        })
    }

    /// A merge patch of `node`'s metadata, at its resourceVersion.
    async fn patch_meta(
        &self,
        node: &Node,
        meta: serde_json::Value,
        what: String,
    ) -> Result<(), GcError> {
        let mut m = meta;
        m["resourceVersion"] = json!(node.resource_version);
        let patch = json!({"metadata": m});
        let api = self.node_api(node);
        match call(
            what,
            api.patch_metadata(&node.name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        {
            Err(e) if e.code() == Some(404) => Ok(()),
            r => r.map(|_| ()).map_err(GcError::from),
        }
    }

    async fn drop_owners(&self, node: &Node, uids: &[String]) -> Result<(), GcError> {
        let left: Vec<_> = node
            .owners
            .iter()
            .filter(|o| !uids.contains(&o.uid))
            .collect();
        let refs = if left.is_empty() {
            json!(null)
        } else {
            json!(left)
        };
        self.patch_meta(
            node,
            json!({"ownerReferences": refs}),
            format!("dropping owners of {}", node.name),
        )
        .await
    }

    async fn drop_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), GcError> {
        let left: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let value = if left.is_empty() {
            json!(null)
        } else {
            json!(left)
        };
        self.patch_meta(
            node,
            json!({"finalizers": value}),
            format!("removing finalizer {finalizer} of {}", node.name),
        )
        .await?;
        tracing::info!(object = %node.name, finalizer, "finalizer removed");
        Ok(())
    }

    async fn sync(&mut self, uid: &str) -> Result<(), GcError> {
        let Some(node) = self.graph.get(uid).cloned() else {
            return Ok(());
        };
        if node.deleting && node.has(ORPHAN) {
            for d in self
                .graph
                .dependents(uid)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
            {
                self.drop_owners(&d, &[uid.to_string()]).await?;
            }
            return self.drop_finalizer(&node, ORPHAN).await;
        }
        if node.deleting_dependents() {
            let dependents: Vec<String> = self
                .graph
                .dependents(uid)
                .iter()
                .map(|d| d.uid.clone())
                .collect();
            for d in &dependents {
                self.queue.changed(d, Instant::now());
            }
            if self.graph.blocking(uid).is_empty() {
                return self.drop_finalizer(&node, FOREGROUND).await;
            }
        }
        if node.owners.is_empty() {
            return Ok(());
        }
        let mut owners = Vec::new();
        for o in &node.owners {
            owners.push((o.uid.clone(), self.owner_state(&node, o).await?));
        }
        let has_dependents = !self.graph.dependents(uid).is_empty();
        match graph::verdict(&node, &owners, has_dependents) {
            Verdict::Keep => Ok(()),
            Verdict::DropOwners(uids) => self.drop_owners(&node, &uids).await,
            Verdict::Delete(policy) => {
                let dp = DeleteParams {
                    propagation_policy: Some(match policy {
                        "Orphan" => PropagationPolicy::Orphan,
                        "Foreground" => PropagationPolicy::Foreground,
                        _ => PropagationPolicy::Background,
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(node.uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                let api = self.node_api(&node);
                let kind = self.watched[node.resource].resource.kind.clone();
                match call(
                    format!("deleting {kind} {}", node.name),
                    api.delete(&node.name, &dp),
                )
                .await
                {
                    Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
                    Err(e) => Err(e.into()),
                    Ok(_) => {
                        tracing::info!(kind = %kind, object = %node.name, policy, "deleted: its owners are gone");
                        Ok(())
                    }
                }
            }
        }
    }

    fn on_event(&mut self, index: usize, ev: MetaEvent) {
        let now = Instant::now();
        let touched = match ev {
            watcher::Event::Apply(m) | watcher::Event::InitApply(m) => {
                match Node::from_meta(index, &m.metadata) {
                    Some(n) => self.graph.apply(n),
                    None => Vec::new(),
                }
            }
            watcher::Event::Delete(m) => self.graph.remove(&m.uid().unwrap_or_default()),
            watcher::Event::InitDone => {
                self.watched[index].listed = true;
                Vec::new()
            }
            watcher::Event::Init => Vec::new(),
        };
        for uid in touched {
            self.queue.changed(&uid, now);
        }
    }

    async fn work(&mut self) {
        for uid in self.queue.take_due(Instant::now()) {
            match self.sync(&uid).await {
                Ok(()) => self.queue.succeeded(&uid),
                Err(err) => {
                    let wait = self.queue.failed(&uid, Instant::now());
                    tracing::warn!(uid = %uid, error = %err, ?wait, "garbage collection failed; retrying");
                }
            }
        }
    }
}

/// Runs the garbage collector until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut c = Collector {
        discovery: Discovery::new(client.clone()),
        client,
        watched: Vec::new(),
        graph: Graph::default(),
        queue: WorkQueue::default(),
    };
    let mut streams: SelectAll<BoxStream<'static, Tagged>> = SelectAll::new();
    let mut shutdown = pin!(shutdown);
    let started = Instant::now();
    let mut next_discovery = Instant::now();
    tracing::info!("garbage collector started");
    loop {
        if Instant::now() >= next_discovery {
            if let Err(e) = c.discover(&mut streams).await {
                tracing::warn!(error = %e, "garbage collector discovery failed; retrying");
            }
            next_discovery = Instant::now() + REDISCOVER;
        }
        let wake = c
            .queue
            .next_due()
            .map(|t| t.min(Instant::now() + TICK))
            .unwrap_or_else(|| Instant::now() + TICK);
        tokio::select! {
            _ = &mut shutdown => break,
            item = streams.next(), if !streams.is_empty() => match item {
                Some((index, Ok(ev))) => c.on_event(index, ev),
                Some((index, Err(e))) => {
                    tracing::warn!(resource = %c.watched[index].resource.plural, error = %e, "garbage collector watch");
                }
                None => {}
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let synced = !c.watched.is_empty() && c.watched.iter().all(|w| w.listed);
        if synced || started.elapsed() > SYNC_GRACE {
            c.work().await;
        }
    }
    tracing::info!(objects = c.graph.len(), "garbage collector stopped");
    Ok(())
}

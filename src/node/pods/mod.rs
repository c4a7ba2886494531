//! The pods bound to this node: a watch on `spec.nodeName`, one worker per
//! pod, the runtime's container events routed to the pod they concern, a
//! slow relist as the safety net, and teardown of pods the API no longer has.

pub mod actions;
pub mod ephemeral;
pub mod images;
pub mod kill;
pub mod observe;
pub mod resize;
pub mod start;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::cri::api::{ContainerEventStream, ImageService, RuntimeService, v1};
use crate::node::backoff::ApiBackoff;
use crate::node::events::EventRecorder;
use crate::node::lookup::ApiLookup;
use crate::node::podspec::{NodeContext, labels};
use worker::{PodWorker, WorkerInputs};

/// The sandbox label naming the node that started it (see worker.rs).
pub const NODE_LABEL: &str = "deckhand.io/node-name";

/// What every pod worker shares.
pub struct PodContext {
    pub client: Client,
    pub runtime: Arc<dyn RuntimeService>,
    pub images: Arc<dyn ImageService>,
    pub node: NodeContext,
    pub lookup: ApiLookup,
    pub events: EventRecorder,
    /// The scheme of containerIDs ("containerd://...").
    pub runtime_name: String,
    pub relist_period: Duration,
    pub volumes: crate::node::volumes::VolumeManager,
}

struct Handle {
    pod: watch::Sender<Option<Arc<Pod>>>,
    kick: Arc<Notify>,
}

struct Workers {
    ctx: Arc<PodContext>,
    handles: HashMap<String, Handle>,
    tasks: JoinSet<String>,
}

impl Workers {
    /// The pod's worker gets the new object (one is started if none runs).
    fn update(&mut self, uid: &str, pod: Option<Arc<Pod>>) {
        if let Some(h) = self.handles.get(uid) {
            h.pod.send_replace(pod);
            return;
        }
        let (tx, rx) = watch::channel(pod);
        let kick = Arc::new(Notify::new());
        let inputs = WorkerInputs {
            pod: rx,
            kick: kick.clone(),
        };
        self.tasks
            .spawn(PodWorker::new(self.ctx.clone(), uid.to_string()).run(inputs));
        self.handles
            .insert(uid.to_string(), Handle { pod: tx, kick });
    }

    fn kick(&self, uid: &str) {
        if let Some(h) = self.handles.get(uid) {
            h.kick.notify_one();
        }
    }

    fn kick_all(&self) {
        for h in self.handles.values() {
            h.kick.notify_one();
        }
    }
}

/// Runs the pods of `node_name` until `stop` fires. Pods keep running when
/// this returns (restart safety): only their workers end.
pub async fn run(ctx: Arc<PodContext>, mut stop: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node.node_name));
    // The watcher relists on 410 Gone and retries errors with back-off.
    let mut pods = watcher(api, config).default_backoff().boxed();
    let mut workers = Workers {
        ctx: ctx.clone(),
        handles: HashMap::new(),
        tasks: JoinSet::new(),
    };
    let mut listing: Option<HashSet<String>> = None;
    let mut listed_once = false;
    let mut events: Option<ContainerEventStream> = None;
    let mut events_backoff = ApiBackoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut resubscribe_at = tokio::time::Instant::now();
    let mut relist = tokio::time::interval(ctx.relist_period);
    relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if events.is_none() && tokio::time::Instant::now() >= resubscribe_at {
            match ctx
                .runtime
                .get_container_events(v1::GetEventsRequest {})
                .await
            {
                Ok(stream) => {
                    events = Some(stream);
                    // Whatever happened while unsubscribed is found by a sync.
                    workers.kick_all();
                }
                Err(e) => {
                    let d = events_backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?d, "subscribing to container events");
                    resubscribe_at = tokio::time::Instant::now() + d;
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => break,
            event = pods.next() => match event {
                Some(Ok(event)) => on_pod_event(&mut workers, &mut listing, &mut listed_once, event, &ctx).await,
                Some(Err(e)) => tracing::warn!(error = %e, "watching pods"),
                None => break,
            },
            Some(done) = workers.tasks.join_next() => {
                if let Ok(uid) = done {
                    workers.handles.remove(&uid);
                }
            }
            event = next_event(&mut events) => match event {
                Some(Ok(e)) => {
                    events_backoff = ApiBackoff::new(Duration::from_millis(500), Duration::from_secs(30));
                    if let Some(uid) = event_pod_uid(&e) {
                        workers.kick(&uid);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "container event stream");
                    events = None;
                }
                None => events = None,
            },
            _ = relist.tick() => {
                let started = std::time::Instant::now();
                workers.kick_all();
                if listed_once {
                    adopt_orphans(&mut workers, &ctx).await;
                }
                crate::node::server::metrics::observe_pleg_relist(started.elapsed());
            }
            _ = tokio::time::sleep_until(resubscribe_at), if events.is_none() => {}
        }
    }
    // Dropping the senders ends every worker at its next wait; one in the
    // middle of a CRI call is aborted, which a later sync repairs.
    workers.handles.clear();
    let drain = async { while workers.tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        workers.tasks.shutdown().await;
    }
}

async fn next_event(
    events: &mut Option<ContainerEventStream>,
) -> Option<Result<v1::ContainerEventResponse, crate::cri::api::CriError>> {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

fn event_pod_uid(e: &v1::ContainerEventResponse) -> Option<String> {
    let sandbox = e.pod_sandbox_status.as_ref()?;
    sandbox
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| sandbox.labels.get(labels::POD_UID).cloned())
}

async fn on_pod_event(
    workers: &mut Workers,
    listing: &mut Option<HashSet<String>>,
    listed_once: &mut bool,
    event: watcher::Event<Pod>,
    ctx: &PodContext,
) {
    let uid_of = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p) =
        &event
    {
        tracing::debug!(pod = %uid_of(p), name = ?p.metadata.name, "pod event");
    }
    match event {
        watcher::Event::Apply(pod) => workers.update(&uid_of(&pod), Some(Arc::new(pod))),
        watcher::Event::Delete(pod) => workers.update(&uid_of(&pod), None),
        watcher::Event::Init => *listing = Some(HashSet::new()),
        watcher::Event::InitApply(pod) => {
            let uid = uid_of(&pod);
            if let Some(seen) = listing.as_mut() {
                seen.insert(uid.clone());
            }
            workers.update(&uid, Some(Arc::new(pod)));
        }
        watcher::Event::InitDone => {
            // Pods that vanished while the watch was down.
            if let Some(seen) = listing.take() {
                let gone: Vec<String> = workers
                    .handles
                    .keys()
                    .filter(|uid| !seen.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    workers.update(&uid, None);
                }
            }
            if !*listed_once {
                *listed_once = true;
                adopt_orphans(workers, ctx).await;
            }
        }
    }
}

/// Sandboxes this node started for pods the API does not have get a
/// worker with no pod: it tears them down.
async fn adopt_orphans(workers: &mut Workers, ctx: &PodContext) {
    let call = ctx.runtime.list_pod_sandbox(v1::ListPodSandboxRequest {
        filter: Some(v1::PodSandboxFilter {
            label_selector: [(NODE_LABEL.to_string(), ctx.node.node_name.clone())].into(),
            ..Default::default()
        }),
    });
    let sandboxes = match tokio::time::timeout(observe::CRI_CALL_TIMEOUT, call).await {
        Ok(Ok(r)) => r.items,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "listing sandboxes for orphans");
            return;
        }
        Err(_) => return,
    };
    for s in sandboxes {
        let Some((_, _, uid)) = labels::parse_sandbox(&s.labels) else {
            continue;
        };
        if !workers.handles.contains_key(&uid) {
            workers.update(&uid, None);
        }
    }
}

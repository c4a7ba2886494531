//! Posting Events as the kubelet does: each recorded event goes through the
//! correlator (repeats become count/lastTimestamp patches), then a single
//! poster task sends it. Recording never blocks a pod worker: when the queue
//! is full the event is dropped with a log line, as client-go's broadcaster
//! drops when its channel is full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

use crate::node::status::events::{EventAction, EventCorrelator, NewEvent};

/// Events waiting to be posted; more than this and new ones are dropped.
const QUEUE: usize = 1000;
/// A post that takes longer than this is abandoned.
const POST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
pub struct EventRecorder {
    inner: Arc<Mutex<Inner>>,
    queue: mpsc::Sender<EventAction>,
}

/// At most this many posted names are remembered (then the map restarts:
/// a later repeat is posted as a new Event, as after a kubelet restart).
const MAX_NAMES: usize = 4096;

struct Inner {
    correlator: EventCorrelator,
    /// The correlator names an Event `<object>.<time>` with the time in whole
    /// seconds, so two events of one second share a name: each is posted
    /// under a name of its own, and a repeat's patch is sent to that one.
    /// Key: (correlator's name, type, reason, field path).
    names: HashMap<(String, String, String, String), String>,
    sequence: u64,
}

impl EventRecorder {
    /// The recorder and the poster task's future (the caller spawns it; it
    /// ends when every recorder is dropped).
    pub fn new(
        client: Client,
        node_name: &str,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        Self::for_component(client, "kubelet", node_name)
    }

    /// A recorder for another event source (`default-scheduler`, a
    /// controller), `host` being where it runs.
    pub fn for_component(
        client: Client,
        component: &str,
        host: &str,
    ) -> (Self, impl Future<Output = ()> + Send + use<>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let recorder = Self {
            inner: Arc::new(Mutex::new(Inner {
                correlator: EventCorrelator::new(component, host),
                names: HashMap::new(),
                sequence: 0,
            })),
            queue,
        };
        (recorder, post_events(client, rx))
    }

    /// An event about `pod`, or about one of its containers (`field_path`
    /// such as `spec.containers{app}`).
    pub fn pod_event(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        let involved_object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        };
        self.record(NewEvent {
            involved_object,
            type_: type_.into(),
            reason: reason.into(),
            message,
        });
    }

    pub fn record(&self, event: NewEvent) {
        tracing::debug!(reason = %event.reason, message = %event.message, "event");
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let key = (
            String::new(),
            event.type_.clone(),
            event.reason.clone(),
            event.involved_object.field_path.clone().unwrap_or_default(),
        );
        let object = event.involved_object.name.clone().unwrap_or_default();
        let action = {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            let action = inner.correlator.record(event, now);
            match action {
                EventAction::Create(mut ev) => {
                    inner.sequence += 1;
                    let unique = format!(
                        "{object}.{:x}",
                        k8s_openapi::jiff::Timestamp::now().as_nanosecond()
                            + i128::from(inner.sequence)
                    );
                    if inner.names.len() >= MAX_NAMES {
                        inner.names.clear();
                    }
                    let key = (
                        ev.metadata.name.clone().unwrap_or_default(),
                        key.1,
                        key.2,
                        key.3,
                    );
                    inner.names.insert(key, unique.clone());
                    ev.metadata.name = Some(unique);
                    EventAction::Create(ev)
                }
                EventAction::Patch {
                    namespace,
                    name,
                    count,
                    last_timestamp,
                    patch,
                } => {
                    let key = (name.clone(), key.1, key.2, key.3);
                    let name = inner.names.get(&key).cloned().unwrap_or(name);
                    EventAction::Patch {
                        namespace,
                        name,
                        count,
                        last_timestamp,
                        patch,
                    }
                }
                EventAction::Drop => EventAction::Drop,
            }
        };
        if matches!(action, EventAction::Drop) {
            return;
        }
        if self.queue.try_send(action).is_err() {
            tracing::warn!("event queue full: event dropped");
        }
    }
}

/// The field path of a container, as the kubelet writes it in events.
pub fn container_field_path(pod: &Pod, name: &str) -> String {
    let is_init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == name));
    if is_init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

async fn post_events(client: Client, mut rx: mpsc::Receiver<EventAction>) {
    while let Some(action) = rx.recv().await {
        let result = match action {
            EventAction::Create(event) => {
                let ns = event
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                tokio::time::timeout(POST_TIMEOUT, async {
                    api.create(&PostParams::default(), &*event)
                        .await
                        .map(|_| ())
                })
                .await
            }
            EventAction::Patch {
                namespace,
                name,
                patch,
                ..
            } => {
                let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
                tokio::time::timeout(POST_TIMEOUT, async {
                    api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                        .map(|_| ())
                })
                .await
            }
            EventAction::Drop => continue,
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "posting an event"),
            Err(_) => tracing::warn!("posting an event timed out"),
        }
    }
}

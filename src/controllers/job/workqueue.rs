//! The keyed work queue the Job, CronJob, DaemonSet and StatefulSet
//! controllers share (client-go's rate-limited delaying queue, in one
//! task): a watched change marks an object's key due now; a reconcile may
//! ask to be called again after a while (a back-off, a deadline, a TTL);
//! a reconcile that failed is retried after a per-key exponential back-off
//! (`ERROR_BASE` doubling to `ERROR_MAX`), so that API errors never make a
//! controller spin. A key is due at most once however often it is marked.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

pub const ERROR_BASE: Duration = Duration::from_millis(500);
pub const ERROR_MAX: Duration = Duration::from_secs(300);
/// A call to the apiserver that takes longer than this is abandoned.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a call failed: the apiserver's answer, or no answer in time.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: timed out")]
    Timeout { what: String },
}

impl CallError {
    /// The apiserver answered with this HTTP code.
    pub fn code(&self) -> Option<u16> {
        match self {
            CallError::Api {
                source: kube::Error::Api(s),
                ..
            } => Some(s.code),
            _ => None,
        }
    }
}

/// `f` with `CALL_TIMEOUT`, its error named by `what`.
pub async fn call<T>(
    what: impl Into<String>,
    f: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(CallError::Api {
            what: what.into(),
            source,
        }),
        Err(_) => Err(CallError::Timeout { what: what.into() }),
    }
}

/// The back-off after `failures` consecutive failures (1 or more).
pub fn error_backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    ERROR_BASE
        .saturating_mul(2u32.saturating_pow(exp))
        .min(ERROR_MAX)
}

#[derive(Debug, Default)]
pub struct WorkQueue {
    due: HashMap<String, Instant>,
    failures: HashMap<String, u32>,
}

impl WorkQueue {
    /// `key` changed: due now (sooner than any wait it had).
    pub fn add(&mut self, key: &str, now: Instant) {
        self.add_at(key, now);
    }

    /// `key` wants another look at `at` (kept if it is due earlier).
    pub fn add_at(&mut self, key: &str, at: Instant) {
        self.due
            .entry(key.to_string())
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }

    /// The keys due by `now`, taken off the queue, in key order.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut keys: Vec<String> = self
            .due
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        for k in &keys {
            self.due.remove(k);
        }
        keys
    }

    /// When the next key falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// The reconcile of `key` failed: retried after its back-off (a
    /// change seen meanwhile does not bring it forward: a broken object
    /// must not spin on its own updates).
    pub fn failed(&mut self, key: &str, now: Instant) -> Duration {
        let n = self.failures.entry(key.to_string()).or_default();
        *n += 1;
        let wait = error_backoff(*n);
        self.due.insert(key.to_string(), now + wait);
        wait
    }

    /// The reconcile of `key` went through: its error back-off restarts.
    pub fn succeeded(&mut self, key: &str) {
        self.failures.remove(key);
    }

    /// A change to `key`, unless it is backing off from an error.
    pub fn changed(&mut self, key: &str, now: Instant) {
        if self.failures.contains_key(key) && self.due.contains_key(key) {
            return;
        }
        self.add(key, now);
    }

    /// `key` is gone: forget it.
    pub fn forget(&mut self, key: &str) {
        self.due.remove(key);
        self.failures.remove(key);
    }
}

/// The `namespace/name` key of a namespaced object.
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("")
    )
}

/// The key of the object of `kind` that controls `meta` (its controller
/// ownerReference), in `meta`'s namespace.
pub fn controller_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &str,
) -> Option<String> {
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))?;
    (owner.kind == kind).then(|| {
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or("default"),
            owner.name
        )
    })
}

/// The uid of `meta`'s controller owner.
pub fn controller_uid(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fall_due_once_and_in_order() {
        let mut q = WorkQueue::default();
        let t0 = Instant::now();
        q.add("b", t0);
        q.add("a", t0);
        q.add("a", t0);
        q.add_at("c", t0 + Duration::from_secs(5));
        assert_eq!(q.take_due(t0), vec!["a", "b"]);
        assert!(q.take_due(t0).is_empty());
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(5)));
        q.add_at("c", t0 + Duration::from_secs(2));
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(q.take_due(t0 + Duration::from_secs(2)), vec!["c"]);
    }

    #[test]
    fn failures_back_off_and_changes_do_not_hurry_them() {
        let mut q = WorkQueue::default();
        let t0 = Instant::now();
        assert_eq!(q.failed("k", t0), ERROR_BASE);
        assert_eq!(q.failed("k", t0), ERROR_BASE * 2);
        q.changed("k", t0);
        assert!(
            q.take_due(t0).is_empty(),
            "a change does not skip the back-off"
        );
        assert_eq!(q.take_due(t0 + ERROR_BASE * 2), vec!["k"]);
        q.succeeded("k");
        assert_eq!(q.failed("k", t0), ERROR_BASE);
        assert_eq!(error_backoff(100), ERROR_MAX);
        q.forget("k");
        assert_eq!(q.next_due(), None);
    }
}

//! Which pending pods to try now: a pod that failed waits for its back-off
//! (1 s doubling to 10 s, kube's defaults) and for a change in the cluster
//! (a node, or a bound pod, added, changed or deleted) that might let it
//! fit; without any change it is retried after 5 minutes anyway, as
//! kube-scheduler flushes its unschedulable pods.

use std::collections::HashMap;
use std::time::{Duration, Instant};

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(300);

struct Attempt {
    failures: u32,
    failed_at: Instant,
    /// The cluster generation the pod last failed in.
    generation: u64,
    /// Unschedulable pods wait for a cluster change; failed API calls do not.
    needs_change: bool,
}

#[derive(Default)]
pub struct Queue {
    generation: u64,
    attempts: HashMap<String, Attempt>,
}

impl Queue {
    /// Something changed that could make a pending pod fit.
    pub fn cluster_changed(&mut self) {
        self.generation += 1;
    }

    fn backoff(failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(8);
        (INITIAL_BACKOFF * 2u32.pow(exp)).min(MAX_BACKOFF)
    }

    pub fn ready(&self, uid: &str, now: Instant) -> bool {
        let Some(a) = self.attempts.get(uid) else {
            return true;
        };
        let waited = now.saturating_duration_since(a.failed_at);
        ((!a.needs_change || a.generation < self.generation) && waited >= Self::backoff(a.failures))
            || waited >= UNSCHEDULABLE_FLUSH
    }

    pub fn failed(&mut self, uid: &str, now: Instant) {
        let generation = self.generation;
        let a = self.attempts.entry(uid.to_string()).or_insert(Attempt {
            failures: 0,
            failed_at: now,
            generation,
            needs_change: true,
        });
        a.failures += 1;
        a.failed_at = now;
        a.generation = generation;
        a.needs_change = true;
    }

    /// An error that is not the cluster's fault (the API call failed):
    /// retried after the back-off alone.
    pub fn errored(&mut self, uid: &str, now: Instant) {
        self.failed(uid, now);
        if let Some(a) = self.attempts.get_mut(uid) {
            a.needs_change = false;
        }
    }

    pub fn forget(&mut self, uid: &str) {
        self.attempts.remove(uid);
    }

    /// Drop the pods no longer pending.
    pub fn retain(&mut self, pending: impl Fn(&str) -> bool) {
        self.attempts.retain(|uid, _| pending(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_after_a_change_and_the_backoff() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        assert!(q.ready("p", t0));
        q.failed("p", t0);
        assert!(
            !q.ready("p", t0 + Duration::from_secs(2)),
            "nothing changed"
        );
        q.cluster_changed();
        assert!(
            !q.ready("p", t0 + Duration::from_millis(500)),
            "still backing off"
        );
        assert!(q.ready("p", t0 + Duration::from_secs(1)));
        q.failed("p", t0);
        q.failed("p", t0);
        q.cluster_changed();
        assert!(!q.ready("p", t0 + Duration::from_secs(3)));
        assert!(q.ready("p", t0 + Duration::from_secs(4)));
        assert!(
            q.ready("p", t0 + UNSCHEDULABLE_FLUSH),
            "flushed without a change"
        );
        assert_eq!(Queue::backoff(20), MAX_BACKOFF);
        q.forget("p");
        assert!(q.ready("p", t0));
    }

    #[test]
    fn api_errors_retry_on_backoff_alone() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.errored("p", t0);
        assert!(!q.ready("p", t0));
        assert!(q.ready("p", t0 + Duration::from_secs(1)));
        q.retain(|_| false);
        assert!(q.ready("p", t0));
    }
}

//! The crash-loop back-off (kuberuntime doBackOff over client-go flowcontrol.Backoff,
//! without jitter as the kubelet builds it): 10 s doubling to 300 s, forgotten when the
//! container ran for twice the maximum (10 min) since the last restart.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The kubelet's initial container restart back-off.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The kubelet's maximum container restart back-off (MaxContainerBackOff).
pub const MAX: Duration = Duration::from_secs(300);

/// (pod uid, container name). The kubelet's key also holds the container's spec hash,
/// so a changed container starts afresh: put it in the name if wanted.
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

/// `later - earlier`, zero when negative.
fn since(later: &Time, earlier: &Time) -> Duration {
    let d = later.0.duration_since(earlier.0);
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
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

    /// flowcontrol hasExpired: stable when the event is more than twice the maximum
    /// after the last back-off step.
    fn expired(&self, event: &Time, entry: &Entry) -> bool {
        since(event, &entry.last_update) > self.max * 2
    }

    /// Whether a restart of the container whose last attempt finished at `finished`
    /// must still wait (flowcontrol IsInBackOffSince): `Some(current back-off)` then.
    /// The kubelet then reports the container waiting with reason CrashLoopBackOff and
    /// message [`message`].
    pub fn in_backoff(&self, key: &Key, finished: &Time, now: &Time) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if self.expired(finished, entry) {
            return None;
        }
        (since(now, finished) < entry.backoff).then_some(entry.backoff)
    }

    /// Records a restart of the container whose last attempt finished at `finished`
    /// (flowcontrol Next): the first one waits `initial`, each next one twice the last,
    /// up to `max`; a container that stayed up long enough starts again at `initial`.
    pub fn next(&mut self, key: &Key, finished: &Time, now: &Time) {
        let (initial, max) = (self.initial, self.max);
        let fresh = match self.entries.get(key) {
            Some(e) => self.expired(finished, e),
            None => true,
        };
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            backoff: initial,
            last_update: now.clone(),
        });
        entry.backoff = if fresh {
            initial
        } else {
            (entry.backoff * 2).min(max)
        };
        entry.last_update = now.clone();
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
            .retain(|_, e| since(now, &e.last_update) <= max * 2);
    }
}

/// The waiting reason of a container in back-off.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// The kubelet's waiting message (and BackOff event text is [`event_message`]):
/// `back-off 40s restarting failed container=app pod=web_default(uid)`.
pub fn message(
    backoff: Duration,
    container: &str,
    pod_name: &str,
    namespace: &str,
    uid: &str,
) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={pod_name}_{namespace}({uid})",
        go_duration(backoff)
    )
}

/// The BackOff event's message.
pub fn event_message(container: &str, pod_name: &str, namespace: &str, uid: &str) -> String {
    format!("Back-off restarting failed container {container} in pod {pod_name}_{namespace}({uid})")
}

/// Go's time.Duration String for whole seconds: "10s", "1m20s", "5m0s".
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
    }

    fn key() -> Key {
        ("uid".into(), "app".into())
    }

    #[test]
    fn doubles_from_10s_to_300s() {
        let mut b = Backoff::default();
        let mut t = 0;
        let mut seen = Vec::new();
        for _ in 0..8 {
            // The container exits at t and is restarted once its back-off passed.
            assert_eq!(
                b.in_backoff(&key(), &at(t), &at(t)).is_some(),
                !seen.is_empty()
            );
            b.next(&key(), &at(t), &at(t));
            let d = b.get(&key()).unwrap();
            seen.push(d.as_secs());
            assert!(
                b.in_backoff(&key(), &at(t), &at(t + d.as_secs() as i64 - 1))
                    .is_some()
            );
            assert!(
                b.in_backoff(&key(), &at(t), &at(t + d.as_secs() as i64))
                    .is_none()
            );
            t += d.as_secs() as i64 + 1;
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn resets_after_ten_minutes_of_running() {
        let mut b = Backoff::default();
        b.next(&key(), &at(0), &at(0));
        b.next(&key(), &at(11), &at(11));
        assert_eq!(b.get(&key()), Some(Duration::from_secs(20)));
        // Ran 10 min: the next exit is not in back-off and restarts at 10 s.
        let exit = at(11 + 600);
        assert_eq!(
            b.in_backoff(&key(), &exit, &exit),
            Some(Duration::from_secs(20))
        );
        let exit = at(11 + 601);
        assert_eq!(b.in_backoff(&key(), &exit, &exit), None);
        b.next(&key(), &exit, &exit);
        assert_eq!(b.get(&key()), Some(INITIAL));
    }

    #[test]
    fn keys_are_separate_and_forgotten_with_the_pod() {
        let mut b = Backoff::default();
        let other: Key = ("uid".into(), "side".into());
        b.next(&key(), &at(0), &at(0));
        b.next(&key(), &at(0), &at(0));
        assert_eq!(b.get(&other), None);
        b.next(&other, &at(0), &at(0));
        assert_eq!(b.get(&other), Some(INITIAL));
        assert_eq!(b.get(&key()), Some(Duration::from_secs(20)));
        b.gc(&at(600));
        assert!(b.get(&key()).is_some());
        b.gc(&at(601));
        assert!(b.get(&key()).is_none());
        b.next(&key(), &at(0), &at(0));
        b.forget_pod("uid");
        assert!(b.get(&key()).is_none() && b.get(&other).is_none());
    }

    #[test]
    fn messages_as_the_kubelet_writes_them() {
        assert_eq!(
            message(Duration::from_secs(80), "app", "web", "default", "u1"),
            "back-off 1m20s restarting failed container=app pod=web_default(u1)"
        );
        assert_eq!(go_duration(MAX), "5m0s");
        assert_eq!(go_duration(INITIAL), "10s");
    }
}

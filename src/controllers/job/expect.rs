//! Expectations (client-go's ControllerExpectations, by name): the pods a
//! controller created or deleted for a key that its watch does not show yet.
//! Until they show (or `TTL` passes, for a lost watch event) the key's
//! reconcile waits, so that a stale cache never makes it create twice.
//! Likewise the resourceVersion a status write replaced: a cache still
//! showing it is stale.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    stale_version: Option<String>,
    since: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Expectations {
    keys: HashMap<String, Pending>,
}

impl Expectations {
    fn entry(&mut self, key: &str, now: Instant) -> &mut Pending {
        let p = self.keys.entry(key.to_string()).or_default();
        p.since.get_or_insert(now);
        p
    }

    pub fn created(&mut self, key: &str, name: &str, now: Instant) {
        self.entry(key, now).created.insert(name.to_string());
    }

    pub fn deleted(&mut self, key: &str, name: &str, now: Instant) {
        self.entry(key, now).deleted.insert(name.to_string());
    }

    /// A status write replaced the object at `version`.
    pub fn wrote(&mut self, key: &str, version: Option<&str>, now: Instant) {
        self.entry(key, now).stale_version = version.map(String::from);
    }

    /// Whether the cache shows what this controller did for `key`:
    /// `cached(name)` is None for a pod not in the cache, else whether it
    /// is being deleted; `version` is the cached object's resourceVersion.
    pub fn satisfied(
        &mut self,
        key: &str,
        version: Option<&str>,
        cached: impl Fn(&str) -> Option<bool>,
        now: Instant,
    ) -> bool {
        let Some(p) = self.keys.get_mut(key) else {
            return true;
        };
        p.created.retain(|n| cached(n).is_none());
        p.deleted.retain(|n| cached(n) == Some(false));
        if p.stale_version.is_some() && p.stale_version.as_deref() != version {
            p.stale_version = None;
        }
        let done = p.created.is_empty() && p.deleted.is_empty() && p.stale_version.is_none();
        let expired = p
            .since
            .is_some_and(|s| now.saturating_duration_since(s) >= TTL);
        if done || expired {
            self.keys.remove(key);
            return true;
        }
        false
    }

    pub fn forget(&mut self, key: &str) {
        self.keys.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_cache_to_show_creations_deletions_and_writes() {
        let mut e = Expectations::default();
        let t0 = Instant::now();
        let only = |name: &'static str| move |n: &str| (n == name).then_some(false);
        assert!(e.satisfied("k", None, |_| None, t0));
        e.created("k", "a", t0);
        e.deleted("k", "b", t0);
        e.wrote("k", Some("5"), t0);
        assert!(!e.satisfied("k", Some("5"), only("b"), t0));
        assert!(!e.satisfied("k", Some("6"), only("b"), t0), "b still there");
        assert!(e.satisfied("k", Some("6"), only("a"), t0));
        e.created("k", "c", t0);
        assert!(e.satisfied("k", None, |_| None, t0 + TTL), "expired");
    }
}

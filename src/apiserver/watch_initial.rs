//! The initial list of a watch (no resourceVersion, rv=0, or
//! sendInitialEvents), shared: watchers that start on the same collection at
//! the same store revision take one snapshot, each object decoded and its
//! JSON encoded once, instead of each listing and encoding a copy. 500
//! watchers starting on 1,000 ConfigMaps of 10 KB otherwise hold and write
//! 500 copies of 10 MB.
//!
//! The cache holds only weak references: a snapshot lives while some
//! watcher is still sending it, and a change to the store (a new revision)
//! makes the next watcher take a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::Bytes;
use serde_json::Value;

use crate::apiserver::store::{Store, StoreError};

/// One object of a snapshot, as stored and as JSON.
pub struct Item {
    pub object: Value,
    pub json: Bytes,
}

/// A collection at one revision.
pub struct Snapshot {
    pub rev: u64,
    pub items: Vec<Item>,
}

/// (the store's address, the collection prefix): a slot holding the
/// latest snapshot any watcher took, if one still uses it.
type Slots = HashMap<(usize, String), Arc<Mutex<Weak<Snapshot>>>>;

fn slots() -> MutexGuard<'static, Slots> {
    static SLOTS: OnceLock<Mutex<Slots>> = OnceLock::new();
    SLOTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The objects under `prefix` now, shared with every other watcher that
/// asks at the same revision. Blocking (a store read): call it off the
/// async threads.
pub fn snapshot(store: &Store, prefix: &str) -> Result<Arc<Snapshot>, StoreError> {
    let slot = {
        let mut slots = slots();
        // Forget collections nobody is reading.
        slots.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot
                    .lock()
                    .map(|weak| weak.strong_count() > 0)
                    .unwrap_or(false)
        });
        slots
            .entry((store as *const Store as usize, prefix.to_string()))
            .or_default()
            .clone()
    };
    // Watchers arriving together wait for the first one's list rather than
    // each listing too.
    let mut latest = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(shared) = latest.upgrade()
        && shared.rev == store.revision()?
    {
        return Ok(shared);
    }
    let (rev, objects) = store.list(prefix, None, usize::MAX)?;
    let items = objects
        .into_iter()
        .map(|(_, object)| {
            // Writing to a Vec fails only for a non-string map key: none here.
            let json = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
            Item { object, json }
        })
        .collect();
    let shared = Arc::new(Snapshot { rev, items });
    *latest = Arc::downgrade(&shared);
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(store: &Store, name: &str) {
        store
            .write(|txn| {
                txn.put(
                    &format!("/registry/configmaps/default/{name}"),
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": "default"}, "data": {"k": "v"}}),
                )?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn watchers_at_one_revision_share_a_snapshot_and_a_change_makes_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        put(&store, "a");
        put(&store, "b");
        let prefix = "/registry/configmaps/default/";
        let first = snapshot(&store, prefix).unwrap();
        let second = snapshot(&store, prefix).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "same revision: one snapshot");
        assert_eq!(first.items.len(), 2);
        let object: Value = serde_json::from_slice(&first.items[0].json).unwrap();
        assert_eq!(object, first.items[0].object);
        // Another collection is another snapshot.
        let other = snapshot(&store, "/registry/secrets/default/").unwrap();
        assert!(other.items.is_empty());
        put(&store, "c");
        let third = snapshot(&store, prefix).unwrap();
        assert!(
            !Arc::ptr_eq(&first, &third),
            "a new revision: a new snapshot"
        );
        assert_eq!(third.items.len(), 3);
        assert!(third.rev > first.rev);
        // Nobody holds it: the next watcher lists again.
        let rev = third.rev;
        drop((first, second, third));
        let fourth = snapshot(&store, prefix).unwrap();
        assert_eq!(fourth.rev, rev);
    }
}

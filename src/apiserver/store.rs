//! The embedded store: every object as JSON in one redb table, keyed
//! `<group>/<resource>/<namespace>/<name>`, plus a global revision counter
//! that becomes each write's `metadata.resourceVersion`.
//!
//! Why redb: it is pure Rust (no C toolchain, unlike RocksDB/SQLite), it has
//! real ACID write transactions, and a commit with `Durability::Immediate`
//! (its default) returns only after the data and the commit record are
//! fsync'd. So a write is acknowledged to a client only once it is durable,
//! and a `kill -9` at any moment leaves either the old or the new state.
//!
//! Watch: committed changes are published, in revision order, to an
//! in-memory history (bounded) and to live subscribers. A watch may resume
//! from any revision still in the history; older ones get 410 Gone, which is
//! what makes clients re-list, exactly as with etcd compaction.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::apiserver::error::ApiError;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// How many committed events a watch can resume across...
const HISTORY: usize = 10_000;
/// ...within this much memory (objects can be up to ~1.5 MiB each).
const HISTORY_BYTES: usize = 64 << 20;
/// A watcher that falls this far behind is dropped (it will re-list).
const SUBSCRIBER_BUFFER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    #[error("store: corrupt object at {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

fn db_err(err: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(err.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Event {
    pub rev: u64,
    pub kind: EventKind,
    pub key: String,
    /// The new object (for Deleted: the last state, stamped with the
    /// deletion's revision, as kube-apiserver does).
    pub object: Value,
    /// The state before, to tell watchers with selectors that an object left
    /// their view.
    pub prev: Option<Value>,
    /// `object` as JSON, encoded once at write time: every JSON watcher
    /// sends these same bytes.
    pub json: Bytes,
    /// Approximate memory held, for bounding the history.
    size: usize,
}

impl Event {
    /// `<group>/<resource>/` of the key: which collection changed.
    pub fn in_collection(&self, prefix: &str) -> bool {
        self.key.starts_with(prefix)
    }
}

pub fn object_key(group: &str, resource: &str, namespace: &str, name: &str) -> String {
    format!("{}{namespace}/{name}", collection_prefix(group, resource))
}

/// Prefix of every key of one resource; `core` stands for the empty group so
/// keys never start with a slash.
pub fn collection_prefix(group: &str, resource: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("{group}/{resource}/")
}

struct Hub {
    history: VecDeque<Arc<Event>>,
    history_bytes: usize,
    /// The oldest revision a watch may start after.
    floor: u64,
    subscribers: Vec<mpsc::Sender<Arc<Event>>>,
}

pub struct Store {
    db: redb::Database,
    /// Held across commit + publish so events reach watchers in revision
    /// order (redb serializes write transactions, but not our publishing).
    write_lock: Mutex<()>,
    hub: Mutex<Hub>,
}

/// A subscription: events already committed after the requested revision,
/// then live ones.
pub struct Subscription {
    pub backlog: Vec<Arc<Event>>,
    pub live: mpsc::Receiver<Arc<Event>>,
}

/// The write side of one transaction. Each put/delete takes the next revision.
pub struct Txn<'a> {
    table: redb::Table<'a, &'static str, &'static [u8]>,
    rev: u64,
    events: Vec<Event>,
}

impl Txn<'_> {
    pub fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        read_value(&self.table, key)
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<(String, Value)>, StoreError> {
        read_range(&self.table, prefix, None, usize::MAX)
    }

    /// Store `object` under `key`, stamping its resourceVersion. Returns the
    /// stored object.
    pub fn put(&mut self, key: &str, mut object: Value) -> Result<Value, StoreError> {
        let prev = self.get(key)?;
        self.rev += 1;
        set_resource_version(&mut object, self.rev);
        let bytes = serde_json::to_vec(&object).map_err(|source| StoreError::Corrupt {
            key: key.into(),
            source,
        })?;
        self.table.insert(key, bytes.as_slice()).map_err(db_err)?;
        let size = 2 * bytes.len();
        self.events.push(Event {
            size,
            json: Bytes::from(bytes),
            rev: self.rev,
            kind: if prev.is_some() {
                EventKind::Modified
            } else {
                EventKind::Added
            },
            key: key.into(),
            object: object.clone(),
            prev,
        });
        Ok(object)
    }

    /// Remove `key`; returns its last state (stamped with the deletion's
    /// revision) if it existed.
    pub fn delete(&mut self, key: &str) -> Result<Option<Value>, StoreError> {
        let Some(prev) = self.get(key)? else {
            return Ok(None);
        };
        self.table.remove(key).map_err(db_err)?;
        self.rev += 1;
        let mut object = prev.clone();
        set_resource_version(&mut object, self.rev);
        let json = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
        self.events.push(Event {
            size: 2 * json.len(),
            json,
            rev: self.rev,
            kind: EventKind::Deleted,
            key: key.into(),
            object: object.clone(),
            prev: Some(prev),
        });
        Ok(Some(object))
    }
}

fn read_revision(meta: &impl ReadableTable<&'static str, u64>) -> Result<u64, StoreError> {
    Ok(meta
        .get(REVISION)
        .map_err(db_err)?
        .map(|g| g.value())
        .unwrap_or(0))
}

fn set_resource_version(object: &mut Value, rev: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

fn read_value(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Value>, StoreError> {
    match table.get(key).map_err(db_err)? {
        None => Ok(None),
        Some(guard) => serde_json::from_slice(guard.value())
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                key: key.into(),
                source,
            }),
    }
}

/// Keys under `prefix`, in key order, strictly after `after` if given.
fn read_range(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, Value)>, StoreError> {
    let start = after.unwrap_or(prefix);
    let mut out = Vec::new();
    for entry in table.range(start..).map_err(db_err)? {
        let (key, value) = entry.map_err(db_err)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if Some(key) == after {
            continue;
        }
        let object =
            serde_json::from_slice(value.value()).map_err(|source| StoreError::Corrupt {
                key: key.into(),
                source,
            })?;
        out.push((key.to_string(), object));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(64 << 20)
            .create(path)
            .map_err(db_err)?;
        // Make sure both tables exist so readers never see "table missing".
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(OBJECTS).map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        let store = Store {
            db,
            write_lock: Mutex::new(()),
            hub: Mutex::new(Hub {
                history: VecDeque::new(),
                history_bytes: 0,
                floor: 0,
                subscribers: Vec::new(),
            }),
        };
        let rev = store.revision()?;
        lock(&store.hub).floor = rev;
        Ok(store)
    }

    pub fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        read_revision(&meta)
    }

    pub fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(OBJECTS).map_err(db_err)?;
        read_value(&table, key)
    }

    /// A consistent snapshot of up to `limit` objects under `prefix` (after
    /// key `after`), with the revision the snapshot reflects.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(u64, Vec<(String, Value)>), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let rev = read_revision(&meta)?;
        let table = txn.open_table(OBJECTS).map_err(db_err)?;
        Ok((rev, read_range(&table, prefix, after, limit)?))
    }

    /// Run `f` in one durable write transaction. If `f` fails nothing is
    /// written. Returns once the commit is on disk and watchers are told.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let _serial = lock(&self.write_lock);
        let txn = self.db.begin_write().map_err(db_err)?;
        let (result, events) = {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let rev = read_revision(&meta)?;
            let table = txn.open_table(OBJECTS).map_err(db_err)?;
            let mut t = Txn {
                table,
                rev,
                events: Vec::new(),
            };
            let result = f(&mut t)?;
            if t.rev != rev {
                meta.insert(REVISION, t.rev).map_err(db_err)?;
            }
            (result, t.events)
        };
        if events.is_empty() {
            txn.abort().map_err(db_err)?;
            return Ok(result);
        }
        txn.commit().map_err(db_err)?;
        self.publish(events);
        Ok(result)
    }

    fn publish(&self, events: Vec<Event>) {
        let mut hub = lock(&self.hub);
        for event in events {
            let event = Arc::new(event);
            hub.subscribers
                .retain(|tx| tx.try_send(Arc::clone(&event)).is_ok());
            hub.history_bytes += event.size;
            hub.history.push_back(event);
            while hub.history.len() > HISTORY || hub.history_bytes > HISTORY_BYTES {
                let Some(old) = hub.history.pop_front() else {
                    break;
                };
                hub.history_bytes -= old.size;
                hub.floor = old.rev;
            }
        }
    }

    /// Subscribe to every change after revision `after`. Fails (410 Gone)
    /// when `after` is older than what the history still holds.
    pub fn subscribe(&self, after: u64) -> Result<Subscription, ApiError> {
        let mut hub = lock(&self.hub);
        if after < hub.floor {
            return Err(ApiError::Gone(format!(
                "too old resource version: {after} ({})",
                hub.floor
            )));
        }
        let backlog = hub
            .history
            .iter()
            .filter(|e| e.rev > after)
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        hub.subscribers.push(tx);
        Ok(Subscription { backlog, live: rx })
    }
}

/// A poisoned lock only means another request panicked mid-way; the data
/// behind these locks (a unit, the watch hub) stays consistent, so go on.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Internal(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn revisions_and_watch_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let key = object_key("", "pods", "default", "a");
        let put = store
            .write(|t| Ok(t.put(&key, json!({"metadata": {"name": "a"}}))?))
            .unwrap();
        assert_eq!(put["metadata"]["resourceVersion"], "1");
        let sub = store.subscribe(1).unwrap();
        assert!(sub.backlog.is_empty());
        store.write(|t| Ok(t.delete(&key)?)).unwrap();
        let sub = store.subscribe(0).unwrap();
        assert_eq!(sub.backlog.len(), 2);
        assert_eq!(sub.backlog[1].kind, EventKind::Deleted);
        assert_eq!(store.revision().unwrap(), 2);
        drop(store);
        // After a restart the history is gone: resuming from before is 410.
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert!(matches!(store.subscribe(1), Err(ApiError::Gone(_))));
        assert!(store.subscribe(2).is_ok());
        assert!(store.get(&key).unwrap().is_none());
    }

    #[test]
    fn failed_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let res: Result<(), _> = store.write(|t| {
            t.put("core/pods/x/y", json!({"metadata": {}}))?;
            Err(ApiError::BadRequest("no".into()))
        });
        assert!(res.is_err());
        assert_eq!(store.revision().unwrap(), 0);
        assert!(store.get("core/pods/x/y").unwrap().is_none());
    }
}

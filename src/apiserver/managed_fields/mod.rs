//! Server-side apply field ownership: `metadata.managedFields` in FieldsV1
//! form, one entry per manager (and operation), as kube-apiserver keeps it.
//!
//! A field set is the set of owned paths; a path is a list of FieldsV1 keys:
//! `f:<field>` for an object field, `k:{"name":"c"}` for an item of a list
//! that merges by key (the strategic-merge keys in `patch`), `v:<json>` for
//! an item of a set-like list (finalizers). Other lists are owned whole. An
//! item node is owned itself too (`.` in FieldsV1).
//!
//! Apply: the manager's new set is the applied configuration's. A field
//! another manager owns and the configuration would change is a conflict
//! (409, unless force, which takes the field over); fields the manager
//! owned before, stopped applying and nobody else owns are removed.
//! Creates and updates by other means record the fields they set or
//! changed under an `Update` entry for their manager, taking them from
//! everyone else (objects stored before this existed, and those the server
//! makes itself, have none until someone applies to them).

mod paths;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::patch;

pub use paths::{FieldSet, Path, display, field_set, from_fields_v1, get, remove, to_fields_v1};

/// One managedFields entry, parsed.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    subresource: String,
    raw: Value,
    set: FieldSet,
}

fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or("").to_string(),
            operation: e["operation"].as_str().unwrap_or("").to_string(),
            subresource: e["subresource"].as_str().unwrap_or("").to_string(),
            raw: e.clone(),
            set: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn write_entries(object: &mut Value, list: Vec<Entry>) {
    let list: Vec<Value> = list
        .into_iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| e.raw)
        .collect();
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    if list.is_empty() {
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(list);
    }
}

fn entry_json(
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: &str,
    now: &str,
    set: &FieldSet,
) -> Value {
    let mut e = json!({
        "manager": manager, "operation": operation, "apiVersion": api_version,
        "time": now, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(set),
    });
    if !subresource.is_empty() {
        e["subresource"] = json!(subresource);
    }
    e
}

/// What an apply asks for.
pub struct Apply<'a> {
    pub resource: &'a str,
    pub api_version: &'a str,
    pub manager: &'a str,
    pub subresource: &'a str,
    pub force: bool,
    pub now: &'a str,
}

/// Server-side apply of `config` onto `live` (None: being created). Returns
/// the new object, managedFields included.
pub fn apply(a: &Apply<'_>, live: Option<&Value>, config: &Value) -> Result<Value, ApiError> {
    let status = a.subresource == "status";
    let applied = field_set(a.resource, config, status);
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    let mut list = entries(live_obj);
    let mine = |e: &Entry| {
        e.manager == a.manager && e.operation == "Apply" && e.subresource == a.subresource
    };
    // Conflicts: owned elsewhere and the configuration changes the value.
    let mut conflicts: BTreeMap<Path, Vec<String>> = BTreeMap::new();
    for e in list.iter().filter(|e| !mine(e)) {
        for p in applied.intersection(&e.set) {
            let (old, new) = (get(live_obj, p), get(config, p));
            let is_item = p.last().is_some_and(|s| !s.starts_with("f:"));
            if !is_item && old != new {
                conflicts
                    .entry(p.clone())
                    .or_default()
                    .push(e.manager.clone());
            }
        }
    }
    if !conflicts.is_empty() && !a.force {
        let causes: Vec<Cause> = conflicts
            .iter()
            .flat_map(|(p, managers)| {
                managers.iter().map(move |m| Cause {
                    reason: "FieldManagerConflict",
                    field: display(p),
                    message: format!("conflict with \"{m}\""),
                })
            })
            .collect();
        let lines: Vec<String> = causes
            .iter()
            .map(|c| format!("- {}: {}", c.message, c.field))
            .collect();
        return Err(ApiError::ApplyConflict {
            message: format!(
                "Apply failed with {} conflict{}: {}",
                causes.len(),
                if causes.len() == 1 { "" } else { "s" },
                lines.join("\n")
            ),
            causes,
        });
    }
    // Forced: the others lose what conflicted.
    for e in list.iter_mut().filter(|e| !mine(e)) {
        let before = e.set.len();
        e.set.retain(|p| !conflicts.contains_key(p));
        if e.set.len() != before {
            e.raw["fieldsV1"] = to_fields_v1(&e.set);
        }
    }
    let previous: FieldSet = list
        .iter()
        .filter(|e| mine(e))
        .flat_map(|e| e.set.iter().cloned())
        .collect();
    let others: FieldSet = list
        .iter()
        .filter(|e| !mine(e))
        .flat_map(|e| e.set.iter().cloned())
        .collect();
    let mut out = live_obj.clone();
    let mut cfg = config.clone();
    if let Some(m) = cfg.as_object_mut() {
        m.remove("status");
        if status {
            m.clear();
            m.insert("status".into(), config["status"].clone());
        }
    }
    patch::strategic(&mut out, &cfg, a.resource, "");
    // Deepest first, so a removed item takes its fields with it.
    let mut gone: Vec<&Path> = previous
        .iter()
        .filter(|p| !applied.contains(*p) && !others.contains(*p))
        .collect();
    gone.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in gone {
        remove(&mut out, p);
    }
    let unchanged = previous == applied;
    let existing = list.iter().position(mine);
    let raw = match existing {
        // Same set: keep the entry (and its time) so a repeated apply
        // writes nothing.
        Some(i) if unchanged => list[i].raw.clone(),
        _ => entry_json(
            a.manager,
            "Apply",
            a.api_version,
            a.subresource,
            a.now,
            &applied,
        ),
    };
    let entry = Entry {
        manager: a.manager.into(),
        operation: "Apply".into(),
        subresource: a.subresource.into(),
        raw,
        set: applied,
    };
    match existing {
        Some(i) => list[i] = entry,
        None => list.push(entry),
    }
    write_entries(&mut out, list);
    Ok(out)
}

/// Record a create (other than by apply): its manager owns every field it
/// set, as an `Update` entry, so a later apply by someone else that changes
/// one of them conflicts, as with kube.
pub fn record_create(resource: &str, api_version: &str, manager: &str, now: &str, new: &mut Value) {
    let set = field_set(resource, new, false);
    if set.is_empty() {
        return;
    }
    let entry = Entry {
        manager: manager.into(),
        operation: "Update".into(),
        subresource: String::new(),
        raw: entry_json(manager, "Update", api_version, "", now, &set),
        set,
    };
    write_entries(new, vec![entry]);
}

/// Record a non-apply write: the fields that `old` -> `new` changed go to
/// `manager`'s Update entry and out of everyone else's. Only for objects
/// that already have managed fields (objects nobody applied stay without).
pub fn record_update(
    resource: &str,
    api_version: &str,
    manager: &str,
    subresource: &str,
    now: &str,
    old: &Value,
    new: &mut Value,
) {
    let mut list = entries(old);
    if list.is_empty() {
        return;
    }
    let status = subresource == "status";
    let before = field_set(resource, old, status);
    let after = field_set(resource, new, status);
    let changed: FieldSet = after
        .iter()
        .filter(|p| get(old, p) != get(new, p))
        .chain(before.difference(&after))
        .cloned()
        .collect();
    if changed.is_empty() {
        write_entries(new, list);
        return;
    }
    let is_me =
        |e: &Entry| e.manager == manager && e.operation == "Update" && e.subresource == subresource;
    for e in list.iter_mut().filter(|e| !is_me(e)) {
        let n = e.set.len();
        e.set.retain(|p| !changed.contains(p));
        if e.set.len() != n {
            e.raw["fieldsV1"] = to_fields_v1(&e.set);
        }
    }
    let mut set: FieldSet = list
        .iter()
        .filter(|e| is_me(e))
        .flat_map(|e| e.set.iter().cloned())
        .collect();
    set.extend(changed.into_iter().filter(|p| after.contains(p)));
    // What no longer exists is owned by nobody.
    set.retain(|p| after.contains(p));
    let entry = Entry {
        manager: manager.into(),
        operation: "Update".into(),
        subresource: subresource.into(),
        raw: entry_json(manager, "Update", api_version, subresource, now, &set),
        set,
    };
    match list.iter().position(is_me) {
        Some(i) => list[i] = entry,
        None => list.push(entry),
    }
    write_entries(new, list);
}

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

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::patch;

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata fields the server owns; never in a field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The fields `object` sets. `status` counts only for the status
/// subresource (main-resource writes never change it).
pub fn field_set(resource: &str, object: &Value, status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (k, v) in map {
        let keep = match k.as_str() {
            "apiVersion" | "kind" => false,
            "status" => status,
            _ => !status,
        };
        if !keep {
            continue;
        }
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if !SERVER_METADATA.contains(&mk.as_str()) {
                        let path = vec!["f:metadata".to_string(), format!("f:{mk}")];
                        walk(resource, mv, &child("metadata", mk), path, &mut out);
                    }
                }
            }
            continue;
        }
        walk(resource, v, k, vec![format!("f:{k}")], &mut out);
    }
    out
}

fn walk(resource: &str, v: &Value, dotted: &str, path: Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, inner) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                walk(resource, inner, &child(dotted, k), p, out);
            }
        }
        Value::Array(items) => {
            if let Some(key) = patch::merge_key(resource, dotted) {
                for item in items {
                    let Some(id) = item.get(key) else {
                        continue;
                    };
                    let mut p = path.clone();
                    p.push(format!("k:{}", json!({ key: id })));
                    out.insert(p.clone());
                    if let Some(m) = item.as_object() {
                        for (k, inner) in m {
                            let mut ip = p.clone();
                            ip.push(format!("f:{k}"));
                            walk(resource, inner, &child(dotted, k), ip, out);
                        }
                    }
                }
            } else if patch::is_merging_primitive_list(resource, dotted) {
                for item in items {
                    let mut p = path.clone();
                    p.push(format!("v:{item}"));
                    out.insert(p);
                }
            } else {
                out.insert(path);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at `path` in `object`, if there.
pub fn get<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = object;
    for seg in path {
        cur = step(cur, seg)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, seg: &str) -> Option<&'a Value> {
    if let Some(f) = seg.strip_prefix("f:") {
        return cur.get(f);
    }
    let items = cur.as_array()?;
    if let Some(k) = seg.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        return items
            .iter()
            .find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
    }
    let v: Value = serde_json::from_str(seg.strip_prefix("v:")?).ok()?;
    items.iter().find(|i| **i == v)
}

/// Remove what `path` names from `object`.
pub fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = object;
    for seg in parent_path {
        let next = if let Some(f) = seg.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let found = step(cur, seg).cloned();
            match (cur.as_array_mut(), found) {
                (Some(items), Some(found)) => items.iter_mut().find(|i| **i == found),
                _ => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(found) = step(cur, last).cloned()
        && let Some(items) = cur.as_array_mut()
    {
        items.retain(|i| *i != found);
    }
}

/// kube's way of naming a path in conflict messages: `.spec.containers[name="c"].image`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = seg.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// FieldsV1 JSON for a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            cur = cur
                .entry(seg.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("field set nodes are objects");
        }
        // Owned itself and with owned children: mark it.
        if !cur.is_empty() {
            cur.insert(".".into(), json!({}));
        }
    }
    // A node inserted before its children needs the mark too.
    fn mark(node: &mut Map<String, Value>, path: &mut Path, set: &FieldSet) {
        for (k, v) in node.iter_mut() {
            if k == "." {
                continue;
            }
            path.push(k.clone());
            if let Some(m) = v.as_object_mut() {
                if !m.is_empty() && set.contains(path) {
                    m.insert(".".into(), json!({}));
                }
                mark(m, path, set);
            }
            path.pop();
        }
    }
    mark(&mut root, &mut Vec::new(), set);
    Value::Object(root)
}

pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(node: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) {
        for (k, v) in node {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(k.clone());
            match v.as_object() {
                Some(m) if !m.is_empty() => go(m, path, out),
                _ => {
                    out.insert(path.clone());
                }
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        go(m, &mut Vec::new(), &mut out);
    }
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn a<'x>(manager: &'x str, force: bool) -> Apply<'x> {
        Apply {
            resource: "configmaps",
            api_version: "v1",
            manager,
            subresource: "",
            force,
            now: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn sets_round_trip_through_fields_v1() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"},
            "finalizers": ["x"]},
            "spec": {"containers": [{"name": "c", "image": "i", "args": ["1", "2"]}]}});
        let set = field_set("pods", &pod, false);
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"],
            json!({".": {}, "f:args": {}, "f:image": {}, "f:name": {}})
        );
        assert_eq!(v1["f:metadata"]["f:finalizers"], json!({"v:\"x\"": {}}));
        assert!(v1["f:metadata"].get("f:name").is_none());
        assert_eq!(from_fields_v1(&v1), set);
        let item: Path = vec![
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into(),
        ];
        assert_eq!(get(&pod, &item), Some(&json!("i")));
        assert_eq!(display(&item), ".spec.containers[name=\"c\"].image");
    }

    #[test]
    fn conflicts_force_and_removal() {
        let cfg_a = json!({"metadata": {"name": "m"}, "data": {"x": "1", "y": "2"}});
        let live = apply(&a("a", false), None, &cfg_a).unwrap();
        assert_eq!(live["data"], json!({"x": "1", "y": "2"}));
        // Same value from another manager: shared, no conflict.
        let live = apply(&a("b", false), Some(&live), &json!({"data": {"x": "1"}})).unwrap();
        // Different value: conflict, unless forced.
        let err = apply(&a("b", false), Some(&live), &json!({"data": {"y": "3"}})).unwrap_err();
        assert!(err.to_string().contains("conflict with \"a\""), "{err}");
        let live = apply(&a("b", true), Some(&live), &json!({"data": {"y": "3"}})).unwrap();
        assert_eq!(live["data"]["y"], "3");
        // b's last apply dropped x, so x goes when a stops applying it.
        let live = apply(&a("a", false), Some(&live), &json!({"data": {}})).unwrap();
        assert_eq!(live["data"], json!({"y": "3"}));
        // A repeated apply changes nothing.
        let again = apply(&a("b", false), Some(&live), &json!({"data": {"y": "3"}})).unwrap();
        assert_eq!(again, live);
    }
}

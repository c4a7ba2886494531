//! Field sets and paths of server-side apply: which paths an object sets
//! (per resource, through the strategic-merge keys of `patch`), reading and
//! removing a path in an object, and the FieldsV1 form of a set.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

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

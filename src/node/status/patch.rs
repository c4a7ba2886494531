//! The body of the pod status PATCH the kubelet's status manager sends
//! (util/pod.PatchPodStatus): a strategic merge patch from the API's status to the new
//! one, as apimachinery's CreateTwoWayMergePatch computes it over the PodStatus schema,
//! with the pod's uid as a precondition.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::{Map, Value};

/// None when `new` equals `old`; else the strategic merge patch `{"status":{...}}` for
/// pods/<name>/status. `PodStatus` has no uid: add the precondition with
/// [`with_uid_precondition`], or use [`pod_status_patch`] which does both.
pub fn status_patch(old: &PodStatus, new: &PodStatus) -> Option<Value> {
    let old = serde_json::to_value(old).ok()?;
    let new = serde_json::to_value(new).ok()?;
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return None;
    };
    let diff = diff_maps(&old, &new, merge_key_of_status);
    (!diff.is_empty()).then(|| serde_json::json!({ "status": Value::Object(diff) }))
}

/// Adds the kubelet's `{"metadata":{"uid":...}}` precondition to a status patch, so it
/// fails (409) when the pod was replaced by one of the same name.
pub fn with_uid_precondition(mut patch: Value, uid: &str) -> Value {
    if let Some(obj) = patch.as_object_mut() {
        obj.insert("metadata".into(), serde_json::json!({ "uid": uid }));
    }
    patch
}

/// The patch from `pod.status` (the API's) to `new`, with the uid precondition;
/// None when unchanged.
pub fn pod_status_patch(pod: &Pod, new: &PodStatus) -> Option<Value> {
    let old = pod.status.clone().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    status_patch(&old, new).map(|p| with_uid_precondition(p, uid))
}

/// The patchMergeKey of PodStatus' lists with patchStrategy merge; the other lists
/// (containerStatuses, ...) are atomic and replaced whole.
fn merge_key_of_status(field: &str) -> Option<&'static str> {
    match field {
        "conditions" => Some("type"),
        "podIPs" | "hostIPs" => Some("ip"),
        "resourceClaimStatuses" => Some("name"),
        _ => None,
    }
}

/// diffMaps: changed and added keys with their new value (maps recursed), removed keys
/// as null. Merge keys only apply at the top level of PodStatus.
fn diff_maps(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    merge_key: fn(&str) -> Option<&'static str>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, nv) in new {
        let Some(ov) = old.get(key) else {
            patch.insert(key.clone(), nv.clone());
            continue;
        };
        match (ov, nv) {
            (Value::Object(o), Value::Object(n)) => {
                let d = diff_maps(o, n, |_| None);
                if !d.is_empty() {
                    patch.insert(key.clone(), Value::Object(d));
                }
            }
            (Value::Array(o), Value::Array(n)) => match merge_key(key) {
                Some(mk) if is_list_of_maps(o, n) => {
                    let (list, order) = diff_merge_list(o, n, mk);
                    if !list.is_empty() {
                        patch.insert(key.clone(), Value::Array(list));
                    }
                    if let Some(order) = order {
                        patch.insert(format!("$setElementOrder/{key}"), Value::Array(order));
                    }
                }
                _ => {
                    if o != n {
                        patch.insert(key.clone(), nv.clone());
                    }
                }
            },
            _ => {
                if ov != nv {
                    patch.insert(key.clone(), nv.clone());
                }
            }
        }
    }
    for key in old.keys() {
        if !new.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    patch
}

fn is_list_of_maps(a: &[Value], b: &[Value]) -> bool {
    a.iter().chain(b).all(Value::is_object)
}

fn key_string(v: &Value, mk: &str) -> String {
    match v.get(mk) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// diffListsOfMaps + normalizeSliceOrder + the $setElementOrder directive: changed
/// elements (merge key plus changed fields) and added ones in the new list's order,
/// then `{"$patch":"delete"}` for removed ones; the order list when anything changed
/// or the order did.
fn diff_merge_list(old: &[Value], new: &[Value], mk: &str) -> (Vec<Value>, Option<Vec<Value>>) {
    let mut patch = Vec::new();
    for n in new {
        let k = key_string(n, mk);
        match old.iter().find(|o| key_string(o, mk) == k) {
            Some(o) => {
                let (Value::Object(om), Value::Object(nm)) = (o, n) else {
                    continue;
                };
                let mut d = diff_maps(om, nm, |_| None);
                if !d.is_empty() {
                    d.insert(mk.to_string(), n.get(mk).cloned().unwrap_or(Value::Null));
                    patch.push(Value::Object(d));
                }
            }
            None => patch.push(n.clone()),
        }
    }
    for o in old {
        let k = key_string(o, mk);
        if !new.iter().any(|n| key_string(n, mk) == k) {
            let mut d = Map::new();
            d.insert("$patch".into(), Value::String("delete".into()));
            d.insert(mk.to_string(), o.get(mk).cloned().unwrap_or(Value::Null));
            patch.push(Value::Object(d));
        }
    }
    // isOrderSame: the same merge keys at the same positions.
    let order_same = old.len() == new.len()
        && old
            .iter()
            .zip(new)
            .all(|(o, n)| key_string(o, mk) == key_string(n, mk));
    let order = (!patch.is_empty() || !order_same).then(|| {
        new.iter()
            .map(|n| {
                let mut m = Map::new();
                m.insert(mk.to_string(), n.get(mk).cloned().unwrap_or(Value::Null));
                Value::Object(m)
            })
            .collect()
    });
    (patch, order)
}

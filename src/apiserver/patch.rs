//! The three patch types kube-apiserver accepts: JSON patch (RFC 6902), JSON
//! merge patch (RFC 7386) and strategic merge patch for built-in types.
//!
//! Strategic merge knows, per list field, whether items merge by a key
//! (containers by name, env by name, ...) or the list is replaced, which is
//! what kubectl's client-side apply/label/annotate patches rely on. Which
//! list merges by which key, at which path of which kind, is in
//! `merge_keys` (kube's `patchMergeKey` struct tags). The JSON merge patch
//! is `json_patch::merge` (RFC 7386).

use serde_json::{Map, Value};

use crate::apiserver::error::ApiError;
pub use crate::apiserver::merge_keys::{is_merging_primitive_list, merge_key};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

pub fn apply(
    kind_resource: &str,
    original: &Value,
    patch: &[u8],
    ty: PatchType,
) -> Result<Value, ApiError> {
    match ty {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
            // On a copy: json_patch::patch's undo of a failed patch panics
            // on some op lists (tests/fuzz regression_json_patch_undo).
            let mut doc = original.clone();
            json_patch::patch_unsafe(&mut doc, &ops).map_err(|e| ApiError::Invalid {
                kind: String::new(),
                group: String::new(),
                name: String::new(),
                summary: {
                    tracing::debug!(error = %e, "JSON patch failed");
                    "the server rejected our request due to an error in our request".into()
                },
                causes: Vec::new(),
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            let p: Value = parse_object(patch)?;
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        PatchType::Strategic => {
            let p: Value = parse_object(patch)?;
            // A top-level delete directive leaves nothing (kube then
            // refuses the nameless result).
            if p.get("$patch").and_then(Value::as_str) == Some("delete") {
                return Ok(Value::Object(Map::new()));
            }
            let mut doc = original.clone();
            strategic(&mut doc, &p, kind_resource, "");
            Ok(doc)
        }
        PatchType::Apply => {
            // Server-side apply, approximated: the applied configuration is
            // merged like a strategic merge patch. There is no field
            // ownership (managedFields), so no conflicts are reported and
            // fields a manager stops applying are kept, not removed.
            let p = apply_body(patch)?;
            let mut doc = original.clone();
            strategic(&mut doc, &p, kind_resource, "");
            Ok(doc)
        }
    }
}

/// An apply body: YAML (JSON, what kubectl and kube-rs send, is YAML too).
pub fn apply_body(patch: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(patch) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(ApiError::BadRequest(
            "the apply configuration must be an object".into(),
        )),
        Err(_) => yaml_object(patch),
    }
}

/// One YAML document that must be a mapping, as JSON. serde-saphyr's
/// default budget bounds alias expansion, so a "billion laughs" document
/// is an error, not an out-of-memory.
pub fn yaml_object(body: &[u8]) -> Result<Value, ApiError> {
    object(
        serde_saphyr::from_slice(body),
        "the request body is not valid YAML",
        "the request body must be a YAML mapping",
    )
}

fn parse_object(patch: &[u8]) -> Result<Value, ApiError> {
    object(
        serde_json::from_slice(patch),
        "invalid patch body",
        "the patch must be a JSON object",
    )
}

/// A parsed body that must be an object, else a 400 saying which.
fn object<E: std::fmt::Display>(
    parsed: Result<Value, E>,
    invalid: &str,
    not_object: &str,
) -> Result<Value, ApiError> {
    let v = parsed.map_err(|e| ApiError::BadRequest(format!("{invalid}: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest(not_object.into()));
    }
    Ok(v)
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn strategic(target: &mut Value, patch: &Value, resource: &str, path: &str) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(t) = target.as_object_mut() else {
        return;
    };
    let mut orders: Vec<(String, &Vec<Value>)> = Vec::new();
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Some(order) = v.as_array() {
                orders.push((field.to_string(), order));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) =
                (t.get_mut(field).and_then(Value::as_array_mut), v.as_array())
            {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let cpath = child_path(path, k);
        if v.is_null() || v.get("$patch").and_then(Value::as_str) == Some("delete") {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(existing @ Value::Array(_)), Value::Array(items)) => {
                merge_list(existing, items, resource, &cpath);
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                strategic(existing, v, resource, &cpath);
            }
            _ => {
                let mut fresh = Value::Null;
                strip_directives(&mut fresh, v);
                t.insert(k.clone(), fresh);
            }
        }
    }
    if let Some(retain) = p.get("$retainKeys").and_then(Value::as_array) {
        t.retain(|k, _| retain.iter().any(|r| r.as_str() == Some(k)));
    }
    for (field, order) in orders {
        let cpath = child_path(path, &field);
        if let Some(Value::Array(list)) = t.get_mut(&field) {
            reorder(list, order, merge_key(resource, &cpath));
        }
    }
}

/// A patch value inserted whole must not carry `$patch` markers.
fn strip_directives(out: &mut Value, v: &Value) {
    *out = match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| {
                    let mut inner = Value::Null;
                    strip_directives(&mut inner, v);
                    (k.clone(), inner)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .map(|i| {
                    let mut inner = Value::Null;
                    strip_directives(&mut inner, i);
                    inner
                })
                .collect(),
        ),
        other => other.clone(),
    };
}

fn merge_list(existing: &mut Value, items: &[Value], resource: &str, path: &str) {
    let Value::Array(list) = existing else {
        return;
    };
    if let Some(key) = merge_key(resource, path) {
        if items
            .iter()
            .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
        {
            let mut fresh = Value::Null;
            strip_directives(&mut fresh, &Value::Array(items.to_vec()));
            *existing = fresh;
            return;
        }
        for item in items {
            let id = item.get(key);
            let pos = id.and_then(|id| list.iter().position(|e| e.get(key) == Some(id)));
            let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
            match (pos, delete) {
                (Some(i), true) => {
                    list.remove(i);
                }
                (None, true) => {}
                (Some(i), false) => strategic(&mut list[i], item, resource, path),
                (None, false) => {
                    let mut fresh = Value::Null;
                    strip_directives(&mut fresh, item);
                    list.push(fresh);
                }
            }
        }
    } else if is_merging_primitive_list(resource, path) {
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
    } else {
        let mut fresh = Value::Null;
        strip_directives(&mut fresh, &Value::Array(items.to_vec()));
        *existing = fresh;
    }
}

/// Apply `$setElementOrder`: listed items first in the given order, the rest
/// after, in their current order.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let ident = |v: &Value| -> Value {
        match key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut rest: Vec<Value> = std::mem::take(list);
    for o in order {
        let want = ident(o);
        if let Some(i) = rest.iter().position(|e| ident(e) == want) {
            list.push(rest.remove(i));
        }
    }
    list.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let pod = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]},
            {"name": "b", "image": "y"}]}});
        let patch = json!({"metadata": {"labels": {"a": null, "b": "2"}},
            "spec": {"containers": [{"name": "b", "image": "z"},
                                    {"name": "a", "env": [{"name": "F", "value": "2"}]}]}});
        let out = apply(
            "pods",
            &pod,
            patch.to_string().as_bytes(),
            PatchType::Strategic,
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(
            out["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(out["spec"]["containers"][1]["image"], "z");
    }

    #[test]
    fn strategic_directives() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "metadata": {"finalizers": ["x", "y"]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}],
            "$setElementOrder/containers": [{"name": "b"}]},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}});
        let out = apply(
            "pods",
            &pod,
            patch.to_string().as_bytes(),
            PatchType::Strategic,
        )
        .unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
        assert_eq!(out["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn merge_and_json_patch() {
        let obj = json!({"data": {"a": "1", "b": "2"}});
        let out = apply(
            "configmaps",
            &obj,
            br#"{"data":{"a":null,"c":"3"}}"#,
            PatchType::Merge,
        )
        .unwrap();
        assert_eq!(out["data"], json!({"b": "2", "c": "3"}));
        let out = apply(
            "configmaps",
            &obj,
            br#"[{"op":"replace","path":"/data/a","value":"9"}]"#,
            PatchType::Json,
        )
        .unwrap();
        assert_eq!(out["data"]["a"], "9");
        assert!(apply("configmaps", &obj, b"{not json", PatchType::Merge).is_err());
        let out = apply("configmaps", &obj, b"data:\n  c: '3'\n", PatchType::Apply).unwrap();
        assert_eq!(out["data"], json!({"a": "1", "b": "2", "c": "3"}));
        let bomb = b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        assert!(yaml_object(bomb).is_err());
        assert!(
            apply(
                "configmaps",
                &obj,
                br#"[{"op":"remove","path":"/nope"}]"#,
                PatchType::Json
            )
            .is_err()
        );
    }

    fn smp(resource: &str, obj: &Value, patch: Value) -> Value {
        apply(
            resource,
            obj,
            patch.to_string().as_bytes(),
            PatchType::Strategic,
        )
        .unwrap()
    }

    #[test]
    fn strategic_merges_container_lists_by_their_keys() {
        let pod = json!({"spec": {
            "containers": [{"name": "a",
                "ports": [{"containerPort": 80, "name": "http"}],
                "env": [{"name": "E", "value": "1"}],
                "volumeMounts": [{"mountPath": "/data", "name": "d"}]}],
            "volumes": [{"name": "d", "emptyDir": {}}],
            "imagePullSecrets": [{"name": "s1"}]}});
        let out = smp(
            "pods",
            &pod,
            json!({"spec": {
                "containers": [{"name": "a",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
                    "env": [{"name": "E", "value": "2"}],
                    "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}],
                "volumes": [{"name": "e", "emptyDir": {}}],
                "imagePullSecrets": [{"name": "s2"}]}}),
        );
        let c = &out["spec"]["containers"][0];
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}])
        );
        assert_eq!(c["env"], json!([{"name": "E", "value": "2"}]));
        assert_eq!(
            c["volumeMounts"],
            json!([{"mountPath": "/data", "name": "d", "readOnly": true}])
        );
        assert_eq!(out["spec"]["volumes"].as_array().unwrap().len(), 2);
        assert_eq!(
            out["spec"]["imagePullSecrets"],
            json!([{"name": "s1"}, {"name": "s2"}])
        );
    }

    #[test]
    fn strategic_replaces_lists_kube_declares_no_key_for() {
        let pod = json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}});
        let out = smp(
            "pods",
            &pod,
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
        );
        assert_eq!(
            out["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Exists"}])
        );
        let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
        let out = smp(
            "nodes",
            &node,
            json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(out["spec"]["taints"].as_array().unwrap().len(), 1);
        let sa = json!({"imagePullSecrets": [{"name": "a"}], "secrets": [{"name": "a"}]});
        let out = smp(
            "serviceaccounts",
            &sa,
            json!({"imagePullSecrets": [{"name": "b"}], "secrets": [{"name": "b"}]}),
        );
        assert_eq!(out["imagePullSecrets"], json!([{"name": "b"}]));
        assert_eq!(out["secrets"], json!([{"name": "a"}, {"name": "b"}]));
    }

    #[test]
    fn strategic_same_named_list_at_another_path_is_replaced() {
        // `containers` and `ports` in a custom place, not a PodSpec.
        let cm = json!({"spec": {"containers": [{"name": "a", "x": 1}],
            "ports": [{"containerPort": 80}]}});
        let out = smp(
            "configmaps",
            &cm,
            json!({"spec": {"containers": [{"name": "a", "y": 2}],
                "ports": [{"containerPort": 81}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "a", "y": 2}]));
        assert_eq!(out["spec"]["ports"], json!([{"containerPort": 81}]));
        // A Service's ports merge by `port`, not `containerPort`.
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "a"}]}});
        let out = smp(
            "services",
            &svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 81}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "a", "targetPort": 8080}, {"port": 81}])
        );
        // A deployment's containers merge inside the template only.
        let dep = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x"}]}}}});
        let out = smp(
            "deployments",
            &dep,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "b", "image": "y"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn merge_patch_is_rfc7386() {
        let obj = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        let out = apply(
            "configmaps",
            &obj,
            br#"{"a":{"b":null,"c":[3]},"d":{"e":1}}"#,
            PatchType::Merge,
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"c": [3]}, "d": {"e": 1}}));
    }
}

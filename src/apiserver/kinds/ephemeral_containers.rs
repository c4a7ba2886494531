//! `pods/{name}/ephemeralcontainers`, as kube-apiserver serves it: a GET
//! returns the pod, an update or patch changes nothing but
//! `spec.ephemeralContainers`, which may only grow (kube's
//! podEphemeralContainersStrategy and ValidatePodEphemeralContainersUpdate).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::apiserver::error::{ApiError, Cause};

pub const SUBRESOURCE: &str = "ephemeralcontainers";

/// Fields an ephemeral container may not set (kube's allow list, inverted).
const FORBIDDEN_FIELDS: &[&str] = &[
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resources",
    "resizePolicy",
    "restartPolicy",
];

const NOT_ALLOWED: &str = "Forbidden: cannot be set for an Ephemeral Container";

fn cause(reason: &'static str, field: String, message: String) -> Cause {
    Cause {
        reason,
        field,
        message,
    }
}

/// True for a value kube's Go zero-value check would call unset.
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => m.values().any(is_set),
        Value::Array(a) => !a.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// The stored pod with the new object's ephemeral containers, validated;
/// everything else the client sent is dropped, as kube does.
pub fn merge(old: &Value, new: &Value) -> Result<Value, ApiError> {
    let name = old["metadata"]["name"].as_str().unwrap_or("");
    if old["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return Err(ApiError::invalid(
            "Pod",
            "",
            name,
            vec![cause(
                "FieldValueForbidden",
                String::new(),
                "Forbidden: static pods do not support ephemeral containers".into(),
            )],
        ));
    }
    let mut out = old.clone();
    let list = new["spec"]["ephemeralContainers"].clone();
    match list {
        Value::Null => {
            if let Some(spec) = out["spec"].as_object_mut() {
                spec.remove("ephemeralContainers");
            }
        }
        list => out["spec"]["ephemeralContainers"] = list,
    }
    let causes = validate(old, &out);
    if !causes.is_empty() {
        return Err(ApiError::invalid("Pod", "", name, causes));
    }
    Ok(out)
}

fn items<'a>(pod: &'a Value, list: &str) -> &'a [Value] {
    pod["spec"][list]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// validateEphemeralContainers plus the update rules: existing ephemeral
/// containers are neither removed nor changed.
pub fn validate(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !new["spec"]["ephemeralContainers"].is_null()
        && !new["spec"]["ephemeralContainers"].is_array()
    {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.ephemeralContainers".into(),
            "Invalid value: must be a list".into(),
        ));
        return causes;
    }
    let mut names: HashSet<&str> = items(new, "containers")
        .iter()
        .chain(items(new, "initContainers"))
        .filter_map(|c| c["name"].as_str())
        .collect();
    let targets: HashSet<&str> = names.clone();
    for (i, c) in items(new, "ephemeralContainers").iter().enumerate() {
        let base = format!("spec.ephemeralContainers[{i}]");
        let name = c["name"].as_str().unwrap_or("");
        if name.is_empty() {
            causes.push(cause(
                "FieldValueRequired",
                format!("{base}.name"),
                "Required value".into(),
            ));
        } else if !crate::apiserver::resources::is_dns_label(name) {
            causes.push(cause(
                "FieldValueInvalid",
                format!("{base}.name"),
                format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
            ));
        } else if !names.insert(name) {
            causes.push(cause(
                "FieldValueDuplicate",
                format!("{base}.name"),
                format!("Duplicate value: \"{name}\""),
            ));
        }
        if c["image"].as_str().unwrap_or("").trim().is_empty() {
            causes.push(cause(
                "FieldValueRequired",
                format!("{base}.image"),
                "Required value".into(),
            ));
        }
        for f in FORBIDDEN_FIELDS {
            if c.get(*f).is_some_and(is_set) {
                causes.push(cause(
                    "FieldValueForbidden",
                    format!("{base}.{f}"),
                    NOT_ALLOWED.into(),
                ));
            }
        }
        for (j, m) in c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if m["subPath"].as_str().is_some_and(|s| !s.is_empty()) {
                causes.push(cause(
                    "FieldValueForbidden",
                    format!("{base}.volumeMounts[{j}].subPath"),
                    NOT_ALLOWED.into(),
                ));
            }
        }
        if let Some(target) = c["targetContainerName"].as_str()
            && !target.is_empty()
            && !targets.contains(target)
        {
            causes.push(cause(
                "FieldValueNotFound",
                format!("{base}.targetContainerName"),
                format!("Not found: \"{target}\""),
            ));
        }
    }
    let by_name: HashMap<&str, &Value> = items(new, "ephemeralContainers")
        .iter()
        .filter_map(|c| Some((c["name"].as_str()?, c)))
        .collect();
    for o in items(old, "ephemeralContainers") {
        let name = o["name"].as_str().unwrap_or("");
        match by_name.get(name) {
            None => causes.push(cause(
                "FieldValueForbidden",
                "spec.ephemeralContainers".into(),
                format!("Forbidden: existing ephemeral containers \"{name}\" may not be removed\n"),
            )),
            Some(n) if *n != o => causes.push(cause(
                "FieldValueForbidden",
                format!("spec.ephemeralContainers[{name}]"),
                format!("Forbidden: existing ephemeral containers \"{name}\" may not be changed\n"),
            )),
            Some(_) => {}
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ephemeral: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "app", "image": "busybox"}],
            "ephemeralContainers": ephemeral}})
    }

    fn messages(e: ApiError) -> String {
        match e {
            ApiError::Invalid { summary, .. } => summary,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn adds_an_ephemeral_container_and_nothing_else() {
        let old = pod(Value::Null);
        let mut new = pod(json!([{"name": "debugger", "image": "busybox",
            "targetContainerName": "app"}]));
        new["spec"]["containers"][0]["image"] = json!("other");
        new["metadata"]["labels"] = json!({"a": "b"});
        let out = merge(&old, &new).unwrap();
        assert_eq!(out["spec"]["containers"][0]["image"], "busybox");
        assert!(out["metadata"]["labels"].is_null());
        assert_eq!(out["spec"]["ephemeralContainers"][0]["name"], "debugger");
    }

    #[test]
    fn refuses_what_kube_refuses() {
        let old = pod(json!([{"name": "d1", "image": "busybox"}]));
        let new = pod(json!([{"name": "app", "image": "busybox",
            "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}},
            "readinessProbe": {"exec": {"command": ["true"]}}, "lifecycle": {"postStart": {}},
            "targetContainerName": "nope"}]));
        let m = messages(merge(&old, &new).unwrap_err());
        for want in [
            "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
            "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[0].resources: Forbidden: cannot be set for an Ephemeral Container",
            "spec.ephemeralContainers[0].readinessProbe: Forbidden",
            "spec.ephemeralContainers[0].targetContainerName: Not found: \"nope\"",
            "existing ephemeral containers \"d1\" may not be removed",
        ] {
            assert!(m.contains(want), "{want} not in {m}");
        }
        let changed = pod(json!([{"name": "d1", "image": "other"}]));
        let m = messages(merge(&old, &changed).unwrap_err());
        assert!(m.contains("existing ephemeral containers \"d1\" may not be changed"));
        // An empty resources block is no resources.
        let ok = pod(json!([{"name": "d1", "image": "busybox"},
            {"name": "d2", "image": "busybox", "resources": {}}]));
        assert!(merge(&old, &ok).is_ok());
        let dup = pod(json!([{"name": "d1", "image": "busybox"}, {"name": "d1", "image": "x"}]));
        assert!(merge(&old, &dup).is_err());
    }

    #[test]
    fn odd_bodies_are_refused_not_panics() {
        let old = pod(Value::Null);
        for bad in [json!("x"), json!([1, "a", null]), json!({"a": 1})] {
            let _ = merge(&old, &pod(bad));
        }
        assert!(merge(&old, &json!({})).is_ok());
    }
}

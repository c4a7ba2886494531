//! `pods/{name}/resize`, as kube-apiserver 1.33+ serves it: an update or
//! patch changes nothing but the resources and resizePolicy of the
//! containers (and sidecars), validated as kube's ValidatePodResize does.
//! The kubelet then applies it in place.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Map, Value};

use crate::apiserver::error::{ApiError, Cause};
use crate::k8s::qos;
use crate::k8s::quantity;

pub const SUBRESOURCE: &str = "resize";

fn cause(reason: &'static str, field: &str, message: String) -> Cause {
    Cause {
        reason,
        field: field.into(),
        message,
    }
}

fn refuse(name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("Pod", "", name, causes)
}

fn is_sidecar(c: &Value) -> bool {
    c["restartPolicy"].as_str() == Some("Always")
}

/// The stored pod with the new object's container resources and resize
/// policies (matched by name), validated; everything else is dropped.
pub fn merge(old: &Value, new: &Value) -> Result<Value, ApiError> {
    let name = old["metadata"]["name"].as_str().unwrap_or("");
    let forbidden = |message: &str| {
        refuse(
            name,
            vec![cause(
                "FieldValueForbidden",
                "",
                format!("Forbidden: {message}"),
            )],
        )
    };
    if old["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return Err(forbidden("static pods cannot be resized"));
    }
    if old["spec"]["os"]["name"].as_str() == Some("windows") {
        return Err(forbidden("windows pods cannot be resized"));
    }
    if old["spec"]["resources"].is_object() || new["spec"]["resources"].is_object() {
        return Err(forbidden("pods with pod-level resources cannot be resized"));
    }
    let mut out = old.clone();
    for list in ["containers", "initContainers"] {
        let Some(wanted) = new["spec"][list].as_array() else {
            continue;
        };
        let Some(have) = out["spec"][list].as_array_mut() else {
            continue;
        };
        for c in have.iter_mut() {
            if list == "initContainers" && !is_sidecar(c) {
                continue;
            }
            let Some(w) = wanted.iter().find(|w| w["name"] == c["name"]) else {
                continue;
            };
            for f in ["resources", "resizePolicy"] {
                match w.get(f) {
                    Some(v) if !v.is_null() => c[f] = v.clone(),
                    _ => {
                        if let Some(m) = c.as_object_mut() {
                            m.remove(f);
                        }
                    }
                }
            }
        }
    }
    let causes = validate(old, &out);
    if !causes.is_empty() {
        return Err(refuse(name, causes));
    }
    Ok(out)
}

fn list<'a>(c: &'a Value, which: &str) -> Option<&'a Map<String, Value>> {
    c["resources"][which].as_object()
}

fn q(v: &Value) -> Quantity {
    Quantity(
        v.as_str()
            .map(String::from)
            .unwrap_or_else(|| v.to_string()),
    )
}

/// The pod's QoS class computed from its spec, as the API would default it.
fn qos(pod: &Value) -> Option<&'static str> {
    let mut pod = pod.clone();
    if let Some(m) = pod.as_object_mut() {
        m.remove("status");
    }
    let typed: Pod = serde_json::from_value(pod).ok()?;
    Some(qos::qos_class(&typed).as_str())
}

/// ValidatePodResize over the merged pod.
pub fn validate(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let old_qos = old["status"]["qosClass"]
        .as_str()
        .or_else(|| qos(old))
        .unwrap_or("");
    if let Some(new_qos) = qos(new)
        && !old_qos.is_empty()
        && new_qos != old_qos
    {
        causes.push(cause(
            "FieldValueInvalid",
            "spec",
            format!(
                "Invalid value: \"{old_qos}\": Pod QOS Class may not change as a result of resizing"
            ),
        ));
    }
    let mut other_changed = false;
    for list_name in ["initContainers", "containers"] {
        let olds = old["spec"][list_name]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let news = new["spec"][list_name]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (i, (o, n)) in olds.iter().zip(news.iter()).enumerate() {
            if list_name == "initContainers" && !is_sidecar(o) {
                continue;
            }
            let base = format!("spec.{list_name}[{i}]");
            for which in ["requests", "limits"] {
                let (ol, nl) = (list(o, which), list(n, which));
                let removed = ol
                    .is_some_and(|ol| ol.keys().any(|k| !nl.is_some_and(|nl| nl.contains_key(k))));
                if removed {
                    causes.push(cause(
                        "FieldValueForbidden",
                        &format!("{base}.resources.{which}"),
                        format!("Forbidden: resource {which} cannot be removed"),
                    ));
                }
                let others = |l: Option<&Map<String, Value>>| -> Vec<(String, Value)> {
                    l.into_iter()
                        .flatten()
                        .filter(|(k, _)| *k != "cpu" && *k != "memory")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                };
                if others(ol) != others(nl) {
                    other_changed = true;
                }
            }
            for res in ["cpu", "memory"] {
                let (Some(r), Some(l)) = (
                    list(n, "requests").and_then(|m| m.get(res)),
                    list(n, "limits").and_then(|m| m.get(res)),
                ) else {
                    continue;
                };
                if quantity::cmp(&q(r), &q(l)) == std::cmp::Ordering::Greater {
                    let shown = r
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| r.to_string());
                    let limit = l
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| l.to_string());
                    causes.push(cause(
                        "FieldValueInvalid",
                        &format!("{base}.resources.requests"),
                        format!("Invalid value: \"{shown}\": must be less than or equal to {res} limit of {limit}"),
                    ));
                }
            }
            for (j, p) in n["resizePolicy"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let field = format!("{base}.resizePolicy[{j}]");
                let res = p["resourceName"].as_str().unwrap_or("");
                if !matches!(res, "cpu" | "memory") {
                    causes.push(cause(
                        "FieldValueNotSupported",
                        &format!("{field}.resourceName"),
                        format!(
                            "Unsupported value: \"{res}\": supported values: \"cpu\", \"memory\""
                        ),
                    ));
                }
                let policy = p["restartPolicy"].as_str().unwrap_or("");
                if !matches!(policy, "NotRequired" | "RestartContainer") {
                    causes.push(cause(
                        "FieldValueNotSupported",
                        &format!("{field}.restartPolicy"),
                        format!("Unsupported value: \"{policy}\": supported values: \"NotRequired\", \"RestartContainer\""),
                    ));
                }
            }
        }
    }
    if other_changed {
        causes.push(cause(
            "FieldValueForbidden",
            "spec",
            "Forbidden: only cpu and memory resources are mutable".into(),
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "app", "image": "busybox", "resources": resources}]},
            "status": {"qosClass": "Burstable"}})
    }

    fn summary(e: ApiError) -> String {
        match e {
            ApiError::Invalid { summary, .. } => summary,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn only_resources_change() {
        let old = pod(json!({"requests": {"memory": "32Mi"}, "limits": {"memory": "64Mi"}}));
        let mut new = pod(json!({"requests": {"memory": "32Mi"}, "limits": {"memory": "128Mi"}}));
        new["spec"]["containers"][0]["image"] = json!("other");
        new["metadata"]["labels"] = json!({"x": "y"});
        let out = merge(&old, &new).unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["memory"],
            "128Mi"
        );
        assert_eq!(out["spec"]["containers"][0]["image"], "busybox");
        assert!(out["metadata"]["labels"].is_null());
    }

    #[test]
    fn refuses_what_kube_refuses() {
        let old = pod(json!({"requests": {"cpu": "100m", "memory": "32Mi"},
            "limits": {"cpu": "1", "ephemeral-storage": "1Gi"}}));
        let new = pod(json!({"requests": {"cpu": "2"},
            "limits": {"cpu": "1", "ephemeral-storage": "2Gi"}}));
        let m = summary(merge(&old, &new).unwrap_err());
        for want in [
            "spec.containers[0].resources.requests: Forbidden: resource requests cannot be removed",
            "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec: Forbidden: only cpu and memory resources are mutable",
        ] {
            assert!(m.contains(want), "{want} not in {m}");
        }
        // Burstable to Guaranteed.
        let old = pod(json!({"requests": {"cpu": "1", "memory": "64Mi"},
            "limits": {"cpu": "2", "memory": "64Mi"}}));
        let new = pod(json!({"requests": {"cpu": "1", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "64Mi"}}));
        let m = summary(merge(&old, &new).unwrap_err());
        assert!(
            m.contains("Pod QOS Class may not change as a result of resizing"),
            "{m}"
        );
        let mut bad = pod(json!({"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}));
        bad["spec"]["containers"][0]["resizePolicy"] =
            json!([{"resourceName": "cpu", "restartPolicy": "Sometimes"}]);
        let m = summary(merge(&old, &bad).unwrap_err());
        assert!(m.contains("Unsupported value: \"Sometimes\""), "{m}");
    }

    #[test]
    fn odd_bodies_never_panic() {
        let old = pod(json!({}));
        for new in [json!({}), json!({"spec": {"containers": "x"}}), json!(null)] {
            let _ = merge(&old, &new);
        }
    }
}

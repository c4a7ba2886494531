//! Everything about pods: defaults (restart and pull policies, QoS class),
//! validation, which spec fields an update may change, a node's right to
//! touch only its own pods, the grace period of a delete, and what a
//! binding sets.

use serde_json::{Value, json};

use crate::apiserver::context::Target;
use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::kinds::common::{cause, default, obj};
use crate::apiserver::meta::{meta_str, now_rfc3339};
use crate::apiserver::resources::is_dns_label;

/// A pod's defaults, as kube-apiserver applies them on create and update.
pub fn apply_defaults(pod: &mut Value) {
    let Some(spec) = obj(pod, "spec") else {
        return;
    };
    apply_spec_defaults(spec);
    // What kube's SetDefaults_Pod and the pod admission plugins add to a
    // pod (not to the pod templates of workloads).
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "priority", json!(0));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    default(spec, "serviceAccountName", json!("default"));
    let sa = spec
        .get("serviceAccountName")
        .cloned()
        .unwrap_or(Value::Null);
    default(spec, "serviceAccount", sa);
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                // Requests default to limits (kube's defaulting).
                let limits = c["resources"]["limits"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                if !limits.is_empty()
                    && let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut)
                {
                    let requests = resources.entry("requests").or_insert_with(|| json!({}));
                    if let Some(requests) = requests.as_object_mut() {
                        for (k, v) in limits {
                            requests.entry(k).or_insert(v);
                        }
                    }
                }
            }
        }
    }
    let qos = qos_class(&pod["spec"]);
    if let Some(status) = obj(pod, "status") {
        default(status, "phase", json!("Pending"));
        default(status, "qosClass", json!(qos));
    }
}

/// The defaults of a PodSpec wherever it stands (kube's SetDefaults_PodSpec
/// and SetDefaults_Container): a pod's spec and a workload's pod template.
pub fn apply_spec_defaults(spec: &mut serde_json::Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                default(c, "imagePullPolicy", json!(pull_policy(image)));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// kube's QoS class: Guaranteed when every container's cpu and memory
/// requests equal its limits, BestEffort when nothing asks for anything,
/// Burstable otherwise. (Quantities compare as written: `1` vs `1000m`
/// counts as different.)
fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for res in ["cpu", "memory"] {
                let request = &c["resources"]["requests"][res];
                let limit = &c["resources"]["limits"][res];
                any |= !request.is_null() || !limit.is_null();
                guaranteed &= !limit.is_null() && request == limit;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// `:latest` or no tag means Always, anything else IfNotPresent.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// A pod's own checks: containers, their names and images, restartPolicy.
pub fn validate(pod: &Value, causes: &mut Vec<Cause>) {
    validate_spec(&pod["spec"], "spec", causes);
}

/// A PodSpec's checks, its fields reported below `base` (`spec` of a pod,
/// `spec.template.spec` of a Deployment).
pub fn validate_spec(spec: &Value, base: &str, causes: &mut Vec<Cause>) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(Vec::is_empty) {
        causes.push(cause(
            "required",
            &format!("{base}.containers"),
            "Required value",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        let Some(items) = spec[list].as_array() else {
            continue;
        };
        for (i, c) in items.iter().enumerate() {
            let base = format!("{base}.{list}[{i}]");
            let name = c["name"].as_str().unwrap_or("");
            if name.is_empty() {
                causes.push(cause("required", &format!("{base}.name"), "Required value"));
            } else if !is_dns_label(name) {
                causes.push(cause(
                    "invalid",
                    &format!("{base}.name"),
                    format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
                ));
            } else if !seen.insert(name.to_string()) {
                causes.push(cause(
                    "duplicate",
                    &format!("{base}.name"),
                    format!("Duplicate value: \"{name}\""),
                ));
            }
            if c["image"].as_str().unwrap_or("").trim().is_empty() {
                causes.push(cause(
                    "required",
                    &format!("{base}.image"),
                    "Required value",
                ));
            }
            crate::apiserver::kinds::validation::container_ports(c, &base, causes);
        }
    }
    if let Some(policy) = spec["restartPolicy"].as_str()
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: format!("{base}.restartPolicy"),
            message: format!("Unsupported value: \"{policy}\": supported values: \"Always\", \"OnFailure\", \"Never\""),
        });
    }
}

/// Pod specs are immutable but for images, activeDeadlineSeconds,
/// tolerations (additions) and terminationGracePeriodSeconds.
pub fn check_spec_update(old: &Value, new: &Value) -> Result<(), ApiError> {
    let mask = |pod: &Value| {
        let mut spec = pod["spec"].clone();
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in items.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
        if let Some(m) = spec.as_object_mut() {
            for f in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                m.remove(f);
            }
        }
        spec
    };
    if mask(old) != mask(new) {
        return Err(ApiError::invalid(
            "Pod",
            "",
            meta_str(old, "name"),
            vec![Cause {
                reason: "FieldValueForbidden",
                field: "spec".into(),
                message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
            }],
        ));
    }
    Ok(())
}

/// A node may only touch pods bound to it.
pub fn check_node(ctx_node: &Option<String>, t: &Target, pod: &Value) -> Result<(), ApiError> {
    if let Some(node) = ctx_node
        && pod["spec"]["nodeName"].as_str() != Some(node.as_str())
    {
        return Err(ApiError::Forbidden(format!(
            "pods \"{}\" is forbidden: node \"{node}\" can only modify pods bound to it",
            t.name
        )));
    }
    Ok(())
}

/// A pod on a node gets its grace period (the kubelet finishes the delete);
/// an unbound or finished pod goes at once.
pub fn grace(pod: &Value, requested: Option<i64>) -> i64 {
    let unbound = pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
    let terminal = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if unbound || terminal {
        return 0;
    }
    let grace = requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0);
    // Like kube: an already-pending deletion only ever gets shorter.
    match pod["metadata"]["deletionGracePeriodSeconds"].as_i64() {
        Some(current) if current <= grace => current,
        _ => grace,
    }
}

/// PodScheduled=True, as kube-apiserver's binding sets it.
pub fn set_scheduled(pod: &mut Value) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let condition = json!({"type": "PodScheduled", "status": "True",
        "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    if let Some(conditions) = pod["status"]["conditions"].as_array_mut() {
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(condition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_marks_the_pod_scheduled() {
        let mut pod = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
        ]}});
        set_scheduled(&mut pod);
        let c = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0]["status"].as_str(), c[0].get("reason")),
            (Some("True"), None)
        );
        let mut bare = json!({});
        set_scheduled(&mut bare);
        assert_eq!(bare["status"]["conditions"][0]["type"], "PodScheduled");
    }
}

//! Everything kind-specific, one module per kind (or family of kinds):
//! defaults, validation and the rules kube-apiserver's strategies and
//! controllers apply (service IPs, pod spec immutability and grace,
//! namespace termination). The verbs call in here; nothing here knows of
//! the verbs. The kinds' table (schemas, scopes, field selectors) is
//! `resources`; their table columns are in `table`.

pub mod common;
pub mod cron;
pub mod ephemeral_containers;
pub mod label_selector;
pub mod namespace;
pub mod persistent_volumes;
pub mod pod;
pub mod pod_resize;
pub mod rbac;
pub mod service;
pub mod storage_node;
pub mod validation;
pub mod workload_validation;
pub mod workloads;

use serde_json::{Value, json};

use crate::apiserver::error::Cause;
use crate::apiserver::kinds::common::{cause, default, validate_data_size, validate_labels};
use crate::apiserver::resources::{Kind, is_dns_label, is_dns_subdomain};

/// Defaults kube-apiserver applies on create (and update) for built-in types.
pub fn apply_defaults(kind: &Kind, object: &mut Value) {
    match kind.resource {
        "pods" => pod::apply_defaults(object),
        "namespaces" => namespace::apply_defaults(object),
        "secrets" => {
            if let Some(m) = object.as_object_mut() {
                default(m, "type", json!("Opaque"));
            }
        }
        "services" => service::apply_defaults(object),
        "events" => validation::event_defaults(kind, object),
        r if persistent_volumes::is_pv_kind(r) => persistent_volumes::apply_defaults(kind, object),
        _ if workloads::is_workload(kind) => workloads::apply_defaults(kind, object),
        _ => storage_node::apply_defaults(kind, object),
    }
}

/// Validation after defaults; an empty result means valid.
pub fn validate(kind: &Kind, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    if name.is_empty() {
        causes.push(cause(
            "required",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else if kind.group == "rbac.authorization.k8s.io" {
        // RBAC names are path segments (`system:basic-user` is one).
        if name == "." || name == ".." || name.contains(['/', '%']) {
            causes.push(cause(
                "invalid",
                "metadata.name",
                format!("Invalid value: \"{name}\": may not contain '/' or '%' or be '.' or '..'"),
            ));
        }
    } else {
        let label_only = matches!(kind.resource, "namespaces" | "services");
        let ok = if label_only {
            is_dns_label(name)
        } else {
            is_dns_subdomain(name)
        };
        if !ok {
            causes.push(cause(
                "invalid",
                "metadata.name",
                if label_only {
                    format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
                } else {
                    format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
                },
            ));
        }
    }
    validate_labels(object, &mut causes);
    if matches!(kind.resource, "configmaps" | "secrets") {
        validate_data_size(kind, object, &mut causes);
    }
    if kind.resource == "pods" {
        pod::validate(object, &mut causes);
    }
    if kind.resource.ends_with("rolebindings") {
        rbac::validate(kind, object, &mut causes);
    }
    storage_node::validate(kind, object, &mut causes);
    persistent_volumes::validate(kind, object, &mut causes);
    validation::validate(kind, object, &mut causes);
    workload_validation::validate(kind, object, &mut causes);
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::by_name;

    #[test]
    fn pod_defaults_and_validation() {
        let kind = by_name("pods").unwrap();
        let mut pod = json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        apply_defaults(kind, &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert!(validate(kind, &pod).is_empty());
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        let mut pod = json!({"metadata": {"name": "g"}, "spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        apply_defaults(kind, &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "1"
        );
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
        let mut pod = json!({"metadata": {"name": "b"}, "spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "1"}}}]}});
        apply_defaults(kind, &mut pod);
        assert_eq!(pod["status"]["qosClass"], "Burstable");
        let bad =
            json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}});
        let fields: Vec<String> = validate(kind, &bad).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["metadata.name", "spec.containers[0].image"]);
    }
}

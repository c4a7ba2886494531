//! Which lists a strategic merge patch merges item by item, and by which
//! key: the `patchMergeKey` / `patchStrategy:"merge"` struct tags of the
//! Kubernetes Go types (k8s.io/api core/v1, apps/v1, batch/v1, policy/v1
//! and metav1.ObjectMeta), by the path where each type stands in a kind.
//!
//! A key applies only where kube's type declares it: `ports` merges by
//! `containerPort` in a pod's containers and by `port` in a Service's spec,
//! and a `containers` list anywhere else (a pod's `spec.template`, a custom
//! field) is replaced whole, as kube-apiserver does. Paths are the field
//! names from the object's root joined by dots, without list indices.

/// Where a kind keeps its PodSpec.
fn pod_spec_at(resource: &str) -> Option<&'static str> {
    Some(match resource {
        "pods" => "spec",
        "podtemplates" => "template.spec",
        "deployments"
        | "replicasets"
        | "statefulsets"
        | "daemonsets"
        | "jobs"
        | "replicationcontrollers" => "spec.template.spec",
        "cronjobs" => "spec.jobTemplate.spec.template.spec",
        _ => return None,
    })
}

/// Kinds whose `status.conditions` are merged by `type`.
const CONDITIONS_BY_TYPE: &[&str] = &[
    "pods",
    "nodes",
    "namespaces",
    "persistentvolumeclaims",
    "services",
    "replicationcontrollers",
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
    "poddisruptionbudgets",
];

/// Container-typed lists of a PodSpec (Container and EphemeralContainer
/// carry the same tags).
const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// ContainerStatus-typed lists of a PodStatus.
const CONTAINER_STATUS_LISTS: &[&str] = &[
    "containerStatuses",
    "initContainerStatuses",
    "ephemeralContainerStatuses",
];

/// The paths of a kind's ObjectMeta: its own and its templates'.
fn object_metas(resource: &str) -> impl Iterator<Item = String> {
    let template = pod_spec_at(resource)
        .filter(|p| *p != "spec")
        .map(|p| format!("{}metadata", p.trim_end_matches("spec")));
    let job_template = (resource == "cronjobs").then(|| "spec.jobTemplate.metadata".to_string());
    std::iter::once("metadata".to_string())
        .chain(template)
        .chain(job_template)
}

/// `path` below `prefix`, if it is.
fn below<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?.strip_prefix('.')
}

/// The field of an item of one of `lists`: `containers.ports` -> `ports`.
fn item_field<'a>(rest: &'a str, lists: &[&str]) -> Option<&'a str> {
    let (list, field) = rest.split_once('.')?;
    lists.contains(&list).then_some(field)
}

/// The merge key of a list field in `resource`, by its path of field names.
pub fn merge_key(resource: &str, path: &str) -> Option<&'static str> {
    if object_metas(resource).any(|m| below(path, &m) == Some("ownerReferences")) {
        return Some("uid");
    }
    if let Some(rest) = pod_spec_at(resource).and_then(|p| below(path, p)) {
        return pod_spec_key(rest);
    }
    if let Some(rest) = below(path, "status") {
        return status_key(resource, rest);
    }
    match (resource, path) {
        ("services", "spec.ports") => Some("port"),
        ("serviceaccounts", "secrets") => Some("name"),
        ("componentstatuses", "conditions") => Some("type"),
        _ => None,
    }
}

/// A list of a PodSpec, `rest` being its path below the PodSpec.
fn pod_spec_key(rest: &str) -> Option<&'static str> {
    match rest {
        "volumes"
        | "initContainers"
        | "containers"
        | "ephemeralContainers"
        | "imagePullSecrets"
        | "schedulingGates"
        | "resourceClaims" => return Some("name"),
        "hostAliases" => return Some("ip"),
        "topologySpreadConstraints" => return Some("topologyKey"),
        _ => {}
    }
    match item_field(rest, CONTAINER_LISTS)? {
        "ports" => Some("containerPort"),
        "env" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        _ => None,
    }
}

/// A list of a kind's status, `rest` being its path below `status`.
fn status_key(resource: &str, rest: &str) -> Option<&'static str> {
    if rest == "conditions" && CONDITIONS_BY_TYPE.contains(&resource) {
        return Some("type");
    }
    match (resource, rest) {
        ("pods", "podIPs" | "hostIPs") => Some("ip"),
        ("pods", "resourceClaimStatuses") => Some("name"),
        ("nodes", "addresses") => Some("type"),
        ("pods", _) => match item_field(rest, CONTAINER_STATUS_LISTS)? {
            "volumeMounts" => Some("mountPath"),
            "allocatedResourcesStatus" => Some("name"),
            _ => None,
        },
        _ => None,
    }
}

/// Lists of scalars that merge as sets rather than being replaced.
pub fn is_merging_primitive_list(resource: &str, path: &str) -> bool {
    object_metas(resource).any(|m| below(path, &m) == Some("finalizers"))
        || (resource == "nodes" && path == "spec.podCIDRs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_spec_lists_merge_by_their_declared_key() {
        for (path, key) in [
            ("spec.containers", "name"),
            ("spec.initContainers", "name"),
            ("spec.ephemeralContainers", "name"),
            ("spec.volumes", "name"),
            ("spec.imagePullSecrets", "name"),
            ("spec.schedulingGates", "name"),
            ("spec.resourceClaims", "name"),
            ("spec.hostAliases", "ip"),
            ("spec.topologySpreadConstraints", "topologyKey"),
            ("spec.containers.ports", "containerPort"),
            ("spec.initContainers.ports", "containerPort"),
            ("spec.containers.env", "name"),
            ("spec.ephemeralContainers.env", "name"),
            ("spec.containers.volumeMounts", "mountPath"),
            ("spec.containers.volumeDevices", "devicePath"),
            ("metadata.ownerReferences", "uid"),
            ("status.conditions", "type"),
            ("status.podIPs", "ip"),
            ("status.hostIPs", "ip"),
            ("status.containerStatuses.volumeMounts", "mountPath"),
        ] {
            assert_eq!(merge_key("pods", path), Some(key), "pods {path}");
        }
    }

    #[test]
    fn templates_carry_the_pod_spec_keys_at_their_own_path() {
        for (resource, path) in [
            ("deployments", "spec.template.spec.containers.ports"),
            ("statefulsets", "spec.template.spec.containers.ports"),
            ("jobs", "spec.template.spec.containers.ports"),
            ("podtemplates", "template.spec.containers.ports"),
            (
                "cronjobs",
                "spec.jobTemplate.spec.template.spec.containers.ports",
            ),
        ] {
            assert_eq!(
                merge_key(resource, path),
                Some("containerPort"),
                "{resource}"
            );
        }
        assert_eq!(
            merge_key("deployments", "spec.template.metadata.ownerReferences"),
            Some("uid")
        );
        assert!(is_merging_primitive_list(
            "cronjobs",
            "spec.jobTemplate.metadata.finalizers"
        ));
        assert_eq!(merge_key("deployments", "spec.containers"), None);
        assert_eq!(merge_key("pods", "spec.template.spec.containers"), None);
    }

    #[test]
    fn other_kinds_keys() {
        assert_eq!(merge_key("services", "spec.ports"), Some("port"));
        assert_eq!(merge_key("serviceaccounts", "secrets"), Some("name"));
        assert_eq!(merge_key("nodes", "status.addresses"), Some("type"));
        assert_eq!(merge_key("nodes", "status.conditions"), Some("type"));
        assert_eq!(merge_key("namespaces", "status.conditions"), Some("type"));
        assert!(is_merging_primitive_list("nodes", "spec.podCIDRs"));
        assert!(is_merging_primitive_list(
            "configmaps",
            "metadata.finalizers"
        ));
    }

    #[test]
    fn a_same_named_list_elsewhere_has_no_key() {
        for (resource, path) in [
            // kube declares no key for these: they are replaced whole.
            ("pods", "spec.tolerations"),
            ("pods", "spec.readinessGates"),
            ("nodes", "spec.taints"),
            ("serviceaccounts", "imagePullSecrets"),
            // A key of one type does not leak to another type's field.
            ("pods", "spec.ports"),
            ("services", "spec.template.spec.containers.ports"),
            ("pods", "spec.containers.env.valueFrom"),
            ("pods", "spec.containers.envFrom"),
            ("pods", "status.containerStatuses.env"),
            ("pods", "spec.volumes.projected.sources"),
            ("nodes", "status.podIPs"),
            ("configmaps", "spec.containers"),
            ("configmaps", "status.conditions"),
            ("endpoints", "subsets.ports"),
            ("endpoints", "subsets.addresses"),
            ("services", "status.loadBalancer.ingress.ports"),
        ] {
            assert_eq!(merge_key(resource, path), None, "{resource} {path}");
        }
        assert!(!is_merging_primitive_list("pods", "spec.finalizers"));
        assert!(!is_merging_primitive_list("pods", "spec.podCIDRs"));
    }
}

//! The kinds this server serves, as a table: the typed schema (k8s-openapi)
//! used to check and normalize bodies, scope, subresources and which field
//! selectors are allowed; and the name rules they share. Defaults,
//! validation and every other per-kind rule are in `kinds`; table columns
//! are in `table`.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// A typed round trip: decode into the k8s-openapi type and encode again.
/// Returns the normalized object, or a message with the JSON path at fault.
type Roundtrip = fn(Value) -> Result<Value, String>;

#[derive(Debug)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub kind: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Whether there is a `/status` subresource (and the main resource
    /// ignores status changes).
    pub status: bool,
    pub roundtrip: Roundtrip,
    /// Registers the kind's OpenAPI schema (and everything it references)
    /// with a generator; returns the schema's name (`io.k8s.api.core.v1.Pod`).
    pub schema: fn(&mut schemars::SchemaGenerator) -> String,
    /// Field selector keys besides metadata.name / metadata.namespace.
    pub field_labels: &'static [&'static str],
}

/// Every verb a stored resource serves (its discovery entry, and what the
/// bootstrap roles that manage it grant).
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        VERBS.to_vec()
    }
}

pub(crate) fn roundtrip<T: DeserializeOwned + Serialize>(value: Value) -> Result<Value, String> {
    let typed: T = serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        if path == "." || path.is_empty() {
            err.inner().to_string()
        } else {
            format!("{path}: {}", err.inner())
        }
    })?;
    serde_json::to_value(typed).map_err(|err| err.to_string())
}

pub(crate) fn schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

#[path = "resources_workloads.rs"]
mod workloads;
pub use workloads::has_scale;

use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::events::v1 as events;
use k8s_openapi::api::node::v1 as node;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::api::storage::v1 as storage;

// Their defaults and validation are in kinds::persistent_volumes.
pub const PERSISTENT_VOLUMES: Kind = Kind {
    group: "",
    version: "v1",
    resource: "persistentvolumes",
    kind: "PersistentVolume",
    singular: "persistentvolume",
    namespaced: false,
    short_names: &["pv"],
    status: true,
    roundtrip: roundtrip::<core::PersistentVolume>,
    schema: schema::<core::PersistentVolume>,
    field_labels: &[],
};

pub const PERSISTENT_VOLUME_CLAIMS: Kind = Kind {
    group: "",
    version: "v1",
    resource: "persistentvolumeclaims",
    kind: "PersistentVolumeClaim",
    singular: "persistentvolumeclaim",
    namespaced: true,
    short_names: &["pvc"],
    status: true,
    roundtrip: roundtrip::<core::PersistentVolumeClaim>,
    schema: schema::<core::PersistentVolumeClaim>,
    field_labels: &[],
};

pub static KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        resource: "namespaces",
        kind: "Namespace",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        status: true,
        roundtrip: roundtrip::<core::Namespace>,
        schema: schema::<core::Namespace>,
        field_labels: &["status.phase"],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "pods",
        kind: "Pod",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        status: true,
        roundtrip: roundtrip::<core::Pod>,
        schema: schema::<core::Pod>,
        field_labels: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "nodes",
        kind: "Node",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        status: true,
        roundtrip: roundtrip::<core::Node>,
        schema: schema::<core::Node>,
        field_labels: &["spec.unschedulable"],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "events",
        kind: "Event",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        status: false,
        roundtrip: roundtrip::<core::Event>,
        schema: schema::<core::Event>,
        field_labels: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "configmaps",
        kind: "ConfigMap",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        status: false,
        roundtrip: roundtrip::<core::ConfigMap>,
        schema: schema::<core::ConfigMap>,
        field_labels: &[],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "secrets",
        kind: "Secret",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<core::Secret>,
        schema: schema::<core::Secret>,
        field_labels: &["type"],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "serviceaccounts",
        kind: "ServiceAccount",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        status: false,
        roundtrip: roundtrip::<core::ServiceAccount>,
        schema: schema::<core::ServiceAccount>,
        field_labels: &[],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "services",
        kind: "Service",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        status: true,
        roundtrip: roundtrip::<core::Service>,
        schema: schema::<core::Service>,
        field_labels: &["spec.clusterIP", "spec.type"],
    },
    Kind {
        group: "",
        version: "v1",
        resource: "endpoints",
        kind: "Endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        status: false,
        roundtrip: roundtrip::<core::Endpoints>,
        schema: schema::<core::Endpoints>,
        field_labels: &[],
    },
    Kind {
        group: "events.k8s.io",
        version: "v1",
        resource: "events",
        kind: "Event",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        status: false,
        roundtrip: roundtrip::<events::Event>,
        schema: schema::<events::Event>,
        field_labels: &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ],
    },
    Kind {
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        kind: "Lease",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<coordination::Lease>,
        schema: schema::<coordination::Lease>,
        field_labels: &[],
    },
    Kind {
        group: "discovery.k8s.io",
        version: "v1",
        resource: "endpointslices",
        kind: "EndpointSlice",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<discovery::EndpointSlice>,
        schema: schema::<discovery::EndpointSlice>,
        field_labels: &["addressType"],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "roles",
        kind: "Role",
        singular: "role",
        namespaced: true,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<rbac::Role>,
        schema: schema::<rbac::Role>,
        field_labels: &[],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "rolebindings",
        kind: "RoleBinding",
        singular: "rolebinding",
        namespaced: true,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<rbac::RoleBinding>,
        schema: schema::<rbac::RoleBinding>,
        field_labels: &[],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "clusterroles",
        kind: "ClusterRole",
        singular: "clusterrole",
        namespaced: false,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<rbac::ClusterRole>,
        schema: schema::<rbac::ClusterRole>,
        field_labels: &[],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resource: "clusterrolebindings",
        kind: "ClusterRoleBinding",
        singular: "clusterrolebinding",
        namespaced: false,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<rbac::ClusterRoleBinding>,
        schema: schema::<rbac::ClusterRoleBinding>,
        field_labels: &[],
    },
    Kind {
        group: "storage.k8s.io",
        version: "v1",
        resource: "storageclasses",
        kind: "StorageClass",
        singular: "storageclass",
        namespaced: false,
        short_names: &["sc"],
        status: false,
        roundtrip: roundtrip::<storage::StorageClass>,
        schema: schema::<storage::StorageClass>,
        field_labels: &[],
    },
    Kind {
        group: "storage.k8s.io",
        version: "v1",
        resource: "csidrivers",
        kind: "CSIDriver",
        singular: "csidriver",
        namespaced: false,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<storage::CSIDriver>,
        schema: schema::<storage::CSIDriver>,
        field_labels: &[],
    },
    Kind {
        group: "storage.k8s.io",
        version: "v1",
        resource: "csinodes",
        kind: "CSINode",
        singular: "csinode",
        namespaced: false,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<storage::CSINode>,
        schema: schema::<storage::CSINode>,
        field_labels: &[],
    },
    Kind {
        group: "storage.k8s.io",
        version: "v1",
        resource: "volumeattachments",
        kind: "VolumeAttachment",
        singular: "volumeattachment",
        namespaced: false,
        short_names: &[],
        status: true,
        roundtrip: roundtrip::<storage::VolumeAttachment>,
        schema: schema::<storage::VolumeAttachment>,
        field_labels: &[],
    },
    Kind {
        group: "node.k8s.io",
        version: "v1",
        resource: "runtimeclasses",
        kind: "RuntimeClass",
        singular: "runtimeclass",
        namespaced: false,
        short_names: &[],
        status: false,
        roundtrip: roundtrip::<node::RuntimeClass>,
        schema: schema::<node::RuntimeClass>,
        field_labels: &[],
    },
    PERSISTENT_VOLUMES,
    PERSISTENT_VOLUME_CLAIMS,
    workloads::REPLICATION_CONTROLLERS,
    workloads::DEPLOYMENTS,
    workloads::REPLICA_SETS,
    workloads::DAEMON_SETS,
    workloads::STATEFUL_SETS,
    workloads::CONTROLLER_REVISIONS,
    workloads::JOBS,
    workloads::CRON_JOBS,
    workloads::POD_DISRUPTION_BUDGETS,
];

pub fn lookup(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.resource == resource)
}

/// The Namespace kind (first in `KINDS`).
pub fn namespaces() -> &'static Kind {
    &KINDS[0]
}

pub fn by_name(resource: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.resource == resource)
}

/// Group versions in discovery order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for k in KINDS {
        if !out.contains(&(k.group, k.version)) {
            out.push((k.group, k.version));
        }
    }
    out
}

/// Paths of fields present (non-null) in `input` that the typed round trip
/// dropped: the fields the schema does not know.
pub fn unknown_fields(input: &Value, output: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(input, output, String::new(), &mut out);
    out
}

fn walk_unknown(input: &Value, output: &Value, path: String, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match o.get(k) {
                    None => out.push(p),
                    Some(ov) => walk_unknown(v, ov, p, out),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o.iter()).enumerate() {
                walk_unknown(iv, ov, format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// A DNS-1123 subdomain: what most object names must be. As kube checks
/// it: 253 characters in all, with no limit on one label's length.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(|label| is_label_chars(label, 253))
}

/// A DNS-1123 label (namespaces, container names).
pub fn is_dns_label(s: &str) -> bool {
    is_label_chars(s, 63)
}

fn is_label_chars(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roundtrip_finds_unknown_fields() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "x", "bogus": 1}], "nope": true}});
        let out = (by_name("pods").unwrap().roundtrip)(pod.clone()).unwrap();
        let mut unknown = unknown_fields(&pod, &out);
        unknown.sort();
        assert_eq!(unknown, vec!["spec.containers[0].bogus", "spec.nope"]);
    }

    #[test]
    fn namespaces_is_first() {
        assert_eq!(namespaces().kind, "Namespace");
    }

    #[test]
    fn roundtrip_rejects_wrong_types() {
        let pod = json!({"metadata": {"name": "a"}, "spec": {"containers": "no"}});
        let err = (by_name("pods").unwrap().roundtrip)(pod).unwrap_err();
        assert!(err.contains("spec.containers"), "{err}");
    }
}

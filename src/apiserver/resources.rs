//! The kinds this server serves. Storage and handlers are generic over JSON;
//! everything kind-specific lives here as per-kind hooks: the typed schema
//! (k8s-openapi) used to check and normalize bodies, defaults, validation and
//! which field selectors are allowed. Table columns are in `table.rs`.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

use crate::apiserver::error::Cause;

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

fn roundtrip<T: DeserializeOwned + Serialize>(value: Value) -> Result<Value, String> {
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

fn schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::events::v1 as events;
use k8s_openapi::api::node::v1 as node;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::api::storage::v1 as storage;

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

fn obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    if !m.get(key).is_some_and(Value::is_object) {
        m.insert(key.into(), json!({}));
    }
    m.get_mut(key).and_then(Value::as_object_mut)
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// Defaults kube-apiserver applies on create (and update) for built-in types.
pub fn apply_defaults(kind: &Kind, object: &mut Value) {
    match kind.resource {
        "pods" => default_pod(object),
        "namespaces" => {
            let name = object["metadata"]["name"].clone();
            if let Some(labels) = obj(&mut object["metadata"], "labels") {
                labels.insert("kubernetes.io/metadata.name".into(), name);
            }
            if let Some(spec) = obj(object, "spec") {
                default(spec, "finalizers", json!(["kubernetes"]));
            }
            if let Some(status) = obj(object, "status") {
                default(status, "phase", json!("Active"));
            }
        }
        "secrets" => {
            if let Some(m) = object.as_object_mut() {
                default(m, "type", json!("Opaque"));
            }
        }
        "services" => default_service(object),
        _ => crate::apiserver::storage_node::apply_defaults(kind, object),
    }
}

fn default_pod(pod: &mut Value) {
    let Some(spec) = obj(pod, "spec") else {
        return;
    };
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
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
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
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
    let qos = qos_class(&pod["spec"]);
    if let Some(status) = obj(pod, "status") {
        default(status, "phase", json!("Pending"));
        default(status, "qosClass", json!(qos));
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

fn default_service(svc: &mut Value) {
    let Some(spec) = obj(svc, "spec") else {
        return;
    };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    default(spec, "internalTrafficPolicy", json!("Cluster"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            default(p, "targetPort", port);
        }
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

pub(crate) fn cause(reason: &'static str, field: &str, message: impl Into<String>) -> Cause {
    Cause {
        reason: match reason {
            "required" => "FieldValueRequired",
            "duplicate" => "FieldValueDuplicate",
            "toolong" => "FieldValueTooLong",
            _ => "FieldValueInvalid",
        },
        field: field.into(),
        message: message.into(),
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
                format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 {} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                    if label_only { "label" } else { "subdomain" }
                ),
            ));
        }
    }
    validate_labels(object, &mut causes);
    if matches!(kind.resource, "configmaps" | "secrets") {
        validate_data_size(kind, object, &mut causes);
    }
    if kind.resource == "pods" {
        validate_pod(object, &mut causes);
    }
    if kind.resource.ends_with("rolebindings") {
        validate_binding(kind, object, &mut causes);
    }
    crate::apiserver::storage_node::validate(kind, object, &mut causes);
    causes
}

/// kube's limit on a ConfigMap's or Secret's data (corev1.MaxSecretSize):
/// keys and values of `data` and `binaryData` count (for a Secret, `data`
/// as decoded bytes, `stringData` having been folded in already).
const MAX_DATA_SIZE: usize = 1024 * 1024;

fn validate_data_size(kind: &Kind, object: &Value, causes: &mut Vec<Cause>) {
    let size = |field: &str, base64_values: bool| -> usize {
        object[field].as_object().map_or(0, |m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v.as_str().unwrap_or("");
                    // Saturating: a short value ending in '=' ("a=") underflowed.
                    let decoded = (v.len() / 4 * 3)
                        .saturating_sub(v.bytes().rev().take_while(|&b| b == b'=').count());
                    k.len() + if base64_values { decoded } else { v.len() }
                })
                .sum()
        })
    };
    let (total, field) = if kind.resource == "secrets" {
        (size("data", true), "data")
    } else {
        // kube's field path for the whole object prints as "[]".
        (size("data", false) + size("binaryData", true), "[]")
    };
    if total > MAX_DATA_SIZE {
        causes.push(cause(
            "toolong",
            field,
            format!("Too long: may not be more than {MAX_DATA_SIZE} bytes"),
        ));
    }
}

/// A binding names a role and only subjects kube knows.
fn validate_binding(kind: &Kind, b: &Value, causes: &mut Vec<Cause>) {
    let role_kinds: &[&str] = if kind.namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let rk = b["roleRef"]["kind"].as_str().unwrap_or("");
    if !role_kinds.contains(&rk) {
        causes.push(cause(
            "unsupported",
            "roleRef.kind",
            format!(
                "Unsupported value: \"{rk}\": supported values: {}",
                role_kinds.join(", ")
            ),
        ));
    }
    if b["roleRef"]["apiGroup"] != "rbac.authorization.k8s.io" {
        causes.push(cause(
            "unsupported",
            "roleRef.apiGroup",
            "Unsupported value: supported values: \"rbac.authorization.k8s.io\"",
        ));
    }
    if b["roleRef"]["name"].as_str().unwrap_or("").is_empty() {
        causes.push(cause("required", "roleRef.name", "Required value"));
    }
    for (i, s) in b["subjects"].as_array().into_iter().flatten().enumerate() {
        let k = s["kind"].as_str().unwrap_or("");
        if !matches!(k, "User" | "Group" | "ServiceAccount") {
            causes.push(cause(
                "unsupported",
                &format!("subjects[{i}].kind"),
                format!("Unsupported value: \"{k}\": supported values: \"ServiceAccount\", \"User\", \"Group\""),
            ));
        }
        if s["name"].as_str().unwrap_or("").is_empty() {
            causes.push(cause(
                "required",
                &format!("subjects[{i}].name"),
                "Required value",
            ));
        }
        if k == "ServiceAccount"
            && s["namespace"].as_str().unwrap_or("").is_empty()
            && !kind.namespaced
        {
            causes.push(cause(
                "required",
                &format!("subjects[{i}].namespace"),
                "Required value",
            ));
        }
    }
}

fn validate_labels(object: &Value, causes: &mut Vec<Cause>) {
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            let value = v.as_str().unwrap_or("");
            if !crate::apiserver::selectors::valid_label_key(k) {
                causes.push(cause(
                    "invalid",
                    "metadata.labels",
                    format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                ));
            }
            if !crate::apiserver::selectors::valid_label_value(value) {
                causes.push(cause(
                    "invalid",
                    "metadata.labels",
                    format!("Invalid value: \"{value}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                ));
            }
        }
    }
}

fn validate_pod(pod: &Value, causes: &mut Vec<Cause>) {
    let containers = pod["spec"]["containers"].as_array();
    match containers {
        None => causes.push(cause("required", "spec.containers", "Required value")),
        Some(list) if list.is_empty() => {
            causes.push(cause("required", "spec.containers", "Required value"))
        }
        Some(_) => {}
    }
    let mut seen = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        let Some(items) = pod["spec"][list].as_array() else {
            continue;
        };
        for (i, c) in items.iter().enumerate() {
            let base = format!("spec.{list}[{i}]");
            let name = c["name"].as_str().unwrap_or("");
            if name.is_empty() {
                causes.push(cause("required", &format!("{base}.name"), "Required value"));
            } else if !is_dns_label(name) {
                causes.push(cause(
                    "invalid",
                    &format!("{base}.name"),
                    format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"),
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
        }
    }
    if let Some(policy) = pod["spec"]["restartPolicy"].as_str()
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        causes.push(cause(
            "invalid",
            "spec.restartPolicy",
            format!("Unsupported value: \"{policy}\": supported values: \"Always\", \"OnFailure\", \"Never\""),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

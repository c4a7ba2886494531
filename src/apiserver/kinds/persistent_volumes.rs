//! PersistentVolumes (cluster-scoped) and PersistentVolumeClaims
//! (namespaced), both with a status subresource: kube's defaults, its
//! basic validation and the table columns kubectl prints. Binding them is
//! the PV binder controller's work (src/controllers/pv_binder.rs).

use serde_json::{Map, Value, json};

use crate::apiserver::error::Cause;
pub use crate::apiserver::resources::{Kind, PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES};

pub fn is_pv_kind(resource: &str) -> bool {
    matches!(resource, "persistentvolumes" | "persistentvolumeclaims")
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// kube's defaults: Retain and Filesystem for a PV, Filesystem for a
/// claim, phase Pending for both.
pub fn apply_defaults(kind: &Kind, object: &mut Value) {
    if !object["spec"].is_object() {
        object["spec"] = json!({});
    }
    if let Some(spec) = object["spec"].as_object_mut() {
        if kind.resource == "persistentvolumes" {
            default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        }
        default(spec, "volumeMode", json!("Filesystem"));
    }
    if !object["status"].is_object() {
        object["status"] = json!({});
    }
    if let Some(status) = object["status"].as_object_mut() {
        default(status, "phase", json!("Pending"));
    }
}

fn cause(reason: &'static str, field: &str, message: impl Into<String>) -> Cause {
    Cause {
        reason,
        field: field.into(),
        message: message.into(),
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

/// The volume sources a PV may have; exactly one is set.
const PV_SOURCES: &[&str] = &[
    "hostPath",
    "local",
    "nfs",
    "csi",
    "iscsi",
    "fc",
    "rbd",
    "cephfs",
    "cinder",
    "glusterfs",
    "flexVolume",
    "azureFile",
    "azureDisk",
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "vsphereVolume",
    "quobyte",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "photonPersistentDisk",
    "flocker",
];

fn access_modes(spec: &Value, causes: &mut Vec<Cause>) {
    let modes = spec["accessModes"].as_array().cloned().unwrap_or_default();
    if modes.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.accessModes",
            "Required value: at least 1 access mode is required",
        ));
    }
    for m in &modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            causes.push(cause(
                "FieldValueNotSupported",
                "spec.accessModes",
                format!("Unsupported value: \"{m}\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""),
            ));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        causes.push(cause(
            "FieldValueForbidden",
            "spec.accessModes",
            "Forbidden: may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn storage_quantity(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| crate::k8s::quantity::parse_units(s).is_some())
}

/// ValidatePersistentVolume / ValidatePersistentVolumeClaim, the basics.
pub fn validate(kind: &Kind, object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    match kind.resource {
        "persistentvolumes" => {
            access_modes(spec, causes);
            match spec["capacity"].get("storage") {
                None => causes.push(cause(
                    "FieldValueRequired",
                    "spec.capacity",
                    "Required value",
                )),
                Some(q) if !storage_quantity(q) => causes.push(cause(
                    "FieldValueInvalid",
                    "spec.capacity[storage]",
                    format!("Invalid value: {q}: must be a quantity"),
                )),
                Some(_) => {}
            }
            let sources = PV_SOURCES
                .iter()
                .filter(|s| spec.get(**s).is_some_and(|v| !v.is_null()))
                .count();
            if sources == 0 {
                causes.push(cause(
                    "FieldValueRequired",
                    "spec",
                    "Required value: must specify a volume type",
                ));
            } else if sources > 1 {
                causes.push(cause(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: may not specify more than 1 volume type",
                ));
            }
            if spec["hostPath"].is_object()
                && spec["hostPath"]["path"].as_str().is_none_or(str::is_empty)
            {
                causes.push(cause(
                    "FieldValueRequired",
                    "spec.hostPath.path",
                    "Required value",
                ));
            }
            if let Some(p) = spec["persistentVolumeReclaimPolicy"].as_str()
                && !matches!(p, "Retain" | "Delete" | "Recycle")
            {
                causes.push(cause(
                    "FieldValueNotSupported",
                    "spec.persistentVolumeReclaimPolicy",
                    format!("Unsupported value: \"{p}\": supported values: \"Delete\", \"Recycle\", \"Retain\""),
                ));
            }
        }
        "persistentvolumeclaims" => {
            access_modes(spec, causes);
            match spec["resources"]["requests"].get("storage") {
                None => causes.push(cause(
                    "FieldValueRequired",
                    "spec.resources[storage]",
                    "Required value",
                )),
                Some(q) if !storage_quantity(q) => causes.push(cause(
                    "FieldValueInvalid",
                    "spec.resources[storage]",
                    format!("Invalid value: {q}: must be a quantity"),
                )),
                Some(_) => {}
            }
        }
        _ => {}
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// kubectl's short access modes ("RWO,RWX").
pub fn short_modes(modes: &Value) -> String {
    modes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match s(m) {
            "ReadWriteOnce" => Some("RWO"),
            "ReadOnlyMany" => Some("ROX"),
            "ReadWriteMany" => Some("RWX"),
            "ReadWriteOncePod" => Some("RWOP"),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn storage_class(o: &Value) -> String {
    let annotated = &o["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"];
    if s(annotated).is_empty() {
        s(&o["spec"]["storageClassName"]).to_string()
    } else {
        s(annotated).to_string()
    }
}

fn unset(v: &str) -> String {
    if v.is_empty() {
        "<unset>".into()
    } else {
        v.to_string()
    }
}

/// (name, type, priority) of the columns after Name, as kube's printers.
pub fn columns(resource: &str) -> Vec<(&'static str, &'static str, u8)> {
    match resource {
        "persistentvolumes" => vec![
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Reason", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        _ => vec![
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
    }
}

/// The row's cells after Name (`age` is the Age cell).
pub fn cells(resource: &str, o: &Value, age: String) -> Vec<Value> {
    let spec = &o["spec"];
    match resource {
        "persistentvolumes" => {
            let claim = match (
                s(&spec["claimRef"]["namespace"]),
                s(&spec["claimRef"]["name"]),
            ) {
                (_, "") => String::new(),
                (ns, name) => format!("{ns}/{name}"),
            };
            vec![
                json!(s(&spec["capacity"]["storage"])),
                json!(short_modes(&spec["accessModes"])),
                json!(s(&spec["persistentVolumeReclaimPolicy"])),
                json!(s(&o["status"]["phase"])),
                json!(claim),
                json!(storage_class(o)),
                json!(unset(s(&spec["volumeAttributesClassName"]))),
                json!(s(&o["status"]["reason"])),
                json!(age),
                json!(s(&spec["volumeMode"])),
            ]
        }
        _ => {
            let bound = s(&o["status"]["phase"]) == "Bound";
            let (capacity, modes) = if bound {
                (
                    s(&o["status"]["capacity"]["storage"]).to_string(),
                    short_modes(&o["status"]["accessModes"]),
                )
            } else {
                (String::new(), String::new())
            };
            vec![
                json!(s(&o["status"]["phase"])),
                json!(s(&spec["volumeName"])),
                json!(capacity),
                json!(modes),
                json!(storage_class(o)),
                json!(unset(s(&spec["volumeAttributesClassName"]))),
                json!(age),
                json!(s(&spec["volumeMode"])),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(kind: &Kind, o: &Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate(kind, o, &mut causes);
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn validation_and_defaults() {
        let mut pv = json!({"metadata": {"name": "pv1"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/tmp/x"}}});
        apply_defaults(&PERSISTENT_VOLUMES, &mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["status"]["phase"], "Pending");
        assert!(messages(&PERSISTENT_VOLUMES, &pv).is_empty());
        let bad = json!({"spec": {"accessModes": ["Sometimes"]}});
        let m = messages(&PERSISTENT_VOLUMES, &bad).join("\n");
        assert!(m.contains("spec.capacity: Required value"), "{m}");
        assert!(
            m.contains("spec: Required value: must specify a volume type"),
            "{m}"
        );
        assert!(m.contains("Unsupported value: \"Sometimes\""), "{m}");
        let pvc = json!({"spec": {"accessModes": []}});
        let m = messages(&PERSISTENT_VOLUME_CLAIMS, &pvc).join("\n");
        assert!(m.contains("spec.accessModes: Required value"), "{m}");
        assert!(m.contains("spec.resources[storage]: Required value"), "{m}");
        for odd in [json!(null), json!("x"), json!({"spec": 3})] {
            let _ = messages(&PERSISTENT_VOLUMES, &odd);
            let _ = messages(&PERSISTENT_VOLUME_CLAIMS, &odd);
        }
    }

    #[test]
    fn rows_as_kubectl_prints_them() {
        let pv = json!({"spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual",
            "claimRef": {"namespace": "default", "name": "c"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        let row = cells("persistentvolumes", &pv, "5s".into());
        assert_eq!(row.len(), columns("persistentvolumes").len());
        assert_eq!(row[1], "RWO,ROX");
        assert_eq!(row[4], "default/c");
        assert_eq!(row[6], "<unset>");
        let pvc = json!({"spec": {"volumeName": "pv1"}, "status": {"phase": "Pending"}});
        let row = cells("persistentvolumeclaims", &pvc, "5s".into());
        assert_eq!(row.len(), columns("persistentvolumeclaims").len());
        assert_eq!(row[2], "");
    }
}

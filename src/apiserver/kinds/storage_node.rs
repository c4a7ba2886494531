//! The storage.k8s.io/v1 and node.k8s.io/v1 kinds (StorageClass,
//! CSIDriver, CSINode, VolumeAttachment, RuntimeClass): kube-apiserver's
//! defaults and the checks that keep what kubelets and CSI sidecars read
//! well-formed. A stock kubelet writes its node's CSINode at start and
//! watches CSIDrivers and RuntimeClasses; it does not become Ready without.

use serde_json::{Map, Value, json};

use crate::apiserver::error::Cause;
use crate::apiserver::kinds::common::cause;
use crate::apiserver::resources::{Kind, is_dns_label};

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// kube's defaults (pkg/apis/storage/v1/defaults.go).
pub fn apply_defaults(kind: &Kind, object: &mut Value) {
    match (kind.group, kind.resource) {
        ("storage.k8s.io", "storageclasses") => {
            if let Some(m) = object.as_object_mut() {
                default(m, "reclaimPolicy", json!("Delete"));
                default(m, "volumeBindingMode", json!("Immediate"));
            }
        }
        ("storage.k8s.io", "csidrivers") => {
            if !object["spec"].is_object() {
                object["spec"] = json!({});
            }
            if let Some(spec) = object["spec"].as_object_mut() {
                default(spec, "attachRequired", json!(true));
                default(spec, "podInfoOnMount", json!(false));
                default(spec, "storageCapacity", json!(false));
                default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
                default(spec, "requiresRepublish", json!(false));
                default(spec, "seLinuxMount", json!(false));
                if spec
                    .get("volumeLifecycleModes")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    spec.insert("volumeLifecycleModes".into(), json!(["Persistent"]));
                }
            }
        }
        _ => {}
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn one_of(causes: &mut Vec<Cause>, field: &str, value: &Value, allowed: &[&str]) {
    let v = s(value);
    if !value.is_null() && !allowed.contains(&v) {
        let quoted: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: \"{v}\": supported values: {}",
                quoted.join(", ")
            ),
        });
    }
}

fn required(causes: &mut Vec<Cause>, field: &str, value: &Value) {
    if s(value).is_empty() {
        causes.push(cause("required", field, "Required value"));
    }
}

/// kube's validation of these kinds, in the parts clients rely on.
pub fn validate(kind: &Kind, o: &Value, causes: &mut Vec<Cause>) {
    match (kind.group, kind.resource) {
        ("storage.k8s.io", "storageclasses") => {
            required(causes, "provisioner", &o["provisioner"]);
            one_of(
                causes,
                "reclaimPolicy",
                &o["reclaimPolicy"],
                &["Delete", "Retain"],
            );
            one_of(
                causes,
                "volumeBindingMode",
                &o["volumeBindingMode"],
                &["Immediate", "WaitForFirstConsumer"],
            );
        }
        ("storage.k8s.io", "csinodes") => {
            let drivers = o["spec"]["drivers"].as_array().cloned().unwrap_or_default();
            let mut seen = Vec::new();
            for (i, d) in drivers.iter().enumerate() {
                let field = format!("spec.drivers[{i}]");
                required(causes, &format!("{field}.name"), &d["name"]);
                required(causes, &format!("{field}.nodeID"), &d["nodeID"]);
                let name = s(&d["name"]).to_string();
                if !name.is_empty() && seen.contains(&name) {
                    causes.push(cause(
                        "duplicate",
                        &format!("{field}.name"),
                        format!("Duplicate value: \"{name}\""),
                    ));
                }
                seen.push(name);
            }
        }
        ("storage.k8s.io", "volumeattachments") => {
            let spec = &o["spec"];
            required(causes, "spec.attacher", &spec["attacher"]);
            required(causes, "spec.nodeName", &spec["nodeName"]);
            let sources = ["persistentVolumeName", "inlineVolumeSpec"]
                .iter()
                .filter(|k| !spec["source"][**k].is_null())
                .count();
            if sources != 1 {
                causes.push(cause(
                    "required",
                    "spec.source",
                    "Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName",
                ));
            }
        }
        ("node.k8s.io", "runtimeclasses") => {
            let handler = s(&o["handler"]);
            if handler.is_empty() {
                causes.push(cause("required", "handler", "Required value"));
            } else if !is_dns_label(handler) {
                causes.push(cause(
                    "invalid",
                    "handler",
                    format!("Invalid value: \"{handler}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
                ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::{kinds, resources};

    fn kind(resource: &str) -> &'static Kind {
        resources::by_name(resource).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let mut sc = json!({"metadata": {"name": "fast"}, "provisioner": "x.csi"});
        kinds::apply_defaults(kind("storageclasses"), &mut sc);
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        assert!(kinds::validate(kind("storageclasses"), &sc).is_empty());
        sc["reclaimPolicy"] = json!("Keep");
        assert_eq!(
            kinds::validate(kind("storageclasses"), &sc)[0].field,
            "reclaimPolicy"
        );

        let mut d = json!({"metadata": {"name": "x.csi"}});
        kinds::apply_defaults(kind("csidrivers"), &mut d);
        assert_eq!(d["spec"]["attachRequired"], true);
        assert_eq!(d["spec"]["volumeLifecycleModes"], json!(["Persistent"]));

        let n = json!({"metadata": {"name": "n1"}, "spec": {"drivers": [
            {"name": "a", "nodeID": "n1"}, {"name": "a", "nodeID": "n1"}, {"name": "b"}]}});
        let fields: Vec<String> = kinds::validate(kind("csinodes"), &n)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["spec.drivers[1].name", "spec.drivers[2].nodeID"]);

        let rc = json!({"metadata": {"name": "gvisor"}, "handler": "runsc"});
        assert!(kinds::validate(kind("runtimeclasses"), &rc).is_empty());
        let rc = json!({"metadata": {"name": "bad"}, "handler": "Not_A_Label"});
        assert_eq!(
            kinds::validate(kind("runtimeclasses"), &rc)[0].field,
            "handler"
        );

        let va = json!({"metadata": {"name": "va"}, "spec": {"attacher": "x.csi",
            "nodeName": "n1", "source": {}}});
        assert_eq!(
            kinds::validate(kind("volumeattachments"), &va)[0].field,
            "spec.source"
        );
    }
}

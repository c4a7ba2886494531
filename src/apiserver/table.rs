//! Server-side printing: `meta.k8s.io/v1` Table responses with the columns
//! kube-apiserver's printers produce, so `kubectl get` looks the same here.
//! The pod, node and service cells and the shared formatting are in
//! `table_cells`.

use crate::apiserver::kinds::persistent_volumes as pv;
use crate::apiserver::table_workloads as workloads;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::apiserver::resources::Kind;
use crate::apiserver::table_cells::{
    age, count, list_more, node_cells, or_none, pod_cells, s, service_cells,
};

struct Col {
    name: &'static str,
    ty: &'static str,
    priority: u8,
}

const fn col(name: &'static str, ty: &'static str, priority: u8) -> Col {
    Col { name, ty, priority }
}

fn columns(resource: &str) -> Vec<Col> {
    let mut cols = vec![col("Name", "string", 0)];
    cols.extend(match resource {
        "pods" => vec![
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            col("Age", "string", 0),
            col("IP", "string", 1),
            col("Node", "string", 1),
            col("Nominated Node", "string", 1),
            col("Readiness Gates", "string", 1),
        ],
        "namespaces" => vec![col("Status", "string", 0), col("Age", "string", 0)],
        "nodes" => vec![
            col("Status", "string", 0),
            col("Roles", "string", 0),
            col("Age", "string", 0),
            col("Version", "string", 0),
            col("Internal-IP", "string", 1),
            col("External-IP", "string", 1),
            col("OS-Image", "string", 1),
            col("Kernel-Version", "string", 1),
            col("Container-Runtime", "string", 1),
        ],
        "configmaps" => vec![col("Data", "string", 0), col("Age", "string", 0)],
        "secrets" => vec![
            col("Type", "string", 0),
            col("Data", "integer", 0),
            col("Age", "string", 0),
        ],
        "serviceaccounts" => vec![col("Secrets", "integer", 0), col("Age", "string", 0)],
        "services" => vec![
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("External-IP", "string", 0),
            col("Port(s)", "string", 0),
            col("Age", "string", 0),
            col("Selector", "string", 1),
        ],
        "endpoints" => vec![col("Endpoints", "string", 0), col("Age", "string", 0)],
        "leases" => vec![col("Holder", "string", 0), col("Age", "string", 0)],
        "storageclasses" => vec![
            col("Provisioner", "string", 0),
            col("ReclaimPolicy", "string", 0),
            col("VolumeBindingMode", "string", 0),
            col("AllowVolumeExpansion", "string", 0),
            col("Age", "string", 0),
        ],
        "csidrivers" => vec![
            col("AttachRequired", "boolean", 0),
            col("PodInfoOnMount", "boolean", 0),
            col("StorageCapacity", "boolean", 0),
            col("TokenRequests", "string", 0),
            col("RequiresRepublish", "boolean", 0),
            col("Modes", "string", 0),
            col("Age", "string", 0),
        ],
        "csinodes" => vec![col("Drivers", "integer", 0), col("Age", "string", 0)],
        "volumeattachments" => vec![
            col("Attacher", "string", 0),
            col("PV", "string", 0),
            col("Node", "string", 0),
            col("Attached", "boolean", 0),
            col("Age", "string", 0),
        ],
        "runtimeclasses" => vec![col("Handler", "string", 0), col("Age", "string", 0)],
        "endpointslices" => vec![
            col("AddressType", "string", 0),
            col("Ports", "string", 0),
            col("Endpoints", "string", 0),
            col("Age", "string", 0),
        ],
        "roles" | "clusterroles" => vec![col("Created At", "date", 0)],
        "rolebindings" | "clusterrolebindings" => vec![
            col("Role", "string", 0),
            col("Age", "string", 0),
            col("Users", "string", 1),
            col("Groups", "string", 1),
            col("ServiceAccounts", "string", 1),
        ],
        "events" => {
            // kube's event printer has no Name column first.
            return vec![
                col("Last Seen", "string", 0),
                col("Type", "string", 0),
                col("Reason", "string", 0),
                col("Object", "string", 0),
                col("Subobject", "string", 1),
                col("Source", "string", 1),
                col("Message", "string", 0),
                col("First Seen", "string", 1),
                col("Count", "string", 1),
                col("Name", "string", 1),
            ];
        }
        r if pv::is_pv_kind(r) => pv::columns(r)
            .into_iter()
            .map(|(n, t, p)| col(n, t, p))
            .collect(),
        r if workloads::is_workload_table(r) => workloads::columns(r)
            .into_iter()
            .map(|(n, t, p)| col(n, t, p))
            .collect(),
        _ => vec![col("Age", "string", 0)],
    });
    cols
}

pub fn column_definitions(resource: &str) -> Value {
    Value::Array(
        columns(resource)
            .into_iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.ty,
                    "format": if c.name == "Name" { "name" } else { "" },
                    "description": "",
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// One row; `object` is the PartialObjectMetadata kubectl uses for
/// `--show-labels`, `-L` and the NAMESPACE column.
pub fn row(kind: &Kind, object: &Value, now: SystemTime) -> Value {
    json!({
        "cells": cells(kind.resource, object, now),
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object["metadata"],
        },
    })
}

pub fn table(kind: &Kind, objects: &[Value], list_meta: Value, with_columns: bool) -> Value {
    let now = SystemTime::now();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": objects.iter().map(|o| row(kind, o, now)).collect::<Vec<_>>(),
    });
    // kube sends column definitions once per watch, and always for lists.
    t["columnDefinitions"] = if with_columns {
        column_definitions(kind.resource)
    } else {
        Value::Null
    };
    t
}

fn cells(resource: &str, o: &Value, now: SystemTime) -> Vec<Value> {
    let name = json!(s(&o["metadata"]["name"]));
    let created = age(&o["metadata"]["creationTimestamp"], now);
    match resource {
        "pods" => pod_cells(o, name, created),
        "namespaces" => vec![name, json!(s(&o["status"]["phase"])), json!(created)],
        "nodes" => node_cells(o, name, created),
        "configmaps" => vec![
            name,
            json!(count(&o["data"]) + count(&o["binaryData"])),
            json!(created),
        ],
        "secrets" => vec![
            name,
            json!(s(&o["type"])),
            json!(count(&o["data"])),
            json!(created),
        ],
        "serviceaccounts" => vec![name, json!(count(&o["secrets"])), json!(created)],
        "services" => service_cells(o, name, created),
        "endpoints" => {
            let mut eps = Vec::new();
            for subset in o["subsets"].as_array().into_iter().flatten() {
                for a in subset["addresses"].as_array().into_iter().flatten() {
                    let ports = subset["ports"].as_array().cloned().unwrap_or_default();
                    if ports.is_empty() {
                        eps.push(s(&a["ip"]).to_string());
                    }
                    for p in ports {
                        eps.push(format!("{}:{}", s(&a["ip"]), p["port"]));
                    }
                }
            }
            vec![name, or_none(&list_more(&eps, 3)), json!(created)]
        }
        "leases" => vec![name, json!(s(&o["spec"]["holderIdentity"])), json!(created)],
        "storageclasses" => {
            let annotations = &o["metadata"]["annotations"];
            let default = [
                "storageclass.kubernetes.io/is-default-class",
                "storageclass.beta.kubernetes.io/is-default-class",
            ]
            .iter()
            .any(|a| s(&annotations[*a]) == "true");
            let name = if default {
                json!(format!("{} (default)", s(&o["metadata"]["name"])))
            } else {
                name
            };
            vec![
                name,
                json!(s(&o["provisioner"])),
                json!(s(&o["reclaimPolicy"])),
                json!(s(&o["volumeBindingMode"])),
                json!(
                    o["allowVolumeExpansion"]
                        .as_bool()
                        .unwrap_or(false)
                        .to_string()
                ),
                json!(created),
            ]
        }
        "csidrivers" => {
            let spec = &o["spec"];
            let audiences: Vec<&str> = spec["tokenRequests"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| s(&t["audience"]))
                .collect();
            let modes: Vec<&str> = spec["volumeLifecycleModes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            let flag = |k: &str| json!(spec[k].as_bool().unwrap_or(false));
            vec![
                name,
                flag("attachRequired"),
                flag("podInfoOnMount"),
                flag("storageCapacity"),
                if audiences.is_empty() {
                    json!("<unset>")
                } else {
                    json!(audiences.join(","))
                },
                flag("requiresRepublish"),
                or_none(&modes.join(",")),
                json!(created),
            ]
        }
        "csinodes" => vec![name, json!(count(&o["spec"]["drivers"])), json!(created)],
        "volumeattachments" => vec![
            name,
            json!(s(&o["spec"]["attacher"])),
            json!(s(&o["spec"]["source"]["persistentVolumeName"])),
            json!(s(&o["spec"]["nodeName"])),
            json!(o["status"]["attached"].as_bool().unwrap_or(false)),
            json!(created),
        ],
        "runtimeclasses" => vec![name, json!(s(&o["handler"])), json!(created)],
        "endpointslices" => {
            let ports: Vec<String> = o["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["port"].to_string())
                .collect();
            let addrs: Vec<String> = o["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .map(|a| s(&a).to_string())
                .collect();
            vec![
                name,
                json!(s(&o["addressType"])),
                or_none(&ports.join(",")),
                or_none(&list_more(&addrs, 3)),
                json!(created),
            ]
        }
        "events" => {
            // core/v1 and events.k8s.io/v1 name the same things differently.
            let first_string = |fields: &[&Value]| -> Value {
                fields
                    .iter()
                    .find(|v| v.is_string())
                    .map_or(Value::Null, |v| (*v).clone())
            };
            let last = first_string(&[
                &o["lastTimestamp"],
                &o["deprecatedLastTimestamp"],
                &o["series"]["lastObservedTime"],
                &o["eventTime"],
                &o["metadata"]["creationTimestamp"],
            ]);
            let first = first_string(&[
                &o["firstTimestamp"],
                &o["deprecatedFirstTimestamp"],
                &o["eventTime"],
                &last,
            ]);
            let inv = if o["involvedObject"].is_object() {
                &o["involvedObject"]
            } else {
                &o["regarding"]
            };
            let object = format!("{}/{}", s(&inv["kind"]).to_lowercase(), s(&inv["name"]));
            let source = match (s(&o["source"]["component"]), s(&o["source"]["host"])) {
                ("", _) if o["reportingController"].is_string() => {
                    s(&o["reportingController"]).to_string()
                }
                ("", _) => s(&o["reportingComponent"]).to_string(),
                (c, "") => c.to_string(),
                (c, h) => format!("{c}, {h}"),
            };
            let message = if o["message"].is_string() {
                s(&o["message"])
            } else {
                s(&o["note"])
            };
            let count = o["count"]
                .as_i64()
                .or(o["series"]["count"].as_i64())
                .or(o["deprecatedCount"].as_i64())
                .unwrap_or(1);
            vec![
                json!(age(&last, now)),
                json!(s(&o["type"])),
                json!(s(&o["reason"])),
                json!(object),
                json!(s(&inv["fieldPath"])),
                json!(source),
                json!(message.trim()),
                json!(age(&first, now)),
                json!(count.to_string()),
                name,
            ]
        }
        "roles" | "clusterroles" => vec![name, o["metadata"]["creationTimestamp"].clone()],
        "rolebindings" | "clusterrolebindings" => {
            let subjects = |kind: &str| -> String {
                o["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["kind"] == kind)
                    .map(|sub| match (kind, s(&sub["namespace"])) {
                        ("ServiceAccount", ns) => format!("{ns}/{}", s(&sub["name"])),
                        _ => s(&sub["name"]).to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(&o["roleRef"]["kind"]),
                    s(&o["roleRef"]["name"])
                )),
                json!(created),
                json!(subjects("User")),
                json!(subjects("Group")),
                json!(subjects("ServiceAccount")),
            ]
        }
        r if pv::is_pv_kind(r) => std::iter::once(name)
            .chain(pv::cells(r, o, created))
            .collect(),
        r if workloads::is_workload_table(r) => std::iter::once(name)
            .chain(workloads::cells(r, o, created, now))
            .collect(),
        _ => vec![name, json!(created)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_pod_row() {
        let pod = json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
        let c = cells("pods", &pod, SystemTime::now());
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "Pending");
        assert_eq!(c[3], "0");
        assert_eq!(c[6], "<none>");
        assert_eq!(c.len(), columns("pods").len());
    }
}

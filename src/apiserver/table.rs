//! Server-side printing: `meta.k8s.io/v1` Table responses with the columns
//! kube-apiserver's printers produce, so `kubectl get` looks the same here.

use crate::apiserver::persistent_volumes as pv;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::apiserver::resources::Kind;

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
        "configmaps" => vec![col("Data", "integer", 0), col("Age", "string", 0)],
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

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn or_none(v: &str) -> Value {
    if v.is_empty() {
        json!("<none>")
    } else {
        json!(v)
    }
}

fn age(ts: &Value, now: SystemTime) -> String {
    match humantime::parse_rfc3339_weak(s(ts)) {
        Ok(t) => match now.duration_since(t) {
            Ok(d) => human_duration(d.as_secs()),
            // Up to a second in the future counts as now (clock skew).
            Err(e) if e.duration().as_secs() <= 1 => "0s".into(),
            Err(_) => "<invalid>".into(),
        },
        Err(_) => "<unknown>".into(),
    }
}

/// apimachinery's `duration.HumanDuration`.
pub fn human_duration(secs: u64) -> String {
    let minutes = secs / 60;
    let hours = secs / 3600;
    if secs < 120 {
        format!("{secs}s")
    } else if minutes < 10 {
        match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

fn count(v: &Value) -> usize {
    v.as_object()
        .map(|m| m.len())
        .or(v.as_array().map(Vec::len))
        .unwrap_or(0)
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
        _ => vec![name, json!(created)],
    }
}

fn list_more(items: &[String], max: usize) -> String {
    if items.len() > max {
        format!("{} + {} more...", items[..max].join(","), items.len() - max)
    } else {
        items.join(",")
    }
}

/// kube's printPod: the STATUS shown is the most telling container reason.
fn pod_cells(o: &Value, name: Value, created: String) -> Vec<Value> {
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let mut ready = 0;
    let mut restarts = 0;
    let mut reason = s(&o["status"]["phase"]).to_string();
    if let Some(r) = o["status"]["reason"].as_str().filter(|r| !r.is_empty()) {
        reason = r.to_string();
    }
    let mut init_blocking = false;
    let init_total = o["spec"]["initContainers"].as_array().map_or(0, Vec::len);
    for (i, c) in o["status"]["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        restarts += c["restartCount"].as_i64().unwrap_or(0);
        let term = &c["state"]["terminated"];
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        }
        if c["state"]["running"].is_object() && c["ready"].as_bool() == Some(true) {
            continue;
        }
        init_blocking = true;
        reason = if term.is_object() {
            match term["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => format!("Init:ExitCode:{}", term["exitCode"]),
            }
        } else if let Some(r) = c["state"]["waiting"]["reason"]
            .as_str()
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{init_total}")
        };
        break;
    }
    if !init_blocking {
        let mut has_running = false;
        let statuses = o["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in statuses.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            let st = &c["state"];
            if let Some(r) = st["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if st["terminated"].is_object() {
                reason = match st["terminated"]["reason"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                {
                    Some(r) => r.to_string(),
                    None => match st["terminated"]["signal"].as_i64().filter(|s| *s != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!("ExitCode:{}", st["terminated"]["exitCode"]),
                    },
                };
            } else if st["running"].is_object() && c["ready"].as_bool() == Some(true) {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if o["metadata"]["deletionTimestamp"].is_string() {
        reason = if o["status"]["reason"] == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    let ip = o["status"]["podIPs"][0]["ip"]
        .as_str()
        .or(o["status"]["podIP"].as_str())
        .unwrap_or("");
    let gates = o["spec"]["readinessGates"].as_array().map_or(0, Vec::len);
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(created),
        or_none(ip),
        or_none(s(&o["spec"]["nodeName"])),
        or_none(s(&o["status"]["nominatedNodeName"])),
        if gates == 0 {
            json!("<none>")
        } else {
            json!(format!("0/{gates}"))
        },
    ]
}

fn node_cells(o: &Value, name: Value, created: String) -> Vec<Value> {
    let mut status = "Unknown".to_string();
    for c in o["status"]["conditions"].as_array().into_iter().flatten() {
        if c["type"] == "Ready" {
            status = if c["status"] == "True" {
                "Ready".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if o["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = o["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    let addr = |ty: &str| -> Value {
        or_none(
            o["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == ty)
                .map_or("", |a| s(&a["address"])),
        )
    };
    let info = &o["status"]["nodeInfo"];
    vec![
        name,
        json!(status),
        or_none(&roles.join(",")),
        json!(created),
        json!(s(&info["kubeletVersion"])),
        addr("InternalIP"),
        addr("ExternalIP"),
        or_none(s(&info["osImage"])),
        or_none(s(&info["kernelVersion"])),
        or_none(s(&info["containerRuntimeVersion"])),
    ]
}

fn service_cells(o: &Value, name: Value, created: String) -> Vec<Value> {
    let spec = &o["spec"];
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    let mut external: Vec<String> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| s(v).to_string())
        .collect();
    for ing in o["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
    {
        external.push(s(&ing["ip"]).to_string());
    }
    let ext = match (s(&spec["type"]), external.is_empty()) {
        ("LoadBalancer", true) => "<pending>".to_string(),
        ("ExternalName", _) => s(&spec["externalName"]).to_string(),
        _ => external.join(","),
    };
    let selector: Vec<String> = spec["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    vec![
        name,
        json!(s(&spec["type"])),
        or_none(s(&spec["clusterIP"])),
        or_none(&ext),
        or_none(&ports.join(",")),
        json!(created),
        or_none(&selector.join(",")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_apimachinery() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }

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

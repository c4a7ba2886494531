//! The cells of the kinds with the most involved rows (pods, nodes,
//! services) and the formatting every row shares (ages as apimachinery's
//! HumanDuration, `<none>`, counts).

use std::time::SystemTime;

use serde_json::{Value, json};

pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub fn or_none(v: &str) -> Value {
    if v.is_empty() {
        json!("<none>")
    } else {
        json!(v)
    }
}

pub fn age(ts: &Value, now: SystemTime) -> String {
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

pub fn count(v: &Value) -> usize {
    v.as_object()
        .map(|m| m.len())
        .or(v.as_array().map(Vec::len))
        .unwrap_or(0)
}

pub fn list_more(items: &[String], max: usize) -> String {
    if items.len() > max {
        format!("{} + {} more...", items[..max].join(","), items.len() - max)
    } else {
        items.join(",")
    }
}

/// kube's printPod: the STATUS shown is the most telling container reason.
pub fn pod_cells(o: &Value, name: Value, created: String) -> Vec<Value> {
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

pub fn node_cells(o: &Value, name: Value, created: String) -> Vec<Value> {
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

pub fn service_cells(o: &Value, name: Value, created: String) -> Vec<Value> {
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
}

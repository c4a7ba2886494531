//! kube-apiserver's field validation of the core kinds that had none
//! here (config keys, typed Secrets, Service ports, container ports,
//! Endpoints and EndpointSlice addresses, Lease durations, RBAC rules),
//! and the immutability rules checked on update (immutable ConfigMaps and
//! Secrets, a Service's clusterIPs). Every error of an object is reported
//! at once, with kube's field paths and messages.

use std::net::IpAddr;

use base64::Engine;
use serde_json::Value;

use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::kinds::common::cause;
use crate::apiserver::meta::meta_str;
use crate::apiserver::resources::Kind;

fn forbidden(field: &str, message: &str) -> Cause {
    Cause {
        reason: "FieldValueForbidden",
        field: field.into(),
        message: format!("Forbidden: {message}"),
    }
}

fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
    Cause {
        reason: "FieldValueNotSupported",
        field: field.into(),
        message: format!(
            "Unsupported value: \"{value}\": supported values: {}",
            list.join(", ")
        ),
    }
}

pub fn validate(kind: &Kind, object: &Value, causes: &mut Vec<Cause>) {
    match (kind.group, kind.resource) {
        ("", "configmaps") => {
            config_keys(object, "data", causes);
            config_keys(object, "binaryData", causes);
        }
        ("", "secrets") => secret(object, causes),
        ("", "services") => service(object, causes),
        ("", "endpoints") => endpoints(object, causes),
        ("discovery.k8s.io", "endpointslices") => {
            let t = object["addressType"].as_str().unwrap_or("");
            if !matches!(t, "IPv4" | "IPv6" | "FQDN") {
                causes.push(not_supported("addressType", t, &["FQDN", "IPv4", "IPv6"]));
            }
        }
        ("coordination.k8s.io", "leases") => {
            if let Some(d) = object["spec"]["leaseDurationSeconds"].as_i64()
                && d <= 0
            {
                causes.push(cause(
                    "invalid",
                    "spec.leaseDurationSeconds",
                    format!("Invalid value: {d}: must be greater than 0"),
                ));
            }
        }
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => rules(object, causes),
        _ => {}
    }
}

fn config_keys(object: &Value, field: &str, causes: &mut Vec<Cause>) {
    let Some(map) = object[field].as_object() else {
        return;
    };
    for key in map.keys() {
        let ok = !key.is_empty()
            && key.len() <= 253
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            causes.push(cause(
                "invalid",
                &format!("{field}[{key}]"),
                format!("Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
            ));
        } else if key == "." || key == ".." || key.starts_with("..") {
            causes.push(cause(
                "invalid",
                &format!("{field}[{key}]"),
                format!("Invalid value: \"{key}\": must not be '.' or '..' or start with '..'"),
            ));
        }
    }
}

fn secret(object: &Value, causes: &mut Vec<Cause>) {
    config_keys(object, "data", causes);
    let data = &object["data"];
    let required = |key: &str, causes: &mut Vec<Cause>| {
        if data.get(key).is_none() {
            causes.push(cause("required", &format!("data[{key}]"), "Required value"));
        }
    };
    match object["type"].as_str().unwrap_or("") {
        "kubernetes.io/tls" => {
            required("tls.crt", causes);
            required("tls.key", causes);
        }
        "kubernetes.io/dockerconfigjson" => {
            const KEY: &str = ".dockerconfigjson";
            required(KEY, causes);
            if let Some(v) = data[KEY].as_str() {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .unwrap_or_default();
                if let Err(e) = serde_json::from_slice::<Value>(&decoded) {
                    causes.push(cause(
                        "invalid",
                        &format!("data[{KEY}]"),
                        format!("Invalid value: \"<secret contents redacted>\": {e}"),
                    ));
                }
            }
        }
        "kubernetes.io/basic-auth" | "kubernetes.io/ssh-auth" | "kubernetes.io/dockercfg" => {}
        _ => {}
    }
}

fn service(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    let headless = spec["clusterIP"] == "None";
    let ports = spec["ports"].as_array().map_or(0, Vec::len);
    if ports == 0 && ty != "ExternalName" && !headless {
        causes.push(cause("required", "spec.ports", "Required value"));
    }
    // clusterIP and clusterIPs[0] must agree.
    if let (Some(ip), Some(first)) = (spec["clusterIP"].as_str(), spec["clusterIPs"][0].as_str())
        && !ip.is_empty()
        && ip != first
    {
        causes.push(cause(
            "invalid",
            "spec.clusterIPs",
            format!(
                "Invalid value: {}: must be dual-stack and contain the same values as spec.clusterIP",
                spec["clusterIPs"]
            ),
        ));
    }
}

/// A container's ports (`base` is its field path).
pub fn container_ports(c: &Value, base: &str, causes: &mut Vec<Cause>) {
    let Some(ports) = c["ports"].as_array() else {
        return;
    };
    for (j, p) in ports.iter().enumerate() {
        let path = format!("{base}.ports[{j}]");
        if let Some(n) = p["containerPort"].as_i64()
            && !(1..=65535).contains(&n)
        {
            causes.push(cause(
                "invalid",
                &format!("{path}.containerPort"),
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            ));
        }
        if let Some(n) = p["hostPort"].as_i64()
            && n != 0
            && !(1..=65535).contains(&n)
        {
            causes.push(cause(
                "invalid",
                &format!("{path}.hostPort"),
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            ));
        }
    }
}

fn endpoints(object: &Value, causes: &mut Vec<Cause>) {
    let Some(subsets) = object["subsets"].as_array() else {
        return;
    };
    for (i, subset) in subsets.iter().enumerate() {
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in subset[list].as_array().into_iter().flatten().enumerate() {
                let ip = a["ip"].as_str().unwrap_or("");
                if ip.parse::<IpAddr>().is_err() {
                    let field = format!("subsets[{i}].{list}[{j}].ip");
                    // kube checks the IP twice (syntax, then as an
                    // endpoint address) and reports both.
                    causes.push(cause("invalid", &field, format!("Invalid value: \"{ip}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")));
                    causes.push(cause(
                        "invalid",
                        &field,
                        format!("Invalid value: \"{ip}\": must be a valid IP address"),
                    ));
                }
            }
        }
    }
}

fn rules(object: &Value, causes: &mut Vec<Cause>) {
    for (i, rule) in object["rules"].as_array().into_iter().flatten().enumerate() {
        let empty = |k: &str| rule[k].as_array().is_none_or(Vec::is_empty);
        if empty("verbs") {
            causes.push(cause(
                "required",
                &format!("rules[{i}].verbs"),
                "Required value: verbs must contain at least one value",
            ));
        }
        if !empty("nonResourceURLs") {
            let field = format!("rules[{i}].nonResourceURLs");
            if object["kind"] == "Role" {
                causes.push(cause(
                    "invalid",
                    &field,
                    format!(
                        "Invalid value: {}: namespaced rules cannot apply to non-resource URLs",
                        rule["nonResourceURLs"]
                    ),
                ));
            }
            if !empty("resources") || !empty("apiGroups") {
                causes.push(cause(
                    "invalid",
                    &field,
                    format!("Invalid value: {}: rules cannot apply to both regular resources and non-resource URLs", rule["nonResourceURLs"]),
                ));
            }
            continue;
        }
        if rule["apiGroups"].as_array().is_none_or(Vec::is_empty) {
            causes.push(cause(
                "required",
                &format!("rules[{i}].apiGroups"),
                "Required value: resource rules must supply at least one api group",
            ));
        }
        if empty("resources") {
            causes.push(cause(
                "required",
                &format!("rules[{i}].resources"),
                "Required value: resource rules must supply at least one resource",
            ));
        }
    }
}

/// The fields Go always writes for an Event of either API (its
/// non-pointer MicroTime and strings), so both read as kube's.
pub fn event_defaults(kind: &Kind, event: &mut Value) {
    use crate::apiserver::kinds::common::default;
    let Some(m) = event.as_object_mut() else {
        return;
    };
    if kind.group.is_empty() {
        default(m, "eventTime", Value::Null);
        default(m, "reportingComponent", Value::from(""));
        default(m, "reportingInstance", Value::from(""));
    } else {
        default(m, "deprecatedFirstTimestamp", Value::Null);
        default(m, "deprecatedLastTimestamp", Value::Null);
        default(m, "deprecatedSource", serde_json::json!({}));
    }
}

/// Checks of an update against the stored object.
pub fn check_update(kind: &Kind, old: &Value, new: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    if matches!(kind.resource, "configmaps" | "secrets")
        && kind.group.is_empty()
        && old["immutable"] == true
    {
        const WHY: &str = "field is immutable when `immutable` is set";
        if new["immutable"] != true {
            causes.push(forbidden("immutable", WHY));
        }
        let fields: &[&str] = if kind.resource == "secrets" {
            &["data"]
        } else {
            &["data", "binaryData"]
        };
        for f in fields {
            if old.get(*f) != new.get(*f) {
                causes.push(forbidden(f, WHY));
            }
        }
    }
    if kind.resource == "services" && kind.group.is_empty() {
        let (o, n) = (&old["spec"], &new["spec"]);
        let was = o["clusterIPs"].as_array().cloned().unwrap_or_default();
        let changed = match (o["clusterIP"].as_str(), n["clusterIP"].as_str()) {
            (Some(a), Some(b)) => {
                a != b && !a.is_empty() && a != "None" || a == "None" && b != "None"
            }
            _ => false,
        };
        let to_external = n["type"] == "ExternalName";
        if changed && !to_external && !was.is_empty() {
            let mut now = n["clusterIPs"].as_array().cloned().unwrap_or_default();
            if let Some(ip) = n["clusterIP"].as_str() {
                if now.is_empty() {
                    now.push(Value::from(ip));
                } else {
                    now[0] = Value::from(ip);
                }
            }
            causes.push(cause(
                "invalid",
                "spec.clusterIPs[0]",
                format!(
                    "Invalid value: {}: may not change once set",
                    Value::Array(now)
                ),
            ));
        }
    }
    crate::apiserver::kinds::workload_validation::check_update(kind, old, new, &mut causes);
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        kind.kind,
        kind.group,
        meta_str(new, "name"),
        causes,
    ))
}

//! Everything about services: defaults, and the allocation of cluster IPs
//! (10.96.0.0/16) and node ports (30000-32767) on create.

use serde_json::{Value, json};

use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::kinds::common::{default, obj};
use crate::apiserver::meta::meta_str;
use crate::apiserver::store::{Txn, collection_prefix};

pub fn apply_defaults(svc: &mut Value) {
    let Some(spec) = obj(svc, "spec") else {
        return;
    };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    default(spec, "internalTrafficPolicy", json!("Cluster"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            default(p, "targetPort", port);
        }
    }
    if let Some(status) = obj(svc, "status") {
        default(status, "loadBalancer", json!({}));
    } else if let Some(m) = svc.as_object_mut() {
        m.insert("status".into(), json!({"loadBalancer": {}}));
    }
}

/// An update that makes a Service NodePort or LoadBalancer (or replaces
/// such a Service's ports) gets node ports for the ports without one, as
/// kube allocates them; the Service's own ports are not counted as taken.
pub fn allocate_on_update(txn: &Txn<'_>, key: &str, svc: &mut Value) -> Result<(), ApiError> {
    if !matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    ) || svc["spec"]["allocateLoadBalancerNodePorts"] == false
    {
        return Ok(());
    }
    let others: Vec<(String, Value)> = txn
        .list(&collection_prefix("", "services"))?
        .into_iter()
        .filter(|(k, _)| k != key)
        .collect();
    allocate_node_ports(&others, svc)
}

/// Services get a cluster IP from 10.96.0.0/16 unless they are headless or
/// ask for a specific one (which must be free).
pub fn allocate_cluster_ip(txn: &Txn<'_>, svc: &mut Value) -> Result<(), ApiError> {
    if svc["spec"]["type"] == "ExternalName" {
        return Ok(());
    }
    let services = txn.list(&collection_prefix("", "services"))?;
    if matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    ) {
        allocate_node_ports(&services, svc)?;
    }
    let used: std::collections::HashSet<String> = services
        .into_iter()
        .filter_map(|(_, s)| s["spec"]["clusterIP"].as_str().map(String::from))
        .collect();
    let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
    let ip = if requested == "None" {
        requested
    } else if !requested.is_empty() {
        let ok = requested
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[0] == 10 && ip.octets()[1] == 96);
        if !ok || used.contains(&requested) {
            return Err(ApiError::invalid(
                "Service",
                "",
                meta_str(svc, "name"),
                vec![Cause {
                    reason: "FieldValueInvalid",
                    field: "spec.clusterIPs".into(),
                    message: format!(
                        "Invalid value: \"{requested}\": failed to allocate IP {requested}: provided IP is already allocated or not in the valid range 10.96.0.0/16"
                    ),
                }],
            ));
        }
        requested
    } else {
        (1u32..65534)
            .map(|n| std::net::Ipv4Addr::from(u32::from_be_bytes([10, 96, 0, 0]) + n).to_string())
            .find(|ip| !used.contains(ip))
            .ok_or_else(|| ApiError::Internal("no cluster IPs left".into()))?
    };
    svc["spec"]["clusterIP"] = json!(ip);
    svc["spec"]["clusterIPs"] = json!([ip]);
    if ip != "None" || svc["spec"]["ipFamilies"].is_null() {
        svc["spec"]["ipFamilies"] = json!(["IPv4"]);
        svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    }
    Ok(())
}

/// NodePort and LoadBalancer services get a node port per port, from
/// kube's default range 30000-32767, unless they name a free one.
fn allocate_node_ports(services: &[(String, Value)], svc: &mut Value) -> Result<(), ApiError> {
    const RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;
    let mut used: std::collections::HashSet<i64> = services
        .iter()
        .flat_map(|(_, s)| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["nodePort"].as_i64())
        .collect();
    let name = meta_str(svc, "name").to_string();
    let Some(ports) = svc["spec"]["ports"].as_array_mut() else {
        return Ok(());
    };
    for (i, port) in ports.iter_mut().enumerate() {
        match port["nodePort"].as_i64() {
            Some(n) if !RANGE.contains(&n) || !used.insert(n) => {
                return Err(ApiError::invalid(
                    "Service",
                    "",
                    &name,
                    vec![Cause {
                        reason: "FieldValueInvalid",
                        field: format!("spec.ports[{i}].nodePort"),
                        message: format!(
                            "Invalid value: {n}: provided port is already allocated or not in the valid range 30000-32767"
                        ),
                    }],
                ));
            }
            Some(_) => {}
            None => {
                let n = RANGE
                    .clone()
                    .find(|n| !used.contains(n))
                    .ok_or_else(|| ApiError::Internal("no node ports left".into()))?;
                used.insert(n);
                port["nodePort"] = json!(n);
            }
        }
    }
    Ok(())
}

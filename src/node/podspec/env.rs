//! A container's environment: kubelet_pods.go makeEnvironmentVariables
//! (envFrom, env with $(VAR) expansion, fieldRef, resourceFieldRef,
//! configMapKeyRef, secretKeyRef) and getServiceEnvVarMap + pkg/kubelet/envvars
//! (the service-link variables).
//!
//! Order: the kubelet builds the list from Go maps, so its order is random.
//! Here it is envFrom (each source's keys sorted), then env in declaration
//! order, then the service variables sorted, a variable appearing once, at
//! its first place, with its last value.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{ContainerContext, NodeContext, ObjectLookup, PodSpecError};
use crate::cri::v1;
use crate::k8s::quantity;

/// The environment being built: insertion order plus a name index.
#[derive(Default)]
struct Env {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl Env {
    fn set(&mut self, name: String, value: String) {
        if !self.values.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.values.insert(name, value);
    }
}

/// expansion.MappingFuncFor + Expand: `$(NAME)` is replaced from the
/// contexts in turn, left as is when unknown; `$$` is a literal `$`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        match chars.next() {
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = &after[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// getServiceEnvVarMap: default/kubernetes always, the pod's namespace's
/// services when enableServiceLinks; headless and IP-less ones skipped.
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_links: bool,
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let ip = svc
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && enable_links {
            chosen.insert(name, svc);
        }
    }
    let mut out = BTreeMap::new();
    for svc in chosen.values() {
        for (k, v) in from_service(svc) {
            out.insert(k, v);
        }
    }
    out
}

fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// envvars.FromServices for one service, with the Docker link variables.
fn from_service(svc: &Service) -> Vec<(String, String)> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
    let ports = spec.ports.as_deref().unwrap_or_default();
    let mut out = vec![(format!("{prefix}_SERVICE_HOST"), ip.clone())];
    let Some(first) = ports.first() else {
        return out;
    };
    let port_var = format!("{prefix}_SERVICE_PORT");
    out.push((port_var.clone(), first.port.to_string()));
    for sp in ports {
        if let Some(name) = sp.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((
                format!("{port_var}_{}", env_name(name)),
                sp.port.to_string(),
            ));
        }
    }
    let host_port = |port: i32| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    for (i, sp) in ports.iter().enumerate() {
        let protocol = sp
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{}", host_port(sp.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{}_{}", sp.port, protocol.to_uppercase());
        out.push((pp.clone(), url));
        out.push((format!("{pp}_PROTO"), lower));
        out.push((format!("{pp}_PORT"), sp.port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.clone()));
    }
    out
}

/// The config maps and secrets read so far (the kubelet's per-call caches).
struct Objects<'a> {
    namespace: &'a str,
    lookup: &'a dyn ObjectLookup,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Objects<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, PodSpecError> {
        if !self.config_maps.contains_key(name) {
            let got = self
                .lookup
                .config_map(self.namespace, name)
                .await
                .map_err(PodSpecError::config)?;
            self.config_maps.insert(name.to_string(), got);
        }
        Ok(self.config_maps[name].as_ref())
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, PodSpecError> {
        if !self.secrets.contains_key(name) {
            let got = self
                .lookup
                .secret(self.namespace, name)
                .await
                .map_err(PodSpecError::config)?;
            self.secrets.insert(name.to_string(), got);
        }
        Ok(self.secrets[name].as_ref())
    }
}

fn not_found(kind: &str, name: &str) -> PodSpecError {
    PodSpecError::config(format!("{kind} {name:?} not found"))
}

/// makeEnvironmentVariables
pub async fn container_env(
    pod: &Pod,
    container: &Container,
    ctx: &ContainerContext<'_>,
    node: &NodeContext,
    lookup: &dyn ObjectLookup,
) -> Result<Vec<v1::KeyValue>, PodSpecError> {
    let spec = pod.spec.as_ref();
    let Some(enable_links) = spec.and_then(|s| s.enable_service_links) else {
        return Err(PodSpecError::config(
            "nil pod.spec.enableServiceLinks encountered, cannot construct envvars",
        ));
    };
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let services = service_env(ctx.services, namespace, enable_links);
    let mut objects = Objects {
        namespace,
        lookup,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env = Env::default();

    // envFrom first, so that env overrides it.
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional == Some(true);
            match objects.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.set(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if optional => {}
                None => return Err(not_found("configmap", &r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            let optional = r.optional == Some(true);
            match objects.secret(&r.name).await? {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        env.set(
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if optional => {}
                None => return Err(not_found("secret", &r.name)),
            }
        }
    }

    for var in container.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or_default();
        let value = if !literal.is_empty() {
            let values = &env.values;
            expand(literal, &|name| {
                values.get(name).or_else(|| services.get(name)).cloned()
            })
        } else if let Some(from) = &var.value_from {
            if let Some(fr) = &from.field_ref {
                field_ref_value(fr, pod, ctx, node)?
            } else if let Some(rr) = &from.resource_field_ref {
                resource_field_value(rr, pod, container, node)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match objects.config_map(&r.name).await? {
                    None if optional => continue,
                    None => return Err(not_found("configmap", &r.name)),
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(PodSpecError::config(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match objects.secret(&r.name).await? {
                    None if optional => continue,
                    None => return Err(not_found("secret", &r.name)),
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(PodSpecError::config(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), value);
    }

    let mut out: Vec<v1::KeyValue> = env
        .order
        .iter()
        .map(|k| v1::KeyValue {
            key: k.clone(),
            value: env.values[k].clone().into_bytes(),
        })
        .collect();
    // The service variables the container did not set itself.
    for (k, v) in services {
        if !env.values.contains_key(&k) {
            out.push(v1::KeyValue {
                key: k,
                value: v.into_bytes(),
            });
        }
    }
    Ok(out)
}

/// fieldpath.SplitMaybeSubscriptedPath: `metadata.labels['key']`.
pub(crate) fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (head, key) = inner.split_once("['")?;
    (!head.is_empty()).then_some((head, key))
}

/// Go's %q for the strings FormatMap writes.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// fieldpath.FormatMap: `k="v"` lines, keys sorted.
pub(crate) fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The pod IPs with the node's primary family first (sortPodIPs).
fn sorted_pod_ips(pod_ips: &[String], node: &NodeContext) -> Vec<String> {
    let v6_first = node.host_ips.first().is_some_and(|ip| ip.contains(':'));
    let mut ips = pod_ips.to_vec();
    ips.sort_by_key(|ip| ip.contains(':') != v6_first);
    ips
}

/// podFieldSelectorRuntimeValue (with ConvertDownwardAPIFieldLabel and
/// ExtractFieldPathAsString).
fn field_ref_value(
    fs: &ObjectFieldSelector,
    pod: &Pod,
    ctx: &ContainerContext<'_>,
    node: &NodeContext,
) -> Result<String, PodSpecError> {
    let version = fs.api_version.as_deref().unwrap_or("v1");
    if version != "v1" && !version.is_empty() {
        return Err(PodSpecError::config(format!(
            "unsupported pod version: {version}"
        )));
    }
    let path = fs.field_path.as_str();
    let meta = &pod.metadata;
    if let Some((head, key)) = split_subscript(path) {
        return match head {
            "metadata.annotations" => Ok(meta
                .annotations
                .as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default()),
            "metadata.labels" => Ok(meta
                .labels
                .as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default()),
            _ => Err(PodSpecError::config(format!(
                "field label does not support subscript: {path}"
            ))),
        };
    }
    let spec = pod.spec.as_ref();
    let pod_ips = sorted_pod_ips(ctx.pod_ips, node);
    let host_ips = || {
        if node.host_ips.is_empty() {
            Err(PodSpecError::config("host IP unknown; known addresses: []"))
        } else {
            Ok(&node.host_ips)
        }
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" | "spec.host" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => host_ips()?[0].clone(),
        "status.hostIPs" => host_ips()?.join(","),
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        "spec.restartPolicy" | "spec.schedulerName" | "status.phase" => {
            return Err(PodSpecError::config(format!(
                "unsupported fieldPath: {path}"
            )));
        }
        _ => {
            return Err(PodSpecError::config(format!(
                "field label not supported: {path}"
            )));
        }
    })
}

/// containerResourceRuntimeValue over the container's resources with its
/// unset cpu/memory/ephemeral-storage limits defaulted to the node's
/// allocatable (defaultPodLimitsForDownwardAPI).
pub(crate) fn resource_field_value(
    fs: &ResourceFieldSelector,
    pod: &Pod,
    container: &Container,
    node: &NodeContext,
) -> Result<String, PodSpecError> {
    let target = match fs.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => container,
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| PodSpecError::config(format!("container {name} not found")))?,
    };
    let res = target.resources.as_ref();
    let mut limits = res.and_then(|r| r.limits.clone()).unwrap_or_default();
    for name in ["cpu", "memory", "ephemeral-storage"] {
        let unset = limits
            .get(name)
            .is_none_or(|q| quantity::cmp(q, &Quantity("0".into())).is_eq());
        if unset && let Some(cap) = node.allocatable.get(name) {
            limits.insert(name.to_string(), cap.clone());
        }
    }
    let requests = res.and_then(|r| r.requests.clone()).unwrap_or_default();
    let divisor = fs
        .divisor
        .clone()
        .filter(|d| !quantity::cmp(d, &Quantity("0".into())).is_eq())
        .unwrap_or_else(|| Quantity("1".into()));
    let (list, name) = match fs.resource.split_once('.') {
        Some(("limits", name)) => (&limits, name),
        Some(("requests", name)) => (&requests, name),
        _ => {
            return Err(PodSpecError::config(format!(
                "unsupported container resource : {}",
                fs.resource
            )));
        }
    };
    let zero = Quantity("0".into());
    let amount = list.get(name).unwrap_or(&zero);
    let ceil_div = |a: i64, b: i64| -> String {
        if b == 0 {
            return "0".into();
        }
        ((a as f64) / (b as f64)).ceil().to_string()
    };
    match name {
        "cpu" => Ok(ceil_div(
            quantity::milli_value(amount),
            quantity::milli_value(&divisor),
        )),
        "memory" | "ephemeral-storage" => {
            Ok(ceil_div(quantity::value(amount), quantity::value(&divisor)))
        }
        n if n.starts_with("hugepages-") => {
            Ok(ceil_div(quantity::value(amount), quantity::value(&divisor)))
        }
        _ => Err(PodSpecError::config(format!(
            "unsupported container resource : {}",
            fs.resource
        ))),
    }
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;

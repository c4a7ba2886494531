//! What the Endpoints and EndpointSlice controllers share about a service's
//! pods: which pods a service selects, which of them belong in its
//! endpoints at all, the port a service port resolves to on a pod, the
//! hostname an address carries, and kube's last-change trigger time.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

/// The label kube puts on the Endpoints and EndpointSlices of a service
/// without a cluster IP.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The annotation of the time of the change that led to these endpoints.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The service's selector, when this controller manages its endpoints:
/// none for a service without a selector (its endpoints are written by
/// hand) or of type ExternalName.
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref()
}

/// The pod carries every label of `selector` (an empty one selects all,
/// as kube's labels.Set selector does).
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The service has a cluster IP (is not headless).
pub fn ip_set(svc: &Service) -> bool {
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    !matches!(ip, None | Some("") | Some("None"))
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

pub fn ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The pod belongs in endpoints: not finished, has an IP, and is not
/// terminating unless `include_terminating`.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let has_ip = status.is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// The pod's IPs (status.podIPs, else status.podIP), parsed.
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status
        .pod_ip
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect()
}

/// The hostname an address of `pod` carries for `svc`: spec.hostname when
/// the pod's subdomain names the service (in its namespace).
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| host.to_string())
}

/// The port `port` resolves to on `pod`: a numeric targetPort as is
/// (the port itself when unset), a named one looked up among the pod's
/// container ports (and its restartable init containers') of the same
/// protocol; none when the pod has no such port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            // A numeric string is the apiserver's int form.
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// kube's TriggerTimeTracker: per service, the pods' Ready transition
/// times seen at the last sync; a sync reports the earliest of those that
/// changed since (or the service's creation time for a new service), the
/// time of the change these endpoints answer.
#[derive(Debug, Default)]
pub struct TriggerTimes {
    services: HashMap<String, TriggerState>,
}

/// What a sync saw: the service's creation time and its pods' Ready
/// transition times.
#[derive(Debug, Clone)]
pub struct TriggerState {
    created: Option<Timestamp>,
    pods: HashMap<String, Timestamp>,
}

impl TriggerTimes {
    /// The trigger time of a sync of `key` and the state to `record` once
    /// that sync is written (a failed write must not swallow the change).
    pub fn compute(
        &self,
        key: &str,
        svc: &Service,
        pods: &[&Pod],
    ) -> (Option<Timestamp>, TriggerState) {
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let known = self.services.get(key);
        let mut earliest: Option<Timestamp> = None;
        let mut times = HashMap::new();
        for pod in pods {
            let Some(t) = ready_condition(pod)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
            else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let before = known.and_then(|k| k.pods.get(&name).copied());
            if before.is_none_or(|b| t > b) {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
            times.insert(name, t);
        }
        let svc_before = known.and_then(|k| k.created);
        if let Some(c) = created
            && svc_before.is_none_or(|b| c > b)
        {
            earliest = Some(earliest.map_or(c, |e| e.min(c)));
        }
        let state = TriggerState {
            created,
            pods: times,
        };
        (if known.is_some() { earliest } else { created }, state)
    }

    pub fn record(&mut self, key: &str, state: TriggerState) {
        self.services.insert(key.to_string(), state);
    }

    pub fn forget(&mut self, key: &str) {
        self.services.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_ports_resolve_per_pod_and_protocol() {
        let p = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [
            {"name": "c", "ports": [{"name": "http", "containerPort": 8080},
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}}));
        let port = |v: serde_json::Value| serde_json::from_value::<ServicePort>(v).unwrap();
        assert_eq!(
            find_port(&p, &port(json!({"port": 80, "targetPort": "http"}))),
            Some(8080)
        );
        assert_eq!(
            find_port(&p, &port(json!({"port": 53, "targetPort": "dns"}))),
            None,
            "a TCP service port does not take a UDP container port"
        );
        assert_eq!(
            find_port(
                &p,
                &port(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}))
            ),
            Some(53)
        );
        assert_eq!(
            find_port(&p, &port(json!({"port": 80, "targetPort": 9000}))),
            Some(9000)
        );
        assert_eq!(
            find_port(&p, &port(json!({"port": 80, "targetPort": "metrics"}))),
            None
        );
    }

    #[test]
    fn terminal_ipless_and_terminating_pods_are_left_out() {
        let base =
            json!({"metadata": {"name": "a"}, "status": {"phase": "Running", "podIP": "10.0.0.1"}});
        assert!(should_be_in_endpoints(&pod(base.clone()), false));
        let mut done = base.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert!(!should_be_in_endpoints(&pod(done), true));
        let no_ip = json!({"metadata": {"name": "a"}, "status": {"phase": "Running"}});
        assert!(!should_be_in_endpoints(&pod(no_ip), true));
        let mut going = base;
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!should_be_in_endpoints(&pod(going.clone()), false));
        assert!(should_be_in_endpoints(&pod(going), true));
    }

    #[test]
    fn trigger_time_is_the_earliest_change_since_the_last_sync() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "s",
            "creationTimestamp": "2026-01-01T00:00:00Z"}}))
        .unwrap();
        let at = |name: &str, t: &str| {
            pod(
                json!({"metadata": {"name": name}, "status": {"conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": t}]}}),
            )
        };
        let mut tt = TriggerTimes::default();
        let (a, b) = (
            at("a", "2026-01-01T00:01:00Z"),
            at("b", "2026-01-01T00:02:00Z"),
        );
        let (first, state) = tt.compute("ns/s", &svc, &[&a, &b]);
        assert_eq!(
            first.unwrap().to_string(),
            "2026-01-01T00:00:00Z",
            "a new service"
        );
        tt.record("ns/s", state);
        let (again, state) = tt.compute("ns/s", &svc, &[&a, &b]);
        assert_eq!(again, None, "nothing changed");
        tt.record("ns/s", state);
        let b2 = at("b", "2026-01-01T00:05:00Z");
        let c = at("c", "2026-01-01T00:04:00Z");
        let (t, _unwritten) = tt.compute("ns/s", &svc, &[&a, &b2, &c]);
        assert_eq!(t.unwrap().to_string(), "2026-01-01T00:04:00Z");
        let (retried, _) = tt.compute("ns/s", &svc, &[&a, &b2, &c]);
        assert_eq!(retried, t, "a sync that was not written is seen again");
    }
}

//! NodePorts: a pod's hostPorts must be free on the node.

use k8s_openapi::api::core::v1::Pod;

use super::status::{Code, Status};

pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// (host IP, protocol, port) of each hostPort the pod asks for.
pub fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = &pod.spec else {
        return vec![];
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            Some((ip, proto, port))
        })
        .collect()
}

fn conflict(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.2 == b.2 && a.1 == b.1 && (a.0 == b.0 || a.0 == "0.0.0.0" || b.0 == "0.0.0.0")
}

pub fn filter(wanted: &[(String, String, i32)], pods_on_node: &[&Pod]) -> Option<Status> {
    if wanted.is_empty() {
        return None;
    }
    let taken = pods_on_node
        .iter()
        .flat_map(|p| host_ports(p))
        .any(|used| wanted.iter().any(|w| conflict(w, &used)));
    taken.then(|| Status::new(Code::Unschedulable, ERR_REASON))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    pub fn pod_with_port(ip: Option<&str>, proto: &str, port: i32) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        container_port: 80,
                        host_port: Some(port),
                        host_ip: ip.map(String::from),
                        protocol: Some(proto.into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn host_port_conflicts() {
        let existing = pod_with_port(None, "TCP", 8080);
        let on_node = [&existing];
        let want = |p: &Pod| host_ports(p);
        let s = filter(&want(&pod_with_port(None, "TCP", 8080)), &on_node).unwrap();
        assert_eq!(s.reasons[0], ERR_REASON);
        assert!(filter(&want(&pod_with_port(None, "UDP", 8080)), &on_node).is_none());
        assert!(filter(&want(&pod_with_port(None, "TCP", 8081)), &on_node).is_none());
        // A specific IP still clashes with a wildcard bind.
        assert!(
            filter(
                &want(&pod_with_port(Some("10.0.0.1"), "TCP", 8080)),
                &on_node
            )
            .is_some()
        );
        let specific = pod_with_port(Some("10.0.0.1"), "TCP", 9000);
        assert!(
            filter(
                &want(&pod_with_port(Some("10.0.0.2"), "TCP", 9000)),
                &[&specific]
            )
            .is_none()
        );
        assert!(filter(&[], &on_node).is_none());
    }
}

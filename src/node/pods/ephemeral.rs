//! Ephemeral containers (`kubectl debug`): started once in the running
//! pod's sandbox, never restarted, with the target container's PID
//! namespace when targetContainerName is set (kuberuntime's
//! EphemeralContainersToStart and its NamespaceMode TARGET).

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod};

use crate::cri::api::v1;
use crate::node::pods::actions::StartContainer;
use crate::node::pods::observe::{Observed, container_name};

/// The pod's ephemeral containers.
pub fn specs(pod: &Pod) -> &[EphemeralContainer] {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_deref())
        .unwrap_or(&[])
}

pub fn names(pod: &Pod) -> Vec<&str> {
    specs(pod).iter().map(|c| c.name.as_str()).collect()
}

/// An ephemeral container as the Container the rest of the node builds
/// from (the same fields, less targetContainerName).
pub fn as_container(c: &EphemeralContainer) -> Option<Container> {
    let mut v = serde_json::to_value(c).ok()?;
    if let Some(m) = v.as_object_mut() {
        m.remove("targetContainerName");
    }
    serde_json::from_value(v).ok()
}

/// Every ephemeral container as a Container, in spec order.
pub fn containers(pod: &Pod) -> Vec<Container> {
    specs(pod).iter().filter_map(as_container).collect()
}

pub fn find(pod: &Pod, name: &str) -> Option<Container> {
    specs(pod)
        .iter()
        .find(|c| c.name == name)
        .and_then(as_container)
}

/// The running container whose PID namespace `name` joins, if it targets one.
fn target_id(pod: &Pod, name: &str, observed: &Observed) -> Option<String> {
    let target = specs(pod)
        .iter()
        .find(|c| c.name == name)?
        .target_container_name
        .as_deref()
        .filter(|t| !t.is_empty())?;
    observed
        .running()
        .find(|c| container_name(c) == target)
        .map(|c| c.id.clone())
}

/// Ephemeral containers never started yet (one that ran, whatever became
/// of it, is not started again). A target that is not running yet holds
/// its debugger back until it is.
pub fn to_start(pod: &Pod, observed: &Observed) -> Vec<StartContainer> {
    specs(pod)
        .iter()
        .filter(|c| observed.latest(&c.name).is_none())
        .filter_map(|c| {
            let wants_target = c
                .target_container_name
                .as_deref()
                .is_some_and(|t| !t.is_empty());
            let target = target_id(pod, &c.name, observed);
            if wants_target && target.is_none() {
                return None;
            }
            Some(StartContainer {
                name: c.name.clone(),
                init: false,
                restart_count: 0,
                previous_finished_at: None,
                target_id: target,
            })
        })
        .collect()
}

/// Joins the target's PID namespace (NamespaceMode TARGET).
pub fn apply_target(config: &mut v1::ContainerConfig, target_id: &str) {
    let linux = config.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    let ns = sc.namespace_options.get_or_insert_with(Default::default);
    ns.pid = v1::NamespaceMode::Target as i32;
    ns.target_id = target_id.to_string();
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn running(name: &str) -> v1::ContainerStatus {
        v1::ContainerStatus {
            id: format!("id-{name}"),
            metadata: Some(v1::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            state: v1::ContainerState::ContainerRunning as i32,
            ..Default::default()
        }
    }

    fn pod(target: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    ..Default::default()
                }],
                ephemeral_containers: Some(vec![EphemeralContainer {
                    name: "debugger".into(),
                    image: Some("busybox".into()),
                    target_container_name: target.map(String::from),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn starts_once_in_the_targets_pid_namespace() {
        let p = pod(Some("app"));
        let none = Observed::default();
        assert!(to_start(&p, &none).is_empty(), "waits for its target");
        let mut o = Observed {
            containers: vec![running("app")],
            ..Default::default()
        };
        let s = to_start(&p, &o);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].target_id.as_deref(), Some("id-app"));
        let mut exited = running("debugger");
        exited.state = v1::ContainerState::ContainerExited as i32;
        o.containers.push(exited);
        assert!(to_start(&p, &o).is_empty(), "never restarted");
        assert_eq!(
            to_start(&pod(None), &Observed::default())[0].target_id,
            None
        );
        let mut config = v1::ContainerConfig::default();
        apply_target(&mut config, "id-app");
        let ns = config
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options;
        assert_eq!(ns.unwrap().pid, v1::NamespaceMode::Target as i32);
        assert_eq!(
            find(&p, "debugger").unwrap().image.as_deref(),
            Some("busybox")
        );
    }
}

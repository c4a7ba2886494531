//! The CRI labels and annotations the kubelet puts on sandboxes and
//! containers (kuberuntime/labels.go), so crictl and kubelet tooling see the
//! same, and the agent can re-adopt what it started.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Container;

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// What the kubelet reads back from a container's labels and annotations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerLabels {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub container_name: String,
    pub restart_count: u32,
    pub hash: Option<u64>,
}

/// The container's hash: when it changes the container is restarted.
pub fn container_hash(container: &Container) -> u64 {
    let _ = container;
    0
}

pub fn parse_container(
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> Option<ContainerLabels> {
    let _ = annotations;
    Some(ContainerLabels {
        pod_name: labels.get(POD_NAME)?.clone(),
        pod_namespace: labels.get(POD_NAMESPACE)?.clone(),
        pod_uid: labels.get(POD_UID)?.clone(),
        container_name: labels.get(CONTAINER_NAME)?.clone(),
        ..Default::default()
    })
}

/// (namespace, name, uid) of a sandbox the kubelet labelled.
pub fn parse_sandbox(labels: &HashMap<String, String>) -> Option<(String, String, String)> {
    Some((
        labels.get(POD_NAMESPACE)?.clone(),
        labels.get(POD_NAME)?.clone(),
        labels.get(POD_UID)?.clone(),
    ))
}

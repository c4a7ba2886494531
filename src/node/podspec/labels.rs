//! The CRI labels and annotations the kubelet puts on sandboxes and
//! containers (kuberuntime/labels.go, kubelet/types/labels.go), so crictl
//! and kubelet tooling see the same, and the agent can re-adopt what it
//! started from what the runtime reports.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// kubelet/types KubernetesContainerTypeLabel is not a label the kubelet
/// sets; the container type lives in this annotation.
pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";

pub const POD_DELETION_GRACE_PERIOD: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const CONTAINER_TERMINATION_MESSAGE_PATH: &str =
    "io.kubernetes.container.terminationMessagePath";
pub const CONTAINER_TERMINATION_MESSAGE_POLICY: &str =
    "io.kubernetes.container.terminationMessagePolicy";
pub const CONTAINER_PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";

/// Values of [`CONTAINER_TYPE`].
pub const TYPE_INIT: &str = "init";
pub const TYPE_CONTAINER: &str = "container";
pub const TYPE_EPHEMERAL: &str = "ephemeral";

/// What the kubelet reads back from a container's labels and annotations
/// (getContainerInfoFromLabels + getContainerInfoFromAnnotations).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerLabels {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub container_name: String,
    pub restart_count: u32,
    /// None when the annotation is absent or not hex
    pub hash: Option<u64>,
    pub pod_deletion_grace_period: Option<i64>,
    pub pod_termination_grace_period: Option<i64>,
    pub termination_message_path: String,
    pub termination_message_policy: String,
    /// "init", "container", "ephemeral" or ""
    pub container_type: String,
    /// the preStop handler as JSON (a LifecycleHandler), when there was one
    pub pre_stop_handler: Option<String>,
}

/// Go's encoding/json string escaping (HTML-safe), so the bytes hashed are
/// the kubelet's.
fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// kubecontainer.HashContainer: FNV-32a over DeepHashObject of the JSON of
/// {"image", "name"} (the only fields whose change restarts a container).
/// DeepHashObject prints with `%#v`, which spew hands to fmt, so the bytes
/// hashed are Go's `[]byte{0x7b, 0x22, ...}` rendering of that JSON.
pub fn container_hash(container: &Container) -> u64 {
    let mut json = String::from("{\"image\":");
    go_json_string(container.image.as_deref().unwrap_or_default(), &mut json);
    json.push_str(",\"name\":");
    go_json_string(&container.name, &mut json);
    json.push('}');
    let mut printed = String::from("[]byte{");
    for (i, b) in json.bytes().enumerate() {
        if i > 0 {
            printed.push_str(", ");
        }
        printed.push_str(&format!("{b:#x}"));
    }
    printed.push('}');
    let mut hash: u32 = 0x811c_9dc5;
    for b in printed.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    u64::from(hash)
}

/// newPodLabels: the pod's labels plus name, namespace and uid.
pub fn sandbox_labels(pod: &Pod) -> HashMap<String, String> {
    let m = &pod.metadata;
    let mut labels: HashMap<String, String> = m
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(POD_NAME.into(), m.name.clone().unwrap_or_default());
    labels.insert(
        POD_NAMESPACE.into(),
        m.namespace.clone().unwrap_or_default(),
    );
    labels.insert(POD_UID.into(), m.uid.clone().unwrap_or_default());
    labels
}

/// newPodAnnotations: the pod's annotations.
pub fn sandbox_annotations(pod: &Pod) -> HashMap<String, String> {
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// newContainerLabels
pub fn container_labels(pod: &Pod, container: &Container) -> HashMap<String, String> {
    let m = &pod.metadata;
    HashMap::from([
        (POD_NAME.into(), m.name.clone().unwrap_or_default()),
        (
            POD_NAMESPACE.into(),
            m.namespace.clone().unwrap_or_default(),
        ),
        (POD_UID.into(), m.uid.clone().unwrap_or_default()),
        (CONTAINER_NAME.into(), container.name.clone()),
    ])
}

/// newContainerAnnotations
pub fn container_annotations(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
) -> HashMap<String, String> {
    let mut a = HashMap::new();
    a.insert(
        CONTAINER_HASH.into(),
        format!("{:x}", container_hash(container)),
    );
    a.insert(CONTAINER_RESTART_COUNT.into(), restart_count.to_string());
    a.insert(
        CONTAINER_TERMINATION_MESSAGE_PATH.into(),
        container
            .termination_message_path
            .clone()
            .unwrap_or_default(),
    );
    a.insert(
        CONTAINER_TERMINATION_MESSAGE_POLICY.into(),
        container
            .termination_message_policy
            .clone()
            .unwrap_or_default(),
    );
    if let Some(g) = pod.metadata.deletion_grace_period_seconds {
        a.insert(POD_DELETION_GRACE_PERIOD.into(), g.to_string());
    }
    let spec = pod.spec.as_ref();
    if let Some(g) = spec.and_then(|s| s.termination_grace_period_seconds) {
        a.insert(POD_TERMINATION_GRACE_PERIOD.into(), g.to_string());
    }
    if let Some(pre_stop) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        && let Ok(json) = serde_json::to_string(pre_stop)
    {
        a.insert(CONTAINER_PRE_STOP_HANDLER.into(), json);
    }
    if let Some(ports) = container.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(json) = serde_json::to_string(ports)
    {
        a.insert(CONTAINER_PORTS.into(), json);
    }
    let named = |list: Option<&Vec<Container>>| {
        list.is_some_and(|l| l.iter().any(|c| c.name == container.name))
    };
    let kind = if named(spec.and_then(|s| s.init_containers.as_ref())) {
        Some(TYPE_INIT)
    } else if named(spec.map(|s| &s.containers)) {
        Some(TYPE_CONTAINER)
    } else if spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == container.name))
    {
        Some(TYPE_EPHEMERAL)
    } else {
        None
    };
    if let Some(kind) = kind {
        a.insert(CONTAINER_TYPE.into(), kind.into());
    }
    a
}

fn string(map: &HashMap<String, String>, key: &str) -> String {
    map.get(key).cloned().unwrap_or_default()
}

/// A container the kubelet (or this agent) labelled: None when it lacks
/// the pod uid or container name labels (not ours).
pub fn parse_container(
    labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> Option<ContainerLabels> {
    let pod_uid = labels.get(POD_UID)?.clone();
    let container_name = labels.get(CONTAINER_NAME)?.clone();
    Some(ContainerLabels {
        pod_name: string(labels, POD_NAME),
        pod_namespace: string(labels, POD_NAMESPACE),
        pod_uid,
        container_name,
        restart_count: annotations
            .get(CONTAINER_RESTART_COUNT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        hash: annotations
            .get(CONTAINER_HASH)
            .and_then(|v| u64::from_str_radix(v, 16).ok()),
        pod_deletion_grace_period: annotations
            .get(POD_DELETION_GRACE_PERIOD)
            .and_then(|v| v.parse().ok()),
        pod_termination_grace_period: annotations
            .get(POD_TERMINATION_GRACE_PERIOD)
            .and_then(|v| v.parse().ok()),
        termination_message_path: string(annotations, CONTAINER_TERMINATION_MESSAGE_PATH),
        termination_message_policy: string(annotations, CONTAINER_TERMINATION_MESSAGE_POLICY),
        container_type: string(annotations, CONTAINER_TYPE),
        pre_stop_handler: annotations.get(CONTAINER_PRE_STOP_HANDLER).cloned(),
    })
}

/// (namespace, name, uid) of a sandbox the kubelet labelled; None when any
/// is missing (isManagedByKubelet keys on these).
pub fn parse_sandbox(labels: &HashMap<String, String>) -> Option<(String, String, String)> {
    Some((
        labels.get(POD_NAMESPACE)?.clone(),
        labels.get(POD_NAME)?.clone(),
        labels.get(POD_UID)?.clone(),
    ))
}

/// The pod's own labels from a sandbox's (getPodSandboxInfoFromLabels).
pub fn pod_labels_of_sandbox(labels: &HashMap<String, String>) -> HashMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), POD_NAME | POD_NAMESPACE | POD_UID))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
#[path = "labels_tests.rs"]
mod tests;

//! QoS class, pod cgroups and the CRI linux resources of a container.

use k8s_openapi::api::core::v1::Pod;

use super::NodeContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

pub fn qos_class(pod: &Pod) -> QosClass {
    let _ = pod;
    QosClass::BestEffort
}

/// <root>/kubepods[/burstable|/besteffort]/pod<uid> (cgroupfs driver).
pub fn pod_cgroup_parent(pod: &Pod, node: &NodeContext) -> String {
    let _ = (pod, node);
    String::new()
}

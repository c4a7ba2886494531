//! CRI state -> API pod status, as the kubelet computes it (pkg/kubelet/kubelet_pods.go
//! generateAPIPodStatus, pkg/kubelet/status), plus the crash-loop back-off and the
//! kubelet's events. Everything here is pure: the caller (the node agent) gathers the
//! CRI statuses and injects the clock.

use std::collections::HashMap;

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, HostIP, Pod, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cri::v1;

pub mod backoff;
pub mod conditions;
pub mod containers;
pub mod events;
mod patch;
pub mod phase;

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

/// The pod's status as the kubelet would report it now: what its syncPod generates
/// (generateAPIPodStatus) after the status manager's pass over it (lastTransitionTime,
/// startTime, normalization, mergePodStatus). `pod.status` is the status last seen in
/// the API. A terminal phase is held back while a container or sandbox could still
/// run: use [`generated_status`] to learn that the pod is done and must be torn down.
pub fn pod_status(
    pod: &Pod,
    observed: &ObservedPod<'_>,
    host_ips: &[String],
    now: Time,
) -> PodStatus {
    let generated = generated_status(pod, observed, host_ips, now.clone());
    manage(pod, observed, generated, &now)
}

/// The status the kubelet's syncPod generates (generateAPIPodStatus), before the
/// status manager: its phase is Succeeded/Failed as soon as the pod is done, which is
/// when the kubelet's pod worker kills the pod's remaining containers and sandbox.
pub fn generated_status(
    pod: &Pod,
    observed: &ObservedPod<'_>,
    host_ips: &[String],
    now: Time,
) -> PodStatus {
    // Nothing here depends on the time yet; it is in the signature so that callers
    // pass the same clock to both functions.
    let _ = now;
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let cri = containers::sorted_cri(observed);
    // The kubelet sorts a pod's sandboxes newest first; do not rely on the caller.
    let mut sandboxes = observed.sandboxes.to_vec();
    sandboxes.sort_by_key(|sb| std::cmp::Reverse(sb.created_at));
    let sandboxes = sandboxes.as_slice();
    let mut s = PodStatus::default();

    let host_network = spec.host_network.unwrap_or(false);
    let mut ips = sort_pod_ips(&sandbox_ips(sandboxes), host_ips);
    let any_ready = observed
        .sandboxes
        .iter()
        .any(|sb| sb.state == v1::PodSandboxState::SandboxReady as i32);
    if ips.is_empty() && !host_network && !any_ready {
        // The kubelet keeps the IPs of a pod it stopped (preserveDataFromBeforeStopping);
        // a stopped sandbox no longer reports them.
        ips = old
            .pod_ips
            .iter()
            .flatten()
            .map(|ip| ip.ip.clone())
            .collect();
    }
    set_pod_ips(&mut s, ips);
    s.qos_class = if observed.qos_class.is_empty() {
        old.qos_class.clone()
    } else {
        Some(observed.qos_class.to_string())
    };

    let regular = containers::container_statuses(
        pod,
        observed,
        &cri,
        old.container_statuses.as_deref().unwrap_or_default(),
        &spec.containers,
        false,
    );
    let init = containers::container_statuses(
        pod,
        observed,
        &cri,
        old.init_container_statuses.as_deref().unwrap_or_default(),
        spec.init_containers.as_deref().unwrap_or_default(),
        true,
    );
    let ephemeral = containers::ephemeral_statuses(
        pod,
        observed,
        &cri,
        old.ephemeral_container_statuses
            .as_deref()
            .unwrap_or_default(),
    );
    let all: Vec<_> = regular.iter().chain(init.iter()).cloned().collect();
    // A deleted pod whose containers and sandbox are stopped is terminal whatever its
    // restartPolicy (SyncTerminatingPod generates its last status with podIsTerminal).
    let terminal =
        pod.metadata.deletion_timestamp.is_some() && !could_have_running_containers(observed);
    let started = regular_container_started(pod, sandboxes, &cri);
    let mut phase = phase::get_phase(pod, &all, terminal, started);

    // Pods are not allowed out of a terminal phase, nor from one to the other.
    if old.phase.as_deref() == Some(phase::FAILED) {
        phase = phase::FAILED;
    } else if old.phase.as_deref() == Some(phase::SUCCEEDED) {
        phase = phase::SUCCEEDED;
    }
    s.phase = Some(phase.to_string());
    if s.phase == old.phase {
        s.reason = old.reason.clone();
        s.message = old.message.clone();
    }
    s.container_statuses = (!regular.is_empty()).then_some(regular);
    s.init_container_statuses = (!init.is_empty()).then_some(init);
    s.ephemeral_container_statuses = (!ephemeral.is_empty()).then_some(ephemeral);

    // Conditions others own stay; then the kubelet's, in its order.
    let mut conds: Vec<_> = old
        .conditions
        .iter()
        .flatten()
        .filter(|c| !conditions::owned_by_kubelet(&c.type_))
        .cloned()
        .collect();
    let all_statuses: Vec<_> = s
        .init_container_statuses
        .iter()
        .flatten()
        .chain(s.container_statuses.iter().flatten())
        .cloned()
        .collect();
    conds.push(conditions::ready_to_start_containers(pod, sandboxes));
    conds.push(conditions::initialized(pod, &all_statuses, phase));
    let ready = conditions::pod_ready(pod, &conds, &all_statuses, phase);
    conds.push(ready);
    conds.push(conditions::containers_ready(pod, &all_statuses, phase));
    conds.push(conditions::scheduled(pod));
    s.conditions = Some(conds);

    if let Some(first) = host_ips.first() {
        s.host_ip = Some(first.clone());
        s.host_ips = Some(
            host_ips
                .iter()
                .take(2)
                .map(|ip| HostIP { ip: ip.clone() })
                .collect(),
        );
        if host_network {
            let mut ips: Vec<String> = s.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
            if ips.is_empty() {
                ips.push(first.clone());
            }
            if let (Some(second), 1) = (host_ips.get(1), ips.len())
                && is_ipv4(&ips[0]) != is_ipv4(second)
            {
                ips.push(second.clone());
            }
            set_pod_ips(&mut s, ips);
        }
    }
    s
}

/// The status manager's pass: refuse illegal container transitions, carry
/// lastTransitionTime and startTime over, normalize, then mergePodStatus.
fn manage(pod: &Pod, observed: &ObservedPod<'_>, mut s: PodStatus, now: &Time) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    if !legal_transition(
        old.container_statuses.as_deref(),
        s.container_statuses.as_deref(),
        &policy,
    ) || !legal_transition(
        old.init_container_statuses.as_deref(),
        s.init_container_statuses.as_deref(),
        &policy,
    ) {
        // The kubelet aborts such an update (a terminated container never runs again
        // under Never/OnFailure-with-success): keep what the API has.
        return old;
    }
    let now = containers::truncate(now);
    if let Some(conds) = s.conditions.as_mut() {
        conditions::set_transition_times(
            conds,
            old.conditions.as_deref().unwrap_or_default(),
            &now,
        );
    }
    s.start_time = match &old.start_time {
        Some(t) => Some(t.clone()),
        None => Some(now.clone()),
    };
    normalize(pod, &mut s);
    s.observed_generation = pod.metadata.generation.filter(|g| *g != 0);

    // mergePodStatus.
    let mut conds: Vec<_> = old
        .conditions
        .iter()
        .flatten()
        .filter(|c| !conditions::owned_by_kubelet(&c.type_))
        .cloned()
        .collect();
    conds.extend(
        s.conditions
            .take()
            .into_iter()
            .flatten()
            .filter(|c| conditions::owned_by_kubelet(&c.type_)),
    );
    s.conditions = Some(conds);
    s.resource_claim_statuses = old.resource_claim_statuses.clone();
    let to_terminal =
        !phase::is_terminal(old.phase.as_deref()) && phase::is_terminal(s.phase.as_deref());
    if to_terminal && could_have_running_containers(observed) {
        s.phase = old.phase.clone();
        s.reason = old.reason.clone();
        s.message = old.message.clone();
    }
    if let Some(p) = s.phase.clone().filter(|p| phase::is_terminal(Some(p))) {
        let conds = s.conditions.as_mut().expect("set above");
        let is_true = |t: &str| conds.iter().any(|c| c.type_ == t && c.status == "True");
        if is_true(conditions::READY) || is_true(conditions::CONTAINERS_READY) {
            let cr = conditions::terminal_containers_ready(pod, conditions::CONTAINERS_READY, &p);
            conditions::update_condition(conds, cr, &now);
            let r = conditions::terminal_containers_ready(pod, conditions::READY, &p);
            conditions::update_condition(conds, r, &now);
        }
    }
    s
}

/// checkContainerStateTransition.
fn legal_transition(
    old: Option<&[ContainerStatus]>,
    new: Option<&[ContainerStatus]>,
    policy: &str,
) -> bool {
    if policy == "Always" {
        return true;
    }
    let terminated = |s: &ContainerStatus| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .cloned()
    };
    old.unwrap_or_default().iter().all(|o| {
        let Some(t) = terminated(o) else { return true };
        if t.exit_code != 0 && policy == "OnFailure" {
            return true;
        }
        new.unwrap_or_default()
            .iter()
            .all(|n| n.name != o.name || terminated(n).is_some())
    })
}

/// A container or sandbox of the pod may still run (the pod worker has not finished
/// terminating it).
fn could_have_running_containers(observed: &ObservedPod<'_>) -> bool {
    observed
        .containers
        .iter()
        .any(|c| c.state != v1::ContainerState::ContainerExited as i32)
        || observed
            .sandboxes
            .iter()
            .any(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
}

/// kubecontainer.HasAnyActiveRegularContainerStarted: a regular container of the newest
/// sandbox is running or exited. CRI container statuses do not name their sandbox, so
/// "of the newest sandbox" is "created after it".
fn regular_container_started(
    pod: &Pod,
    sandboxes: &[v1::PodSandboxStatus],
    cri: &[containers::CriContainer<'_>],
) -> bool {
    let Some(sandbox) = sandboxes.first() else {
        return false;
    };
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.as_str())
        .collect();
    cri.iter().any(|c| {
        names.contains(&c.name)
            && c.status.created_at >= sandbox.created_at
            && matches!(
                c.state,
                v1::ContainerState::ContainerRunning | v1::ContainerState::ContainerExited
            )
    })
}

/// normalizeStatus: times to seconds (done at conversion) and termination messages cut
/// to the pod's share of 12 KiB.
fn normalize(pod: &Pod, s: &mut PodStatus) {
    let spec = pod.spec.clone().unwrap_or_default();
    let count = spec.containers.len()
        + spec.init_containers.as_ref().map_or(0, Vec::len)
        + spec.ephemeral_containers.as_ref().map_or(0, Vec::len);
    let limit = MAX_TERMINATION_MESSAGE_BYTES / count.max(1);
    let cut = |st: &mut Option<ContainerState>| {
        if let Some(m) = st
            .as_mut()
            .and_then(|s| s.terminated.as_mut())
            .and_then(|t| t.message.as_mut())
            && m.len() > limit
        {
            let mut end = limit;
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            m.truncate(end);
        }
    };
    for c in s
        .container_statuses
        .iter_mut()
        .chain(s.init_container_statuses.iter_mut())
        .chain(s.ephemeral_container_statuses.iter_mut())
        .flatten()
    {
        cut(&mut c.state);
        cut(&mut c.last_state);
    }
}

/// kubecontainer.MaxPodTerminationMessageLogLength.
const MAX_TERMINATION_MESSAGE_BYTES: usize = 1024 * 12;

/// determinePodSandboxIPs over the newest sandbox, when it is ready.
fn sandbox_ips(sandboxes: &[v1::PodSandboxStatus]) -> Vec<String> {
    let Some(sb) = sandboxes.first() else {
        return Vec::new();
    };
    if sb.state != v1::PodSandboxState::SandboxReady as i32 {
        return Vec::new();
    }
    let Some(net) = sb.network.as_ref() else {
        return Vec::new();
    };
    let mut ips = Vec::new();
    if !net.ip.is_empty() {
        ips.push(net.ip.clone());
    }
    ips.extend(net.additional_ips.iter().map(|ip| ip.ip.clone()));
    if ips.iter().any(|ip| ip.parse::<IpAddr>().is_err()) {
        return Vec::new();
    }
    ips
}

/// sortPodIPs: the first IP of the node's family, then the first of the other.
fn sort_pod_ips(ips: &[String], host_ips: &[String]) -> Vec<String> {
    let v4_first = host_ips.first().is_none_or(|ip| is_ipv4(ip));
    let parsed: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
    let primary = parsed.iter().find(|ip| ip.is_ipv4() == v4_first);
    let secondary = parsed.iter().find(|ip| ip.is_ipv4() != v4_first);
    primary
        .into_iter()
        .chain(secondary)
        .map(|ip| ip.to_string())
        .collect()
}

fn is_ipv4(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4())
}

fn set_pod_ips(s: &mut PodStatus, ips: Vec<String>) {
    s.pod_ip = ips.first().cloned();
    s.pod_ips = (!ips.is_empty()).then(|| ips.into_iter().map(|ip| PodIP { ip }).collect());
}

#[cfg(test)]
mod tests;

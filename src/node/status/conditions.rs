//! The pod conditions the kubelet owns (pkg/kubelet/status/generate.go) and how the
//! status manager carries their lastTransitionTime over.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::containers::is_restartable_init;
use super::phase::{FAILED, SUCCEEDED};
use crate::cri::v1;

pub const POD_SCHEDULED: &str = "PodScheduled";
pub const POD_READY_TO_START_CONTAINERS: &str = "PodReadyToStartContainers";
pub const INITIALIZED: &str = "Initialized";
pub const CONTAINERS_READY: &str = "ContainersReady";
pub const READY: &str = "Ready";

const POD_COMPLETED: &str = "PodCompleted";
const POD_FAILED: &str = "PodFailed";
const CONTAINERS_NOT_READY: &str = "ContainersNotReady";
const CONTAINERS_NOT_INITIALIZED: &str = "ContainersNotInitialized";
const READINESS_GATES_NOT_READY: &str = "ReadinessGatesNotReady";

/// The condition types the kubelet owns (kubetypes.PodConditionByKubelet).
pub fn owned_by_kubelet(type_: &str) -> bool {
    matches!(
        type_,
        POD_SCHEDULED
            | READY
            | INITIALIZED
            | CONTAINERS_READY
            | POD_READY_TO_START_CONTAINERS
            | "PodResizePending"
            | "PodResizeInProgress"
    )
}

fn condition(pod: &Pod, type_: &str, status: bool, reason: &str, message: &str) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        // PodObservedGenerationTracking is on by default since 1.35.
        observed_generation: pod.metadata.generation.filter(|g| *g != 0),
        ..Default::default()
    }
}

/// Go's `%s` of a []string: "[a b]".
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

pub(crate) fn terminal_containers_ready(pod: &Pod, type_: &str, phase: &str) -> PodCondition {
    let reason = match phase {
        FAILED => POD_FAILED,
        SUCCEEDED => POD_COMPLETED,
        _ => "",
    };
    condition(pod, type_, false, reason, "")
}

/// GenerateContainersReadyCondition.
pub(crate) fn containers_ready(
    pod: &Pod,
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_restartable_init(c));
    for c in sidecars.chain(spec.containers.iter()) {
        match find(statuses, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.as_str()),
            Some(_) => {}
            None => unknown.push(c.name.as_str()),
        }
    }
    if (phase == SUCCEEDED && unknown.is_empty()) || phase == FAILED {
        return terminal_containers_ready(pod, CONTAINERS_READY, phase);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        messages.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if !messages.is_empty() {
        return condition(
            pod,
            CONTAINERS_READY,
            false,
            CONTAINERS_NOT_READY,
            &messages.join(", "),
        );
    }
    condition(pod, CONTAINERS_READY, true, "", "")
}

/// GeneratePodReadyCondition: ContainersReady, then the readiness gates.
pub(crate) fn pod_ready(
    pod: &Pod,
    conditions: &[PodCondition],
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let cr = containers_ready(pod, statuses, phase);
    if cr.status != "True" {
        let mut c = cr;
        c.type_ = READY.to_string();
        return c;
    }
    let mut messages = Vec::new();
    let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
    for gate in gates.into_iter().flatten() {
        match conditions.iter().find(|c| c.type_ == gate.condition_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if !messages.is_empty() {
        return condition(
            pod,
            READY,
            false,
            READINESS_GATES_NOT_READY,
            &messages.join(", "),
        );
    }
    condition(pod, READY, true, "", "")
}

/// GeneratePodInitializedCondition.
pub(crate) fn initialized(pod: &Pod, statuses: &[ContainerStatus], phase: &str) -> PodCondition {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let Some(s) = find(statuses, &c.name) else {
            unknown.push(c.name.as_str());
            continue;
        };
        let done = if is_restartable_init(c) {
            s.started == Some(true)
        } else {
            s.ready
        };
        if !done {
            incomplete.push(c.name.as_str());
        }
    }
    if phase == SUCCEEDED && unknown.is_empty() {
        return condition(pod, INITIALIZED, true, POD_COMPLETED, "");
    }
    // A regular container ran: the pod initialized before, even if sidecars restart.
    let regular_started = spec.containers.iter().any(|c| {
        find(statuses, &c.name)
            .and_then(|s| s.state.as_ref())
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });
    if regular_started {
        return condition(pod, INITIALIZED, true, "", "");
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        messages.push(format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        ));
    }
    if !messages.is_empty() {
        return condition(
            pod,
            INITIALIZED,
            false,
            CONTAINERS_NOT_INITIALIZED,
            &messages.join(", "),
        );
    }
    condition(pod, INITIALIZED, true, "", "")
}

/// GeneratePodReadyToStartContainersCondition: True while the newest sandbox is the
/// only ready one, in the right network namespace, with an IP (PodSandboxChanged).
pub(crate) fn ready_to_start_containers(
    pod: &Pod,
    sandboxes: &[v1::PodSandboxStatus],
) -> PodCondition {
    condition(
        pod,
        POD_READY_TO_START_CONTAINERS,
        !sandbox_changed(pod, sandboxes),
        "",
        "",
    )
}

/// kuberuntime util.PodSandboxChanged: whether a new sandbox is needed.
pub fn sandbox_changed(pod: &Pod, sandboxes: &[v1::PodSandboxStatus]) -> bool {
    let ready = |s: &v1::PodSandboxStatus| s.state == v1::PodSandboxState::SandboxReady as i32;
    let Some(newest) = sandboxes.first() else {
        return true;
    };
    if sandboxes.iter().filter(|s| ready(s)).count() > 1 || !ready(newest) {
        return true;
    }
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let want = if host_network {
        v1::NamespaceMode::Node
    } else {
        v1::NamespaceMode::Pod
    } as i32;
    let network = newest
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .map(|o| o.network)
        .unwrap_or_default();
    if network != want {
        return true;
    }
    !host_network && newest.network.as_ref().is_some_and(|n| n.ip.is_empty())
}

/// The PodScheduled condition the kubelet reports.
pub(crate) fn scheduled(pod: &Pod) -> PodCondition {
    condition(pod, POD_SCHEDULED, true, "", "")
}

/// updateLastTransitionTime: the old time while the status is unchanged, else now.
pub(crate) fn set_transition_times(
    conditions: &mut [PodCondition],
    old: &[PodCondition],
    now: &Time,
) {
    for c in conditions.iter_mut().filter(|c| owned_by_kubelet(&c.type_)) {
        c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status => o.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
    }
}

/// podutil.UpdatePodCondition: replace (or add) `new`, keeping the old transition time
/// when the status is unchanged.
pub(crate) fn update_condition(
    conditions: &mut Vec<PodCondition>,
    mut new: PodCondition,
    now: &Time,
) {
    new.last_transition_time = Some(now.clone());
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

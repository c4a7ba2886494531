//! The pod phase (kubelet_pods.go getPhase, with the ContainerRestartRules semantics
//! the kubelet uses by default: a container's own restartPolicy wins over the pod's).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::containers::{container_should_restart, is_restartable_init};

pub const PENDING: &str = "Pending";
pub const RUNNING: &str = "Running";
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";

/// Whether `phase` is Succeeded or Failed.
pub fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some(SUCCEEDED | FAILED))
}

/// The phase from the API container statuses (init and regular together).
/// `terminal`: the pod is being torn down and nothing of it runs any more, so its
/// containers will not restart whatever the policy. `has_initialized`: a regular
/// container of the current sandbox has started.
pub(crate) fn get_phase(
    pod: &Pod,
    info: &[ContainerStatus],
    terminal: bool,
    has_initialized: bool,
) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return PENDING;
    };
    let find = |name: &str| info.iter().find(|s| s.name == name);
    let init = spec.init_containers.as_deref().unwrap_or_default();

    let mut pending_regular_init = 0;
    let mut pending_restartable_init = 0;
    let mut failed_init_not_restartable = 0;
    for c in init.iter().filter(|c| !is_restartable_init(c)) {
        let Some(st) = find(&c.name) else {
            pending_regular_init += 1;
            continue;
        };
        let state = st.state.clone().unwrap_or_default();
        let last = st.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        if state.running.is_some() {
            pending_regular_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 && !container_should_restart(c, pod, t.exit_code) {
                failed_init_not_restartable += 1;
            }
        } else if state.waiting.is_some() {
            match last {
                Some(t) => {
                    if t.exit_code != 0 && !container_should_restart(c, pod, t.exit_code) {
                        failed_init_not_restartable += 1;
                    }
                }
                None => pending_regular_init += 1,
            }
        } else {
            pending_regular_init += 1;
        }
    }

    let (mut unknown, mut running, mut waiting) = (0, 0, 0);
    let (mut stopped, mut stopped_not_restartable, mut succeeded) = (0, 0, 0);
    for c in init.iter().filter(|c| is_restartable_init(c)) {
        let Some(st) = find(&c.name) else {
            unknown += 1;
            continue;
        };
        let state = st.state.clone().unwrap_or_default();
        let has_last = st
            .last_state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some());
        if state.running.is_some() {
            if st.started != Some(true) {
                pending_restartable_init += 1;
            }
            running += 1;
        } else if state.terminated.is_some() {
            // A stopped sidecar does not count for the phase.
        } else if state.waiting.is_some() {
            if !has_last {
                pending_restartable_init += 1;
                waiting += 1;
            }
        } else {
            pending_restartable_init += 1;
            unknown += 1;
        }
    }

    for c in &spec.containers {
        let Some(st) = find(&c.name) else {
            unknown += 1;
            continue;
        };
        let state = st.state.clone().unwrap_or_default();
        let last = st.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if !container_should_restart(c, pod, t.exit_code) {
                stopped_not_restartable += 1;
            }
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            match last {
                Some(t) => {
                    stopped += 1;
                    if !container_should_restart(c, pod, t.exit_code) {
                        stopped_not_restartable += 1;
                    }
                }
                None => waiting += 1,
            }
        } else {
            unknown += 1;
        }
    }

    if failed_init_not_restartable > 0 {
        return FAILED;
    }
    if pending_regular_init > 0 || (pending_restartable_init > 0 && !has_initialized) || waiting > 0
    {
        return PENDING;
    }
    if running > 0 && unknown == 0 {
        return RUNNING;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded {
                SUCCEEDED
            } else {
                FAILED
            };
        }
        if stopped != stopped_not_restartable {
            // At least one container is restarting.
            return RUNNING;
        }
        return if stopped == succeeded {
            SUCCEEDED
        } else {
            FAILED
        };
    }
    PENDING
}

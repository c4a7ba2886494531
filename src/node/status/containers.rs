//! CRI container statuses -> API container statuses
//! (kubelet_pods.go convertToAPIContainerStatuses, kuberuntime toKubeContainerStatus,
//! and the readiness/started part of prober_manager.go UpdatePodStatus).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, ContainerUser, LinuxContainerUser, Pod,
    VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ObservedPod;
use crate::cri::v1;

/// The waiting reason of a container not yet created in a pod with init containers.
pub const POD_INITIALIZING: &str = "PodInitializing";
/// The waiting reason of a container not yet created.
pub const CONTAINER_CREATING: &str = "ContainerCreating";
/// The reason of a container the runtime lost (kubecontainer.ContainerReasonStatusUnknown).
pub const CONTAINER_STATUS_UNKNOWN: &str = "ContainerStatusUnknown";

/// The kubelet's CRI label with the container's name.
const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The kubelet's CRI annotation with the container's restart count.
const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// A CRI container status with the fields the conversion reads, parsed once.
pub(crate) struct CriContainer<'a> {
    pub name: &'a str,
    pub restart_count: i32,
    pub state: v1::ContainerState,
    pub status: &'a v1::ContainerStatus,
}

impl<'a> CriContainer<'a> {
    pub fn new(status: &'a v1::ContainerStatus) -> Self {
        // The kubelet reads the name from its label and the restart count from its
        // annotation; metadata carries the same values for containers it created.
        let name = status
            .labels
            .get(LABEL_CONTAINER_NAME)
            .map(String::as_str)
            .or(status.metadata.as_ref().map(|m| m.name.as_str()))
            .unwrap_or_default();
        let restart_count = status
            .annotations
            .get(ANNOTATION_RESTART_COUNT)
            .and_then(|c| c.parse::<i32>().ok())
            .or(status.metadata.as_ref().map(|m| m.attempt as i32))
            .unwrap_or(0);
        let state = v1::ContainerState::try_from(status.state)
            .unwrap_or(v1::ContainerState::ContainerUnknown);
        Self {
            name,
            restart_count,
            state,
            status,
        }
    }
}

/// The pod's CRI containers, newest first (SortContainerStatusesByCreationTime, reversed).
pub(crate) fn sorted_cri<'a>(observed: &ObservedPod<'a>) -> Vec<CriContainer<'a>> {
    let mut all: Vec<CriContainer<'a>> =
        observed.containers.iter().map(CriContainer::new).collect();
    all.sort_by_key(|c| std::cmp::Reverse(c.status.created_at));
    all
}

/// The newest CRI status of the container named `name` (FindContainerStatusByName).
pub(crate) fn latest<'b, 'a>(
    cri: &'b [CriContainer<'a>],
    name: &str,
) -> Option<&'b CriContainer<'a>> {
    cri.iter().find(|c| c.name == name)
}

/// CRI nanoseconds -> API time, truncated to seconds as the status manager's
/// normalizeStatus does (so a regenerated status compares equal to the stored one).
pub(crate) fn time_from_nanos(ns: i64) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(ns.div_euclid(1_000_000_000)).unwrap_or_default(),
    )
}

/// `t` cut to whole seconds (metav1.Time.Rfc3339Copy).
pub(crate) fn truncate(t: &Time) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.0.as_second()).unwrap_or_default())
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: non_empty(reason),
            message: non_empty(message),
        }),
        ..Default::default()
    }
}

fn terminated_unknown(message: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        reason: Some(CONTAINER_STATUS_UNKNOWN.into()),
        message: Some(message.into()),
        exit_code: 137,
        ..Default::default()
    }
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|s| s.running.is_some())
}
fn is_terminated(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|s| s.terminated.is_some())
}
fn is_waiting(s: &ContainerStatus) -> bool {
    s.state.as_ref().is_some_and(|s| s.waiting.is_some())
}
fn waiting_reason(s: &ContainerStatus) -> Option<&str> {
    s.state
        .as_ref()?
        .waiting
        .as_ref()
        .map(|w| w.reason.as_deref().unwrap_or_default())
}
fn has_last_terminated(s: &ContainerStatus) -> bool {
    s.last_state
        .as_ref()
        .is_some_and(|s| s.terminated.is_some())
}

/// The container's mounts as its status lists them (RecursiveReadOnlyMounts): a
/// read-only mount says whether it is recursively read-only.
fn volume_mount_statuses(c: &Container) -> Option<Vec<VolumeMountStatus>> {
    let mounts = c.volume_mounts.as_ref().filter(|m| !m.is_empty())?;
    Some(
        mounts
            .iter()
            .map(|m| {
                let read_only = m.read_only.unwrap_or(false);
                let rro = match m.recursive_read_only.as_deref() {
                    Some("Enabled") => "Enabled",
                    _ => "Disabled",
                };
                VolumeMountStatus {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: read_only.then_some(true),
                    recursive_read_only: read_only.then(|| rro.to_string()),
                }
            })
            .collect(),
    )
}

/// The kubelet appends the message the container wrote to its terminationMessagePath
/// (or, with FallbackToLogsOnError, its last log lines) to the runtime's message of
/// an exited container (kuberuntime getPodContainerStatuses). That takes I/O: the
/// agent reads it and calls this on the CRI status before [`super::pod_status`].
pub fn add_termination_message(status: &mut v1::ContainerStatus, message: &str) {
    if message.is_empty() {
        return;
    }
    if !status.message.is_empty() {
        status.message.push_str(": ");
    }
    status.message.push_str(message);
}

/// A sidecar: an init container with restartPolicy Always (IsRestartableInitContainer).
pub(crate) fn is_restartable_init(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// podutil.ContainerShouldRestart: the container's own restartPolicy wins over the pod's.
pub(crate) fn container_should_restart(c: &Container, pod: &Pod, exit_code: i32) -> bool {
    let policy = c
        .restart_policy
        .as_deref()
        .or(pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()))
        .unwrap_or("Always");
    match policy {
        "Always" => true,
        "OnFailure" => exit_code != 0,
        _ => false,
    }
}

/// kubecontainer.ShouldContainerBeRestarted: whether the next sync would (re)start it.
fn should_be_restarted(c: &Container, pod: &Pod, cri: &[CriContainer<'_>]) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = latest(cri, &c.name) else {
        return true;
    };
    match status.state {
        v1::ContainerState::ContainerRunning => false,
        v1::ContainerState::ContainerUnknown | v1::ContainerState::ContainerCreated => true,
        v1::ContainerState::ContainerExited => {
            container_should_restart(c, pod, status.status.exit_code)
        }
    }
}

/// kuberuntime.HasAnyRegularContainerCreated.
fn any_regular_container_created(pod: &Pod, cri: &[CriContainer<'_>]) -> bool {
    let spec = pod.spec.as_ref();
    spec.map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .any(|c| {
            latest(cri, &c.name).is_some_and(|s| s.state != v1::ContainerState::ContainerUnknown)
        })
}

/// One CRI status -> an API status (convertContainerStatus).
fn convert(cs: &CriContainer<'_>, old: Option<&ContainerStatus>, runtime: &str) -> ContainerStatus {
    let s = cs.status;
    let cid = format!("{runtime}://{}", s.id);
    let mut status = ContainerStatus {
        name: cs.name.to_string(),
        restart_count: cs.restart_count,
        image: s
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default(),
        image_id: s.image_ref.clone(),
        container_id: Some(cid.clone()),
        ..Default::default()
    };
    if let Some(old) = old {
        status.volume_mounts = old.volume_mounts.clone();
    }
    let state = match cs.state {
        v1::ContainerState::ContainerRunning => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time_from_nanos(s.started_at)),
            }),
            ..Default::default()
        },
        v1::ContainerState::ContainerCreated => waiting("", ""),
        v1::ContainerState::ContainerExited => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: s.exit_code,
                reason: non_empty(&s.reason),
                message: non_empty(&s.message),
                started_at: Some(time_from_nanos(s.started_at)),
                finished_at: Some(time_from_nanos(s.finished_at)),
                container_id: Some(cid),
                signal: None,
            }),
            ..Default::default()
        },
        v1::ContainerState::ContainerUnknown if old.is_some_and(is_running) => {
            // It was running and the runtime lost it: report it terminated rather than
            // waiting, so a run-once pod is not shown as never having run.
            status.restart_count = old.map(|o| o.restart_count).unwrap_or_default() + 1;
            ContainerState {
                terminated: Some(terminated_unknown(
                    "The container could not be located when the pod was terminated",
                )),
                ..Default::default()
            }
        }
        v1::ContainerState::ContainerUnknown => waiting("", ""),
    };
    status.state = Some(state);
    status
}

/// The API statuses of `containers` (the pod's init or regular containers), in the
/// kubelet's order: init containers as in the spec, regular ones by name.
pub(crate) fn container_statuses(
    pod: &Pod,
    observed: &ObservedPod<'_>,
    cri: &[CriContainer<'_>],
    previous: &[ContainerStatus],
    containers: &[Container],
    is_init: bool,
) -> Vec<ContainerStatus> {
    let has_init = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.init_containers.as_ref().is_some_and(|i| !i.is_empty()));
    let old: HashMap<&str, &ContainerStatus> =
        previous.iter().map(|s| (s.name.as_str(), s)).collect();
    let default_reason = if has_init {
        POD_INITIALIZING
    } else {
        CONTAINER_CREATING
    };

    let mut statuses: HashMap<&str, ContainerStatus> = HashMap::new();
    for c in containers {
        let mut status = ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: Some(waiting(default_reason, "")),
            volume_mounts: volume_mount_statuses(c),
            ..Default::default()
        };
        if let Some(old) = old.get(c.name.as_str()) {
            if is_terminated(old) {
                status = (*old).clone();
            } else {
                status.restart_count = old.restart_count;
                status.last_state = old.last_state.clone();
            }
        }
        statuses.insert(c.name.as_str(), status);
    }

    // A container that was running and is gone from the runtime terminated, even if
    // its exit code is lost: say so rather than fall back to Pending.
    for c in containers {
        if cri.iter().any(|s| s.name == c.name) {
            continue;
        }
        let Some(old) = old.get(c.name.as_str()) else {
            continue;
        };
        if is_terminated(old) || !is_running(old) {
            continue;
        }
        let status = statuses.get_mut(c.name.as_str()).expect("inserted above");
        if waiting_reason(status) != Some(default_reason) || has_last_terminated(status) {
            continue;
        }
        status.last_state = Some(ContainerState {
            terminated: Some(terminated_unknown(
                "The container could not be located when the pod was deleted.  The container used to be Running",
            )),
            ..Default::default()
        });
        if pod.metadata.deletion_timestamp.is_none() {
            status.restart_count += 1;
        }
    }

    // The newest attempt is the state, the one before it the last state.
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for cs in cri {
        let Some(name) = statuses.keys().find(|n| **n == cs.name).copied() else {
            continue;
        };
        let count = seen.entry(name).or_default();
        if *count >= 2 {
            continue;
        }
        let mut status = convert(cs, old.get(name).copied(), observed.runtime_name);
        if let Some(spec) = containers.iter().find(|c| c.name == name) {
            // InPlacePodVerticalScaling (on by default): the allocated resources. The
            // kubelet shows the runtime's values for a running container where they
            // differ; as applied by the runtime they are the spec's.
            status.resources = Some(spec.resources.clone().unwrap_or_default());
            status.allocated_resources = spec.resources.as_ref().and_then(|r| r.requests.clone());
        }
        status.user = cs.status.user.as_ref().map(|u| ContainerUser {
            linux: u.linux.as_ref().map(|l| LinuxContainerUser {
                uid: l.uid,
                gid: l.gid,
                supplemental_groups: (!l.supplemental_groups.is_empty())
                    .then(|| l.supplemental_groups.clone()),
            }),
        });
        if *count == 0 {
            statuses.insert(name, status);
        } else {
            statuses.get_mut(name).expect("present").last_state = status.state;
        }
        *count += 1;
    }

    // Containers the next sync would (re)start wait, with the reason the worker gave.
    for c in containers {
        if is_init {
            let latest = latest(cri, &c.name);
            if latest.is_some_and(|s| {
                s.state == v1::ContainerState::ContainerExited && s.status.exit_code == 0
            }) {
                continue;
            }
            let status = statuses.get_mut(c.name.as_str()).expect("inserted above");
            if latest.is_none()
                && any_regular_container_created(pod, cri)
                && !is_restartable_init(c)
                && is_waiting(status)
            {
                // Its container was removed after the pod initialized: it succeeded.
                status.state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        reason: Some("Completed".into()),
                        message: Some("Unable to get init container status from container runtime and pod has been initialized, treat it as exited normally".into()),
                        exit_code: 0,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                continue;
            }
        }
        if !should_be_restarted(c, pod, cri) {
            continue;
        }
        let Some((reason, message)) = observed.waiting.get(&c.name) else {
            continue;
        };
        let status = statuses.get_mut(c.name.as_str()).expect("inserted above");
        if is_terminated(status) {
            status.last_state = status.state.clone();
        }
        status.state = Some(waiting(reason, message));
    }

    let mut out: Vec<ContainerStatus> = if is_init {
        containers
            .iter()
            .filter_map(|c| statuses.remove(c.name.as_str()))
            .collect()
    } else {
        let mut v: Vec<ContainerStatus> = statuses.into_values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    for status in &mut out {
        if let Some(spec) = containers.iter().find(|c| c.name == status.name) {
            apply_probes(status, spec, observed, is_init);
        }
    }
    out
}

/// The API statuses of the pod's ephemeral containers: as regular ones,
/// but never ready and without resources (kubelet reports none for them).
pub(crate) fn ephemeral_statuses(
    pod: &Pod,
    observed: &ObservedPod<'_>,
    cri: &[CriContainer<'_>],
    previous: &[ContainerStatus],
) -> Vec<ContainerStatus> {
    let specs: Vec<Container> = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let mut v = serde_json::to_value(e).ok()?;
            v.as_object_mut()?.remove("targetContainerName");
            serde_json::from_value(v).ok()
        })
        .collect();
    let mut out = container_statuses(pod, observed, cri, previous, &specs, false);
    for s in &mut out {
        s.ready = false;
        s.resources = None;
        s.allocated_resources = None;
    }
    out
}

/// Started and ready as the prober manager sets them: a running container is started
/// once its startup probe passed (at once without one), and ready once started and its
/// readiness probe passed (at once without one). A regular init container is ready
/// when it exited 0.
fn apply_probes(
    status: &mut ContainerStatus,
    spec: &Container,
    observed: &ObservedPod<'_>,
    is_init: bool,
) {
    let running = is_running(status);
    let started = running
        && match observed.startup.get(&spec.name) {
            Some(result) => *result,
            None => spec.startup_probe.is_none(),
        };
    status.started = Some(started);
    if is_init && !is_restartable_init(spec) {
        let succeeded = status
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0);
        if succeeded {
            status.ready = true;
        }
        return;
    }
    if !started {
        return;
    }
    status.ready =
        observed.readiness.get(&spec.name) == Some(&true) || spec.readiness_probe.is_none();
}

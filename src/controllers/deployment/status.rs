//! A Deployment's status as kube computes it (sync.go calculateStatus and
//! progress.go syncRolloutStatus): counts summed over its ReplicaSets, the
//! Available condition against replicas - maxUnavailable, and the
//! Progressing condition (NewReplicaSetCreated, FoundNewReplicaSet,
//! ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded,
//! DeploymentPaused). Timestamps are whole seconds, and a condition that
//! does not change keeps its times, so that rewriting an unchanged status
//! is recognised as a no-op (no write, no hot loop).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::plan::{fenceposts, paused, replicas, rs_replicas};

/// `now` truncated to the second, as the apiserver stores times.
pub fn second(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get<'a>(st: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    st.conditions.iter().flatten().find(|c| c.type_ == type_)
}

/// kube's SetDeploymentCondition: replaces the condition of that type; an
/// unchanged status keeps its transition time, and an unchanged status
/// and reason keeps the whole old condition.
pub fn set(st: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let list = st.conditions.get_or_insert_default();
    if let Some(old) = list.iter_mut().find(|o| o.type_ == c.type_) {
        if old.status == c.status && old.reason == c.reason && old.message == c.message {
            return;
        }
        if old.status == c.status {
            c.last_transition_time = old.last_transition_time.clone();
        }
        *old = c;
    } else {
        list.push(c);
    }
}

/// The counts and the Available condition (kube's calculateStatus).
pub fn calculate(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let sum = |f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| -> i32 {
        all.iter().filter_map(|rs| rs.status.as_ref()).map(f).sum()
    };
    let available = sum(|s| s.available_replicas.unwrap_or(0));
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let terminating = all
        .iter()
        .filter_map(|rs| rs.status.as_ref()?.terminating_replicas)
        .reduce(|a, b| a + b);
    let mut st = d.status.clone().unwrap_or_default();
    st.observed_generation = d.metadata.generation;
    st.replicas = Some(sum(|s| s.replicas));
    st.updated_replicas = Some(
        new.and_then(|rs| rs.status.as_ref())
            .map_or(0, |s| s.replicas),
    );
    st.ready_replicas = Some(sum(|s| s.ready_replicas.unwrap_or(0)));
    st.available_replicas = Some(available);
    st.unavailable_replicas = Some((total - available).max(0));
    st.terminating_replicas = terminating;
    let (_, max_unavailable) = fenceposts(d);
    let c = if available >= replicas(d) - max_unavailable {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set(&mut st, c);
    st
}

/// kube's DeploymentComplete.
pub fn complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let r = replicas(d);
    st.updated_replicas == Some(r)
        && st.replicas == Some(r)
        && st.available_replicas == Some(r)
        && st.observed_generation >= d.metadata.generation
}

/// kube's DeploymentProgressing: more updated, ready or available pods,
/// or fewer old ones, than the status last written.
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_pods = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_pods = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas > old.updated_replicas
        || new_pods < old_pods
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}

/// The Progressing condition of `st` (computed by `calculate`) and when to
/// look again for the progress deadline. `found` is the reason for a new
/// set this sync created or found (NewReplicaSetCreated /
/// FoundNewReplicaSet), set before the rollout goes on.
pub fn progress(
    d: &Deployment,
    st: &mut DeploymentStatus,
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> Option<Duration> {
    let old = d.status.clone().unwrap_or_default();
    let name = new
        .and_then(|rs| rs.metadata.name.clone())
        .unwrap_or_default();
    if paused(d) {
        set(
            st,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                now,
            ),
        );
        return None;
    }
    if get(st, "Progressing").is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused")) {
        set(
            st,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
                now,
            ),
        );
    }
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds)?;
    if complete(d, st) {
        let msg = format!("ReplicaSet \"{name}\" has successfully progressed.");
        set(
            st,
            condition("Progressing", "True", "NewReplicaSetAvailable", msg, now),
        );
        return None;
    }
    let current = get(st, "Progressing").cloned();
    if progressing(&old, st) {
        let msg = format!("ReplicaSet \"{name}\" is progressing.");
        let mut c = condition("Progressing", "True", "ReplicaSetUpdated", msg, now);
        if let Some(cur) = current.as_ref().filter(|c| c.status == "True") {
            c.last_transition_time = cur.last_transition_time.clone();
        }
        // Progress renews the deadline even when the reason is unchanged.
        let list = st.conditions.get_or_insert_default();
        list.retain(|o| o.type_ != "Progressing");
        list.push(c);
        return Some(Duration::from_secs(deadline.max(0) as u64));
    }
    let cur = current?;
    if cur.reason.as_deref() == Some("ProgressDeadlineExceeded") {
        return None;
    }
    let since = cur.last_update_time.as_ref().map_or(now, |t| t.0);
    let left = since.as_second() + i64::from(deadline) - now.as_second();
    if left <= 0 {
        let msg = format!("ReplicaSet \"{name}\" has timed out progressing.");
        set(
            st,
            condition("Progressing", "False", "ProgressDeadlineExceeded", msg, now),
        );
        None
    } else {
        Some(Duration::from_secs(left as u64 + 1))
    }
}

/// The Progressing condition for a new set this sync created or found.
pub fn new_set_condition(st: &mut DeploymentStatus, reason: &str, name: &str, now: Timestamp) {
    let msg = match reason {
        "NewReplicaSetCreated" => format!("Created new replica set \"{name}\""),
        _ => format!("Found new replica set \"{name}\""),
    };
    set(st, condition("Progressing", "True", reason, msg, now));
}

pub fn differs(a: &Option<DeploymentStatus>, b: &DeploymentStatus) -> bool {
    serde_json::to_value(a.clone().unwrap_or_default()).ok() != serde_json::to_value(b).ok()
}

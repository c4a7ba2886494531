//! The ReplicaSet controller's decisions, pure: which pods the set claims
//! (adopts, releases), how many to create or which to delete to reach
//! spec.replicas (kube's deletion preference), the slow-start batches of
//! creation, and the status from the claimed pods.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::set::Set;
use crate::controllers::job::pods as pod_state;
use crate::controllers::scheduler::labels::selector_matches;

/// kube's burstReplicas: at most this many creations or deletions a sync.
pub const BURST: usize = 500;
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn labels(pod: &Pod) -> std::collections::BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

/// The set's selector matches the pod.
pub fn selects(set: &Set, pod: &Pod) -> bool {
    set.selector
        .as_ref()
        .is_some_and(|s| selector_matches(s, &labels(pod)))
}

/// The pods a set claims out of the live pods of its namespace.
#[derive(Debug, Default)]
pub struct Claim<'a> {
    /// Owned and still selected, or orphans to adopt.
    pub mine: Vec<&'a Pod>,
    /// Orphans that match: their ownerReference is to be added.
    pub adopt: Vec<&'a Pod>,
    /// Owned pods that no longer match: their ownerReference goes.
    pub release: Vec<&'a Pod>,
}

/// kube's PodControllerRefManager over active pods (neither terminal nor
/// being deleted): a pod controlled by another object is left alone.
pub fn claim<'a>(set: &Set, pods: &[&'a Pod]) -> Claim<'a> {
    let uid = set.meta.uid.as_deref().unwrap_or("");
    let mut c = Claim::default();
    for &pod in pods {
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        match owner {
            Some(o) if o.uid == uid => {
                if selects(set, pod) {
                    c.mine.push(pod);
                } else if !pod_state::deleting(pod) {
                    c.release.push(pod);
                }
            }
            Some(_) => {}
            None => {
                if !pod_state::deleting(pod) && !set.deleting() && selects(set, pod) {
                    c.adopt.push(pod);
                    c.mine.push(pod);
                }
            }
        }
    }
    c
}

/// Neither finished nor being deleted (kube's IsPodActive).
pub fn active(pod: &Pod) -> bool {
    pod_state::active(pod)
}

/// What reaching spec.replicas takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Diff {
    None,
    Create(usize),
    /// The names of the pods to delete, most preferred first.
    Delete(Vec<String>),
}

pub fn diff(set: &Set, active: &[&Pod], now: Timestamp) -> Diff {
    let want = usize::try_from(set.replicas.max(0)).unwrap_or(0);
    match active.len().cmp(&want) {
        Ordering::Equal => Diff::None,
        Ordering::Less => Diff::Create((want - active.len()).min(BURST)),
        Ordering::Greater => {
            let n = (active.len() - want).min(BURST);
            Diff::Delete(
                deletion_order(active, now)
                    .into_iter()
                    .take(n)
                    .map(|p| pod_state::name(p).to_string())
                    .collect(),
            )
        }
    }
}

/// Slow start (kube's slowStartBatch from 1): 1, 2, 4, ... creations,
/// a batch only after the previous one went through.
pub fn batches(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (n, 1usize);
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size = size.saturating_mul(2);
    }
    out
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod_state::phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// kube's logarithmic scale for ages: pods whose ages are within a
/// factor of two of each other compare equal.
fn log_age(t: Option<Timestamp>, now: Timestamp) -> i64 {
    let Some(t) = t else { return i64::MIN };
    let secs = now.duration_since(t).as_secs_f64().max(0.0);
    if secs < 1.0 {
        return 0;
    }
    secs.log2().floor() as i64 + 1
}

/// The pods in the order kube's ReplicaSet deletes them: unscheduled
/// before scheduled, Pending < Unknown < Running, not ready before ready,
/// lower pod-deletion-cost first, more pods of the set on the same node
/// first, ready for a shorter time first, more restarts first, newer first
/// (the times on a logarithmic scale), then by uid.
pub fn deletion_order<'a>(pods: &[&'a Pod], now: Timestamp) -> Vec<&'a Pod> {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        *on_node.entry(node(p)).or_default() += 1;
    }
    let mut out = pods.to_vec();
    out.sort_by(|a, b| {
        let (na, nb) = (node(a), node(b));
        if na != nb && (na.is_empty() || nb.is_empty()) {
            return if na.is_empty() {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        phase_rank(a)
            .cmp(&phase_rank(b))
            .then_with(|| pod_state::ready(a).cmp(&pod_state::ready(b)))
            .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
            .then_with(|| on_node[nb].cmp(&on_node[na]))
            .then_with(|| {
                if pod_state::ready(a) && pod_state::ready(b) {
                    log_age(ready_since(a), now).cmp(&log_age(ready_since(b), now))
                } else {
                    Ordering::Equal
                }
            })
            .then_with(|| pod_state::restarts(b).cmp(&pod_state::restarts(a)))
            .then_with(|| {
                let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                log_age(created(a), now).cmp(&log_age(created(b), now))
            })
            .then_with(|| pod_state::uid(a).cmp(pod_state::uid(b)))
    });
    out
}

/// Ready for at least minReadySeconds (kube's IsPodAvailable).
pub fn available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !pod_state::ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let wait = k8s_openapi::jiff::SignedDuration::from_secs(i64::from(min_ready_seconds));
    ready_since(pod).is_some_and(|t| t + wait < now)
}

/// When the next ready pod becomes available, if one is waiting.
pub fn next_available(pods: &[&Pod], min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    pods.iter()
        .filter(|p| pod_state::ready(p) && !available(p, min_ready_seconds, now))
        .filter_map(|p| ready_since(p))
        .map(|t| {
            let due =
                t + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(min_ready_seconds));
            due.duration_since(now).unsigned_abs() + Duration::from_millis(10)
        })
        .min()
}

/// A failure to reach the replicas: the ReplicaFailure condition's reason
/// (FailedCreate or FailedDelete) and message.
pub type Failure = (&'static str, String);

/// kube's calculateStatus: the counts over the active claimed pods (and
/// the terminating ones), observedGeneration, and the ReplicaFailure
/// condition set on a failure and cleared once a sync goes through.
pub fn status(
    set: &Set,
    active: &[&Pod],
    terminating: usize,
    failure: Option<&Failure>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let template_labels = set
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let l = labels(p);
            template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| pod_state::ready(p)).count();
    let avail = active
        .iter()
        .filter(|p| available(p, set.min_ready_seconds, now))
        .count();
    let n = |c: usize| i32::try_from(c).unwrap_or(i32::MAX);
    let mut conditions = set.status.conditions.clone().unwrap_or_default();
    let existing = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some((reason, message)) if !existing => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some((*reason).into()),
            message: Some(message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        None if existing => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    ReplicaSetStatus {
        replicas: n(active.len()),
        fully_labeled_replicas: Some(n(fully_labeled)),
        ready_replicas: Some(n(ready)),
        available_replicas: Some(n(avail)),
        observed_generation: set.meta.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: Some(n(terminating)),
    }
}

/// Whether a write is needed: the fields kube compares (a zero count and
/// an absent one are the same).
pub fn status_differs(old: &ReplicaSetStatus, new: &ReplicaSetStatus) -> bool {
    let z = |v: Option<i32>| v.unwrap_or(0);
    old.replicas != new.replicas
        || z(old.fully_labeled_replicas) != z(new.fully_labeled_replicas)
        || z(old.ready_replicas) != z(new.ready_replicas)
        || z(old.available_replicas) != z(new.available_replicas)
        || old.observed_generation != new.observed_generation
        || old.conditions.clone().unwrap_or_default() != new.conditions.clone().unwrap_or_default()
        || z(old.terminating_replicas) != z(new.terminating_replicas)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

//! The DaemonSet controller's decision, pure: from a DaemonSet, the nodes,
//! the pods it owns, the current template hash and the time, the nodes
//! that need a pod, the pods to delete (on nodes it no longer wants,
//! failed or finished ones, duplicates, and old-template pods as the
//! RollingUpdate maxUnavailable budget allows) and the status.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::nodes;
use super::revision::HASH_LABEL;
use crate::controllers::job::pods as pod_state;

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a daemon pod for.
    pub create: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// Nodes whose pod failed (the caller backs their re-creation off).
    pub failed_on: Vec<String>,
    pub status: DaemonSetStatus,
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

/// Ready for at least minReadySeconds.
pub fn available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    let Some(ready) = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
    else {
        return false;
    };
    if min_ready <= 0 {
        return true;
    }
    ready
        .last_transition_time
        .as_ref()
        .is_some_and(|t| t.0 + SignedDuration::from_secs(i64::from(min_ready)) <= now)
}

/// An int or a percentage of `total` (rounded up, as kube scales
/// maxUnavailable).
pub fn scaled(v: Option<&IntOrString>, total: usize, default: usize) -> usize {
    match v {
        None => default,
        Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(s)) => {
            let pct: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * total).div_ceil(100)
        }
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub fn plan(
    ds: &DaemonSet,
    all_nodes: &[&Node],
    owned: &[&Pod],
    hash: &str,
    now: Timestamp,
) -> Plan {
    let mut out = Plan::default();
    let Some(spec) = ds.spec.as_ref() else {
        return out;
    };
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for p in owned.iter().copied().filter(|p| !pod_state::deleting(p)) {
        if let Some(n) = nodes::target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    for pods in by_node.values_mut() {
        pods.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        });
    }
    let (mut desired, mut current, mut ready, mut avail, mut updated, mut mis) = (0, 0, 0, 0, 0, 0);
    // Per wanted node with a running pod: (node, its pod).
    let mut running: Vec<(&str, &Pod)> = Vec::new();
    let mut lacking = 0usize;
    for node in all_nodes {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let (should_run, keep) = nodes::wants(ds, node);
        let pods = by_node.remove(name).unwrap_or_default();
        if should_run {
            desired += 1;
        }
        if let Some(first) = pods.first() {
            if should_run {
                current += 1;
                ready += usize::from(pod_state::ready(first));
                avail += usize::from(available(first, min_ready, now));
                updated += usize::from(hash_of(first) == Some(hash));
            } else {
                mis += 1;
            }
        }
        if !keep {
            out.delete
                .extend(pods.iter().map(|p| pod_state::name(p).to_string()));
            continue;
        }
        let mut alive = Vec::new();
        for p in pods {
            if pod_state::terminal(p) {
                out.delete.push(pod_state::name(p).to_string());
                if pod_state::phase(p) == "Failed" {
                    out.failed_on.push(name.to_string());
                }
            } else {
                alive.push(p);
            }
        }
        // One pod per node: the oldest stays.
        for extra in alive.iter().skip(1) {
            out.delete.push(pod_state::name(extra).to_string());
        }
        match alive.first() {
            Some(p) => running.push((name, p)),
            None if should_run => {
                out.create.push(name.to_string());
                lacking += 1;
            }
            None => {}
        }
    }
    // Pods on nodes that are gone.
    for pods in by_node.values() {
        out.delete
            .extend(pods.iter().map(|p| pod_state::name(p).to_string()));
    }

    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling {
        let max_unavailable = scaled(
            spec.update_strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.as_ref()),
            desired,
            1,
        )
        .max(1);
        let mut unavailable = lacking;
        let mut old_available = Vec::new();
        for (_, p) in &running {
            let is_new = hash_of(p) == Some(hash);
            let ok = available(p, min_ready, now);
            match (is_new, ok) {
                (true, false) => unavailable += 1,
                (true, true) => {}
                // An old pod that is down anyway goes at once.
                (false, false) => {
                    out.delete.push(pod_state::name(p).to_string());
                    unavailable += 1;
                }
                (false, true) => old_available.push(*p),
            }
        }
        for p in old_available {
            if unavailable >= max_unavailable {
                break;
            }
            out.delete.push(pod_state::name(p).to_string());
            unavailable += 1;
        }
    }

    let mut status = ds.status.clone().unwrap_or_default();
    status.desired_number_scheduled = count(desired);
    status.current_number_scheduled = count(current);
    status.number_ready = count(ready);
    status.number_available = (avail > 0).then(|| count(avail));
    status.updated_number_scheduled = (updated > 0).then(|| count(updated));
    status.number_misscheduled = count(mis);
    status.number_unavailable = (desired > avail).then(|| count(desired - avail));
    status.observed_generation = ds.metadata.generation;
    out.status = status;
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

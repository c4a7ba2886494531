//! The Deployment controller's pure decisions (kube's deployment util,
//! sync.go and recreate.go): which ReplicaSet is the new one, the new
//! ReplicaSet to create, revision numbers and the annotations kube keeps
//! on ReplicaSets, which set to scale on a plain scaling event
//! (proportionally across sets mid-rollout), and history cleanup.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::rollout;
use crate::controllers::job::write::controller_ref;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations kube does not copy onto its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

pub fn recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

pub fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// (maxSurge, maxUnavailable) resolved; Recreate has neither.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    if recreate(d) {
        return (0, 0);
    }
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let pct = IntOrString::String("25%".into());
    let surge = ru.and_then(|r| r.max_surge.clone()).unwrap_or(pct.clone());
    let unav = ru.and_then(|r| r.max_unavailable.clone()).unwrap_or(pct);
    let (s, _) = rollout::fenceposts(&surge, &unav, replicas(d));
    (s, rollout::max_unavailable(&surge, &unav, replicas(d)))
}

/// A ReplicaSet's revision annotation (0 when absent or malformed).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// kube's EqualIgnoreHash: the set's template is the deployment's once
/// the pod-template-hash label is taken off.
pub fn same_template(rs: &ReplicaSet, d: &PodTemplateSpec) -> bool {
    let Some(mut t) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
        return false;
    };
    let mut d = d.clone();
    for tpl in [&mut t, &mut d] {
        if let Some(labels) = tpl.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(HASH_LABEL);
        }
    }
    serde_json::to_value(&t).ok() == serde_json::to_value(&d).ok()
}

/// The new ReplicaSet among `sets` (oldest first): the oldest with the
/// deployment's template, as kube picks it.
pub fn find_new<'a>(d: &Deployment, sets: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    let t = template(d);
    sets.iter().copied().find(|rs| same_template(rs, &t))
}

/// The new ReplicaSet `<deploy>-<hash>` for revision `revision`. The hash
/// is daemonset::revision's template_hash (FNV-32a over the template's
/// JSON and the collision count, SafeEncodeString'd): kube hashes a Go
/// struct dump instead, so the names differ from kube's for the same
/// template, though they have the same shape.
pub fn new_replica_set(d: &Deployment, hash: &str, revision: i64, replicas: i32) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut tpl = spec.template.clone();
    tpl.metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default()
        .insert(HASH_LABEL.into(), hash.into());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_default()
        .insert(HASH_LABEL.into(), hash.into());
    let mut annotations: BTreeMap<String, String> = d
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.extend(replica_annotations(d));
    let name = d.metadata.name.clone().unwrap_or_default();
    let mut rs = ReplicaSet::default();
    rs.metadata.name = Some(format!("{name}-{hash}"));
    rs.metadata.namespace = d.metadata.namespace.clone();
    rs.metadata.labels = tpl.metadata.as_ref().and_then(|m| m.labels.clone());
    rs.metadata.annotations = Some(annotations);
    rs.metadata.owner_references = Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]);
    rs.spec = Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
        replicas: Some(replicas),
        min_ready_seconds: spec.min_ready_seconds,
        selector,
        template: Some(tpl),
    });
    rs
}

/// desired-replicas and max-replicas as kube writes them on each scale.
pub fn replica_annotations(d: &Deployment) -> [(String, String); 2] {
    let (surge, _) = fenceposts(d);
    [
        (DESIRED_REPLICAS.into(), replicas(d).to_string()),
        (MAX_REPLICAS.into(), (replicas(d) + surge).to_string()),
    ]
}

/// The annotations to patch on an existing new set so that it carries
/// revision `next` (kube's SetNewReplicaSetAnnotations): the old number
/// goes to revision-history. None when it already has it.
pub fn revision_bump(rs: &ReplicaSet, next: i64) -> Option<BTreeMap<String, String>> {
    let current = revision(rs);
    if current >= next {
        return None;
    }
    let mut out = BTreeMap::new();
    out.insert(REVISION.into(), next.to_string());
    if current > 0 {
        let history = match annotation(rs, REVISION_HISTORY) {
            Some(h) if !h.is_empty() => format!("{h},{current}"),
            _ => current.to_string(),
        };
        out.insert(REVISION_HISTORY.into(), history);
    }
    Some(out)
}

/// kube's isScalingEvent: a set with replicas was sized for another
/// spec.replicas than the deployment's.
pub fn scaling_event(d: &Deployment, sets: &[&ReplicaSet]) -> bool {
    let want = replicas(d).to_string();
    sets.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .any(|rs| annotation(rs, DESIRED_REPLICAS).is_some_and(|v| v != want))
}

/// The sizes a plain scaling event gives (kube's scale()): the only
/// active set (or the newest when none is active) takes all replicas; a
/// saturated new set leaves the old ones at 0; otherwise, mid-rollout,
/// the change is spread over the sets in proportion to their size, the
/// rounding left over to the largest. `sets` is oldest first, `new` the
/// index of the new set if any. Only sets whose size changes are given.
pub fn scale(d: &Deployment, sets: &[&ReplicaSet], new: Option<usize>) -> Vec<(usize, i32)> {
    let want = replicas(d);
    let active: Vec<usize> = (0..sets.len())
        .filter(|i| rs_replicas(sets[*i]) > 0)
        .collect();
    let only = match active.as_slice() {
        [] => new.or(sets.len().checked_sub(1)),
        [one] => Some(*one),
        _ => None,
    };
    if let Some(i) = only {
        return if rs_replicas(sets[i]) == want {
            Vec::new()
        } else {
            vec![(i, want)]
        };
    }
    if let Some(n) = new {
        let rs = sets[n];
        let saturated = rs_replicas(rs) == want
            && annotation(rs, DESIRED_REPLICAS) == Some(want.to_string().as_str())
            && rs_available(rs) >= want;
        if saturated {
            return active
                .into_iter()
                .filter(|i| *i != n)
                .map(|i| (i, 0))
                .collect();
        }
    }
    if recreate(d) {
        return Vec::new();
    }
    let (surge, _) = fenceposts(d);
    let allowed = if want > 0 { want + surge } else { 0 };
    let sizes: Vec<i32> = sets.iter().map(|rs| rs_replicas(rs)).collect();
    proportional(&sizes, allowed, |i| {
        annotation(sets[i], MAX_REPLICAS).and_then(|v| v.parse().ok())
    })
    .into_iter()
    .enumerate()
    .filter(|(i, s)| *s != sizes[*i])
    .collect()
}

/// kube's proportional scaling: `sizes` (oldest first) grown or shrunk to
/// total `allowed`; each set by its share of the size it was made for
/// (`max_of`, its max-replicas annotation, else the current total), the
/// rounding left over to the largest (newest on a tie when growing,
/// oldest when shrinking).
pub fn proportional(
    sizes: &[i32],
    allowed: i32,
    max_of: impl Fn(usize) -> Option<i32>,
) -> Vec<i32> {
    let total: i32 = sizes.iter().sum();
    let to_add = allowed - total;
    let mut out = sizes.to_vec();
    if to_add == 0 || total == 0 {
        return out;
    }
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    if to_add > 0 {
        order.sort_by(|a, b| sizes[*b].cmp(&sizes[*a]).then(b.cmp(a)));
    } else {
        order.sort_by(|a, b| sizes[*b].cmp(&sizes[*a]).then(a.cmp(b)));
    }
    let mut added = 0;
    for &i in &order {
        if sizes[i] == 0 {
            continue;
        }
        let made_for = max_of(i).filter(|m| *m > 0).unwrap_or(total);
        let target =
            (f64::from(sizes[i]) * f64::from(allowed) / f64::from(made_for)).round() as i32;
        let fraction = target - sizes[i];
        let left = to_add - added;
        let step = if to_add > 0 {
            fraction.clamp(0, left)
        } else {
            fraction.clamp(left, 0)
        };
        out[i] += step;
        added += step;
    }
    if let Some(&first) = order.first() {
        out[first] = (out[first] + to_add - added).max(0);
    }
    out
}

/// kube's cleanupDeployment: the old sets to delete, the oldest revisions
/// first, of those with no replicas left beyond revisionHistoryLimit.
pub fn history_to_delete<'a>(d: &Deployment, old: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| {
            rs.metadata.deletion_timestamp.is_none()
                && rs_replicas(rs) == 0
                && rs.status.as_ref().map_or(0, |s| s.replicas) == 0
        })
        .collect();
    if idle.len() <= limit {
        return Vec::new();
    }
    idle.sort_by_key(|rs| (revision(rs), rs.metadata.creation_timestamp.clone()));
    let n = idle.len() - limit;
    idle.truncate(n);
    idle
}

//! The StatefulSet controller's next actions, pure: from a StatefulSet, its
//! pods (by ordinal) and the two revision hashes, which pods to create (of
//! which revision) and delete, and the status. OrderedReady goes one pod
//! at a time, each waiting for the ones below it to be Running and Ready
//! (scale-down from the highest ordinal, waiting likewise); Parallel acts
//! on all at once. RollingUpdate replaces pods from the highest ordinal
//! down to the partition, one at a time, once all are ready.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;

use crate::controllers::daemonset::revision::HASH_LABEL;
use crate::controllers::job::pods as pod_state;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the pod of this ordinal; `true`: of the update revision.
    Create(i32, bool),
    /// Delete this pod (by name).
    Delete(String),
}

#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub status: StatefulSetStatus,
}

/// The ordinal of a pod named `<set>-<n>`.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
        .filter(|n| *n >= 0)
}

fn hash(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(HASH_LABEL)
        .map(String::as_str)
}

fn healthy(p: &Pod) -> bool {
    pod_state::phase(p) == "Running" && pod_state::ready(p) && !pod_state::deleting(p)
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub fn plan(sts: &StatefulSet, owned: &[&Pod], current: &str, update: &str) -> Plan {
    let mut out = Plan::default();
    let Some(spec) = sts.spec.as_ref() else {
        return out;
    };
    let name = sts.metadata.name.as_deref().unwrap_or("");
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0);
    let by_ordinal: BTreeMap<i32, &Pod> = owned
        .iter()
        .filter_map(|p| Some((ordinal(name, pod_state::name(p))?, *p)))
        .collect();
    // Which revision a new pod of `i` gets: below the partition the current one.
    let update_rev = |i: i32| !rolling || i >= partition || current == update;

    let mut blocked = false;
    for i in 0..replicas {
        match by_ordinal.get(&i) {
            None => {
                out.steps.push(Step::Create(i, update_rev(i)));
                blocked = true;
            }
            Some(p) if pod_state::terminal(p) && !pod_state::deleting(p) => {
                // A failed or finished pod is replaced.
                out.steps.push(Step::Delete(pod_state::name(p).to_string()));
                blocked = true;
            }
            Some(p) if !healthy(p) => blocked = true,
            Some(_) => {}
        }
        if blocked && !parallel {
            break;
        }
    }
    // Scale down: beyond the replicas, the highest first.
    let excess: Vec<&Pod> = by_ordinal
        .range(replicas..)
        .rev()
        .map(|(_, p)| *p)
        .filter(|p| !pod_state::deleting(p))
        .collect();
    if parallel {
        out.steps.extend(
            excess
                .iter()
                .map(|p| Step::Delete(pod_state::name(p).to_string())),
        );
    } else if !blocked && let Some(p) = excess.first() {
        out.steps.push(Step::Delete(pod_state::name(p).to_string()));
        blocked = true;
    }
    // Rolling update: all there and ready, then the highest stale pod.
    let settled = (0..replicas).all(|i| by_ordinal.get(&i).is_some_and(|p| healthy(p)));
    if rolling && !blocked && settled && excess.is_empty() {
        let stale = (partition..replicas)
            .rev()
            .filter_map(|i| by_ordinal.get(&i))
            .find(|p| hash(p) != Some(update));
        if let Some(p) = stale {
            out.steps.push(Step::Delete(pod_state::name(p).to_string()));
        }
    }

    let live: Vec<&Pod> = by_ordinal
        .values()
        .copied()
        .filter(|p| !pod_state::deleting(p))
        .collect();
    let mut status = sts.status.clone().unwrap_or_default();
    status.replicas = count(live.len());
    let ready = live.iter().filter(|p| pod_state::ready(p)).count();
    status.ready_replicas = (ready > 0).then(|| count(ready));
    status.available_replicas = Some(count(ready));
    let updated = live.iter().filter(|p| hash(p) == Some(update)).count();
    let on_current = live.iter().filter(|p| hash(p) == Some(current)).count();
    status.updated_replicas = (updated > 0).then(|| count(updated));
    status.update_revision = Some(format!("{name}-{update}"));
    // Once every replica runs the update, it is the current revision.
    let done = updated == usize::try_from(replicas).unwrap_or(0) && live.len() == updated;
    status.current_revision = Some(format!("{name}-{}", if done { update } else { current }));
    status.current_replicas =
        Some(count(if done { updated } else { on_current })).filter(|n| *n > 0);
    status.observed_generation = sts.metadata.generation;
    status.collision_count.get_or_insert(0);
    out.status = status;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::job::pods::fake;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };

    fn sts(replicas: i32, policy: &str) -> StatefulSet {
        let mut s = StatefulSet::default();
        s.metadata.name = Some("web".into());
        s.spec = Some(StatefulSetSpec {
            replicas: Some(replicas),
            pod_management_policy: Some(policy.into()),
            ..Default::default()
        });
        s
    }

    fn pod(i: i32, ready: bool, rev: &str) -> Pod {
        let mut p = if ready {
            fake::ready_pod(&format!("web-{i}"))
        } else {
            fake::pod(&format!("web-{i}"), "Pending")
        };
        p.metadata.labels = Some([(HASH_LABEL.to_string(), rev.to_string())].into());
        p
    }

    fn run(s: &StatefulSet, pods: &[Pod], current: &str, update: &str) -> Vec<Step> {
        plan(s, &pods.iter().collect::<Vec<_>>(), current, update).steps
    }

    #[test]
    fn ordered_ready_goes_one_at_a_time() {
        let s = sts(3, "OrderedReady");
        assert_eq!(run(&s, &[], "a", "a"), [Step::Create(0, true)]);
        assert_eq!(run(&s, &[pod(0, false, "a")], "a", "a"), []);
        assert_eq!(
            run(&s, &[pod(0, true, "a")], "a", "a"),
            [Step::Create(1, true)]
        );
        let p = [
            pod(0, true, "a"),
            pod(1, true, "a"),
            pod(2, true, "a"),
            pod(3, true, "a"),
            pod(4, true, "a"),
        ];
        assert_eq!(
            run(&s, &p, "a", "a"),
            [Step::Delete("web-4".into())],
            "highest first, one at a time"
        );
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "webby-1"), None);
    }

    #[test]
    fn parallel_acts_at_once() {
        let s = sts(3, "Parallel");
        assert_eq!(
            run(&s, &[], "a", "a"),
            [
                Step::Create(0, true),
                Step::Create(1, true),
                Step::Create(2, true)
            ]
        );
        let st = plan(
            &sts(0, "Parallel"),
            &[&pod(0, true, "a"), &pod(1, false, "a")],
            "a",
            "a",
        );
        assert_eq!(
            st.steps,
            [Step::Delete("web-1".into()), Step::Delete("web-0".into())]
        );
    }

    #[test]
    fn rolling_update_from_the_top_down_to_the_partition() {
        let mut s = sts(3, "OrderedReady");
        let old = [pod(0, true, "a"), pod(1, true, "a"), pod(2, true, "a")];
        assert_eq!(run(&s, &old, "a", "b"), [Step::Delete("web-2".into())]);
        let mixed = [pod(0, true, "a"), pod(1, true, "a"), pod(2, true, "b")];
        assert_eq!(run(&s, &mixed, "a", "b"), [Step::Delete("web-1".into())]);
        let st = plan(&s, &mixed.iter().collect::<Vec<_>>(), "a", "b").status;
        assert_eq!(
            (st.current_replicas, st.updated_replicas),
            (Some(2), Some(1))
        );
        assert_eq!(st.current_revision.as_deref(), Some("web-a"));
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(2),
                max_unavailable: None,
            }),
        });
        assert_eq!(run(&s, &mixed, "a", "b"), [], "below the partition stays");
        assert_eq!(run(&s, &mixed[..2], "a", "b"), [Step::Create(2, true)]);
        assert_eq!(
            run(&s, &mixed[..1], "a", "b"),
            [Step::Create(1, false)],
            "below the partition: current revision"
        );
        let all_new = [pod(0, true, "b"), pod(1, true, "b"), pod(2, true, "b")];
        let st = plan(&s, &all_new.iter().collect::<Vec<_>>(), "a", "b").status;
        assert_eq!(st.current_revision.as_deref(), Some("web-b"));
        assert_eq!(st.ready_replicas, Some(3));
    }
}

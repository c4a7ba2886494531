//! The Deployment controller's rollout arithmetic, pure (kube's
//! deployment util and rolling.go): maxSurge / maxUnavailable resolved
//! against spec.replicas (surge rounds up, unavailable down, never both
//! zero), how far the new ReplicaSet may grow, and how far the old ones may
//! shrink without the available pods falling below replicas -
//! maxUnavailable. The controller loop that applies it is not written yet.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// An int, or a percent of `total` rounded up or down; None for a
/// malformed value (the apiserver's validation refuses those).
pub fn scaled(v: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match v {
        IntOrString::Int(i) => Some(*i),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            let num = pct * i64::from(total);
            let v = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            i32::try_from(v).ok()
        }
    }
}

/// kube's ResolveFenceposts: (maxSurge, maxUnavailable) for `replicas`;
/// both zero would stall a rollout, so maxUnavailable becomes 1.
pub fn fenceposts(surge: &IntOrString, unavailable: &IntOrString, replicas: i32) -> (i32, i32) {
    let s = scaled(surge, replicas, true).unwrap_or(0).max(0);
    let u = scaled(unavailable, replicas, false).unwrap_or(0).max(0);
    if s == 0 && u == 0 { (0, 1) } else { (s, u) }
}

/// kube's MaxUnavailable: capped at replicas, 0 for no replicas.
pub fn max_unavailable(surge: &IntOrString, unavailable: &IntOrString, replicas: i32) -> i32 {
    if replicas <= 0 {
        return 0;
    }
    fenceposts(surge, unavailable, replicas).1.min(replicas)
}

/// kube's NewRSNewReplicas for RollingUpdate: the new set grows by what
/// the surge leaves over the pods all sets have, up to replicas.
pub fn new_rs_replicas(replicas: i32, max_surge: i32, all_rs_replicas: i32, new_rs: i32) -> i32 {
    let max_total = replicas + max_surge;
    if all_rs_replicas >= max_total {
        return new_rs;
    }
    let up = (max_total - all_rs_replicas).min(replicas - new_rs).max(0);
    new_rs + up
}

/// One old ReplicaSet as the scale-down sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldSet {
    pub name: String,
    pub replicas: i32,
    pub available: i32,
}

/// kube's reconcileOldReplicaSets: the new replicas of each old set (in
/// the order given: oldest first). Unhealthy (unavailable) pods of old
/// sets go first, then available ones while more than replicas -
/// maxUnavailable stay available.
pub fn scale_down_old(
    replicas: i32,
    max_unavailable: i32,
    old: &[OldSet],
    new_rs_replicas: i32,
    new_rs_available: i32,
) -> Vec<(String, i32)> {
    let mut sizes: Vec<i32> = old.iter().map(|o| o.replicas).collect();
    if sizes.iter().sum::<i32>() == 0 {
        return Vec::new();
    }
    let all = sizes.iter().sum::<i32>() + new_rs_replicas;
    let min_available = replicas - max_unavailable;
    let new_unavailable = new_rs_replicas - new_rs_available;
    let max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut cleaned = 0;
    for (i, o) in old.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (sizes[i] - o.available).max(0);
        let n = unhealthy.min(max_scaled_down - cleaned);
        sizes[i] -= n;
        cleaned += n;
    }
    let available: i32 = old
        .iter()
        .zip(&sizes)
        .map(|(o, s)| o.available.min(*s))
        .sum::<i32>()
        + new_rs_available;
    if available > min_available {
        let total = available - min_available;
        let mut done = 0;
        for s in sizes.iter_mut() {
            if done >= total {
                break;
            }
            let n = (*s).min(total - done);
            *s -= n;
            done += n;
        }
    }
    old.iter()
        .zip(sizes)
        .filter(|(o, s)| o.replicas != *s)
        .map(|(o, s)| (o.name.clone(), s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn surge_rounds_up_and_unavailable_down() {
        assert_eq!(fenceposts(&pct("25%"), &pct("25%"), 3), (1, 0));
        assert_eq!(fenceposts(&pct("25%"), &pct("25%"), 10), (3, 2));
        assert_eq!(
            fenceposts(&IntOrString::Int(0), &IntOrString::Int(0), 5),
            (0, 1)
        );
        assert_eq!(fenceposts(&pct("0%"), &pct("0%"), 5), (0, 1));
        assert_eq!(max_unavailable(&pct("0%"), &IntOrString::Int(9), 3), 3);
        assert_eq!(max_unavailable(&pct("25%"), &pct("25%"), 0), 0);
        assert_eq!(scaled(&pct("x%"), 3, true), None);
    }

    #[test]
    fn the_new_set_grows_within_the_surge() {
        // 3 replicas, surge 1: 3 old + 0 new -> the new set gets 1.
        assert_eq!(new_rs_replicas(3, 1, 3, 0), 1);
        // Already at 4 pods in all: no growth.
        assert_eq!(new_rs_replicas(3, 1, 4, 1), 1);
        // Never past replicas.
        assert_eq!(new_rs_replicas(3, 5, 3, 2), 3);
    }

    #[test]
    fn old_sets_shrink_keeping_the_minimum_available() {
        let old = |r, a| OldSet {
            name: "old".into(),
            replicas: r,
            available: a,
        };
        // 3 replicas, maxUnavailable 0, surge 1: the new pod not ready yet
        // -> nothing goes; once it is available, one old pod goes.
        assert!(scale_down_old(3, 0, &[old(3, 3)], 1, 0).is_empty());
        assert_eq!(
            scale_down_old(3, 0, &[old(3, 3)], 1, 1),
            [("old".into(), 2)]
        );
        // Unavailable old pods go first, within what the new set's own
        // unavailable pod leaves (4 pods - 2 minimum - 1 = 1).
        assert_eq!(
            scale_down_old(3, 1, &[old(3, 1)], 1, 0),
            [("old".into(), 2)]
        );
    }
}

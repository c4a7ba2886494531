//! A PodDisruptionBudget's arithmetic, after kube's disruption
//! controller: how many pods are expected and how many must stay healthy
//! (minAvailable as a count uses the selected pods; a percentage, or
//! maxUnavailable, uses the scale of the pods' controllers), how many are
//! healthy, and the status with its DisruptionAllowed condition.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::controllers::endpoints::pods;

/// How long an eviction's entry in disruptedPods is honoured.
pub const DISRUPTION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);
pub const CONDITION: &str = "DisruptionAllowed";

/// kube's GetScaledValueFromIntOrPercent: a count as is, a percentage of
/// `total` rounded as asked.
pub fn scaled(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let p: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let num = p * i64::from(total);
            let v = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// The budget needs its pods' controllers' scale (not a plain count).
pub fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.is_some_and(|s| s.max_unavailable.is_some())
        || matches!(
            spec.and_then(|s| s.min_available.as_ref()),
            Some(IntOrString::String(_))
        )
}

/// (expectedPods, desiredHealthy) from `pod_count` selected pods and,
/// when `needs_scale`, the controllers' total `scale`.
pub fn expected(
    pdb: &PodDisruptionBudget,
    pod_count: i32,
    scale: i32,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.as_ref();
    if let Some(mu) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let max = scaled(mu, scale, true)?;
        return Ok((scale, (scale - max).max(0)));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) => Ok((pod_count, *n)),
        Some(pct) => Ok((scale, scaled(pct, scale, true)?)),
        None => Ok((pod_count, 0)),
    }
}

/// The entries of disruptedPods still honoured: pods that exist, are not
/// being deleted, and were evicted less than the timeout ago; and when
/// the earliest of them expires.
pub fn disrupted(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let listed = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
    let mut keep = BTreeMap::new();
    let mut next: Option<Timestamp> = None;
    for p in pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let Some(t) = listed.and_then(|l| l.get(&name)) else {
            continue;
        };
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let expiry = t.0 + DISRUPTION_TIMEOUT;
        if expiry <= now {
            continue;
        }
        next = Some(next.map_or(expiry, |n| n.min(expiry)));
        keep.insert(name, t.clone());
    }
    (keep, next)
}

/// Pods that count as healthy: ready, not being deleted, not just evicted.
pub fn healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pods::ready(p))
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or("")))
        .count() as i32
}

/// The DisruptionAllowed condition, its transition time kept when its
/// status does not change.
fn condition(
    pdb: &PodDisruptionBudget,
    allowed: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Condition {
    let status = if allowed { "True" } else { "False" };
    let old = pdb
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == CONDITION));
    let since = old
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: CONDITION.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: pdb.metadata.generation,
        last_transition_time: since,
    }
}

/// The status of a budget that could be computed.
pub fn status(
    pdb: &PodDisruptionBudget,
    expected: i32,
    desired: i32,
    current: i32,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let allowed = (current - desired).max(0);
    let reason = if allowed > 0 {
        "SufficientPods"
    } else {
        "InsufficientPods"
    };
    PodDisruptionBudgetStatus {
        current_healthy: current,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        observed_generation: pdb.metadata.generation,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        conditions: Some(vec![condition(
            pdb,
            allowed > 0,
            reason,
            String::new(),
            now,
        )]),
    }
}

/// The status of a budget whose sync failed: nothing may be disrupted.
pub fn failed(pdb: &PodDisruptionBudget, why: &str, now: Timestamp) -> PodDisruptionBudgetStatus {
    let mut st = pdb.status.clone().unwrap_or_default();
    st.disruptions_allowed = 0;
    st.observed_generation = pdb.metadata.generation;
    st.conditions = Some(vec![condition(
        pdb,
        false,
        "SyncFailed",
        why.to_string(),
        now,
    )]);
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pdb(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "b", "generation": 3}, "spec": spec}))
            .unwrap()
    }

    fn pod(name: &str, ready: bool) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "status": {"conditions": [
            {"type": "Ready", "status": if ready {"True"} else {"False"}}]}}),
        )
        .unwrap()
    }

    #[test]
    fn three_pods_with_min_available_two_allow_one() {
        let b = pdb(json!({"minAvailable": 2}));
        assert!(!needs_scale(&b));
        let (e, d) = expected(&b, 3, 0).unwrap();
        let (p1, p2, p3) = (pod("a", true), pod("b", true), pod("c", true));
        let cur = healthy(&[&p1, &p2, &p3], &BTreeMap::new());
        let st = status(&b, e, d, cur, BTreeMap::new(), Timestamp::now());
        assert_eq!(
            (
                st.expected_pods,
                st.desired_healthy,
                st.current_healthy,
                st.disruptions_allowed
            ),
            (3, 2, 3, 1)
        );
        assert_eq!(st.observed_generation, Some(3));
        let c = &st.conditions.unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
    }

    #[test]
    fn percentages_and_max_unavailable_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 5, true), Ok(3));
        assert_eq!(scaled(&IntOrString::String("10%".into()), 5, true), Ok(1));
        assert!(scaled(&IntOrString::String("half".into()), 5, true).is_err());
        let b = pdb(json!({"minAvailable": "50%"}));
        assert!(needs_scale(&b));
        assert_eq!(expected(&b, 2, 5), Ok((5, 3)));
        let b = pdb(json!({"maxUnavailable": "30%"}));
        assert_eq!(expected(&b, 4, 4), Ok((4, 2)), "30% of 4 rounds up to 2");
        let b = pdb(json!({"maxUnavailable": 5}));
        assert_eq!(expected(&b, 4, 4), Ok((4, 0)));
    }

    #[test]
    fn unready_deleting_and_evicted_pods_are_not_healthy() {
        let now = Timestamp::now();
        let mut going = pod("going", true);
        going.metadata.deletion_timestamp = Some(Time(now));
        let (ok, evicted, old, unready) = (
            pod("ok", true),
            pod("ev", true),
            pod("old", true),
            pod("un", false),
        );
        let mut b = pdb(json!({"minAvailable": 1}));
        b.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([
                ("ev".to_string(), Time(now - SignedDuration::from_secs(10))),
                (
                    "old".to_string(),
                    Time(now - SignedDuration::from_secs(600)),
                ),
            ])),
            ..Default::default()
        });
        let all = [&ok, &evicted, &old, &unready, &going];
        let (d, next) = disrupted(&b, &all, now);
        assert_eq!(d.keys().collect::<Vec<_>>(), ["ev"]);
        assert!(next.is_some());
        assert_eq!(healthy(&all, &d), 2, "ok and old");
        let st = status(&b, 5, 4, 2, d, now);
        assert_eq!(st.disruptions_allowed, 0);
        assert_eq!(st.conditions.unwrap()[0].reason, "InsufficientPods");
    }
}

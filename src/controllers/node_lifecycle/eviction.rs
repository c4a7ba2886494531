//! Taint-based eviction (kcm's taint eviction controller): a pod on a node
//! with NoExecute taints goes at once when it does not tolerate one of
//! them, else when the shortest tolerationSeconds among the tolerations
//! that match runs out (counted from the taint's timeAdded).

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::controllers::scheduler::taints::{NOT_READY, UNREACHABLE, tolerates};

/// When the pod must be evicted; None: never (every NoExecute taint is
/// tolerated for ever). `default_seconds` stands in for the toleration
/// kube-apiserver's DefaultTolerationSeconds admission adds, for pods that
/// carry none for the not-ready and unreachable taints.
pub fn eviction_time(
    pod: &Pod,
    taints: &[Taint],
    first_seen: Timestamp,
    default_seconds: i64,
) -> Option<Timestamp> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut deadline: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(first_seen);
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let seconds = if matching.is_empty() {
            if taint.key == UNREACHABLE || taint.key == NOT_READY {
                Some(default_seconds)
            } else {
                Some(0)
            }
        } else if matching.iter().all(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            // The shortest bounded toleration wins (kube's getMinTolerationTime).
            matching.iter().filter_map(|t| t.toleration_seconds).min()
        };
        if let Some(s) = seconds {
            let at = added
                .checked_add(SignedDuration::from_secs(s.max(0)))
                .unwrap_or(added);
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
    }
    deadline
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_000_000).unwrap()
    }

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            time_added: Some(Time(t0())),
            value: None,
        }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn toleration_seconds_count_from_time_added() {
        let taints = [taint(UNREACHABLE)];
        let at = |p: &Pod| eviction_time(p, &taints, t0(), 300);
        assert_eq!(
            at(&pod(vec![toleration(UNREACHABLE, Some(30))])),
            Some(t0() + SignedDuration::from_secs(30))
        );
        assert_eq!(at(&pod(vec![toleration(UNREACHABLE, None)])), None);
        // No toleration at all: the admission default applies.
        assert_eq!(
            at(&pod(vec![])),
            Some(t0() + SignedDuration::from_secs(300))
        );
        // Two matching tolerations: the bounded, shorter one.
        let p = pod(vec![
            toleration(UNREACHABLE, Some(60)),
            toleration("", Some(10)),
        ]);
        assert_eq!(at(&p), Some(t0() + SignedDuration::from_secs(10)));
    }

    #[test]
    fn untolerated_taints_evict_at_once() {
        let taints = [taint("example.com/drain")];
        assert_eq!(eviction_time(&pod(vec![]), &taints, t0(), 300), Some(t0()));
        let no_execute_free = [Taint {
            effect: "NoSchedule".into(),
            ..taint("x")
        }];
        assert_eq!(
            eviction_time(&pod(vec![]), &no_execute_free, t0(), 300),
            None
        );
    }
}

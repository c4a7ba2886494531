//! TaintToleration: a node's NoSchedule and NoExecute taints must be
//! tolerated. A node that is not Ready counts as carrying the taint the node
//! lifecycle controller would put on it (not-ready, or unreachable when its
//! Ready condition is Unknown), so that the scheduler keeps off such nodes
//! even where no controller taints them.

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};

use super::status::{Code, Status};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// kube-scheduler 1.35+ names no taint (their values may be private).
pub const ERR_UNTOLERATED: &str = "node(s) had untolerated taint(s)";

/// `toleration` tolerates `taint` (kube's Toleration.ToleratesTaint).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "Exists" => true,
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The node's Ready condition status ("True", "False", "Unknown"), None
/// when it has none.
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The node's taints, plus the NoSchedule taint its readiness implies.
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let implied = match ready_status(node) {
        Some("True") => None,
        Some("Unknown") => Some(UNREACHABLE),
        _ => Some(NOT_READY),
    };
    if let Some(key) = implied
        && !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
    {
        taints.push(Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    taints
}

pub fn filter(tolerations: &[Toleration], node: &Node) -> Option<Status> {
    let untolerated = effective_taints(node).iter().any(|t| {
        matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(tolerations, t)
    });
    untolerated.then(|| Status::new(Code::Unresolvable, ERR_UNTOLERATED))
}

/// NodeUnschedulable: a cordoned node takes only pods that tolerate the
/// unschedulable taint.
pub const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";

pub fn filter_unschedulable(tolerations: &[Toleration], node: &Node) -> Option<Status> {
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let taint = Taint {
        key: UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    (cordoned && !tolerated(tolerations, &taint))
        .then(|| Status::new(Code::Unresolvable, ERR_UNSCHEDULABLE))
}

/// TaintToleration's score input: PreferNoSchedule taints not tolerated.
pub fn intolerable_prefer_no_schedule(tolerations: &[Toleration], node: &Node) -> i64 {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(tolerations, t))
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: Some(value.into()),
            effect: Some(effect.into()),
            ..Default::default()
        }
    }

    pub fn node(ready: Option<&str>, taints: Vec<Taint>, unschedulable: bool) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(taints),
                unschedulable: Some(unschedulable),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn toleration_matching() {
        let t = taint("gpu", "yes", "NoSchedule");
        assert!(tolerates(
            &toleration("gpu", "Equal", "yes", "NoSchedule"),
            &t
        ));
        assert!(!tolerates(
            &toleration("gpu", "Equal", "no", "NoSchedule"),
            &t
        ));
        assert!(tolerates(&toleration("gpu", "Exists", "", ""), &t));
        assert!(!tolerates(
            &toleration("gpu", "Exists", "", "NoExecute"),
            &t
        ));
        assert!(tolerates(&toleration("", "Exists", "", ""), &t));
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &t));
    }

    #[test]
    fn taints_filter_no_schedule_and_no_execute_only() {
        let ready = |t| node(Some("True"), vec![t], false);
        assert!(filter(&[], &ready(taint("a", "b", "NoSchedule"))).is_some());
        assert!(filter(&[], &ready(taint("a", "b", "NoExecute"))).is_some());
        assert!(filter(&[], &ready(taint("a", "b", "PreferNoSchedule"))).is_none());
        let tol = [toleration("a", "Equal", "b", "")];
        let status = filter(&[], &ready(taint("a", "b", "NoSchedule"))).unwrap();
        assert_eq!(status.reasons, vec![ERR_UNTOLERATED.to_string()]);
        assert!(filter(&tol, &ready(taint("a", "b", "NoSchedule"))).is_none());
        assert_eq!(
            intolerable_prefer_no_schedule(&[], &ready(taint("a", "b", "PreferNoSchedule"))),
            1
        );
    }

    #[test]
    fn readiness_implies_a_taint() {
        assert!(filter(&[], &node(Some("True"), vec![], false)).is_none());
        assert!(filter(&[], &node(Some("False"), vec![], false)).is_some());
        assert!(filter(&[], &node(None, vec![], false)).is_some());
        let unknown = node(Some("Unknown"), vec![], false);
        assert_eq!(effective_taints(&unknown)[0].key, UNREACHABLE);
        let tol = [toleration(UNREACHABLE, "Exists", "", "NoSchedule")];
        assert!(filter(&tol, &unknown).is_none());
    }

    #[test]
    fn cordoned_nodes() {
        let n = node(Some("True"), vec![], true);
        assert_eq!(
            filter_unschedulable(&[], &n).unwrap().reasons[0],
            ERR_UNSCHEDULABLE
        );
        let tol = [toleration(UNSCHEDULABLE, "Exists", "", "NoSchedule")];
        assert!(filter_unschedulable(&tol, &n).is_none());
        assert!(filter_unschedulable(&[], &node(Some("True"), vec![], false)).is_none());
    }
}

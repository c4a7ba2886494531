//! What the controller does to one node, decided without I/O: whether its
//! conditions go Unknown, and which taints it should carry.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

pub use crate::controllers::scheduler::taints::{NOT_READY, UNREACHABLE, ready_status};
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
pub const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
pub const REASON_NEVER: &str = "NodeStatusNeverUpdated";
pub const MESSAGE_NEVER: &str = "Kubelet never posted node status.";

/// The conditions kcm turns Unknown on a silent node.
const CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

pub fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The strategic-merge status patch that marks a silent node's conditions
/// Unknown; None when they already are.
pub fn unknown_conditions_patch(node: &Node, now: &Time) -> Option<Value> {
    let existing = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let mut patched = Vec::new();
    for ty in CONDITIONS {
        match existing.iter().find(|c| c.type_ == *ty) {
            Some(c) if c.status == "Unknown" => {}
            Some(_) => patched.push(json!({
                "type": ty, "status": "Unknown", "reason": REASON_UNKNOWN,
                "message": MESSAGE_UNKNOWN, "lastTransitionTime": now,
            })),
            None => patched.push(json!({
                "type": ty, "status": "Unknown", "reason": REASON_NEVER,
                "message": MESSAGE_NEVER, "lastTransitionTime": now, "lastHeartbeatTime": now,
            })),
        }
    }
    (!patched.is_empty()).then(|| json!({"status": {"conditions": patched}}))
}

/// The node's taints with the unreachable pair added (stale) or removed
/// (fresh); None when nothing changes. The NoExecute taint carries its
/// timeAdded, which starts the pods' toleration clocks.
pub fn desired_taints(node: &Node, stale: bool, now: &Time) -> Option<Vec<Taint>> {
    let current = taints(node);
    let has = |effect: &str| {
        current
            .iter()
            .any(|t| t.key == UNREACHABLE && t.effect == effect)
    };
    if stale {
        if has("NoSchedule") && has("NoExecute") {
            return None;
        }
        let mut out: Vec<Taint> = current
            .iter()
            .filter(|t| t.key != UNREACHABLE && t.key != NOT_READY)
            .cloned()
            .collect();
        for effect in ["NoSchedule", "NoExecute"] {
            let kept = current
                .iter()
                .find(|t| t.key == UNREACHABLE && t.effect == effect)
                .cloned();
            out.push(kept.unwrap_or_else(|| Taint {
                key: UNREACHABLE.into(),
                effect: effect.into(),
                time_added: (effect == "NoExecute").then(|| now.clone()),
                value: None,
            }));
        }
        Some(out)
    } else {
        if !has("NoSchedule") && !has("NoExecute") {
            return None;
        }
        Some(
            current
                .iter()
                .filter(|t| t.key != UNREACHABLE)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_000_000).unwrap())
    }

    pub fn node(ready: Option<&str>, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|s| {
                    vec![
                        NodeCondition {
                            type_: "Ready".into(),
                            status: s.into(),
                            ..Default::default()
                        },
                        NodeCondition {
                            type_: "MemoryPressure".into(),
                            status: "False".into(),
                            ..Default::default()
                        },
                    ]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn silent_nodes_go_unknown_once() {
        let patch = unknown_conditions_patch(&node(Some("True"), vec![]), &now()).unwrap();
        let conds = patch["status"]["conditions"].as_array().unwrap();
        let ready = conds.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "Unknown");
        assert_eq!(ready["reason"], REASON_UNKNOWN);
        assert_eq!(ready["message"], MESSAGE_UNKNOWN);
        assert!(
            conds
                .iter()
                .any(|c| c["type"] == "MemoryPressure" && c["status"] == "Unknown")
        );
        // DiskPressure was never posted.
        let disk = conds.iter().find(|c| c["type"] == "DiskPressure").unwrap();
        assert_eq!(disk["reason"], REASON_NEVER);
        let mut all_unknown = node(Some("Unknown"), vec![]);
        for c in all_unknown
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
        {
            c.status = "Unknown".into();
        }
        for ty in ["DiskPressure", "PIDPressure"] {
            all_unknown
                .status
                .as_mut()
                .unwrap()
                .conditions
                .as_mut()
                .unwrap()
                .push(NodeCondition {
                    type_: ty.into(),
                    status: "Unknown".into(),
                    ..Default::default()
                });
        }
        assert!(unknown_conditions_patch(&all_unknown, &now()).is_none());
    }

    #[test]
    fn unreachable_taints_come_and_go() {
        let other = Taint {
            key: "dedicated".into(),
            value: Some("x".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let n = node(Some("True"), vec![other.clone()]);
        assert!(desired_taints(&n, false, &now()).is_none());
        let stale = desired_taints(&n, true, &now()).unwrap();
        assert_eq!(stale.len(), 3);
        assert!(stale.contains(&other));
        let ne = stale.iter().find(|t| t.effect == "NoExecute").unwrap();
        assert_eq!(
            (ne.key.as_str(), ne.time_added.clone()),
            (UNREACHABLE, Some(now()))
        );
        let tainted = node(Some("Unknown"), stale.clone());
        assert!(desired_taints(&tainted, true, &now()).is_none());
        assert_eq!(
            desired_taints(&tainted, false, &now()).unwrap(),
            vec![other]
        );
    }
}

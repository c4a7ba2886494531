//! NodeAffinity: spec.nodeSelector and required node affinity filter;
//! preferred node affinity scores (the sum of the matching terms' weights).

use k8s_openapi::api::core::v1::Pod;

use super::labels::{Labels, term_matches};
use super::status::{Code, Status};

pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";

/// The pod's nodeSelector and required node affinity both hold on the node.
pub fn matches(pod: &Pod, node_name: &str, labels: &Labels) -> bool {
    let Some(spec) = &pod.spec else {
        return true;
    };
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        // Terms are ORed; no terms at all matches no node.
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node_name, labels)),
        None => true,
    }
}

pub fn filter(pod: &Pod, node_name: &str, labels: &Labels) -> Option<Status> {
    (!matches(pod, node_name, labels)).then(|| Status::new(Code::Unresolvable, ERR_REASON_POD))
}

/// The raw preferred-affinity score of a node (normalized across nodes by
/// the caller, as kube's DefaultNormalizeScore does).
pub fn preferred_score(pod: &Pod, node_name: &str, labels: &Labels) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|p| p.weight != 0 && term_matches(&p.preference, node_name, labels))
        .map(|p| i64::from(p.weight))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
        PreferredSchedulingTerm,
    };

    fn term(key: &str, op: &str, values: &[&str]) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|s| s.to_string()).collect()),
            }]),
            match_fields: None,
        }
    }

    fn pod(selector: &[(&str, &str)], affinity: Option<NodeAffinity>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_selector: (!selector.is_empty()).then(|| {
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                affinity: affinity.map(|a| Affinity {
                    node_affinity: Some(a),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn node_selector() {
        let p = pod(&[("disktype", "ssd")], None);
        assert!(filter(&p, "n", &labels(&[("disktype", "ssd")])).is_none());
        let s = filter(&p, "n", &labels(&[("disktype", "hdd")])).unwrap();
        assert_eq!(s.reasons[0], ERR_REASON_POD);
        assert_eq!(s.code, Code::Unresolvable);
        assert!(filter(&pod(&[], None), "n", &Labels::new()).is_none());
    }

    #[test]
    fn required_affinity_terms_are_ored() {
        let a = NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![term("zone", "In", &["a"]), term("zone", "In", &["b"])],
            }),
            ..Default::default()
        };
        let p = pod(&[], Some(a));
        assert!(matches(&p, "n", &labels(&[("zone", "b")])));
        assert!(!matches(&p, "n", &labels(&[("zone", "c")])));
        let none = NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![],
            }),
            ..Default::default()
        };
        assert!(!matches(
            &pod(&[], Some(none)),
            "n",
            &labels(&[("zone", "b")])
        ));
    }

    #[test]
    fn preferred_weights_add_up() {
        let a = NodeAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                PreferredSchedulingTerm {
                    weight: 10,
                    preference: term("zone", "In", &["a"]),
                },
                PreferredSchedulingTerm {
                    weight: 5,
                    preference: term("disk", "Exists", &[]),
                },
            ]),
            ..Default::default()
        };
        let p = pod(&[], Some(a));
        assert_eq!(
            preferred_score(&p, "n", &labels(&[("zone", "a"), ("disk", "x")])),
            15
        );
        assert_eq!(preferred_score(&p, "n", &labels(&[("disk", "x")])), 5);
        assert_eq!(preferred_score(&p, "n", &Labels::new()), 0);
    }
}

//! PodTopologySpread (whenUnsatisfiable: DoNotSchedule): placing the pod
//! must not make the count of matching pods in its domain exceed the
//! emptiest domain's by more than maxSkew. Domains come from the nodes that
//! carry the topology key and pass the pod's node affinity (kube's default
//! nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::labels::{Labels, selector_matches};
use super::pod_affinity::Placed;
use super::status::{Code, Status};
use super::{pod_labels, pod_namespace};

pub const ERR_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

struct Constraint {
    key: String,
    max_skew: i64,
    min_domains: usize,
    self_match: bool,
    /// Matching pods per domain value (every eligible domain present).
    counts: BTreeMap<String, i64>,
}

pub struct State {
    constraints: Vec<Constraint>,
}

/// The selector with matchLabelKeys folded in: the pod's own values of
/// those keys are required too.
fn effective_selector(c: &TopologySpreadConstraint, pod: &Pod) -> Option<LabelSelector> {
    let mut sel = c.label_selector.clone()?;
    for key in c.match_label_keys.iter().flatten() {
        if let Some(v) = pod_labels(pod).get(key) {
            sel.match_expressions
                .get_or_insert_with(Vec::new)
                .push(LabelSelectorRequirement {
                    key: key.clone(),
                    operator: "In".into(),
                    values: Some(vec![v.clone()]),
                });
        }
    }
    Some(sel)
}

impl State {
    /// `eligible_nodes`: the labels of nodes that pass the pod's node
    /// affinity; `placed`: pods on nodes, with their nodes' labels.
    pub fn new(pod: &Pod, eligible_nodes: &[&Labels], placed: &[Placed<'_>]) -> Self {
        let spec_constraints = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        let ns = pod_namespace(pod);
        let constraints = spec_constraints
            .iter()
            .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
            .map(|c| {
                // No selector: the constraint counts no pod.
                let selector = effective_selector(c, pod).unwrap_or(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "app".into(),
                        operator: "Bogus".into(),
                        values: None,
                    }]),
                    ..Default::default()
                });
                let mut counts: BTreeMap<String, i64> = eligible_nodes
                    .iter()
                    .filter_map(|l| l.get(&c.topology_key))
                    .map(|v| (v.clone(), 0))
                    .collect();
                for p in placed {
                    let Some(v) = p.node_labels.get(&c.topology_key) else {
                        continue;
                    };
                    let Some(n) = counts.get_mut(v) else {
                        continue;
                    };
                    if pod_namespace(p.pod) == ns
                        && p.pod.metadata.deletion_timestamp.is_none()
                        && selector_matches(&selector, pod_labels(p.pod))
                    {
                        *n += 1;
                    }
                }
                Constraint {
                    key: c.topology_key.clone(),
                    max_skew: i64::from(c.max_skew.max(1)),
                    min_domains: c.min_domains.unwrap_or(1).max(1) as usize,
                    self_match: selector_matches(&selector, pod_labels(pod)),
                    counts,
                }
            })
            .collect();
        Self { constraints }
    }

    pub fn filter(&self, node_labels: &Labels) -> Option<Status> {
        for c in &self.constraints {
            let Some(v) = node_labels.get(&c.key) else {
                return Some(Status::new(Code::Unresolvable, ERR_MISSING_LABEL));
            };
            // Fewer domains than minDomains: the global minimum is 0.
            let min = if c.counts.len() < c.min_domains {
                0
            } else {
                c.counts.values().copied().min().unwrap_or(0)
            };
            let here = c.counts.get(v).copied().unwrap_or(0);
            if here + i64::from(c.self_match) - min > c.max_skew {
                return Some(Status::new(Code::Unschedulable, ERR_CONSTRAINTS));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::scheduler::fixtures::{HOST, app_pod, app_selector, host};
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(app: &str, spread: Vec<TopologySpreadConstraint>) -> Pod {
        app_pod(
            app,
            PodSpec {
                topology_spread_constraints: Some(spread),
                ..Default::default()
            },
        )
    }

    fn spread(max_skew: i32, when: &str) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            max_skew,
            topology_key: HOST.into(),
            when_unsatisfiable: when.into(),
            label_selector: Some(app_selector("web")),
            ..Default::default()
        }
    }

    #[test]
    fn skew_on_hostname() {
        let (a, b) = (host("a"), host("b"));
        let w1 = pod("web", vec![]);
        let other = pod("db", vec![]);
        let placed = [
            Placed {
                pod: &w1,
                node_labels: &a,
            },
            Placed {
                pod: &other,
                node_labels: &b,
            },
        ];
        let p = pod("web", vec![spread(1, "DoNotSchedule")]);
        let state = State::new(&p, &[&a, &b], &placed);
        assert_eq!(state.filter(&a).unwrap().reasons[0], ERR_CONSTRAINTS);
        assert!(state.filter(&b).is_none());
        let s = state.filter(&Labels::new()).unwrap();
        assert_eq!(
            (s.code, s.reasons[0].as_str()),
            (Code::Unresolvable, ERR_MISSING_LABEL)
        );
        // maxSkew 2 allows a second pod on a.
        let p = pod("web", vec![spread(2, "DoNotSchedule")]);
        assert!(State::new(&p, &[&a, &b], &placed).filter(&a).is_none());
        // ScheduleAnyway never filters.
        let p = pod("web", vec![spread(1, "ScheduleAnyway")]);
        assert!(State::new(&p, &[&a, &b], &placed).filter(&a).is_none());
    }

    #[test]
    fn min_domains_and_ineligible_nodes() {
        let a = host("a");
        let w1 = pod("web", vec![]);
        let placed = [Placed {
            pod: &w1,
            node_labels: &a,
        }];
        let mut c = spread(1, "DoNotSchedule");
        c.min_domains = Some(2);
        let p = pod("web", vec![c]);
        // Only one domain exists: the minimum counts as 0, so a is full.
        assert!(State::new(&p, &[&a], &placed).filter(&a).is_some());
        let p = pod("web", vec![spread(1, "DoNotSchedule")]);
        assert!(State::new(&p, &[&a], &placed).filter(&a).is_none());
    }
}

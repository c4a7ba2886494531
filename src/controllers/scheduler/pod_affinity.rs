//! InterPodAffinity (required terms): the pod's affinity needs a matching
//! pod in the node's topology domain, its anti-affinity needs none there,
//! and no existing pod's anti-affinity may reject it.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use super::labels::{Labels, selector_matches};
use super::status::{Code, Status};
use super::{pod_labels, pod_namespace};

pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// A pod placed on a node, with the labels of that node.
pub struct Placed<'a> {
    pub pod: &'a Pod,
    pub node_labels: &'a Labels,
}

type Pair = (String, String);

/// The term applies to `other` when `other` is in the term's namespaces
/// and matches its selector. `owner_ns` is the namespace of the pod that
/// carries the term. A namespaceSelector is matched against the labels
/// every namespace carries (`kubernetes.io/metadata.name`).
fn term_matches(term: &PodAffinityTerm, owner_ns: &str, other: &Pod) -> bool {
    let ns = pod_namespace(other);
    let mut in_ns = term.namespaces.iter().flatten().any(|n| n == ns);
    match &term.namespace_selector {
        Some(sel) => {
            let ns_labels =
                Labels::from([("kubernetes.io/metadata.name".to_string(), ns.to_string())]);
            in_ns |= selector_matches(sel, &ns_labels);
        }
        None if term.namespaces.as_ref().is_none_or(|n| n.is_empty()) => in_ns = ns == owner_ns,
        None => {}
    }
    // A missing selector matches no pod.
    in_ns
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, pod_labels(other)))
}

fn required_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

fn required_anti_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

/// What the filter needs, computed once per pod per cycle (kube's PreFilter).
pub struct State<'p> {
    affinity: &'p [PodAffinityTerm],
    anti_affinity: &'p [PodAffinityTerm],
    /// Domains holding a pod that matches all affinity terms.
    affinity_counts: HashMap<Pair, usize>,
    /// Domains holding a pod that matches an anti-affinity term.
    anti_counts: BTreeSet<Pair>,
    /// Domains where an existing pod's anti-affinity rejects this pod.
    existing_anti: BTreeSet<Pair>,
    matches_own_terms: bool,
}

impl<'p> State<'p> {
    pub fn new(pod: &'p Pod, placed: &[Placed<'_>]) -> Self {
        let ns = pod_namespace(pod);
        let affinity = required_affinity(pod);
        let anti_affinity = required_anti_affinity(pod);
        let mut affinity_counts = HashMap::new();
        let mut anti_counts = BTreeSet::new();
        let mut existing_anti = BTreeSet::new();
        for p in placed {
            let value = |key: &str| p.node_labels.get(key).map(|v| (key.to_string(), v.clone()));
            if !affinity.is_empty() && affinity.iter().all(|t| term_matches(t, ns, p.pod)) {
                for t in affinity {
                    if let Some(pair) = value(&t.topology_key) {
                        *affinity_counts.entry(pair).or_default() += 1;
                    }
                }
            }
            for t in anti_affinity {
                if term_matches(t, ns, p.pod)
                    && let Some(pair) = value(&t.topology_key)
                {
                    anti_counts.insert(pair);
                }
            }
            for t in required_anti_affinity(p.pod) {
                if term_matches(t, pod_namespace(p.pod), pod)
                    && let Some(pair) = value(&t.topology_key)
                {
                    existing_anti.insert(pair);
                }
            }
        }
        let matches_own_terms = affinity.iter().all(|t| term_matches(t, ns, pod));
        Self {
            affinity,
            anti_affinity,
            affinity_counts,
            anti_counts,
            existing_anti,
            matches_own_terms,
        }
    }

    fn satisfies_affinity(&self, node_labels: &Labels) -> bool {
        let mut pods_exist = true;
        for t in self.affinity {
            let Some(v) = node_labels.get(&t.topology_key) else {
                // Every topology label must exist on the node.
                return false;
            };
            if self
                .affinity_counts
                .get(&(t.topology_key.clone(), v.clone()))
                .is_none_or(|n| *n == 0)
            {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself may go anywhere
        // the topology labels are, or it would wait forever.
        pods_exist || (self.affinity_counts.is_empty() && self.matches_own_terms)
    }

    fn in_domain(set: &BTreeSet<Pair>, node_labels: &Labels) -> bool {
        set.iter().any(|(k, v)| node_labels.get(k) == Some(v))
    }

    pub fn filter(&self, node_labels: &Labels) -> Option<Status> {
        if !self.satisfies_affinity(node_labels) {
            return Some(Status::new(Code::Unresolvable, ERR_AFFINITY));
        }
        let anti_hit = self.anti_affinity.iter().any(|t| {
            node_labels.get(&t.topology_key).is_some_and(|v| {
                self.anti_counts
                    .contains(&(t.topology_key.clone(), v.clone()))
            })
        });
        if anti_hit {
            return Some(Status::new(Code::Unschedulable, ERR_ANTI_AFFINITY));
        }
        if Self::in_domain(&self.existing_anti, node_labels) {
            return Some(Status::new(Code::Unschedulable, ERR_EXISTING_ANTI_AFFINITY));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::scheduler::fixtures::{HOST, app_pod, app_selector, host};
    use k8s_openapi::api::core::v1::{Affinity, PodAffinity, PodAntiAffinity, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn term(app: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(app_selector(app)),
            topology_key: HOST.into(),
            ..Default::default()
        }
    }

    fn pod(app: &str, affinity: Vec<PodAffinityTerm>, anti: Vec<PodAffinityTerm>) -> Pod {
        app_pod(
            app,
            PodSpec {
                affinity: Some(Affinity {
                    pod_affinity: Some(PodAffinity {
                        required_during_scheduling_ignored_during_execution: Some(affinity),
                        ..Default::default()
                    }),
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(anti),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }

    #[test]
    fn affinity_follows_the_matching_pod() {
        let (a, b) = (host("a"), host("b"));
        let db = pod("db", vec![], vec![]);
        let placed = [Placed {
            pod: &db,
            node_labels: &a,
        }];
        let web = pod("web", vec![term("db")], vec![]);
        let state = State::new(&web, &placed);
        assert!(state.filter(&a).is_none());
        let s = state.filter(&b).unwrap();
        assert_eq!(
            (s.code, s.reasons[0].as_str()),
            (Code::Unresolvable, ERR_AFFINITY)
        );
        // A node without the topology label never satisfies affinity.
        assert!(state.filter(&Labels::new()).is_some());
        // Nothing matches anywhere: a pod that matches its own term may go.
        let first = pod("cache", vec![term("cache")], vec![]);
        assert!(State::new(&first, &placed).filter(&b).is_none());
        let lonely = pod("web", vec![term("cache")], vec![]);
        assert!(State::new(&lonely, &placed).filter(&b).is_some());
    }

    #[test]
    fn anti_affinity_both_ways() {
        let (a, b) = (host("a"), host("b"));
        let web1 = pod("web", vec![], vec![]);
        let placed = [Placed {
            pod: &web1,
            node_labels: &a,
        }];
        let web2 = pod("web", vec![], vec![term("web")]);
        let state = State::new(&web2, &placed);
        assert_eq!(state.filter(&a).unwrap().reasons[0], ERR_ANTI_AFFINITY);
        assert!(state.filter(&b).is_none());
        // The existing pod's rule keeps a plain newcomer away.
        let guard = pod("guard", vec![], vec![term("web")]);
        let placed = [Placed {
            pod: &guard,
            node_labels: &a,
        }];
        let plain = pod("web", vec![], vec![]);
        let state = State::new(&plain, &placed);
        let s = state.filter(&a).unwrap();
        assert_eq!(
            (s.code, s.reasons[0].as_str()),
            (Code::Unschedulable, ERR_EXISTING_ANTI_AFFINITY)
        );
        assert!(state.filter(&b).is_none());
    }

    #[test]
    fn terms_look_in_their_namespaces() {
        let a = host("a");
        let mut other = pod("db", vec![], vec![]);
        other.metadata.namespace = Some("prod".into());
        let placed = [Placed {
            pod: &other,
            node_labels: &a,
        }];
        let web = pod("web", vec![term("db")], vec![]);
        assert!(State::new(&web, &placed).filter(&a).is_some());
        let mut t = term("db");
        t.namespaces = Some(vec!["prod".into()]);
        let web = pod("web", vec![t], vec![]);
        assert!(State::new(&web, &placed).filter(&a).is_none());
        let mut t = term("db");
        t.namespace_selector = Some(LabelSelector::default());
        let web = pod("web", vec![t], vec![]);
        assert!(State::new(&web, &placed).filter(&a).is_none());
    }
}

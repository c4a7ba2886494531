//! One scheduling cycle over a snapshot of nodes and placed pods, with no
//! I/O: run the filters in kube-scheduler's order on every node, score the
//! nodes that pass, and pick the best; or explain why none fits.

use k8s_openapi::api::core::v1::{Node, Pod};

use super::labels::Labels;
use super::pod_affinity::{self, Placed};
use super::resources::{self, Resources, Used};
use super::status::{self, Status};
use super::{node_affinity, ports, spread, taints};
use super::{node_labels, pod_uid};

/// A node and the pods bound (or assumed bound) to it.
pub struct NodeInfo<'a> {
    pub node: &'a Node,
    pub name: &'a str,
    pub labels: &'a Labels,
    pub pods: Vec<&'a Pod>,
    pub allocatable: Resources,
    pub used: Used,
}

pub struct Snapshot<'a> {
    pub nodes: Vec<NodeInfo<'a>>,
}

fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl<'a> Snapshot<'a> {
    /// `pods`: every pod with a nodeName (bound or assumed); terminated
    /// ones hold no resources and are left out.
    pub fn new(
        nodes: impl IntoIterator<Item = &'a Node>,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Self {
        let mut infos: Vec<NodeInfo<'a>> = nodes
            .into_iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .map(|n| NodeInfo {
                node: n,
                name: n.metadata.name.as_deref().unwrap_or(""),
                labels: node_labels(n),
                pods: vec![],
                allocatable: resources::allocatable(n),
                used: Used::default(),
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(b.name));
        for p in pods {
            if is_terminated(p) {
                continue;
            }
            let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            if let Ok(i) = infos.binary_search_by(|n| n.name.cmp(node)) {
                infos[i].pods.push(p);
                infos[i].used.add(p);
            }
        }
        Self { nodes: infos }
    }

    fn placed(&self) -> Vec<Placed<'a>> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.pods.iter().map(|p| Placed {
                    pod: p,
                    node_labels: n.labels,
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Bind to this node.
    Bind(String),
    /// No node fits: kube-scheduler's FailedScheduling message.
    Unschedulable(String),
}

/// The filters, in the default profile's order; the first that fails
/// decides the node's status.
fn filter_node(
    pod: &Pod,
    info: &NodeInfo<'_>,
    request: &Resources,
    host_ports: &[(String, String, i32)],
    spread: &spread::State,
    affinity: &pod_affinity::State<'_>,
) -> Option<Status> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    taints::filter_unschedulable(tolerations, info.node)
        .or_else(|| taints::filter(tolerations, info.node))
        .or_else(|| node_affinity::filter(pod, info.name, info.labels))
        .or_else(|| ports::filter(host_ports, &info.pods))
        .or_else(|| resources::filter(request, &info.allocatable, &info.used))
        .or_else(|| spread.filter(info.labels))
        .or_else(|| affinity.filter(info.labels))
}

/// Scale raw scores to 0..=100 by the largest (kube's DefaultNormalizeScore);
/// `reverse` for scores where less is better.
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| {
            if max == 0 {
                return if reverse { resources::MAX_SCORE } else { 0 };
            }
            let v = s * resources::MAX_SCORE / max;
            if reverse { resources::MAX_SCORE - v } else { v }
        })
        .collect()
}

/// Weighted sum of the scores, with the default profile's weights.
fn score(pod: &Pod, feasible: &[&NodeInfo<'_>]) -> Vec<i64> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let affinity: Vec<i64> = feasible
        .iter()
        .map(|n| node_affinity::preferred_score(pod, n.name, n.labels))
        .collect();
    let taint: Vec<i64> = feasible
        .iter()
        .map(|n| taints::intolerable_prefer_no_schedule(tolerations, n.node))
        .collect();
    let affinity = normalize(&affinity, false);
    let taint = normalize(&taint, true);
    feasible
        .iter()
        .enumerate()
        .map(|(i, n)| {
            resources::least_allocated(pod, &n.allocatable, &n.used)
                + resources::balanced_allocation(pod, &n.allocatable, &n.used)
                + 2 * affinity[i]
                + 3 * taint[i]
        })
        .collect()
}

/// Schedule one pod.
pub fn schedule(pod: &Pod, snapshot: &Snapshot<'_>) -> Outcome {
    let request = resources::pod_requests(pod);
    let host_ports = ports::host_ports(pod);
    let placed = snapshot.placed();
    let eligible: Vec<&Labels> = snapshot
        .nodes
        .iter()
        .filter(|n| node_affinity::matches(pod, n.name, n.labels))
        .map(|n| n.labels)
        .collect();
    let spread = spread::State::new(pod, &eligible, &placed);
    let affinity = pod_affinity::State::new(pod, &placed);
    let mut feasible = Vec::new();
    let mut failed = Vec::new();
    for info in &snapshot.nodes {
        match filter_node(pod, info, &request, &host_ports, &spread, &affinity) {
            None => feasible.push(info),
            Some(s) => failed.push(s),
        }
    }
    if feasible.is_empty() {
        let never = pod
            .spec
            .as_ref()
            .and_then(|s| s.preemption_policy.as_deref())
            == Some("Never");
        return Outcome::Unschedulable(status::fit_error(snapshot.nodes.len(), &failed, never));
    }
    let scores = score(pod, &feasible);
    let best = scores.iter().copied().max().unwrap_or(0);
    let top: Vec<&NodeInfo<'_>> = feasible
        .iter()
        .zip(&scores)
        .filter(|(_, s)| **s == best)
        .map(|(n, _)| *n)
        .collect();
    // Ties go to a node picked by the pod's uid: spread across pods, yet
    // the same answer for the same pod (kube picks at random).
    let pick = pod_uid(pod)
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    Outcome::Bind(top[pick % top.len()].name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, NodeCondition, NodeSpec, NodeStatus, PodSpec, ResourceRequirements, Taint,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cpu: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        let mut l: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert("kubernetes.io/hostname".into(), name.into());
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(l),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: Some(
                    [("cpu", cpu), ("memory", "4Gi"), ("pods", "110")]
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pod(name: &str, cpu: &str, node: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(String::from),
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, value: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        }
    }

    #[test]
    fn picks_the_least_loaded_node() {
        let nodes = [node("a", "2", &[], vec![]), node("b", "2", &[], vec![])];
        let busy = pod("busy", "1", Some("a"));
        let snap = Snapshot::new(&nodes, [&busy]);
        assert_eq!(
            schedule(&pod("p", "500m", None), &snap),
            Outcome::Bind("b".into())
        );
    }

    #[test]
    fn the_message_counts_each_nodes_first_failure() {
        let nodes = [
            node("a", "1", &[], vec![]),
            node("b", "8", &[], vec![taint("key", "value")]),
        ];
        let snap = Snapshot::new(&nodes, []);
        assert_eq!(
            schedule(&pod("p", "2", None), &snap),
            Outcome::Unschedulable(
                "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s). \
                 no new claims to deallocate, preemption: 0/2 nodes are available: \
                 2 Preemption is not helpful for scheduling."
                    .into()
            )
        );
        // Within the node's allocatable but taken: eviction might help.
        let busy = pod("busy", "800m", Some("a"));
        let snap = Snapshot::new(&nodes, [&busy]);
        assert_eq!(
            schedule(&pod("p", "500m", None), &snap),
            Outcome::Unschedulable(
                "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s). \
                 no new claims to deallocate, preemption: 0/2 nodes are available: \
                 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
                    .into()
            )
        );
    }

    #[test]
    fn node_selector_and_terminated_pods() {
        let nodes = [
            node("a", "1", &[], vec![]),
            node("b", "1", &[("disktype", "ssd")], vec![]),
        ];
        let mut p = pod("p", "100m", None);
        p.spec.as_mut().unwrap().node_selector =
            Some([("disktype".to_string(), "ssd".to_string())].into());
        assert_eq!(
            schedule(&p, &Snapshot::new(&nodes, [])),
            Outcome::Bind("b".into())
        );
        let mut done = pod("done", "1", Some("b"));
        done.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert_eq!(
            schedule(&p, &Snapshot::new(&nodes, [&done])),
            Outcome::Bind("b".into())
        );
        p.spec.as_mut().unwrap().node_selector =
            Some([("disktype".to_string(), "nvme".to_string())].into());
        let Outcome::Unschedulable(msg) = schedule(&p, &Snapshot::new(&nodes, [])) else {
            panic!("scheduled")
        };
        assert_eq!(
            msg,
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
             no new claims to deallocate, preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            schedule(&p, &Snapshot::new(&[], [])),
            Outcome::Unschedulable(status::NO_NODES.into())
        );
    }

    #[test]
    fn preferred_affinity_breaks_the_tie() {
        use k8s_openapi::api::core::v1::{
            Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm,
            PreferredSchedulingTerm,
        };
        let nodes = [
            node("a", "1", &[], vec![]),
            node("b", "1", &[("zone", "z")], vec![]),
        ];
        let mut p = pod("p", "100m", None);
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 1,
                        preference: NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "zone".into(),
                                operator: "Exists".into(),
                                values: None,
                            }]),
                            match_fields: None,
                        },
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        });
        for i in 0..5 {
            p.metadata.uid = Some(format!("u{i}"));
            assert_eq!(
                schedule(&p, &Snapshot::new(&nodes, [])),
                Outcome::Bind("b".into())
            );
        }
    }
}

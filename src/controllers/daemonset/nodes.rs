//! Which nodes a DaemonSet wants (kube's NodeShouldRunDaemonPod): the
//! template's nodeSelector and required node affinity match the node, and
//! its tolerations, with those kube adds to every daemon pod, tolerate the
//! node's NoSchedule and NoExecute taints. A node whose only untolerated
//! taints are NoSchedule keeps the daemon pod it has (should continue
//! running) but gets no new one.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Toleration,
};

use crate::controllers::scheduler::{node_affinity, node_labels, taints};

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// The tolerations kube's daemon controller adds to its pods.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        toleration(taints::NOT_READY, "NoExecute"),
        toleration(taints::UNREACHABLE, "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration(taints::UNSCHEDULABLE, "NoSchedule"),
    ];
    if host_network {
        t.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    t
}

/// Adds the default tolerations a pod spec lacks.
pub fn add_default_tolerations(spec: &mut k8s_openapi::api::core::v1::PodSpec) {
    let host_network = spec.host_network == Some(true);
    let list = spec.tolerations.get_or_insert_default();
    for t in default_tolerations(host_network) {
        if !list
            .iter()
            .any(|have| have.key == t.key && have.effect == t.effect)
        {
            list.push(t);
        }
    }
}

/// The required node affinity pinned to `node` (kube's
/// ReplaceDaemonSetPodNodeNameNodeAffinity): the scheduler binds the pod
/// there, and only there.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    affinity
}

/// The node a daemon pod is for: its nodeName, else the node its
/// required affinity pins it to.
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        let f = t
            .match_fields
            .as_ref()?
            .iter()
            .find(|f| f.key == "metadata.name" && f.operator == "In")?;
        match f.values.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        }
    })
}

/// (should run a new pod, should keep a running one) on `node`.
pub fn wants(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let mut pod = Pod {
        metadata: Default::default(),
        spec: ds.spec.as_ref().and_then(|s| s.template.spec.clone()),
        status: None,
    };
    let Some(spec) = pod.spec.as_mut() else {
        return (false, false);
    };
    add_default_tolerations(spec);
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    if !node_affinity::matches(&pod, name, node_labels(node)) {
        return (false, false);
    }
    let node_taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        node_taints
            .iter()
            .any(|t| t.effect == effect && !taints::tolerated(&tolerations, t))
    };
    if untolerated("NoExecute") {
        return (false, false);
    }
    (!untolerated("NoSchedule"), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodTemplateSpec, Taint};

    fn ds(selector: &[(&str, &str)], tolerations: Vec<Toleration>) -> DaemonSet {
        DaemonSet {
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        node_selector: (!selector.is_empty()).then(|| {
                            selector
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect()
                        }),
                        tolerations: Some(tolerations),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn node(name: &str, labels: &[(&str, &str)], taints: Vec<(&str, &str)>) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n.spec = Some(NodeSpec {
            taints: Some(
                taints
                    .into_iter()
                    .map(|(key, effect)| Taint {
                        key: key.into(),
                        effect: effect.into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        n
    }

    #[test]
    fn selectors_taints_and_default_tolerations() {
        let any = ds(&[], vec![]);
        assert_eq!(wants(&any, &node("a", &[], vec![])), (true, true));
        assert_eq!(
            wants(
                &any,
                &node(
                    "a",
                    &[],
                    vec![
                        (taints::UNSCHEDULABLE, "NoSchedule"),
                        (taints::NOT_READY, "NoExecute")
                    ]
                )
            ),
            (true, true),
            "tolerated by default"
        );
        assert_eq!(
            wants(&any, &node("a", &[], vec![("dedicated", "NoSchedule")])),
            (false, true)
        );
        assert_eq!(
            wants(&any, &node("a", &[], vec![("dedicated", "NoExecute")])),
            (false, false)
        );
        let tolerant = ds(&[], vec![toleration("dedicated", "NoExecute")]);
        assert_eq!(
            wants(&tolerant, &node("a", &[], vec![("dedicated", "NoExecute")])),
            (true, true)
        );
        let picky = ds(&[("disk", "ssd")], vec![]);
        assert_eq!(
            wants(&picky, &node("a", &[("disk", "hdd")], vec![])),
            (false, false)
        );
        assert_eq!(
            wants(&picky, &node("b", &[("disk", "ssd")], vec![])),
            (true, true)
        );
    }

    #[test]
    fn pods_are_pinned_by_affinity() {
        let affinity = pin_to_node(None, "n1");
        let pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(affinity),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(target_node(&pod), Some("n1"));
        assert!(node_affinity::matches(&pod, "n1", &Default::default()));
        assert!(!node_affinity::matches(&pod, "n2", &Default::default()));
    }
}

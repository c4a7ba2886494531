use super::*;
use crate::controllers::job::pods::fake;
use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodTemplateSpec, Taint};

fn ds() -> DaemonSet {
    let mut d = DaemonSet::default();
    d.metadata.generation = Some(2);
    d.spec = Some(DaemonSetSpec {
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec::default()),
        },
        ..Default::default()
    });
    d
}

fn node(name: &str, taint: Option<(&str, &str)>) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.spec = Some(NodeSpec {
        taints: taint.map(|(key, effect)| {
            vec![Taint {
                key: key.into(),
                effect: effect.into(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    });
    n
}

/// A pod of `hash` bound to `node`, in `phase` (Ready when Running).
fn pod(name: &str, node: &str, hash: &str, phase: &str) -> Pod {
    let mut p = if phase == "Running" {
        fake::ready_pod(name)
    } else {
        fake::pod(name, phase)
    };
    p.metadata.finalizers = None;
    p.metadata.labels = Some([(HASH_LABEL.to_string(), hash.to_string())].into());
    p.spec = Some(PodSpec {
        node_name: Some(node.into()),
        ..Default::default()
    });
    p
}

fn now() -> Timestamp {
    Timestamp::UNIX_EPOCH
}

#[test]
fn one_pod_per_eligible_node() {
    let nodes = [
        node("a", None),
        node("b", None),
        node("c", Some(("dedicated", "NoSchedule"))),
    ];
    let refs: Vec<&Node> = nodes.iter().collect();
    let p = plan(&ds(), &refs, &[], "h1", now());
    assert_eq!(p.create, vec!["a", "b"]);
    assert_eq!(p.status.desired_number_scheduled, 2);
    assert_eq!(p.status.number_unavailable, Some(2));
    assert_eq!(p.status.observed_generation, Some(2));

    let pods = [
        pod("pa", "a", "h1", "Running"),
        pod("pb", "b", "h1", "Pending"),
        pod("pb2", "b", "h1", "Pending"),
    ];
    let prefs: Vec<&Pod> = pods.iter().collect();
    let p = plan(&ds(), &refs, &prefs, "h1", now());
    assert!(p.create.is_empty());
    assert_eq!(p.delete, vec!["pb2"], "one pod per node");
    let st = &p.status;
    assert_eq!(
        (
            st.current_number_scheduled,
            st.number_ready,
            st.number_available
        ),
        (2, 1, Some(1))
    );
    assert_eq!(st.updated_number_scheduled, Some(2));
}

#[test]
fn misscheduled_failed_and_orphaned_pods_go() {
    let nodes = [node("a", Some(("gone", "NoExecute"))), node("b", None)];
    let refs: Vec<&Node> = nodes.iter().collect();
    let pods = [
        pod("pa", "a", "h1", "Running"),
        pod("pb", "b", "h1", "Failed"),
        pod("pz", "z", "h1", "Running"),
    ];
    let prefs: Vec<&Pod> = pods.iter().collect();
    let p = plan(&ds(), &refs, &prefs, "h1", now());
    assert_eq!(p.delete, vec!["pa", "pb", "pz"]);
    assert_eq!(p.failed_on, vec!["b"]);
    assert_eq!(p.create, vec!["b"]);
    assert_eq!(p.status.number_misscheduled, 1);
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let nodes = [node("a", None), node("b", None), node("c", None)];
    let refs: Vec<&Node> = nodes.iter().collect();
    let pods = [
        pod("pa", "a", "old", "Running"),
        pod("pb", "b", "old", "Running"),
        pod("pc", "c", "old", "Running"),
    ];
    let prefs: Vec<&Pod> = pods.iter().collect();
    let p = plan(&ds(), &refs, &prefs, "new", now());
    assert_eq!(p.delete, vec!["pa"], "maxUnavailable 1");
    let mut two = ds();
    two.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::String("50%".into())),
            max_surge: None,
        }),
    });
    assert_eq!(
        plan(&two, &refs, &prefs, "new", now()).delete,
        vec!["pa", "pb"],
        "50% of 3, rounded up"
    );
    // A new pod not ready yet uses the budget.
    let pods = [
        pod("pa", "a", "new", "Pending"),
        pod("pb", "b", "old", "Running"),
        pod("pc", "c", "old", "Running"),
    ];
    let prefs: Vec<&Pod> = pods.iter().collect();
    assert!(plan(&ds(), &refs, &prefs, "new", now()).delete.is_empty());
    let mut on_delete = ds();
    on_delete.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    let pods = [pod("pa", "a", "old", "Running")];
    let prefs: Vec<&Pod> = pods.iter().collect();
    assert!(
        plan(&on_delete, &refs[..1], &prefs, "new", now())
            .delete
            .is_empty()
    );
}

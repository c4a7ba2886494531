use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::super::set::Kind;
use super::*;
use k8s_openapi::api::core::v1::ReplicationController;

fn app(v: &str) -> std::collections::BTreeMap<String, String> {
    [("app".to_string(), v.to_string())].into()
}

fn set(replicas: i32) -> Set {
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("rs-uid".into()),
            generation: Some(3),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(app("web")),
                match_expressions: None,
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(
                        [("app", "web"), ("tier", "front")]
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .into(),
                    ),
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    };
    Set::from_replica_set(&rs)
}

fn pod(name: &str, labels: &str, owner: Option<&str>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.labels = Some(app(labels));
    p.metadata.creation_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    p.metadata.owner_references = owner.map(|uid| {
        vec![OwnerReference {
            uid: uid.into(),
            controller: Some(true),
            kind: "ReplicaSet".into(),
            ..Default::default()
        }]
    });
    p.status = Some(PodStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    p
}

fn ready(mut p: Pod, since: Timestamp) -> Pod {
    let st = p.status.as_mut().unwrap();
    st.phase = Some("Running".into());
    st.conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: Some(Time(since)),
        ..Default::default()
    }]);
    p
}

fn on(mut p: Pod, node: &str) -> Pod {
    p.spec.get_or_insert_default().node_name = Some(node.into());
    p
}

fn names(pods: &[&Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| pod_state::name(p).to_string())
        .collect()
}

#[test]
fn claims_adopt_orphans_release_strays_and_leave_others_alone() {
    let s = set(3);
    let (mine, orphan, stray, other, other_orphan) = (
        pod("a", "web", Some("rs-uid")),
        pod("b", "web", None),
        pod("c", "db", Some("rs-uid")),
        pod("d", "web", Some("someone-else")),
        pod("e", "db", None),
    );
    let mut deleting = pod("f", "web", None);
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    let all = [&mine, &orphan, &stray, &other, &other_orphan, &deleting];
    let c = claim(&s, &all);
    assert_eq!(names(&c.mine), ["a", "b"]);
    assert_eq!(names(&c.adopt), ["b"]);
    assert_eq!(names(&c.release), ["c"]);
}

#[test]
fn creates_the_shortfall_in_slow_start_batches() {
    let s = set(10);
    let a = pod("a", "web", Some("rs-uid"));
    assert_eq!(diff(&s, &[&a], Timestamp::now()), Diff::Create(9));
    assert_eq!(batches(9), [1, 2, 4, 2]);
    assert_eq!(batches(1), [1]);
    assert!(batches(0).is_empty());
    assert_eq!(diff(&set(1), &[&a], Timestamp::now()), Diff::None);
    let big = set(10_000);
    assert_eq!(diff(&big, &[], Timestamp::now()), Diff::Create(BURST));
}

#[test]
fn deletes_unscheduled_pending_unready_and_newer_pods_first() {
    let now = Timestamp::now();
    let old = now - SignedDuration::from_secs(3600);
    let young = now - SignedDuration::from_secs(5);
    let unscheduled = ready(pod("unscheduled", "web", None), old);
    let pending = on(pod("pending", "web", None), "n1");
    let unready = {
        let mut p = on(pod("unready", "web", None), "n1");
        p.status.as_mut().unwrap().phase = Some("Running".into());
        p
    };
    let ready_young = on(ready(pod("ready-young", "web", None), young), "n2");
    let ready_old = on(ready(pod("ready-old", "web", None), old), "n3");
    let all = [&ready_old, &ready_young, &unready, &pending, &unscheduled];
    assert_eq!(
        names(&deletion_order(&all, now)),
        [
            "unscheduled",
            "pending",
            "unready",
            "ready-young",
            "ready-old"
        ]
    );
    let s = set(2);
    assert_eq!(
        diff(&s, &all, now),
        Diff::Delete(vec![
            "unscheduled".into(),
            "pending".into(),
            "unready".into()
        ])
    );
    // A lower pod-deletion-cost goes first, then a doubled-up node.
    let mut cheap = on(ready(pod("cheap", "web", None), old), "n4");
    cheap
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(DELETION_COST.into(), "-5".into());
    let crowded = on(ready(pod("crowded", "web", None), old), "n3");
    let all = [&ready_old, &crowded, &cheap, &ready_young];
    let order = names(&deletion_order(&all, now));
    assert_eq!(order[0], "cheap");
    assert!(
        order[1] == "crowded" || order[1] == "ready-old",
        "{order:?}"
    );
}

#[test]
fn status_counts_and_the_failure_condition() {
    let now = Timestamp::now();
    let mut s = set(3);
    s.min_ready_seconds = 10;
    let mut unlabeled = ready(pod("a", "web", Some("rs-uid")), now);
    unlabeled.metadata.labels = Some(app("web"));
    let mut labeled = ready(
        pod("b", "web", Some("rs-uid")),
        now - SignedDuration::from_secs(60),
    );
    labeled
        .metadata
        .labels
        .get_or_insert_default()
        .insert("tier".into(), "front".into());
    let pending = pod("c", "web", Some("rs-uid"));
    let active = [&unlabeled, &labeled, &pending];
    let failure = ("FailedCreate", "exceeded quota".to_string());
    let st = status(&s, &active, 1, Some(&failure), now);
    assert_eq!(st.replicas, 3);
    assert_eq!(st.fully_labeled_replicas, Some(1));
    assert_eq!(st.ready_replicas, Some(2));
    assert_eq!(
        st.available_replicas,
        Some(1),
        "a is not ready for 10 s yet"
    );
    assert_eq!(st.terminating_replicas, Some(1));
    assert_eq!(st.observed_generation, Some(3));
    let cond = &st.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (cond.type_.as_str(), cond.reason.as_deref()),
        ("ReplicaFailure", Some("FailedCreate"))
    );
    let wait = next_available(&active, 10, now).unwrap();
    assert!(wait > Duration::from_secs(9) && wait < Duration::from_secs(11));
    s.status = st.clone();
    let cleared = status(&s, &active, 1, None, now);
    assert!(cleared.conditions.is_none());
    assert!(status_differs(&st, &cleared));
    assert!(!status_differs(&cleared, &cleared.clone()));
}

#[test]
fn a_controller_without_selector_selects_by_its_template_labels() {
    let rc: ReplicationController = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "rc", "namespace": "ns", "uid": "u"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}}},
    }))
    .unwrap();
    let s = Set::from_controller(&rc);
    assert_eq!(s.kind, Kind::ReplicationController);
    assert!(selects(&s, &pod("a", "web", None)));
    assert!(!selects(&s, &pod("b", "db", None)));
    assert_eq!(s.key(), "ReplicationController/ns/rc");
    assert_eq!(
        Kind::of_key(&s.key()),
        Some((Kind::ReplicationController, "ns", "rc"))
    );
    let p = super::super::new_pod(&s);
    assert_eq!(p.metadata.generate_name.as_deref(), Some("rc-"));
    let owner = &p.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.api_version.as_str()),
        ("ReplicationController", "v1")
    );
    assert_eq!(owner.block_owner_deletion, Some(true));
}

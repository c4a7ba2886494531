//! Unit tests of the Deployment controller's pure decisions and status.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::plan::*;
use super::status;

fn deployment(replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "d1", "generation": 2,
            "annotations": {"kubernetes.io/change-cause": "v2", REVISION: "1"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}},
    }))
    .unwrap()
}

fn set(d: &Deployment, hash: &str, rev: i64, replicas: i32, available: i32) -> ReplicaSet {
    let mut rs = new_replica_set(d, hash, rev, replicas);
    rs.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
        replicas,
        available_replicas: Some(available),
        ready_replicas: Some(available),
        ..Default::default()
    });
    rs
}

#[test]
fn the_new_set_carries_the_hash_revision_and_owner() {
    let d = deployment(3, "a");
    let rs = new_replica_set(&d, "abc", 4, 1);
    assert_eq!(rs.metadata.name.as_deref(), Some("web-abc"));
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()[HASH_LABEL],
        "abc"
    );
    let labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(labels[HASH_LABEL], "abc");
    let a = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        (
            a[REVISION].as_str(),
            a[DESIRED_REPLICAS].as_str(),
            a[MAX_REPLICAS].as_str()
        ),
        ("4", "3", "4")
    );
    assert_eq!(a["kubernetes.io/change-cause"], "v2");
    let o = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (o.kind.as_str(), o.controller, o.block_owner_deletion),
        ("Deployment", Some(true), Some(true))
    );
    // Its template is the deployment's, the hash label aside; not another's.
    assert!(same_template(&rs, &template(&d)));
    assert!(!same_template(&rs, &template(&deployment(3, "b"))));
    assert!(find_new(&d, &[&rs]).is_some());
}

#[test]
fn an_old_set_made_new_again_moves_its_revision_to_history() {
    let d = deployment(3, "a");
    let rs = set(&d, "abc", 1, 0, 0);
    let bump = revision_bump(&rs, 3).unwrap();
    assert_eq!(
        (bump[REVISION].as_str(), bump[REVISION_HISTORY].as_str()),
        ("3", "1")
    );
    assert!(revision_bump(&rs, 1).is_none());
}

#[test]
fn scaling_goes_to_the_only_active_set_or_in_proportion() {
    let d = deployment(5, "a");
    let old = set(&deployment(3, "b"), "old", 1, 0, 0);
    let new = set(&deployment(3, "a"), "new", 2, 3, 3);
    assert!(scaling_event(&d, &[&old, &new]));
    assert_eq!(scale(&d, &[&old, &new], Some(1)), [(1, 5)]);
    // Mid-rollout (3 + 1 for surge 1 of 3 -> 10 + 3 of 10): 13 spread 2:2.
    let d = deployment(10, "a");
    let old = set(&deployment(3, "b"), "old", 1, 2, 2);
    let new = set(&deployment(3, "a"), "new", 2, 2, 0);
    let sizes = scale(&d, &[&old, &new], Some(1));
    let total: i32 = sizes.iter().map(|(_, s)| s).sum();
    assert_eq!(total, 13, "{sizes:?}");
    assert_eq!(proportional(&[2, 2], 13, |_| Some(4)), [6, 7]);
    assert_eq!(proportional(&[6, 7], 4, |_| Some(13)), [2, 2]);
}

#[test]
fn history_keeps_the_newest_idle_sets() {
    let mut d = deployment(3, "a");
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let (a, b, c) = (
        set(&d, "a", 1, 0, 0),
        set(&d, "b", 2, 0, 0),
        set(&d, "c", 3, 1, 1),
    );
    let doomed = history_to_delete(&d, &[&b, &a, &c]);
    assert_eq!(doomed.len(), 1);
    assert_eq!(doomed[0].metadata.name.as_deref(), Some("web-a"));
}

#[test]
fn status_counts_and_conditions() {
    let d = deployment(3, "a");
    let old = set(&deployment(3, "b"), "old", 1, 2, 2);
    let new = set(&d, "new", 2, 2, 1);
    let now = status::second(Timestamp::now());
    let mut st = status::calculate(&d, &[&old, &new], Some(&new), now);
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.available_replicas,
            st.unavailable_replicas
        ),
        (Some(4), Some(2), Some(3), Some(1))
    );
    assert_eq!(
        status::get(&st, "Available").unwrap().reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );
    let wait = status::progress(&d, &mut st, Some(&new), now);
    assert_eq!(
        status::get(&st, "Progressing").unwrap().reason.as_deref(),
        Some("ReplicaSetUpdated")
    );
    assert!(wait.is_some());
    // Complete: 3 updated, available, no old pods, generation observed.
    let new = set(&d, "new", 2, 3, 3);
    let mut st = status::calculate(&d, &[&new], Some(&new), now);
    assert!(status::complete(&d, &st));
    status::progress(&d, &mut st, Some(&new), now);
    assert_eq!(
        status::get(&st, "Progressing").unwrap().reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    // An unchanged status computed again is not a write.
    let mut again = d.clone();
    again.status = Some(st.clone());
    let mut st2 = status::calculate(&again, &[&new], Some(&new), Timestamp::now());
    status::progress(&again, &mut st2, Some(&new), Timestamp::now());
    assert!(!status::differs(&again.status, &st2));
    // Stuck past the deadline: ProgressDeadlineExceeded.
    let stuck = set(&d, "new", 2, 3, 0);
    let mut old_d = d.clone();
    let mut st = status::calculate(&d, &[&stuck], Some(&stuck), now);
    status::new_set_condition(&mut st, "FoundNewReplicaSet", "web-new", now);
    old_d.status = Some(st.clone());
    let later = Timestamp::from_second(now.as_second() + 601).unwrap();
    let mut st = status::calculate(&old_d, &[&stuck], Some(&stuck), later);
    status::progress(&old_d, &mut st, Some(&stuck), later);
    assert_eq!(
        status::get(&st, "Progressing").unwrap().reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );
}

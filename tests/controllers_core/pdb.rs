//! The disruption controller: PodDisruptionBudget status from a plain
//! count (minAvailable 2 of 3 ready pods allows 1), readiness changes,
//! maxUnavailable through a ReplicaSet's scale, and SyncFailed for pods
//! without a controller.

use deckhand::controllers::disruption;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::harness::{self, Plane, Running, wait};
use crate::kubelet::{create_pod, set_pod};

async fn budget(api: &Api<PodDisruptionBudget>, name: &str, spec: Value) {
    let b: PodDisruptionBudget =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    api.create(&PostParams::default(), &b).await.unwrap();
}

/// (expected, desired, current, allowed, condition reason)
type Seen = (i32, i32, i32, i32, String);

fn seen(s: &PodDisruptionBudgetStatus) -> Seen {
    let reason = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed")
        .map(|c| c.reason.clone())
        .unwrap_or_default();
    (
        s.expected_pods,
        s.desired_healthy,
        s.current_healthy,
        s.disruptions_allowed,
        reason,
    )
}

async fn wait_status(
    api: &Api<PodDisruptionBudget>,
    name: &str,
    want: Seen,
) -> PodDisruptionBudget {
    let start = std::time::Instant::now();
    loop {
        let b = api.get(name).await.unwrap();
        let got = b.status.as_ref().map(seen);
        if got.as_ref() == Some(&want) {
            return b;
        }
        assert!(
            start.elapsed() < harness::WAIT,
            "pdb {name}: wanted {want:?}, have {got:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disruption_budgets_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("disruption_budgets_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let ns = "pdb";
    harness::namespace(&client, ns).await;
    let _c = Running::spawn(disruption::run(client.clone(), harness::never()));
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    for (i, p) in ["a1", "a2", "a3"].iter().enumerate() {
        create_pod(&client, ns, p, json!({"app": "a"}), json!([]), None).await;
        set_pod(&client, ns, p, &format!("10.4.0.{}", i + 1), true).await;
    }
    budget(
        &api,
        "two",
        json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "a"}}}),
    )
    .await;
    let b = wait_status(&api, "two", (3, 2, 3, 1, "SufficientPods".into())).await;
    let st = b.status.unwrap();
    assert_eq!(st.observed_generation, Some(1));
    let cond = &st.conditions.unwrap()[0];
    assert_eq!(cond.status, "True");
    assert_eq!(cond.observed_generation, Some(1));

    set_pod(&client, ns, "a3", "10.4.0.3", false).await;
    wait_status(&api, "two", (3, 2, 2, 0, "InsufficientPods".into())).await;

    // maxUnavailable: the ReplicaSet's 4 replicas are expected, 2 pods run.
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "rs"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "r"}},
                 "template": {"metadata": {"labels": {"app": "r"}},
                              "spec": {"containers": [harness::container()]}}},
    }))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for (i, name) in ["r1", "r2"].iter().enumerate() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "r"}, "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": rs.metadata.uid, "controller": true}]},
            "spec": {"nodeName": "node-a", "containers": [harness::container()]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
        set_pod(&client, ns, name, &format!("10.4.1.{}", i + 1), true).await;
    }
    budget(
        &api,
        "one-down",
        json!({"maxUnavailable": 1, "selector": {"matchLabels": {"app": "r"}}}),
    )
    .await;
    wait_status(&api, "one-down", (4, 3, 2, 0, "InsufficientPods".into())).await;
    budget(
        &api,
        "half",
        json!({"minAvailable": "25%", "selector": {"matchLabels": {"app": "r"}}}),
    )
    .await;
    wait_status(&api, "half", (4, 1, 2, 1, "SufficientPods".into())).await;

    // Pods without a controller cannot be scaled: SyncFailed.
    budget(
        &api,
        "bad",
        json!({"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "a"}}}),
    )
    .await;
    let b = wait("pdb bad to fail its sync", || {
        let api = api.clone();
        async move {
            let b = api.get("bad").await.unwrap();
            let reason = b
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .first()?
                .reason
                .clone();
            (reason == "SyncFailed").then_some(b)
        }
    })
    .await;
    let st = b.status.unwrap();
    assert_eq!(st.disruptions_allowed, 0);
    assert!(
        st.conditions.unwrap()[0]
            .message
            .contains("found no controllers")
    );
}

//! ReplicaSets and ReplicationControllers: replicas kept, surplus deleted
//! in kube's order, orphans adopted, strays released, refusals reported.

use std::process::Command;

use deckhand::controllers::replicaset;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, ReplicationController, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::harness::{self, Plane, Running, active, make_ready, pods, wait};

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap()
}

fn owner(p: &Pod) -> Option<String> {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.name.clone())
}

/// The live pods of `ns` with `selector`, `n` of them.
async fn live(client: &kube::Client, ns: &str, selector: &str, n: usize) -> Vec<Pod> {
    wait(&format!("{n} pods with {selector}"), || async {
        let p: Vec<Pod> = pods(client, ns, selector)
            .await
            .into_iter()
            .filter(active)
            .collect();
        (p.len() == n).then_some(p)
    })
    .await
}

fn replica_set(replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [harness::container()]}},
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicasets_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("replicasets_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let _rs = Running::spawn(replicaset::run(client.clone(), harness::never()));
    let ns = "replicas";
    harness::namespace(&client, ns).await;
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &replica_set(3))
        .await
        .unwrap();
    let first = live(&client, ns, "app=web", 3).await;
    for p in &first {
        let n = name(p);
        assert!(
            n.starts_with("web-") && n.len() == "web-".len() + 5,
            "{n}: <rs>-<5 random chars>"
        );
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                o.kind.as_str(),
                o.name.as_str(),
                o.controller,
                o.block_owner_deletion
            ),
            ("ReplicaSet", "web", Some(true), Some(true))
        );
        make_ready(&client, ns, &n).await;
    }
    let st = wait("3 ready, available, fully labeled", || async {
        let st = api.get("web").await.unwrap().status?;
        (st.ready_replicas == Some(3) && st.available_replicas == Some(3)).then_some(st)
    })
    .await;
    assert_eq!(
        (
            st.replicas,
            st.fully_labeled_replicas,
            st.observed_generation
        ),
        (3, Some(3), Some(1))
    );

    // Two pods deleted are refilled.
    for p in &first[..2] {
        pod_api
            .delete(&name(p), &DeleteParams::default())
            .await
            .unwrap();
    }
    let refilled = wait("2 new pods", || async {
        let p: Vec<Pod> = pods(&client, ns, "app=web")
            .await
            .into_iter()
            .filter(active)
            .collect();
        let new = p
            .iter()
            .filter(|p| !first.iter().any(|f| name(f) == name(p)))
            .count();
        (p.len() == 3 && new == 2).then_some(p)
    })
    .await;
    assert!(refilled.iter().any(|p| name(p) == name(&first[2])));

    // Scaled to 1: the two not-ready newcomers go, the ready one stays.
    let scale = json!({"spec": {"replicas": 1}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    let left = live(&client, ns, "app=web", 1).await;
    assert_eq!(name(&left[0]), name(&first[2]), "not ready pods go first");
    let survivor = name(&left[0]);

    // Relabelled, it is released and replaced; labelled back, adopted
    // again (the replacement, not ready, is deleted instead).
    let relabel = |app: &str| json!({"metadata": {"labels": {"app": app}}});
    pod_api
        .patch(
            &survivor,
            &PatchParams::default(),
            &Patch::Merge(&relabel("other")),
        )
        .await
        .unwrap();
    let stray = wait("the relabelled pod released", || async {
        let p = pod_api.get(&survivor).await.unwrap();
        owner(&p).is_none().then_some(p)
    })
    .await;
    assert!(
        stray
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|o| o.is_empty())
    );
    let replacement = live(&client, ns, "app=web", 1).await;
    assert_ne!(name(&replacement[0]), survivor);
    pod_api
        .patch(
            &survivor,
            &PatchParams::default(),
            &Patch::Merge(&relabel("web")),
        )
        .await
        .unwrap();
    wait("the orphan adopted, the replacement deleted", || async {
        let p: Vec<Pod> = pods(&client, ns, "app=web")
            .await
            .into_iter()
            .filter(active)
            .collect();
        (p.len() == 1 && name(&p[0]) == survivor && owner(&p[0]).as_deref() == Some("web"))
            .then_some(())
    })
    .await;
    wait("status of 1", || async {
        let st = api.get("web").await.unwrap().status?;
        (st.replicas == 1 && st.ready_replicas == Some(1) && st.observed_generation == Some(2))
            .then_some(())
    })
    .await;

    // A refused pod (no default ServiceAccount in the namespace, which
    // kcm would make) shows as ReplicaFailure, and clears once pods can be
    // made again.
    let qns = "refused";
    let nsobj: Namespace = serde_json::from_value(json!({"metadata": {"name": qns}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &nsobj)
        .await
        .unwrap();
    let qapi: Api<ReplicaSet> = Api::namespaced(client.clone(), qns);
    qapi.create(&PostParams::default(), &replica_set(2))
        .await
        .unwrap();
    let cond = wait("ReplicaFailure", || async {
        let st = qapi.get("web").await.unwrap().status?;
        st.conditions?
            .into_iter()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
    })
    .await;
    assert_eq!(cond.reason.as_deref(), Some("FailedCreate"));
    let message = cond.message.unwrap_or_default();
    assert!(message.contains("service account"), "{message}");
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), qns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    wait("the pods made and the condition cleared", || async {
        let st = qapi.get("web").await.unwrap().status?;
        (st.replicas == 2 && st.conditions.is_none_or(|c| c.is_empty())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controllers_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("replication_controllers_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let _rs = Running::spawn(replicaset::run(client.clone(), harness::never()));
    let ns = "rcs";
    harness::namespace(&client, ns).await;
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {
            "replicas": 5,
            "selector": {"app": "legacy"},
            "template": {"metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [harness::container()]}},
        },
    }))
    .unwrap();
    let api: Api<ReplicationController> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &rc).await.unwrap();
    let first = live(&client, ns, "app=legacy", 5).await;
    for p in &first {
        assert_eq!(owner(p).as_deref(), Some("legacy"));
        make_ready(&client, ns, &name(p)).await;
    }
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    for p in &first[..2] {
        pod_api
            .delete(&name(p), &DeleteParams::default())
            .await
            .unwrap();
    }
    wait("5 pods again, 2 of them new", || async {
        let p: Vec<Pod> = pods(&client, ns, "app=legacy")
            .await
            .into_iter()
            .filter(active)
            .collect();
        let old = p
            .iter()
            .filter(|p| first.iter().any(|f| name(f) == name(p)))
            .count();
        (p.len() == 5 && old == 3).then_some(())
    })
    .await;
    let out = Command::new(crate::common::stock::KUBECTL)
        .arg("--kubeconfig")
        .arg(plane.kubeconfig())
        .args(["-n", ns, "scale", "rc", "legacy", "--replicas=2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = live(&client, ns, "app=legacy", 2).await;
    for p in &left {
        assert!(
            first.iter().any(|f| name(f) == name(p)),
            "the ready old pods stay, the new unready ones go"
        );
    }
    let st = wait("status of 2", || async {
        let st = api.get("legacy").await.unwrap().status?;
        (st.replicas == 2 && st.ready_replicas == Some(2)).then_some(st)
    })
    .await;
    assert_eq!(st.observed_generation, Some(2));
}

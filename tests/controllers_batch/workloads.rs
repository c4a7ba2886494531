//! The DaemonSet and StatefulSet controllers, Node objects made through the
//! API (no node agent runs; the test marks pods ready itself).

use deckhand::controllers::daemonset;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::harness::{self, Plane, Running, make_ready, pods, wait};

pub fn node(name: &str, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
    }))
    .unwrap()
}

/// The node a daemon pod is pinned to by its required affinity.
fn pinned(p: &Pod) -> String {
    let terms = &p
        .spec
        .as_ref()
        .unwrap()
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    terms[0].match_fields.as_ref().unwrap()[0]
        .values
        .as_ref()
        .unwrap()[0]
        .clone()
}

fn live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonsets_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("daemonsets_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, taints) in [
        ("ds-a", json!([])),
        (
            "ds-b",
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        ),
        (
            "ds-c",
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        ),
    ] {
        nodes
            .create(&PostParams::default(), &node(name, json!([])))
            .await
            .unwrap();
        // The apiserver taints a new node not-ready (kcm lifts it once the
        // node is Ready; kcm is not here): these taints replace it.
        let patch = json!({"spec": {"taints": taints}});
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    let _ds = Running::spawn(daemonset::run(client.clone(), harness::never()));
    let ns = "daemons";
    harness::namespace(&client, ns).await;
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [harness::container()]}},
        },
    }))
    .unwrap();
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &ds).await.unwrap();
    let first = wait("a pod on ds-a and ds-b", || async {
        let p: Vec<Pod> = pods(&client, ns, "app=agent")
            .await
            .into_iter()
            .filter(live)
            .collect();
        (p.len() == 2).then_some(p)
    })
    .await;
    let mut on: Vec<String> = first.iter().map(pinned).collect();
    on.sort();
    assert_eq!(
        on,
        ["ds-a", "ds-b"],
        "ds-c's taint is not tolerated; unschedulable is, by default"
    );
    let tolerations = first[0].spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready")
                && t.effect.as_deref() == Some("NoExecute"))
    );
    let hash1 = first[0].metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    for p in &first {
        make_ready(&client, ns, p.metadata.name.as_deref().unwrap()).await;
    }
    let st = wait("2 ready", || async {
        let st = api.get("agent").await.unwrap().status?;
        (st.number_ready == 2).then_some(st)
    })
    .await;
    assert_eq!(
        (
            st.desired_number_scheduled,
            st.current_number_scheduled,
            st.number_misscheduled
        ),
        (2, 2, 0)
    );
    assert_eq!(st.updated_number_scheduled, Some(2));

    // A new template rolls out one node at a time (maxUnavailable 1).
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}});
    api.patch("agent", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let max_down = std::sync::atomic::AtomicUsize::new(0);
    let (down, c, a, h) = (&max_down, &client, &api, &hash1);
    let done = wait("the rollout", || async move {
        let (client, api, hash1) = (c, a, h);
        let p: Vec<Pod> = pods(client, ns, "app=agent")
            .await
            .into_iter()
            .filter(live)
            .collect();
        let ready_old = p
            .iter()
            .filter(|p| &p.metadata.labels.as_ref().unwrap()["controller-revision-hash"] == hash1)
            .count();
        let new: Vec<&Pod> = p
            .iter()
            .filter(|p| &p.metadata.labels.as_ref().unwrap()["controller-revision-hash"] != hash1)
            .collect();
        for n in &new {
            make_ready(client, ns, n.metadata.name.as_deref().unwrap()).await;
        }
        down.fetch_max(
            2usize.saturating_sub(ready_old + new.len()),
            std::sync::atomic::Ordering::SeqCst,
        );
        let st = api.get("agent").await.unwrap().status?;
        (new.len() == 2
            && ready_old == 0
            && st.updated_number_scheduled == Some(2)
            && st.number_ready == 2)
            .then_some(st)
    })
    .await;
    let max_down = max_down.into_inner();
    assert!(
        max_down <= 1,
        "at most one node without a pod during the rollout"
    );
    assert_eq!(done.observed_generation, Some(2));
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut numbers: Vec<i64> = revisions.iter().map(|r| r.revision).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2]);

    // A taint the pods do not tolerate (NoExecute) takes ds-b's pod away.
    let taint =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoExecute"}]}});
    nodes
        .patch("ds-b", &PatchParams::default(), &Patch::Merge(&taint))
        .await
        .unwrap();
    wait("ds-b's pod removed", || async {
        let p: Vec<Pod> = pods(&client, ns, "app=agent")
            .await
            .into_iter()
            .filter(live)
            .collect();
        let st = api.get("agent").await.unwrap().status?;
        (p.len() == 1 && pinned(&p[0]) == "ds-a" && st.desired_number_scheduled == 1).then_some(())
    })
    .await;
    drop(plane);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulsets_against_the_stock_apiserver() {
    use deckhand::controllers::statefulset;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let Some(plane) = Plane::start("statefulsets_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let _sts = Running::spawn(statefulset::run(client.clone(), harness::never()));
    let ns = "stateful";
    harness::namespace(&client, ns).await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2, "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [harness::container()]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }))
    .unwrap();
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &sts).await.unwrap();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let web0 = wait("web-0", || async {
        pod_api.get_opt("web-0").await.unwrap()
    })
    .await;
    let spec = web0.spec.as_ref().unwrap();
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("web-0"), Some("web"))
    );
    let vol = spec
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(
        vol.persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-web-0"
    );
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    assert!(pvcs.get_opt("data-web-0").await.unwrap().is_some());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        pod_api.get_opt("web-1").await.unwrap().is_none(),
        "OrderedReady: web-1 waits for web-0"
    );
    make_ready(&client, ns, "web-0").await;
    wait("web-1", || async {
        pod_api.get_opt("web-1").await.unwrap()
    })
    .await;
    make_ready(&client, ns, "web-1").await;
    let st = wait("2 ready", || async {
        api.get("web")
            .await
            .unwrap()
            .status
            .filter(|s| s.ready_replicas == Some(2))
    })
    .await;
    assert_eq!(st.current_revision, st.update_revision);
    let old_rev = st.update_revision.clone().unwrap();

    // A new template: web-1 first, then web-0; the claims stay.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let order = std::sync::Mutex::new(Vec::<String>::new());
    let (o, c, a, old) = (&order, &client, &api, &old_rev);
    let done = wait("the rolling update", || async move {
        for name in ["web-0", "web-1"] {
            let Some(p) = Api::<Pod>::namespaced(c.clone(), ns)
                .get_opt(name)
                .await
                .unwrap()
            else {
                continue;
            };
            let hash = p.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
            if !old.ends_with(&hash) && p.metadata.deletion_timestamp.is_none() {
                {
                    let mut seen = o.lock().unwrap();
                    if !seen.contains(&name.to_string()) {
                        seen.push(name.to_string());
                    }
                }
                make_ready(c, ns, name).await;
            }
        }
        // Until the controller has seen the patch, the old status (two
        // updated, ready, current == update) would already pass.
        let st = a.get("web").await.unwrap().status?;
        (st.update_revision.as_deref() != Some(old.as_str())
            && st.updated_replicas == Some(2)
            && st.ready_replicas == Some(2)
            && st.current_revision == st.update_revision)
            .then_some(st)
    })
    .await;
    assert_ne!(done.update_revision.as_deref(), Some(old_rev.as_str()));
    assert_eq!(
        order.into_inner().unwrap(),
        ["web-1", "web-0"],
        "from the highest ordinal down"
    );
    assert!(pvcs.get_opt("data-web-1").await.unwrap().is_some());
    drop(plane);
}

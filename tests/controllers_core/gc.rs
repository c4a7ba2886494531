//! The garbage collector with the real kubectl's `delete --cascade=`:
//! background (dependents deleted; a dependent with another owner kept,
//! the gone owner's reference dropped), foreground (the owner waits, with
//! its finalizer, for a blocking dependent), orphan (dependents kept,
//! their references to the owner removed). ConfigMaps owned by ConfigMaps,
//! and pods owned by a ReplicaSet.

use std::path::Path;
use std::process::Command;

use deckhand::controllers::garbage_collector;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::harness::{self, Plane, Running, wait};

fn kubectl(kubeconfig: &Path, args: &[&str]) {
    let out = Command::new(crate::common::stock::KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn cm(api: &Api<ConfigMap>, name: &str, owners: &[&ConfigMap], extra: Value) -> ConfigMap {
    let refs: Vec<Value> = owners
        .iter()
        .map(|o| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name,
                   "uid": o.metadata.uid, "blockOwnerDeletion": true})
        })
        .collect();
    let mut meta = json!({"name": name});
    if !refs.is_empty() {
        meta["ownerReferences"] = json!(refs);
    }
    if let Some(f) = extra.get("finalizers") {
        meta["finalizers"] = f.clone();
    }
    let c: ConfigMap = serde_json::from_value(json!({"metadata": meta})).unwrap();
    api.create(&PostParams::default(), &c).await.unwrap()
}

async fn gone(api: &Api<ConfigMap>, name: &str) {
    wait(&format!("configmap {name} to go"), || {
        let api = api.clone();
        async move { api.get_opt(name).await.unwrap().is_none().then_some(()) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("garbage_collection_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let kc = plane.kubeconfig();
    let ns = "gc";
    harness::namespace(&client, ns).await;
    let _c = Running::spawn(garbage_collector::run(client.clone(), harness::never()));
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let none = json!({});

    // A dependent of an owner that never existed goes at once.
    let phantom: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "phantom",
        "uid": "00000000-0000-0000-0000-000000000000"}}))
    .unwrap();
    cm(&api, "dangling", &[&phantom], none.clone()).await;
    gone(&api, "dangling").await;

    // Background.
    let owner = cm(&api, "bg-owner", &[], none.clone()).await;
    let keeper = cm(&api, "keeper", &[], none.clone()).await;
    cm(&api, "bg-dep1", &[&owner], none.clone()).await;
    cm(&api, "bg-dep2", &[&owner], none.clone()).await;
    cm(&api, "shared", &[&owner, &keeper], none.clone()).await;
    kubectl(&kc, &["-n", ns, "delete", "configmap", "bg-owner"]);
    gone(&api, "bg-dep1").await;
    gone(&api, "bg-dep2").await;
    let shared = wait("shared to lose its gone owner", || {
        let api = api.clone();
        async move {
            let s = api.get("shared").await.unwrap();
            (s.metadata.owner_references.as_ref().map(Vec::len) == Some(1)).then_some(s)
        }
    })
    .await;
    assert_eq!(shared.metadata.owner_references.unwrap()[0].name, "keeper");

    // Foreground: the owner stays, with its finalizer, while a blocking
    // dependent is held by a finalizer of the test's.
    let owner = cm(&api, "fg-owner", &[], none.clone()).await;
    cm(
        &api,
        "fg-dep",
        &[&owner],
        json!({"finalizers": ["test.deckhand/hold"]}),
    )
    .await;
    cm(&api, "fg-free", &[&owner], none.clone()).await;
    kubectl(
        &kc,
        &[
            "-n",
            ns,
            "delete",
            "configmap",
            "fg-owner",
            "--cascade=foreground",
            "--wait=false",
        ],
    );
    wait("fg-dep to be deleted (held)", || {
        let api = api.clone();
        async move {
            let d = api.get("fg-dep").await.unwrap();
            d.metadata.deletion_timestamp.is_some().then_some(())
        }
    })
    .await;
    gone(&api, "fg-free").await;
    let o = api.get("fg-owner").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    assert_eq!(o.metadata.finalizers.unwrap(), ["foregroundDeletion"]);
    let release = json!({"metadata": {"finalizers": null}});
    api.patch("fg-dep", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    gone(&api, "fg-dep").await;
    gone(&api, "fg-owner").await;

    // Orphan.
    let owner = cm(&api, "or-owner", &[], none.clone()).await;
    cm(&api, "or-dep", &[&owner], none.clone()).await;
    kubectl(
        &kc,
        &[
            "-n",
            ns,
            "delete",
            "configmap",
            "or-owner",
            "--cascade=orphan",
        ],
    );
    gone(&api, "or-owner").await;
    let dep = api.get("or-dep").await.unwrap();
    assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());
    assert!(dep.metadata.deletion_timestamp.is_none());

    // Across kinds: pods of a ReplicaSet go with it (no ReplicaSet
    // controller runs; the test made the pods). No kubelet finishes them:
    // they are left terminating.
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "rs"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "r"}},
                 "template": {"metadata": {"labels": {"app": "r"}},
                              "spec": {"containers": [harness::container()]}}},
    }))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for name in ["r1", "r2"] {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "r"}, "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": rs.metadata.uid, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"containers": [harness::container()]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    kubectl(&kc, &["-n", ns, "delete", "replicaset", "rs"]);
    for name in ["r1", "r2"] {
        wait(
            &format!("pod {name} of the deleted replicaset to be deleted"),
            || {
                let pods = pods.clone();
                async move {
                    let p = pods.get_opt(name).await.unwrap();
                    p.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
                        .then_some(())
                }
            },
        )
        .await;
    }
}

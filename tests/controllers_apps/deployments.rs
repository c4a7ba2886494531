//! Deployments: one ReplicaSet per template, a RollingUpdate that keeps
//! replicas - maxUnavailable pods ready, and the real kubectl's
//! `set image`, `rollout status`, `rollout undo` and `rollout history`.
//! The ReplicaSet and Deployment controllers run in-process; a task plays
//! the kubelet, marking every new pod Ready, and counts the fewest ready
//! pods seen while the rollout runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deckhand::controllers::{deployment, replicaset};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::harness::{self, Plane, Running, active, pods, wait};

const REVISION: &str = "deployment.kubernetes.io/revision";

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Plays the kubelet for `ns`: every live pod not Ready is made Ready;
/// `fewest` keeps the fewest ready live pods seen (once armed).
fn kubelet(client: kube::Client, ns: &'static str, fewest: Arc<AtomicUsize>) -> Running {
    Running::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        loop {
            let live: Vec<Pod> = pods(&client, ns, "app=web")
                .await
                .into_iter()
                .filter(active)
                .collect();
            let n = live.iter().filter(|p| ready(p)).count();
            fewest.fetch_min(n, Ordering::SeqCst);
            for p in live.iter().filter(|p| !ready(p)) {
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let patch = json!({"status": {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                // A pod deleted meanwhile is fine.
                let _ = api
                    .patch_status(
                        p.metadata.name.as_deref().unwrap(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn kubectl(plane: &Plane, ns: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(crate::common::stock::KUBECTL)
        .arg("--kubeconfig")
        .arg(plane.kubeconfig())
        .args(["-n", ns])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn sets(client: &kube::Client, ns: &str) -> Vec<ReplicaSet> {
    let mut l = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    // By revision: creation times have whole seconds only.
    l.sort_by_key(|r| {
        annotation(&r.metadata, REVISION)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    });
    l
}

fn annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    k: &str,
) -> Option<String> {
    meta.annotations.as_ref()?.get(k).cloned()
}

fn condition(d: &Deployment, t: &str) -> Option<(String, String)> {
    let c = d
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

fn deployment_of(replicas: i32) -> Deployment {
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
async fn deployments_roll_out_against_the_stock_apiserver() {
    let Some(plane) = Plane::start("deployments_roll_out_against_the_stock_apiserver") else {
        return;
    };
    let client = plane.client().await;
    let _rs = Running::spawn(replicaset::run(client.clone(), harness::never()));
    let _dc = Running::spawn(deployment::run(client.clone(), harness::never()));
    let ns = "rollouts";
    harness::namespace(&client, ns).await;
    let fewest = Arc::new(AtomicUsize::new(usize::MAX));
    let _kubelet = kubelet(client.clone(), ns, fewest.clone());
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &deployment_of(3))
        .await
        .unwrap();

    // One ReplicaSet of 3 with the hash label, and the deployment Available.
    let d = wait("web Available with 3 available", || async {
        let d = api.get("web").await.unwrap();
        let st = d.status.as_ref()?;
        (st.available_replicas == Some(3)
            && condition(&d, "Available")
                == Some(("True".into(), "MinimumReplicasAvailable".into())))
        .then_some(d)
    })
    .await;
    let first = sets(&client, ns).await;
    assert_eq!(first.len(), 1, "one replica set");
    let first = &first[0];
    let rs_name = first.metadata.name.clone().unwrap();
    let hash = first.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(rs_name, format!("web-{hash}"));
    let sel = first
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(sel.get("pod-template-hash"), Some(&hash));
    let o = &first.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            o.kind.as_str(),
            o.name.as_str(),
            o.controller,
            o.block_owner_deletion
        ),
        ("Deployment", "web", Some(true), Some(true))
    );
    assert_eq!(annotation(&first.metadata, REVISION).as_deref(), Some("1"));
    assert_eq!(
        annotation(&first.metadata, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(&first.metadata, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("4")
    );
    assert_eq!(annotation(&d.metadata, REVISION).as_deref(), Some("1"));
    let web_pods = pods(&client, ns, &format!("pod-template-hash={hash}")).await;
    assert_eq!(web_pods.iter().filter(|p| active(p)).count(), 3);

    // kubectl set image rolls to a second set; never fewer than 3 - 0 ready.
    wait("3 ready pods", || async {
        let n = pods(&client, ns, "app=web")
            .await
            .iter()
            .filter(|p| active(p) && ready(p))
            .count();
        (n == 3).then_some(())
    })
    .await;
    fewest.store(usize::MAX, Ordering::SeqCst);
    kubectl(
        &plane,
        ns,
        &[
            "set",
            "image",
            "deployment/web",
            "c=registry.k8s.io/e2e-test-images/busybox:1.29-4",
        ],
    )
    .await;
    let out = kubectl(
        &plane,
        ns,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let seen = fewest.load(Ordering::SeqCst);
    assert!(
        seen >= 3,
        "the rollout went down to {seen} ready pods (3 - maxUnavailable 0 wanted)"
    );
    let both = sets(&client, ns).await;
    assert_eq!(both.len(), 2);
    assert_eq!(both[0].metadata.name.as_deref(), Some(rs_name.as_str()));
    assert_eq!(both[0].spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(both[1].spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        annotation(&both[1].metadata, REVISION).as_deref(),
        Some("2")
    );
    let d = api.get("web").await.unwrap();
    assert_eq!(annotation(&d.metadata, REVISION).as_deref(), Some("2"));
    let st = d.status.clone().unwrap();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas,
            st.observed_generation
        ),
        (Some(3), Some(3), Some(3), Some(3), d.metadata.generation)
    );
    assert_eq!(
        condition(&d, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );

    // kubectl rollout undo: the first set is new again, as revision 3.
    kubectl(&plane, ns, &["rollout", "undo", "deployment/web"]).await;
    let out = kubectl(
        &plane,
        ns,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let back = wait("the first set back at 3 as revision 3", || async {
        let l = sets(&client, ns).await;
        let f = l
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(rs_name.as_str()))?
            .clone();
        (f.spec.as_ref()?.replicas == Some(3)
            && annotation(&f.metadata, REVISION).as_deref() == Some("3"))
        .then_some(f)
    })
    .await;
    assert_eq!(
        annotation(&back.metadata, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    let d = api.get("web").await.unwrap();
    assert_eq!(annotation(&d.metadata, REVISION).as_deref(), Some("3"));
    assert_eq!(sets(&client, ns).await.len(), 2, "no third set");

    let history = kubectl(&plane, ns, &["rollout", "history", "deployment/web"]).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<i64>().is_ok())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployments_scale_and_history_is_trimmed() {
    let Some(plane) = Plane::start("paused_deployments_scale_and_history_is_trimmed") else {
        return;
    };
    let client = plane.client().await;
    let _rs = Running::spawn(replicaset::run(client.clone(), harness::never()));
    let _dc = Running::spawn(deployment::run(client.clone(), harness::never()));
    let ns = "history";
    harness::namespace(&client, ns).await;
    let _kubelet = kubelet(client.clone(), ns, Arc::new(AtomicUsize::new(0)));
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut d = deployment_of(2);
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    api.create(&PostParams::default(), &d).await.unwrap();
    let status = ["rollout", "status", "deployment/web", "--timeout=120s"];
    kubectl(&plane, ns, &status).await;
    for tag in ["1.29-3", "1.29-4"] {
        let image = format!("c=registry.k8s.io/e2e-test-images/busybox:{tag}");
        kubectl(&plane, ns, &["set", "image", "deployment/web", &image]).await;
        kubectl(&plane, ns, &status).await;
    }
    // Revision 1 (idle) is beyond revisionHistoryLimit 1: deleted.
    let kept = wait("2 sets left", || async {
        let l = sets(&client, ns).await;
        (l.len() == 2).then_some(l)
    })
    .await;
    let revs: Vec<Option<String>> = kept
        .iter()
        .map(|r| annotation(&r.metadata, REVISION))
        .collect();
    assert_eq!(revs, [Some("2".into()), Some("3".into())]);

    // Paused: a template change makes no set, but scaling still applies.
    kubectl(&plane, ns, &["rollout", "pause", "deployment/web"]).await;
    kubectl(
        &plane,
        ns,
        &[
            "set",
            "image",
            "deployment/web",
            "c=registry.k8s.io/e2e-test-images/busybox:1.29-2",
        ],
    )
    .await;
    kubectl(&plane, ns, &["scale", "deployment/web", "--replicas=3"]).await;
    wait("the current set scaled to 3 while paused", || async {
        let l = sets(&client, ns).await;
        let cur = l
            .iter()
            .find(|r| annotation(&r.metadata, REVISION).as_deref() == Some("3"))?;
        (cur.spec.as_ref()?.replicas == Some(3)).then_some(())
    })
    .await;
    let d = wait("Progressing DeploymentPaused", || async {
        let d = api.get("web").await.unwrap();
        (condition(&d, "Progressing") == Some(("Unknown".into(), "DeploymentPaused".into())))
            .then_some(d)
    })
    .await;
    assert_eq!(d.status.unwrap().observed_generation, d.metadata.generation);
    assert_eq!(sets(&client, ns).await.len(), 2, "no set while paused");

    // Resumed: the rollout goes on to a fourth revision.
    kubectl(&plane, ns, &["rollout", "resume", "deployment/web"]).await;
    kubectl(&plane, ns, &status).await;
    let l = sets(&client, ns).await;
    let last = l.last().unwrap();
    assert_eq!(annotation(&last.metadata, REVISION).as_deref(), Some("4"));
    assert_eq!(last.spec.as_ref().unwrap().replicas, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_deployments_remove_old_pods_before_new_ones() {
    let Some(plane) = Plane::start("recreate_deployments_remove_old_pods_before_new_ones") else {
        return;
    };
    let client = plane.client().await;
    let _rs = Running::spawn(replicaset::run(client.clone(), harness::never()));
    let _dc = Running::spawn(deployment::run(client.clone(), harness::never()));
    let ns = "recreate";
    harness::namespace(&client, ns).await;
    let _kubelet = kubelet(client.clone(), ns, Arc::new(AtomicUsize::new(0)));
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut d = deployment_of(2);
    d.spec.as_mut().unwrap().strategy =
        Some(serde_json::from_value(json!({"type": "Recreate"})).unwrap());
    api.create(&PostParams::default(), &d).await.unwrap();
    let status = ["rollout", "status", "deployment/web", "--timeout=120s"];
    kubectl(&plane, ns, &status).await;
    kubectl(
        &plane,
        ns,
        &[
            "set",
            "image",
            "deployment/web",
            "c=registry.k8s.io/e2e-test-images/busybox:1.29-4",
        ],
    )
    .await;
    // Until the rollout is done, live pods are never of two templates.
    let mut mixed = 0;
    let start = std::time::Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the Recreate rollout did not finish"
        );
        let live: Vec<Pod> = pods(&client, ns, "app=web")
            .await
            .into_iter()
            .filter(active)
            .collect();
        let mut hashes: Vec<String> = live
            .iter()
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get("pod-template-hash")
                    .cloned()
            })
            .collect();
        hashes.sort();
        hashes.dedup();
        if hashes.len() > 1 {
            mixed += 1;
        }
        let d = api.get("web").await.unwrap();
        let st = d.status.clone().unwrap_or_default();
        if st.observed_generation == d.metadata.generation
            && st.updated_replicas == Some(2)
            && st.replicas == Some(2)
            && st.available_replicas == Some(2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mixed, 0, "old and new pods were live together");
    kubectl(&plane, ns, &status).await;
    let l = sets(&client, ns).await;
    let sizes: Vec<Option<i32>> = l
        .iter()
        .map(|r| r.spec.as_ref().unwrap().replicas)
        .collect();
    assert_eq!(sizes, [Some(0), Some(2)]);
}

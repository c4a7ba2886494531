//! The kubelet's part, played by the test: pods with IPs and readiness.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// A pod of `labels` on `node`, with the container ports `ports` and an
/// optional hostname/subdomain.
pub async fn create_pod(
    client: &kube::Client,
    ns: &str,
    name: &str,
    labels: Value,
    ports: Value,
    subdomain: Option<&str>,
) -> Pod {
    let mut spec = json!({
        "nodeName": "node-a",
        "terminationGracePeriodSeconds": 30,
        "containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/busybox:1.29-2",
                        "ports": ports}],
    });
    if let Some(sub) = subdomain {
        spec["hostname"] = json!(name);
        spec["subdomain"] = json!(sub);
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

/// The pod runs with `ip`, Ready or not (its Ready condition moving now).
pub async fn set_pod(client: &kube::Client, ns: &str, name: &str, ip: &str, ready: bool) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                        "lastTransitionTime": now}],
    }});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

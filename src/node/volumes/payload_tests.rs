use k8s_openapi::api::core::v1::ProjectedVolumeSource;
use serde_json::json;

use super::*;
use crate::node::podspec::testutil::{FakeLookup, pod, pod_with_spec};

struct FakeTokens;

#[async_trait::async_trait]
impl TokenSource for FakeTokens {
    async fn token(&self, pod: &Pod, audience: Option<&str>, exp: i64) -> Result<String, String> {
        Ok(format!(
            "token-for-{}-{}-{exp}",
            pod.metadata.name.as_deref().unwrap_or(""),
            audience.unwrap_or("api")
        ))
    }
}

fn items(v: serde_json::Value) -> Vec<KeyToPath> {
    serde_json::from_value(v).unwrap()
}

fn text(p: &Payload, path: &str) -> String {
    String::from_utf8(p[path].data.clone()).unwrap()
}

#[tokio::test]
async fn config_map_keys_become_files_with_the_default_mode() {
    let lookup = FakeLookup::default().with_config_map("ns", "cm", &[("a", "1"), ("b", "2")]);
    let p = config_map(&lookup, "ns", "cm", None, 0o640, false)
        .await
        .unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(text(&p, "a"), "1");
    assert_eq!(p["b"].mode, 0o640);
}

#[tokio::test]
async fn items_map_keys_to_paths_with_their_modes() {
    let lookup = FakeLookup::default().with_config_map("ns", "cm", &[("a", "1"), ("b", "2")]);
    let i = items(json!([{"key": "a", "path": "dir/a.txt", "mode": 0o400}]));
    let p = config_map(&lookup, "ns", "cm", Some(&i), DEFAULT_MODE, false)
        .await
        .unwrap();
    assert_eq!(p.keys().collect::<Vec<_>>(), ["dir/a.txt"]);
    assert_eq!(p["dir/a.txt"].mode, 0o400);
    let missing = items(json!([{"key": "nope", "path": "x"}]));
    let e = config_map(&lookup, "ns", "cm", Some(&missing), DEFAULT_MODE, false)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "configmap references non-existent config key: nope"
    );
    // Optional: a missing key is skipped.
    let p = config_map(&lookup, "ns", "cm", Some(&missing), DEFAULT_MODE, true)
        .await
        .unwrap();
    assert!(p.is_empty());
}

#[tokio::test]
async fn a_missing_object_is_an_error_unless_optional() {
    let lookup = FakeLookup::default();
    let e = config_map(&lookup, "ns", "gone", None, DEFAULT_MODE, false)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "configmap \"gone\" not found");
    let e = secret(&lookup, "ns", "gone", None, DEFAULT_MODE, false)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "secret \"gone\" not found");
    assert!(
        secret(&lookup, "ns", "gone", None, DEFAULT_MODE, true)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn secret_data_is_decoded_with_item_modes() {
    let lookup = FakeLookup::default().with_secret("ns", "s", &[("pw", "hunter2")]);
    let i = items(json!([{"key": "pw", "path": "password", "mode": 0o400}]));
    let p = secret(&lookup, "ns", "s", Some(&i), DEFAULT_MODE, false)
        .await
        .unwrap();
    assert_eq!(text(&p, "password"), "hunter2");
    assert_eq!(p["password"].mode, 0o400);
}

#[test]
fn downward_api_metadata_and_resources() {
    let p = pod(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "u1",
                     "labels": {"b": "2", "a": "1"}, "annotations": {"note": "x\"y"}},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}
    }));
    let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "a", "fieldRef": {"fieldPath": "metadata.labels['a']"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o600},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
    ]))
    .unwrap();
    let out = downward_api(&p, &NodeContext::default(), Some(&items), DEFAULT_MODE).unwrap();
    assert_eq!(text(&out, "labels"), "a=\"1\"\nb=\"2\"");
    assert_eq!(text(&out, "annotations"), "note=\"x\\\"y\"");
    assert_eq!(text(&out, "a"), "1");
    assert_eq!(text(&out, "name"), "web");
    assert_eq!(text(&out, "ns"), "ns");
    assert_eq!(text(&out, "uid"), "u1");
    assert_eq!(out["uid"].mode, 0o600);
    assert_eq!(text(&out, "mem"), "64");
    let bad: Vec<DownwardAPIVolumeFile> =
        serde_json::from_value(json!([{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]))
            .unwrap();
    assert!(downward_api(&p, &NodeContext::default(), Some(&bad), DEFAULT_MODE).is_err());
}

#[tokio::test]
async fn projected_merges_token_config_map_and_namespace() {
    let p = pod_with_spec(json!({"containers": [{"name": "c"}]}));
    let lookup =
        FakeLookup::default().with_config_map("ns", "kube-root-ca.crt", &[("ca.crt", "PEM")]);
    let source: ProjectedVolumeSource = serde_json::from_value(json!({
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token", "audience": "vault"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        ]
    }))
    .unwrap();
    let out = projected(&p, &NodeContext::default(), &source, &lookup, &FakeTokens)
        .await
        .unwrap();
    assert_eq!(text(&out, "token"), "token-for-web-vault-3607");
    assert_eq!(text(&out, "ca.crt"), "PEM");
    assert_eq!(text(&out, "namespace"), "ns");
    assert_eq!(out["token"].mode, 0o644);
}

#[tokio::test]
async fn cluster_trust_bundles_are_refused_clearly() {
    let p = pod_with_spec(json!({"containers": [{"name": "c"}]}));
    let source: ProjectedVolumeSource = serde_json::from_value(json!({
        "sources": [{"clusterTrustBundle": {"signerName": "x/y", "path": "b.pem"}}]
    }))
    .unwrap();
    let e = projected(
        &p,
        &NodeContext::default(),
        &source,
        &FakeLookup::default(),
        &FakeTokens,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("clusterTrustBundle"), "{e}");
}

//! Authentication and the Node authorizer: tokens and bad input on the
//! wire, a node restricted to its own objects, node client certificates.

use std::process::Command;

use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn authentication_and_bad_input() {
    use reqwest::Method;
    let s = Server::start();
    // Anonymous: 403 naming system:anonymous, as kube-apiserver answers.
    let (code, body) = s
        .call(
            Method::GET,
            "/api/v1/namespaces",
            None,
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("User \"system:anonymous\" cannot list resource \"namespaces\""),
        "{body}"
    );
    let (code, _) = s.call(Method::GET, "/version", None, "", vec![]).await;
    assert_eq!(code, 200);
    let (code, _) = s
        .call(
            Method::GET,
            "/api/v1/namespaces",
            Some("wrong"),
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(code, 401);
    let (code, _) = s.call(Method::GET, "/healthz", None, "", vec![]).await;
    assert_eq!(code, 200);
    // A token user without system:masters may not read objects.
    let (code, body) = s
        .call(
            Method::GET,
            "/api/v1/namespaces/default/pods",
            Some("viewer-token"),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 403, "{body}");
    // The admin token works.
    let (code, body) = s
        .call(
            Method::GET,
            "/api/v1/namespaces",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(body["kind"], "NamespaceList");

    let post = |body: Vec<u8>, ct: &'static str| {
        s.call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(ADMIN_TOKEN),
            ct,
            body,
        )
    };
    // Malformed JSON: 400 Status, nothing stored.
    let (code, body) = post(b"{\"metadata\": {".to_vec(), "application/json").await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    // Wrong types: 400.
    let (code, _) = post(
        br#"{"metadata": {"name": "t"}, "data": 5}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(code, 400);
    // Oversized: 413.
    let big = format!(
        r#"{{"metadata": {{"name": "big"}}, "data": {{"a": "{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let (code, _) = post(big.into_bytes(), "application/json").await;
    assert_eq!(code, 413);
    // Unknown fields with fieldValidation=Strict: 400.
    let (code, body) = s
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            Some(ADMIN_TOKEN),
            "application/json",
            br#"{"metadata": {"name": "strict"}, "extra": 1}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"extra\""),
        "{body}"
    );
    // Invalid objects: 422 with field paths.
    let (code, body) = s
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            Some(ADMIN_TOKEN),
            "application/json",
            serde_json::to_vec(
                &json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}}),
            )
            .unwrap(),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["metadata.name", "spec.containers[0].image"]);
    // Invalid selectors: 400.
    let (code, _) = s
        .call(
            Method::GET,
            "/api/v1/pods?labelSelector=a%20in%20(b",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 400);
    // YAML bodies, as kube-apiserver takes them.
    let (code, body) = post(
        b"metadata:\n  name: from-yaml\ndata:\n  k: v\n".to_vec(),
        "application/yaml",
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["data"]["k"], "v");
    let (code, _) = post(b"metadata: [unclosed\n".to_vec(), "application/yaml").await;
    assert_eq!(code, 400);
    let (code, _) = s
        .call(
            Method::DELETE,
            "/api/v1/namespaces/default/configmaps/from-yaml",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200);
    // Duplicate: 409 AlreadyExists.
    let (code, _) = post(
        br#"{"metadata": {"name": "dup"}}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(code, 201);
    let (code, body) = post(
        br#"{"metadata": {"name": "dup"}}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    // Bad patches and bodies: 4xx Status errors, never a 5xx.
    let cm_path = "/api/v1/namespaces/default/configmaps/dup";
    for (method, ct, body, want) in [
        (
            Method::PATCH,
            "application/json-patch+json",
            &b"{\"not\": \"a list\"}"[..],
            400,
        ),
        (
            Method::PATCH,
            "application/json-patch+json",
            br#"[{"op":"test","path":"/data/x","value":"1"}]"#,
            422,
        ),
        (
            Method::PATCH,
            "application/strategic-merge-patch+json",
            b"[1, 2]",
            400,
        ),
        (
            Method::PATCH,
            "application/merge-patch+json",
            b"\xff\xfe",
            400,
        ),
        (Method::PATCH, "text/plain", b"{}", 415),
        (
            Method::PATCH,
            "application/merge-patch+json",
            br#"{"metadata": {"name": "other"}}"#,
            400,
        ),
        (
            Method::PATCH,
            "application/merge-patch+json",
            br#"{"data": {"a": 1}}"#,
            400,
        ),
        (
            Method::PUT,
            "application/json",
            br#"{"metadata": {"name": "other"}}"#,
            400,
        ),
        (
            Method::PUT,
            "application/vnd.kubernetes.protobuf",
            b"k8s\x00\x0a\xff",
            400,
        ),
        (Method::PUT, "application/json", b"null", 400),
        (
            Method::PATCH,
            "application/json-patch+json",
            br#"[{"op":"replace","path":"","value":[1]}]"#,
            400,
        ),
        (
            Method::PATCH,
            "application/json-patch+json",
            br#"[{"op":"replace","path":"/metadata","value":"x"}]"#,
            400,
        ),
    ] {
        let (code, status) = s
            .call(
                method.clone(),
                cm_path,
                Some(ADMIN_TOKEN),
                ct,
                body.to_vec(),
            )
            .await;
        assert_eq!(
            code,
            want,
            "{method} {ct} {}: {status}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(status["kind"], "Status");
    }
    let (code, _) = s.call(Method::GET, "/readyz", None, "", vec![]).await;
    assert_eq!(code, 200);
    let (_, dup) = s
        .call(Method::GET, cm_path, Some(ADMIN_TOKEN), "", vec![])
        .await;
    assert!(dup.get("data").is_none(), "{dup}");
    // None of the bad requests left anything behind.
    let names = s.ok(&["get", "configmaps", "-o", "name"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["configmap/dup", "configmap/kube-root-ca.crt"]
    );
}

#[tokio::test]
async fn node_identity_is_restricted_to_its_own_objects() {
    use reqwest::Method;
    let s = Server::start();
    let admin = |path: &'static str, body: Value| {
        s.call(
            Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
    };
    assert_eq!(
        admin(
            "/api/v1/namespaces/default/pods",
            pod_json("mine", Some("n1"))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        admin(
            "/api/v1/namespaces/default/pods",
            pod_json("theirs", Some("n2"))
        )
        .await
        .0,
        201
    );

    let node_patch = |path: &'static str| {
        s.call(
            Method::PATCH,
            path,
            Some(N1_TOKEN),
            "application/merge-patch+json",
            br#"{"status": {"phase": "Running"}}"#.to_vec(),
        )
    };
    let (code, body) = node_patch("/api/v1/namespaces/default/pods/mine/status").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["phase"], "Running");
    let (code, body) = node_patch("/api/v1/namespaces/default/pods/theirs/status").await;
    assert_eq!(code, 403, "{body}");
    // Spec edits are not for nodes at all.
    let (code, _) = node_patch("/api/v1/namespaces/default/pods/mine").await;
    assert_eq!(code, 403);
    let (code, _) = s
        .call(
            Method::DELETE,
            "/api/v1/namespaces/default/pods/theirs",
            Some(N1_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 403);
    let pods = s.ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"]);
    assert_eq!(pods, "Running Pending");

    // Its own Node and Lease, nobody else's.
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let create_as_node = |path: &'static str, body: Value| {
        s.call(
            Method::POST,
            path,
            Some(N1_TOKEN),
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
    };
    assert_eq!(create_as_node("/api/v1/nodes", node("n1")).await.0, 201);
    assert_eq!(create_as_node("/api/v1/nodes", node("n2")).await.0, 403);
    let (code, _) = s
        .call(
            Method::PATCH,
            "/api/v1/nodes/n2",
            Some(N1_TOKEN),
            "application/merge-patch+json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(code, 403);
    let lease = |name: &str| json!({"metadata": {"name": name}, "spec": {"holderIdentity": name}});
    assert_eq!(
        create_as_node(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            lease("n1")
        )
        .await
        .0,
        201
    );
    assert_eq!(
        create_as_node(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            lease("n2")
        )
        .await
        .0,
        403
    );
    let (code, _) = s
        .call(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2",
            Some(N1_TOKEN),
            "application/json",
            serde_json::to_vec(&lease("n2")).unwrap(),
        )
        .await;
    assert_eq!(code, 403);
    // Nodes may read.
    let (code, _) = s
        .call(Method::GET, "/api/v1/pods", Some(N1_TOKEN), "", vec![])
        .await;
    assert_eq!(code, 200);

    // ...but secrets and config maps only as its pods use them, one at a time.
    for (path, body) in [
        (
            "/api/v1/namespaces/default/secrets",
            json!({"metadata": {"name": "used"}, "stringData": {"k": "v"}}),
        ),
        (
            "/api/v1/namespaces/default/secrets",
            json!({"metadata": {"name": "other"}, "stringData": {"k": "v"}}),
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "cm-used"}}),
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "cm-other"}}),
        ),
    ] {
        assert_eq!(admin(path, body).await.0, 201);
    }
    let mut uses = pod_json("uses", Some("n1"));
    uses["spec"]["containers"][0]["env"] =
        json!([{"name": "K", "valueFrom": {"secretKeyRef": {"name": "used", "key": "k"}}}]);
    uses["spec"]["volumes"] = json!([{"name": "v", "configMap": {"name": "cm-used"}}]);
    assert_eq!(admin("/api/v1/namespaces/default/pods", uses).await.0, 201);
    let node_get = |path: &'static str| s.call(Method::GET, path, Some(N1_TOKEN), "", vec![]);
    for (path, want) in [
        ("/api/v1/namespaces/default/secrets/used", 200),
        ("/api/v1/namespaces/default/secrets/other", 403),
        ("/api/v1/namespaces/default/secrets", 403),
        ("/api/v1/secrets", 403),
        (
            "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Dused",
            200,
        ),
        (
            "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Dother",
            403,
        ),
        ("/api/v1/namespaces/default/configmaps/cm-used", 200),
        ("/api/v1/namespaces/default/configmaps/cm-other", 403),
        (
            "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
            200,
        ),
    ] {
        let (code, body) = node_get(path).await;
        assert_eq!(code, want, "{path}: {body}");
    }
    let nodes = s.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.trim(), "node/n1");
}

#[test]
fn node_client_certificate_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let node_kc = tmp.path().join("n1.kubeconfig");
    let flag = format!("n1={}", node_kc.display());
    let s = Server::start_in(tmp.path(), &["--write-node-kubeconfig", &flag]);
    s.ok(&[
        "run",
        "mine",
        "--image=busybox",
        "--overrides={\"spec\":{\"nodeName\":\"n1\"}}",
    ]);
    s.ok(&[
        "run",
        "theirs",
        "--image=busybox",
        "--overrides={\"spec\":{\"nodeName\":\"n2\"}}",
    ]);
    let as_node = |args: &[&str]| {
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&node_kc)
            .arg("--cache-dir")
            .arg(tmp.path().join("node-cache"))
            .args(args)
            .output()
            .expect("kubectl")
    };
    let out = as_node(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "system:node:n1");
    let out = as_node(&["get", "pods", "-o", "name"]);
    assert!(out.status.success());
    let patch = r#"{"status":{"phase":"Running"}}"#;
    let out = as_node(&[
        "patch",
        "pod",
        "mine",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_node(&[
        "patch",
        "pod",
        "theirs",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));
    let out = as_node(&["delete", "pod", "theirs"]);
    assert!(!out.status.success());
    assert_eq!(
        s.ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"]),
        "Running Pending"
    );
}

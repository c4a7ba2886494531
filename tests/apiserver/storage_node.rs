//! storage.k8s.io/v1 and node.k8s.io/v1, as a stock kubelet uses them: its
//! own CSINode (written in protobuf, under the Node authorizer's rules),
//! CSIDrivers and RuntimeClasses read; kubectl's discovery and tables.

use k8s_pb::api::storage::v1 as storage;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use prost::Message;
use reqwest::Method;
use serde_json::json;

use super::{ADMIN_TOKEN, N1_TOKEN, Server};

fn csinode(name: &str) -> Vec<u8> {
    let node = storage::CSINode {
        metadata: Some(meta::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        }),
        spec: Some(storage::CSINodeSpec { drivers: vec![] }),
    };
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some("storage.k8s.io/v1".into()),
            kind: Some("CSINode".into()),
        }),
        raw: Some(node.encode_to_vec()),
        ..Default::default()
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

#[tokio::test]
async fn storage_and_node_apis_for_kubelets() {
    let s = Server::start();
    let pb = "application/vnd.kubernetes.protobuf";
    let csinodes = "/apis/storage.k8s.io/v1/csinodes";

    // A node creates and updates its own CSINode, and no other.
    let (code, body) = s
        .call(Method::POST, csinodes, Some(N1_TOKEN), pb, csinode("n1"))
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, _) = s
        .call(Method::POST, csinodes, Some(N1_TOKEN), pb, csinode("n2"))
        .await;
    assert_eq!(code, 403);
    let (code, mut own) = s
        .call(
            Method::GET,
            &format!("{csinodes}/n1"),
            Some(N1_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{own}");
    own["spec"]["drivers"] = json!([{"name": "hostpath.csi.k8s.io", "nodeID": "n1"}]);
    let (code, body) = s
        .call(
            Method::PUT,
            &format!("{csinodes}/n1"),
            Some(N1_TOKEN),
            "application/json",
            own.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = s
        .call(
            Method::DELETE,
            &format!("{csinodes}/n1"),
            Some(N1_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200);

    // What a kubelet watches: readable by nodes.
    for path in [
        "/apis/storage.k8s.io/v1/csidrivers",
        "/apis/node.k8s.io/v1/runtimeclasses",
        "/apis/storage.k8s.io/v1/volumeattachments",
    ] {
        let (code, body) = s.call(Method::GET, path, Some(N1_TOKEN), "", vec![]).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    // Writing them is for admins.
    let rc = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": "gvisor"}, "handler": "runsc"});
    let (code, _) = s
        .call(
            Method::POST,
            "/apis/node.k8s.io/v1/runtimeclasses",
            Some(N1_TOKEN),
            "application/json",
            rc.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 403);

    // kubectl: discovery, create, tables, validation.
    let resources = s.ok(&["api-resources", "--api-group=storage.k8s.io", "-o", "name"]);
    for r in [
        "csidrivers",
        "csinodes",
        "storageclasses",
        "volumeattachments",
    ] {
        assert!(
            resources.contains(&format!("{r}.storage.k8s.io")),
            "{resources}"
        );
    }
    let manifests = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: hostpath.csi.k8s.io}
spec: {attachRequired: false}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: gvisor}
handler: runsc
"#;
    let out = s.kubectl_stdin(&["apply", "-f", "-"], manifests);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sc = s.ok(&["get", "storageclass"]);
    assert!(sc.contains("local (default)"), "{sc}");
    assert!(
        sc.contains("rancher.io/local-path") && sc.contains("Delete"),
        "{sc}"
    );
    assert!(sc.contains("WaitForFirstConsumer"), "{sc}");
    let drivers = s.ok(&["get", "csidrivers", "-o", "json"]);
    let drivers: serde_json::Value = serde_json::from_str(&drivers).unwrap();
    let spec = &drivers["items"][0]["spec"];
    assert_eq!(spec["attachRequired"], false);
    assert_eq!(spec["volumeLifecycleModes"], json!(["Persistent"]));
    let rc = s.ok(&["get", "runtimeclass"]);
    assert!(rc.contains("gvisor") && rc.contains("runsc"), "{rc}");
    let bad =
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: bad}\nhandler: Not_OK\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], bad);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("handler"),
        "{:?}",
        out
    );

    // The admin may do anything with any CSINode.
    let (code, body) = s
        .call(Method::POST, csinodes, Some(ADMIN_TOKEN), pb, csinode("n9"))
        .await;
    assert_eq!(code, 201, "{body}");
    let table = s.ok(&["get", "csinodes"]);
    assert!(table.contains("DRIVERS") && table.contains("n9"), "{table}");
}

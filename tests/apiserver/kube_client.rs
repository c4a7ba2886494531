//! The kube crate against the server: CRUD, conflicts and watch, bookmarks
//! and 410 Gone after a restart, graceful deletion of bound pods, and the
//! OpenAPI v2 document clients read.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn kube_crate_crud_conflict_and_watch() {
    let s = Server::start();
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let list = cms.list(&ListParams::default()).await.expect("list");
    let start_rv = list.metadata.resource_version.clone().expect("list rv");

    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}, "data": {"a": "1"}}))
            .unwrap();
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    assert!(created.metadata.creation_timestamp.is_some());

    // Optimistic concurrency: a write with a stale resourceVersion is 409.
    let mut fresh = created.clone();
    fresh.data = Some([("a".to_string(), "2".to_string())].into());
    let updated = cms
        .replace(&name, &PostParams::default(), &fresh)
        .await
        .expect("replace");
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    let mut stale = created.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    match cms.replace(&name, &PostParams::default(), &stale).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "Conflict");
        }
        other => panic!("expected 409, got {other:?}"),
    }
    assert_eq!(cms.get(&name).await.unwrap().data.unwrap()["a"], "2");

    // A PUT that leaves out defaulted fields changes nothing about them
    // (pods are strict about spec changes).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut pod: Pod = serde_json::from_value(pod_json("plain", None)).unwrap();
    // No token volume: ServiceAccount admission adds one on create only,
    // and a PUT without it would change the spec (kube refuses that too).
    pod.spec.as_mut().unwrap().automount_service_account_token = Some(false);
    let stored = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let mut again = pod.clone();
    again.metadata.resource_version = stored.metadata.resource_version.clone();
    again.metadata.labels = Some([("l".to_string(), "v".to_string())].into());
    let replaced = pods
        .replace("plain", &PostParams::default(), &again)
        .await
        .expect("replace pod");
    assert_eq!(replaced.metadata.labels.unwrap()["l"], "v");
    assert_eq!(
        replaced.spec.unwrap().restart_policy.as_deref(),
        Some("Always")
    );

    // Patches: merge and JSON patch.
    let p = kube::api::Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}));
    cms.patch(&name, &Default::default(), &p)
        .await
        .expect("merge patch");
    let p: kube::api::Patch<()> = kube::api::Patch::Json(
        serde_json::from_value(json!([{"op": "add", "path": "/data/b", "value": "2"}])).unwrap(),
    );
    let patched = cms
        .patch(&name, &Default::default(), &p)
        .await
        .expect("json patch");
    assert_eq!(patched.metadata.labels.unwrap()["x"], "y");
    assert_eq!(patched.data.unwrap()["b"], "2");

    // Watch from the first list's resourceVersion replays what came after.
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &start_rv)
        .await
        .expect("watch")
        .boxed();
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .ok()
        .flatten()
    {
        match ev.expect("event") {
            WatchEvent::Added(o) => seen.push(("ADDED", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
        if seen.len() == 4 {
            break;
        }
    }
    assert_eq!(seen[0], ("ADDED", name.clone()));
    assert!(
        seen[1..].iter().all(|e| *e == ("MODIFIED", name.clone())),
        "{seen:?}"
    );

    // Pagination.
    for i in 0..5 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("page-{i}"), "labels": {"page": "yes"}}}),
        )
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels("page=yes").limit(2);
    loop {
        let page = cms.list(&lp).await.expect("page");
        assert!(page.items.len() <= 2);
        names.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(names, ["page-0", "page-1", "page-2", "page-3", "page-4"]);

    // Streaming list: initial ADDED events, then a bookmark marking their end.
    let mut stream = cms
        .watch(
            &WatchParams::streaming_lists()
                .labels("page=yes")
                .timeout(10),
            "0",
        )
        .await
        .expect("streaming watch")
        .boxed();
    let mut added = 0;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event");
        match ev {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(b) => {
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 5);
    drop(stream);

    // deletecollection with a selector removes just the selection.
    cms.delete_collection(
        &Default::default(),
        &ListParams::default().labels("page=yes"),
    )
    .await
    .expect("delete collection");
    let left = cms.list(&ListParams::default()).await.unwrap();
    assert!(left.items.iter().all(|c| {
        !c.metadata
            .name
            .as_deref()
            .unwrap_or("")
            .starts_with("page-")
    }));
    assert!(
        left.items
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name.as_str()))
    );
}

#[tokio::test]
async fn watch_bookmarks_and_gone_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &["--bookmark-interval", "1s"]);
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "one"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let rv = created.metadata.resource_version.unwrap();

    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a bookmark within 5s")
        .expect("stream open")
        .expect("event");
    assert!(matches!(ev, WatchEvent::Bookmark(_)), "{ev:?}");
    drop(stream);

    // After a restart, the watch history starts anew: an old
    // resourceVersion is 410 Gone, and clients must re-list.
    s.kill9();
    let s2 = Server::start_in(tmp.path(), &[]);
    let cms: Api<ConfigMap> = Api::namespaced(s2.client().await, "default");
    assert!(cms.get("one").await.is_ok());
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test]
async fn graceful_delete_of_bound_pods() {
    let s = Server::start();
    let pods: Api<Pod> = Api::namespaced(s.client().await, "default");
    let bound: Pod = serde_json::from_value(pod_json("bound", Some("n1"))).unwrap();
    pods.create(&PostParams::default(), &bound).await.unwrap();
    pods.delete("bound", &Default::default())
        .await
        .expect("delete");
    let pod = pods
        .get("bound")
        .await
        .expect("still there while terminating");
    assert!(pod.metadata.deletion_timestamp.is_some());
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(30));
    let table = s.ok(&["get", "pod", "bound"]);
    assert!(table.contains("Terminating"), "{table}");
    // The kubelet's final delete.
    pods.delete("bound", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());

    // Garbage collection by ownerReferences: deleting the owner deletes its
    // dependents (a bound one gracefully), unless asked to orphan them.
    let owner: Pod = serde_json::from_value(pod_json("owner", None)).unwrap();
    let owner = pods.create(&PostParams::default(), &owner).await.unwrap();
    let owned = |name: &str, node: Option<&str>| -> Pod {
        let mut p = pod_json(name, node);
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod",
            "name": "owner", "uid": owner.metadata.uid.clone().unwrap()}]);
        serde_json::from_value(p).unwrap()
    };
    pods.create(&PostParams::default(), &owned("child", None))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &owned("bound-child", Some("n1")))
        .await
        .unwrap();
    pods.delete("owner", &Default::default()).await.unwrap();
    assert!(pods.get_opt("owner").await.unwrap().is_none());
    assert!(pods.get_opt("child").await.unwrap().is_none());
    let bound_child = pods
        .get("bound-child")
        .await
        .expect("terminating, not gone");
    assert!(bound_child.metadata.deletion_timestamp.is_some());

    let owner: Pod = serde_json::from_value(pod_json("owner", None)).unwrap();
    let owner = pods.create(&PostParams::default(), &owner).await.unwrap();
    let mut p = pod_json("orphan", None);
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod",
        "name": "owner", "uid": owner.metadata.uid.clone().unwrap()}]);
    pods.create(&PostParams::default(), &serde_json::from_value(p).unwrap())
        .await
        .unwrap();
    let orphan = kube::api::DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..Default::default()
    };
    pods.delete("owner", &orphan).await.unwrap();
    let kept = pods.get("orphan").await.expect("orphaned, not deleted");
    assert!(kept.metadata.owner_references.is_none());

    // Deleting a namespace: Terminating while a bound pod terminates, no new
    // content meanwhile, gone with the kubelet's final delete of the pod.
    s.ok(&["create", "namespace", "doomed"]);
    let in_doomed: Api<Pod> = Api::namespaced(s.client().await, "doomed");
    let p: Pod = serde_json::from_value(pod_json("running", Some("n1"))).unwrap();
    in_doomed.create(&PostParams::default(), &p).await.unwrap();
    s.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let phase = s.ok(&[
        "get",
        "namespace",
        "doomed",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(phase, "Terminating");
    assert!(
        in_doomed
            .get("running")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let err = s.fails(&["-n", "doomed", "create", "configmap", "late"]);
    assert!(err.contains("being terminated"), "{err}");
    in_doomed
        .delete(
            "running",
            &kube::api::DeleteParams::default().grace_period(0),
        )
        .await
        .unwrap();
    let err = s.fails(&["get", "namespace", "doomed"]);
    assert!(err.contains("not found"), "{err}");

    // pods/binding: the scheduler's way onto a node, once.
    let pending: Pod = serde_json::from_value(pod_json("pending", None)).unwrap();
    pods.create(&PostParams::default(), &pending).await.unwrap();
    let binding = |node: &str| {
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "pending"}, "target": {"kind": "Node", "name": node}}))
        .unwrap()
    };
    let path = "/api/v1/namespaces/default/pods/pending/binding";
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            binding("n1"),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, _) = s
        .call(
            reqwest::Method::POST,
            path,
            Some(ADMIN_TOKEN),
            "application/json",
            binding("n2"),
        )
        .await;
    assert_eq!(code, 409);
    let pod = pods.get("pending").await.unwrap();
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("n1"));
}

#[tokio::test]
async fn openapi_v2_document() {
    let s = Server::start();
    let (code, doc) = s
        .call(
            reqwest::Method::GET,
            "/openapi/v2",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(doc["swagger"], "2.0");
    let defs = doc["definitions"].as_object().unwrap();
    let pod = &defs["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "version": "v1", "kind": "Pod"}])
    );
    let spec = &pod["properties"]["spec"];
    let spec_ref = spec.get("$ref").unwrap_or(&spec["allOf"][0]["$ref"]);
    assert_eq!(
        spec_ref, "#/definitions/io.k8s.api.core.v1.PodSpec",
        "{spec}"
    );
    // Every reference resolves, and no v3-only keyword is left.
    fn walk(v: &Value, defs: &serde_json::Map<String, Value>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    let name = r.strip_prefix("#/definitions/").expect(r);
                    assert!(defs.contains_key(name), "dangling {r}");
                }
                for bad in ["nullable", "oneOf", "anyOf", "const", "$defs"] {
                    assert!(!m.contains_key(bad), "{bad} in {v}");
                }
                m.values().for_each(|x| walk(x, defs));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, defs)),
            _ => {}
        }
    }
    walk(&doc, defs);
    let lease_path =
        &doc["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"];
    assert_eq!(
        lease_path["get"]["x-kubernetes-group-version-kind"]["kind"],
        "Lease"
    );
    // client-go asks for protobuf only; it is told so and does without.
    let resp = s
        .http()
        .get(format!("{}/openapi/v2", s.url))
        .bearer_auth(ADMIN_TOKEN)
        .header(
            "Accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 406);
    let (code, _) = s
        .call(reqwest::Method::GET, "/openapi/v2", None, "", vec![])
        .await;
    assert_eq!(code, 403);
}

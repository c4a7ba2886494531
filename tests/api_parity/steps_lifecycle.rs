//! What happens over time: a pod bound to a node, an Event written through
//! one API and read through the other, and a namespace that terminates
//! while content with a finalizer holds it.

use serde_json::json;

use super::harness::{JSON_PATCH, Outcome, Pair, Report, Req};

pub async fn run(p: &Pair, r: &mut Report) {
    pods(p, r).await;
    events(p, r).await;
    namespace_finalization(p, r).await;
}

async fn pods(p: &Pair, r: &mut Report) {
    let path = "/api/v1/namespaces/parity/pods";
    p.check(
        r,
        "create pod",
        Req::post(
            path,
            &json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        ),
    )
    .await;
    p.check(r, "bind pod", Req::post(format!("{path}/p1/binding"), &json!({"apiVersion": "v1",
        "kind": "Binding", "metadata": {"name": "p1"}, "target": {"apiVersion": "v1", "kind": "Node",
        "name": "parity-node"}})))
        .await;
    p.check(r, "get bound pod", Req::get(format!("{path}/p1")))
        .await;
    p.check(r, "append a toleration", Req::patch(format!("{path}/p1"), JSON_PATCH,
        &json!([{"op": "add", "path": "/spec/tolerations/-", "value": {"key": "k", "operator": "Exists",
            "effect": "NoSchedule"}}])))
        .await;
    p.check(
        r,
        "delete pod now",
        Req::delete(format!("{path}/p1?gracePeriodSeconds=0")),
    )
    .await;
}

async fn events(p: &Pair, r: &mut Report) {
    let core = "/api/v1/namespaces/parity/events";
    let modern = "/apis/events.k8s.io/v1/namespaces/parity/events";
    p.check(
        r,
        "create core event",
        Req::post(
            core,
            &json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "core-ev"}, "involvedObject": {"kind": "Pod", "namespace": "parity",
        "name": "p1", "apiVersion": "v1"}, "reason": "Started", "message": "hello",
        "type": "Normal", "source": {"component": "parity"}, "count": 2,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:01Z"}),
        ),
    )
    .await;
    p.check(
        r,
        "read core event as events.k8s.io",
        Req::get(format!("{modern}/core-ev")),
    )
    .await;
    p.check(
        r,
        "create events.k8s.io event",
        Req::post(
            modern,
            &json!({"apiVersion": "events.k8s.io/v1",
        "kind": "Event", "metadata": {"name": "new-ev"}, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "example.com/parity", "reportingInstance": "i1", "action": "Start",
        "reason": "Started", "type": "Normal", "note": "hi", "regarding": {"kind": "Pod",
        "namespace": "parity", "name": "p1", "apiVersion": "v1"}}),
        ),
    )
    .await;
    p.check(
        r,
        "read events.k8s.io event as core",
        Req::get(format!("{core}/new-ev")),
    )
    .await;
}

fn has_condition(o: &Outcome, kind: &str) -> bool {
    o.body["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

async fn namespace_finalization(p: &Pair, r: &mut Report) {
    let ns = "/api/v1/namespaces/parity-term";
    p.check(
        r,
        "create namespace to terminate",
        Req::post(
            "/api/v1/namespaces",
            &json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "parity-term"}}),
        ),
    )
    .await;
    p.check(
        r,
        "create held configmap",
        Req::post(
            format!("{ns}/configmaps"),
            &json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held",
        "finalizers": ["example.com/hold"]}}),
        ),
    )
    .await;
    p.check(r, "delete namespace", Req::delete(ns)).await;
    p.check(
        r,
        "create in terminating namespace",
        Req::post(
            format!("{ns}/configmaps"),
            &json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}),
        ),
    )
    .await;
    p.poll(r, "namespace waits for finalizers", Req::get(ns), |o| {
        has_condition(o, "NamespaceFinalizersRemaining")
    })
    .await;
    p.check(
        r,
        "held configmap is deleting",
        Req::get(format!("{ns}/configmaps/held")),
    )
    .await;
    p.check(
        r,
        "release the finalizer",
        Req::patch(
            format!("{ns}/configmaps/held"),
            JSON_PATCH,
            &json!([{"op": "remove", "path": "/metadata/finalizers"}]),
        ),
    )
    .await;
    p.poll(r, "namespace goes", Req::get(ns), |o| o.status == 404)
        .await;
    // namespaces/finalize: the spec.finalizers of a namespace, set by PUT.
    p.check(
        r,
        "create namespace to finalize",
        Req::post(
            "/api/v1/namespaces",
            &json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "parity-fin"}}),
        ),
    )
    .await;
    p.check(
        r,
        "put namespace finalize",
        Req::put(
            "/api/v1/namespaces/parity-fin/finalize",
            &json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "parity-fin"},
        "spec": {"finalizers": []}}),
        ),
    )
    .await;
}

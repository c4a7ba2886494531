//! Objects kube-apiserver refuses, and what it says (status, reason,
//! message, every cause with its field path), plus the allocations and
//! defaults it makes on write.

use serde_json::json;

use super::harness::{MERGE, Pair, Report, Req};

pub async fn run(p: &Pair, r: &mut Report) {
    let ns = "/api/v1/namespaces/parity";
    let dry = "?dryRun=All";
    let cases = [
        (
            "configmap bad key",
            format!("{ns}/configmaps{dry}"),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "badkey"}, "data": {"bad key!": "x"}}),
        ),
        (
            "secret tls without key",
            format!("{ns}/secrets{dry}"),
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}),
        ),
        (
            "secret bad dockerconfigjson",
            format!("{ns}/secrets{dry}"),
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "dcj"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}}),
        ),
        (
            "service without ports",
            format!("{ns}/services{dry}"),
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "noports"}, "spec": {"selector": {"a": "b"}}}),
        ),
        (
            "pod negative containerPort",
            format!("{ns}/pods{dry}"),
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "negport"}, "spec": {"containers": [{"name": "c", "image": "busybox",
            "ports": [{"containerPort": -1}]}]}}),
        ),
        (
            "pod many errors",
            format!("{ns}/pods{dry}"),
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "many", "labels": {"x".repeat(70): "v"}}, "spec": {"restartPolicy": "Sometimes",
            "containers": [{"name": "C_1", "image": "", "ports": [{"containerPort": 70000}]}]}}),
        ),
        (
            "endpoints bad ip",
            format!("{ns}/endpoints{dry}"),
            json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "badip"}, "subsets": [{"addresses": [{"ip": "999.1.1.1"}], "ports": [{"port": 80}]}]}),
        ),
        (
            "endpointslice bad addressType",
            "/apis/discovery.k8s.io/v1/namespaces/parity/endpointslices?dryRun=All".into(),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "bad"},
            "addressType": "Bogus", "endpoints": []}),
        ),
        (
            "lease duration 0",
            "/apis/coordination.k8s.io/v1/namespaces/parity/leases?dryRun=All".into(),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l0"},
            "spec": {"holderIdentity": "me", "leaseDurationSeconds": 0}}),
        ),
        (
            "role rule without verbs",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/parity/roles?dryRun=All".into(),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "noverbs"},
            "rules": [{"apiGroups": [""], "resources": ["pods"]}]}),
        ),
        (
            "events.k8s.io event invalid",
            "/apis/events.k8s.io/v1/namespaces/parity/events?dryRun=All".into(),
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "ev"},
            "reason": "R", "note": "n"}),
        ),
    ];
    for (name, path, body) in cases {
        p.check(r, &format!("refuse {name}"), Req::post(path, &body))
            .await;
    }
    immutable(p, r).await;
    services(p, r).await;
}

async fn immutable(p: &Pair, r: &mut Report) {
    let path = "/api/v1/namespaces/parity/configmaps";
    p.check(r, "create immutable configmap", Req::post(path, &json!({"apiVersion": "v1",
        "kind": "ConfigMap", "metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": true})))
        .await;
    p.check(
        r,
        "patch immutable configmap",
        Req::patch(
            format!("{path}/frozen"),
            MERGE,
            &json!({"data": {"a": "2"}}),
        ),
    )
    .await;
    p.check(
        r,
        "unfreeze immutable configmap",
        Req::patch(
            format!("{path}/frozen"),
            MERGE,
            &json!({"immutable": false}),
        ),
    )
    .await;
}

async fn services(p: &Pair, r: &mut Report) {
    let path = "/api/v1/namespaces/parity/services";
    p.check(r, "create service", Req::post(path, &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})))
        .await;
    p.check(
        r,
        "patch service clusterIP",
        Req::patch(
            format!("{path}/web"),
            MERGE,
            &json!({"spec": {"clusterIP": "10.0.0.99"}}),
        ),
    )
    .await;
    p.check(
        r,
        "switch service to NodePort",
        Req::patch(
            format!("{path}/web"),
            MERGE,
            &json!({"spec": {"type": "NodePort"}}),
        ),
    )
    .await;
    p.check(r, "get NodePort service", Req::get(format!("{path}/web")))
        .await;
    p.check(
        r,
        "create LoadBalancer service",
        Req::post(
            format!("{path}?dryRun=All"),
            &json!({"apiVersion": "v1",
        "kind": "Service", "metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer",
        "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        ),
    )
    .await;
}

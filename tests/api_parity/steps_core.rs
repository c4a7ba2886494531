//! Reads and writes of the core kinds in every encoding a client uses:
//! JSON and protobuf bodies, protobuf, PartialObjectMetadata(List) and
//! Table accepts, watches in each, the common error answers, anonymous
//! access, and a few kubectl steps.

use reqwest::Method;
use serde_json::{Value, json};

use super::harness::{JSON_PATCH, MERGE, PB, POM, POM_LIST, Pair, Report, Req, STRATEGIC, TABLE};

pub const NS: &str = "parity";
const CMS: &str = "/api/v1/namespaces/parity/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "parity"}},
        "data": {"a": "1"}})
}

pub async fn run(p: &Pair, r: &mut Report) {
    anonymous(p, r).await;
    p.check(r, "version", Req::get("/version")).await;
    p.check(
        r,
        "create namespace",
        Req::post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NS}}),
        ),
    )
    .await;
    // The service-account controller's default account, which pods need.
    p.poll(
        r,
        "default serviceaccount appears",
        Req::get("/api/v1/namespaces/parity/serviceaccounts/default"),
        |o| o.status == 200,
    )
    .await;
    configmaps(p, r).await;
    encodings(p, r).await;
    errors(p, r).await;
    kubectl(p, r).await;
}

async fn anonymous(p: &Pair, r: &mut Report) {
    for path in [
        "/version",
        "/healthz",
        "/livez",
        "/readyz",
        "/.well-known/openid-configuration",
        "/openid/v1/jwks",
        "/api",
        "/api/v1/namespaces",
        "/api/v1/namespaces/default/pods/nope",
    ] {
        let (_, s) = p
            .check(
                r,
                &format!("anonymous GET {path}"),
                Req::get(path).anonymous(),
            )
            .await;
        let _ = s;
    }
}

async fn configmaps(p: &Pair, r: &mut Report) {
    p.check(r, "create configmap json", Req::post(CMS, &cm("cm1")))
        .await;
    p.check(
        r,
        "create configmap protobuf",
        Req::new(Method::POST, CMS).protobuf(&cm("cm2")).accept(PB),
    )
    .await;
    p.check(r, "create configmap exists", Req::post(CMS, &cm("cm1")))
        .await;
    let mut generated = cm("");
    generated["metadata"] = json!({"generateName": "gen-", "labels": {"app": "other"}});
    p.check(
        r,
        "create configmap generateName",
        Req::post(CMS, &generated),
    )
    .await;
    p.check(r, "get configmap", Req::get(format!("{CMS}/cm1")))
        .await;
    p.check(r, "get configmap missing", Req::get(format!("{CMS}/nope")))
        .await;
    p.check(
        r,
        "patch configmap merge",
        Req::patch(format!("{CMS}/cm1"), MERGE, &json!({"data": {"b": "2"}})),
    )
    .await;
    p.check(
        r,
        "patch configmap strategic",
        Req::patch(
            format!("{CMS}/cm1"),
            STRATEGIC,
            &json!({"metadata": {"labels": {"tier": "x"}}}),
        ),
    )
    .await;
    p.check(
        r,
        "patch configmap json-patch",
        Req::patch(
            format!("{CMS}/cm1"),
            JSON_PATCH,
            &json!([{"op": "remove", "path": "/data/a"}]),
        ),
    )
    .await;
    p.check(
        r,
        "patch configmap json-patch test fails",
        Req::patch(
            format!("{CMS}/cm1"),
            JSON_PATCH,
            &json!([{"op": "test", "path": "/data/b", "value": "nine"}]),
        ),
    )
    .await;
    let mut stale = cm("cm1");
    stale["metadata"]["resourceVersion"] = json!("1");
    p.check(
        r,
        "update configmap stale",
        Req::put(format!("{CMS}/cm1"), &stale),
    )
    .await;
    p.check(
        r,
        "delete configmap protobuf options",
        Req::delete(format!("{CMS}/cm2")).protobuf(&json!({
            "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"})),
    )
    .await;
    p.check(
        r,
        "delete configmap missing",
        Req::delete(format!("{CMS}/cm2")),
    )
    .await;
    p.check(r, "create configmap again", Req::post(CMS, &cm("cm2")))
        .await;
}

async fn encodings(p: &Pair, r: &mut Report) {
    let one = format!("{CMS}/cm1");
    let list = format!("{CMS}?labelSelector=app%3Dparity");
    let watch = format!("{list}&watch=1&timeoutSeconds=2");
    for (what, accept) in [
        ("protobuf", PB),
        ("PartialObjectMetadata", POM),
        ("PartialObjectMetadataList", POM_LIST),
        ("Table", TABLE),
        (
            "protobuf PartialObjectMetadata",
            "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        ),
        (
            "PartialObjectMetadata then json",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
        ),
    ] {
        p.check(
            r,
            &format!("get configmap as {what}"),
            Req::get(&one).accept(accept),
        )
        .await;
        p.check(
            r,
            &format!("list configmaps as {what}"),
            Req::get(&list).accept(accept),
        )
        .await;
    }
    p.check(r, "list configmaps", Req::get(&list)).await;
    p.check(
        r,
        "list configmaps limit 1",
        Req::get(format!("{list}&limit=1")),
    )
    .await;
    for (what, accept) in [
        ("json", "application/json"),
        (
            "protobuf",
            "application/vnd.kubernetes.protobuf;stream=watch",
        ),
        ("PartialObjectMetadata", POM),
        ("Table", TABLE),
    ] {
        p.check(
            r,
            &format!("watch configmaps as {what}"),
            Req::get(&watch).accept(accept),
        )
        .await;
    }
}

async fn errors(p: &Pair, r: &mut Report) {
    p.check(
        r,
        "create malformed json",
        Req::new(Method::POST, CMS).raw("application/json", b"{\"apiVersion\": "),
    )
    .await;
    p.check(
        r,
        "create unsupported content type",
        Req::new(Method::POST, CMS).raw("text/plain", b"hello"),
    )
    .await;
    p.check(
        r,
        "create malformed protobuf",
        Req::new(Method::POST, CMS).raw(PB, b"k8s\0\x0a\xff"),
    )
    .await;
    p.check(
        r,
        "list bad labelSelector",
        Req::get(format!("{CMS}?labelSelector=a%3D%3D%3Db")),
    )
    .await;
    p.check(
        r,
        "list bad fieldSelector",
        Req::get(format!("{CMS}?fieldSelector=spec.bogus%3Dx")),
    )
    .await;
    p.check(
        r,
        "list bad resourceVersion",
        Req::get(format!(
            "{CMS}?resourceVersion=abc&resourceVersionMatch=Exact"
        )),
    )
    .await;
    p.check(
        r,
        "list bad continue",
        Req::get(format!("{CMS}?limit=1&continue=garbage")),
    )
    .await;
    p.check(
        r,
        "get unknown resource",
        Req::get("/api/v1/namespaces/parity/bogus"),
    )
    .await;
    p.check(
        r,
        "create kind mismatch",
        Req::post(
            CMS,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        ),
    )
    .await;
    p.check(
        r,
        "create namespace mismatch",
        Req::post(
            CMS,
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "other"}}),
        ),
    )
    .await;
    p.check(
        r,
        "create bad name",
        Req::post(
            CMS,
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "Bad_Name"}}),
        ),
    )
    .await;
    p.check(
        r,
        "patch bad merge body",
        Req::patch(format!("{CMS}/cm1"), MERGE, &json!("a string")),
    )
    .await;
    p.check(
        r,
        "watch bad timeoutSeconds",
        Req::get(format!("{CMS}?watch=1&timeoutSeconds=x")),
    )
    .await;
}

async fn kubectl(p: &Pair, r: &mut Report) {
    p.kubectl(
        r,
        "kubectl get configmap",
        &["-n", NS, "get", "configmap", "cm1", "-o", "json"],
        None,
    );
    p.kubectl(
        r,
        "kubectl get missing",
        &["-n", NS, "get", "configmap", "nope"],
        None,
    );
    p.kubectl(
        r,
        "kubectl get -l",
        &[
            "-n",
            NS,
            "get",
            "configmaps",
            "-l",
            "app=parity",
            "-o",
            "name",
        ],
        None,
    );
    p.kubectl(
        r,
        "kubectl apply list",
        &["-n", NS, "apply", "-f", "-"],
        Some(r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-list"}, "data": {"k": "v"}}]}"#),
    );
    p.kubectl(
        r,
        "kubectl delete",
        &["-n", NS, "delete", "configmap", "from-list"],
        None,
    );
    p.kubectl(
        r,
        "kubectl create quota",
        &[
            "-n",
            NS,
            "create",
            "quota",
            "q1",
            "--hard=pods=5",
            "--dry-run=server",
            "-o",
            "json",
        ],
        None,
    );
    p.kubectl(
        r,
        "kubectl auth can-i",
        &["auth", "can-i", "create", "pods", "-n", NS],
        None,
    );
}

//! Discovery and OpenAPI documents: what kubectl reads before it does
//! anything. Legacy (unaggregated) discovery is served; kubectl falls back to
//! it when the response is not the aggregated format.
//!
//! OpenAPI v3 carries the kinds' schemas (from k8s-openapi, for `kubectl
//! explain`) and is shaped for kubectl's field-validation
//! probe: each group-version document lists every resource path whose PATCH
//! operation carries the `fieldValidation` query parameter and the
//! `x-kubernetes-group-version-kind` extension. That makes `kubectl apply` /
//! `create -f` use server-side validation (which this server does, against
//! the k8s-openapi types) instead of client-side schema validation. The PATCH
//! operations deliberately carry no request body, so kubectl computes
//! strategic merge patches from its compiled-in Go types.

use serde_json::{Map, Value, json};

use crate::apiserver::resources::{self, Kind};
use crate::apiserver::reviews;

/// The Kubernetes version this server implements the API of.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "32";
pub const GIT_VERSION: &str = "v1.32.0-deckhand";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let gv = format!("{group}/{version}");
    json!({
        "name": group,
        "versions": [{"groupVersion": gv, "version": version}],
        "preferredVersion": {"groupVersion": gv, "version": version},
    })
}

/// Served group versions: the stored kinds', then the review resources'.
fn all_group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = resources::group_versions();
    for (g, v, _, _) in reviews::REVIEWS {
        if !out.contains(&(*g, *v)) {
            out.push((g, v));
        }
    }
    out
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = all_group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_entry(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    let (g, v) = all_group_versions()
        .into_iter()
        .find(|(g, _)| !g.is_empty() && *g == group)?;
    let mut entry = group_entry(g, v);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&Kind> = resources::KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    let mut list = Vec::new();
    for (_, _, resource, kind) in reviews::REVIEWS
        .iter()
        .filter(|(g, v, _, _)| *g == group && *v == version)
    {
        list.push(json!({
            "name": resource,
            "singularName": resource.trim_end_matches('s'),
            "namespaced": false,
            "kind": kind,
            "verbs": ["create"],
        }));
    }
    if kinds.is_empty() && list.is_empty() {
        return None;
    }
    for k in kinds {
        list.push(json!({
            "name": k.resource,
            "singularName": k.singular,
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": k.verbs(),
            "shortNames": k.short_names,
            "categories": if matches!(k.resource, "pods" | "services") { vec!["all"] } else { vec![] },
        }));
        if k.status {
            list.push(json!({
                "name": format!("{}/status", k.resource),
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if k.resource == "serviceaccounts" {
            list.push(json!({
                "name": "serviceaccounts/token",
                "singularName": "",
                "namespaced": true,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }));
        }
        if k.resource == "pods" {
            list.push(json!({
                "name": "pods/binding",
                "singularName": "",
                "namespaced": true,
                "kind": "Binding",
                "verbs": ["create"],
            }));
            for (sub, kind, verbs) in [
                ("log", "Pod", &["get"][..]),
                ("exec", "PodExecOptions", &["create", "get"][..]),
                ("attach", "PodAttachOptions", &["create", "get"][..]),
                (
                    "portforward",
                    "PodPortForwardOptions",
                    &["create", "get"][..],
                ),
            ] {
                list.push(json!({
                    "name": format!("pods/{sub}"),
                    "singularName": "",
                    "namespaced": true,
                    "kind": kind,
                    "verbs": verbs,
                }));
            }
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": list,
    }))
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each group-version's document lives. The hash in
/// each URL is of the document itself, so client caches never go stale.
pub fn openapi_v3_root() -> Value {
    let mut paths = Map::new();
    for (path, (_, hash)) in openapi_docs() {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` and `/openapi/v3/apis/<group>/<version>`.
pub fn openapi_v3_doc(path: &str) -> Option<&'static Value> {
    openapi_docs().get(path).map(|(doc, _)| doc)
}

/// Every group-version document with its hash, built once.
fn openapi_docs() -> &'static std::collections::BTreeMap<String, (Value, String)> {
    static DOCS: std::sync::OnceLock<std::collections::BTreeMap<String, (Value, String)>> =
        std::sync::OnceLock::new();
    DOCS.get_or_init(|| {
        use sha2::Digest;
        resources::group_versions()
            .into_iter()
            .map(|(g, v)| {
                let doc = build_doc(g, v);
                let hash = hex::encode(&sha2::Sha256::digest(doc.to_string().as_bytes())[..16]);
                (gv_path(g, v), (doc, hash))
            })
            .collect()
    })
}

/// One group-version's document: the resource paths (for kubectl's
/// fieldValidation probe) and the kinds' schemas from k8s-openapi, tagged
/// with their group-version-kind (for `kubectl explain`).
fn build_doc(g: &str, v: &str) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let mut names = Vec::new();
    for k in resources::KINDS
        .iter()
        .filter(|k| k.group == g && k.version == v)
    {
        let base = format!("/{}", gv_path(g, v));
        let item = if k.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", k.resource)
        } else {
            format!("{base}/{}/{{name}}", k.resource)
        };
        let gvk = json!({"group": g, "version": v, "kind": k.kind});
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
        let op = |id: &str| {
            json!({
                "operationId": format!("{id}{}", k.kind),
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation")],
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(
            item,
            json!({
                "get": {"operationId": format!("read{}", k.kind), "x-kubernetes-group-version-kind": gvk,
                        "responses": {"200": {"description": "OK"}}},
                "put": op("replace"),
                "patch": op("patch"),
            }),
        );
        names.push(((k.schema)(&mut generator), gvk));
    }
    let mut schemas = generator.take_definitions(true);
    for (name, gvk) in names {
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

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

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};

use crate::apiserver::context::{Body, full};
use crate::apiserver::error::ApiError;
use crate::apiserver::resources::{self, Kind};
use crate::apiserver::reviews;
use crate::apiserver::state::State;

/// The Kubernetes version this server implements the API of.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "36";
pub const GIT_VERSION: &str = "v1.36.2-deckhand";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "emulationMajor": KUBE_MAJOR,
        "emulationMinor": KUBE_MINOR,
        // kube's compatibility version: one minor back.
        "minCompatibilityMajor": KUBE_MAJOR,
        "minCompatibilityMinor": "35",
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

/// The kinds `kubectl get all` lists (kube's "all" category).
fn in_category_all(k: &Kind) -> bool {
    matches!(
        (k.group, k.resource),
        ("", "pods" | "services" | "replicationcontrollers")
            | (
                "apps",
                "deployments" | "replicasets" | "daemonsets" | "statefulsets"
            )
            | ("batch", "jobs" | "cronjobs")
    )
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
            "categories": if in_category_all(k) { vec!["all"] } else { vec![] },
        }));
        if resources::has_scale(k) {
            list.push(json!({
                "name": format!("{}/scale", k.resource),
                "singularName": "",
                "namespaced": true,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
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
        if k.resource == "nodes" {
            list.push(json!({
                "name": "nodes/proxy",
                "singularName": "",
                "namespaced": false,
                "kind": "NodeProxyOptions",
                "verbs": ["create", "delete", "get", "patch", "update"],
            }));
        }
        if k.resource == "pods" {
            list.push(json!({
                "name": "pods/eviction",
                "singularName": "",
                "namespaced": true,
                "group": "policy",
                "version": "v1",
                "kind": "Eviction",
                "verbs": ["create"],
            }));
            list.push(json!({
                "name": "pods/binding",
                "singularName": "",
                "namespaced": true,
                "kind": "Binding",
                "verbs": ["create"],
            }));
            for (sub, kind, verbs) in [
                ("log", "Pod", &["get"][..]),
                (
                    "ephemeralcontainers",
                    "Pod",
                    &["get", "patch", "update"][..],
                ),
                ("resize", "Pod", &["get", "patch", "update"][..]),
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

/// `/openapi/v2`: one Swagger 2.0 document for every kind, from the same
/// k8s-openapi schemas as v3 (refs under `#/definitions/`, v3-only schema
/// keywords dropped so strict Swagger parsers accept it). Like v3's, the
/// PATCH operations list no `consumes`, so kubectl computes strategic merge
/// patches from its own types rather than from these schemas (which carry
/// no patch strategies).
pub fn openapi_v2() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut settings = schemars::generate::SchemaSettings::openapi3();
        settings.definitions_path = "/definitions".into();
        let mut generator = settings.into_generator();
        let mut paths = Map::new();
        let mut names = Vec::new();
        for k in resources::KINDS {
            let (g, v) = (k.group, k.version);
            let base = format!("/{}", gv_path(g, v));
            let gvk = json!({"group": g, "version": v, "kind": k.kind});
            let schema_name = (k.schema)(&mut generator);
            let reference = json!({"$ref": format!("#/definitions/{schema_name}")});
            let param = |name: &str, place: &str| {
                json!({"name": name, "in": place, "type": "string", "uniqueItems": true,
                       "required": place == "path"})
            };
            let ns = k.namespaced.then(|| param("namespace", "path"));
            let op = |id: &str, action: &str, extra: Vec<Value>| {
                let mut params: Vec<Value> = ns.iter().cloned().collect();
                params.extend(extra);
                json!({
                    "operationId": format!("{id}{}", k.kind),
                    "produces": ["application/json", "application/yaml"],
                    "schemes": ["https"],
                    "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "responses": {"200": {"description": "OK", "schema": reference}},
                })
            };
            let collection = if k.namespaced {
                format!("{base}/namespaces/{{namespace}}/{}", k.resource)
            } else {
                format!("{base}/{}", k.resource)
            };
            let body = json!({"name": "body", "in": "body", "required": true, "schema": reference});
            paths.insert(
                collection.clone(),
                json!({
                    "get": op("list", "list", vec![param("labelSelector", "query"), param("fieldSelector", "query")]),
                    "post": op("create", "post", vec![body.clone(), param("dryRun", "query"),
                        param("fieldManager", "query"), param("fieldValidation", "query")]),
                }),
            );
            paths.insert(
                format!("{collection}/{{name}}"),
                json!({
                    "get": op("read", "get", vec![param("name", "path")]),
                    "put": op("replace", "put", vec![param("name", "path"), body, param("dryRun", "query"),
                        param("fieldManager", "query"), param("fieldValidation", "query")]),
                    "patch": op("patch", "patch", vec![param("name", "path"), param("dryRun", "query"),
                        param("fieldManager", "query"), param("fieldValidation", "query")]),
                    "delete": op("delete", "delete", vec![param("name", "path")]),
                }),
            );
            names.push((schema_name, gvk));
        }
        let mut definitions = generator.take_definitions(true);
        for schema in definitions.values_mut() {
            swagger2_schema(schema);
        }
        for (name, gvk) in names {
            if let Some(schema) = definitions.get_mut(&name).and_then(Value::as_object_mut) {
                schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
            }
        }
        json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths,
            "definitions": definitions,
        })
    })
}

/// The v2 document serialized once.
pub fn openapi_v2_json() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| serde_json::to_vec(openapi_v2()).unwrap_or_default())
}

/// Keep only what a Swagger 2.0 schema object may hold.
fn swagger2_schema(schema: &mut Value) {
    const ALLOWED: &[&str] = &[
        "$ref",
        "format",
        "title",
        "description",
        "default",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "enum",
        "additionalProperties",
        "type",
        "items",
        "allOf",
        "properties",
        "discriminator",
        "readOnly",
        "example",
    ];
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    map.retain(|k, _| ALLOWED.contains(&k.as_str()) || k.starts_with("x-"));
    // Swagger 2 has no type lists: `["string", "null"]` is a string.
    if let Some(types) = map.get("type").and_then(Value::as_array) {
        match types.iter().find(|t| *t != "null").cloned() {
            Some(t) => {
                map.insert("type".into(), t);
            }
            None => {
                map.remove("type");
            }
        }
    }
    // A bare `true` schema (anything) is an empty schema object.
    for key in ["items", "additionalProperties"] {
        if map.get(key) == Some(&Value::Bool(true)) {
            map.insert(key.into(), json!({}));
        }
    }
    if let Some(props) = map.get_mut("properties").and_then(Value::as_object_mut) {
        for p in props.values_mut() {
            if p == &Value::Bool(true) {
                *p = json!({});
            }
            swagger2_schema(p);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = map.get_mut(key) {
            swagger2_schema(inner);
        }
    }
    if let Some(all) = map.get_mut("allOf").and_then(Value::as_array_mut) {
        all.iter_mut().for_each(swagger2_schema);
    }
}

/// The discovery, version, OpenAPI and OIDC documents, by path; None for
/// any other path.
pub fn route(state: &State, path: &str) -> Result<Option<Response<Body>>, ApiError> {
    let doc = match path {
        "/version" => Some(version()),
        "/api" => Some(api_versions(&state.server_address)),
        "/apis" => Some(api_group_list()),
        "/openapi/v3" => Some(openapi_v3_root()),
        "/.well-known/openid-configuration" => Some(state.sa_issuer.openid_configuration()),
        "/openid/v1/jwks" => {
            return Ok(Some(full(
                StatusCode::OK,
                "application/jwk-set+json",
                state.sa_issuer.jwks().to_string().into_bytes(),
            )));
        }
        "/openapi/v2" => {
            let mut resp = Response::new(Full::new(Bytes::from_static(openapi_v2_json())).boxed());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(Some(resp));
        }
        _ => None,
    };
    if let Some(doc) = doc {
        return Ok(Some(crate::apiserver::context::json(StatusCode::OK, &doc)));
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3/") {
        let doc = openapi_v3_doc(rest).ok_or(ApiError::NoRoute)?;
        return Ok(Some(crate::apiserver::context::json(StatusCode::OK, doc)));
    }
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let doc = match segs.as_slice() {
        ["api", v] => resource_list("", v),
        ["apis", g] => api_group(g),
        ["apis", g, v] => resource_list(g, v),
        _ => return Ok(None),
    };
    match doc {
        Some(doc) => Ok(Some(crate::apiserver::context::json(StatusCode::OK, &doc))),
        None => Err(ApiError::NoRoute),
    }
}

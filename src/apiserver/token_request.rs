//! POST serviceaccounts/<name>/token: kube-apiserver's TokenRequest API,
//! minting a token with the issuer in `sa_token` for a service account
//! that exists, optionally bound to a pod, secret or node.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::apiserver::context::{Body, Ctx, Target};
use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::sa_token::unix_now;
use crate::apiserver::state::{State, blocking};
use crate::apiserver::store::object_key;

/// kube's bounds on a requested token lifetime.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
const DEFAULT_EXPIRATION: i64 = 3600;

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "TokenRequest",
        "authentication.k8s.io",
        name,
        vec![Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message,
        }],
    )
}

/// The request body: JSON or kubectl's protobuf.
fn decode(ctx: &Ctx) -> Result<Value, ApiError> {
    let ct = ctx.content_type.split(';').next().unwrap_or("").trim();
    let body = if ct == "application/vnd.kubernetes.protobuf" {
        crate::apiserver::protobuf::decode(&ctx.body, "authentication.k8s.io/v1", "TokenRequest")?
    } else if ctx.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid TokenRequest: {e}")))?
    };
    if !body.is_object() || !body.get("spec").is_none_or(Value::is_object) {
        return Err(ApiError::BadRequest(
            "invalid TokenRequest: not an object".into(),
        ));
    }
    if let Some(kind) = body["kind"].as_str().filter(|k| *k != "TokenRequest") {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind (TokenRequest)"
        )));
    }
    Ok(body)
}

/// POST serviceaccounts/<name>/token.
pub async fn request(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    let body = decode(ctx)?;
    let spec = &body["spec"];
    let expiration = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION,
        v => v.as_i64().ok_or_else(|| {
            invalid(
                &t.name,
                "spec.expirationSeconds",
                format!("Invalid value: {v}: must be an integer"),
            )
        })?,
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            &t.name,
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid(
            &t.name,
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let mut audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if audiences.is_empty() {
        audiences.push(state.sa_issuer.issuer.clone());
    }
    let bound_ref = spec["boundObjectRef"].clone();
    let bound_ref = bound_ref.is_object().then_some(bound_ref);
    if ctx.pod_node.is_some() && bound_ref.as_ref().is_none_or(|r| r["kind"] != "Pod") {
        return Err(ApiError::Forbidden(format!(
            "serviceaccounts \"{}\" is forbidden: a node may only request tokens bound to its pods",
            t.name
        )));
    }
    let pod_node = ctx.pod_node.clone();
    let t2 = t.clone();
    let (sa, bound) = blocking(state, move |s| {
        let t = t2;
        let sa = s
            .store
            .get(&object_key("", "serviceaccounts", &t.namespace, &t.name))?
            .ok_or_else(|| ApiError::not_found("", "serviceaccounts", &t.name))?;
        let Some(r) = bound_ref else {
            return Ok((sa, None));
        };
        let kind = r["kind"].as_str().unwrap_or("");
        let name = r["name"].as_str().unwrap_or("");
        let api_version = r["apiVersion"].as_str().unwrap_or("v1");
        let (resource, namespace) = match (kind, api_version) {
            ("Pod", "v1") => ("pods", t.namespace.as_str()),
            ("Secret", "v1") => ("secrets", t.namespace.as_str()),
            ("Node", "v1") => ("nodes", ""),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token to object of type {api_version}, Kind={kind}"
                )));
            }
        };
        if name.is_empty() {
            return Err(invalid(
                &t.name,
                "spec.boundObjectRef.name",
                "Required value".into(),
            ));
        }
        let object = s
            .store
            .get(&object_key("", resource, namespace, name))?
            .ok_or_else(|| ApiError::not_found("", resource, name))?;
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if let Some(want) = r["uid"].as_str().filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::Conflict(format!(
                "Operation cannot be fulfilled on {kind} \"{name}\": the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
            )));
        }
        if kind == "Pod" {
            let pod_sa = object["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            if pod_sa != t.name {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount \"{}\" to pod running with different serviceaccount name.",
                    t.name
                )));
            }
            if let Some(node) = &pod_node
                && object["spec"]["nodeName"].as_str() != Some(node.as_str())
            {
                return Err(ApiError::Forbidden(format!(
                    "serviceaccounts \"{}\" is forbidden: node \"{node}\" may only request tokens for pods bound to it",
                    t.name
                )));
            }
        }
        Ok((sa, Some((kind.to_string(), object))))
    })
    .await?;

    let now = unix_now();
    let exp = now + expiration;
    let sa_uid = sa["metadata"]["uid"].as_str().unwrap_or("");
    let mut k8s = json!({
        "namespace": t.namespace,
        "serviceaccount": {"name": t.name, "uid": sa_uid},
    });
    let mut bound_ref_out = Value::Null;
    if let Some((kind, object)) = &bound {
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let uid = object["metadata"]["uid"].as_str().unwrap_or("");
        k8s[kind.to_lowercase()] = json!({"name": name, "uid": uid});
        // A pod-bound token names the pod's node too, as kube's does.
        if kind == "Pod"
            && let Some(node) = object["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
        {
            let node_uid = {
                let key = object_key("", "nodes", "", node);
                let node_obj = blocking(state, move |s| Ok(s.store.get(&key)?)).await?;
                node_obj.and_then(|n| n["metadata"]["uid"].as_str().map(String::from))
            };
            if let Some(node_uid) = node_uid {
                k8s["node"] = json!({"name": node, "uid": node_uid});
            }
        }
        bound_ref_out = json!({"kind": kind, "apiVersion": "v1", "name": name, "uid": uid});
    }
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": now,
        "nbf": now,
        "iss": state.sa_issuer.issuer,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{}:{}", t.namespace, t.name),
    });
    let token = state.sa_issuer.sign(&claims)?;
    let expires = UNIX_EPOCH + std::time::Duration::from_secs(exp.max(0) as u64);
    let mut out_spec = json!({"audiences": audiences, "expirationSeconds": expiration});
    if !bound_ref_out.is_null() {
        out_spec["boundObjectRef"] = bound_ref_out;
    }
    Ok(ctx.reply(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": t.name, "namespace": t.namespace, "creationTimestamp": null},
            "spec": out_spec,
            "status": {
                "token": token,
                "expirationTimestamp": humantime::format_rfc3339_seconds(expires).to_string(),
            },
        }),
    ))
}

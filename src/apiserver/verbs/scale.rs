//! The `scale` subresource of deployments, replicasets, statefulsets and
//! replicationcontrollers: the object seen as an autoscaling/v1 Scale
//! (`spec.replicas`; `status.replicas` and `status.selector` as a
//! label-selector string), read, replaced or patched as one, as
//! kube-apiserver's scale REST storage does. A write changes only the
//! object's `spec.replicas`, through the shared update tail.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::apiserver::context::{Body, Ctx, Target};
use crate::apiserver::error::ApiError;
use crate::apiserver::kinds::common::cause;
use crate::apiserver::kinds::label_selector;
use crate::apiserver::meta::meta_str;
use crate::apiserver::patch::{self, PatchType};
use crate::apiserver::state::{State, blocking};
use crate::apiserver::verbs::common::{key_of, not_found};
use crate::apiserver::verbs::decode::decode_body;
use crate::apiserver::verbs::update::{Fields, store_update};

pub const SUBRESOURCE: &str = "scale";

/// The Scale view of a workload object.
pub fn scale_of(t: &Target, object: &Value) -> Value {
    let meta = &object["metadata"];
    let selector = if t.kind.group.is_empty() {
        label_selector::map_to_string(&object["spec"]["selector"])
    } else {
        label_selector::to_string(&object["spec"]["selector"])
    };
    let mut status = json!({"replicas": object["status"]["replicas"].as_i64().unwrap_or(0)});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    let mut metadata = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            metadata[f] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        // Go's omitempty: a Scale of 0 replicas has an empty spec.
        "spec": match object["spec"]["replicas"].as_i64().unwrap_or(0) {
            0 => json!({}),
            n => json!({"replicas": n}),
        },
        "status": status,
    })
}

pub async fn get(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    let key = key_of(&t);
    let t2 = t.clone();
    let object = blocking(state, move |s| {
        s.store.get(&key)?.ok_or_else(|| not_found(&t2))
    })
    .await?;
    Ok(ctx.reply(StatusCode::OK, &scale_of(&t, &object)))
}

/// How the new Scale comes about from the current one.
enum Change {
    Replace(Value),
    Patch(PatchType, bytes::Bytes),
}

pub async fn update(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    let body = decode_body(ctx, "autoscaling/v1", "Scale")?;
    write(state, ctx, t, Change::Replace(body)).await
}

pub async fn patch(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    let ty = PatchType::from_content_type(&ctx.content_type)
        .filter(|ty| *ty != PatchType::Apply)
        .ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {})",
                ctx.content_type
            ))
        })?;
    write(state, ctx, t, Change::Patch(ty, ctx.body.clone())).await
}

async fn write(
    state: &Arc<State>,
    ctx: &Ctx,
    t: Target,
    change: Change,
) -> Result<Response<Body>, ApiError> {
    let dry_run = ctx.param("dryRun").is_some();
    let manager = ctx.manager.clone();
    let t2 = t.clone();
    let stored = blocking(state, move |s| {
        s.store.write(|txn| {
            let t = &t2;
            let old = txn.get(&key_of(t))?.ok_or_else(|| not_found(t))?;
            let current = scale_of(t, &old);
            let wanted = match change {
                Change::Replace(v) => v,
                Change::Patch(ty, body) => patch::apply("scale", &current, &body, ty)?,
            };
            let rv = meta_str(&wanted, "resourceVersion");
            if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict_modified(
                    t.kind.group,
                    t.kind.resource,
                    &t.name,
                ));
            }
            let replicas = match &wanted["spec"]["replicas"] {
                Value::Null => 0,
                v => v.as_i64().ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas: expected an integer, got {v}"
                    ))
                })?,
            };
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "Scale",
                    "autoscaling",
                    &t.name,
                    vec![cause(
                        "invalid",
                        "spec.replicas",
                        format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                    )],
                ));
            }
            let mut new = old.clone();
            new["spec"]["replicas"] = json!(replicas);
            store_update(
                txn,
                t,
                &old,
                new,
                dry_run,
                &Fields::Updated { manager: &manager },
            )
        })
    })
    .await?;
    Ok(ctx.reply(StatusCode::OK, &scale_of(&t, &stored)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::lookup;

    #[test]
    fn scale_view() {
        let target = |group: &str, resource: &str| Target {
            kind: lookup(group, "v1", resource).unwrap(),
            namespace: "ns".into(),
            name: "web".into(),
            subresource: SUBRESOURCE.into(),
        };
        let d = json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u", "generation": 3},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let s = scale_of(&target("apps", "deployments"), &d);
        assert_eq!(s["spec"], json!({"replicas": 3}));
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert!(s["metadata"]["generation"].is_null());
        let rc = json!({"metadata": {"name": "web"}, "spec": {"replicas": 0, "selector": {"b": "2", "a": "1"}}});
        let s = scale_of(&target("", "replicationcontrollers"), &rc);
        assert_eq!(s["spec"], json!({}));
        assert_eq!(s["status"], json!({"replicas": 0, "selector": "a=1,b=2"}));
    }
}

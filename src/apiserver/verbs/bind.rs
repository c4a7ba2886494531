//! POST pods/<name>/binding: the scheduler's way to put a pod on a node.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::json;

use crate::apiserver::context::{Body, Ctx, Target};
use crate::apiserver::error::{ApiError, Cause, qualified};
use crate::apiserver::kinds::pod;
use crate::apiserver::state::{State, blocking};
use crate::apiserver::verbs::common::{key_of, not_found};
use crate::apiserver::verbs::decode::decode_body;

pub async fn bind(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    let body = decode_body(ctx, "v1", "Binding")?;
    let node = body["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            &t.name,
            vec![Cause {
                reason: "FieldValueRequired",
                field: "target.name".into(),
                message: "Required value".into(),
            }],
        ));
    }
    blocking(state, move |s| {
        s.store.write(|txn| {
            let key = key_of(&t);
            let mut pod = txn.get(&key)?.ok_or_else(|| not_found(&t))?;
            let current = pod["spec"]["nodeName"].as_str().unwrap_or("");
            if !current.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "Operation cannot be fulfilled on {} \"{}\": pod {} is already assigned to node \"{current}\"",
                    qualified("", "pods/binding"),
                    t.name,
                    t.name
                )));
            }
            if pod["metadata"]["deletionTimestamp"].is_string() {
                return Err(ApiError::Conflict(format!(
                    "pod {} is being deleted, cannot be assigned to a host",
                    t.name
                )));
            }
            pod["spec"]["nodeName"] = json!(node);
            pod::set_scheduled(&mut pod);
            txn.put(&key, pod)?;
            Ok(())
        })
    })
    .await?;
    Ok(ctx.reply(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}),
    ))
}

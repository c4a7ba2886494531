//! `pods/eviction`: create an Eviction to delete a pod unless a
//! PodDisruptionBudget forbids it, as kube-apiserver's eviction REST does.
//! A pod that is Pending, finished or already deleting goes at once; one
//! covered by a budget that allows no disruption is refused with 429
//! TooManyRequests; otherwise the budget's `disruptionsAllowed` is taken
//! down by one (and the pod noted in `disruptedPods`) in the same
//! transaction as the delete.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::apiserver::context::{Body, Ctx, Target, reply};
use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::kinds::label_selector;
use crate::apiserver::meta::{meta_str, now_rfc3339};
use crate::apiserver::state::{State, blocking};
use crate::apiserver::store::{Txn, collection_prefix, object_key};
use crate::apiserver::verbs::common::{key_of, not_found};
use crate::apiserver::verbs::decode::decode_body;
use crate::apiserver::verbs::delete::delete_pod_in_txn;

pub const SUBRESOURCE: &str = "eviction";

const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn budget_refuses(message: String, retry_after_seconds: Option<u64>) -> ApiError {
    ApiError::TooManyRequests {
        message: REFUSED.into(),
        causes: vec![Cause {
            reason: "DisruptionBudget",
            field: String::new(),
            message,
        }],
        retry_after_seconds,
    }
}

pub async fn create(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    let eviction = decode_body(ctx, "policy/v1", "Eviction")?;
    let named = meta_str(&eviction, "name");
    if !named.is_empty() && named != t.name {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let options = &eviction["deleteOptions"];
    let grace = options["gracePeriodSeconds"].as_i64();
    let dry_run = ctx.param("dryRun").is_some()
        || options["dryRun"].as_array().is_some_and(|d| !d.is_empty());
    let pod_target = Target {
        subresource: String::new(),
        ..t
    };
    blocking(state, move |s| {
        s.store
            .write(|txn| evict(txn, &pod_target, grace, dry_run).map(|_| ()))
    })
    .await?;
    Ok(reply(
        ctx.protobuf,
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "code": 201}),
    ))
}

/// Whether a pod may go without asking its budget: it is not running
/// (Pending, Succeeded, Failed) or is already being deleted.
fn ignores_budget(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Pending" | "Succeeded" | "Failed") | None
    ) || pod["metadata"]["deletionTimestamp"].is_string()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn evict(
    txn: &mut Txn<'_>,
    t: &Target,
    grace: Option<i64>,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let pod = txn.get(&key_of(t))?.ok_or_else(|| not_found(t))?;
    if ignores_budget(&pod) {
        return delete_pod_in_txn(txn, t, grace, dry_run);
    }
    let prefix = format!(
        "{}{}/",
        collection_prefix("policy", "poddisruptionbudgets"),
        t.namespace
    );
    let labels = &pod["metadata"]["labels"];
    let budgets: Vec<Value> = txn
        .list(&prefix)?
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| label_selector::matches(&b["spec"]["selector"], labels))
        .collect();
    let budget = match budgets.as_slice() {
        [] => return delete_pod_in_txn(txn, t, grace, dry_run),
        [one] => one.clone(),
        _ => {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ));
        }
    };
    let name = meta_str(&budget, "name").to_string();
    let status = &budget["status"];
    let generation = budget["metadata"]["generation"].as_i64().unwrap_or(0);
    if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Err(budget_refuses(
            format!("The disruption budget {name} is still being processed by the server."),
            Some(10),
        ));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(ApiError::Forbidden(
            "pdb disruptions allowed is negative".into(),
        ));
    }
    let (healthy, desired) = (
        status["currentHealthy"].as_i64().unwrap_or(0),
        status["desiredHealthy"].as_i64().unwrap_or(0),
    );
    // An unready pod does not count towards the budget: it may go while
    // the budget is met (IfHealthyBudget), or always (AlwaysAllow).
    if !is_ready(&pod) {
        let always = budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
        if always || (healthy >= desired && desired > 0) {
            return delete_pod_in_txn(txn, t, grace, dry_run);
        }
    }
    if allowed == 0 {
        return Err(budget_refuses(
            format!(
                "The disruption budget {name} needs {desired} healthy pods and has {healthy} currently"
            ),
            None,
        ));
    }
    if !dry_run {
        let mut budget = budget;
        take_one_disruption(&mut budget, &t.name);
        let key = object_key("policy", "poddisruptionbudgets", &t.namespace, &name);
        txn.put(&key, budget)?;
    }
    delete_pod_in_txn(txn, t, grace, dry_run)
}

/// One disruption used: `disruptionsAllowed` down by one, the pod in
/// `disruptedPods`, and at zero the DisruptionAllowed condition False.
fn take_one_disruption(budget: &mut Value, pod: &str) {
    let now = now_rfc3339();
    let status = &mut budget["status"];
    let left = status["disruptionsAllowed"].as_i64().unwrap_or(0) - 1;
    status["disruptionsAllowed"] = json!(left);
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(now);
    if left == 0 {
        let observed = status["observedGeneration"].clone();
        if !status["conditions"].is_array() {
            status["conditions"] = json!([]);
        }
        if let Some(list) = status["conditions"].as_array_mut() {
            let since = list
                .iter()
                .find(|c| c["type"] == "DisruptionAllowed" && c["status"] == "False")
                .map_or(json!(now), |c| c["lastTransitionTime"].clone());
            list.retain(|c| c["type"] != "DisruptionAllowed");
            list.push(json!({"type": "DisruptionAllowed", "status": "False",
                "reason": "InsufficientPods", "message": "", "observedGeneration": observed,
                "lastTransitionTime": since}));
        }
    }
}

//! delete and deletecollection: preconditions, finalizers, a pod's grace
//! period, namespace termination, and the garbage collector's cascade to
//! dependents, all in the delete's transaction.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::apiserver::context::{Body, Ctx, Target};
use crate::apiserver::error::ApiError;
use crate::apiserver::kinds::{namespace, pod};
use crate::apiserver::meta::{mark_deleting, meta_str};
use crate::apiserver::resources;
use crate::apiserver::state::{State, blocking};
use crate::apiserver::store::{Txn, collection_prefix};
use crate::apiserver::verbs::common::{key_of, not_found, respond};
use crate::apiserver::verbs::read::{Filter, list_prefix};

#[derive(Default)]
struct DeleteOptions {
    grace: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
    /// propagationPolicy=Orphan (or orphanDependents): keep dependents.
    orphan: bool,
}

fn delete_options(ctx: &Ctx) -> Result<DeleteOptions, ApiError> {
    let body: Value = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if crate::apiserver::protobuf::is_protobuf(&ctx.content_type) {
        crate::apiserver::protobuf::decode_delete_options(&ctx.body)?
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    let grace = match ctx.param("gracePeriodSeconds") {
        Some(g) => Some(
            g.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds: {g}")))?,
        ),
        None => body["gracePeriodSeconds"].as_i64(),
    };
    Ok(DeleteOptions {
        grace,
        uid: body["preconditions"]["uid"].as_str().map(String::from),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        dry_run: ctx.param("dryRun").is_some()
            || body["dryRun"].as_array().is_some_and(|d| !d.is_empty()),
        orphan: ctx
            .param("propagationPolicy")
            .or(body["propagationPolicy"].as_str())
            == Some("Orphan")
            || body["orphanDependents"].as_bool() == Some(true),
    })
}

/// Delete a pod inside a transaction as a plain delete would (its grace
/// period, finalizers, dependents): what an allowed eviction does.
pub fn delete_pod_in_txn(
    txn: &mut Txn<'_>,
    t: &Target,
    grace: Option<i64>,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let opts = DeleteOptions {
        grace,
        dry_run,
        ..DeleteOptions::default()
    };
    delete_in_txn(txn, t, &opts, &None)
}

/// Delete one object inside a transaction, with kube's rules. Returns the
/// object as the response shows it (deleted, or marked for deletion).
fn delete_in_txn(
    txn: &mut Txn<'_>,
    t: &Target,
    opts: &DeleteOptions,
    pod_node: &Option<String>,
) -> Result<Value, ApiError> {
    delete_with_dependents(txn, t, opts, pod_node, 0)
}

fn delete_with_dependents(
    txn: &mut Txn<'_>,
    t: &Target,
    opts: &DeleteOptions,
    pod_node: &Option<String>,
    depth: usize,
) -> Result<Value, ApiError> {
    let kind = t.kind;
    let key = key_of(t);
    let old = txn.get(&key)?.ok_or_else(|| not_found(t))?;
    if kind.resource == "pods" {
        pod::check_node(pod_node, t, &old)?;
    }
    if let Some(uid) = &opts.uid
        && uid != meta_str(&old, "uid")
    {
        return Err(ApiError::Conflict(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta_str(&old, "uid")
        )));
    }
    if let Some(rv) = &opts.resource_version
        && rv != meta_str(&old, "resourceVersion")
    {
        return Err(ApiError::Conflict(format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta_str(&old, "resourceVersion")
        )));
    }
    if kind.resource == "namespaces" && namespace::is_protected(&t.name) {
        return Err(ApiError::Forbidden(format!(
            "namespaces \"{}\" is forbidden: this namespace may not be deleted",
            t.name
        )));
    }
    if opts.dry_run {
        return Ok(old);
    }
    let has_finalizers = old["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if kind.resource == "pods" {
        let grace = pod::grace(&old, opts.grace);
        if grace > 0 || has_finalizers {
            return mark_deleting(txn, &key, old, grace);
        }
    } else if has_finalizers {
        return mark_deleting(txn, &key, old, 0);
    }
    if kind.resource == "namespaces" {
        return namespace::terminate(txn, t, old);
    }
    let deleted = txn.delete(&key)?.ok_or_else(|| not_found(t))?;
    // Events own nothing.
    if kind.resource != "events" {
        collect_dependents(txn, meta_str(&deleted, "uid"), opts.orphan, depth)?;
    }
    if kind.namespaced {
        namespace::finish(txn, &t.namespace)?;
    }
    Ok(deleted)
}

/// The garbage collector's work, done in the owner's delete transaction:
/// an object whose owner (by ownerReferences uid) is deleted goes too
/// (background propagation; a bound pod still terminates gracefully), or
/// keeps living without the reference if it has other owners or the
/// delete asked to orphan.
fn collect_dependents(
    txn: &mut Txn<'_>,
    owner_uid: &str,
    orphan: bool,
    depth: usize,
) -> Result<(), ApiError> {
    // uids are unique, so ownership cannot cycle; the bound is belt and braces.
    if owner_uid.is_empty() || depth >= 8 {
        return Ok(());
    }
    for kind in resources::KINDS {
        for (key, _) in txn.list(&collection_prefix(kind.group, kind.resource))? {
            // Re-read: an earlier cascade step may have changed or removed it.
            let Some(mut object) = txn.get(&key)? else {
                continue;
            };
            let Some(refs) = object["metadata"]["ownerReferences"].as_array() else {
                continue;
            };
            if !refs.iter().any(|r| r["uid"] == owner_uid) {
                continue;
            }
            let others = refs.iter().filter(|r| r["uid"] != owner_uid).count();
            if orphan || others > 0 {
                if let Some(refs) = object["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != owner_uid);
                }
                if others == 0
                    && let Some(m) = object["metadata"].as_object_mut()
                {
                    m.remove("ownerReferences");
                }
                txn.put(&key, object)?;
                continue;
            }
            let target = Target {
                kind,
                namespace: meta_str(&object, "namespace").to_string(),
                name: meta_str(&object, "name").to_string(),
                subresource: String::new(),
            };
            delete_with_dependents(txn, &target, &DeleteOptions::default(), &None, depth + 1)?;
        }
    }
    Ok(())
}

pub async fn delete(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx)?;
    let kind = t.kind;
    let pod_node = ctx.pod_node.clone();
    let object = blocking(state, move |s| {
        s.store
            .write(|txn| delete_in_txn(txn, &t, &opts, &pod_node))
    })
    .await?;
    if let Some(status) = deleted_status(kind, &object) {
        return Ok(ctx.reply(StatusCode::OK, &status));
    }
    let mut object = object;
    if kind.group.is_empty() && kind.resource == "pods" {
        immediately_deleted_pod(&mut object);
    }
    Ok(respond(ctx, kind, StatusCode::OK, &object))
}

/// A pod deleted at once is answered as kube's graceful-delete step left
/// it just before it went: marked with a zero grace period, its
/// generation moved on.
fn immediately_deleted_pod(pod: &mut Value) {
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return;
    }
    pod["metadata"]["deletionTimestamp"] = json!(crate::apiserver::meta::now_rfc3339());
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    if let Some(g) = pod["metadata"]["generation"].as_i64() {
        pod["metadata"]["generation"] = json!(g + 1);
    }
}

/// What kube answers for an object deleted at once: a Success Status
/// naming it, but for the kinds whose registry returns the deleted object
/// (pods, services, namespaces). An object still being deleted (grace,
/// finalizers) is answered as it is now.
fn deleted_status(kind: &resources::Kind, object: &Value) -> Option<Value> {
    let pending = object["metadata"]["deletionTimestamp"].is_string();
    if pending
        || (kind.group.is_empty() && matches!(kind.resource, "pods" | "services" | "namespaces"))
    {
        return None;
    }
    let mut details = json!({
        "name": meta_str(object, "name"),
        "kind": kind.resource,
        "uid": meta_str(object, "uid"),
    });
    if !kind.group.is_empty() {
        details["group"] = json!(kind.group);
    }
    Some(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success", "details": details}))
}

pub async fn delete_collection(
    state: &Arc<State>,
    ctx: &Ctx,
    t: Target,
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx)?;
    let filter = Filter::from_ctx(ctx, t.kind)?;
    let kind = t.kind;
    let pod_node = ctx.pod_node.clone();
    let items = blocking(state, move |s| {
        s.store.write(|txn| {
            let mut out = Vec::new();
            for (_, object) in txn.list(&list_prefix(&t))? {
                if !filter.matches(&object) {
                    continue;
                }
                let target = Target {
                    namespace: meta_str(&object, "namespace").to_string(),
                    name: meta_str(&object, "name").to_string(),
                    ..t.clone()
                };
                out.push(delete_in_txn(txn, &target, &opts, &pod_node)?);
            }
            Ok(out)
        })
    })
    .await?;
    Ok(ctx.reply(
        StatusCode::OK,
        &json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
                "metadata": {}, "items": items}),
    ))
}

//! update (PUT), and the tail every write shares with patch: merge with
//! the stored object as kube's update strategies do, default, record
//! managed fields, validate, store, and finish a finalized deletion.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::apiserver::context::{Body, Ctx, Target};
use crate::apiserver::error::ApiError;
use crate::apiserver::kinds::{self, namespace, pod};
use crate::apiserver::kinds::{ephemeral_containers, pod_resize};
use crate::apiserver::managed_fields;
use crate::apiserver::meta::{meta_str, now_rfc3339};
use crate::apiserver::rbac;
use crate::apiserver::state::{State, blocking};
use crate::apiserver::store::Txn;
use crate::apiserver::verbs::common::{check_valid, key_of, not_found, respond};
use crate::apiserver::verbs::decode::decode_normalized;

/// Merge a client's new version of an object with the stored one, the way
/// kube's update strategies do, and check the optimistic-concurrency
/// precondition. Returns None if nothing would change.
pub fn merge_update(
    t: &Target,
    old: &Value,
    mut new: Value,
    fields: &Fields<'_>,
) -> Result<Option<Value>, ApiError> {
    let kind = t.kind;
    let new_rv = meta_str(&new, "resourceVersion");
    if !new_rv.is_empty() && new_rv != meta_str(old, "resourceVersion") {
        return Err(ApiError::conflict_modified(
            kind.group,
            kind.resource,
            &t.name,
        ));
    }
    let new_name = meta_str(&new, "name");
    if !new_name.is_empty() && new_name != t.name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({new_name}) does not match the name on the URL ({})",
            t.name
        )));
    }
    if kind.namespaced {
        let ns = meta_str(&new, "namespace");
        if !ns.is_empty() && ns != t.namespace {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
    }
    if t.subresource == "status" {
        // Status writes change only status (kubelets must not edit specs);
        // a workload's annotations go through too, as in kube.
        new = kinds::workloads::status_write(kind, old, &new);
    } else if t.subresource == "finalize" {
        // namespaces/finalize writes spec.finalizers only.
        let mut out = old.clone();
        let finalizers = new["spec"]["finalizers"].take();
        match finalizers.as_array() {
            Some(list) if !list.is_empty() => out["spec"]["finalizers"] = finalizers,
            _ => {
                if let Some(spec) = out["spec"].as_object_mut() {
                    spec.remove("finalizers");
                }
            }
        }
        new = out;
    } else if t.subresource == ephemeral_containers::SUBRESOURCE {
        new = ephemeral_containers::merge(old, &new)?;
    } else if t.subresource == pod_resize::SUBRESOURCE {
        new = pod_resize::merge(old, &new)?;
    } else if kind.status {
        // ...and main-resource writes never change status.
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    for f in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "generation",
    ] {
        match old["metadata"].get(f) {
            Some(v) => new["metadata"][f] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("selfLink");
        // Server-owned but for an apply, which computed them.
        if !matches!(fields, Fields::Applied) {
            match old["metadata"].get("managedFields") {
                Some(v) => {
                    m.insert("managedFields".into(), v.clone());
                }
                None => {
                    m.remove("managedFields");
                }
            }
        }
    }
    if kind.resource == "pods" && t.subresource.is_empty() {
        pod::check_spec_update(old, &new)?;
    }
    if kind.resource.ends_with("rolebindings") {
        kinds::rbac::check_update(kind, &t.name, old, &new)?;
    }
    if t.subresource.is_empty() {
        kinds::validation::check_update(kind, old, &new)?;
    }
    if &new == old {
        return Ok(None);
    }
    let bump = t.subresource != "status" && kinds::workloads::bumps_generation(kind, old, &mut new);
    if old["metadata"]["generation"].is_i64() && bump {
        new["metadata"]["generation"] =
            json!(old["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
    }
    Ok(Some(new))
}

/// How a write's managed fields come about.
pub enum Fields<'a> {
    /// A server-side apply computed them (they are in the new object).
    Applied,
    /// Any other write, by this field manager.
    Updated { manager: &'a str },
}

/// Shared tail of update and patch: defaults, validation, finalization.
pub fn store_update(
    txn: &mut Txn<'_>,
    t: &Target,
    old: &Value,
    mut new: Value,
    dry_run: bool,
    fields: &Fields<'_>,
) -> Result<Value, ApiError> {
    // Default first, as kube does before validating: a client that leaves
    // out a defaulted field has not changed it.
    kinds::apply_defaults(t.kind, &mut new);
    let merged_finalizers = new["spec"]["finalizers"].clone();
    let Some(mut new) = merge_update(t, old, new, fields)? else {
        return Ok(old.clone());
    };
    if t.kind.resource == "services" && t.kind.group.is_empty() && t.subresource.is_empty() {
        kinds::service::allocate_on_update(txn, &key_of(t), &mut new)?;
    }
    if let Fields::Updated { manager } = fields {
        managed_fields::record_update(
            t.kind.resource,
            &t.kind.api_version(),
            manager,
            &t.subresource,
            &now_rfc3339(),
            old,
            &mut new,
        );
    }
    kinds::apply_defaults(t.kind, &mut new);
    if t.kind.resource == "namespaces" {
        // spec.finalizers change only through namespaces/finalize (kube's
        // strategy keeps them on every other write); none left is `{}`.
        let keep = if t.subresource == "finalize" {
            merged_finalizers
        } else {
            old["spec"]["finalizers"].clone()
        };
        if let Some(spec) = new["spec"].as_object_mut() {
            match keep {
                Value::Array(list) if !list.is_empty() => {
                    spec.insert("finalizers".into(), Value::Array(list));
                }
                _ => {
                    spec.remove("finalizers");
                }
            }
        }
    }
    check_valid(t.kind, &new)?;
    if dry_run {
        return Ok(new);
    }
    let key = key_of(t);
    // The last finalizer removed from an object being deleted: now it goes.
    let finalized = new["metadata"]["deletionTimestamp"].is_string()
        && new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty)
        && (t.kind.resource != "pods"
            || old["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty()));
    if finalized {
        txn.put(&key, new)?;
        let deleted = txn.delete(&key)?.unwrap_or_default();
        if t.kind.namespaced {
            namespace::finish(txn, &t.namespace)?;
        }
        return Ok(deleted);
    }
    Ok(txn.put(&key, new)?)
}

pub async fn update(
    state: &Arc<State>,
    ctx: &mut Ctx,
    t: Target,
) -> Result<Response<Body>, ApiError> {
    let kind = t.kind;
    let new = decode_normalized(ctx, kind)?;
    let dry_run = ctx.param("dryRun").is_some();
    let pod_node = ctx.pod_node.clone();
    let user = ctx.user.clone();
    let manager = ctx.manager.clone();
    let stored = blocking(state, move |s| {
        s.store.write(|txn| {
            let old = txn.get(&key_of(&t))?.ok_or_else(|| not_found(&t))?;
            pod::check_node(&pod_node, &t, &old)?;
            rbac::confirm_no_escalation(txn, &user, kind.resource, &t.namespace, &new)?;
            store_update(
                txn,
                &t,
                &old,
                new,
                dry_run,
                &Fields::Updated { manager: &manager },
            )
        })
    })
    .await?;
    Ok(respond(ctx, kind, StatusCode::OK, &stored))
}

//! patch: JSON, merge and strategic-merge patches and server-side apply
//! (which creates what does not exist), then the shared update tail.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::Value;

use crate::apiserver::context::{Body, Ctx, Target};
use crate::apiserver::error::ApiError;
use crate::apiserver::kinds::pod;
use crate::apiserver::managed_fields;
use crate::apiserver::meta::now_rfc3339;
use crate::apiserver::patch::{self, PatchType};
use crate::apiserver::rbac;
use crate::apiserver::state::{State, blocking};
use crate::apiserver::store::Txn;
use crate::apiserver::verbs::common::{key_of, not_found, respond};
use crate::apiserver::verbs::create::{prepare_create, store_create};
use crate::apiserver::verbs::decode::{FieldValidation, field_validation, normalize};
use crate::apiserver::verbs::update::{Fields, store_update};

pub async fn patch(
    state: &Arc<State>,
    ctx: &mut Ctx,
    t: Target,
) -> Result<Response<Body>, ApiError> {
    let kind = t.kind;
    let ty = PatchType::from_content_type(&ctx.content_type).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {})",
            ctx.content_type
        ))
    })?;
    if ty == PatchType::Apply && ctx.param("fieldManager").is_none() {
        return Err(ApiError::BadRequest(
            "PATCH, application/apply-patch+yaml requires fieldManager to be set".into(),
        ));
    }
    let args = PatchArgs {
        ty,
        mode: field_validation(ctx)?,
        dry_run: ctx.param("dryRun").is_some(),
        body: ctx.body.clone(),
        pod_node: ctx.pod_node.clone(),
        ca_pem: state.ca_pem.clone(),
        user: ctx.user.clone(),
        manager: ctx.manager.clone(),
        force: ctx.flag("force"),
    };
    let (stored, warnings, code) = blocking(state, move |s| {
        s.store.write(|txn| patch_in_txn(txn, &t, &args))
    })
    .await?;
    ctx.warnings.extend(warnings);
    Ok(respond(ctx, kind, code, &stored))
}

/// A patch request, all it needs inside the store transaction.
struct PatchArgs {
    ty: PatchType,
    mode: FieldValidation,
    dry_run: bool,
    body: bytes::Bytes,
    pod_node: Option<String>,
    ca_pem: String,
    user: crate::apiserver::auth::User,
    manager: String,
    force: bool,
}

/// The store half of a patch: apply (creating what does not exist) or
/// patch, then the shared update tail. Returns the stored object, warnings
/// and the status code.
fn patch_in_txn(
    txn: &mut Txn<'_>,
    t: &Target,
    a: &PatchArgs,
) -> Result<(Value, Vec<String>, StatusCode), ApiError> {
    let kind = t.kind;
    let (api_version, now) = (kind.api_version(), now_rfc3339());
    let apply_args = |subresource| managed_fields::Apply {
        resource: kind.resource,
        api_version: &api_version,
        manager: &a.manager,
        subresource,
        force: a.force,
        now: &now,
    };
    let Some(old) = txn.get(&key_of(t))? else {
        // Apply creates what does not exist yet (a pod's status cannot be
        // applied into existence, nor anything by a node).
        if a.ty != PatchType::Apply || !t.subresource.is_empty() || a.pod_node.is_some() {
            return Err(not_found(t));
        }
        let body = patch::apply_body(&a.body)?;
        let name = body["metadata"]["name"].as_str().unwrap_or("");
        if name != t.name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                t.name
            )));
        }
        let applied = managed_fields::apply(&apply_args(""), None, &body)?;
        let managed = applied["metadata"]["managedFields"].clone();
        let (object, warnings) = normalize(kind, a.mode, applied)?;
        let mut object = prepare_create(kind, &t.namespace, object)?;
        if !managed.is_null() {
            object["metadata"]["managedFields"] = managed;
        }
        rbac::confirm_no_escalation(txn, &a.user, kind.resource, &t.namespace, &object)?;
        let created = store_create(txn, kind, &t.namespace, object, a.dry_run, &a.ca_pem)?;
        return Ok((created, warnings, StatusCode::CREATED));
    };
    pod::check_node(&a.pod_node, t, &old)?;
    let (patched, fields) = if a.ty == PatchType::Apply {
        let config = patch::apply_body(&a.body)?;
        let applied = managed_fields::apply(&apply_args(&t.subresource), Some(&old), &config)?;
        (applied, Fields::Applied)
    } else {
        // A JSON patch that fails (a `test` op, a missing path) is kube's
        // bare 422, without the object's details.
        let patched = patch::apply(kind.resource, &old, &a.body, a.ty)?;
        // kube decodes the patched object before anything else: one without
        // a name (a patch removing /metadata, a top-level `$patch: delete`
        // or `replace`) is a 400, never a silent no-op or a wiped object.
        if patched["metadata"]["name"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({} based on URL) was undeterminable: name must be provided",
                t.name
            )));
        }
        (
            patched,
            Fields::Updated {
                manager: &a.manager,
            },
        )
    };
    let (new, warnings) = normalize(kind, a.mode, patched)?;
    rbac::confirm_no_escalation(txn, &a.user, kind.resource, &t.namespace, &new)?;
    let stored = store_update(txn, t, &old, new, a.dry_run, &fields)?;
    Ok((stored, warnings, StatusCode::OK))
}

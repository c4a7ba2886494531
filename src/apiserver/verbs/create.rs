//! create: decode, fill in server-owned metadata, default, admit,
//! validate, then store (with the kind's side effects) in one transaction.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::apiserver::context::{Body, Ctx, Target};
use crate::apiserver::error::{ApiError, qualified};
use crate::apiserver::kinds::{self, namespace, service};
use crate::apiserver::managed_fields;
use crate::apiserver::meta::{generate_name, meta_str, now_rfc3339};
use crate::apiserver::rbac;
use crate::apiserver::resources::Kind;
use crate::apiserver::state::{State, blocking};
use crate::apiserver::store::{Txn, object_key};
use crate::apiserver::verbs::common::{check_valid, respond};
use crate::apiserver::verbs::decode::decode_normalized;

pub async fn create(
    state: &Arc<State>,
    ctx: &mut Ctx,
    t: Target,
) -> Result<Response<Body>, ApiError> {
    let kind = t.kind;
    let object = decode_normalized(ctx, kind)?;
    let object = prepare_create(kind, &t.namespace, object)?;
    if let Some(allowed) = &ctx.create_name
        && meta_str(&object, "name") != allowed
    {
        return Err(ApiError::Forbidden(format!(
            "{} \"{}\" is forbidden: User \"{}\" may only create the {} named \"{allowed}\"",
            qualified(kind.group, kind.resource),
            meta_str(&object, "name"),
            ctx.user.name,
            kind.singular,
        )));
    }
    let dry_run = ctx.param("dryRun").is_some();
    let ca_pem = state.ca_pem.clone();
    let user = ctx.user.clone();
    let mut object = object;
    managed_fields::record_create(
        kind.resource,
        &kind.api_version(),
        &ctx.manager,
        &now_rfc3339(),
        &mut object,
    );
    let created = blocking(state, move |s| {
        s.store.write(|txn| {
            rbac::confirm_no_escalation(txn, &user, kind.resource, &t.namespace, &object)?;
            store_create(txn, kind, &t.namespace, object, dry_run, &ca_pem)
        })
    })
    .await?;
    Ok(respond(ctx, kind, StatusCode::CREATED, &created))
}

/// Kinds whose status a client cannot set on create (kube's create
/// strategies reset it; nodes keep theirs, as kubelets register with one).
const STATUS_RESET_ON_CREATE: &[&str] = &["pods", "namespaces", "services"];

/// Everything about a create that needs no store: namespace, name
/// generation, server-owned metadata, defaults, validation.
pub fn prepare_create(kind: &Kind, namespace: &str, mut object: Value) -> Result<Value, ApiError> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    if kind.namespaced {
        let body_ns = meta_str(&object, "namespace");
        if !body_ns.is_empty() && body_ns != namespace {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        object["metadata"]["namespace"] = json!(namespace);
    } else if let Some(m) = object["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    if meta_str(&object, "name").is_empty() {
        let prefix = meta_str(&object, "generateName").to_string();
        if !prefix.is_empty() {
            object["metadata"]["name"] = json!(generate_name(&prefix));
        }
    }
    if let Some(m) = object["metadata"].as_object_mut() {
        // Server-owned fields: whatever the client sent is replaced.
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ] {
            m.remove(f);
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    }
    if STATUS_RESET_ON_CREATE.contains(&kind.resource)
        && let Some(m) = object.as_object_mut()
    {
        m.remove("status");
    }
    kinds::workloads::prepare_create(kind, &mut object);
    kinds::apply_defaults(kind, &mut object);
    if kind.resource == "pods" {
        crate::apiserver::default_tolerations::admit(&mut object);
        // Pods track their spec's generation (kube 1.35+).
        object["metadata"]["generation"] = json!(1);
    }
    check_valid(kind, &object)?;
    Ok(object)
}

/// The store half of a create, inside a write transaction.
pub fn store_create(
    txn: &mut Txn<'_>,
    kind: &'static Kind,
    namespace: &str,
    mut object: Value,
    dry_run: bool,
    ca_pem: &str,
) -> Result<Value, ApiError> {
    let name = meta_str(&object, "name").to_string();
    namespace::ensure_usable(txn, kind, namespace, &name)?;
    let key = object_key(kind.group, kind.resource, namespace, &name);
    if txn.get(&key)?.is_some() {
        return Err(ApiError::AlreadyExists {
            group: kind.group.into(),
            resource: kind.resource.into(),
            name,
        });
    }
    if kind.resource == "services" {
        service::allocate_cluster_ip(txn, &mut object)?;
    }
    if kind.resource == "pods" {
        crate::apiserver::sa_admission::admit(txn, namespace, &mut object)?;
    }
    if dry_run {
        return Ok(object);
    }
    let stored = txn.put(&key, object)?;
    if kind.resource == "namespaces" {
        namespace::side_effects(txn, &name, ca_pem)?;
    }
    Ok(stored)
}

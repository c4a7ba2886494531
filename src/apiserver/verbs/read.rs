//! get and list (with selectors, limit and continue tokens), and the
//! Node authorizer's rule for a node reading secrets and config maps.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::apiserver::context::{Body, Ctx, Target};
use crate::apiserver::error::{ApiError, qualified};
use crate::apiserver::list_query::{decode_continue, encode_continue};
use crate::apiserver::resources::Kind;
use crate::apiserver::selectors::{FieldSelector, LabelSelector};
use crate::apiserver::state::{State, blocking};
use crate::apiserver::store::collection_prefix;
use crate::apiserver::table;
use crate::apiserver::verbs::common::{key_of, not_found, respond};

/// For a node reading a secret or config map: the one object named (by URL
/// or `metadata.name=` field selector) must be used by a pod bound to it.
/// The root CA bundle is public and every pod may mount it.
pub async fn check_used_on_node(state: &Arc<State>, ctx: &Ctx, t: &Target) -> Result<(), ApiError> {
    let Some(node) = ctx.used_on_node.clone() else {
        return Ok(());
    };
    let selected = FieldSelector::parse(ctx.param("fieldSelector").unwrap_or(""), t.kind)?
        .name()
        .map(String::from);
    let name = if t.name.is_empty() {
        selected
    } else {
        Some(t.name.clone())
    };
    let forbidden = || {
        ApiError::Forbidden(format!(
            "{} is forbidden: node \"{node}\" may only read {} that its pods use, one at a time",
            qualified(t.kind.group, t.kind.resource),
            t.kind.resource,
        ))
    };
    let (Some(name), false) = (name, t.namespace.is_empty()) else {
        return Err(forbidden());
    };
    if t.kind.resource == "configmaps" && name == "kube-root-ca.crt" {
        return Ok(());
    }
    let prefix = format!("{}{}/", collection_prefix("", "pods"), t.namespace);
    let resource = t.kind.resource;
    let node2 = node.clone();
    let used = blocking(state, move |s| {
        let (_, pods) = s.store.list(&prefix, None, usize::MAX)?;
        Ok(pods.iter().any(|(_, p)| {
            p["spec"]["nodeName"].as_str() == Some(node2.as_str())
                && crate::apiserver::auth::pod_uses(p, resource, &name)
        }))
    })
    .await?;
    if used { Ok(()) } else { Err(forbidden()) }
}

pub async fn get(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    check_used_on_node(state, ctx, &t).await?;
    ctx.resource_version()?;
    let key = key_of(&t);
    let t2 = t.clone();
    let object = blocking(state, move |s| {
        s.store.get(&key)?.ok_or_else(|| not_found(&t2))
    })
    .await?;
    Ok(respond(ctx, t.kind, StatusCode::OK, &object))
}

/// Label and field selectors from the query, as one predicate.
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub fn from_ctx(ctx: &Ctx, kind: &Kind) -> Result<Filter, ApiError> {
        Ok(Filter {
            labels: LabelSelector::parse(ctx.param("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(ctx.param("fieldSelector").unwrap_or(""), kind)?,
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

pub fn list_prefix(t: &Target) -> String {
    let mut prefix = collection_prefix(t.kind.group, t.kind.resource);
    if t.kind.namespaced && !t.namespace.is_empty() {
        prefix.push_str(&t.namespace);
        prefix.push('/');
    }
    prefix
}

pub async fn list(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    check_used_on_node(state, ctx, &t).await?;
    let filter = Filter::from_ctx(ctx, t.kind)?;
    let limit = crate::apiserver::list_query::limit(ctx.param("limit"))?;
    ctx.resource_version()?;
    let prefix = list_prefix(&t);
    let after = ctx
        .param("continue")
        .map(|c| decode_continue(c, &prefix))
        .transpose()?;
    let (rev, items, next) = blocking(state, move |s| {
        // Scan pages until `limit` matches; continue from the last key
        // returned. The continuation reads the latest state (not a snapshot
        // at the first page's revision), like resourceVersionMatch=NotOlderThan.
        let page = if limit == 0 {
            usize::MAX
        } else {
            limit.max(100)
        };
        let mut cursor = after;
        let mut items = Vec::new();
        let mut first_rev = None;
        loop {
            let (rev, batch) = s.store.list(&prefix, cursor.as_deref(), page)?;
            first_rev.get_or_insert(rev);
            let exhausted = batch.len() < page;
            for (key, object) in batch {
                if limit != 0 && items.len() == limit {
                    let last = cursor.clone().unwrap_or(key);
                    return Ok((first_rev.unwrap_or(rev), items, Some(last)));
                }
                cursor = Some(key);
                if filter.matches(&object) {
                    items.push(object);
                }
            }
            if exhausted {
                return Ok((first_rev.unwrap_or(rev), items, None));
            }
        }
    })
    .await?;
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if let Some(key) = next {
        meta["continue"] = json!(encode_continue(rev, &key));
    }
    let body = if ctx.table {
        table::table(t.kind, &items, meta, true)
    } else {
        // kube's list items carry no apiVersion and kind of their own.
        let mut items = items;
        for item in &mut items {
            if let Some(m) = item.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
        }
        json!({
            "kind": format!("{}List", t.kind.kind),
            "apiVersion": t.kind.api_version(),
            "metadata": meta,
            "items": items,
        })
    };
    Ok(ctx.reply(StatusCode::OK, &body))
}

//! The verbs: get, list, create, update, patch, delete, deletecollection and
//! pods/binding. One generic path for every kind; kind-specific behaviour
//! comes from `resources` hooks and a few explicit rules kube-apiserver has
//! (graceful pod deletion, namespace side effects, service IPs).
//!
//! Every mutation is a single store transaction: read, check preconditions,
//! write. So optimistic concurrency is exact (no window between the
//! resourceVersion check and the write) and a rejected request writes nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::apiserver::State;
use crate::apiserver::error::{ApiError, qualified};
use crate::apiserver::http::{Body, Ctx, Target, json as json_resp};
use crate::apiserver::list_query::{decode_continue, encode_continue};
use crate::apiserver::managed_fields;
use crate::apiserver::patch::{self, PatchType};
use crate::apiserver::rbac;
use crate::apiserver::resources::{self, Kind};
use crate::apiserver::selectors::{FieldSelector, LabelSelector};
use crate::apiserver::store::{Txn, collection_prefix, object_key};
use crate::apiserver::table;

/// Run blocking store work off the async threads (redb commits fsync).
pub async fn blocking<T: Send + 'static>(
    state: &Arc<State>,
    f: impl FnOnce(&State) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || f(&state))
        .await
        .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn key_of(t: &Target) -> String {
    object_key(t.kind.group, t.kind.resource, &t.namespace, &t.name)
}

pub fn namespace_key(ns: &str) -> String {
    object_key("", "namespaces", "", ns)
}

fn not_found(t: &Target) -> ApiError {
    ApiError::not_found(t.kind.group, t.kind.resource, &t.name)
}

fn meta_str<'a>(o: &'a Value, field: &str) -> &'a str {
    o["metadata"][field].as_str().unwrap_or("")
}

fn respond(ctx: &Ctx, kind: &Kind, status: StatusCode, object: &Value) -> Response<Body> {
    if ctx.table {
        let t = table::table(
            kind,
            std::slice::from_ref(object),
            json!({"resourceVersion": meta_str(object, "resourceVersion")}),
            true,
        );
        json_resp(status, &t)
    } else {
        ctx.reply(status, object)
    }
}

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
        json!({
            "kind": format!("{}List", t.kind.kind),
            "apiVersion": t.kind.api_version(),
            "metadata": meta,
            "items": items,
        })
    };
    Ok(ctx.reply(StatusCode::OK, &body))
}

/// The body, an `api_version` `kind`, as a JSON object; Kubernetes
/// protobuf (what client-go sends by default) is transcoded.
fn decode_body(ctx: &Ctx, api_version: &str, kind: &str) -> Result<Value, ApiError> {
    let ct = ctx.content_type.split(';').next().unwrap_or("").trim();
    if ct == crate::apiserver::protobuf::MEDIA_TYPE {
        return crate::apiserver::protobuf::decode(&ctx.body, api_version, kind);
    }
    if ct == "application/yaml" {
        return crate::apiserver::patch::yaml_object(&ctx.body);
    }
    if !matches!(ct, "" | "application/json" | "*/*") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ct})"
        )));
    }
    let v: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(v)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

fn field_validation(ctx: &Ctx) -> Result<FieldValidation, ApiError> {
    match ctx.param("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::BadRequest(format!(
            "fieldValidation parameter unsupported: {other}"
        ))),
    }
}

/// Check apiVersion/kind, decode through the typed schema (which rejects
/// wrong types and drops unknown fields), and report unknown fields per the
/// fieldValidation mode. Returns the normalized object and any warnings.
fn normalize(
    kind: &Kind,
    mode: FieldValidation,
    mut object: Value,
) -> Result<(Value, Vec<String>), ApiError> {
    let cannot = |msg: String| {
        ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: {msg}",
            kind.kind, kind.version, kind.kind
        ))
    };
    // A JSON patch can turn the whole document into a non-object.
    if !object.is_object() {
        return Err(cannot("the object must be a JSON object".into()));
    }
    let api_version = kind.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => object["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match object.get("kind").and_then(Value::as_str) {
        None | Some("") => object["kind"] = json!(kind.kind),
        Some(k) if k == kind.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind
            )));
        }
    }
    if !object.get("metadata").is_none_or(Value::is_object) {
        return Err(cannot("metadata must be an object".into()));
    }
    let typed = (kind.roundtrip)(object.clone()).map_err(cannot)?;
    let unknown = resources::unknown_fields(&object, &typed);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let list = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect::<Vec<_>>();
        match mode {
            FieldValidation::Strict => {
                return Err(cannot(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => warnings = list,
            FieldValidation::Ignore => {}
        }
    }
    Ok((typed, warnings))
}

/// A create/update body, decoded and normalized; warnings go to the reply.
fn decode_normalized(ctx: &mut Ctx, kind: &Kind) -> Result<Value, ApiError> {
    let body = decode_body(ctx, &kind.api_version(), kind.kind)?;
    let (object, warnings) = normalize(kind, field_validation(ctx)?, body)?;
    ctx.warnings.extend(warnings);
    Ok(object)
}

pub(crate) fn generate_name(prefix: &str) -> String {
    // apimachinery's alphabet: no vowels (no words), no confusable digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

fn invalid(kind: &Kind, object: &Value, causes: Vec<crate::apiserver::error::Cause>) -> ApiError {
    ApiError::invalid(kind.kind, kind.group, meta_str(object, "name"), causes)
}

fn check_valid(kind: &Kind, object: &Value) -> Result<(), ApiError> {
    let causes = resources::validate(kind, object);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(kind, object, causes))
    }
}

fn ensure_namespace(txn: &Txn<'_>, kind: &Kind, ns: &str) -> Result<(), ApiError> {
    if !kind.namespaced {
        return Ok(());
    }
    match txn.get(&namespace_key(ns))? {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if n["metadata"]["deletionTimestamp"].is_string() => {
            Err(ApiError::Forbidden(format!(
                "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                qualified(kind.group, kind.resource)
            )))
        }
        Some(_) => Ok(()),
    }
}

/// Whether anything is left in namespace `ns`.
fn namespace_empty(txn: &Txn<'_>, ns: &str) -> Result<bool, ApiError> {
    for k in resources::KINDS.iter().filter(|k| k.namespaced) {
        let mut prefix = collection_prefix(k.group, k.resource);
        prefix.push_str(ns);
        prefix.push('/');
        if !txn.list(&prefix)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The namespace controller's last step: a terminating namespace goes once
/// its last object (say, a pod a kubelet just finished) is gone.
fn finish_namespace(txn: &mut Txn<'_>, ns: &str) -> Result<(), ApiError> {
    let key = namespace_key(ns);
    if let Some(n) = txn.get(&key)?
        && n["metadata"]["deletionTimestamp"].is_string()
        && namespace_empty(txn, ns)?
    {
        txn.delete(&key)?;
    }
    Ok(())
}

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
fn prepare_create(kind: &Kind, namespace: &str, mut object: Value) -> Result<Value, ApiError> {
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
    resources::apply_defaults(kind, &mut object);
    if kind.resource == "pods" {
        crate::apiserver::default_tolerations::admit(&mut object);
    }
    check_valid(kind, &object)?;
    Ok(object)
}

/// The store half of a create, inside a write transaction.
fn store_create(
    txn: &mut Txn<'_>,
    kind: &'static Kind,
    namespace: &str,
    mut object: Value,
    dry_run: bool,
    ca_pem: &str,
) -> Result<Value, ApiError> {
    ensure_namespace(txn, kind, namespace)?;
    let name = meta_str(&object, "name").to_string();
    let key = object_key(kind.group, kind.resource, namespace, &name);
    if txn.get(&key)?.is_some() {
        return Err(ApiError::AlreadyExists {
            group: kind.group.into(),
            resource: kind.resource.into(),
            name,
        });
    }
    if kind.resource == "services" {
        allocate_cluster_ip(txn, &mut object)?;
    }
    if kind.resource == "pods" {
        crate::apiserver::sa_admission::admit(txn, namespace, &mut object)?;
    }
    if dry_run {
        return Ok(object);
    }
    let stored = txn.put(&key, object)?;
    if kind.resource == "namespaces" {
        namespace_side_effects(txn, &name, ca_pem)?;
    }
    Ok(stored)
}

/// What kube's controllers put in every namespace: the `default`
/// ServiceAccount and the `kube-root-ca.crt` ConfigMap.
pub fn namespace_side_effects(txn: &mut Txn<'_>, ns: &str, ca_pem: &str) -> Result<(), ApiError> {
    let sa_key = object_key("", "serviceaccounts", ns, "default");
    if txn.get(&sa_key)?.is_none() {
        txn.put(
            &sa_key,
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                "name": "default", "namespace": ns,
                "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now_rfc3339()}}),
        )?;
    }
    let cm_key = object_key("", "configmaps", ns, "kube-root-ca.crt");
    if txn.get(&cm_key)?.is_none() {
        txn.put(
            &cm_key,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "kube-root-ca.crt", "namespace": ns,
                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."},
                "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now_rfc3339()},
                "data": {"ca.crt": ca_pem}}),
        )?;
    }
    Ok(())
}

/// Services get a cluster IP from 10.96.0.0/16 unless they are headless or
/// ask for a specific one (which must be free).
fn allocate_cluster_ip(txn: &Txn<'_>, svc: &mut Value) -> Result<(), ApiError> {
    if svc["spec"]["type"] == "ExternalName" {
        return Ok(());
    }
    let services = txn.list(&collection_prefix("", "services"))?;
    if matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    ) {
        allocate_node_ports(&services, svc)?;
    }
    let used: std::collections::HashSet<String> = services
        .into_iter()
        .filter_map(|(_, s)| s["spec"]["clusterIP"].as_str().map(String::from))
        .collect();
    let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
    let ip = if requested == "None" {
        requested
    } else if !requested.is_empty() {
        let ok = requested
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[0] == 10 && ip.octets()[1] == 96);
        if !ok || used.contains(&requested) {
            return Err(ApiError::invalid(
                "Service",
                "",
                meta_str(svc, "name"),
                vec![crate::apiserver::error::Cause {
                    reason: "FieldValueInvalid",
                    field: "spec.clusterIPs".into(),
                    message: format!(
                        "Invalid value: \"{requested}\": failed to allocate IP {requested}: provided IP is already allocated or not in the valid range 10.96.0.0/16"
                    ),
                }],
            ));
        }
        requested
    } else {
        (1u32..65534)
            .map(|n| std::net::Ipv4Addr::from(u32::from_be_bytes([10, 96, 0, 0]) + n).to_string())
            .find(|ip| !used.contains(ip))
            .ok_or_else(|| ApiError::Internal("no cluster IPs left".into()))?
    };
    svc["spec"]["clusterIP"] = json!(ip);
    svc["spec"]["clusterIPs"] = json!([ip]);
    if ip != "None" || svc["spec"]["ipFamilies"].is_null() {
        svc["spec"]["ipFamilies"] = json!(["IPv4"]);
        svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    }
    Ok(())
}

/// NodePort and LoadBalancer services get a node port per port, from
/// kube's default range 30000-32767, unless they name a free one.
fn allocate_node_ports(services: &[(String, Value)], svc: &mut Value) -> Result<(), ApiError> {
    const RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;
    let mut used: std::collections::HashSet<i64> = services
        .iter()
        .flat_map(|(_, s)| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["nodePort"].as_i64())
        .collect();
    let name = meta_str(svc, "name").to_string();
    let Some(ports) = svc["spec"]["ports"].as_array_mut() else {
        return Ok(());
    };
    for (i, port) in ports.iter_mut().enumerate() {
        match port["nodePort"].as_i64() {
            Some(n) if !RANGE.contains(&n) || !used.insert(n) => {
                return Err(ApiError::invalid(
                    "Service",
                    "",
                    &name,
                    vec![crate::apiserver::error::Cause {
                        reason: "FieldValueInvalid",
                        field: format!("spec.ports[{i}].nodePort"),
                        message: format!(
                            "Invalid value: {n}: provided port is already allocated or not in the valid range 30000-32767"
                        ),
                    }],
                ));
            }
            Some(_) => {}
            None => {
                let n = RANGE
                    .clone()
                    .find(|n| !used.contains(n))
                    .ok_or_else(|| ApiError::Internal("no node ports left".into()))?;
                used.insert(n);
                port["nodePort"] = json!(n);
            }
        }
    }
    Ok(())
}

/// Merge a client's new version of an object with the stored one, the way
/// kube's update strategies do, and check the optimistic-concurrency
/// precondition. Returns None if nothing would change.
fn merge_update(
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
        // Status writes change only status (kubelets must not edit specs).
        let mut out = old.clone();
        out["status"] = new["status"].take();
        new = out;
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
        check_pod_spec_update(old, &new)?;
    }
    if kind.resource.ends_with("rolebindings") && old["roleRef"] != new["roleRef"] {
        return Err(ApiError::invalid(
            kind.kind,
            kind.group,
            &t.name,
            vec![crate::apiserver::error::Cause {
                reason: "FieldValueInvalid",
                field: "roleRef".into(),
                message: format!("Invalid value: {}: cannot change roleRef", new["roleRef"]),
            }],
        ));
    }
    if &new == old {
        return Ok(None);
    }
    if old["metadata"]["generation"].is_i64() && old.get("spec") != new.get("spec") {
        new["metadata"]["generation"] =
            json!(old["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
    }
    Ok(Some(new))
}

/// Pod specs are immutable but for images, activeDeadlineSeconds,
/// tolerations (additions) and terminationGracePeriodSeconds.
fn check_pod_spec_update(old: &Value, new: &Value) -> Result<(), ApiError> {
    let mask = |pod: &Value| {
        let mut spec = pod["spec"].clone();
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in items.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
        if let Some(m) = spec.as_object_mut() {
            for f in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                m.remove(f);
            }
        }
        spec
    };
    if mask(old) != mask(new) {
        return Err(ApiError::invalid(
            "Pod",
            "",
            meta_str(old, "name"),
            vec![crate::apiserver::error::Cause {
                reason: "FieldValueForbidden",
                field: "spec".into(),
                message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
            }],
        ));
    }
    Ok(())
}

/// A node may only touch pods bound to it.
fn check_pod_node(ctx_node: &Option<String>, t: &Target, pod: &Value) -> Result<(), ApiError> {
    if let Some(node) = ctx_node
        && pod["spec"]["nodeName"].as_str() != Some(node.as_str())
    {
        return Err(ApiError::Forbidden(format!(
            "pods \"{}\" is forbidden: node \"{node}\" can only modify pods bound to it",
            t.name
        )));
    }
    Ok(())
}

/// Shared tail of update and patch: defaults, validation, finalization.
/// How a write's managed fields come about.
pub enum Fields<'a> {
    /// A server-side apply computed them (they are in the new object).
    Applied,
    /// Any other write, by this field manager.
    Updated { manager: &'a str },
}

fn store_update(
    txn: &mut Txn<'_>,
    t: &Target,
    old: &Value,
    mut new: Value,
    dry_run: bool,
    fields: &Fields<'_>,
) -> Result<Value, ApiError> {
    // Default first, as kube does before validating: a client that leaves
    // out a defaulted field has not changed it.
    resources::apply_defaults(t.kind, &mut new);
    let Some(mut new) = merge_update(t, old, new, fields)? else {
        return Ok(old.clone());
    };
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
    resources::apply_defaults(t.kind, &mut new);
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
            finish_namespace(txn, &t.namespace)?;
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
            check_pod_node(&pod_node, &t, &old)?;
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
    check_pod_node(&a.pod_node, t, &old)?;
    let (patched, fields) = if a.ty == PatchType::Apply {
        let config = patch::apply_body(&a.body)?;
        let applied = managed_fields::apply(&apply_args(&t.subresource), Some(&old), &config)?;
        (applied, Fields::Applied)
    } else {
        let patched = patch::apply(kind.resource, &old, &a.body, a.ty).map_err(|e| match e {
            ApiError::Invalid { summary, .. } => ApiError::invalid(
                kind.kind,
                kind.group,
                &t.name,
                vec![crate::apiserver::error::Cause {
                    reason: "FieldValueInvalid",
                    field: String::new(),
                    message: summary,
                }],
            ),
            other => other,
        })?;
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

/// Namespaces kube-apiserver refuses to delete.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

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
        check_pod_node(pod_node, t, &old)?;
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
    if kind.resource == "namespaces" && PROTECTED_NAMESPACES.contains(&t.name.as_str()) {
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
        let grace = pod_grace(&old, opts.grace);
        if grace > 0 || has_finalizers {
            return mark_deleting(txn, &key, old, grace);
        }
    } else if has_finalizers {
        return mark_deleting(txn, &key, old, 0);
    }
    if kind.resource == "namespaces" {
        return terminate_namespace(txn, t, old);
    }
    let deleted = txn.delete(&key)?.ok_or_else(|| not_found(t))?;
    // Events own nothing.
    if kind.resource != "events" {
        collect_dependents(txn, meta_str(&deleted, "uid"), opts.orphan, depth)?;
    }
    if kind.namespaced {
        finish_namespace(txn, &t.namespace)?;
    }
    Ok(deleted)
}

/// The namespace controller's job, done in the delete: the namespace turns
/// Terminating, its contents are deleted (pods bound to a node gracefully,
/// so their kubelet can stop them), and it goes when nothing is left.
fn terminate_namespace(txn: &mut Txn<'_>, t: &Target, mut ns: Value) -> Result<Value, ApiError> {
    if !ns["metadata"]["deletionTimestamp"].is_string() {
        ns["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        ns["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        ns["status"]["phase"] = json!("Terminating");
        ns = txn.put(&namespace_key(&t.name), ns)?;
    }
    for k in resources::KINDS.iter().filter(|k| k.namespaced) {
        let mut prefix = collection_prefix(k.group, k.resource);
        prefix.push_str(&t.name);
        prefix.push('/');
        for (child, object) in txn.list(&prefix)? {
            if k.resource == "pods" {
                let grace = pod_grace(&object, None);
                if grace > 0 {
                    mark_deleting(txn, &child, object, grace)?;
                    continue;
                }
            }
            txn.delete(&child)?;
        }
    }
    if namespace_empty(txn, &t.name)? {
        return txn
            .delete(&namespace_key(&t.name))?
            .ok_or_else(|| not_found(t));
    }
    Ok(ns)
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

/// A pod on a node gets its grace period (the kubelet finishes the delete);
/// an unbound or finished pod goes at once.
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let unbound = pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
    let terminal = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if unbound || terminal {
        return 0;
    }
    let grace = requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0);
    // Like kube: an already-pending deletion only ever gets shorter.
    match pod["metadata"]["deletionGracePeriodSeconds"].as_i64() {
        Some(current) if current <= grace => current,
        _ => grace,
    }
}

fn mark_deleting(
    txn: &mut Txn<'_>,
    key: &str,
    mut old: Value,
    grace: i64,
) -> Result<Value, ApiError> {
    let current = old["metadata"]["deletionGracePeriodSeconds"].as_i64();
    if old["metadata"]["deletionTimestamp"].is_string() && current.is_none_or(|c| c <= grace) {
        return Ok(old);
    }
    let at = SystemTime::now() + Duration::from_secs(grace.max(0) as u64);
    old["metadata"]["deletionTimestamp"] = json!(humantime::format_rfc3339_seconds(at).to_string());
    old["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    Ok(txn.put(key, old)?)
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
    Ok(respond(ctx, kind, StatusCode::OK, &object))
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

/// POST pods/<name>/binding: the scheduler's way to put a pod on a node.
pub async fn bind(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    let body = decode_body(ctx, "v1", "Binding")?;
    let node = body["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            &t.name,
            vec![crate::apiserver::error::Cause {
                reason: "FieldValueRequired",
                field: "target.name".into(),
                message: "Required value".into(),
            }],
        ));
    }
    let name = t.name.clone();
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
            set_scheduled(&mut pod);
            txn.put(&key, pod)?;
            Ok(())
        })
    })
    .await?;
    Ok(ctx.reply(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": "pods"}, "code": 201}),
    ))
}

/// PodScheduled=True, as kube-apiserver's binding sets it.
fn set_scheduled(pod: &mut Value) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let condition = json!({"type": "PodScheduled", "status": "True",
        "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    if let Some(conditions) = pod["status"]["conditions"].as_array_mut() {
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(condition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_marks_the_pod_scheduled() {
        let mut pod = json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
        ]}});
        set_scheduled(&mut pod);
        let c = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0]["status"].as_str(), c[0].get("reason")),
            (Some("True"), None)
        );
        let mut bare = json!({});
        set_scheduled(&mut bare);
        assert_eq!(bare["status"]["conditions"][0]["type"], "PodScheduled");
    }

    /// Odd shapes in every position a client controls must come back as
    /// errors or normalized objects, never as a panic.
    #[test]
    fn odd_bodies_never_panic() {
        let odd = [
            json!(null),
            json!([]),
            json!("s"),
            json!(1),
            json!({}),
            json!({"metadata": null}),
            json!({"metadata": []}),
            json!({"metadata": "x"}),
            json!({"metadata": {"name": 5}}),
            json!({"metadata": {"name": "a", "labels": {"k": 1}}}),
            json!({"metadata": {"name": "a", "labels": {"bad key!": "v"}}}),
            json!({"metadata": {"name": "a"}, "spec": []}),
            json!({"metadata": {"name": "a"}, "spec": {"containers": [null, 1, {}]}}),
            json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": "x"}]}}),
            json!({"metadata": {"name": "a"}, "status": "x"}),
            json!({"metadata": {"generateName": "g-"}, "data": {"k": "v"}}),
            json!({"apiVersion": "v2", "metadata": {"name": "a"}}),
        ];
        let patches: [&[u8]; 6] = [
            b"[{\"op\":\"replace\",\"path\":\"\",\"value\":null}]",
            b"{\"spec\":{\"containers\":[{\"$patch\":\"delete\"}]}}",
            b"{\"$setElementOrder/x\":[1],\"$retainKeys\":[1],\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":5}}",
            b"{\"metadata\":{\"ownerReferences\":[{\"$patch\":\"replace\"}]}}",
            b"{}",
            b"\x00\xff",
        ];
        for kind in resources::KINDS {
            for body in &odd {
                for mode in [FieldValidation::Strict, FieldValidation::Warn] {
                    if let Ok((object, _)) = normalize(kind, mode, body.clone())
                        && let Ok(object) = prepare_create(kind, "default", object)
                    {
                        let _ = table::row(kind, &object, SystemTime::now());
                        for p in patches {
                            for ty in [
                                PatchType::Json,
                                PatchType::Merge,
                                PatchType::Strategic,
                                PatchType::Apply,
                            ] {
                                if let Ok(patched) = patch::apply(kind.resource, &object, p, ty)
                                    && let Ok((mut new, _)) = normalize(kind, mode, patched)
                                {
                                    resources::apply_defaults(kind, &mut new);
                                    for sub in ["", "status"] {
                                        let t = Target {
                                            kind,
                                            namespace: "default".into(),
                                            name: meta_str(&object, "name").into(),
                                            subresource: sub.into(),
                                        };
                                        let _ = merge_update(
                                            &t,
                                            &object,
                                            new.clone(),
                                            &Fields::Updated { manager: "m" },
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

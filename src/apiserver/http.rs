//! Request routing: authenticate, parse the Kubernetes REST path into a
//! target (kind, namespace, name, subresource) and verb, authorize, and
//! dispatch to the verb handlers. Also content negotiation (JSON or Table)
//! and the request body limit.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use crate::apiserver::auth::{self, Attributes, Decision, User};
use crate::apiserver::context::{Body, Ctx, MAX_BODY, Target, error, full, query_pairs, reply};
use crate::apiserver::discovery;
use crate::apiserver::error::ApiError;
use crate::apiserver::kubelet_proxy;
use crate::apiserver::resources;
use crate::apiserver::reviews;
use crate::apiserver::state::{State, blocking};
use crate::apiserver::verbs;

/// Only JSON (and Table-as-JSON) responses are produced; a client that
/// accepts nothing JSON-like gets 406.
fn accepts_json(accept: &str) -> bool {
    accept.is_empty()
        || accept.split(',').any(|range| {
            let base = range.split(';').next().unwrap_or("").trim();
            matches!(
                base,
                "application/json" | "application/*" | "*/*" | "*" | "application/json-patch+json"
            )
        })
}

/// What anonymous requests may do, as kube-apiserver's default roles
/// (system:public-info-viewer, the issuer discovery document) allow:
/// `/version` and OIDC discovery; elsewhere a 403 naming
/// system:anonymous (the health paths are answered before this).
fn anonymous_access(
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    user: &User,
) -> Result<(), ApiError> {
    if *method == Method::GET && matches!(path, "/version" | "/.well-known/openid-configuration") {
        return Ok(());
    }
    if let Ok((target, collection)) = parse_path(path)
        && let Ok(verb) = verb_for(method, &target, collection, query)
    {
        let attrs = Attributes {
            verb,
            group: target.kind.group,
            resource: target.kind.resource,
            subresource: &target.subresource,
            namespace: &target.namespace,
            name: &target.name,
        };
        return Err(auth::forbidden(user, &attrs));
    }
    Err(ApiError::Forbidden(format!(
        "forbidden: User \"{}\" cannot {} path \"{path}\"",
        user.name,
        method.as_str().to_ascii_lowercase()
    )))
}

pub async fn handle(
    state: Arc<State>,
    cert_user: Option<User>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let protobuf = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::apiserver::protobuf::wants_protobuf);
    let result = route(state, cert_user, req).await;
    match result {
        Ok(resp) => {
            tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
            resp
        }
        Err(err) => {
            let status = err.code().as_u16();
            if err.code().is_server_error() {
                tracing::warn!(%method, %path, status, error = %err, "request failed");
            } else {
                tracing::debug!(%method, %path, status, error = %err, "request refused");
            }
            error(&err, protobuf)
        }
    }
}

async fn authenticate(
    state: &Arc<State>,
    cert_user: Option<User>,
    headers: &http::HeaderMap,
) -> Result<User, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        // A presented but unknown token is refused even with a client cert,
        // as kube-apiserver's union authenticator does on explicit failure.
        if let Some(user) = state.tokens.user(token) {
            return Ok(user.clone());
        }
        let claims = state
            .sa_issuer
            .verify(token, crate::apiserver::sa_token::unix_now())
            .ok_or(ApiError::Unauthorized)?;
        return blocking(state, move |s| {
            crate::apiserver::sa_token::user_for(&s.store, &claims)
        })
        .await?
        .ok_or(ApiError::Unauthorized);
    }
    cert_user
        .filter(|u| !u.name.is_empty())
        .ok_or(ApiError::Unauthorized)
}

/// `kubectl --as/--as-group`: kube-apiserver's impersonation. Each
/// impersonated user (or service account), group and uid needs the
/// `impersonate` verb on users / serviceaccounts / groups / uids; the admin
/// always has it, anyone else through RBAC (the edit role impersonates
/// service accounts).
async fn impersonate(
    state: &Arc<State>,
    user: User,
    headers: &http::HeaderMap,
) -> Result<User, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect()
    };
    let names = values("impersonate-user");
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid")
        .into_iter()
        .next()
        .unwrap_or_default();
    if names.is_empty() && groups.is_empty() && uid.is_empty() {
        return Ok(user);
    }
    let name = names.first().cloned().unwrap_or_default();
    if name.is_empty() {
        // kube's words, which print the Go struct it would have built.
        let quoted: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
        return Err(ApiError::BadRequest(format!(
            "requested &user.DefaultInfo{{Name:\"\", UID:{uid:?}, Groups:[]string{{{}}}, Extra:map[string][]string(nil)}} without impersonating a user name",
            quoted.join(", ")
        )));
    }
    let sa = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .map(|(ns, n)| (ns.to_string(), n.to_string()));
    if !user.is_admin() {
        let mut asks = vec![match &sa {
            Some((ns, n)) => ("serviceaccounts", ns.clone(), n.clone()),
            None => ("users", String::new(), name.clone()),
        }];
        asks.extend(groups.iter().map(|g| ("groups", String::new(), g.clone())));
        if !uid.is_empty() {
            asks.push(("uids", String::new(), uid.clone()));
        }
        for (resource, namespace, target) in asks {
            let attrs = Attributes {
                verb: "impersonate",
                group: "",
                resource,
                subresource: "",
                namespace: &namespace,
                name: &target,
            };
            authorize(state, &user, &attrs).await.map_err(|_| {
                ApiError::Forbidden(format!(
                    "{resource} \"{target}\" is forbidden: User \"{}\" cannot impersonate resource \"{resource}\" in API group \"\" {}",
                    user.name,
                    if namespace.is_empty() {
                        "at the cluster scope".to_string()
                    } else {
                        format!("in the namespace \"{namespace}\"")
                    }
                ))
            })?;
        }
    }
    // A service account impersonated without groups gets its own.
    let groups = match (&sa, groups.is_empty()) {
        (Some((ns, _)), true) => vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ],
        _ => groups,
    };
    Ok(User { name, uid, groups })
}

async fn route(
    state: Arc<State>,
    cert_user: Option<User>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    // Health endpoints answer without credentials: load balancers and
    // supervisors probe them (kube allows the same via anonymous-auth
    // conditions on /healthz, /livez, /readyz).
    let health = ["/healthz", "/livez", "/readyz"];
    if health
        .iter()
        .any(|h| path == *h || path.starts_with(&format!("{h}/")))
    {
        return Ok(full(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            b"ok".to_vec(),
        ));
    }
    let anonymous = cert_user.is_none() && !req.headers().contains_key(header::AUTHORIZATION);
    let user = authenticate(&state, cert_user, req.headers()).await;
    let user = match user {
        Err(ApiError::Unauthorized) if anonymous => User {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        },
        other => other?,
    };
    let user = impersonate(&state, user, req.headers()).await?;
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|ua| !ua.is_empty())
        .unwrap_or("unknown")
        .to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let query: HashMap<String, String> = query_pairs(req.uri());
    let protobuf = crate::apiserver::protobuf::wants_protobuf(&accept);
    if anonymous {
        anonymous_access(&method, &path, &query, &user)?;
    }

    // Swagger 2 is served as JSON only; client-go's protobuf-only request
    // gets 406 and does without (as with a server that has no v2).
    if path == "/openapi/v2" && !accepts_json(&accept) {
        return Err(ApiError::NotAcceptable(
            "only application/json is served for /openapi/v2".into(),
        ));
    }
    if let Some(m) = crate::apiserver::metrics_api::MetricsRequest::parse(&method, &path) {
        if let Some(a) = m.attributes()
            && authorize(&state, &user, &a).await? != Decision::Allow
        {
            return Err(auth::forbidden(&user, &a));
        }
        return crate::apiserver::metrics_api::serve(&state, m, &query).await;
    }
    if method == Method::GET
        && let Some(resp) = discovery::route(&state, &path)?
    {
        return Ok(resp);
    }

    if method == Method::POST && path == reviews::TOKEN_REVIEWS {
        let body = read_body(req).await?;
        let review = blocking(&state, move |s| {
            reviews::token_review(s, &user, &content_type, &body)
        })
        .await?;
        return Ok(reply(protobuf, StatusCode::CREATED, &review));
    }
    if method == Method::POST && reviews::matches(&path) {
        let body = read_body(req).await?;
        let review = blocking(&state, move |s| {
            reviews::handle(&s.store, &path, &user, &content_type, &body)
                .ok_or(ApiError::NoRoute)?
        })
        .await?;
        return Ok(reply(protobuf, StatusCode::CREATED, &review));
    }

    let (target, collection) = parse_path(&path)?;
    let node_proxy = target.kind.resource == "nodes" && target.subresource == "proxy";
    if node_proxy
        || target.kind.resource == "pods"
            && kubelet_proxy::SUBRESOURCES.contains(&target.subresource.as_str())
    {
        let allowed = match target.subresource.as_str() {
            "log" => method == Method::GET,
            "proxy" => true,
            _ => method == Method::GET || method == Method::POST,
        };
        if !allowed {
            return Err(ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )));
        }
        let attrs = Attributes {
            verb: kubelet_proxy::verb(&target.subresource, &method),
            group: "",
            resource: target.kind.resource,
            subresource: &target.subresource,
            namespace: &target.namespace,
            name: &target.name,
        };
        if authorize(&state, &user, &attrs).await? != Decision::Allow {
            return Err(auth::forbidden(&user, &attrs));
        }
        return kubelet_proxy::proxy(&state, target, req).await;
    }
    let Some((shape, protobuf)) = crate::apiserver::partial::negotiate(&accept) else {
        return Err(ApiError::NotAcceptable(format!(
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, application/vnd.kubernetes.protobuf (got {accept})"
        )));
    };
    let body = read_body(req).await?;
    let verb = verb_for(&method, &target, collection, &query)?;
    let attrs = Attributes {
        verb,
        group: target.kind.group,
        resource: target.kind.resource,
        subresource: &target.subresource,
        namespace: &target.namespace,
        name: &target.name,
    };
    let (mut pod_node, mut create_name, mut used_on_node) = (None, None, None);
    match authorize(&state, &user, &attrs).await? {
        Decision::Allow => {}
        Decision::IfPodOnNode(node) => pod_node = Some(node),
        Decision::IfNamed(name) => create_name = Some(name),
        Decision::IfUsedOnNode(node) => used_on_node = Some(node),
    }
    let mut ctx = Ctx {
        user,
        query,
        body,
        content_type,
        table: shape == crate::apiserver::partial::As::Table,
        shape,
        protobuf,
        warnings: Vec::new(),
        pod_node,
        create_name,
        used_on_node,
        manager: String::new(),
    };
    ctx.manager = ctx
        .param("fieldManager")
        .map(String::from)
        .unwrap_or(user_agent);
    let scale = target.subresource == verbs::scale::SUBRESOURCE;
    let mut resp = match verb {
        "get" if scale => verbs::scale::get(&state, &ctx, target).await?,
        "update" if scale => verbs::scale::update(&state, &ctx, target).await?,
        "patch" if scale => verbs::scale::patch(&state, &ctx, target).await?,
        _ if scale => {
            return Err(ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )));
        }
        "get" => verbs::read::get(&state, &ctx, target).await?,
        "list" => verbs::read::list(&state, &ctx, target).await?,
        "watch" => crate::apiserver::watch::watch(&state, &ctx, target).await?,
        "create" if target.subresource == "binding" => {
            verbs::bind::bind(&state, &ctx, target).await?
        }
        "create" if target.subresource == verbs::eviction::SUBRESOURCE => {
            verbs::eviction::create(&state, &ctx, target).await?
        }
        "create" if target.subresource == "token" => {
            crate::apiserver::token_request::request(&state, &ctx, target).await?
        }
        "create" => verbs::create::create(&state, &mut ctx, target).await?,
        "update" => verbs::update::update(&state, &mut ctx, target).await?,
        "patch" => verbs::patch::patch(&state, &mut ctx, target).await?,
        "delete" => verbs::delete::delete(&state, &ctx, target).await?,
        "deletecollection" => verbs::delete::delete_collection(&state, &ctx, target).await?,
        other => {
            return Err(ApiError::MethodNotAllowed(format!(
                "verb {other} is not supported"
            )));
        }
    };
    for w in &ctx.warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(resp)
}

/// The authorizer chain; RBAC (which reads the store) only for requests
/// the static rules refuse, so admins and nodes never wait on it.
async fn authorize(
    state: &Arc<State>,
    user: &User,
    attrs: &Attributes<'_>,
) -> Result<Decision, ApiError> {
    match auth::authorize(user, attrs) {
        Ok(d) => Ok(d),
        Err(denied) => {
            let (user2, owned) = (user.clone(), auth::OwnedAttributes::of(attrs));
            let allowed = blocking(state, move |s| {
                Ok(crate::apiserver::rbac::allows(
                    &s.store,
                    &user2,
                    &owned.borrow(),
                )?)
            })
            .await?;
            if allowed {
                Ok(Decision::Allow)
            } else {
                Err(denied)
            }
        }
    }
}

/// Parse `/api/v1/...` or `/apis/<group>/<version>/...`. Returns the target
/// and whether it names a collection.
pub fn parse_path(path: &str) -> Result<(Target, bool), ApiError> {
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::NoRoute),
    };
    let lookup =
        |resource: &str| resources::lookup(group, version, resource).ok_or(ApiError::NoRoute);
    let namespaced_resource = |r: &str| lookup(r).ok().filter(|k| k.namespaced);
    let (kind, namespace, name, sub) = match rest {
        ["namespaces", ns, r, tail @ ..] if namespaced_resource(r).is_some() => {
            let kind = lookup(r)?;
            match tail {
                [] => (kind, *ns, "", ""),
                [name] => (kind, *ns, *name, ""),
                [name, sub] => (kind, *ns, *name, *sub),
                _ => return Err(ApiError::NoRoute),
            }
        }
        [r] => (lookup(r)?, "", "", ""),
        [r, name] => {
            let kind = lookup(r)?;
            if kind.namespaced {
                return Err(ApiError::NoRoute);
            }
            (kind, "", *name, "")
        }
        [r, name, sub] => {
            let kind = lookup(r)?;
            if kind.namespaced {
                return Err(ApiError::NoRoute);
            }
            (kind, "", *name, *sub)
        }
        // nodes/{name}/proxy/{path...}: the rest goes to the kubelet.
        [r @ "nodes", name, sub @ "proxy", ..] if group.is_empty() => (lookup(r)?, "", *name, *sub),
        _ => return Err(ApiError::NoRoute),
    };
    let sub_ok = match sub {
        "" => true,
        "status" => kind.status,
        "binding" | "ephemeralcontainers" | "resize" | "eviction" => kind.resource == "pods",
        "token" => kind.resource == "serviceaccounts",
        "finalize" => kind.resource == "namespaces",
        s if kubelet_proxy::SUBRESOURCES.contains(&s) => kind.resource == "pods",
        "proxy" => kind.resource == "nodes",
        "scale" => resources::has_scale(kind),
        _ => false,
    };
    if !sub_ok {
        return Err(ApiError::NoRoute);
    }
    let collection = name.is_empty();
    Ok((
        Target {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            subresource: sub.to_string(),
        },
        collection,
    ))
}

fn verb_for(
    method: &Method,
    target: &Target,
    collection: bool,
    query: &HashMap<String, String>,
) -> Result<&'static str, ApiError> {
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method.as_str(), collection) {
        ("GET", true) if watch => "watch",
        ("GET", true) => "list",
        ("GET", false) if watch => "watch",
        ("GET", false) => "get",
        ("POST", true) => "create",
        ("POST", false)
            if matches!(
                target.subresource.as_str(),
                "binding" | "token" | "eviction"
            ) =>
        {
            "create"
        }
        ("PUT", false) => "update",
        ("PATCH", false) => "patch",
        ("DELETE", false) => "delete",
        ("DELETE", true) => "deletecollection",
        _ => {
            return Err(ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )));
        }
    };
    if matches!(
        target.subresource.as_str(),
        "binding" | "token" | "eviction"
    ) && verb != "create"
    {
        return Err(ApiError::MethodNotAllowed(format!(
            "only create is allowed on {}/{}",
            target.kind.resource, target.subresource
        )));
    }
    Ok(verb)
}

async fn read_body(req: Request<hyper::body::Incoming>) -> Result<Bytes, ApiError> {
    let too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY);
    if too_large {
        return Err(ApiError::TooLarge);
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge),
        Err(err) => Err(ApiError::BadRequest(format!(
            "reading the request body: {err}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let (t, c) = parse_path("/api/v1/namespaces/default/pods/p/status").unwrap();
        assert_eq!(
            (
                t.kind.resource,
                t.namespace.as_str(),
                t.name.as_str(),
                t.subresource.as_str(),
                c
            ),
            ("pods", "default", "p", "status", false)
        );
        let (t, c) = parse_path("/api/v1/namespaces/default").unwrap();
        assert_eq!(
            (t.kind.resource, t.name.as_str(), c),
            ("namespaces", "default", false)
        );
        let (t, c) = parse_path("/api/v1/pods").unwrap();
        assert_eq!((t.kind.resource, c), ("pods", true));
        let (t, _) =
            parse_path("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
                .unwrap();
        assert_eq!(t.kind.resource, "leases");
        assert!(parse_path("/api/v1/pods/x").is_err());
        assert!(parse_path("/api/v1/namespaces/default/pods/p/exec").is_ok());
        assert!(parse_path("/api/v1/namespaces/default/configmaps/p/exec").is_err());
        assert!(parse_path("/api/v1/namespaces/default/pods/p/shell").is_err());
        assert!(parse_path("/api/v2/pods").is_err());
        let (t, _) = parse_path("/api/v1/nodes/n1/proxy/metrics/cadvisor").unwrap();
        assert_eq!(
            (t.kind.resource, t.name.as_str(), t.subresource.as_str()),
            ("nodes", "n1", "proxy")
        );
        assert!(parse_path("/api/v1/nodes/n1/proxy").is_ok());
        assert!(parse_path("/api/v1/nodes/n1/logs/x").is_err());
    }

    #[test]
    fn negotiation() {
        assert!(accepts_json("application/vnd.kubernetes.protobuf, */*"));
        assert!(!accepts_json("application/vnd.kubernetes.protobuf"));
    }
}

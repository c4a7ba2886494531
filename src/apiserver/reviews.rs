//! The create-only, never-stored review resources kubectl uses to ask about
//! the caller: `kubectl auth whoami` (SelfSubjectReview) and `kubectl auth
//! can-i` (SelfSubjectAccessReview), answered from the same authenticator
//! and authorizer that guard every request.

use serde_json::{Value, json};

use crate::apiserver::auth::{Attributes, Decision, User};
use crate::apiserver::error::ApiError;
use crate::apiserver::rbac::{self, Reader};

/// (group, version, resource, kind) of each review resource.
pub const REVIEWS: &[(&str, &str, &str, &str)] = &[
    ("authentication.k8s.io", "v1", "tokenreviews", "TokenReview"),
    (
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
    ),
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
    ),
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
    ),
    (
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
    ),
];

/// Whether `path` is a review collection.
pub fn matches(path: &str) -> bool {
    REVIEWS
        .iter()
        .any(|(g, v, r, _)| path == format!("/apis/{g}/{v}/{r}"))
}

/// Answer `POST <path>` if it is a review; None if the path is not one.
/// kubectl's typed clients send these as protobuf.
pub fn handle(
    reader: &dyn Reader,
    path: &str,
    user: &User,
    content_type: &str,
    body: &[u8],
) -> Option<Result<Value, ApiError>> {
    let (group, version, resource, kind) = REVIEWS
        .iter()
        .find(|(g, v, r, _)| path == format!("/apis/{g}/{v}/{r}"))?;
    let review = Review {
        group,
        version,
        resource,
        kind,
    };
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        let api_version = format!("{group}/{version}");
        return Some(
            crate::apiserver::protobuf::decode(body, &api_version, kind)
                .and_then(|v| answer(reader, &review, user, v.to_string().as_bytes())),
        );
    }
    Some(answer(reader, &review, user, body))
}

pub const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// TokenReview: who a bearer token (static or service-account) stands
/// for, for a webhook authenticator such as a kubelet's. Asking needs
/// `create tokenreviews` (system:auth-delegator grants it).
pub fn token_review(
    state: &crate::apiserver::state::State,
    user: &User,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let me = Attributes {
        verb: "create",
        group: "authentication.k8s.io",
        resource: "tokenreviews",
        subresource: "",
        namespace: "",
        name: "",
    };
    rbac::authorize_with(&state.store, user, &me)?;
    let req: Value = if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        crate::apiserver::protobuf::decode(body, "authentication.k8s.io/v1", "TokenReview")?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid TokenReview: {e}")))?
    };
    let token = req["spec"]["token"].as_str().unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::invalid(
            "TokenReview",
            "authentication.k8s.io",
            "",
            vec![crate::apiserver::error::Cause {
                reason: "FieldValueRequired",
                field: "spec.token".into(),
                message: "Required value".into(),
            }],
        ));
    }
    let wanted: Vec<String> = req["spec"]["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let api = vec![state.sa_issuer.issuer.clone()];
    let audiences = if wanted.is_empty() { &api } else { &wanted };
    // Static tokens are good for the API audiences only.
    let found = match state.tokens.user(token) {
        Some(u) if audiences.contains(&state.sa_issuer.issuer) => {
            Some((u.clone(), vec![state.sa_issuer.issuer.clone()]))
        }
        Some(_) => None,
        None => match state.sa_issuer.verify_for(
            token,
            crate::apiserver::sa_token::unix_now(),
            audiences,
        ) {
            Some((claims, matched)) => {
                crate::apiserver::sa_token::user_for(&state.store, &claims)?.map(|u| (u, matched))
            }
            None => None,
        },
    };
    let status = match found {
        Some((u, matched)) => json!({"authenticated": true, "audiences": matched, "user": {
            "username": u.name, "uid": u.uid,
            "groups": u.groups.iter().map(String::as_str).chain(["system:authenticated"]).collect::<Vec<_>>(),
        }}),
        None => json!({"authenticated": false, "error": "invalid bearer token", "user": {}}),
    };
    let mut out = req.clone();
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    out["kind"] = json!("TokenReview");
    if !out["metadata"].is_object() {
        out["metadata"] = json!({});
    }
    out["status"] = status;
    Ok(out)
}

struct Review<'a> {
    group: &'a str,
    version: &'a str,
    resource: &'a str,
    kind: &'a str,
}

/// Whether `user` may do what `spec` (a SubjectAccessReviewSpec or its
/// self form) asks about; (allowed, reason).
fn access(reader: &dyn Reader, user: &User, spec: &Value) -> Result<(bool, String), ApiError> {
    let ra = &spec["resourceAttributes"];
    let nra = &spec["nonResourceAttributes"];
    if nra.is_object() {
        let verb = nra["verb"].as_str().unwrap_or("");
        let path = nra["path"].as_str().unwrap_or("");
        let allowed = user.is_admin() || rbac::allows_url(reader, user, verb, path)?;
        return Ok((allowed, String::new()));
    }
    if !ra.is_object() {
        return Ok((
            false,
            "resourceAttributes or nonResourceAttributes is required".to_string(),
        ));
    }
    let s = |f: &str| ra[f].as_str().unwrap_or("");
    let attrs = Attributes {
        verb: s("verb"),
        group: s("group"),
        resource: s("resource"),
        subresource: s("subresource"),
        namespace: s("namespace"),
        name: s("name"),
    };
    Ok(match rbac::authorize_with(reader, user, &attrs) {
        Ok(Decision::Allow) => (true, String::new()),
        Ok(Decision::IfPodOnNode(node)) => (true, format!("only for pods bound to node {node}")),
        Ok(Decision::IfNamed(name)) => (true, format!("only for the one named {name}")),
        Ok(Decision::IfUsedOnNode(node)) => {
            (true, format!("only for those used by pods on node {node}"))
        }
        // kube's RBAC gives no reason for a denial; kubectl then prints a
        // bare "no".
        Err(ApiError::Forbidden(_) | ApiError::ForbiddenOn(_)) => (false, String::new()),
        Err(other) => return Err(other),
    })
}

fn answer(
    reader: &dyn Reader,
    review: &Review<'_>,
    user: &User,
    body: &[u8],
) -> Result<Value, ApiError> {
    let kind = review.kind;
    let req: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid {kind}: {e}")))?
    };
    if !req.is_object() {
        return Err(ApiError::BadRequest(format!(
            "invalid {kind}: not an object"
        )));
    }
    let mut out = req.clone();
    out["apiVersion"] = json!(format!("{}/{}", review.group, review.version));
    out["kind"] = json!(kind);
    if !out["metadata"].is_object() {
        out["metadata"] = json!({});
    }
    let spec = &req["spec"];
    match review.resource {
        "tokenreviews" => return Err(ApiError::NoRoute),
        "selfsubjectreviews" => {
            out["status"] = json!({"userInfo": {
                "username": user.name,
                "uid": user.uid,
                "groups": user.groups.iter().map(String::as_str)
                    .chain(["system:authenticated"]).collect::<Vec<_>>(),
            }});
        }
        "selfsubjectaccessreviews" => {
            let (allowed, reason) = access(reader, user, spec)?;
            out["status"] = json!({"allowed": allowed, "reason": reason});
        }
        "selfsubjectrulesreviews" => {
            let ns = spec["namespace"].as_str().unwrap_or("");
            let rules = rbac::rules_for(reader, user, ns)?;
            let (urls, resources): (Vec<Value>, Vec<Value>) = rules.into_iter().partition(|r| {
                r["nonResourceURLs"]
                    .as_array()
                    .is_some_and(|u| !u.is_empty())
            });
            let resources: Vec<Value> = resources
                .into_iter()
                .map(|r| {
                    json!({"verbs": r["verbs"], "apiGroups": r["apiGroups"],
                           "resources": r["resources"], "resourceNames": r["resourceNames"]})
                })
                .collect();
            let urls: Vec<Value> = urls
                .into_iter()
                .map(|r| json!({"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}))
                .collect();
            // Admin and node rules are built in, not RBAC rules: a node's
            // list is incomplete.
            out["status"] = json!({"resourceRules": resources, "nonResourceRules": urls,
                                   "incomplete": user.node_name().is_some()});
        }
        _ => {
            // Asking about someone else is itself a permission.
            let me = Attributes {
                verb: "create",
                group: "authorization.k8s.io",
                resource: "subjectaccessreviews",
                subresource: "",
                namespace: "",
                name: "",
            };
            rbac::authorize_with(reader, user, &me)?;
            let name = spec["user"].as_str().unwrap_or("");
            let groups: Vec<String> = spec["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(String::from))
                .collect();
            if name.is_empty() && groups.is_empty() {
                return Err(ApiError::invalid(
                    kind,
                    review.group,
                    "",
                    vec![crate::apiserver::error::Cause {
                        reason: "FieldValueRequired",
                        field: "spec.user".into(),
                        message: "Required value: at least one of user or group must be specified"
                            .into(),
                    }],
                ));
            }
            let subject = User {
                name: name.to_string(),
                uid: spec["uid"].as_str().unwrap_or("").to_string(),
                groups,
            };
            let (allowed, reason) = access(reader, &subject, spec)?;
            out["status"] = json!({"allowed": allowed, "reason": reason});
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with nothing in it: no RBAC rules.
    struct Empty;
    impl Reader for Empty {
        fn get(&self, _: &str) -> Result<Option<Value>, crate::apiserver::store::StoreError> {
            Ok(None)
        }
        fn list(
            &self,
            _: &str,
        ) -> Result<Vec<(String, Value)>, crate::apiserver::store::StoreError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn reviews_answer_for_the_caller() {
        let node = User {
            name: "system:node:n1".into(),
            uid: "7".into(),
            groups: vec!["system:nodes".into()],
        };
        let who = handle(
            &Empty,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            &node,
            "",
            b"{}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(who["status"]["userInfo"]["username"], "system:node:n1");
        let ask = |verb: &str, resource: &str| {
            let body = json!({"spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": "default"}}});
            handle(
                &Empty,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                &node,
                "application/json",
                body.to_string().as_bytes(),
            )
            .unwrap()
            .unwrap()["status"]["allowed"]
                .clone()
        };
        assert_eq!(ask("list", "pods"), true);
        assert_eq!(ask("create", "configmaps"), false);
        assert!(handle(&Empty, "/apis/other", &node, "", b"{}").is_none());
        assert!(
            handle(
                &Empty,
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                &node,
                "",
                b"["
            )
            .unwrap()
            .is_err()
        );
    }
}

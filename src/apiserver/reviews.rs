//! The create-only, never-stored review resources kubectl uses to ask about
//! the caller: `kubectl auth whoami` (SelfSubjectReview) and `kubectl auth
//! can-i` (SelfSubjectAccessReview), answered from the same authenticator
//! and authorizer that guard every request.

use serde_json::{Value, json};

use crate::apiserver::auth::{self, Attributes, Decision, User};
use crate::apiserver::error::ApiError;

/// (group, version, resource, kind) of each review resource.
pub const REVIEWS: &[(&str, &str, &str, &str)] = &[
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
    path: &str,
    user: &User,
    content_type: &str,
    body: &[u8],
) -> Option<Result<Value, ApiError>> {
    let (group, version, resource, kind) = REVIEWS
        .iter()
        .find(|(g, v, r, _)| path == format!("/apis/{g}/{v}/{r}"))?;
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        let api_version = format!("{group}/{version}");
        return Some(
            crate::apiserver::protobuf::decode(resource, &api_version, kind, body).and_then(|v| {
                answer(
                    group,
                    version,
                    resource,
                    kind,
                    user,
                    v.to_string().as_bytes(),
                )
            }),
        );
    }
    Some(answer(group, version, resource, kind, user, body))
}

fn answer(
    group: &str,
    version: &str,
    resource: &str,
    kind: &str,
    user: &User,
    body: &[u8],
) -> Result<Value, ApiError> {
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
    out["apiVersion"] = json!(format!("{group}/{version}"));
    out["kind"] = json!(kind);
    if !out["metadata"].is_object() {
        out["metadata"] = json!({});
    }
    match resource {
        "selfsubjectreviews" => {
            out["status"] = json!({"userInfo": {
                "username": user.name,
                "uid": user.uid,
                "groups": user.groups.iter().map(String::as_str)
                    .chain(["system:authenticated"]).collect::<Vec<_>>(),
            }});
        }
        _ => {
            let ra = &req["spec"]["resourceAttributes"];
            let s = |f: &str| ra[f].as_str().unwrap_or("");
            let attrs = Attributes {
                verb: s("verb"),
                group: s("group"),
                resource: s("resource"),
                subresource: s("subresource"),
                namespace: s("namespace"),
                name: s("name"),
            };
            let (allowed, reason) = if !ra.is_object() {
                (false, "only resourceAttributes are supported".to_string())
            } else {
                match auth::authorize(user, &attrs) {
                    Ok(Decision::Allow) => (true, String::new()),
                    Ok(Decision::IfPodOnNode(node)) => {
                        (true, format!("only for pods bound to node {node}"))
                    }
                    Ok(Decision::IfNamed(name)) => (true, format!("only for the one named {name}")),
                    Ok(Decision::IfUsedOnNode(node)) => {
                        (true, format!("only for those used by pods on node {node}"))
                    }
                    // kube's RBAC gives no reason for a denial; kubectl
                    // then prints a bare "no".
                    Err(_) => (false, String::new()),
                }
            };
            out["status"] = json!({"allowed": allowed, "reason": reason});
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_answer_for_the_caller() {
        let node = User {
            name: "system:node:n1".into(),
            uid: "7".into(),
            groups: vec!["system:nodes".into()],
        };
        let who = handle(
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
        assert!(handle("/apis/other", &node, "", b"{}").is_none());
        assert!(
            handle(
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

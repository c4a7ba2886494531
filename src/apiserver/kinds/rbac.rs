//! Everything about role bindings: what a binding may name, and that its
//! roleRef never changes.

use serde_json::Value;

use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::kinds::common::cause;
use crate::apiserver::resources::Kind;

/// A binding names a role and only subjects kube knows.
pub fn validate(kind: &Kind, b: &Value, causes: &mut Vec<Cause>) {
    let role_kinds: &[&str] = if kind.namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let rk = b["roleRef"]["kind"].as_str().unwrap_or("");
    if !role_kinds.contains(&rk) {
        causes.push(cause(
            "unsupported",
            "roleRef.kind",
            format!(
                "Unsupported value: \"{rk}\": supported values: {}",
                role_kinds.join(", ")
            ),
        ));
    }
    if b["roleRef"]["apiGroup"] != "rbac.authorization.k8s.io" {
        causes.push(cause(
            "unsupported",
            "roleRef.apiGroup",
            "Unsupported value: supported values: \"rbac.authorization.k8s.io\"",
        ));
    }
    if b["roleRef"]["name"].as_str().unwrap_or("").is_empty() {
        causes.push(cause("required", "roleRef.name", "Required value"));
    }
    for (i, s) in b["subjects"].as_array().into_iter().flatten().enumerate() {
        let k = s["kind"].as_str().unwrap_or("");
        if !matches!(k, "User" | "Group" | "ServiceAccount") {
            causes.push(cause(
                "unsupported",
                &format!("subjects[{i}].kind"),
                format!("Unsupported value: \"{k}\": supported values: \"ServiceAccount\", \"User\", \"Group\""),
            ));
        }
        if s["name"].as_str().unwrap_or("").is_empty() {
            causes.push(cause(
                "required",
                &format!("subjects[{i}].name"),
                "Required value",
            ));
        }
        if k == "ServiceAccount"
            && s["namespace"].as_str().unwrap_or("").is_empty()
            && !kind.namespaced
        {
            causes.push(cause(
                "required",
                &format!("subjects[{i}].namespace"),
                "Required value",
            ));
        }
    }
}

/// A binding's roleRef is immutable.
pub fn check_update(kind: &Kind, name: &str, old: &Value, new: &Value) -> Result<(), ApiError> {
    if old["roleRef"] != new["roleRef"] {
        return Err(ApiError::invalid(
            kind.kind,
            kind.group,
            name,
            vec![Cause {
                reason: "FieldValueInvalid",
                field: "roleRef".into(),
                message: format!("Invalid value: {}: cannot change roleRef", new["roleRef"]),
            }],
        ));
    }
    Ok(())
}

//! API errors, rendered the way kube-apiserver renders them: a `meta/v1`
//! `Status` object with a machine-readable `reason` and the HTTP code, because
//! kubectl and client libraries switch on those, not on the message text.

use http::StatusCode;
use serde_json::{Value, json};

/// kube-apiserver's limit for a request body is 3 MiB; larger is a 413.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// One field-level problem, as in `Status.details.causes`.
#[derive(Debug, Clone)]
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

/// What a 403 about one resource names (boxed: it keeps ApiError small).
#[derive(Debug, Clone)]
pub struct ForbiddenOn {
    pub message: String,
    pub group: String,
    pub resource: String,
    pub name: String,
    pub causes: Vec<Cause>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{0}")]
    Conflict(String),
    /// A conflict on one object (a stale resourceVersion), with details.
    #[error("{message}")]
    ConflictOn {
        message: String,
        group: String,
        resource: String,
        name: String,
    },
    /// Server-side apply conflicts, one cause per field and manager.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Cause> },
    #[error("{} \"{name}\" is invalid: {summary}", qualified(group, kind))]
    Invalid {
        kind: String,
        group: String,
        name: String,
        summary: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// A 403 about one resource (or one object of it), with kube's details.
    #[error("{}", .0.message)]
    ForbiddenOn(Box<ForbiddenOn>),
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Request entity too large: limit is {}", MAX_BODY)]
    TooLarge,
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    NotAcceptable(String),
    /// 429: a request refused for now (an eviction a disruption budget
    /// forbids), with its causes and when to retry.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        causes: Vec<Cause>,
        retry_after_seconds: Option<u64>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        ApiError::NotFound {
            group: group.into(),
            resource: resource.into(),
            name: name.into(),
        }
    }

    pub fn conflict_modified(group: &str, resource: &str, name: &str) -> Self {
        let qualified = qualified(group, resource);
        ApiError::ConflictOn {
            message: format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            group: group.into(),
            resource: resource.into(),
            name: name.into(),
        }
    }

    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let summary = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>()
            .join(", ");
        let summary = if causes.len() > 1 {
            format!("[{summary}]")
        } else {
            summary
        };
        ApiError::Invalid {
            kind: kind.into(),
            group: group.into(),
            name: name.into(),
            summary,
            causes,
        }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict(_)
            | ApiError::ConflictOn { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ForbiddenOn(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict(_)
            | ApiError::ConflictOn { .. }
            | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) | ApiError::ForbiddenOn(_) => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::TooLarge => "RequestEntityTooLarge",
            ApiError::Gone(_) => "Expired",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object kube-apiserver would send for this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::ConflictOn {
                group,
                resource,
                name,
                ..
            } => Some(json!({"name": name, "group": group, "kind": resource})),
            ApiError::Invalid { kind, .. } if kind.is_empty() => Some(json!({})),
            ApiError::NoRoute => Some(json!({})),
            ApiError::Invalid {
                kind,
                group,
                name,
                causes,
                ..
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason,
                    "message": c.message,
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            ApiError::ForbiddenOn(f) => Some(json!({
                "name": f.name,
                "group": f.group,
                "kind": f.resource,
                "causes": f.causes.iter().map(|c| json!({
                    "reason": c.reason,
                    "message": c.message,
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            ApiError::Forbidden(_) => Some(json!({})),
            ApiError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason,
                    "message": c.message,
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            ApiError::TooManyRequests {
                causes,
                retry_after_seconds,
                ..
            } => {
                let mut d = json!({
                    "causes": causes.iter().map(|c| json!({
                        "reason": c.reason,
                        "message": c.message,
                    })).collect::<Vec<_>>(),
                });
                if let Some(secs) = retry_after_seconds {
                    d["retryAfterSeconds"] = json!(secs);
                }
                Some(d)
            }
            _ => None,
        };
        if let Some(mut details) = details {
            // Go's omitempty: no empty group, name or causes.
            if let Some(map) = details.as_object_mut() {
                map.retain(|_, v| {
                    !(v.as_str().is_some_and(str::is_empty)
                        || v.as_array().is_some_and(Vec::is_empty))
                });
            }
            status["details"] = details;
        }
        status
    }

    fn message(&self) -> String {
        match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            } => format!("{} \"{name}\" not found", qualified(group, resource)),
            ApiError::AlreadyExists {
                group,
                resource,
                name,
            } => format!("{} \"{name}\" already exists", qualified(group, resource)),
            ApiError::Invalid { kind, summary, .. } if kind.is_empty() => summary.clone(),
            other => other.to_string(),
        }
    }
}

/// `pods` for the core group, `leases.coordination.k8s.io` otherwise: how
/// kube-apiserver names a resource in messages.
pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

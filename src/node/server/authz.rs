//! What a caller may do on the kubelet API, as the kubelet's authorizer
//! asks the apiserver: the request becomes attributes on the `nodes`
//! resource named after this node (kubelet's NodeAuthorizerAttributesGetter:
//! the verb from the HTTP method, the subresource from the path), checked
//! with a SubjectAccessReview (`authorization.mode: Webhook`) and cached.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::authn::User;
use super::cache::TtlCache;

const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    AlwaysAllow,
    Webhook,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "AlwaysAllow" => Ok(Mode::AlwaysAllow),
            "Webhook" => Ok(Mode::Webhook),
            other => Err(format!(
                "authorization mode {other:?} is not supported: use Webhook or AlwaysAllow"
            )),
        }
    }
}

/// The verb a request is authorized as, from its method (kubelet's
/// mapping; WebSocket GETs to exec/attach are therefore `get`, and the
/// apiserver's own kubelet client has every verb anyway).
pub fn verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    }
}

/// The `nodes` subresources a path is checked against, in order: the
/// fine-grained one first and `proxy` as the fallback, as the kubelet does
/// with KubeletFineGrainedAuthz (on by default since 1.33); the old ones
/// (stats, metrics, log) have no fallback.
pub fn subresources(path: &str) -> &'static [&'static str] {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if under("/stats") {
        &["stats"]
    } else if under("/metrics") {
        &["metrics"]
    } else if under("/logs") {
        &["log"]
    } else if under("/healthz") {
        &["healthz", "proxy"]
    } else if under("/configz") {
        &["configz", "proxy"]
    } else if under("/pods") || under("/runningpods") {
        &["pods", "proxy"]
    } else {
        &["proxy"]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    user: User,
    verb: &'static str,
    subresource: &'static str,
}

pub struct AuthzSettings {
    pub mode: Mode,
    /// authorization.webhook.cacheAuthorizedTTL (kubelet default 5m).
    pub authorized_ttl: Duration,
    /// authorization.webhook.cacheUnauthorizedTTL (kubelet default 30s).
    pub unauthorized_ttl: Duration,
}

pub struct Authorizer {
    settings: AuthzSettings,
    client: kube::Client,
    node_name: String,
    cache: TtlCache<Key, bool>,
}

/// A refusal: the kubelet's 403 text names what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("Forbidden (user={user}, verb={verb}, resource=nodes, subresource={subresource})")]
    Forbidden {
        user: String,
        verb: &'static str,
        subresource: &'static str,
    },
    #[error(
        "Authorization error (user={user}, verb={verb}, resource=nodes, subresource={subresource}): {message}"
    )]
    Review {
        user: String,
        verb: &'static str,
        subresource: &'static str,
        message: String,
    },
}

impl Authorizer {
    pub fn new(settings: AuthzSettings, client: kube::Client, node_name: &str) -> Self {
        Self {
            settings,
            client,
            node_name: node_name.to_string(),
            cache: TtlCache::new(),
        }
    }

    pub async fn authorize(
        &self,
        user: &User,
        method: &http::Method,
        path: &str,
    ) -> Result<(), AuthzError> {
        if self.settings.mode == Mode::AlwaysAllow {
            return Ok(());
        }
        let verb = verb(method);
        let subs = subresources(path);
        for sub in subs {
            let allowed =
                self.allowed(user, verb, sub)
                    .await
                    .map_err(|message| AuthzError::Review {
                        user: user.name.clone(),
                        verb,
                        subresource: sub,
                        message,
                    })?;
            if allowed {
                return Ok(());
            }
        }
        Err(AuthzError::Forbidden {
            user: user.name.clone(),
            verb,
            subresource: subs[0],
        })
    }

    async fn allowed(
        &self,
        user: &User,
        verb: &'static str,
        subresource: &'static str,
    ) -> Result<bool, String> {
        let key = Key {
            user: user.clone(),
            verb,
            subresource,
        };
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: Some(user.uid.clone()).filter(|u| !u.is_empty()),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.iter().cloned().collect())
                    .filter(|e: &std::collections::BTreeMap<String, Vec<String>>| !e.is_empty()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_string()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(subresource.to_string()),
                    name: Some(self.node_name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        let ttl = if allowed {
            self.settings.authorized_ttl
        } else {
            self.settings.unauthorized_ttl
        };
        self.cache.put(key, allowed, ttl);
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_kubelets_node_subresources() {
        assert_eq!(subresources("/stats/summary"), ["stats"]);
        assert_eq!(subresources("/stats"), ["stats"]);
        assert_eq!(subresources("/metrics/cadvisor"), ["metrics"]);
        assert_eq!(subresources("/metrics"), ["metrics"]);
        assert_eq!(subresources("/logs/messages"), ["log"]);
        assert_eq!(subresources("/healthz/ping"), ["healthz", "proxy"]);
        assert_eq!(subresources("/configz"), ["configz", "proxy"]);
        assert_eq!(subresources("/pods"), ["pods", "proxy"]);
        assert_eq!(subresources("/runningpods/"), ["pods", "proxy"]);
        assert_eq!(subresources("/containerLogs/ns/p/c"), ["proxy"]);
        assert_eq!(subresources("/exec/ns/p/c"), ["proxy"]);
        // A prefix is a path segment, not a string prefix.
        assert_eq!(subresources("/statsx"), ["proxy"]);
        assert_eq!(subresources("/metricsfoo"), ["proxy"]);
    }

    #[test]
    fn verbs_follow_the_method() {
        assert_eq!(verb(&http::Method::GET), "get");
        assert_eq!(verb(&http::Method::HEAD), "get");
        assert_eq!(verb(&http::Method::POST), "create");
        assert_eq!(verb(&http::Method::PUT), "update");
        assert_eq!(verb(&http::Method::PATCH), "patch");
        assert_eq!(verb(&http::Method::DELETE), "delete");
    }
}

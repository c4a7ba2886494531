//! Who is calling the kubelet API, as the kubelet's authenticator decides:
//! a client certificate verified against `--client-ca-file` (CN the user,
//! each O a group), else a bearer token checked with a TokenReview against
//! the apiserver (`authentication.webhook.enabled`), else anonymous when
//! `--anonymous-auth` allows it; otherwise the request is a 401.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

use super::cache::TtlCache;

/// How long a TokenReview may take.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: Vec<(String, Vec<String>)>,
}

impl User {
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: vec![],
        }
    }
}

/// The user a verified client certificate names.
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let subject = crate::x509::subject(der)?;
    let mut groups = subject.groups;
    groups.push("system:authenticated".into());
    Some(User {
        name: subject.user,
        uid: String::new(),
        groups,
        extra: vec![],
    })
}

pub struct AuthnSettings {
    pub anonymous: bool,
    pub webhook: bool,
    /// `authentication.webhook.cacheTTL` (kubelet default 2m).
    pub webhook_ttl: Duration,
}

pub struct Authenticator {
    settings: AuthnSettings,
    client: kube::Client,
    cache: TtlCache<String, Option<User>>,
}

/// Why a request is not authenticated (a 401, or a 500 when the review
/// itself failed, as the kubelet answers).
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("Unauthorized")]
    Unauthorized,
    #[error("token review: {0}")]
    Review(String),
}

impl Authenticator {
    pub fn new(settings: AuthnSettings, client: kube::Client) -> Self {
        Self {
            settings,
            client,
            cache: TtlCache::new(),
        }
    }

    /// `cert_user` is the verified certificate's user (rustls checked the
    /// chain against the client CA), `authorization` the header.
    pub async fn authenticate(
        &self,
        cert_user: Option<User>,
        authorization: Option<&str>,
    ) -> Result<User, AuthnError> {
        if let Some(u) = cert_user {
            return Ok(u);
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(token) = token
            && self.settings.webhook
        {
            return self.review(token).await?.ok_or(AuthnError::Unauthorized);
        }
        if self.settings.anonymous {
            return Ok(User::anonymous());
        }
        Err(AuthnError::Unauthorized)
    }

    async fn review(&self, token: &str) -> Result<Option<User>, AuthnError> {
        if let Some(hit) = self.cache.get(&token.to_string()) {
            return Ok(hit);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| AuthnError::Review("timed out".into()))?
                .map_err(|e| AuthnError::Review(e.to_string()))?;
        let status = answer.status.unwrap_or_default();
        let user = if status.authenticated == Some(true) {
            let info = status.user.unwrap_or_default();
            Some(User {
                name: info.username.unwrap_or_default(),
                uid: info.uid.unwrap_or_default(),
                groups: info.groups.unwrap_or_default(),
                extra: info.extra.unwrap_or_default().into_iter().collect(),
            })
        } else {
            None
        };
        self.cache
            .put(token.to_string(), user.clone(), self.settings.webhook_ttl);
        Ok(user)
    }
}

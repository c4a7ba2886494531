//! Service-account tokens for projected volumes, through the TokenRequest
//! API (`serviceaccounts/<name>/token`), bound to the pod. Cached per pod,
//! audience and lifetime, and renewed once 80% of the token's life has
//! passed (or it is older than 24 h), as kubelet's token manager does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};

use super::payload::TokenSource;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
struct Cached {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

/// Whether a token issued at `issued`, expiring at `expires`, is due for
/// renewal at `now`.
pub fn needs_refresh(issued: SystemTime, expires: SystemTime, now: SystemTime) -> bool {
    if now >= expires {
        return true;
    }
    let life = expires.duration_since(issued).unwrap_or_default();
    let age = now.duration_since(issued).unwrap_or_default();
    age >= life.mul_f64(0.8) || age > MAX_AGE
}

type Key = (String, String, String, i64);

pub struct TokenManager {
    client: Client,
    cache: Mutex<HashMap<Key, Cached>>,
}

impl TokenManager {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets the pod's tokens (it is gone).
    pub fn forget(&self, uid: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|k, _| k.0 != uid);
        }
    }

    /// When the next of the pod's tokens is due for renewal.
    pub fn next_refresh(&self, uid: &str) -> Option<Duration> {
        let now = SystemTime::now();
        let c = self.cache.lock().ok()?;
        c.iter()
            .filter(|(k, _)| k.0 == uid)
            .map(|(_, v)| {
                let life = v.expires.duration_since(v.issued).unwrap_or_default();
                let due = v.issued + life.mul_f64(0.8).min(MAX_AGE);
                due.duration_since(now).unwrap_or_default()
            })
            .min()
    }
}

#[async_trait::async_trait]
impl TokenSource for TokenManager {
    async fn token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String, String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = (
            uid.clone(),
            sa.clone(),
            audience.unwrap_or("").to_string(),
            expiration_seconds,
        );
        let now = SystemTime::now();
        if let Some(c) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned())
            && !needs_refresh(c.issued, c.expires, now)
        {
            return Ok(c.token);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: Some(uid),
                }),
            },
            ..Default::default()
        };
        let params = PostParams::default();
        let call = api.create_token_request(&sa, &params, &request);
        let got = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| {
                format!("requesting a token for serviceaccount {namespace}/{sa} timed out")
            })?
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        let status = got
            .status
            .ok_or_else(|| "failed to fetch token: the response has no status".to_string())?;
        let expires: SystemTime = status.expiration_timestamp.0.into();
        let cached = Cached {
            token: status.token.clone(),
            issued: now,
            expires,
        };
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, cached);
        }
        Ok(status.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewed_at_eighty_percent_of_life() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let exp = t0 + Duration::from_secs(1000);
        assert!(!needs_refresh(t0, exp, t0));
        assert!(!needs_refresh(t0, exp, t0 + Duration::from_secs(799)));
        assert!(needs_refresh(t0, exp, t0 + Duration::from_secs(800)));
        assert!(needs_refresh(t0, exp, exp + Duration::from_secs(1)));
        let long = t0 + Duration::from_secs(365 * 24 * 3600);
        assert!(needs_refresh(
            t0,
            long,
            t0 + MAX_AGE + Duration::from_secs(1)
        ));
    }
}

//! The streaming server's request cache, as the kubelet's: a CRI Exec,
//! Attach or PortForward call leaves its request here under a random
//! single-use token, which the client redeems at the streaming server
//! within a short time.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a token stays valid (the kubelet's cacheTTL).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Unredeemed requests held at most (the kubelet's maxInFlight).
pub const MAX_IN_FLIGHT: usize = 1000;

#[derive(Debug, thiserror::Error)]
#[error("too many pending streaming requests ({MAX_IN_FLIGHT}); try again later")]
pub struct CacheFull;

pub struct TokenCache<T> {
    entries: Mutex<HashMap<String, (Instant, T)>>,
    ttl: Duration,
}

impl<T> TokenCache<T> {
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Stores `request`; returns its token (128 random bits, hex).
    pub fn insert(&self, request: T) -> Result<String, CacheFull> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        entries.retain(|_, (expires, _)| *expires > now);
        if entries.len() >= MAX_IN_FLIGHT {
            return Err(CacheFull);
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        entries.insert(token.clone(), (now + self.ttl, request));
        Ok(token)
    }

    /// The request under `token`, once: a token is spent when redeemed.
    pub fn take(&self, token: &str) -> Option<T> {
        let (expires, request) = self.entries.lock().remove(token)?;
        (expires > Instant::now()).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_redeemed_once() {
        let cache = TokenCache::new(TOKEN_TTL);
        let token = cache.insert(7).unwrap();
        assert_eq!(cache.take(&token), Some(7));
        assert_eq!(cache.take(&token), None);
        assert_eq!(cache.take("nonsense"), None);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let cache = TokenCache::new(Duration::ZERO);
        let token = cache.insert(1).unwrap();
        assert_eq!(cache.take(&token), None);
    }
}

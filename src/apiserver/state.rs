//! What every request shares (the store, credentials, the token issuer,
//! TLS to kubelets) and the way to run blocking store work off the async
//! threads.

use std::sync::Arc;
use std::time::Duration;

use crate::apiserver::auth;
use crate::apiserver::error::ApiError;
use crate::apiserver::sa_token;
use crate::apiserver::store::Store;

pub struct State {
    pub store: Store,
    pub tokens: auth::Tokens,
    pub server_address: String,
    pub ca_pem: String,
    pub bookmark_interval: Duration,
    pub sa_issuer: sa_token::Issuer,
    /// TLS to kubelets, for pods/log, exec, attach and portforward.
    pub kubelet_tls: Arc<rustls::ClientConfig>,
}

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

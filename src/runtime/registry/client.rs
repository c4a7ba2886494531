//! The OCI distribution protocol, pull side: manifests and blobs over HTTP(S),
//! with the auth handshake done once per repository and host.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

use super::auth::{Challenge, Credentials, parse_challenge};
use super::hosts::RegistryHost;

/// Manifest media types we accept, most specific first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Manifests are small; a larger body is refused rather than buffered.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: unauthorized: {message}")]
    Unauthorized { url: String, message: String },
    #[error("{origin}: registry unreachable: {message}")]
    Unreachable { origin: String, message: String },
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
    #[error("{url}: no progress for {seconds}s")]
    Stalled { url: String, seconds: u64 },
}

/// The shared HTTP side: one reqwest client per TLS setting, reused across pulls.
pub struct RegistryClient {
    clients: Mutex<HashMap<(bool, Vec<PathBuf>), reqwest::Client>>,
    connect_timeout: Duration,
    progress_timeout: Duration,
}

impl RegistryClient {
    pub fn new(connect_timeout: Duration, progress_timeout: Duration) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            connect_timeout,
            progress_timeout,
        }
    }

    pub fn progress_timeout(&self) -> Duration {
        self.progress_timeout
    }

    fn http_for(&self, host: &RegistryHost) -> Result<reqwest::Client, RegistryError> {
        let key = (host.skip_verify, host.ca_files.clone());
        let mut clients = self.clients.lock();
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        // No read timeout here: callers time each step themselves, so a stall
        // is reported as one rather than as a body decoding error.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("deckhand/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(host.skip_verify);
        for ca in &host.ca_files {
            let pem = std::fs::read(ca).map_err(|e| RegistryError::Protocol {
                url: host.origin.clone(),
                message: format!("reading CA {}: {e}", ca.display()),
            })?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|e| RegistryError::Protocol {
                    url: host.origin.clone(),
                    message: format!("CA {}: {e}", ca.display()),
                })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| RegistryError::Protocol {
            url: host.origin.clone(),
            message: format!("building HTTP client: {e}"),
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// A session against one host for one repository.
    pub fn session(
        &self,
        host: RegistryHost,
        repository: &str,
        credentials: Credentials,
    ) -> Result<RepositorySession, RegistryError> {
        Ok(RepositorySession {
            http: self.http_for(&host)?,
            host,
            repository: repository.to_string(),
            credentials,
            authorization: None,
            progress_timeout: self.progress_timeout,
        })
    }
}

/// A fetched manifest: its bytes and the media type the registry declared.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub media_type: String,
}

#[derive(Clone)]
pub struct RepositorySession {
    http: reqwest::Client,
    pub host: RegistryHost,
    repository: String,
    credentials: Credentials,
    /// The `Authorization` value earned from the last challenge.
    authorization: Option<String>,
    progress_timeout: Duration,
}

impl RepositorySession {
    pub async fn manifest(&mut self, reference: &str) -> Result<FetchedManifest, RegistryError> {
        let url = self.host.url(&self.repository, "manifests", reference);
        let response = self.get(&url, Some(MANIFEST_ACCEPT)).await?;
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        if let Some(len) = response.content_length()
            && len as usize > MAX_MANIFEST_BYTES
        {
            return Err(RegistryError::Protocol {
                url,
                message: format!(
                    "manifest of {len} bytes is over the {MAX_MANIFEST_BYTES} byte limit"
                ),
            });
        }
        let bytes = self.read_small_body(&url, response).await?;
        Ok(FetchedManifest { bytes, media_type })
    }

    /// Starts a blob download; the caller streams the body.
    pub async fn blob(
        &mut self,
        digest: &str,
    ) -> Result<(String, reqwest::Response), RegistryError> {
        let url = self.host.url(&self.repository, "blobs", digest);
        let response = self.get(&url, None).await?;
        Ok((url, response))
    }

    /// Reads a small body (manifest, config) with a size cap and a stall timeout.
    pub async fn read_small_body(
        &self,
        url: &str,
        mut response: reqwest::Response,
    ) -> Result<Bytes, RegistryError> {
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout(self.progress_timeout, response.chunk())
                .await
                .map_err(|_| RegistryError::Stalled {
                    url: url.to_string(),
                    seconds: self.progress_timeout.as_secs(),
                })?
                .map_err(|e| self.transport_error(url, e))?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(RegistryError::Protocol {
                    url: url.to_string(),
                    message: format!("body is over the {MAX_MANIFEST_BYTES} byte limit"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }

    /// GET with the auth handshake: on a 401 challenge, earn a credential and retry once.
    async fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut challenged = false;
        loop {
            let mut request = self.http.get(url);
            for (name, value) in &self.host.headers {
                request = request.header(name, value);
            }
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(auth) = self
                .authorization
                .as_ref()
                .or(self.static_authorization().as_ref())
            {
                request = request.header(AUTHORIZATION, auth);
            }
            let response = tokio::time::timeout(self.progress_timeout, request.send())
                .await
                .map_err(|_| RegistryError::Stalled {
                    url: url.to_string(),
                    seconds: self.progress_timeout.as_secs(),
                })?
                .map_err(|e| self.transport_error(url, e))?;
            match response.status() {
                s if s.is_success() => return Ok(response),
                StatusCode::UNAUTHORIZED if !challenged => {
                    challenged = true;
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge);
                    self.authorization = Some(self.answer(url, challenge).await?);
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    let status = response.status();
                    return Err(RegistryError::Unauthorized {
                        url: url.to_string(),
                        message: format!("{status} with {:?} credentials", self.credentials),
                    });
                }
                StatusCode::NOT_FOUND => {
                    return Err(RegistryError::NotFound {
                        url: url.to_string(),
                    });
                }
                s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                    return Err(RegistryError::Unreachable {
                        origin: self.host.origin.clone(),
                        message: format!("{url}: HTTP {s}"),
                    });
                }
                s => {
                    return Err(RegistryError::Protocol {
                        url: url.to_string(),
                        message: format!("unexpected HTTP {s}"),
                    });
                }
            }
        }
    }

    fn static_authorization(&self) -> Option<String> {
        match &self.credentials {
            Credentials::RegistryToken(token) => Some(format!("Bearer {token}")),
            _ => None,
        }
    }

    /// Turns a challenge into an `Authorization` header value.
    async fn answer(
        &self,
        url: &str,
        challenge: Option<Challenge>,
    ) -> Result<String, RegistryError> {
        let unauthorized = |message: String| RegistryError::Unauthorized {
            url: url.to_string(),
            message,
        };
        match challenge {
            None => Err(unauthorized(
                "401 without a usable WWW-Authenticate challenge".into(),
            )),
            Some(Challenge::Basic) => self.credentials.basic_header().ok_or_else(|| {
                unauthorized("registry asks for basic auth and no credentials were given".into())
            }),
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let token = self.fetch_token(&realm, service.as_deref(), &scope).await?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let mut params: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(service) = service {
            params.push(("service", service));
        }
        let request = match &self.credentials {
            Credentials::IdentityToken { token, .. } => {
                let mut form = params.clone();
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "deckhand"),
                ]);
                self.http.post(realm).form(&form)
            }
            creds => {
                let mut request = self.http.get(realm).query(&params);
                if let Some(basic) = creds.basic_header() {
                    request = request.header(AUTHORIZATION, basic);
                }
                request
            }
        };
        let response = tokio::time::timeout(self.progress_timeout, request.send())
            .await
            .map_err(|_| RegistryError::Stalled {
                url: realm.to_string(),
                seconds: self.progress_timeout.as_secs(),
            })?
            .map_err(|e| self.transport_error(realm, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Unauthorized {
                url: realm.to_string(),
                message: format!(
                    "token server answered HTTP {status} for {:?} credentials",
                    self.credentials
                ),
            });
        }
        let body = self.read_small_body(realm, response).await?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                url: realm.to_string(),
                message: format!("token response is not JSON: {e}"),
            })?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Protocol {
                url: realm.to_string(),
                message: "token response has no token".into(),
            })
    }
}

impl RepositorySession {
    fn transport_error(&self, url: &str, e: reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            return RegistryError::Stalled {
                url: url.to_string(),
                seconds: self.progress_timeout.as_secs(),
            };
        }
        if e.is_connect() {
            return RegistryError::Unreachable {
                origin: self.host.origin.clone(),
                message: error_chain(&e),
            };
        }
        RegistryError::Protocol {
            url: url.to_string(),
            message: error_chain(&e),
        }
    }
}

/// reqwest's Display hides the cause ("error sending request"); show it all.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

//! The kubelet API (`--port`, default 10250) over HTTPS, as the kubelet
//! serves it to the apiserver, kubectl (through the apiserver's proxy),
//! metrics-server and Prometheus:
//!
//! - `tls`: the serving certificate (given, or self-signed in --cert-dir)
//!   and client-certificate verification against --client-ca-file;
//! - `authn` / `authz` (+ `cache`): who calls (x509, TokenReview,
//!   anonymous) and whether they may (SubjectAccessReview on nodes/...);
//! - `logs` (the CRI log reader) and `containers` (/containerLogs, finding
//!   a pod's containers in the runtime);
//! - `streaming`: /exec, /attach, /portForward proxied to the runtime's
//!   streaming server, /run (ExecSync);
//! - `stats`: /stats/summary;
//! - `metrics`: /metrics, /metrics/resource, /metrics/cadvisor, /metrics/probes;
//! - `info`: /pods, /runningpods/, /healthz, /configz, /spec/.

pub mod authn;
pub mod authz;
pub mod cache;
pub mod containers;
pub mod info;
pub mod logs;
pub mod metrics;
pub mod stats;
pub mod streaming;
pub mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::cri::api::RuntimeService;
use authn::{Authenticator, AuthnSettings, User};
use authz::{Authorizer, AuthzSettings, Mode};

pub type Body = BoxBody<Bytes, std::io::Error>;

/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 512;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The kubelet server's settings (flags over KubeletConfiguration).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub address: IpAddr,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// Where the self-signed certificate is kept (default <root-dir>/pki).
    pub cert_dir: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub anonymous_auth: bool,
    pub webhook_authn: bool,
    pub webhook_authn_ttl: Duration,
    pub authorization_mode: Mode,
    pub authorized_ttl: Duration,
    pub unauthorized_ttl: Duration,
}

impl Default for ServerConfig {
    /// Secure defaults, as kubeadm configures every kubelet: no anonymous
    /// access, tokens checked by TokenReview, Webhook authorization.
    fn default() -> Self {
        Self {
            address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            tls_cert_file: None,
            tls_private_key_file: None,
            cert_dir: None,
            client_ca_file: None,
            anonymous_auth: false,
            webhook_authn: true,
            webhook_authn_ttl: Duration::from_secs(120),
            authorization_mode: Mode::Webhook,
            authorized_ttl: Duration::from_secs(300),
            unauthorized_ttl: Duration::from_secs(30),
        }
    }
}

/// What the handlers share.
pub struct Server {
    pub node_name: String,
    pub runtime: Arc<dyn RuntimeService>,
    pub client: kube::Client,
    pub config: Arc<crate::node::config::NodeConfig>,
    authn: Authenticator,
    authz: Authorizer,
    /// Log streams and proxied sessions at once (each holds a task).
    pub streams: Arc<Semaphore>,
    pub node_cpu: stats::CpuSampler,
}

pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut msg: String = message.into();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    let mut r = Response::new(
        Full::new(Bytes::from(msg))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The query as pairs, decoded.
pub fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

impl Server {
    pub fn new(
        config: Arc<crate::node::config::NodeConfig>,
        client: kube::Client,
        runtime: Arc<dyn RuntimeService>,
    ) -> Self {
        let s = &config.server;
        let authn = Authenticator::new(
            AuthnSettings {
                anonymous: s.anonymous_auth,
                webhook: s.webhook_authn,
                webhook_ttl: s.webhook_authn_ttl,
            },
            client.clone(),
        );
        let authz = Authorizer::new(
            AuthzSettings {
                mode: s.authorization_mode,
                authorized_ttl: s.authorized_ttl,
                unauthorized_ttl: s.unauthorized_ttl,
            },
            client.clone(),
            &config.node_name,
        );
        Self {
            node_name: config.node_name.clone(),
            runtime,
            client,
            config,
            authn,
            authz,
            streams: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            node_cpu: stats::CpuSampler::default(),
        }
    }

    async fn handle(
        self: Arc<Self>,
        cert_user: Option<User>,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let auth_header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let user = match self
            .authn
            .authenticate(cert_user, auth_header.as_deref())
            .await
        {
            Ok(u) => u,
            Err(authn::AuthnError::Unauthorized) => {
                return text(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
            Err(e) => {
                tracing::warn!(error = %e, "kubelet API authentication failed");
                return text(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
        };
        let path = req.uri().path().to_string();
        if let Err(e) = self.authz.authorize(&user, req.method(), &path).await {
            let status = match e {
                authz::AuthzError::Forbidden { .. } => StatusCode::FORBIDDEN,
                authz::AuthzError::Review { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::debug!(user = %user.name, %path, error = %e, "kubelet API refused");
            return text(status, e.to_string());
        }
        self.route(req, &path).await
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>, path: &str) -> Response<Body> {
        let segments: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method().clone();
        match seg.as_slice() {
            ["healthz"] | ["healthz", "ping"] | ["healthz", "syncloop"] | ["healthz", "log"] => {
                text(StatusCode::OK, "ok")
            }
            ["pods"] | ["pods", ""] => info::pods(&self).await,
            ["runningpods"] | ["runningpods", ""] => info::running_pods(&self).await,
            ["configz"] => info::configz(&self),
            ["spec"] | ["spec", ""] => info::spec(&self),
            ["stats", "summary"] => stats::summary(&self).await,
            ["metrics"] => metrics::handle(&self, None).await,
            ["metrics", sub] => metrics::handle(&self, Some(sub)).await,
            ["containerLogs", ns, pod, container] => {
                containers::container_logs(self.clone(), &req, ns, pod, container).await
            }
            [
                verb @ ("exec" | "attach" | "portForward" | "run"),
                rest @ ..,
            ] => {
                let verb = verb.to_string();
                let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                streaming::handle(self.clone(), req, &verb, &rest).await
            }
            _ => {
                let _ = method;
                text(StatusCode::NOT_FOUND, "404 page not found")
            }
        }
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Binds the kubelet port; an error here stops the agent (a kubelet that
/// cannot serve its API is not usable).
pub async fn bind(
    config: &crate::node::config::NodeConfig,
) -> anyhow::Result<(TcpListener, rustls::ServerConfig)> {
    use anyhow::Context;
    let s = &config.server;
    let addr = SocketAddr::new(s.address, config.kubelet_port);
    let settings = tls::TlsSettings {
        cert_file: s.tls_cert_file.clone(),
        key_file: s.tls_private_key_file.clone(),
        cert_dir: s
            .cert_dir
            .clone()
            .unwrap_or_else(|| config.root_dir.join("pki")),
        client_ca_file: s.client_ca_file.clone(),
    };
    if settings.cert_file.is_some() != settings.key_file.is_some() {
        anyhow::bail!("--tls-cert-file and --tls-private-key-file go together");
    }
    if s.client_ca_file.is_none() {
        tracing::warn!(
            "no --client-ca-file: client certificates are not accepted on the kubelet API"
        );
    }
    let names = tls::serving_names(&config.node_name, &config.node_ips);
    let tls = tls::server_config(&settings, &names).context("the kubelet API's TLS")?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (the kubelet API)"))?;
    Ok((listener, tls))
}

/// Serves until `stop` turns true.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    if let Ok(a) = listener.local_addr() {
        tracing::info!(address = %a, "kubelet API listening");
    }
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!(error = %err, "kubelet API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "kubelet API TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| authn::user_from_cert(c));
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let user = cert_user.clone();
                async move { Ok::<_, Infallible>(server.handle(user, req).await) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, error = %err, "kubelet API connection ended");
            }
        });
    }
}

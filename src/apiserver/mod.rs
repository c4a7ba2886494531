//! The bundled Kubernetes API server: HTTPS with client-certificate and
//! bearer-token authentication, REST + watch over an embedded crash-safe
//! store, discovery, OpenAPI (enough for kubectl) and server-side tables.
//!
//! Modules, one concern each, in layers (a module uses only those below
//! it; no cycles):
//! - `error` (Status), `store` (redb + revisions + watch fan-out), `meta`
//!   (timestamps, names, marking for deletion), `patch`, `protobuf`,
//!   `selectors`, `resources` (the kinds' table), `pki`, `auth` (authn and
//!   the static authorizers), `rbac`, `rbac_roles`, `sa_token` (token issuer).
//! - `kinds` (every per-kind rule: defaults, validation, service IPs, pod
//!   immutability and grace, namespace termination), `table`, `table_cells`.
//! - `state` (what requests share), `context` (a request's target and
//!   context, replies).
//! - `verbs` (read, create, update, patch, delete, bind, decode), `watch`,
//!   `token_request`, `reviews`, `kubelet_proxy`, `discovery`.
//! - `http` (authenticate, route, authorize, negotiate).

pub mod auth;
pub mod client_certs;
pub mod context;
pub mod default_tolerations;
pub mod discovery;
pub mod error;
pub mod http;
pub mod kinds;
pub mod kubelet_proxy;
pub mod list_query;
pub mod managed_fields;
pub mod merge_keys;
pub mod meta;
pub mod metrics_api;
pub mod partial;
pub mod patch;
pub mod pki;
pub mod protobuf;
pub mod rbac;
pub mod rbac_roles;
pub mod resources;
pub mod reviews;
pub mod sa_admission;
pub mod sa_token;
pub mod selectors;
pub mod state;
pub mod store;
pub mod table;
pub mod table_cells;
pub mod table_workloads;
pub mod token_request;
pub mod verbs;
pub mod watch;
pub mod watch_buffer;
pub mod watch_initial;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::apiserver::error::ApiError;
use crate::apiserver::store::{Store, object_key};

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub write_kubeconfig: Option<PathBuf>,
    pub token_auth_file: Option<PathBuf>,
    /// Kubeconfigs to write for node identities: (node name, path).
    pub node_kubeconfigs: Vec<(String, PathBuf)>,
    /// How often watches with allowWatchBookmarks get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// How long core/v1 Events are kept (kube-apiserver's --event-ttl).
    pub event_ttl: Duration,
    /// The `iss` of service-account tokens, and the API audience.
    pub service_account_issuer: String,
    /// CA bundle to verify kubelets' serving certificates with; None: not
    /// verified (kube-apiserver's default).
    pub kubelet_certificate_authority: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("invalid node name {0:?}: must be a DNS-1123 subdomain")]
    NodeName(String),
    #[error("{0}")]
    Key(String),
    #[error("bootstrap: {0}")]
    Bootstrap(ApiError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

pub use state::State;

/// Create what kube-apiserver and its controllers create on a fresh
/// cluster: the four system namespaces (each with its default
/// ServiceAccount and root CA ConfigMap) and the `kubernetes` Service.
fn bootstrap(state: &State, ip: IpAddr, port: u16) -> Result<(), ApiError> {
    state.store.write(|txn| {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let key = kinds::namespace::namespace_key(ns);
            if txn.get(&key)?.is_none() {
                let mut object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                    "name": ns, "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": meta::now_rfc3339()}});
                kinds::apply_defaults(resources::namespaces(), &mut object);
                txn.put(&key, object)?;
            }
            kinds::namespace::side_effects(txn, ns, &state.ca_pem)?;
        }
        rbac_roles::bootstrap(txn, &meta::now_rfc3339())?;
        let key = object_key("", "services", "default", "kubernetes");
        let existing = txn.get(&key)?;
        if let Some(mut svc) = existing.clone()
            && svc["spec"]["ports"][0]["targetPort"] != json!(port)
            && let Some(first) = svc
                .pointer_mut("/spec/ports/0")
                .and_then(Value::as_object_mut)
        {
            // Listening on another port than last time.
            first.insert("targetPort".into(), json!(port));
            txn.put(&key, svc)?;
        }
        if existing.is_none() {
            txn.put(
                &key,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {
                    "name": "kubernetes", "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                    "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": meta::now_rfc3339()},
                    "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                        "internalTrafficPolicy": "Cluster",
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}),
            )?;
        }
        // Where the `kubernetes` Service leads: this server, as of this start.
        let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {
            "name": "kubernetes", "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": ip.to_string()}],
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {
            "name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes",
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
            "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
        for (group, resource, mut desired, field) in [
            ("", "endpoints", endpoints, "subsets"),
            ("discovery.k8s.io", "endpointslices", slice, "endpoints"),
        ] {
            let key = object_key(group, resource, "default", "kubernetes");
            match txn.get(&key)? {
                Some(old) if old[field] == desired[field] && old["ports"] == desired["ports"] => {}
                old => {
                    let meta = &mut desired["metadata"];
                    match old {
                        Some(old) => {
                            meta["uid"] = old["metadata"]["uid"].clone();
                            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                        }
                        None => {
                            meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
                            meta["creationTimestamp"] = json!(meta::now_rfc3339());
                        }
                    }
                    txn.put(&key, desired)?;
                }
            }
        }
        Ok(())
    })
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Serve until the task is dropped or an unrecoverable error occurs.
pub async fn run(config: Config) -> Result<(), ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(io(config.data_dir.display().to_string()))?;
    let pki = pki::Pki::load_or_create(&config.data_dir.join("pki"))?;
    let tokens = match &config.token_auth_file {
        Some(path) => auth::Tokens::load(path)?,
        None => auth::Tokens::default(),
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io(format!("listen on {}", config.listen)))?;
    let local = listener.local_addr().map_err(io("local address"))?;
    // Clients connect to the loopback address when we listen on all.
    let connect_ip = if local.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        local.ip()
    };
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        connect_ip.to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        "10.96.0.1".into(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim().to_lowercase();
        if !host.is_empty() {
            sans.push(host);
        }
    }
    sans.dedup();
    let (cert, key) = pki.serving(&sans)?;
    let (tls, client_certs) = pki.server_config(&cert, &key)?;
    let tls = Arc::new(tls);

    let store = Store::open(&config.data_dir.join("store.redb"))?;
    let server_address = SocketAddr::new(connect_ip, local.port()).to_string();
    let sa_issuer = sa_token::Issuer::new(
        &pki.service_account_key()?,
        &config.service_account_issuer,
        &format!("https://{server_address}/openid/v1/jwks"),
    )
    .map_err(ServeError::Key)?;
    let kubelet_ca = match &config.kubelet_certificate_authority {
        Some(path) => Some(std::fs::read_to_string(path).map_err(io(path.display().to_string()))?),
        None => None,
    };
    let kubelet_tls = Arc::new(pki.kubelet_client_config(kubelet_ca.as_deref())?);
    let state = Arc::new(State {
        kubelet_tls,
        sa_issuer,
        store,
        tokens,
        server_address: server_address.clone(),
        ca_pem: pki.ca_pem.clone(),
        bookmark_interval: config.bookmark_interval,
    });
    bootstrap(&state, connect_ip, local.port()).map_err(ServeError::Bootstrap)?;

    if let Some(path) = &config.write_kubeconfig {
        let (cert, key) = pki.admin()?;
        let url = format!("https://{server_address}");
        pki::write_file(path, &pki::kubeconfig(&url, &pki.ca_pem, &cert, &key), true)?;
        tracing::info!(path = %path.display(), "wrote admin kubeconfig");
    }
    for (name, path) in &config.node_kubeconfigs {
        // The name becomes a file name in the PKI dir: no path tricks.
        if !resources::is_dns_subdomain(name) {
            return Err(ServeError::NodeName(name.clone()));
        }
        let (cert, key) = pki.node(name)?;
        let url = format!("https://{server_address}");
        pki::write_file(path, &pki::kubeconfig(&url, &pki.ca_pem, &cert, &key), true)?;
        tracing::info!(node = %name, path = %path.display(), "wrote node kubeconfig");
    }
    tracing::info!(address = %local, "apiserver listening");

    tokio::spawn(expire_events(Arc::clone(&state), config.event_ttl));

    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let client_certs = Arc::clone(&client_certs);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // A certificate presented but not trusted is a 401 (kube's x509
            // authenticator fails the request), not an anonymous one: a
            // user with no name says so to `http::handle`.
            let cert_user = match tls.get_ref().1.peer_certificates() {
                None => None,
                Some(certs) if !client_certs.trusted(certs) => Some(auth::User {
                    name: String::new(),
                    uid: String::new(),
                    groups: Vec::new(),
                }),
                Some(certs) => certs.first().and_then(|c| auth::user_from_cert(c)),
            };
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                let user = cert_user.clone();
                async move { Ok::<_, Infallible>(http::handle(state, user, req).await) }
            });
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // A client that never finishes its request headers must not
            // hold a connection forever.
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            // With upgrades: exec, attach and port-forward switch protocols.
            if let Err(err) = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %err, "connection ended");
            }
        });
    }
}

/// Events (core/v1 and events.k8s.io/v1) expire, as with etcd leases in kube-apiserver: without this a
/// node's event stream would grow the store forever. Sweeps once a minute
/// (or per TTL if shorter) by creation time.
async fn expire_events(state: Arc<State>, ttl: Duration) {
    let mut tick = tokio::time::interval(ttl.min(Duration::from_secs(60)));
    loop {
        tick.tick().await;
        let state = Arc::clone(&state);
        let swept = tokio::task::spawn_blocking(move || {
            let cutoff = std::time::SystemTime::now() - ttl;
            let mut events = Vec::new();
            for group in ["", "events.k8s.io"] {
                let prefix = store::collection_prefix(group, "events");
                events.extend(state.store.list(&prefix, None, usize::MAX)?.1);
            }
            let expired: Vec<String> = events
                .into_iter()
                .filter(|(_, e)| {
                    e["metadata"]["creationTimestamp"]
                        .as_str()
                        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                        .is_some_and(|t| t < cutoff)
                })
                .map(|(k, _)| k)
                .collect();
            let n = expired.len();
            if n > 0 {
                state.store.write(|txn| {
                    for key in &expired {
                        txn.delete(key)?;
                    }
                    Ok(())
                })?;
            }
            Ok::<usize, ApiError>(n)
        })
        .await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(expired = n, "expired events"),
            Ok(Err(err)) => tracing::warn!(error = %err, "expiring events failed"),
            Err(err) => tracing::warn!(error = %err, "event expiry task failed"),
        }
    }
}

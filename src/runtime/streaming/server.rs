//! The streaming server `deckhand cri` runs beside its CRI socket, as the
//! kubelet's (and containerd's CRI plugin's) `streaming.Server`: the CRI
//! Exec, Attach and PortForward calls return a URL on it,
//! `http://<addr>/{exec,attach,portforward}/<token>`, which the client
//! upgrades to SPDY/3.1 or to a WebSocket.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::portforward::{self, Dialer};
use super::remotecommand::{self, Options, Session};
use super::spdy;
use super::tokens::{TOKEN_TTL, TokenCache};
use crate::cri::api::v1 as cri;
use crate::runtime::container::{ContainerError, ContainerManager};
use crate::runtime::sandbox::SandboxManager;
use crate::sys::ns::NsKind;

/// Client connections served at once.
const MAX_CONNECTIONS: usize = 256;
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// A redeemable request.
pub enum Request {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward(cri::PortForwardRequest),
}

impl Request {
    fn path(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward(_) => "portforward",
        }
    }
}

pub struct StreamingServer {
    base_url: String,
    cache: TokenCache<Request>,
    containers: Arc<ContainerManager>,
    sandboxes: Arc<SandboxManager>,
}

type Response = hyper::Response<Full<Bytes>>;

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = hyper::Response::new(Full::new(Bytes::from(message.into() + "\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl StreamingServer {
    /// Binds `addr` (port 0: one picked now); the URLs handed out name the
    /// bound address (an unspecified IP is given as loopback).
    pub async fn bind(
        addr: SocketAddr,
        containers: Arc<ContainerManager>,
        sandboxes: Arc<SandboxManager>,
    ) -> std::io::Result<(Arc<StreamingServer>, TcpListener)> {
        let listener = TcpListener::bind(addr).await?;
        let mut local = listener.local_addr()?;
        if local.ip().is_unspecified() {
            local.set_ip(if local.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let server = Arc::new(StreamingServer {
            base_url: format!("http://{local}"),
            cache: TokenCache::new(TOKEN_TTL),
            containers,
            sandboxes,
        });
        Ok((server, listener))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url_for(&self, request: Request) -> Result<String, ContainerError> {
        let path = request.path();
        let token = self
            .cache
            .insert(request)
            .map_err(|e| ContainerError::Failed(e.to_string()))?;
        Ok(format!("{}/{path}/{token}", self.base_url))
    }

    pub fn exec_url(&self, request: cri::ExecRequest) -> Result<String, ContainerError> {
        if request.cmd.is_empty() {
            return Err(ContainerError::InvalidArgument("cmd is required".into()));
        }
        check_streams(request.stdin, request.stdout, request.stderr, request.tty)?;
        self.containers.check_running(&request.container_id)?;
        self.url_for(Request::Exec(request))
    }

    pub fn attach_url(&self, request: cri::AttachRequest) -> Result<String, ContainerError> {
        check_streams(request.stdin, request.stdout, request.stderr, request.tty)?;
        self.containers
            .check_attachable(&request.container_id, request.stdin)?;
        self.url_for(Request::Attach(request))
    }

    pub fn port_forward_url(
        &self,
        request: cri::PortForwardRequest,
    ) -> Result<String, ContainerError> {
        let sandbox = self.sandboxes.info(&request.pod_sandbox_id)?;
        if !sandbox.ready {
            return Err(ContainerError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        self.url_for(Request::PortForward(request))
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = &mut shutdown => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "streaming server: accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "streaming connection");
                }
                drop(permit);
            });
        }
    }

    fn handle(self: &Arc<Self>, req: hyper::Request<Incoming>) -> Response {
        let mut parts = req.uri().path().trim_start_matches('/').splitn(2, '/');
        let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !matches!(kind, "exec" | "attach" | "portforward") {
            return plain(StatusCode::NOT_FOUND, "not found");
        }
        if req.method() != Method::GET && req.method() != Method::POST {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST");
        }
        let Some(request) = self.cache.take(token) else {
            return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
        };
        if request.path() != kind {
            return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token");
        }
        let upgrade = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if upgrade == "websocket" {
            self.upgrade_websocket(req, request)
        } else if upgrade.starts_with("spdy/3.1") {
            self.upgrade_spdy(req, request)
        } else {
            plain(
                StatusCode::BAD_REQUEST,
                "this endpoint needs an Upgrade to SPDY/3.1 or websocket",
            )
        }
    }

    fn upgrade_spdy(self: &Arc<Self>, req: hyper::Request<Incoming>, request: Request) -> Response {
        let offered = req
            .headers()
            .get_all(PROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let ours: &[&'static str] = match request {
            Request::PortForward(_) => &[portforward::PROTOCOL],
            _ => remotecommand::SPDY_PROTOCOLS,
        };
        let Some(protocol) = remotecommand::negotiate(offered, ours) else {
            return plain(
                StatusCode::FORBIDDEN,
                format!("no common stream protocol; supported: {}", ours.join(", ")),
            );
        };
        let server = self.clone();
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY upgrade");
                    return;
                }
            };
            let conn = spdy::Connection::new(TokioIo::new(upgraded));
            server.run_spdy(conn, protocol, request).await;
        });
        let mut r = hyper::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static(protocol));
        r
    }

    async fn run_spdy(
        self: Arc<Self>,
        conn: spdy::Connection,
        protocol: &'static str,
        request: Request,
    ) {
        match request {
            Request::PortForward(r) => self.port_forward(conn, r).await,
            request => {
                let options = options_of(&request);
                match Session::accept_spdy(conn, protocol, options).await {
                    Ok(session) => self.run_session(session, request).await,
                    Err(e) => tracing::info!(error = %e, "streaming session not started"),
                }
            }
        }
    }

    fn upgrade_websocket(
        self: &Arc<Self>,
        req: hyper::Request<Incoming>,
        request: Request,
    ) -> Response {
        let Some(key) = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| k.as_bytes().to_vec())
        else {
            return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
        };
        let offered = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let ours: &[&'static str] = match request {
            Request::PortForward(_) => &[portforward::TUNNEL_PROTOCOL],
            _ => remotecommand::WEBSOCKET_PROTOCOLS,
        };
        let Some(protocol) = remotecommand::negotiate(offered, ours) else {
            return plain(
                StatusCode::BAD_REQUEST,
                format!(
                    "no common WebSocket subprotocol; supported: {}",
                    ours.join(", ")
                ),
            );
        };
        let server = self.clone();
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(req).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade");
                    return;
                }
            };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            match request {
                Request::PortForward(r) => {
                    let conn = spdy::Connection::new(portforward::tunnel(ws));
                    server.port_forward(conn, r).await;
                }
                request => {
                    let session = Session::websocket(ws, protocol, options_of(&request));
                    server.run_session(session, request).await;
                }
            }
        });
        let mut r = hyper::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(&key)) {
            h.insert("sec-websocket-accept", accept);
        }
        h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
        r
    }

    async fn run_session(&self, session: Session, request: Request) {
        match request {
            Request::Exec(r) => {
                self.containers
                    .exec_session(&r.container_id, r.cmd, r.tty, session)
                    .await
            }
            Request::Attach(r) => {
                self.containers
                    .attach_session(&r.container_id, r.tty, session)
                    .await
            }
            Request::PortForward(_) => {}
        }
    }

    async fn port_forward(&self, conn: spdy::Connection, request: cri::PortForwardRequest) {
        let netns = match self.sandboxes.info(&request.pod_sandbox_id) {
            Ok(info) => info
                .namespaces
                .iter()
                .find(|(k, _)| *k == NsKind::Net)
                .map(|(_, p)| p.clone()),
            Err(e) => {
                tracing::info!(error = %e, "port forward to a sandbox that has gone");
                return;
            }
        };
        portforward::serve(conn, Arc::new(PodDialer { netns })).await;
    }
}

fn options_of(request: &Request) -> Options {
    match request {
        Request::Exec(r) => Options {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            tty: r.tty,
        },
        Request::Attach(r) => Options {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            tty: r.tty,
        },
        Request::PortForward(_) => Options::default(),
    }
}

/// The kubelet's checks on the streams a request names.
fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), ContainerError> {
    if !(stdin || stdout || stderr) {
        return Err(ContainerError::InvalidArgument(
            "one of stdin, stdout, or stderr must be set".into(),
        ));
    }
    if tty && stderr {
        return Err(ContainerError::InvalidArgument(
            "tty and stderr cannot both be true".into(),
        ));
    }
    Ok(())
}

/// Connects to localhost in the pod's network namespace (the host's for a
/// host-network pod). setns happens on a throwaway thread; the socket stays
/// in the namespace it was made in.
struct PodDialer {
    netns: Option<std::path::PathBuf>,
}

impl Dialer for PodDialer {
    async fn dial(&self, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        let connect = move || {
            let v4 = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
            let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            let timeout = std::time::Duration::from_secs(10);
            std::net::TcpStream::connect_timeout(&v4, timeout)
                .or_else(|e| std::net::TcpStream::connect_timeout(&v6, timeout).map_err(|_| e))
        };
        let std_stream = match &self.netns {
            None => tokio::task::spawn_blocking(connect).await,
            Some(path) => {
                let joins = vec![(path.clone(), NsKind::Net)];
                tokio::task::spawn_blocking(move || {
                    crate::sys::ns::run_in(joins, connect)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                        .and_then(|r| r)
                })
                .await
            }
        }
        .map_err(std::io::Error::other)??;
        std_stream.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(std_stream)
    }
}

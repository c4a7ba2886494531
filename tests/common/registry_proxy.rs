//! A misbehaving registry for tests: an HTTP proxy in front of the real local
//! registry that counts requests and can tamper with what it serves (corrupt,
//! truncate, extend or stall blobs; replace manifests). What cannot be had from
//! a well-behaved registry, and no more.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response};

use super::REGISTRY;

#[derive(Debug, Clone)]
pub enum Mode {
    /// Forward untouched.
    Pass,
    /// Flip one byte of every layer blob, keeping its length.
    CorruptBlobs,
    /// Serve only the first half of every layer blob.
    TruncateBlobs,
    /// Serve every layer blob with extra bytes after it.
    OversizeBlobs,
    /// Send headers for blobs, then nothing, forever.
    StallBlobs,
    /// Answer every manifest request with this body and content type.
    Manifest { body: String, content_type: String },
    /// Require a bearer token, issued by our own token endpoint (`/token`) for
    /// basic credentials alice:s3cret (GET) or refresh token `refresh-1` (POST),
    /// as Docker Hub-style registries do.
    Token,
}

pub const TOKEN: &str = "token-for-alice";

pub struct RegistryProxy {
    pub port: u16,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RegistryProxy {
    pub async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Default::default();
        let state = Arc::new((mode, counts.clone(), reqwest::Client::new(), port));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move {
                            Ok::<_, Infallible>(
                                handle(&state.0, &state.1, &state.2, state.3, req).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { port, counts, task }
    }

    /// hosts.toml making this proxy the only host of `registry`.
    pub fn hosts_toml(&self) -> String {
        format!("server = \"http://127.0.0.1:{}\"\n", self.port)
    }

    /// How many GETs of paths containing `fragment` were served.
    pub fn count(&self, fragment: &str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| path.contains(fragment))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

async fn handle(
    mode: &Mode,
    counts: &Mutex<HashMap<String, usize>>,
    http: &reqwest::Client,
    port: u16,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let accept = req.headers().get("accept").cloned();
    *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
    if let Mode::Token = mode
        && let Some(denied) = token_gate(port, req).await
    {
        return denied;
    }
    let is_manifest = path.contains("/manifests/");
    let is_blob = path.contains("/blobs/");
    if let (true, Mode::Manifest { body, content_type }) = (is_manifest, mode) {
        return Response::builder()
            .header("Content-Type", content_type)
            .body(full(body.clone()))
            .unwrap();
    }
    let mut upstream = http.get(format!("http://{REGISTRY}{path}"));
    if let Some(accept) = &accept {
        upstream = upstream.header("accept", accept);
    }
    let Ok(response) = upstream.send().await else {
        return Response::builder()
            .status(502)
            .body(full("upstream down"))
            .unwrap();
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".parse().unwrap());
    let mut body = response.bytes().await.unwrap_or_default().to_vec();
    // The image config is a blob too; only tamper with layers (the larger ones).
    let tamper = is_blob && status.is_success() && body.len() > 4096;
    let builder = Response::builder()
        .status(status.as_u16())
        .header("Content-Type", content_type);
    match mode {
        Mode::CorruptBlobs if tamper => {
            let mid = body.len() / 2;
            body[mid] ^= 0xff;
        }
        Mode::TruncateBlobs if tamper => body.truncate(body.len() / 2),
        Mode::OversizeBlobs if tamper => body.extend_from_slice(&[0u8; 1024]),
        Mode::StallBlobs if tamper => {
            let stream = futures::stream::pending::<Result<Frame<Bytes>, Infallible>>();
            return builder
                .header("Content-Length", body.len())
                .body(StreamBody::new(stream).boxed())
                .unwrap();
        }
        _ => {}
    }
    builder.body(full(body)).unwrap()
}

/// The token dance: `Some(response)` answers the request here (the token
/// endpoint, or a 401 challenge); `None` lets an authorized request through.
async fn token_gate(port: u16, req: Request<hyper::body::Incoming>) -> Option<Response<Body>> {
    use base64::Engine;
    let path = req.uri().path().to_string();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if path == "/token" {
        let is_post = req.method() == hyper::Method::POST;
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
        );
        let granted = if is_post {
            String::from_utf8_lossy(&body).contains("refresh_token=refresh-1")
        } else {
            authorization == basic
        };
        let response = if granted {
            Response::builder()
                .header("Content-Type", "application/json")
                .body(full(format!("{{\"token\":\"{TOKEN}\"}}")))
        } else {
            Response::builder()
                .status(401)
                .body(full("bad credentials"))
        };
        return Some(response.unwrap());
    }
    if authorization == format!("Bearer {TOKEN}") {
        return None;
    }
    let challenge = format!(
        "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test-registry\",scope=\"repository:e2e-test-images/busybox:pull\""
    );
    Some(
        Response::builder()
            .status(401)
            .header("WWW-Authenticate", challenge)
            .body(full("{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}"))
            .unwrap(),
    )
}

//! `/exec`, `/attach` and `/portForward` (`/{ns}/{pod}[/{uid}]/{container}`,
//! port-forward without the container): the CRI Exec / Attach /
//! PortForward call gives a URL on the runtime's streaming server, and the
//! client's upgrade request (SPDY or WebSocket) is proxied to it, the
//! kubelet's default (no redirect): once both sides switched protocols the
//! bytes are copied both ways until either closes. Also `/run` (POST):
//! ExecSync, the combined output as the body.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::containers::{Refusal, find_containers};
use super::{Body, Server, query};
use crate::cri::api::v1;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
const CRI_TIMEOUT: Duration = Duration::from_secs(30);
/// /run's ExecSync may take this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn truthy(q: &[(String, String)], k: &str) -> bool {
    q.iter()
        .find(|(key, _)| key == k)
        .is_some_and(|(_, v)| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

fn cri(what: &str, e: impl std::fmt::Display) -> Refusal {
    Refusal(StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {e}"))
}

/// (namespace, pod, uid, container) from the path after the verb.
fn split(rest: &[String], with_container: bool) -> Option<(&str, &str, Option<&str>, &str)> {
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (with_container, r.as_slice()) {
        (true, [ns, pod, c]) => Some((ns, pod, None, c)),
        (true, [ns, pod, uid, c]) => Some((ns, pod, Some(uid), c)),
        (false, [ns, pod]) => Some((ns, pod, None, "")),
        (false, [ns, pod, uid]) => Some((ns, pod, Some(uid), "")),
        _ => None,
    }
}

pub async fn handle(
    server: Arc<Server>,
    req: Request<Incoming>,
    verb: &str,
    rest: &[String],
) -> Response<Body> {
    match handle_inner(server, req, verb, rest).await {
        Ok(r) => r,
        Err(refusal) => refusal.into_response(),
    }
}

async fn handle_inner(
    server: Arc<Server>,
    req: Request<Incoming>,
    verb: &str,
    rest: &[String],
) -> Result<Response<Body>, Refusal> {
    let not_found = || Refusal(StatusCode::NOT_FOUND, "404 page not found".into());
    let (ns, pod, uid, container) = split(rest, verb != "portForward").ok_or_else(not_found)?;
    let q = query(&req);
    let runtime = server.runtime.as_ref();
    if verb == "portForward" {
        let sandbox = pod_sandbox(&server, ns, pod, uid).await?;
        let resp = tokio::time::timeout(
            CRI_TIMEOUT,
            runtime.port_forward(v1::PortForwardRequest {
                pod_sandbox_id: sandbox,
                port: vec![],
            }),
        )
        .await
        .map_err(|_| cri("PortForward", "timed out"))?
        .map_err(|e| cri("PortForward", e))?;
        return proxy(&server, req, &resp.url).await;
    }
    let found = find_containers(runtime, ns, pod, uid, container).await?;
    let id = found[0].id.clone();
    if verb == "run" {
        if req.method() != Method::POST {
            return Err(Refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                "405: Method Not Allowed".into(),
            ));
        }
        let cmd: Vec<String> = q
            .iter()
            .find(|(k, _)| k == "cmd")
            .map(|(_, v)| {
                v.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if cmd.is_empty() {
            return Err(Refusal(StatusCode::BAD_REQUEST, "missing cmd".into()));
        }
        let out = tokio::time::timeout(
            RUN_TIMEOUT,
            runtime.exec_sync(v1::ExecSyncRequest {
                container_id: id,
                cmd,
                timeout: RUN_TIMEOUT.as_secs() as i64,
            }),
        )
        .await
        .map_err(|_| cri("ExecSync", "timed out"))?
        .map_err(|e| cri("ExecSync", e))?;
        let mut body = out.stdout;
        body.extend_from_slice(&out.stderr);
        let mut r = Response::new(
            http_body_util::Full::new(bytes::Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        );
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(r);
    }
    let (stdin, stdout, stderr, tty) = (
        truthy(&q, "input"),
        truthy(&q, "output"),
        truthy(&q, "error"),
        truthy(&q, "tty"),
    );
    if !stdin && !stdout && !stderr {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr".into(),
        ));
    }
    let url = if verb == "exec" {
        let cmd: Vec<String> = q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        if cmd.is_empty() {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "you must specify at least one command for the container".into(),
            ));
        }
        tokio::time::timeout(
            CRI_TIMEOUT,
            runtime.exec(v1::ExecRequest {
                container_id: id,
                cmd,
                tty,
                stdin,
                stdout,
                // With a tty stderr is merged into stdout, as the kubelet asks.
                stderr: stderr && !tty,
            }),
        )
        .await
        .map_err(|_| cri("Exec", "timed out"))?
        .map_err(|e| cri("Exec", e))?
        .url
    } else {
        tokio::time::timeout(
            CRI_TIMEOUT,
            runtime.attach(v1::AttachRequest {
                container_id: id,
                stdin,
                tty,
                stdout,
                stderr: stderr && !tty,
            }),
        )
        .await
        .map_err(|_| cri("Attach", "timed out"))?
        .map_err(|e| cri("Attach", e))?
        .url
    };
    proxy(&server, req, &url).await
}

/// The ready sandbox of a pod.
async fn pod_sandbox(
    server: &Server,
    ns: &str,
    pod: &str,
    uid: Option<&str>,
) -> Result<String, Refusal> {
    use crate::node::podspec::labels;
    let mut selector = std::collections::HashMap::from([
        (labels::POD_NAMESPACE.to_string(), ns.to_string()),
        (labels::POD_NAME.to_string(), pod.to_string()),
    ]);
    if let Some(u) = uid.filter(|u| !u.is_empty()) {
        selector.insert(labels::POD_UID.to_string(), u.to_string());
    }
    let list = tokio::time::timeout(
        CRI_TIMEOUT,
        server.runtime.list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                state: Some(v1::PodSandboxStateValue {
                    state: v1::PodSandboxState::SandboxReady as i32,
                }),
                label_selector: selector,
                ..Default::default()
            }),
        }),
    )
    .await
    .map_err(|_| cri("ListPodSandbox", "timed out"))?
    .map_err(|e| cri("ListPodSandbox", e))?;
    list.items
        .into_iter()
        .max_by_key(|s| s.created_at)
        .map(|s| s.id)
        .ok_or_else(|| {
            Refusal(
                StatusCode::NOT_FOUND,
                format!("pod \"{pod}\" does not exist or is not running"),
            )
        })
}

/// Headers that stay on this hop.
fn hop_local(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "host" | "proxy-authorization" | "keep-alive" | "te" | "trailer"
    ) || name.as_str().starts_with("impersonate-")
}

/// Sends the client's request to `url` (the streaming server) and, when it
/// answers 101, joins the two upgraded connections.
async fn proxy(
    server: &Server,
    mut req: Request<Incoming>,
    url: &str,
) -> Result<Response<Body>, Refusal> {
    // Each joined session holds a permit: their number is bounded.
    let permit = server.streams.clone().try_acquire_owned().map_err(|_| {
        Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "too many streaming sessions at once".into(),
        )
    })?;
    let target = url::Url::parse(url).map_err(|e| cri("streaming URL", format!("{url}: {e}")))?;
    if target.scheme() != "http" {
        return Err(cri(
            "streaming URL",
            format!("{url}: only http:// streaming servers are proxied"),
        ));
    }
    let host = target
        .host_str()
        .ok_or_else(|| cri("streaming URL", format!("{url}: no host")))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = target.port_or_known_default().unwrap_or(80);
    let mut path = target.path().to_string();
    if let Some(q) = target.query() {
        path.push('?');
        path.push_str(q);
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(&path)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| cri("building the streaming request", e))?;
    for (name, value) in req.headers().iter().filter(|(n, _)| !hop_local(n)) {
        out.headers_mut().append(name.clone(), value.clone());
    }
    let authority = match target.port() {
        Some(p) => format!("{}:{p}", target.host_str().unwrap_or(&host)),
        None => target.host_str().unwrap_or(&host).to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&authority) {
        out.headers_mut().insert(header::HOST, v);
    }
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| cri("connecting to the streaming server", "timed out"))?
    .map_err(|e| cri("connecting to the streaming server", e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| cri("the streaming server", e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "streaming server connection ended");
        }
    });
    let mut resp = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(out))
        .await
        .map_err(|_| cri("the streaming server", "timed out"))?
        .map_err(|e| cri("the streaming server", e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Its refusal (a 400 naming the missing upgrade, a 404 for a
        // stale token) goes back as it is.
        let (parts, body) = resp.into_parts();
        let body = body.map_err(std::io::Error::other).boxed();
        return Ok(Response::from_parts(parts, body));
    }
    let server_upgrade = hyper::upgrade::on(&mut resp);
    let mut back = Response::new(
        Empty::<bytes::Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *back.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *back.headers_mut() = resp.headers().clone();
    tokio::spawn(async move {
        let _permit = permit;
        let (client, server) = match tokio::join!(client_upgrade, server_upgrade) {
            (Ok(c), Ok(s)) => (c, s),
            (c, s) => {
                tracing::debug!(client = ?c.err(), server = ?s.err(), "stream upgrade failed");
                return;
            }
        };
        let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
            tracing::debug!(error = %e, "stream ended");
        }
    });
    Ok(back)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_pod_with_or_without_its_uid() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            split(&s(&["ns", "p", "c"]), true),
            Some(("ns", "p", None, "c"))
        );
        assert_eq!(
            split(&s(&["ns", "p", "u", "c"]), true),
            Some(("ns", "p", Some("u"), "c"))
        );
        assert_eq!(split(&s(&["ns", "p"]), false), Some(("ns", "p", None, "")));
        assert_eq!(split(&s(&["ns"]), true), None);
        assert_eq!(split(&s(&["ns", "p", "u", "c", "x"]), true), None);
    }
}

//! pods/log, pods/exec, pods/attach, pods/portforward and nodes/proxy:
//! proxied to the kubelet of the pod's (or the named) node, as
//! kube-apiserver does. Exec, attach and port-forward options are
//! translated to the kubelet API's names (`stdin=true` -> `input=1`, ...,
//! `ports` -> `port`), as kube-apiserver's ExecLocation / AttachLocation /
//! PortForwardLocation do; nodes/proxy passes the rest of the path and the
//! query through. The node's address is
//! its InternalIP (else Hostname) and its kubelet port
//! `status.daemonEndpoints.kubeletEndpoint.Port`; the connection is HTTPS
//! with this server's kubelet-client certificate. Logs are streamed back as
//! they come (so `kubectl logs -f` follows); exec, attach and port-forward
//! are connection upgrades (SPDY or WebSocket): the upgrade request goes to
//! the kubelet as is, and once both sides switched protocols the bytes are
//! copied both ways until either side closes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::apiserver::context::{Body, Target, query_pairs};
use crate::apiserver::error::ApiError;
use crate::apiserver::state::{State, blocking};
use crate::apiserver::store::object_key;

/// The pod subresources that go to a kubelet.
pub const SUBRESOURCES: &[&str] = &["log", "exec", "attach", "portforward"];

/// How long connecting to a kubelet (TCP + TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the kubelet may take to answer (headers; a followed log's body
/// may then stream for as long as it likes).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// PodLogOptions the kubelet understands, passed through as given.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "sinceSeconds",
    "sinceTime",
    "tailLines",
    "limitBytes",
];

/// The verb a proxied subresource is authorized as: reading logs is a get;
/// exec, attach and port-forward are creates whatever the method (kube
/// checks create for WebSocket GETs too); nodes/proxy goes by the method.
pub fn verb(subresource: &str, method: &http::Method) -> &'static str {
    match subresource {
        "log" => "get",
        "proxy" => match *method {
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "get",
        },
        _ => "create",
    }
}

/// A query flag as kube's parameter codec reads a bool: present and not
/// "0" or "false" (any case) is true.
fn truthy(v: &str) -> bool {
    !(v == "0" || v.eq_ignore_ascii_case("false"))
}

/// PodExecOptions / PodAttachOptions as the kubelet API names them
/// (kube-apiserver's streamParams): stdin/stdout/stderr/tty become
/// input/output/error/tty=1, commands (exec only) stay `command`.
fn stream_params(query: &[(String, String)], exec: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (from, to) in [
        ("stdin", "input"),
        ("stdout", "output"),
        ("stderr", "error"),
        ("tty", "tty"),
    ] {
        // The first value counts, as in Go's conversion of a []string.
        if query
            .iter()
            .find(|(k, _)| k == from)
            .is_some_and(|(_, v)| truthy(v))
        {
            out.push((to.to_string(), "1".to_string()));
        }
    }
    if exec {
        out.extend(
            query
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| ("command".to_string(), v.clone())),
        );
    }
    out
}

/// PodPortForwardOptions' `ports` (repeated or comma-separated) as the
/// kubelet's one `port` list.
fn port_params(query: &[(String, String)]) -> Vec<(String, String)> {
    let ports: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "ports")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if ports.is_empty() {
        Vec::new()
    } else {
        vec![("port".to_string(), ports.join(","))]
    }
}

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

/// The container a request names, defaulted when the pod has only one.
fn container<'a>(
    pod: &'a Value,
    requested: Option<&'a str>,
    name: &str,
) -> Result<&'a str, ApiError> {
    let names = |list: &str| -> Vec<&'a str> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    };
    let containers = names("containers");
    match requested {
        Some(c) => {
            let known = ["containers", "initContainers", "ephemeralContainers"]
                .iter()
                .any(|list| names(list).contains(&c));
            if known {
                Ok(c)
            } else {
                Err(bad(format!("container {c} is not valid for pod {name}")))
            }
        }
        None if containers.len() == 1 => Ok(containers[0]),
        None => Err(bad(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// Check the numeric log options the way kube validates PodLogOptions.
fn check_log_query(query: &[(String, String)]) -> Result<(), ApiError> {
    for (k, v) in query {
        let min = match k.as_str() {
            "tailLines" => 0,
            "sinceSeconds" | "limitBytes" => 1,
            _ => continue,
        };
        match v.parse::<i64>() {
            Ok(n) if n >= min => {}
            _ => {
                return Err(ApiError::invalid(
                    "PodLogOptions",
                    "",
                    "",
                    vec![crate::apiserver::error::Cause {
                        reason: "FieldValueInvalid",
                        field: k.clone(),
                        message: format!("Invalid value: {v:?}: must be an integer >= {min}"),
                    }],
                ));
            }
        }
    }
    let has = |k: &str| query.iter().any(|(q, _)| q == k);
    if has("sinceSeconds") && has("sinceTime") {
        return Err(bad(
            "at most one of sinceTime or sinceSeconds may be specified".into(),
        ));
    }
    Ok(())
}

/// Where a node's kubelet listens: (address, port).
pub(crate) fn kubelet_endpoint(node: &Value) -> Option<(String, u16)> {
    let addresses = node["status"]["addresses"].as_array()?;
    let of = |ty: &str| {
        addresses
            .iter()
            .find(|a| a["type"] == ty)
            .and_then(|a| a["address"].as_str())
            .filter(|a| !a.is_empty())
    };
    let address = of("InternalIP").or_else(|| of("Hostname"))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| (1..=65535).contains(p))
        .unwrap_or(10250) as u16;
    Some((address.to_string(), port))
}

/// The kubelet path and query for a request on `t` with `query`.
async fn kubelet_target(
    state: &Arc<State>,
    t: &Target,
    query: &[(String, String)],
) -> Result<(String, u16, String), ApiError> {
    let pod_key = object_key("", "pods", &t.namespace, &t.name);
    let t2 = t.clone();
    let (pod, node) = blocking(state, move |s| {
        let pod = s
            .store
            .get(&pod_key)?
            .ok_or_else(|| ApiError::not_found("", "pods", &t2.name))?;
        let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        if node_name.is_empty() {
            return Err(bad(format!(
                "pod {} does not have a host assigned",
                t2.name
            )));
        }
        let node = s
            .store
            .get(&object_key("", "nodes", "", &node_name))?
            .ok_or_else(|| ApiError::not_found("", "nodes", &node_name))?;
        Ok((pod, node))
    })
    .await?;
    let node_name = node["metadata"]["name"].as_str().unwrap_or("");
    let (host, port) = kubelet_endpoint(&node).ok_or_else(|| {
        ApiError::Internal(format!("node {node_name} has no address for its kubelet"))
    })?;
    let requested = query
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty());
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let (ns, name) = (enc(&t.namespace), enc(&t.name));
    let (path, params): (String, Vec<(String, String)>) = match t.subresource.as_str() {
        "log" => {
            check_log_query(query)?;
            let c = enc(container(&pod, requested, &t.name)?);
            (
                format!("/containerLogs/{ns}/{name}/{c}"),
                query
                    .iter()
                    .filter(|(k, _)| LOG_PARAMS.contains(&k.as_str()))
                    .cloned()
                    .collect(),
            )
        }
        "portforward" => (format!("/portForward/{ns}/{name}"), port_params(query)),
        sub => {
            let c = enc(container(&pod, requested, &t.name)?);
            let exec = sub == "exec";
            let dir = if exec { "exec" } else { "attach" };
            (
                format!("/{dir}/{ns}/{name}/{c}"),
                stream_params(query, exec),
            )
        }
    };
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish();
    let path_and_query = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    Ok((host, port, path_and_query))
}

fn dial_error(host: &str, port: u16, err: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!(
        "error dialing backend: dial tcp {host}:{port}: {err}"
    ))
}

/// An HTTP/1.1 connection to the kubelet, its driver spawned.
pub(crate) async fn connect<B>(
    state: &State,
    host: &str,
    port: u16,
) -> Result<hyper::client::conn::http1::SendRequest<B>, ApiError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let server_name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| dial_error(host, port, e))?,
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&state.kubelet_tls));
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        connector.connect(server_name, tcp).await
    })
    .await
    .map_err(|_| dial_error(host, port, "i/o timeout"))?
    .map_err(|e| dial_error(host, port, e))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| dial_error(host, port, e))?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(error = %err, "kubelet connection ended");
        }
    });
    Ok(sender)
}

/// Request headers not passed to the kubelet: the caller's credentials
/// (the kubelet sees this server's identity) and per-hop ones.
fn forwarded(name: &header::HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "authorization" | "host" | "proxy-authorization" | "keep-alive" | "te" | "trailer"
    ) && !name.as_str().starts_with("impersonate-")
}

/// nodes/{name}/proxy/{path}: the node's kubelet, the path after `proxy`
/// and the query as given. A name may carry a port (`n1:10250`).
async fn node_proxy_target(
    state: &Arc<State>,
    t: &Target,
    uri: &http::Uri,
) -> Result<(String, u16, String), ApiError> {
    let (node_name, port_override) = match t.name.rsplit_once(':') {
        Some((n, p)) => (
            n.to_string(),
            Some(
                p.parse::<u16>()
                    .map_err(|_| bad(format!("invalid port in node name {:?}", t.name)))?,
            ),
        ),
        None => (t.name.clone(), None),
    };
    let key = object_key("", "nodes", "", &node_name);
    let name2 = node_name.clone();
    let node = blocking(state, move |s| {
        s.store
            .get(&key)?
            .ok_or_else(|| ApiError::not_found("", "nodes", &name2))
    })
    .await?;
    let (host, port) = kubelet_endpoint(&node).ok_or_else(|| {
        ApiError::Internal(format!("node {node_name} has no address for its kubelet"))
    })?;
    let prefix = format!("/api/v1/nodes/{}/proxy", t.name);
    let rest = uri.path().strip_prefix(&prefix).unwrap_or("");
    let mut path = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    if let Some(q) = uri.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok((host, port_override.unwrap_or(port), path))
}

pub async fn proxy(
    state: &Arc<State>,
    t: Target,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let node_proxy = t.kind.resource == "nodes";
    let (host, port, path) = if node_proxy {
        node_proxy_target(state, &t, req.uri()).await?
    } else {
        let query: Vec<(String, String)> = query_pairs(req.uri());
        kubelet_target(state, &t, &query).await?
    };
    let upgrading = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| !v.is_empty());
    if upgrading && req.version() != http::Version::HTTP_11 {
        return Err(bad(
            "connection upgrades (exec, attach, portforward) need HTTP/1.1".into(),
        ));
    }
    if !node_proxy && t.subresource != "log" && !upgrading {
        return Err(bad(
            "Upgrade request required: exec, attach and portforward need a SPDY or WebSocket upgrade".into(),
        ));
    }
    let client_side = upgrading.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = Request::builder()
        .method(parts.method.clone())
        .uri(&path)
        .body(body)
        .map_err(|e| ApiError::Internal(format!("building the kubelet request: {e}")))?;
    for (name, value) in parts.headers.iter().filter(|(n, _)| forwarded(n)) {
        out.headers_mut().append(name.clone(), value.clone());
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    if let Ok(v) = HeaderValue::from_str(&authority) {
        out.headers_mut().insert(header::HOST, v);
    }
    let mut sender = connect(state, &host, port).await?;
    let mut resp = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(out))
        .await
        .map_err(|_| dial_error(&host, port, "timed out waiting for the kubelet"))?
        .map_err(|e| dial_error(&host, port, e))?;
    tracing::debug!(kubelet = %authority, %path, status = resp.status().as_u16(), "proxied to kubelet");

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_side) = client_side else {
            return Err(ApiError::Internal(
                "the kubelet switched protocols unasked".into(),
            ));
        };
        let kubelet_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (client, kubelet) = match tokio::join!(client_side, kubelet_side) {
                (Ok(c), Ok(k)) => (c, k),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return;
                }
            };
            let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
            if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                tracing::debug!(error = %err, "upgraded stream ended");
            }
        });
        let mut out = Response::new(http_body_util::Empty::<Bytes>::new().boxed());
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *out.headers_mut() = resp.headers().clone();
        return Ok(out);
    }

    // A plain response (logs, or the kubelet refusing an upgrade): stream
    // it back as it arrives; an upstream error ends the stream.
    let (parts, body) = resp.into_parts();
    let frames = BodyStream::new(body)
        .take_while(|frame| std::future::ready(frame.is_ok()))
        .filter_map(|frame| std::future::ready(frame.ok()))
        .map(Ok::<_, std::convert::Infallible>);
    let mut out = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    *out.status_mut() = parts.status;
    for name in [
        header::CONTENT_TYPE,
        header::CACHE_CONTROL,
        header::CONTENT_ENCODING,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_and_endpoints() {
        let pod =
            json!({"spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(container(&pod, None, "p").unwrap(), "a");
        assert_eq!(container(&pod, Some("i"), "p").unwrap(), "i");
        assert!(container(&pod, Some("x"), "p").is_err());
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let err = container(&two, None, "p").unwrap_err().to_string();
        assert!(err.contains("choose one of: [a b]"), "{err}");
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"},
            {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}}}});
        assert_eq!(kubelet_endpoint(&node), Some(("10.0.0.5".into(), 10255)));
        assert_eq!(kubelet_endpoint(&json!({})), None);
        let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(check_log_query(&q("tailLines", "0")).is_ok());
        assert!(check_log_query(&q("tailLines", "-1")).is_err());
        assert!(check_log_query(&q("limitBytes", "x")).is_err());
    }

    /// kubectl's exec/attach/port-forward options, in the kubelet's names.
    #[test]
    fn stream_options_are_translated() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let exec = q(&[
            ("command", "sh"),
            ("command", "-c"),
            ("container", "c"),
            ("stdin", "false"),
            ("stdout", "true"),
            ("stderr", "1"),
            ("tty", "0"),
        ]);
        assert_eq!(
            stream_params(&exec, true),
            q(&[
                ("output", "1"),
                ("error", "1"),
                ("command", "sh"),
                ("command", "-c")
            ])
        );
        let attach = q(&[("stdin", "true"), ("tty", "TRUE"), ("command", "x")]);
        assert_eq!(
            stream_params(&attach, false),
            q(&[("input", "1"), ("tty", "1")])
        );
        assert_eq!(
            port_params(&q(&[("ports", "80,443"), ("ports", "8080")])),
            q(&[("port", "80,443,8080")])
        );
        assert!(port_params(&[]).is_empty());
        assert_eq!(verb("proxy", &http::Method::DELETE), "delete");
        assert_eq!(verb("exec", &http::Method::GET), "create");
    }
}

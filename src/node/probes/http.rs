//! httpGet probes and hooks, as the kubelet's HTTP prober: HTTP or HTTPS
//! (certificates not verified), the user's headers, User-Agent
//! `kube-probe/<major.minor>`, redirects followed on the same host only;
//! a status in 200..400 passes.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};
use reqwest::header::{ACCEPT, HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT};

use super::results::Outcome;

/// The User-Agent the kubelet of the Kubernetes version we follow sends.
pub const USER_AGENT_VALUE: &str = "kube-probe/1.36";
/// The kubelet follows at most this many redirects.
const MAX_REDIRECTS: usize = 10;

/// One resolved GET: the URL and the headers to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub headers: HeaderMap,
}

/// The request an httpGet action makes against `pod_ip`; Err when a named
/// port is not among the container's ports or the action is malformed.
pub fn request(
    action: &HTTPGetAction,
    pod_ip: &str,
    ports: &[ContainerPort],
) -> Result<Request, String> {
    let scheme = action.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("unsupported scheme {scheme:?}"));
    }
    let port = super::resolve_port(&action.port, ports)?;
    let host = action
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_ip);
    let mut path = action.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let url = format!("{scheme}://{}{path}", super::join_host_port(host, port));
    url::Url::parse(&url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let mut headers = HeaderMap::new();
    for h in action.http_headers.iter().flatten() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|e| format!("invalid header name {:?}: {e}", h.name))?;
        let value = HeaderValue::from_str(&h.value)
            .map_err(|e| format!("invalid header value for {:?}: {e}", h.name))?;
        headers.append(name, value);
    }
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    }
    if !headers.contains_key(ACCEPT) {
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    }
    Ok(Request { url, headers })
}

/// A client for one probe (kept for its life: TLS setup once); no
/// keep-alive, as the kubelet's prober.
pub fn client() -> Result<reqwest::Client, String> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let same_host = attempt
            .previous()
            .first()
            .is_some_and(|first| first.host_str() == attempt.url().host_str());
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if same_host {
            attempt.follow()
        } else {
            // The kubelet takes a redirect elsewhere as success (with a
            // warning event): the 3xx itself is what we return.
            attempt.stop()
        }
    });
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(policy)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

pub async fn probe(client: &reqwest::Client, req: &Request, timeout: Duration) -> Outcome {
    let mut builder = client.get(&req.url).timeout(timeout);
    for (name, value) in &req.headers {
        if name != HOST {
            builder = builder.header(name, value);
        }
    }
    if let Some(host) = req.headers.get(HOST) {
        builder = builder.header(HOST, host);
    }
    match builder.send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            if (200..400).contains(&code) {
                Outcome::Success
            } else {
                Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
        Err(e) => Outcome::Failure(format!("Get {:?}: {}", req.url, error_chain(&e))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::HTTPHeader;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-route HTTP server answering `status` and sending back what it
    /// got through the channel.
    async fn server(status: u16) -> (u16, tokio::sync::mpsc::Receiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        (port, rx)
    }

    fn action(port: IntOrString, path: &str) -> HTTPGetAction {
        HTTPGetAction {
            port,
            path: Some(path.into()),
            http_headers: Some(vec![HTTPHeader {
                name: "X-Probe".into(),
                value: "yes".into(),
            }]),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn success_is_200_to_399_and_headers_are_sent() {
        let client = client().unwrap();
        for (status, ok) in [
            (200, true),
            (302, true),
            (399, true),
            (404, false),
            (500, false),
        ] {
            let (port, mut seen) = server(status).await;
            let req = request(
                &action(IntOrString::Int(port as i32), "healthz"),
                "127.0.0.1",
                &[],
            )
            .unwrap();
            let out = probe(&client, &req, Duration::from_secs(2)).await;
            assert_eq!(out == Outcome::Success, ok, "status {status}: {out:?}");
            let got = seen.recv().await.unwrap().to_lowercase();
            assert!(got.starts_with("get /healthz "), "{got}");
            assert!(got.contains("user-agent: kube-probe/1.36"), "{got}");
            assert!(got.contains("x-probe: yes"), "{got}");
        }
    }

    #[tokio::test]
    async fn named_ports_resolve_and_closed_ports_fail() {
        let (port, _seen) = server(200).await;
        let ports = [ContainerPort {
            name: Some("http".into()),
            container_port: port as i32,
            ..Default::default()
        }];
        let req = request(
            &action(IntOrString::String("http".into()), "/"),
            "127.0.0.1",
            &ports,
        )
        .unwrap();
        assert_eq!(req.url, format!("http://127.0.0.1:{port}/"));
        assert!(
            request(
                &action(IntOrString::String("nope".into()), "/"),
                "127.0.0.1",
                &ports
            )
            .is_err()
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let req = request(
            &action(IntOrString::Int(closed_port as i32), "/"),
            "127.0.0.1",
            &[],
        )
        .unwrap();
        match probe(&client().unwrap(), &req, Duration::from_secs(2)).await {
            Outcome::Failure(m) => assert!(m.contains("127.0.0.1"), "{m}"),
            Outcome::Success => panic!("a closed port passed"),
        }
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let req = request(
            &action(IntOrString::Int(port as i32), "/"),
            "127.0.0.1",
            &[],
        )
        .unwrap();
        let start = std::time::Instant::now();
        let out = probe(&client().unwrap(), &req, Duration::from_millis(300)).await;
        assert!(matches!(out, Outcome::Failure(_)), "{out:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    /// An HTTPS server with a self-signed certificate for another name: the
    /// prober does not verify it, as the kubelet's.
    #[tokio::test]
    async fn https_probes_skip_certificate_verification() {
        use std::sync::Arc;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["not-this-host.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut buf = vec![0; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = s.shutdown().await;
            }
        });
        let mut a = action(IntOrString::Int(port as i32), "/");
        a.scheme = Some("HTTPS".into());
        let req = request(&a, "127.0.0.1", &[]).unwrap();
        assert!(req.url.starts_with("https://"));
        let out = probe(&client().unwrap(), &req, Duration::from_secs(5)).await;
        assert_eq!(out, Outcome::Success);
    }
}

//! pods/log, exec, attach and port-forward proxied to a (fake) kubelet.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::*;

/// A stand-in kubelet for the proxy tests (the real one does not exist
/// yet): HTTPS, client certificates required and checked against the
/// apiserver's CA (as a kubelet's --client-ca-file does). It answers
/// /containerLogs/... with the path, query and caller it saw, and accepts
/// an upgrade on /exec/..., after which it says what it was asked and
/// echoes every byte back. Stops when the handle is dropped (aborted).
struct FakeKubelet {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_kubelet(apiserver_ca: &Path) -> FakeKubelet {
    use hyper::body::Incoming;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(apiserver_ca).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let caller = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| {
                        x509_parser::parse_x509_certificate(c)
                            .ok()?
                            .1
                            .subject()
                            .iter_common_name()
                            .next()?
                            .as_str()
                            .ok()
                            .map(String::from)
                    })
                    .unwrap_or_default();
                let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                    let caller = caller.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let query = req.uri().query().unwrap_or("").to_string();
                        use http_body_util::BodyExt;
                        let mut resp = http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::new()).boxed_unsync(),
                        );
                        // The kubelet API's stream options (kube-apiserver
                        // translates kubectl's stdin/stdout/stderr to them).
                        let pairs: Vec<(String, String)> =
                            url::form_urlencoded::parse(query.as_bytes())
                                .into_owned()
                                .collect();
                        let one = |k: &str| pairs.iter().any(|(q, v)| q == k && v == "1");
                        let streams = one("input") || one("output") || one("error");
                        if (path.starts_with("/exec/") || path.starts_with("/attach/")) && !streams
                        {
                            *resp.status_mut() = http::StatusCode::BAD_REQUEST;
                            *resp.body_mut() = http_body_util::Full::new(bytes::Bytes::from(
                                "you must specify at least 1 of stdin, stdout, stderr",
                            ))
                            .boxed_unsync();
                        } else if path == "/metrics" {
                            *resp.body_mut() =
                                http_body_util::Full::new(bytes::Bytes::from(format!(
                                    "metrics {query} caller {caller} method {}\n",
                                    req.method()
                                )))
                                .boxed_unsync();
                        } else if path.starts_with("/containerLogs/")
                            && query.contains("follow=true")
                        {
                            // A followed log: one line now, the next in 2 s.
                            let now = futures::stream::once(async {
                                Ok(hyper::body::Frame::data(bytes::Bytes::from("line 1\n")))
                            });
                            let later = futures::stream::once(async {
                                tokio::time::sleep(Duration::from_secs(2)).await;
                                Ok(hyper::body::Frame::data(bytes::Bytes::from("line 2\n")))
                            });
                            *resp.body_mut() =
                                http_body_util::StreamBody::new(now.chain(later)).boxed_unsync();
                        } else if path.starts_with("/containerLogs/") {
                            *resp.body_mut() = http_body_util::Full::new(bytes::Bytes::from(
                                format!("log {path}\nquery {query}\ncaller {caller}\n"),
                            ))
                            .boxed_unsync();
                        } else if path.starts_with("/exec/")
                            && req
                                .headers()
                                .get("upgrade")
                                .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"))
                        {
                            // kubectl exec's WebSocket protocol (v5.channel.k8s.io):
                            // stdout on channel 1, the exit Status on channel 3.
                            let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
                            let upgrade = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let Ok(up) = upgrade.await else { return };
                                let mut io = hyper_util::rt::TokioIo::new(up);
                                let frame = |channel: u8, data: &[u8]| {
                                    let mut f = vec![0x82, (data.len() + 1) as u8, channel];
                                    f.extend_from_slice(data);
                                    f
                                };
                                let out = format!("exec ran {query}\n");
                                let mut bytes = frame(1, out.as_bytes());
                                bytes.extend(frame(3, br#"{"metadata":{},"status":"Success"}"#));
                                bytes.extend([0x88, 0x02, 0x03, 0xe8]);
                                let _ = io.write_all(&bytes).await;
                                let mut buf = [0u8; 1024];
                                while let Ok(Ok(n)) =
                                    tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
                                        .await
                                {
                                    if n == 0 {
                                        break;
                                    }
                                }
                            });
                            let mut accept_input = key;
                            accept_input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
                            let digest = ring::digest::digest(
                                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                                &accept_input,
                            );
                            use base64::Engine;
                            let accept =
                                base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
                            *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                            let h = resp.headers_mut();
                            h.insert("connection", http::HeaderValue::from_static("Upgrade"));
                            h.insert("upgrade", http::HeaderValue::from_static("websocket"));
                            h.insert("sec-websocket-accept", accept.parse().unwrap());
                            h.insert(
                                "sec-websocket-protocol",
                                http::HeaderValue::from_static("v5.channel.k8s.io"),
                            );
                        } else if path.starts_with("/exec/")
                            && req.headers().contains_key("upgrade")
                        {
                            let proto = req.headers()["upgrade"].clone();
                            let upgrade = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let Ok(up) = upgrade.await else { return };
                                let mut io = hyper_util::rt::TokioIo::new(up);
                                let hello = format!("exec {path}?{query}\n");
                                if io.write_all(hello.as_bytes()).await.is_err() {
                                    return;
                                }
                                let mut buf = [0u8; 1024];
                                while let Ok(n) = io.read(&mut buf).await {
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            });
                            *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                            resp.headers_mut()
                                .insert("connection", http::HeaderValue::from_static("Upgrade"));
                            resp.headers_mut().insert("upgrade", proto);
                            resp.headers_mut().insert(
                                "x-stream-protocol-version",
                                http::HeaderValue::from_static("v4.channel.k8s.io"),
                            );
                        } else {
                            *resp.status_mut() = http::StatusCode::NOT_FOUND;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    FakeKubelet { port, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_and_exec_are_proxied_to_the_kubelet() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let s = Server::start();
    let kubelet = fake_kubelet(&s.dir.join("data/pki/ca.crt")).await;
    let client = s.client().await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let node = |name: &str, port: u16| -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {
            "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}))
        .unwrap()
    };
    nodes
        .create(&PostParams::default(), &node("n1", kubelet.port))
        .await
        .unwrap();
    s.ok(&["create", "namespace", "team"]);
    let pods: Api<Pod> = Api::namespaced(client, "team");
    for (name, node) in [("web", Some("n1")), ("pending", None)] {
        let pod: Pod = serde_json::from_value(pod_json(name, node)).unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }

    // kubectl logs, options passed through, as the apiserver's identity.
    let out = s.ok(&["logs", "web", "-n", "team", "--tail=3", "--timestamps"]);
    assert!(out.contains("log /containerLogs/team/web/c\n"), "{out}");
    assert!(out.contains("tailLines=3"), "{out}");
    assert!(out.contains("timestamps=true"), "{out}");
    assert!(
        out.contains("caller kube-apiserver-kubelet-client"),
        "{out}"
    );
    let out = s.ok(&["logs", "web", "-n", "team", "-c", "c", "--previous"]);
    assert!(out.contains("previous=true"), "{out}");
    let err = s.fails(&["logs", "web", "-n", "team", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    let err = s.fails(&["logs", "pending", "-n", "team"]);
    assert!(err.contains("does not have a host assigned"), "{err}");
    let (code, body) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/namespaces/team/pods/web/log?tailLines=-1",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 422, "{body}");
    // Nodes do not read other pods' logs through the apiserver.
    let (code, _) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/namespaces/team/pods/web/log",
            Some(N1_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 403);

    // An upgrade (exec over SPDY) through the apiserver, bytes both ways.
    let ca = std::fs::read(s.dir.join("data/pki/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = s.url.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut conn = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let request = format!(
        "POST /api/v1/namespaces/team/pods/web/exec?command=sh&command=-c&stdin=true&stdout=true HTTP/1.1\r\n\
         Host: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: Upgrade\r\n\
         Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("exec /exec/") || !seen.ends_with(b"\n") {
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&seen)
        );
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.to_lowercase().contains("upgrade: spdy/3.1"), "{text}");
    assert!(
        text.contains("exec /exec/team/web/c?input=1&output=1&command=sh&command=-c\n"),
        "{text}"
    );
    conn.write_all(b"ping 1 2 3").await.unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < 10 {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        echoed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(echoed, b"ping 1 2 3");

    // A followed log streams through as the kubelet writes it.
    let started = Instant::now();
    let mut follow = s
        .http()
        .get(format!(
            "{}/api/v1/namespaces/team/pods/web/log?follow=true",
            s.url
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let first = follow.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"line 1\n");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let second = follow.chunk().await.unwrap().unwrap();
    assert_eq!(&second[..], b"line 2\n");
    assert!(started.elapsed() >= Duration::from_secs(2));

    // kubectl exec end to end (WebSocket through the apiserver).
    let out = s.ok(&["exec", "web", "-n", "team", "--", "echo", "hi"]);
    assert!(
        out.starts_with("exec ran output=1&error=1&command=echo&command=hi"),
        "{out}"
    );

    // nodes/{name}/proxy: the rest of the path and the query go to the
    // node's kubelet; a node may not use it.
    let (code, body) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/nodes/n1/proxy/metrics?x=1",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        json!("metrics x=1 caller kube-apiserver-kubelet-client method GET\n")
    );
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/nodes/n1:{}/proxy/metrics", kubelet.port),
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.as_str().unwrap().contains("method POST"), "{body}");
    let (code, _) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/nodes/n1/proxy/metrics",
            Some(N1_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 403);

    // exec without an upgrade, and a kubelet that is not there.
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/namespaces/team/pods/web/exec?command=true",
            Some(ADMIN_TOKEN),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let nodes2: Api<k8s_openapi::api::core::v1::Node> = Api::all(s.client().await);
    nodes2
        .create(&PostParams::default(), &node("n2", dead_port))
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(pod_json("lost", Some("n2"))).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let err = s.fails(&["logs", "lost", "-n", "team"]);
    assert!(err.contains("error dialing backend"), "{err}");
    drop(kubelet);
}

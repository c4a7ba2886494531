//! Malformed and abusive requests, answered as the stock kube-apiserver
//! v1.36.2 answers them (each case was run against it: issue 17), and a
//! watch load that must not grow memory without bound.

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::{ADMIN_TOKEN, Server};

const CM: &str = "/api/v1/namespaces/default/configmaps";

async fn send(s: &Server, method: Method, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
    s.call(method, path, Some(ADMIN_TOKEN), ct, body).await
}

fn reason(body: &Value) -> &str {
    body["reason"].as_str().unwrap_or("")
}

#[tokio::test]
async fn malformed_requests_get_kube_apiservers_answers() {
    let s = Server::start();
    let json = "application/json";
    let cm = |name: &str, data: Value| {
        serde_json::to_vec(&json!({"metadata": {"name": name}, "data": data})).unwrap()
    };
    let (code, _) = send(&s, Method::POST, CM, json, cm("p1", json!({"a": "b"}))).await;
    assert_eq!(code, 201);

    // Over 1 MiB of data: 422 on the whole object, as kube words it.
    let big = json!({"a": "x".repeat(2 << 20)});
    let (code, body) = send(&s, Method::POST, CM, json, cm("big", big)).await;
    assert_eq!((code, reason(&body)), (422, "Invalid"), "{body}");
    assert_eq!(
        body["message"],
        "ConfigMap \"big\" is invalid: []: Too long: may not be more than 1048576 bytes"
    );
    assert_eq!(body["details"]["causes"][0]["reason"], "FieldValueTooLong");
    // A Secret counts decoded bytes: 1 MiB + 1 is too much, 1 MiB is not.
    use base64::Engine;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![b'x'; n]);
    let secret = |name: &str, n: usize| {
        serde_json::to_vec(&json!({"metadata": {"name": name}, "data": {"k": b64(n)}})).unwrap()
    };
    let secrets = "/api/v1/namespaces/default/secrets";
    let (code, body) = send(&s, Method::POST, secrets, json, secret("s1", (1 << 20) + 1)).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "Secret \"s1\" is invalid: data: Too long: may not be more than 1048576 bytes"
    );
    let (code, body) = send(&s, Method::POST, secrets, json, secret("s2", (1 << 20) - 1)).await;
    assert_eq!(code, 201, "{body}");

    // resourceVersion that is not a number: 400.
    let (code, body) = send(
        &s,
        Method::GET,
        &format!("{CM}?resourceVersion=abc"),
        "",
        vec![],
    )
    .await;
    assert_eq!((code, reason(&body)), (400, "BadRequest"), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("strconv.ParseUint"),
        "{body}"
    );

    // Patches whose result has no name: 400, and the object is untouched.
    let cases: [(&str, &[u8]); 3] = [
        (
            "application/json-patch+json",
            br#"[{"op":"remove","path":"/metadata"}]"#,
        ),
        (
            "application/strategic-merge-patch+json",
            br#"{"$patch":"delete"}"#,
        ),
        (
            "application/strategic-merge-patch+json",
            br#"{"$patch":"replace"}"#,
        ),
    ];
    for (ct, patch) in cases {
        let (code, body) = send(&s, Method::PATCH, &format!("{CM}/p1"), ct, patch.to_vec()).await;
        assert_eq!((code, reason(&body)), (400, "BadRequest"), "{ct} {body}");
        assert_eq!(
            body["message"],
            "the name of the object (p1 based on URL) was undeterminable: name must be provided"
        );
    }
    let (code, body) = send(&s, Method::GET, &format!("{CM}/p1"), "", vec![]).await;
    assert_eq!((code, &body["data"]), (200, &json!({"a": "b"})), "{body}");

    // Impersonating groups under an empty user name: 400, not the caller.
    let resp = s
        .http()
        .get(format!("{}/api/v1/namespaces", s.url))
        .bearer_auth("viewer-token")
        .header("Impersonate-User", "")
        .header("Impersonate-Group", "system:masters")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("status body");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("without impersonating a user name"),
        "{body}"
    );

    // Accepted as kube accepts them.
    let long = "a".repeat(253);
    let (code, body) = send(&s, Method::POST, CM, json, cm(&long, json!({}))).await;
    assert_eq!(
        code, 201,
        "a 253-character name is a valid subdomain: {body}"
    );
    let (code, body) = send(&s, Method::GET, &format!("{CM}?limit=-1"), "", vec![]).await;
    assert_eq!(code, 200, "{body}");
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"p1") && names.contains(&long.as_str()),
        "{names:?}"
    );
    // A negative watch timeout has already passed: one ERROR event.
    let (code, body) = send(
        &s,
        Method::GET,
        &format!("{CM}?watch=1&timeoutSeconds=-5"),
        "",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body["type"], "ERROR", "{body}");
    assert_eq!(body["object"]["message"], "context deadline exceeded");

    // Bodies over 3 MiB: 413 with kube's message.
    let huge = vec![b'x'; 20 << 20];
    let (code, body) = send(&s, Method::POST, CM, json, huge).await;
    assert_eq!(
        (code, reason(&body)),
        (413, "RequestEntityTooLarge"),
        "{body}"
    );
    assert_eq!(
        body["message"],
        "Request entity too large: limit is 3145728"
    );
}

/// A client certificate that another CA signed is a 401 with a Status (the
/// handshake does not fail), and a valid token on the same connection
/// still counts, as in kube's union of authenticators.
#[tokio::test]
async fn a_client_certificate_from_another_ca_is_a_401() {
    let s = Server::start();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "not-the-cluster-ca");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mallory");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:masters");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pem = format!("{}{}{}", cert.pem(), ca_cert.pem(), key.serialize_pem());
    let ca = std::fs::read(s.dir.join("data/pki/ca.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("{}/api/v1/namespaces", s.url);
    let resp = client
        .get(&url)
        .send()
        .await
        .expect("the handshake succeeds");
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["kind"], "Status");
    let resp = client
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// 500 watchers that never read while a 500 KB ConfigMap is replaced 200
/// times: without a bound on each watcher's unsent bytes this took the
/// server from 59 MB to 17 GB. Now what stays is about the store's shared
/// event history; kube-apiserver grows about as much (248 -> 606 MB).
#[tokio::test]
async fn stalled_watchers_do_not_grow_memory_without_bound() {
    const WATCHERS: usize = 500;
    const UPDATES: usize = 200;
    const BOUND_MIB: u64 = 768;
    let s = Server::start();
    let pid = s.pid();
    let json = "application/json";
    let object = |i: usize| {
        serde_json::to_vec(&json!({"metadata": {"name": "stall"}, "data": {"a": format!("{}{i}", "x".repeat(500_000))}}))
            .unwrap()
    };
    let (code, _) = send(&s, Method::POST, CM, json, object(0)).await;
    assert_eq!(code, 201);
    let ca = std::fs::read(s.dir.join("data/pki/ca.crt")).unwrap();
    let url = format!("{}{CM}?watch=1&fieldSelector=metadata.name%3Dstall", s.url);
    // Own connections (HTTP/1.1, no pool sharing), each response held and
    // never read.
    let mut stalled = Vec::new();
    for _ in 0..WATCHERS {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .http1_only()
            .build()
            .unwrap();
        let resp = client
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("watch");
        assert_eq!(resp.status().as_u16(), 200);
        stalled.push((client, resp));
    }
    let before = rss_mib(pid);
    for i in 1..=UPDATES {
        let (code, body) = send(&s, Method::PUT, &format!("{CM}/stall"), json, object(i)).await;
        assert_eq!(code, 200, "{body}");
    }
    let after = rss_mib(pid);
    eprintln!(
        "stalled watchers: RSS {before} MiB with {WATCHERS} watchers, {after} MiB after {UPDATES} updates"
    );
    assert!(
        after < BOUND_MIB,
        "RSS {after} MiB with stalled watchers (bound {BOUND_MIB})"
    );
    drop(stalled);
    // Still serving: a new watcher sees the last update.
    let resp = s
        .http()
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let mut chunks = resp.bytes_stream();
    let mut first = Vec::new();
    while !first.contains(&b'\n') {
        first.extend_from_slice(&chunks.next().await.expect("an event").expect("bytes"));
    }
    let line = first.split(|&b| b == b'\n').next().unwrap();
    let event: Value = serde_json::from_slice(line).unwrap_or_default();
    assert!(
        event["object"]["data"]["a"]
            .as_str()
            .is_some_and(|a| a.ends_with(&UPDATES.to_string())),
        "first event of a new watch: {}",
        String::from_utf8_lossy(&first[..first.len().min(200)])
    );
}

//! Service-account tokens: TokenRequest, binding to pods, secrets and
//! nodes, expiry, and tokens signed with the server's key.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use super::*;

/// Sign `claims` with the server's service-account key (as a test can read
/// it from the data dir), to make tokens the API would never issue.
fn sign_with_server_key(dir: &Path, claims: &Value) -> String {
    use base64::Engine;
    let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let pem = std::fs::read_to_string(dir.join("data/pki/sa.key")).expect("sa.key");
    let der = rcgen::KeyPair::from_pem(&pem).expect("key").serialize_der();
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der,
        &rng,
    )
    .expect("p256 key");
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "ES256"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(&rng, input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(sig.as_ref()))
}

fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("jwt");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims json")
}

#[tokio::test]
async fn service_account_tokens() {
    let s = Server::start();
    // Every namespace gets its default service account.
    s.ok(&["create", "namespace", "team"]);
    s.ok(&["get", "serviceaccount", "default", "-n", "team"]);

    // kubectl create token (protobuf body): a JWT for the API audience.
    let token = s.ok(&["create", "token", "default", "-n", "team"]);
    let token = token.trim();
    let claims = jwt_claims(token);
    assert_eq!(claims["sub"], "system:serviceaccount:team:default");
    assert_eq!(
        claims["aud"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 3600);
    let whoami = |token: &str| {
        s.kubectl(&[
            "--token",
            token,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ])
    };
    let out = whoami(token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        who.starts_with("system:serviceaccount:team:default "),
        "{who}"
    );
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    ] {
        assert!(who.contains(&format!("\"{g}\"")), "{who}");
    }
    // A service account is no admin.
    let err = String::from_utf8_lossy(
        &s.kubectl(&["--token", token, "get", "pods", "-n", "team"])
            .stderr,
    )
    .into_owned();
    assert!(err.contains("forbidden"), "{err}");

    // Wrong audience, too short a lifetime, a missing service account.
    let other = s.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--audience",
        "vault",
    ]);
    assert_eq!(jwt_claims(other.trim())["aud"], json!(["vault"]));
    let err = String::from_utf8_lossy(&whoami(other.trim()).stderr).into_owned();
    assert!(err.contains("Unauthorized"), "{err}");
    let err = s.fails(&[
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--duration",
        "5m",
    ]);
    assert!(err.contains("less than 10 minutes"), "{err}");
    let err = s.fails(&["create", "token", "ghost", "-n", "team"]);
    assert!(err.contains("not found"), "{err}");
    let long = s.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--duration",
        "2h",
    ]);
    let c = jwt_claims(long.trim());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        7200
    );

    // A deleted service account's tokens stop working, even once one of
    // the same name is made again.
    s.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    let robot = s.ok(&["create", "token", "robot", "-n", "team"]);
    assert!(whoami(robot.trim()).status.success());
    s.ok(&["delete", "serviceaccount", "robot", "-n", "team"]);
    s.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    let err = String::from_utf8_lossy(&whoami(robot.trim()).stderr).into_owned();
    assert!(err.contains("Unauthorized"), "{err}");

    // Bound to a pod: valid while the pod lives.
    let pods: Api<Pod> = Api::namespaced(s.client().await, "team");
    let pod: Pod = serde_json::from_value(pod_json("web", None)).unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    let bound = s.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "team",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ]);
    let c = jwt_claims(bound.trim());
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "web");
    assert_eq!(
        c["kubernetes.io"]["pod"]["uid"].as_str(),
        pod.metadata.uid.as_deref()
    );
    assert!(whoami(bound.trim()).status.success());
    let err = s.fails(&[
        "create",
        "token",
        "robot",
        "-n",
        "team",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ]);
    assert!(err.contains("different serviceaccount"), "{err}");
    s.ok(&["delete", "pod", "web", "-n", "team"]);
    let err = String::from_utf8_lossy(&whoami(bound.trim()).stderr).into_owned();
    assert!(err.contains("Unauthorized"), "{err}");

    // Expiry: the same claims signed with the server's key work while
    // current and are refused once past exp.
    let sa_uid = s.ok(&[
        "get",
        "sa",
        "default",
        "-n",
        "team",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let made = |exp: i64| {
        sign_with_server_key(
            &s.dir,
            &json!({"iss": "https://kubernetes.default.svc.cluster.local",
                "aud": ["https://kubernetes.default.svc.cluster.local"],
                "sub": "system:serviceaccount:team:default", "iat": now - 7200, "nbf": now - 7200,
                "exp": exp, "kubernetes.io": {"namespace": "team",
                "serviceaccount": {"name": "default", "uid": sa_uid}}}),
        )
    };
    assert!(whoami(&made(now + 600)).status.success());
    let err = String::from_utf8_lossy(&whoami(&made(now - 3600)).stderr).into_owned();
    assert!(err.contains("Unauthorized"), "{err}");

    // The issuer's discovery documents, and the key that signed the token.
    let (code, oidc) = s
        .call(
            reqwest::Method::GET,
            "/.well-known/openid-configuration",
            Some(token),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{oidc}");
    assert_eq!(
        oidc["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert!(
        oidc["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with("/openid/v1/jwks")
    );
    let (code, jwks) = s
        .call(
            reqwest::Method::GET,
            "/openid/v1/jwks",
            Some(token),
            "",
            vec![],
        )
        .await;
    assert_eq!(code, 200, "{jwks}");
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    let (code, _) = s
        .call(reqwest::Method::GET, "/openid/v1/jwks", None, "", vec![])
        .await;
    assert_eq!(code, 403);

    // A node may ask only for tokens bound to pods on it.
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/namespaces/team/serviceaccounts/default/token",
            Some(N1_TOKEN),
            "application/json",
            json!({"spec": {}}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    let pod: Pod = serde_json::from_value(pod_json("onn1", Some("n1"))).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/namespaces/team/serviceaccounts/default/token",
            Some(N1_TOKEN),
            "application/json",
            json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "onn1"}}})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["status"]["token"].is_string());
    assert!(body["status"]["expirationTimestamp"].is_string());
    // The key survives a restart: tokens issued before still work.
    drop(pods);
    let dir = s.dir.clone();
    let token = token.to_string();
    let mut s = s;
    s.kill9();
    let _tmp = s._tmp.take();
    let s2 = Server::start_in(&dir, &[]);
    let out = s2.kubectl(&["--token", &token, "auth", "whoami"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

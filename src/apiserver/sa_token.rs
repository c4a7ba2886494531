//! Service-account tokens, as kube-apiserver's TokenRequest API and its
//! service-account authenticator do them: JWTs signed ES256 with a key kept
//! in the data dir (`pki/sa.key`), bound to audiences and an expiry, and
//! optionally to a pod, secret or node; a token authenticates only while its
//! service account (and bound object) still exist with the uids it names.
//! Also the OIDC discovery documents (`/.well-known/openid-configuration`,
//! `/openid/v1/jwks`) that let others verify our tokens.
//!
//! Signing uses `ring` directly (already in the tree under rustls and
//! rcgen): ES256 is one call, and a JWT is two base64url JSON documents and
//! a signature, so a JWT crate would add code without removing any.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::{Response, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::Digest;

use crate::apiserver::State;
use crate::apiserver::auth::User;
use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::handlers::blocking;
use crate::apiserver::http::{Body, Ctx, Target};
use crate::apiserver::store::{Store, object_key};

/// kube's bounds on a requested token lifetime.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
const DEFAULT_EXPIRATION: i64 = 3600;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unb64(data: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(data)
        .ok()
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Signs and verifies tokens with one P-256 key.
pub struct Issuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    /// The `iss` claim, and the only API audience.
    pub issuer: String,
    pub jwks_uri: String,
}

/// What a valid token of ours says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub namespace: String,
    pub service_account: (String, String),
    /// (kind, name, uid) of the object the token is bound to.
    pub bound: Option<(String, String, String)>,
}

impl Issuer {
    /// `pkcs8` is the key's DER (P-256, as rcgen generates by default).
    pub fn new(pkcs8: &[u8], issuer: &str, jwks_uri: &str) -> Result<Issuer, String> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                .map_err(|e| format!("service-account key: {e}"))?;
        // kube's key id: SHA-256 of the DER SubjectPublicKeyInfo. For P-256
        // that is a fixed prefix and the uncompressed point.
        const P256_SPKI_PREFIX: &[u8] = &[
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        let kid = b64(&sha2::Sha256::digest(&spki));
        Ok(Issuer {
            key,
            rng,
            kid,
            issuer: issuer.to_string(),
            jwks_uri: jwks_uri.to_string(),
        })
    }

    pub fn sign(&self, claims: &Value) -> Result<String, ApiError> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| ApiError::Internal("signing a token failed".into()))?;
        Ok(format!("{signing_input}.{}", b64(sig.as_ref())))
    }

    /// Check signature, issuer, time and audience. None for anything that
    /// is not a currently valid token of ours for this API.
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        self.verify_for(token, now, std::slice::from_ref(&self.issuer))
            .map(|(c, _)| c)
    }

    /// As `verify`, for a token that must carry one of `audiences`; also
    /// returns the audiences it has of those.
    pub fn verify_for(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Option<(Claims, Vec<String>)> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&unb64(h)?).ok()?;
        if header["alg"] != "ES256" {
            return None;
        }
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        public
            .verify(format!("{h}.{c}").as_bytes(), &unb64(s)?)
            .ok()?;
        let claims: Value = serde_json::from_slice(&unb64(c)?).ok()?;
        if claims["iss"] != self.issuer.as_str() {
            return None;
        }
        // A minute of leeway for clocks, as kube's validator allows.
        let exp = claims["exp"].as_i64()?;
        if now > exp + 60 || claims["nbf"].as_i64().is_some_and(|nbf| now + 60 < nbf) {
            return None;
        }
        let token_audiences: Vec<&str> = match &claims["aud"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let matched: Vec<String> = audiences
            .iter()
            .filter(|a| token_audiences.contains(&a.as_str()))
            .cloned()
            .collect();
        if matched.is_empty() {
            return None;
        }
        let k = &claims["kubernetes.io"];
        let s = |v: &Value| v.as_str().unwrap_or("").to_string();
        let sa = (
            s(&k["serviceaccount"]["name"]),
            s(&k["serviceaccount"]["uid"]),
        );
        let namespace = s(&k["namespace"]);
        if sa.0.is_empty() || namespace.is_empty() {
            return None;
        }
        if claims["sub"] != format!("system:serviceaccount:{namespace}:{}", sa.0) {
            return None;
        }
        let bound = ["pod", "secret", "node"]
            .iter()
            .find(|kind| k[**kind].is_object())
            .map(|kind| (kind.to_string(), s(&k[*kind]["name"]), s(&k[*kind]["uid"])));
        Some((
            Claims {
                namespace,
                service_account: sa,
                bound,
            },
            matched,
        ))
    }

    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        // Uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
        json!({"keys": [{
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]})
    }
}

/// The user a verified token stands for, if its service account and bound
/// object still exist with the uids it was issued for (a deleted and
/// recreated service account does not inherit old tokens).
pub fn user_for(store: &Store, claims: &Claims) -> Result<Option<User>, ApiError> {
    let ns = &claims.namespace;
    let (sa_name, sa_uid) = &claims.service_account;
    let uid_is = |o: &Value, uid: &str| o["metadata"]["uid"].as_str() == Some(uid);
    let Some(sa) = store.get(&object_key("", "serviceaccounts", ns, sa_name))? else {
        return Ok(None);
    };
    if !uid_is(&sa, sa_uid) {
        return Ok(None);
    }
    if let Some((kind, name, uid)) = &claims.bound {
        let key = match kind.as_str() {
            "pod" => object_key("", "pods", ns, name),
            "secret" => object_key("", "secrets", ns, name),
            _ => object_key("", "nodes", "", name),
        };
        match store.get(&key)? {
            Some(o) if uid_is(&o, uid) => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(User {
        name: format!("system:serviceaccount:{ns}:{sa_name}"),
        uid: sa_uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ],
    }))
}

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid(
        "TokenRequest",
        "authentication.k8s.io",
        name,
        vec![Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message,
        }],
    )
}

/// The request body: JSON or kubectl's protobuf.
fn decode(ctx: &Ctx) -> Result<Value, ApiError> {
    let ct = ctx.content_type.split(';').next().unwrap_or("").trim();
    let body = if ct == "application/vnd.kubernetes.protobuf" {
        crate::apiserver::protobuf::decode(&ctx.body, "authentication.k8s.io/v1", "TokenRequest")?
    } else if ctx.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid TokenRequest: {e}")))?
    };
    if !body.is_object() || !body.get("spec").is_none_or(Value::is_object) {
        return Err(ApiError::BadRequest(
            "invalid TokenRequest: not an object".into(),
        ));
    }
    if let Some(kind) = body["kind"].as_str().filter(|k| *k != "TokenRequest") {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind (TokenRequest)"
        )));
    }
    Ok(body)
}

/// POST serviceaccounts/<name>/token.
pub async fn request(state: &Arc<State>, ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    let body = decode(ctx)?;
    let spec = &body["spec"];
    let expiration = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION,
        v => v.as_i64().ok_or_else(|| {
            invalid(
                &t.name,
                "spec.expirationSeconds",
                format!("Invalid value: {v}: must be an integer"),
            )
        })?,
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            &t.name,
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid(
            &t.name,
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let mut audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if audiences.is_empty() {
        audiences.push(state.sa_issuer.issuer.clone());
    }
    let bound_ref = spec["boundObjectRef"].clone();
    let bound_ref = bound_ref.is_object().then_some(bound_ref);
    if ctx.pod_node.is_some() && bound_ref.as_ref().is_none_or(|r| r["kind"] != "Pod") {
        return Err(ApiError::Forbidden(format!(
            "serviceaccounts \"{}\" is forbidden: a node may only request tokens bound to its pods",
            t.name
        )));
    }
    let pod_node = ctx.pod_node.clone();
    let t2 = t.clone();
    let (sa, bound) = blocking(state, move |s| {
        let t = t2;
        let sa = s
            .store
            .get(&object_key("", "serviceaccounts", &t.namespace, &t.name))?
            .ok_or_else(|| ApiError::not_found("", "serviceaccounts", &t.name))?;
        let Some(r) = bound_ref else {
            return Ok((sa, None));
        };
        let kind = r["kind"].as_str().unwrap_or("");
        let name = r["name"].as_str().unwrap_or("");
        let api_version = r["apiVersion"].as_str().unwrap_or("v1");
        let (resource, namespace) = match (kind, api_version) {
            ("Pod", "v1") => ("pods", t.namespace.as_str()),
            ("Secret", "v1") => ("secrets", t.namespace.as_str()),
            ("Node", "v1") => ("nodes", ""),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token to object of type {api_version}, Kind={kind}"
                )));
            }
        };
        if name.is_empty() {
            return Err(invalid(
                &t.name,
                "spec.boundObjectRef.name",
                "Required value".into(),
            ));
        }
        let object = s
            .store
            .get(&object_key("", resource, namespace, name))?
            .ok_or_else(|| ApiError::not_found("", resource, name))?;
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if let Some(want) = r["uid"].as_str().filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::Conflict(format!(
                "Operation cannot be fulfilled on {kind} \"{name}\": the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
            )));
        }
        if kind == "Pod" {
            let pod_sa = object["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            if pod_sa != t.name {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount \"{}\" to pod running with different serviceaccount name.",
                    t.name
                )));
            }
            if let Some(node) = &pod_node
                && object["spec"]["nodeName"].as_str() != Some(node.as_str())
            {
                return Err(ApiError::Forbidden(format!(
                    "serviceaccounts \"{}\" is forbidden: node \"{node}\" may only request tokens for pods bound to it",
                    t.name
                )));
            }
        }
        Ok((sa, Some((kind.to_string(), object))))
    })
    .await?;

    let now = unix_now();
    let exp = now + expiration;
    let sa_uid = sa["metadata"]["uid"].as_str().unwrap_or("");
    let mut k8s = json!({
        "namespace": t.namespace,
        "serviceaccount": {"name": t.name, "uid": sa_uid},
    });
    let mut bound_ref_out = Value::Null;
    if let Some((kind, object)) = &bound {
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let uid = object["metadata"]["uid"].as_str().unwrap_or("");
        k8s[kind.to_lowercase()] = json!({"name": name, "uid": uid});
        // A pod-bound token names the pod's node too, as kube's does.
        if kind == "Pod"
            && let Some(node) = object["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
        {
            let node_uid = {
                let key = object_key("", "nodes", "", node);
                let node_obj = blocking(state, move |s| Ok(s.store.get(&key)?)).await?;
                node_obj.and_then(|n| n["metadata"]["uid"].as_str().map(String::from))
            };
            if let Some(node_uid) = node_uid {
                k8s["node"] = json!({"name": node, "uid": node_uid});
            }
        }
        bound_ref_out = json!({"kind": kind, "apiVersion": "v1", "name": name, "uid": uid});
    }
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": now,
        "nbf": now,
        "iss": state.sa_issuer.issuer,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{}:{}", t.namespace, t.name),
    });
    let token = state.sa_issuer.sign(&claims)?;
    let expires = UNIX_EPOCH + std::time::Duration::from_secs(exp.max(0) as u64);
    let mut out_spec = json!({"audiences": audiences, "expirationSeconds": expiration});
    if !bound_ref_out.is_null() {
        out_spec["boundObjectRef"] = bound_ref_out;
    }
    Ok(ctx.reply(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": t.name, "namespace": t.namespace, "creationTimestamp": null},
            "spec": out_spec,
            "status": {
                "token": token,
                "expirationTimestamp": humantime::format_rfc3339_seconds(expires).to_string(),
            },
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> Issuer {
        let key = rcgen::KeyPair::generate().unwrap();
        Issuer::new(
            &key.serialize_der(),
            "https://iss",
            "https://x/openid/v1/jwks",
        )
        .unwrap()
    }

    fn claims(aud: &str, exp: i64) -> Value {
        json!({"aud": [aud], "exp": exp, "nbf": 0, "iss": "https://iss",
               "sub": "system:serviceaccount:ns:sa",
               "kubernetes.io": {"namespace": "ns", "serviceaccount": {"name": "sa", "uid": "u1"},
                                 "pod": {"name": "p", "uid": "u2"}}})
    }

    #[test]
    fn tokens_verify_only_when_valid() {
        let i = issuer();
        let now = unix_now();
        let token = i.sign(&claims("https://iss", now + 600)).unwrap();
        let c = i.verify(&token, now).unwrap();
        assert_eq!(c.service_account, ("sa".into(), "u1".into()));
        assert_eq!(c.bound, Some(("pod".into(), "p".into(), "u2".into())));
        // Expired, wrong audience, tampered, another key, garbage.
        assert!(i.verify(&token, now + 3600).is_none());
        let other_aud = i.sign(&claims("https://other", now + 600)).unwrap();
        assert!(i.verify(&other_aud, now).is_none());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(claims("https://iss", now + 99999).to_string().as_bytes());
        parts[1] = &forged;
        assert!(i.verify(&parts.join("."), now).is_none());
        assert!(issuer().verify(&token, now).is_none());
        for junk in ["", "a.b", "a.b.c", "...", "a.b.c.d"] {
            assert!(i.verify(junk, now).is_none());
        }
        let jwks = i.jwks();
        assert_eq!(jwks["keys"][0]["kid"], i.kid);
        assert_eq!(
            unb64(jwks["keys"][0]["x"].as_str().unwrap()).unwrap().len(),
            32
        );
    }
}

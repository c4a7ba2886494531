//! Service-account tokens, as kube-apiserver's token issuer and its
//! service-account authenticator do them (the TokenRequest API that mints
//! them is `token_request`): JWTs signed ES256 with a key kept
//! in the data dir (`pki/sa.key`), bound to audiences and an expiry, and
//! optionally to a pod, secret or node; a token authenticates only while its
//! service account (and bound object) still exist with the uids it names.
//! Also the OIDC discovery documents (`/.well-known/openid-configuration`,
//! `/openid/v1/jwks`) that let others verify our tokens.
//!
//! Signing uses `ring` directly (already in the tree under rustls and
//! rcgen): ES256 is one call, and a JWT is two base64url JSON documents and
//! a signature, so a JWT crate would add code without removing any.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::Digest;

use crate::apiserver::auth::User;
use crate::apiserver::error::ApiError;
use crate::apiserver::store::{Store, object_key};

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

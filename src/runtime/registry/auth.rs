//! Registry authentication: the credentials a CRI `AuthConfig` carries, and the
//! `WWW-Authenticate` challenges of the distribution spec (Basic, and Bearer
//! tokens from a token server, with basic credentials or an OAuth2 refresh token).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Credentials for one pull, as the CRI `AuthConfig` gives them.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token, traded at the token server.
    IdentityToken {
        username: String,
        token: String,
    },
    /// A bearer token to send as it is.
    RegistryToken(String),
}

impl std::fmt::Debug for Credentials {
    // Never print secrets into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username})"),
            Credentials::IdentityToken { username, .. } => write!(f, "IdentityToken({username})"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("auth: field is not valid base64")]
    AuthNotBase64,
    #[error("auth: field must decode to \"username:password\"")]
    AuthNoColon,
}

impl Credentials {
    /// From the fields of a CRI `AuthConfig`. `auth` (base64 of `user:pass`)
    /// wins over username/password, as in docker's config.json.
    pub fn from_auth_config(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Self, CredentialsError> {
        if !registry_token.is_empty() {
            return Ok(Credentials::RegistryToken(registry_token.to_string()));
        }
        let (username, password) = if !auth.is_empty() {
            let decoded = B64
                .decode(auth.trim())
                .map_err(|_| CredentialsError::AuthNotBase64)?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| CredentialsError::AuthNotBase64)?;
            let (u, p) = decoded
                .split_once(':')
                .ok_or(CredentialsError::AuthNoColon)?;
            (u.to_string(), p.to_string())
        } else {
            (username.to_string(), password.to_string())
        };
        if !identity_token.is_empty() {
            return Ok(Credentials::IdentityToken {
                username,
                token: identity_token.to_string(),
            });
        }
        if username.is_empty() && password.is_empty() {
            return Ok(Credentials::Anonymous);
        }
        Ok(Credentials::Basic { username, password })
    }

    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                B64.encode(format!("{username}:{password}"))
            )),
            _ => None,
        }
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        None
    }
}

/// `k="v", k2=v2`, with quoted values that may hold commas.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next().is_none() {
            break;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next()),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>()
        };
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_scope() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
    }

    #[test]
    fn auth_field_wins_and_is_validated() {
        let c = Credentials::from_auth_config("x", "y", &B64.encode("u:p:q"), "", "").unwrap();
        assert_eq!(
            c,
            Credentials::Basic {
                username: "u".into(),
                password: "p:q".into()
            }
        );
        assert_eq!(
            Credentials::from_auth_config("", "", "!!", "", ""),
            Err(CredentialsError::AuthNotBase64)
        );
        assert_eq!(
            Credentials::from_auth_config("", "", &B64.encode("nocolon"), "", ""),
            Err(CredentialsError::AuthNoColon)
        );
        assert_eq!(
            Credentials::from_auth_config("", "", "", "", ""),
            Ok(Credentials::Anonymous)
        );
        assert_eq!(
            Credentials::from_auth_config("u", "p", "", "", "tok"),
            Ok(Credentials::RegistryToken("tok".into()))
        );
        assert!(
            format!(
                "{:?}",
                Credentials::from_auth_config("u", "secret", "", "", "").unwrap()
            )
            .find("secret")
            .is_none()
        );
    }
}

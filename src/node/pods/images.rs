//! Image pulls as the kubelet's image manager does them: imagePullPolicy,
//! imagePullSecrets (dockerconfigjson / dockercfg), per-image back-off, and
//! the events and waiting reasons it reports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};

use crate::cri::api::{ImageService, v1};
use crate::node::podspec::ObjectLookup;

/// A pull that takes longer than this is abandoned (the runtime has its
/// own progress timeout; this only guards a hung call).
const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// The image, ready to run.
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub image_ref: String,
    /// The image config's User, for runAsNonRoot.
    pub user: Option<String>,
}

/// Why the image is not there: the waiting reason and its message.
#[derive(Debug, Clone)]
pub struct ImageError {
    pub reason: &'static str,
    pub message: String,
}

pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";

/// The pull policy, defaulted as the apiserver defaults it (Always for
/// `:latest` or no tag, else IfNotPresent).
pub fn pull_policy(container: &Container) -> String {
    if let Some(p) = &container.image_pull_policy {
        return p.clone();
    }
    let image = container.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always".into(),
        _ => "IfNotPresent".into(),
    }
}

/// The image present in the runtime, if it is.
pub async fn present(
    images: &dyn ImageService,
    image: &str,
) -> Result<Option<PulledImage>, String> {
    let status = tokio::time::timeout(
        STATUS_TIMEOUT,
        images.image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        }),
    )
    .await
    .map_err(|_| "ImageStatus timed out".to_string())?
    .map_err(|e| e.message)?;
    Ok(status.image.map(|i| PulledImage {
        image_ref: i.id.clone(),
        user: image_user(&i),
    }))
}

fn image_user(i: &v1::Image) -> Option<String> {
    if !i.username.is_empty() {
        Some(i.username.clone())
    } else {
        i.uid.as_ref().map(|u| u.value.to_string())
    }
}

/// The registry host of an image reference, as the docker keyring matches it.
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// Credentials from the pod's imagePullSecrets that match the image's
/// registry, in the kubelet's order (secret order, then the most specific key).
pub async fn credentials(pod: &Pod, image: &str, lookup: &dyn ObjectLookup) -> Vec<v1::AuthConfig> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .map(|l| l.iter().map(|r| r.name.clone()).collect())
        .unwrap_or_default();
    let host = registry_host(image);
    let mut out = vec![];
    for name in names {
        match lookup.secret(namespace, &name).await {
            Ok(Some(secret)) => out.extend(secret_auths(&secret, &host, image)),
            Ok(None) => tracing::warn!(secret = %name, "imagePullSecret not found"),
            Err(e) => tracing::warn!(secret = %name, error = %e, "reading an imagePullSecret"),
        }
    }
    out
}

#[derive(serde::Deserialize, Default)]
struct DockerConfigEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

fn secret_auths(secret: &Secret, host: &str, image: &str) -> Vec<v1::AuthConfig> {
    let data = secret.data.clone().unwrap_or_default();
    let entries: BTreeMap<String, DockerConfigEntry> =
        if let Some(b) = data.get(".dockerconfigjson") {
            #[derive(serde::Deserialize)]
            struct Config {
                #[serde(default)]
                auths: BTreeMap<String, DockerConfigEntry>,
            }
            serde_json::from_slice::<Config>(&b.0)
                .map(|c| c.auths)
                .unwrap_or_default()
        } else if let Some(b) = data.get(".dockercfg") {
            serde_json::from_slice(&b.0).unwrap_or_default()
        } else {
            BTreeMap::new()
        };
    let normalized = |key: &str| {
        let k = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let k = k.split('/').next().unwrap_or(k);
        match k {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            other => other.to_string(),
        }
    };
    let path_of = |key: &str| {
        key.trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string()
    };
    let mut matching: Vec<(usize, v1::AuthConfig)> = entries
        .iter()
        .filter(|(key, _)| normalized(key) == host)
        .filter(|(key, _)| {
            // A key with a path matches images under that path only.
            let p = path_of(key);
            !p.contains('/') || image.starts_with(&p) || host == "docker.io"
        })
        .map(|(key, e)| {
            let (mut username, mut password) = (e.username.clone(), e.password.clone());
            if username.is_empty()
                && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&e.auth)
                && let Ok(text) = String::from_utf8(decoded)
                && let Some((u, p)) = text.split_once(':')
            {
                username = u.to_string();
                password = p.to_string();
            }
            (
                key.len(),
                v1::AuthConfig {
                    username,
                    password,
                    auth: e.auth.clone(),
                    server_address: key.clone(),
                    identity_token: e.identitytoken.clone(),
                    registry_token: e.registrytoken.clone(),
                },
            )
        })
        .collect();
    matching.sort_by_key(|m| std::cmp::Reverse(m.0));
    matching.into_iter().map(|(_, a)| a).collect()
}

/// Pulls `image` with each credential in turn (anonymously when none).
/// Returns the image and how long it took.
pub async fn pull(
    images: &dyn ImageService,
    image: &str,
    auths: &[v1::AuthConfig],
    sandbox_config: Option<&v1::PodSandboxConfig>,
) -> Result<(PulledImage, Duration), String> {
    let started = Instant::now();
    let attempts: Vec<Option<v1::AuthConfig>> = if auths.is_empty() {
        vec![None]
    } else {
        auths.iter().cloned().map(Some).collect()
    };
    let mut last_error = String::new();
    for auth in attempts {
        let req = v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            auth,
            sandbox_config: sandbox_config.cloned(),
        };
        match tokio::time::timeout(PULL_TIMEOUT, images.pull_image(req)).await {
            Ok(Ok(resp)) => {
                let user = present(images, &resp.image_ref)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|p| p.user);
                return Ok((
                    PulledImage {
                        image_ref: resp.image_ref,
                        user,
                    },
                    started.elapsed(),
                ));
            }
            Ok(Err(e)) => last_error = e.message,
            Err(_) => last_error = "the pull timed out".into(),
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn the_default_pull_policy_follows_the_tag() {
        let c = |image: &str| Container {
            image: Some(image.into()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("busybox:latest")), "Always");
        assert_eq!(pull_policy(&c("localhost:5000/busybox")), "Always");
        assert_eq!(
            pull_policy(&c("localhost:5000/busybox:1.29")),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&c("busybox@sha256:abc")), "IfNotPresent");
    }

    #[test]
    fn dockerconfigjson_credentials_match_the_registry() {
        let cfg = serde_json::json!({"auths": {
            "127.0.0.1:5000": {"auth": base64::engine::general_purpose::STANDARD.encode("u:p")},
            "https://index.docker.io/v1/": {"username": "d", "password": "q"},
        }});
        let secret = Secret {
            data: Some(
                [(
                    ".dockerconfigjson".to_string(),
                    ByteString(serde_json::to_vec(&cfg).unwrap()),
                )]
                .into(),
            ),
            ..Default::default()
        };
        let a = secret_auths(
            &secret,
            &registry_host("127.0.0.1:5000/x:1"),
            "127.0.0.1:5000/x:1",
        );
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].username.as_str(), a[0].password.as_str()), ("u", "p"));
        let d = secret_auths(
            &secret,
            &registry_host("library/busybox"),
            "library/busybox",
        );
        assert_eq!(d[0].username, "d");
        assert!(secret_auths(&secret, "quay.io", "quay.io/x").is_empty());
    }
}

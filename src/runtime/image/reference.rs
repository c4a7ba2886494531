//! Image references as users write them (`busybox`, `name:tag`, `name@digest`)
//! normalized the way docker and containerd do (`docker.io/library/busybox:latest`).

use oci_spec::distribution::Reference;

use super::error::ImageError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io`, `registry.k8s.io`, `127.0.0.1:5000`
    pub registry: String,
    /// `library/busybox`, `e2e-test-images/busybox`
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<Self, ImageError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(ImageError::invalid("image reference is empty"));
        }
        if trimmed != input || trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ImageError::invalid(format!(
                "image reference {input:?} contains whitespace"
            )));
        }
        let parsed: Reference = input.parse().map_err(|e| {
            ImageError::invalid(format!("image reference {input:?} is malformed: {e}"))
        })?;
        let digest = parsed.digest().map(str::to_string);
        if let Some(digest) = &digest {
            validate_digest(digest)
                .map_err(|m| ImageError::invalid(format!("image reference {input:?}: {m}")))?;
        }
        // A bare name means :latest; a digest alone needs no tag.
        let tag = match (parsed.tag(), &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry: parsed.registry().to_string(),
            repository: parsed.repository().to_string(),
            tag,
            digest,
        })
    }

    /// `registry/repository`
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, when the reference has a tag.
    pub fn repo_tag(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}:{tag}", self.name()))
    }

    /// `registry/repository@digest` for the given manifest digest.
    pub fn repo_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Only sha256 is in use by registries; anything else we cannot verify.
pub fn validate_digest(digest: &str) -> Result<(), String> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(format!("digest {digest:?} is not sha256"));
    };
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("digest {digest:?} is not 64 lowercase hex digits"));
    }
    Ok(())
}

/// An image id as CRI clients pass it: `sha256:<64 hex>` or the bare hex.
pub fn as_image_id(input: &str) -> Option<String> {
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    (validate_digest(&format!("sha256:{hex}")).is_ok()).then(|| format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_normalize_like_docker() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.repo_tag().unwrap(), "docker.io/library/busybox:latest");
        let r = ImageRef::parse("registry.k8s.io/e2e-test-images/busybox:1.29-2").unwrap();
        assert_eq!(r.registry, "registry.k8s.io");
        assert_eq!(r.repository, "e2e-test-images/busybox");
        assert_eq!(r.manifest_reference(), "1.29-2");
        let r = ImageRef::parse("127.0.0.1:5000/x/y").unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/x/y:latest");
    }

    #[test]
    fn digests_pin_the_manifest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.repo_digest(&d), format!("docker.io/library/busybox@{d}"));
        let r = ImageRef::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.manifest_reference(), d);
    }

    #[test]
    fn malformed_references_are_invalid_argument() {
        for bad in [
            "",
            " busybox",
            "Busybox",
            "busy box",
            "busybox@sha256:abc",
            "a//b",
            "busybox:",
            ":tag",
            "busybox@md5:0123",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert_eq!(
                err.kind,
                super::super::error::ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn image_ids() {
        let hex = "b".repeat(64);
        assert_eq!(as_image_id(&hex), Some(format!("sha256:{hex}")));
        assert_eq!(
            as_image_id(&format!("sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(as_image_id("busybox"), None);
    }
}

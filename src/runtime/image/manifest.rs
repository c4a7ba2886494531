//! The manifest formats a pull meets: OCI and Docker schema 2 manifests and
//! indexes. Parsed leniently (unknown fields ignored) but checked strictly
//! where it matters: media types, digests, sizes.

use std::collections::HashMap;

use serde::Deserialize;

use super::reference::validate_digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

impl Descriptor {
    pub fn to_containerd(&self) -> containerd_client::types::Descriptor {
        containerd_client::types::Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: self.annotations.clone(),
        }
    }

    fn check(&self, what: &str) -> Result<(), String> {
        validate_digest(&self.digest).map_err(|m| format!("{what}: {m}"))?;
        if self.size < 0 {
            return Err(format!("{what} {}: negative size", self.digest));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawDocument {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone)]
pub struct Index {
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone)]
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

/// Parses a manifest or index. `declared` is the registry's Content-Type (or
/// the descriptor's media type); the document's own `mediaType` breaks ties.
pub fn parse(bytes: &[u8], declared: &str) -> Result<Document, String> {
    let raw: RawDocument =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    let media_type = match (declared, raw.media_type.as_deref()) {
        (d, _) if is_known(d) => d.to_string(),
        (_, Some(m)) if is_known(m) => m.to_string(),
        // OCI allows an absent mediaType; the shape decides.
        (d, None) if d.is_empty() || d == "application/json" || d == "text/plain" => {
            if raw.manifests.is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        }
        (d, m) => {
            let shown = if d.is_empty() { m.unwrap_or("none") } else { d };
            return Err(format!("manifest has unsupported media type {shown:?}"));
        }
    };
    if raw.schema_version != Some(2) {
        return Err(format!(
            "manifest schemaVersion {:?} is not supported (only 2)",
            raw.schema_version
        ));
    }
    if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        let manifests = raw.manifests.ok_or("index has no manifests")?;
        for m in &manifests {
            m.check("index entry")?;
        }
        return Ok(Document::Index(Index {
            media_type,
            manifests,
        }));
    }
    let config = raw.config.ok_or("manifest has no config")?;
    config.check("config")?;
    let layers = raw.layers.unwrap_or_default();
    for layer in &layers {
        layer.check("layer")?;
        if !LAYER_TYPES.contains(&layer.media_type.as_str()) {
            return Err(format!(
                "layer {} has unsupported media type {:?}",
                layer.digest, layer.media_type
            ));
        }
    }
    Ok(Document::Manifest(Manifest {
        media_type,
        config,
        layers,
    }))
}

fn is_known(media_type: &str) -> bool {
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].contains(&media_type)
}

/// The platform this node runs: linux and the GOARCH name of our CPU.
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Platform {
        architecture: architecture.to_string(),
        os: "linux".to_string(),
        variant: None,
    }
}

/// The index entry for `platform`: os and architecture must match; among
/// several, one without a variant or with the first variant listed wins.
pub fn select_platform<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|m| is_known(&m.media_type) || m.media_type.is_empty())
        .filter(|m| match &m.platform {
            Some(p) => p.os == platform.os && p.architecture == platform.architecture,
            None => false,
        })
        .collect();
    candidates
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .and_then(|p| p.variant.as_deref())
                .is_none()
                || platform.variant.is_some()
        })
        .or(candidates.first())
        .copied()
}

/// Parses and checks an image config: it must list one diff id per layer.
pub fn parse_config(bytes: &[u8], layer_count: usize) -> Result<ImageConfig, String> {
    let config: ImageConfig = serde_json::from_slice(bytes)
        .map_err(|e| format!("image config is not valid JSON: {e}"))?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != layer_count {
        return Err(format!(
            "image config lists {} layer diff ids for {layer_count} layers",
            diff_ids.len()
        ));
    }
    for d in diff_ids {
        validate_digest(d)?;
    }
    Ok(config)
}

/// The parts of an OCI image config the runtime reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub config: Option<ExecConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// How the image wants its process run (the OCI config's `config` object).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExecConfig {
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// The signal that stops it (`SIGQUIT`, `QUIT` or `3`).
    #[serde(rename = "StopSignal", default)]
    pub stop_signal: Option<String>,
}

impl ImageConfig {
    /// The image's user, as CRI reports it: a numeric uid, else a name.
    pub fn user(&self) -> (Option<i64>, String) {
        let user = self
            .config
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .unwrap_or("");
        let name = user.split(':').next().unwrap_or("");
        if name.is_empty() {
            return (None, String::new());
        }
        match name.parse::<i64>() {
            Ok(uid) => (Some(uid), String::new()),
            Err(_) => (None, name.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: char) -> String {
        format!("sha256:{}", n.to_string().repeat(64))
    }

    #[test]
    fn picks_linux_amd64_from_an_index() {
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"windows"}}}}]}}"#,
            d('a'),
            d('b'),
            d('c')
        );
        let Document::Index(index) = parse(text.as_bytes(), "").unwrap() else {
            panic!("not an index")
        };
        let platform = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(select_platform(&index, &platform).unwrap().digest, d('b'));
        let none = Platform {
            architecture: "s390x".into(),
            ..platform
        };
        assert!(select_platform(&index, &none).is_none());
    }

    #[test]
    fn rejects_schema1_and_unknown_types_and_bad_digests() {
        let schema1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(
            parse(
                schema1.as_bytes(),
                "application/vnd.docker.distribution.manifest.v1+prettyjws"
            )
            .is_err()
        );
        assert!(parse(b"<html>", "text/html").is_err());
        let bad_digest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"sha256:12","size":1}},"layers":[]}}"#
        );
        assert!(parse(bad_digest.as_bytes(), OCI_MANIFEST).is_err());
        let bad_layer = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[{{"mediaType":"text/plain","digest":"{}","size":1}}]}}"#,
            d('a'),
            d('b')
        );
        assert!(
            parse(bad_layer.as_bytes(), OCI_MANIFEST)
                .unwrap_err()
                .contains("text/plain")
        );
    }

    #[test]
    fn config_users() {
        let c = |u: &str| ImageConfig {
            config: Some(ExecConfig {
                user: Some(u.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(c("1000").user(), (Some(1000), String::new()));
        assert_eq!(c("1000:50").user(), (Some(1000), String::new()));
        assert_eq!(c("nobody:nogroup").user(), (None, "nobody".into()));
        assert_eq!(c("").user(), (None, String::new()));
        assert!(parse_config(br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#, 1).is_err());
    }
}

//! Registry host configuration in containerd's `hosts.toml` layout
//! (`<dir>/<host>/hosts.toml`, `<dir>/_default/hosts.toml`), so a node reuses
//! the mirror, CA and header settings it already has for containerd.
//!
//! The rules follow containerd's `remotes/docker/config`: mirrors (`[host."URL"]`)
//! are tried in file order, then the upstream (`server`, else `https://<host>`);
//! a URL without a path gets `/v2` appended unless `override_path` is set; the
//! scheme decides plain http versus TLS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a host may be used for, as containerd names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub pull: bool,
    pub resolve: bool,
}

impl Capabilities {
    const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
    };
}

/// One endpoint to try for a registry: a mirror or the upstream itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    /// `scheme://host[:port]`, no path.
    pub origin: String,
    /// Path prefix of the distribution API, normally `/v2`.
    pub api_prefix: String,
    pub capabilities: Capabilities,
    pub skip_verify: bool,
    /// PEM files of extra CAs to trust for this host.
    pub ca_files: Vec<PathBuf>,
    pub headers: Vec<(String, String)>,
}

impl RegistryHost {
    /// `<origin><api_prefix>/<repository>/<kind>/<reference>`
    pub fn url(&self, repository: &str, kind: &str, reference: &str) -> String {
        format!(
            "{}{}/{}/{}/{}",
            self.origin, self.api_prefix, repository, kind, reference
        )
    }

    pub fn is_plain_http(&self) -> bool {
        self.origin.starts_with("http://")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    ca: Option<StringOrList>,
    #[serde(default)]
    client: Option<toml::Value>,
    #[serde(default)]
    header: BTreeMap<String, StringOrList>,
    #[serde(default)]
    override_path: Option<bool>,
    /// Mirrors, in file order: containerd tries them in the order written.
    #[serde(default)]
    host: toml::value::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSection {
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    ca: Option<StringOrList>,
    #[serde(default)]
    client: Option<toml::Value>,
    #[serde(default)]
    header: BTreeMap<String, StringOrList>,
    #[serde(default)]
    override_path: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// The directory of per-registry `hosts.toml` files.
#[derive(Debug, Clone)]
pub struct HostsConfig {
    dir: PathBuf,
}

impl HostsConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The endpoints to try, in order, for `registry` (e.g. `docker.io`,
    /// `127.0.0.1:5000`). Read on every call so edits apply without a restart,
    /// as containerd does.
    pub fn hosts_for(&self, registry: &str) -> Result<Vec<RegistryHost>, HostsError> {
        let specific = self.dir.join(host_dir_name(registry)).join("hosts.toml");
        let default = self.dir.join("_default").join("hosts.toml");
        let path = [specific, default].into_iter().find(|p| p.is_file());
        let Some(path) = path else {
            return Ok(vec![default_upstream(registry)]);
        };
        let text = std::fs::read_to_string(&path).map_err(|source| HostsError::Read {
            path: path.clone(),
            source,
        })?;
        parse_hosts(registry, &text, &path)
    }
}

/// containerd names the directory after the host, with a port as `host:port`;
/// docker.io's is `docker.io`.
fn host_dir_name(registry: &str) -> &str {
    registry
}

fn default_upstream(registry: &str) -> RegistryHost {
    let host = if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    };
    RegistryHost {
        origin: format!("https://{host}"),
        api_prefix: "/v2".into(),
        capabilities: Capabilities::ALL,
        skip_verify: false,
        ca_files: vec![],
        headers: vec![],
    }
}

fn parse_hosts(registry: &str, text: &str, path: &Path) -> Result<Vec<RegistryHost>, HostsError> {
    let parse_err = |message: String| HostsError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let file: HostsFile = toml::from_str(text).map_err(|e| parse_err(e.message().to_string()))?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut hosts = Vec::new();
    // toml's `preserve_order` keeps the tables in file order.
    for (url, value) in file.host {
        let section: HostSection = value.try_into().map_err(|e: toml::de::Error| {
            parse_err(format!("[host.\"{url}\"]: {}", e.message()))
        })?;
        let _ = section.client; // client certificates: not supported yet
        hosts.push(
            build_host(
                &url,
                section.capabilities,
                section.skip_verify,
                section.ca,
                section.header,
                section.override_path,
                base,
            )
            .map_err(|m| parse_err(format!("[host.\"{url}\"]: {m}")))?,
        );
    }
    let _ = file.client;
    let upstream_url = match &file.server {
        Some(server) => server.clone(),
        None => default_upstream(registry).origin,
    };
    hosts.push(
        build_host(
            &upstream_url,
            file.capabilities,
            file.skip_verify,
            file.ca,
            file.header,
            file.override_path,
            base,
        )
        .map_err(|m| parse_err(format!("server: {m}")))?,
    );
    Ok(hosts)
}

fn build_host(
    url: &str,
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<StringOrList>,
    header: BTreeMap<String, StringOrList>,
    override_path: Option<bool>,
    base: &Path,
) -> Result<RegistryHost, String> {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let parsed = url::Url::parse(&with_scheme).map_err(|e| format!("bad URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("URL {url:?} must be http or https"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("URL {url:?} has no host"))?;
    let origin = match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    };
    let path = parsed.path().trim_end_matches('/').to_string();
    let api_prefix = if override_path.unwrap_or(false) {
        path
    } else if path.is_empty() {
        "/v2".to_string()
    } else if path.ends_with("/v2") {
        path
    } else {
        format!("{path}/v2")
    };
    let capabilities = match capabilities {
        None => Capabilities::ALL,
        Some(list) => {
            let mut caps = Capabilities {
                pull: false,
                resolve: false,
            };
            for cap in list {
                match cap.as_str() {
                    "pull" => caps.pull = true,
                    "resolve" => caps.resolve = true,
                    "push" => {}
                    other => return Err(format!("unknown capability {other:?}")),
                }
            }
            caps
        }
    };
    let ca_files = ca
        .map(StringOrList::into_vec)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        })
        .collect();
    let headers = header
        .into_iter()
        .flat_map(|(name, values)| {
            values
                .into_vec()
                .into_iter()
                .map(move |v| (name.clone(), v))
        })
        .collect();
    Ok(RegistryHost {
        origin,
        api_prefix,
        capabilities,
        skip_verify: skip_verify.unwrap_or(false),
        ca_files,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<RegistryHost> {
        parse_hosts(
            "registry.k8s.io",
            text,
            Path::new("/etc/deckhand/certs.d/registry.k8s.io/hosts.toml"),
        )
        .unwrap()
    }

    #[test]
    fn mirrors_come_first_in_file_order_then_the_server() {
        let hosts = parse(
            r#"
server = "https://registry.k8s.io"

[host."http://127.0.0.1:5001"]
  capabilities = ["pull"]

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = "ca.pem"
  [host."http://127.0.0.1:5000".header]
    x-custom = ["a", "b"]
"#,
        );
        let origins: Vec<_> = hosts.iter().map(|h| h.origin.as_str()).collect();
        assert_eq!(
            origins,
            [
                "http://127.0.0.1:5001",
                "http://127.0.0.1:5000",
                "https://registry.k8s.io"
            ]
        );
        assert!(hosts[0].capabilities.pull && !hosts[0].capabilities.resolve);
        assert!(hosts[1].skip_verify);
        assert_eq!(
            hosts[1].ca_files,
            [PathBuf::from(
                "/etc/deckhand/certs.d/registry.k8s.io/ca.pem"
            )]
        );
        assert_eq!(
            hosts[1].headers,
            [
                ("x-custom".to_string(), "a".to_string()),
                ("x-custom".to_string(), "b".to_string())
            ]
        );
        assert!(hosts[2].capabilities.resolve);
    }

    #[test]
    fn mirror_keeps_the_repository_path() {
        let hosts = parse("[host.\"http://127.0.0.1:5000\"]\n");
        assert_eq!(
            hosts[0].url("e2e-test-images/busybox", "manifests", "1.29-2"),
            "http://127.0.0.1:5000/v2/e2e-test-images/busybox/manifests/1.29-2"
        );
        assert!(hosts[0].is_plain_http());
        assert_eq!(hosts[1].origin, "https://registry.k8s.io");
    }

    #[test]
    fn path_prefix_and_override_path() {
        let hosts = parse(
            "[host.\"https://mirror.example/registry\"]\n[host.\"https://other.example/api/x\"]\noverride_path = true\n",
        );
        assert_eq!(hosts[0].api_prefix, "/registry/v2");
        assert_eq!(hosts[1].api_prefix, "/api/x");
    }

    #[test]
    fn unknown_keys_and_capabilities_are_errors() {
        let path = Path::new("/x/hosts.toml");
        assert!(parse_hosts("r", "sever = \"https://x\"", path).is_err());
        assert!(parse_hosts("r", "[host.\"https://m\"]\ncapabilities = [\"fly\"]", path).is_err());
        assert!(parse_hosts("r", "server = \"ftp://x\"", path).is_err());
    }

    #[test]
    fn missing_file_means_https_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = HostsConfig::new(dir.path()).hosts_for("docker.io").unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].origin, "https://registry-1.docker.io");
    }

    #[test]
    fn default_dir_applies_when_no_host_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("_default")).unwrap();
        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "[host.\"http://127.0.0.1:5000\"]\n",
        )
        .unwrap();
        let hosts = HostsConfig::new(dir.path()).hosts_for("quay.io").unwrap();
        assert_eq!(hosts[0].origin, "http://127.0.0.1:5000");
        assert_eq!(hosts[1].origin, "https://quay.io");
    }
}

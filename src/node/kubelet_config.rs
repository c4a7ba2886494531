//! The KubeletConfiguration file (`--config`, kubelet.config.k8s.io/v1beta1):
//! the fields `deckhand node` honours, and the names of every other field it
//! was given (the caller warns about each, so a kubeadm config loads as is).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
pub const KIND: &str = "KubeletConfiguration";

#[derive(Debug, thiserror::Error)]
pub enum KubeletConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: expected {API_VERSION} {KIND}, got apiVersion {api_version:?} kind {kind:?}")]
    WrongKind {
        path: String,
        api_version: String,
        kind: String,
    },
}

/// A taint as `registerWithTaints` lists it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct TaintSpec {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    pub effect: String,
}

/// The honoured fields, each `None` when the file leaves it out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub port: Option<u16>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    pub max_pods: Option<u32>,
    pub cgroup_driver: Option<String>,
    pub cgroup_root: Option<String>,
    pub cgroups_per_qos: Option<bool>,
    pub resolv_conf: Option<String>,
    pub register_with_taints: Option<Vec<TaintSpec>>,
    pub register_node: Option<bool>,
    pub kube_reserved: Option<BTreeMap<String, String>>,
    pub system_reserved: Option<BTreeMap<String, String>>,
    pub eviction_hard: Option<BTreeMap<String, String>>,
    pub node_status_update_frequency: Option<String>,
    pub node_status_report_frequency: Option<String>,
    pub node_lease_duration_seconds: Option<i32>,
    pub serialize_image_pulls: Option<bool>,
    pub container_runtime_endpoint: Option<String>,
    pub seccomp_default: Option<bool>,
    pub container_log_max_size: Option<String>,
    pub container_log_max_files: Option<i32>,
    pub container_log_max_workers: Option<i32>,
    pub container_log_monitor_interval: Option<String>,
    pub address: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    pub authentication: Option<Authentication>,
    pub authorization: Option<Authorization>,
    /// Every field not listed above, for the caller's warning.
    #[serde(flatten)]
    pub ignored: BTreeMap<String, Value>,
}

/// `authentication`: the kubelet API's authenticators.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    #[serde(default)]
    pub x509: X509Authentication,
    #[serde(default)]
    pub webhook: WebhookAuthentication,
    #[serde(default)]
    pub anonymous: AnonymousAuthentication,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Authentication {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAuthentication {
    pub enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnonymousAuthentication {
    pub enabled: Option<bool>,
}

/// `authorization`: AlwaysAllow or Webhook, and the webhook's cache.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub mode: Option<String>,
    #[serde(default)]
    pub webhook: WebhookAuthorization,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAuthorization {
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<String>,
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<String>,
}

/// Fields that describe defaults deckhand already has, or kubelet behaviour
/// that is off here anyway: loading them is silent.
const SILENT: &[&str] = &["apiVersion", "kind"];

impl KubeletConfiguration {
    pub fn load(path: &Path) -> Result<Self, KubeletConfigError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KubeletConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&bytes, &shown)
    }

    pub fn parse(bytes: &[u8], path: &str) -> Result<Self, KubeletConfigError> {
        // YAML is a superset of JSON: one parser reads both.
        let value: Value =
            serde_saphyr::from_slice(bytes).map_err(|e| KubeletConfigError::Parse {
                path: path.to_string(),
                message: e.to_string(),
            })?;
        let config: KubeletConfiguration =
            serde_json::from_value(value).map_err(|e| KubeletConfigError::Parse {
                path: path.to_string(),
                message: e.to_string(),
            })?;
        if config.api_version != API_VERSION || config.kind != KIND {
            return Err(KubeletConfigError::WrongKind {
                path: path.to_string(),
                api_version: config.api_version,
                kind: config.kind,
            });
        }
        Ok(config)
    }

    /// The names of the fields given but not honoured, sorted.
    pub fn ignored_fields(&self) -> Vec<&str> {
        self.ignored
            .keys()
            .map(String::as_str)
            .filter(|k| !SILENT.contains(k))
            .collect()
    }
}

/// A kubelet duration string (`10s`, `1m0s`, `5m`) as Go's time.ParseDuration
/// writes them: humantime reads the same units once they are space-separated.
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    let mut spaced = String::new();
    let mut prev_alpha = false;
    for c in s.chars() {
        if c.is_ascii_digit() && prev_alpha {
            spaced.push(' ');
        }
        prev_alpha = c.is_ascii_alphabetic();
        spaced.push(c);
    }
    humantime::parse_duration(&spaced).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM: &str = r#"
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
cgroupDriver: cgroupfs
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
maxPods: 50
rotateCertificates: true
staticPodPath: /etc/kubernetes/manifests
registerWithTaints:
- key: dedicated
  value: infra
  effect: NoSchedule
nodeStatusUpdateFrequency: 1m0s
"#;

    #[test]
    fn reads_a_kubeadm_config_and_names_what_it_ignores() {
        let c = KubeletConfiguration::parse(KUBEADM.as_bytes(), "config.yaml").unwrap();
        assert_eq!(
            c.cluster_dns.as_deref(),
            Some(&["10.96.0.10".to_string()][..])
        );
        assert_eq!(c.max_pods, Some(50));
        assert_eq!(c.cgroup_driver.as_deref(), Some("cgroupfs"));
        assert_eq!(c.register_with_taints.as_ref().unwrap()[0].key, "dedicated");
        assert_eq!(
            c.ignored_fields(),
            vec!["rotateCertificates", "staticPodPath"]
        );
        assert_eq!(c.authentication.unwrap().anonymous.enabled, Some(false));
        assert_eq!(
            parse_go_duration(c.node_status_update_frequency.as_deref().unwrap()),
            Some(std::time::Duration::from_secs(60))
        );
    }

    #[test]
    fn refuses_another_kind() {
        let err = KubeletConfiguration::parse(b"apiVersion: v1\nkind: ConfigMap\n", "x.yaml")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("expected kubelet.config.k8s.io/v1beta1"),
            "{err}"
        );
    }
}

//! The node agent's settled configuration: flags and the KubeletConfiguration
//! file resolved into one value (flags win, as with the kubelet).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

/// How the agent reaches its runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEndpoint {
    /// deckhand's own runtime, in this process.
    InProcess,
    /// A CRI socket (deckhand cri, containerd, CRI-O).
    Remote(PathBuf),
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_name: String,
    /// InternalIP(s); empty means "the address of the default route".
    pub node_ips: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub register_node: bool,
    pub max_pods: u32,
    /// The kubelet API port, published in daemonEndpoints.
    pub kubelet_port: u16,
    /// The kubelet API's address, TLS and authn/authz.
    pub server: crate::node::server::ServerConfig,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub resolv_conf: PathBuf,
    pub cgroup_root: String,
    pub root_dir: PathBuf,
    pub pod_logs_dir: PathBuf,
    /// KubeletConfiguration.seccompDefault: RuntimeDefault when a container names none.
    pub seccomp_default: bool,
    /// Resource name -> quantity held back from allocatable (kube + system reserved).
    pub kube_reserved: BTreeMap<String, String>,
    pub system_reserved: BTreeMap<String, String>,
    /// evictionHard signals (`memory.available`, `nodefs.available`, `pid.available`).
    pub eviction_hard: BTreeMap<String, String>,
    /// How often node status is computed (and patched if changed).
    pub status_update_frequency: Duration,
    /// How often node status is patched even when unchanged.
    pub status_report_frequency: Duration,
    pub lease_duration_seconds: i32,
    /// How often every pod is resynced against the runtime, events or not.
    pub relist_period: Duration,
    /// containerLogMaxSize / MaxFiles / MaxWorkers / MonitorInterval.
    pub log_rotation: crate::node::log_rotation::Policy,
}

impl NodeConfig {
    /// The kubelet's defaults, for a node named `node_name`.
    pub fn defaults(node_name: &str) -> Self {
        Self {
            node_name: node_name.to_string(),
            node_ips: vec![],
            labels: BTreeMap::new(),
            taints: vec![],
            register_node: true,
            max_pods: 110,
            kubelet_port: 10250,
            server: crate::node::server::ServerConfig::default(),
            cluster_dns: vec![],
            cluster_domain: "cluster.local".to_string(),
            resolv_conf: "/etc/resolv.conf".into(),
            cgroup_root: "/".to_string(),
            root_dir: "/var/lib/kubelet".into(),
            pod_logs_dir: "/var/log/pods".into(),
            seccomp_default: false,
            kube_reserved: BTreeMap::new(),
            system_reserved: BTreeMap::new(),
            eviction_hard: default_eviction_hard(),
            status_update_frequency: Duration::from_secs(10),
            status_report_frequency: Duration::from_secs(300),
            lease_duration_seconds: 40,
            relist_period: Duration::from_secs(30),
            log_rotation: crate::node::log_rotation::Policy::default(),
        }
    }

    /// The Lease is renewed at a quarter of its duration (10 s of 40 s), as
    /// the kubelet's lease controller does.
    pub fn lease_renew_interval(&self) -> Duration {
        Duration::from_millis(self.lease_duration_seconds.max(4) as u64 * 250)
    }
}

/// The kubelet's default hard eviction thresholds (Linux).
pub fn default_eviction_hard() -> BTreeMap<String, String> {
    [
        ("memory.available", "100Mi"),
        ("nodefs.available", "10%"),
        ("nodefs.inodesFree", "5%"),
        ("imagefs.available", "15%"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `--node-labels` (`k=v,k2=v2`).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("node label {item:?} is not key=value"))?;
        if k.is_empty() {
            return Err(format!("node label {item:?} has an empty key"));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `--register-with-taints` (`key=value:Effect,key:Effect`).
pub fn parse_taints(s: &str) -> Result<Vec<Taint>, String> {
    let mut out = vec![];
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (kv, effect) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("taint {item:?} has no :Effect"))?;
        let effect = check_effect(effect).map_err(|e| format!("taint {item:?}: {e}"))?;
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        if key.is_empty() {
            return Err(format!("taint {item:?} has an empty key"));
        }
        out.push(Taint {
            key: key.to_string(),
            value,
            effect,
            time_added: None,
        });
    }
    Ok(out)
}

pub fn check_effect(effect: &str) -> Result<String, String> {
    match effect {
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => Ok(effect.to_string()),
        other => Err(format!(
            "effect {other:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_taints_as_the_kubelet_flags_take_them() {
        let l = parse_labels("a=b, zone=z1").unwrap();
        assert_eq!(l["a"], "b");
        assert_eq!(l["zone"], "z1");
        assert!(parse_labels("novalue").is_err());
        let t = parse_taints("dedicated=infra:NoSchedule,gpu:NoExecute").unwrap();
        assert_eq!(t[0].key, "dedicated");
        assert_eq!(t[0].value.as_deref(), Some("infra"));
        assert_eq!(t[1].value, None);
        assert_eq!(t[1].effect, "NoExecute");
        assert!(parse_taints("x=y:Sometimes").is_err());
    }

    #[test]
    fn lease_renews_at_a_quarter_of_its_duration() {
        let c = NodeConfig::defaults("n");
        assert_eq!(c.lease_renew_interval(), Duration::from_secs(10));
    }
}

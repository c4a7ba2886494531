//! Pod -> CRI translation: what the kubelet's kuberuntime manager hands the
//! runtime for a pod. Pure: the only I/O is through [`ObjectLookup`] (config
//! maps and secrets for env) and [`sandbox_config`] reading the host
//! resolv.conf (for every pod, as the kubelet does: ClusterFirst takes its
//! search domains from it too; a small blocking read, so call it off the
//! async executor or accept that).
//!
//! Each file mirrors one part of the kubelet v1.36:
//! - `labels`: kuberuntime/labels.go (CRI labels/annotations, container hash)
//! - `sandbox`: kuberuntime_sandbox.go generatePodSandboxConfig
//! - `dns`: kubelet/network/dns/dns.go
//! - `env`: kubelet_pods.go makeEnvironmentVariables, kubelet/envvars
//! - `container`: kuberuntime_container.go generateContainerConfig
//! - `resources`: QoS class, pod cgroups, cpu shares/quota, memory, oom_score_adj
//! - `security`: security_context.go, kubelet/securitycontext
//! - `hosts`: the pod's /etc/hosts (ensureHostsFile)

pub mod labels;

mod container;
mod dns;
mod env;
mod hosts;
mod resources;
mod sandbox;
mod security;
#[cfg(test)]
pub(crate) mod testutil;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use crate::k8s::qos::{QosClass, qos_class};
pub use container::{container_config, container_log_path};
pub use env::{container_env, expand};
pub(crate) use env::{format_map, resource_field_value, split_subscript};
pub use hosts::etc_hosts;
pub use resources::{container_resources, pod_cgroup_parent, sandbox_resources};
pub use sandbox::{container_log_directory, pod_log_directory, sandbox_config};

/// The kubelet's waiting reason when a container's config cannot be built
/// (missing configmap/secret/key, runAsNonRoot with a root image, bad env).
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
/// The kubelet's waiting reason when the runtime refuses a container.
pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
/// The kubelet's event reason / sandbox failure when the sandbox config is bad.
pub const CREATE_POD_SANDBOX_ERROR: &str = "FailedCreatePodSandBox";

/// Why a pod or container cannot be translated: the kubelet's waiting reason
/// and a message worded as the kubelet words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PodSpecError {
    pub reason: &'static str,
    pub message: String,
}

impl PodSpecError {
    pub fn config(message: impl Into<String>) -> Self {
        Self {
            reason: CREATE_CONTAINER_CONFIG_ERROR,
            message: message.into(),
        }
    }

    pub fn sandbox(message: impl Into<String>) -> Self {
        Self {
            reason: CREATE_POD_SANDBOX_ERROR,
            message: message.into(),
        }
    }
}

/// What is fixed for the node's life.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeContext {
    pub node_name: String,
    /// --cluster-dns / KubeletConfiguration.clusterDNS
    pub cluster_dns: Vec<String>,
    /// --cluster-domain, "cluster.local" by default
    pub cluster_domain: String,
    /// the host's resolv.conf (kubelet resolvConf, default /etc/resolv.conf);
    /// empty path: none (the kubelet's `resolvConf: ""`)
    pub resolv_conf: PathBuf,
    /// "/" by default; pod cgroups go under <root>/kubepods/...
    pub cgroup_root: String,
    /// /var/log/pods
    pub pod_logs_dir: PathBuf,
    /// the node's InternalIP(s)
    pub host_ips: Vec<String>,
    /// the machine's memory (bytes): a Burstable container's oom_score_adj
    /// is 1000 - 1000 * request / capacity, as the kubelet scores it
    pub memory_capacity_bytes: u64,
    /// <root-dir>/seccomp: where `Localhost` seccomp profiles are looked up
    pub seccomp_profile_root: PathBuf,
    /// KubeletConfiguration.seccompDefault: RuntimeDefault for containers
    /// that name no profile (off by default, as in the kubelet)
    pub seccomp_default: bool,
    /// the node's allocatable: what a resourceFieldRef reads for a limit the
    /// container does not set (defaultPodLimitsForDownwardAPI)
    pub allocatable: BTreeMap<String, Quantity>,
    /// the host mounts cgroup v2 (unified); with `swap_controller` it
    /// decides how swap is turned off for a container (NoSwap, the
    /// kubelet's default swapBehavior)
    pub cgroup_v2: bool,
    /// the kernel has the swap cgroup controller (v2: memory.swap.max
    /// exists; v1: memory.memsw.*); without it the kubelet leaves swap alone
    pub swap_controller: bool,
}

impl Default for NodeContext {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            cgroup_root: "/".into(),
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            host_ips: Vec::new(),
            memory_capacity_bytes: 0,
            seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
            seccomp_default: false,
            allocatable: BTreeMap::new(),
            cgroup_v2: false,
            swap_controller: false,
        }
    }
}

/// What varies per container start.
#[derive(Debug, Clone, Copy)]
pub struct ContainerContext<'a> {
    pub pod_ips: &'a [String],
    /// becomes metadata.attempt and the log file <n>.log
    pub restart_count: u32,
    /// what to pass as ContainerConfig.image (pulled image id or name)
    pub image_ref: &'a str,
    /// the image's config User, for runAsNonRoot checks
    pub image_user: Option<&'a str>,
    /// the pod's namespace (+default's "kubernetes"), for service-link env
    pub services: &'a [Service],
}

/// Reads the objects env refers to; node8 implements it over the apiserver.
/// `Ok(None)` is "not found"; `Err` is any other failure, in words.
#[async_trait::async_trait]
pub trait ObjectLookup: Send + Sync {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String>;
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String>;
}

/// format.Pod: how the kubelet names a pod in messages, `name_namespace(uid)`.
pub fn pod_ref(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

//! `deckhand node`: the kubelet's command line. The flags deckhand
//! implements keep the kubelet's names; the other common kubelet flags are
//! accepted with a warning naming each, so a kubeadm systemd drop-in
//! (KUBELET_KUBECONFIG_ARGS, KUBELET_CONFIG_ARGS, KUBELET_KUBEADM_ARGS)
//! starts it unchanged.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::cli::runtime_args::RuntimeArgs;
use crate::cri::api::{ImageService, RuntimeService};
use crate::node::config::{self, NodeConfig};
use crate::node::kubelet_config::{KubeletConfiguration, parse_go_duration};

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// kubeconfig of the node's identity (system:node:NAME).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Accepted; TLS bootstrap is not implemented yet, so --kubeconfig must exist.
    #[arg(long)]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// A KubeletConfiguration file (kubelet.config.k8s.io/v1beta1).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The Node's name (default: the hostname, lowercased).
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's InternalIP(s), comma-separated (default: the default route's source).
    #[arg(long, value_delimiter = ',')]
    pub node_ip: Vec<String>,
    /// A remote CRI runtime (`unix:///run/containerd/containerd.sock`);
    /// without it deckhand's own runtime runs in this process.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// The kubelet's root directory.
    #[arg(long)]
    pub root_dir: Option<PathBuf>,
    /// Labels to register the Node with: `k=v,k2=v2`.
    #[arg(long, value_parser = config::parse_labels)]
    pub node_labels: Option<std::collections::BTreeMap<String, String>>,
    /// Taints to register the Node with: `key=value:Effect,...`.
    #[arg(long, value_parser = config::parse_taints)]
    pub register_with_taints: Option<Vec<k8s_openapi::api::core::v1::Taint>>,
    /// Register the Node (default true).
    #[arg(long)]
    pub register_node: Option<bool>,
    #[arg(long)]
    pub max_pods: Option<u32>,
    /// Ignored: deckhand's sandboxes need no pause image.
    #[arg(long)]
    pub pod_infra_container_image: Option<String>,
    /// `cgroupfs` (the systemd driver is not built).
    #[arg(long)]
    pub cgroup_driver: Option<String>,
    /// Parent of the kubepods cgroup.
    #[arg(long)]
    pub cgroup_root: Option<String>,
    /// Cluster DNS server IPs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<String>,
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// The resolv.conf pods with dnsPolicy Default get (and ClusterFirst search from).
    #[arg(long)]
    pub resolv_conf: Option<PathBuf>,
    /// The kubelet API port, as published in the Node's daemonEndpoints.
    #[arg(long)]
    pub port: Option<u16>,
    /// The IP the kubelet API listens on (default 0.0.0.0).
    #[arg(long)]
    pub address: Option<std::net::IpAddr>,
    /// The kubelet API's serving certificate (else a self-signed one in --cert-dir).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Where the self-signed serving certificate is kept (default <root-dir>/pki).
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// Client certificates signed by this CA authenticate to the kubelet API.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Allow unauthenticated requests to the kubelet API (default false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub anonymous_auth: Option<bool>,
    /// Check bearer tokens with TokenReview (default true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub authentication_token_webhook: Option<bool>,
    #[arg(long, value_parser = parse_go_flag_duration)]
    pub authentication_token_webhook_cache_ttl: Option<Duration>,
    /// `Webhook` (SubjectAccessReview, the default) or `AlwaysAllow`.
    #[arg(long)]
    pub authorization_mode: Option<crate::node::server::authz::Mode>,
    #[arg(long, value_parser = parse_go_flag_duration)]
    pub authorization_webhook_cache_authorized_ttl: Option<Duration>,
    #[arg(long, value_parser = parse_go_flag_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: Option<Duration>,
    /// Resources held back for the kubelet and runtime: `cpu=200m,memory=512Mi`.
    #[arg(long, value_parser = parse_resource_list)]
    pub kube_reserved: Option<std::collections::BTreeMap<String, String>>,
    /// Resources held back for the system: `cpu=200m,memory=512Mi`.
    #[arg(long, value_parser = parse_resource_list)]
    pub system_reserved: Option<std::collections::BTreeMap<String, String>>,
    /// Log verbosity as the kubelet's klog takes it (4 = debug, 6 = trace),
    /// used when --log-level is not given.
    #[arg(short = 'v', long = "v")]
    pub verbosity: Option<u8>,
    /// Rotate a container's log once it is larger than this (`10Mi`).
    #[arg(long)]
    pub container_log_max_size: Option<String>,
    /// Log files kept per container, the live one included (at least 2).
    #[arg(long)]
    pub container_log_max_files: Option<usize>,
    /// How often every pod is checked against the runtime, events or not.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub relist_period: Duration,
    /// deckhand's own runtime (without --container-runtime-endpoint).
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Kubelet flags given but not implemented (filled before parsing).
    #[arg(skip)]
    pub ignored_flags: Vec<String>,
}

fn parse_go_flag_duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s).ok_or_else(|| format!("invalid duration {s:?}"))
}

fn parse_resource_list(s: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    config::parse_labels(s)
}

/// Kubelet flags that take a value and that deckhand accepts and ignores.
/// (--cni-conf-dir and --cni-bin-dir are the in-process runtime's own.)
const IGNORED_VALUE_FLAGS: &[&str] = &[
    "cloud-config",
    "cloud-provider",
    "container-runtime",
    "cpu-manager-policy",
    "enforce-node-allocatable",
    "event-burst",
    "event-qps",
    "eviction-hard",
    "eviction-minimum-reclaim",
    "eviction-pressure-transition-period",
    "eviction-soft",
    "eviction-soft-grace-period",
    "feature-gates",
    "file-check-frequency",
    "healthz-bind-address",
    "healthz-port",
    "http-check-frequency",
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    "image-gc-high-threshold",
    "image-gc-low-threshold",
    "image-service-endpoint",
    "kube-api-burst",
    "kube-api-content-type",
    "kube-api-qps",
    "kubelet-cgroups",
    "lock-file",
    "log-dir",
    "log-file",
    "max-open-files",
    "minimum-container-ttl-duration",
    "network-plugin",
    "node-status-max-images",
    "node-status-update-frequency",
    "oom-score-adj",
    "pod-manifest-path",
    "pods-per-core",
    "provider-id",
    "read-only-port",
    "reserved-cpus",
    "runtime-cgroups",
    "runtime-request-timeout",
    "streaming-connection-idle-timeout",
    "sync-frequency",
    "system-cgroups",
    "tls-cipher-suites",
    "tls-min-version",
    "topology-manager-policy",
    "volume-plugin-dir",
    "volume-stats-agg-period",
];

/// Boolean kubelet flags deckhand accepts and ignores (`--flag` or `--flag=x`).
const IGNORED_BOOL_FLAGS: &[&str] = &[
    "allow-privileged",
    "alsologtostderr",
    "cgroups-per-qos",
    "enable-controller-attach-detach",
    "enable-debugging-handlers",
    "enable-server",
    "exit-on-lock-contention",
    "fail-swap-on",
    "kernel-memcg-notification",
    "keep-terminated-pod-volumes",
    "local-storage-capacity-isolation",
    "logtostderr",
    "make-iptables-util-chains",
    "protect-kernel-defaults",
    "register-schedulable",
    "rotate-certificates",
    "rotate-server-certificates",
    "seccomp-default",
    "serialize-image-pulls",
];

/// Removes the ignored kubelet flags from `deckhand node`'s arguments and
/// returns their names, so clap sees only what deckhand implements.
pub fn strip_ignored_flags(args: Vec<OsString>) -> (Vec<OsString>, Vec<String>) {
    let mut out = Vec::with_capacity(args.len());
    let mut ignored = vec![];
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        let Some(flag) = text.strip_prefix("--") else {
            out.push(arg);
            continue;
        };
        let (name, has_value) = match flag.split_once('=') {
            Some((n, _)) => (n, true),
            None => (flag, false),
        };
        if IGNORED_VALUE_FLAGS.contains(&name) {
            ignored.push(name.to_string());
            if !has_value {
                iter.next();
            }
        } else if IGNORED_BOOL_FLAGS.contains(&name) {
            ignored.push(name.to_string());
        } else {
            out.push(arg);
        }
    }
    (out, ignored)
}

impl NodeArgs {
    /// A tracing filter from --v, when it asks for more than info.
    pub fn log_level_hint(&self) -> Option<&'static str> {
        match self.verbosity? {
            0..=3 => None,
            4 | 5 => Some("info,deckhand=debug"),
            _ => Some("info,deckhand=trace"),
        }
    }
}

/// Flags over the config file over the kubelet's defaults.
fn node_config(args: &NodeArgs, file: Option<&KubeletConfiguration>) -> anyhow::Result<NodeConfig> {
    let name = match &args.hostname_override {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the hostname")?
            .trim()
            .to_string(),
    }
    .to_lowercase();
    let mut c = NodeConfig::defaults(&name);
    if let Some(f) = file {
        if let Some(v) = f.port {
            c.kubelet_port = v;
        }
        if let Some(v) = &f.cluster_dns {
            c.cluster_dns = v.clone();
        }
        if let Some(v) = &f.cluster_domain {
            c.cluster_domain = v.clone();
        }
        if let Some(v) = f.max_pods {
            c.max_pods = v;
        }
        if let Some(v) = &f.cgroup_root {
            c.cgroup_root = v.clone();
        }
        if let Some(v) = &f.resolv_conf {
            c.resolv_conf = v.into();
        }
        if let Some(v) = f.register_node {
            c.register_node = v;
        }
        if let Some(v) = &f.register_with_taints {
            c.taints = v
                .iter()
                .map(|t| {
                    Ok(k8s_openapi::api::core::v1::Taint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: config::check_effect(&t.effect).map_err(anyhow::Error::msg)?,
                        time_added: None,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(v) = &f.kube_reserved {
            c.kube_reserved = v.clone();
        }
        if let Some(v) = &f.system_reserved {
            c.system_reserved = v.clone();
        }
        if let Some(v) = &f.eviction_hard {
            c.eviction_hard = v.clone();
        }
        if let Some(d) = f
            .node_status_update_frequency
            .as_deref()
            .and_then(parse_go_duration)
        {
            c.status_update_frequency = d;
        }
        if let Some(d) = f
            .node_status_report_frequency
            .as_deref()
            .and_then(parse_go_duration)
        {
            c.status_report_frequency = d;
        }
        if let Some(v) = f.seccomp_default {
            c.seccomp_default = v;
        }
        if let Some(v) = f.node_lease_duration_seconds {
            c.lease_duration_seconds = v;
        }
        server_from_file(&mut c.server, f)?;
    }
    if !args.node_ip.is_empty() {
        c.node_ips = args.node_ip.clone();
    }
    if let Some(v) = &args.root_dir {
        c.root_dir = v.clone();
    }
    if let Some(v) = &args.node_labels {
        c.labels = v.clone();
    }
    if let Some(v) = &args.register_with_taints {
        c.taints = v.clone();
    }
    if let Some(v) = args.register_node {
        c.register_node = v;
    }
    if let Some(v) = args.max_pods {
        c.max_pods = v;
    }
    if let Some(v) = &args.cgroup_root {
        c.cgroup_root = v.clone();
    }
    if !args.cluster_dns.is_empty() {
        c.cluster_dns = args.cluster_dns.clone();
    }
    if let Some(v) = &args.cluster_domain {
        c.cluster_domain = v.clone();
    }
    if let Some(v) = &args.resolv_conf {
        c.resolv_conf = v.clone();
    }
    if let Some(v) = args.port {
        c.kubelet_port = v;
    }
    server_from_flags(&mut c.server, args);
    if let Some(v) = &args.kube_reserved {
        c.kube_reserved = v.clone();
    }
    if let Some(v) = &args.system_reserved {
        c.system_reserved = v.clone();
    }
    c.relist_period = args.relist_period;
    log_rotation(&mut c.log_rotation, file, args)?;
    let driver = args
        .cgroup_driver
        .clone()
        .or_else(|| file.and_then(|f| f.cgroup_driver.clone()))
        .unwrap_or_else(|| "cgroupfs".into());
    if driver != "cgroupfs" {
        bail!(
            "cgroup driver {driver:?} is not supported by this build of deckhand: \
             use --cgroup-driver=cgroupfs (and the same in the runtime's configuration)"
        );
    }
    if file.and_then(|f| f.cgroups_per_qos) == Some(false) {
        tracing::warn!("cgroupsPerQOS: false is not honoured: pods always get kubepods cgroups");
    }
    if !c.register_node {
        tracing::warn!("registerNode: false is not honoured: the node registers itself");
    }
    Ok(c)
}

/// containerLog* from the file, then the flags; validated as kubelet does.
fn log_rotation(
    p: &mut crate::node::log_rotation::Policy,
    file: Option<&KubeletConfiguration>,
    args: &NodeArgs,
) -> anyhow::Result<()> {
    let size = |s: &str| -> anyhow::Result<u64> {
        crate::k8s::quantity::parse_units(s)
            .filter(|v| *v > 0)
            .map(|v| v as u64)
            .with_context(|| format!("containerLogMaxSize: invalid quantity {s:?}"))
    };
    if let Some(f) = file {
        if let Some(v) = &f.container_log_max_size {
            p.max_size = size(v)?;
        }
        if let Some(v) = f.container_log_max_files {
            p.max_files = v.max(0) as usize;
        }
        if let Some(v) = f.container_log_max_workers {
            p.max_workers = v.max(0) as usize;
        }
        if let Some(v) = &f.container_log_monitor_interval {
            p.monitor_interval = parse_go_duration(v)
                .with_context(|| format!("containerLogMonitorInterval: invalid duration {v:?}"))?;
        }
    }
    if let Some(v) = &args.container_log_max_size {
        p.max_size = size(v)?;
    }
    if let Some(v) = args.container_log_max_files {
        p.max_files = v;
    }
    p.validate().map_err(anyhow::Error::msg)
}

/// The kubelet API's settings from a KubeletConfiguration.
fn server_from_file(
    s: &mut crate::node::server::ServerConfig,
    f: &KubeletConfiguration,
) -> anyhow::Result<()> {
    let ttl = |v: &Option<String>, what: &str| -> anyhow::Result<Option<Duration>> {
        v.as_deref()
            .map(|t| {
                parse_go_duration(t).with_context(|| format!("{what}: invalid duration {t:?}"))
            })
            .transpose()
    };
    if let Some(a) = &f.address {
        s.address = a
            .parse()
            .with_context(|| format!("address: {a:?} is not an IP"))?;
    }
    if let Some(v) = &f.tls_cert_file {
        s.tls_cert_file = Some(v.into());
    }
    if let Some(v) = &f.tls_private_key_file {
        s.tls_private_key_file = Some(v.into());
    }
    if let Some(a) = &f.authentication {
        if let Some(v) = a.x509.client_ca_file.as_ref().filter(|v| !v.is_empty()) {
            s.client_ca_file = Some(v.into());
        }
        if let Some(v) = a.webhook.enabled {
            s.webhook_authn = v;
        }
        if let Some(v) = ttl(&a.webhook.cache_ttl, "authentication.webhook.cacheTTL")? {
            s.webhook_authn_ttl = v;
        }
        if let Some(v) = a.anonymous.enabled {
            s.anonymous_auth = v;
        }
    }
    if let Some(a) = &f.authorization {
        if let Some(m) = &a.mode {
            s.authorization_mode = m.parse().map_err(anyhow::Error::msg)?;
        }
        if let Some(v) = ttl(&a.webhook.cache_authorized_ttl, "cacheAuthorizedTTL")? {
            s.authorized_ttl = v;
        }
        if let Some(v) = ttl(&a.webhook.cache_unauthorized_ttl, "cacheUnauthorizedTTL")? {
            s.unauthorized_ttl = v;
        }
    }
    Ok(())
}

fn server_from_flags(s: &mut crate::node::server::ServerConfig, a: &NodeArgs) {
    if let Some(v) = a.address {
        s.address = v;
    }
    if let Some(v) = &a.tls_cert_file {
        s.tls_cert_file = Some(v.clone());
    }
    if let Some(v) = &a.tls_private_key_file {
        s.tls_private_key_file = Some(v.clone());
    }
    if let Some(v) = &a.cert_dir {
        s.cert_dir = Some(v.clone());
    }
    if let Some(v) = &a.client_ca_file {
        s.client_ca_file = Some(v.clone());
    }
    if let Some(v) = a.anonymous_auth {
        s.anonymous_auth = v;
    }
    if let Some(v) = a.authentication_token_webhook {
        s.webhook_authn = v;
    }
    if let Some(v) = a.authentication_token_webhook_cache_ttl {
        s.webhook_authn_ttl = v;
    }
    if let Some(v) = a.authorization_mode {
        s.authorization_mode = v;
    }
    if let Some(v) = a.authorization_webhook_cache_authorized_ttl {
        s.authorized_ttl = v;
    }
    if let Some(v) = a.authorization_webhook_cache_unauthorized_ttl {
        s.unauthorized_ttl = v;
    }
}

async fn kube_client(args: &NodeArgs) -> anyhow::Result<kube::Client> {
    let Some(path) = &args.kubeconfig else {
        bail!("--kubeconfig is required (standalone mode is not implemented)");
    };
    if !path.exists() {
        if let Some(b) = &args.bootstrap_kubeconfig {
            bail!(
                "{} does not exist, and TLS bootstrap with {} is not implemented yet: \
                 write the node's kubeconfig first",
                path.display(),
                b.display()
            );
        }
        bail!("{} does not exist", path.display());
    }
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    for flag in &args.ignored_flags {
        tracing::warn!(flag = %format!("--{flag}"), "kubelet flag accepted but not implemented by deckhand: ignored");
    }
    let file = match &args.config {
        Some(path) => Some(KubeletConfiguration::load(path)?),
        None => None,
    };
    if let Some(f) = &file {
        for field in f.ignored_fields() {
            tracing::warn!(%field, "KubeletConfiguration field not implemented by deckhand: ignored");
        }
    }
    if args.pod_infra_container_image.is_some() {
        tracing::info!("--pod-infra-container-image is ignored: deckhand needs no pause image");
    }
    let config = node_config(&args, file.as_ref())?;
    let endpoint = args.container_runtime_endpoint.clone().or_else(|| {
        file.as_ref()
            .and_then(|f| f.container_runtime_endpoint.clone())
    });
    let client = kube_client(&args).await?;

    let _in_process;
    let (runtime, images): (Arc<dyn RuntimeService>, Arc<dyn ImageService>) = match endpoint {
        Some(endpoint) => {
            let socket = crate::cri::socket::socket_path(&endpoint);
            tracing::info!(socket = %socket.display(), "remote CRI runtime");
            let remote = Arc::new(crate::cri::remote::RemoteRuntime::new(&socket));
            (remote.clone(), remote)
        }
        None => {
            let started = crate::cli::runtime_args::start(&args.runtime).await?;
            let runtime: Arc<dyn RuntimeService> = started.runtime.clone();
            let images: Arc<dyn ImageService> = started.images.clone();
            _in_process = started;
            (runtime, images)
        }
    };
    crate::node::Agent {
        config: Arc::new(config),
        client,
        runtime,
        images,
    }
    .run(super::shutdown_signal())
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeadm_drop_in_line_parses_with_the_unknown_flags_named() {
        let line = "deckhand node --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
            --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \
            --container-runtime-endpoint=unix:///var/run/containerd/containerd.sock \
            --pod-infra-container-image=registry.k8s.io/pause:3.10 --fail-swap-on=false \
            --network-plugin cni --rotate-certificates --v=2 --node-ip 10.0.0.2";
        let args: Vec<OsString> = line.split_whitespace().map(OsString::from).collect();
        let (kept, ignored) = strip_ignored_flags(args);
        assert_eq!(
            ignored,
            ["fail-swap-on", "network-plugin", "rotate-certificates"]
        );
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(kept).expect("parses");
        let crate::cli::Command::Node(node) = cli.command else {
            panic!("not node")
        };
        assert_eq!(node.node_ip, ["10.0.0.2"]);
        assert_eq!(node.verbosity, Some(2));
        assert_eq!(
            node.container_runtime_endpoint.as_deref(),
            Some("unix:///var/run/containerd/containerd.sock")
        );
    }
}

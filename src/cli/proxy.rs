//! `deckhand proxy`: the service proxy (kube-proxy, nftables mode) alone,
//! against any apiserver; `deckhand dns`: the cluster DNS alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::proxy::{self, ProxyConfig, nft::NftCommand};

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// kubeconfig of the proxy's identity.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// This node's name (default: the hostname).
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The pods' CIDRs (comma-separated): traffic to a ClusterIP from
    /// outside them is masqueraded.
    #[arg(long, value_delimiter = ',')]
    pub cluster_cidr: Vec<String>,
    /// At most one sync per this period.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub min_sync_period: Duration,
}

pub(crate) async fn client(path: &PathBuf) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .to_lowercase()
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let client = client(&args.kubeconfig).await?;
    let node = args.hostname_override.unwrap_or_else(hostname);
    let mut config = ProxyConfig::new(&node);
    config.render.cluster_cidrs = args.cluster_cidr;
    config.min_sync_period = args.min_sync_period;
    proxy::run(
        client,
        config,
        Arc::new(NftCommand::default()),
        None,
        super::shutdown_signal(),
    )
    .await
}

#[derive(Debug, Args)]
pub struct DnsArgs {
    /// kubeconfig of the server's identity.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Address to serve on (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:53")]
    pub listen: SocketAddr,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Names outside the zone go to these (default: resolv.conf's).
    #[arg(long, value_delimiter = ',')]
    pub upstream: Vec<SocketAddr>,
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
}

/// The upstreams: the given ones, else the resolv.conf's nameservers.
pub fn upstreams(given: &[SocketAddr], resolv_conf: &std::path::Path) -> Vec<SocketAddr> {
    if !given.is_empty() {
        return given.to_vec();
    }
    match std::fs::read_to_string(resolv_conf) {
        Ok(text) => crate::dns::forward::parse_resolv_conf(&text),
        Err(err) => {
            tracing::warn!(path = %resolv_conf.display(), error = %err, "no upstream resolvers");
            vec![]
        }
    }
}

pub async fn run_dns(args: DnsArgs) -> anyhow::Result<()> {
    let client = client(&args.kubeconfig).await?;
    let config = crate::dns::DnsConfig {
        listen: args.listen,
        domain: args.cluster_domain,
        upstreams: upstreams(&args.upstream, &args.resolv_conf),
        freebind: false,
    };
    crate::dns::run(client, config, super::shutdown_signal()).await
}

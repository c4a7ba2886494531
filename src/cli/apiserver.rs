//! `deckhand apiserver`: the bundled Kubernetes API server alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::apiserver::{self, Config};

#[derive(Debug, Args)]
pub struct ApiserverArgs {
    /// Where the store and the PKI (CA, serving and admin certs) live.
    #[arg(long, default_value = "/var/lib/deckhand/apiserver")]
    pub data_dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Write an admin kubeconfig (client cert in group system:masters) here.
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// Static bearer tokens, kube-apiserver's CSV format: token,user,uid,"group1,group2".
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Write a kubeconfig for a node identity (user system:node:NAME, group
    /// system:nodes), as NAME=PATH. Repeatable.
    #[arg(long = "write-node-kubeconfig", value_name = "NAME=PATH", value_parser = parse_node_kubeconfig)]
    pub node_kubeconfigs: Vec<(String, PathBuf)>,
    /// How often watches that allow bookmarks receive one (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub bookmark_interval: Duration,
    /// How long Events are kept after they are created.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub event_ttl: Duration,
    /// The issuer (`iss`) of service-account tokens; also the audience
    /// tokens must carry to authenticate here.
    #[arg(long, default_value = "https://kubernetes.default.svc.cluster.local")]
    pub service_account_issuer: String,
    /// CA bundle for kubelets' serving certificates (pods/log, exec, ...).
    /// Without it they are not verified, as with kube-apiserver.
    #[arg(long)]
    pub kubelet_certificate_authority: Option<PathBuf>,
}

pub(crate) fn parse_node_kubeconfig(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=PATH, got {s:?}")),
    }
}

pub async fn run(args: ApiserverArgs) -> anyhow::Result<()> {
    let config = Config {
        data_dir: args.data_dir,
        listen: args.listen,
        write_kubeconfig: args.write_kubeconfig,
        token_auth_file: args.token_auth_file,
        node_kubeconfigs: args.node_kubeconfigs,
        bookmark_interval: args.bookmark_interval,
        event_ttl: args.event_ttl,
        service_account_issuer: args.service_account_issuer,
        kubelet_certificate_authority: args.kubelet_certificate_authority,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        res = apiserver::run(config) => Ok(res?),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    }
}

//! `deckhand controller-manager`: the controllers alone against any
//! apiserver, with kube-controller-manager's flags for what they share.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::controllers::{manager, node_lifecycle};

#[derive(Debug, Args)]
pub struct ControllerManagerArgs {
    /// kubeconfig of the controllers' identity.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The controllers to run, as kcm's flag: `*` is the default set, `name`
    /// turns one on and `-name` one off (e.g. `*,-job-controller`).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// A node whose Lease is older than this is marked Unknown.
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// Toleration seconds of pods without an unreachable toleration.
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
}

pub async fn run(args: ControllerManagerArgs) -> anyhow::Result<()> {
    // An unknown name fails before anything connects.
    manager::selected(&args.controllers)?;
    let client = super::proxy::client(&args.kubeconfig).await?;
    let config = manager::ManagerConfig {
        controllers: args.controllers,
        node_lifecycle: node_lifecycle::NodeLifecycleConfig {
            grace_period: args.node_monitor_grace_period,
            default_toleration_seconds: args.default_unreachable_toleration_seconds,
        },
        ..Default::default()
    };
    manager::run(
        client,
        config,
        manager::shutdown_on(super::shutdown_signal()),
    )
    .await
}

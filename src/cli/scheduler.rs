//! `deckhand scheduler`: the scheduler alone, against any apiserver; with
//! `--node-lifecycle` also the node lifecycle controller.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::controllers::{node_lifecycle, scheduler};

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// kubeconfig of the scheduler's identity.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Schedule the pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    pub scheduler_name: String,
    /// Also run the node lifecycle controller.
    #[arg(long)]
    pub node_lifecycle: bool,
    /// A node whose Lease is older than this is marked Unknown.
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// Toleration seconds of pods without an unreachable toleration.
    #[arg(long, default_value_t = 300)]
    pub default_unreachable_toleration_seconds: i64,
}

pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let client = super::proxy::client(&args.kubeconfig).await?;
    let shutdown = futures::future::FutureExt::shared(Box::pin(super::shutdown_signal()));
    let sched = scheduler::run(
        client.clone(),
        scheduler::SchedulerConfig {
            scheduler_name: args.scheduler_name,
        },
        shutdown.clone(),
    );
    if !args.node_lifecycle {
        return sched.await;
    }
    let lifecycle = node_lifecycle::run(
        client,
        node_lifecycle::NodeLifecycleConfig {
            grace_period: args.node_monitor_grace_period,
            default_toleration_seconds: args.default_unreachable_toleration_seconds,
        },
        shutdown,
    );
    tokio::try_join!(sched, lifecycle).map(|_| ())
}

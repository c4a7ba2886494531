//! Registers the Node (create, or adopt an existing one of the same name)
//! and keeps its status current: computed every status update period,
//! patched at once when it changed and at least every report period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::cri::api::RuntimeService;
use crate::cri::api::v1;
use crate::node::backoff::ApiBackoff;
use crate::node::config::NodeConfig;
use crate::node::machine::{MachineInfo, MachineResources, meminfo_kib};
use crate::node::node_status::{
    NodeFacts, Pressure, RuntimeHealth, meaningfully_changed, new_node, node_status,
};

/// Longest a Status/Version call to the runtime may take before the runtime
/// counts as not ready.
const RUNTIME_CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct NodeReporter {
    client: Client,
    config: Arc<NodeConfig>,
    runtime: Arc<dyn RuntimeService>,
    info: MachineInfo,
    /// The last status the API accepted, and when.
    last: Option<(NodeStatus, Instant)>,
    /// The Node's UID once registered (the Lease's owner).
    uid: watch::Sender<Option<String>>,
}

impl NodeReporter {
    pub fn new(
        client: Client,
        config: Arc<NodeConfig>,
        runtime: Arc<dyn RuntimeService>,
    ) -> (Self, watch::Receiver<Option<String>>) {
        let (uid, uid_rx) = watch::channel(None);
        let reporter = Self {
            client,
            config,
            runtime,
            info: MachineInfo::read(),
            last: None,
            uid,
        };
        (reporter, uid_rx)
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// Registers (retrying with back-off until the API takes it), then
    /// reports status until `stop` fires.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = ApiBackoff::default();
        loop {
            match self.register().await {
                Ok(()) => break,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "registering the node");
                    if sleep_or_stop(delay, &mut stop).await {
                        return;
                    }
                }
            }
        }
        loop {
            if sleep_or_stop(self.config.status_update_frequency, &mut stop).await {
                return;
            }
            if let Err(e) = self.update().await {
                tracing::warn!(error = %e, "updating node status");
                if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    // Someone deleted our Node: register it again.
                    let _ = self.register().await;
                }
            }
        }
    }

    async fn facts(&self) -> (MachineResources, RuntimeHealth, Pressure, Vec<String>) {
        let resources = MachineResources::read(&self.config.root_dir);
        let runtime = runtime_health(self.runtime.as_ref()).await;
        let pressure = pressure(&self.config.root_dir);
        let addresses = if self.config.node_ips.is_empty() {
            default_route_address().into_iter().collect()
        } else {
            self.config.node_ips.clone()
        };
        (resources, runtime, pressure, addresses)
    }

    async fn register(&mut self) -> Result<(), kube::Error> {
        let (resources, runtime, pressure, addresses) = self.facts().await;
        let facts = NodeFacts {
            resources: &resources,
            info: &self.info,
            runtime: &runtime,
            pressure: &pressure,
            addresses: &addresses,
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let node = new_node(&self.config, &facts, &now);
        let nodes = self.nodes();
        let registered = match nodes.create(&PostParams::default(), &node).await {
            Ok(created) => {
                tracing::info!(node = %self.config.node_name, "registered the node");
                created
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Adopt: the object is ours by name; its status is rewritten.
                tracing::info!(node = %self.config.node_name, "adopting the existing node");
                nodes.get(&self.config.node_name).await?
            }
            Err(e) => return Err(e),
        };
        // Create drops status: write it through the status subresource.
        let previous = registered.status.clone();
        let status = node_status(&self.config, &facts, previous.as_ref(), &now);
        self.patch_status(&status).await?;
        self.uid.send_replace(registered.metadata.uid.clone());
        Ok(())
    }

    async fn update(&mut self) -> Result<(), kube::Error> {
        let (resources, runtime, pressure, addresses) = self.facts().await;
        let facts = NodeFacts {
            resources: &resources,
            info: &self.info,
            runtime: &runtime,
            pressure: &pressure,
            addresses: &addresses,
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let previous = self.last.as_ref().map(|(s, _)| s);
        let status = node_status(&self.config, &facts, previous, &now);
        let due = match &self.last {
            None => true,
            Some((old, at)) => {
                meaningfully_changed(old, &status)
                    || at.elapsed() >= self.config.status_report_frequency
            }
        };
        if due {
            self.patch_status(&status).await?;
        }
        Ok(())
    }

    async fn patch_status(&mut self, status: &NodeStatus) -> Result<(), kube::Error> {
        // A merge patch of the whole status: lists (conditions, addresses)
        // are replaced as a whole, which is what is meant here.
        let body = json!({ "status": status });
        self.nodes()
            .patch_status(
                &self.config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await?;
        self.last = Some((status.clone(), Instant::now()));
        Ok(())
    }
}

/// Sleeps `d`; true when `stop` fired first (or its sender is gone).
pub async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}

/// The runtime's Status and Version, as the Ready condition needs them.
pub async fn runtime_health(runtime: &dyn RuntimeService) -> RuntimeHealth {
    let mut health = RuntimeHealth::default();
    match tokio::time::timeout(
        RUNTIME_CALL_TIMEOUT,
        runtime.version(v1::VersionRequest::default()),
    )
    .await
    {
        Ok(Ok(v)) => {
            health.runtime_name = v.runtime_name;
            health.runtime_version = v.runtime_version;
        }
        Ok(Err(e)) => health.problem = Some(format!("Version: {e}")),
        Err(_) => health.problem = Some("Version timed out".into()),
    }
    let status = tokio::time::timeout(
        RUNTIME_CALL_TIMEOUT,
        runtime.status(v1::StatusRequest { verbose: false }),
    )
    .await;
    match status {
        Ok(Ok(resp)) => {
            let conditions = resp.status.map(|s| s.conditions).unwrap_or_default();
            let mut problems = vec![];
            for c in &conditions {
                let ready = Some(c.status);
                match c.r#type.as_str() {
                    "RuntimeReady" => health.runtime_ready = ready,
                    "NetworkReady" => health.network_ready = ready,
                    _ => continue,
                }
                if !c.status {
                    problems.push(format!(
                        "{}=false reason:{} message:{}",
                        c.r#type, c.reason, c.message
                    ));
                }
            }
            if !problems.is_empty() {
                health.problem = Some(problems.join("; "));
            }
        }
        Ok(Err(e)) => {
            health.runtime_ready = Some(false);
            health.problem = Some(format!("Status: {e}"));
        }
        Err(_) => {
            health.runtime_ready = Some(false);
            health.problem = Some("Status timed out".into());
        }
    }
    health
}

fn pressure(root_dir: &std::path::Path) -> Pressure {
    let fs = root_dir
        .ancestors()
        .find(|p| p.exists())
        .and_then(|p| nix::sys::statvfs::statvfs(p).ok());
    let pids_max: Option<u64> = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let running = std::fs::read_dir("/proc").ok().map(|d| {
        d.flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .count() as u64
    });
    Pressure {
        memory_available_bytes: meminfo_kib("MemAvailable").map(|k| k * 1024),
        nodefs_available_bytes: fs
            .as_ref()
            .map(|s| s.blocks_available() * s.fragment_size()),
        nodefs_total_bytes: fs.as_ref().map(|s| s.blocks() * s.fragment_size()),
        pids_available: pids_max.zip(running).map(|(m, r)| m.saturating_sub(r)),
        pids_max,
    }
}

/// The source address of the default route (what the kubelet picks when
/// --node-ip is not given), found without sending anything.
pub fn default_route_address() -> Option<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    Some(socket.local_addr().ok()?.ip().to_string())
}

//! The service proxy (kube-proxy in nftables mode): Services and
//! EndpointSlices reflected from any apiserver, rendered into one
//! nftables batch (render.rs) and applied atomically (nft.rs) on every
//! change, rate-limited by a minimum sync period as kube-proxy's
//! BoundedFrequencyRunner does: a change after a quiet spell syncs at once,
//! a burst of changes at most once per period. Never on a timer.

pub mod model;
pub mod nft;
pub mod render;

#[cfg(test)]
mod render_tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::watcher;

use crate::controllers::{reflected, watch_item};
use nft::Ruleset;
use render::RenderConfig;

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This node's name (endpoints on it are "local").
    pub node_name: String,
    pub render: RenderConfig,
    /// At most one sync per this period (kube-proxy's --min-sync-period).
    pub min_sync_period: Duration,
    /// Set net.ipv4.conf.all.route_localnet=1 (NodePorts on 127.0.0.1).
    pub route_localnet: bool,
}

impl ProxyConfig {
    pub fn new(node_name: &str) -> ProxyConfig {
        ProxyConfig {
            node_name: node_name.to_string(),
            render: RenderConfig::default(),
            min_sync_period: Duration::from_millis(100),
            route_localnet: true,
        }
    }
}

/// Called after each sync with how long it took (the benchmark's probe).
pub type SyncHook = Arc<dyn Fn(Duration) + Send + Sync>;

fn set_route_localnet() {
    let path = "/proc/sys/net/ipv4/conf/all/route_localnet";
    if let Err(err) = std::fs::write(path, "1") {
        tracing::warn!(error = %err, "cannot set {path}: NodePorts on 127.0.0.1 will not answer");
    }
}

/// Runs the proxy until `shutdown`, then deletes its tables.
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    rules: Arc<dyn Ruleset>,
    hook: Option<SyncHook>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if config.route_localnet {
        tokio::task::spawn_blocking(set_route_localnet).await?;
    }
    let (services, svc_stream) = reflected(Api::<Service>::all(client.clone()));
    let (slices, slice_stream) = reflected(Api::<EndpointSlice>::all(client));
    let mut svc_stream = std::pin::pin!(svc_stream);
    let mut slice_stream = std::pin::pin!(slice_stream);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut dirty = true;
    let (mut svc_ready, mut slice_ready) = (false, false);
    let mut last: Option<Instant> = None;
    let result = loop {
        let ready = svc_ready && slice_ready;
        let due = match last {
            Some(t) => t + config.min_sync_period,
            None => Instant::now(),
        };
        let sleep = tokio::time::sleep_until(due.into());
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            item = svc_stream.next() => match watch_item(item, "services") {
                Ok(ev) => {
                    svc_ready |= matches!(ev, Some(watcher::Event::InitDone));
                    dirty |= ev.is_some();
                }
                Err(e) => break Err(e),
            },
            item = slice_stream.next() => match watch_item(item, "endpointslices") {
                Ok(ev) => {
                    slice_ready |= matches!(ev, Some(watcher::Event::InitDone));
                    dirty |= ev.is_some();
                }
                Err(e) => break Err(e),
            },
            _ = sleep, if dirty && ready => {
                let started = Instant::now();
                last = Some(started);
                let svcs = services.state();
                let eps = slices.state();
                let eps: Vec<&EndpointSlice> = eps.iter().map(|s| s.as_ref()).collect();
                let ports = model::build(svcs.iter().map(|s| s.as_ref()), &eps, &config.node_name);
                let batch = render::render(&ports, &config.render);
                match rules.apply(&batch).await {
                    Ok(()) => {
                        dirty = false;
                        let took = started.elapsed();
                        tracing::debug!(ports = ports.len(), ?took, "proxy rules synced");
                        if let Some(h) = &hook {
                            h(took);
                        }
                    }
                    Err(err) => {
                        // Back off a second before the retry.
                        last = Some(started + Duration::from_secs(1));
                        tracing::warn!(error = %err, "applying the proxy rules; retrying");
                    }
                }
            }
        }
    };
    if let Err(err) = rules.apply(&render::render_delete()).await {
        tracing::warn!(error = %err, "deleting the proxy tables");
    }
    result
}

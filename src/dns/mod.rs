//! Cluster DNS: an authoritative server for the cluster domain
//! (zone.rs, from reflected Services and EndpointSlices) that forwards
//! every other name to the node's resolvers (forward.rs). The wire format
//! is our own small codec (wire.rs): the zone needs five record types,
//! and hickory's server pulls in its own runtime layers and a crate tree
//! that is not yet in the lock file; see NOTE.md.

pub mod forward;
pub mod server;
pub mod wire;
pub mod zone;

#[cfg(test)]
mod zone_tests;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::controllers::{reflected, watch_item};

#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub listen: SocketAddr,
    pub domain: String,
    /// Where names outside the zone go.
    pub upstreams: Vec<SocketAddr>,
    /// Bind `listen` even when no interface has that address yet (the pod
    /// network's gateway, whose bridge appears with the first pod).
    pub freebind: bool,
}

/// The zone's data: the reflector stores.
pub struct Stores {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
}

impl zone::ZoneData for Stores {
    fn service(&self, ns: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(ns))
    }
    fn services(&self) -> Vec<Arc<Service>> {
        self.services.state()
    }
    fn slices(&self) -> Vec<Arc<EndpointSlice>> {
        self.slices.state()
    }
}

/// Serves DNS until `shutdown` (or a watch ends).
pub async fn run(
    client: kube::Client,
    config: DnsConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (services, svc_stream) = reflected(Api::<Service>::all(client.clone()));
    let (slices, slice_stream) = reflected(Api::<EndpointSlice>::all(client));
    let data: Arc<dyn zone::ZoneData> = Arc::new(Stores { services, slices });
    let server = server::Server::bind(config, data).await?;
    tracing::info!(listen = %server.local_addr(), "cluster DNS serving");
    let mut svc_stream = std::pin::pin!(svc_stream);
    let mut slice_stream = std::pin::pin!(slice_stream);
    let serve = server.serve();
    tokio::pin!(serve);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = &mut serve => return r,
            item = svc_stream.next() => { watch_item(item, "services")?; }
            item = slice_stream.next() => { watch_item(item, "endpointslices")?; }
        }
    }
}

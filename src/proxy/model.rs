//! What the proxy programs, built from Services and EndpointSlices: one
//! entry per service port with its ready endpoints, as kube-proxy's
//! ServicePortMap and EndpointsMap hold it.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    pub fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One ready endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    /// On this node (externalTrafficPolicy Local keeps only these).
    pub local: bool,
}

/// One port of one service, with what it balances over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name ("" for a single unnamed port).
    pub port_name: String,
    pub proto: Proto,
    pub cluster_ips: Vec<IpAddr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// sessionAffinity ClientIP: its timeout in seconds.
    pub affinity_timeout: Option<i32>,
    /// externalTrafficPolicy Local.
    pub external_local: bool,
    /// Ready endpoints, sorted (the rendering is deterministic).
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `ns/name:port` (kube-proxy's ServicePortName).
    pub fn key(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }
}

/// Whether a Service gets no proxy rules: headless (clusterIP None) or
/// ExternalName.
pub fn is_headless(svc: &Service) -> bool {
    let Some(spec) = &svc.spec else { return true };
    if spec.type_.as_deref() == Some("ExternalName") {
        return true;
    }
    matches!(spec.cluster_ip.as_deref(), None | Some("") | Some("None"))
}

/// The endpoints of `slices` (of any service) that serve `port_name` of
/// `ns/svc`: ready ones (serving and not terminating), or every one when
/// `all` (publishNotReadyAddresses).
pub fn endpoints_for<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ns: &str,
    svc: &str,
    port_name: &str,
    node: &str,
    all: bool,
) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for slice in slices {
        if slice.metadata.namespace.as_deref() != Some(ns) {
            continue;
        }
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL));
        if owner.map(String::as_str) != Some(svc) {
            continue;
        }
        if slice.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
        else {
            continue;
        };
        let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready && !all {
                continue;
            }
            let local = ep.node_name.as_deref() == Some(node);
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<IpAddr>() {
                    out.push(Endpoint {
                        ip,
                        port: number,
                        local,
                    });
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every service port to program, sorted by key.
pub fn build<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: &[&EndpointSlice],
    node: &str,
) -> Vec<ServicePort> {
    let mut out = Vec::new();
    for svc in services {
        if is_headless(svc) {
            continue;
        }
        let Some(spec) = &svc.spec else { continue };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mut cluster_ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse().ok())
            .collect();
        cluster_ips.sort();
        cluster_ips.dedup();
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800)
        });
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let all = spec.publish_not_ready_addresses.unwrap_or(false);
        for p in spec.ports.iter().flatten() {
            let (Some(proto), Ok(port)) =
                (Proto::parse(p.protocol.as_deref()), u16::try_from(p.port))
            else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let endpoints =
                endpoints_for(slices.iter().copied(), &ns, &name, &port_name, node, all);
            out.push(ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                port_name,
                proto,
                cluster_ips: cluster_ips.clone(),
                port,
                node_port: node_ports
                    .then_some(p.node_port)
                    .flatten()
                    .and_then(|n| u16::try_from(n).ok()),
                affinity_timeout,
                external_local,
                endpoints,
            });
        }
    }
    out.sort_by_key(|p| (p.key(), p.proto));
    out
}

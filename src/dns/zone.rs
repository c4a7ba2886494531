//! The answers of the cluster zone, from the Services and EndpointSlices
//! of a reflector store (so they follow every change at once): A/AAAA for
//! `svc.ns.svc.<domain>` (the ClusterIPs, or a headless service's ready
//! endpoint addresses), `host.svc.ns.svc.<domain>` for a headless
//! service's endpoints with a hostname, SRV for named ports
//! (`_port._proto.svc.ns.svc.<domain>`), PTR for ClusterIPs and headless
//! endpoints, NXDOMAIN for any other name in the zone.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::wire::{RData, Record, TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_PTR, TYPE_SRV};
use crate::proxy::model::SERVICE_NAME_LABEL;

/// The TTL of every answer (seconds): short, the store is the truth.
pub const TTL: u32 = 5;

/// Where the zone's objects come from.
pub trait ZoneData: Send + Sync {
    fn service(&self, ns: &str, name: &str) -> Option<Arc<Service>>;
    fn services(&self) -> Vec<Arc<Service>>;
    fn slices(&self) -> Vec<Arc<EndpointSlice>>;
}

#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Records (possibly none: the name exists, not with that type).
    Records(Vec<Record>),
    NxDomain,
    /// Not a name of this zone: forward it.
    NotOurs,
}

struct Ep {
    ip: IpAddr,
    hostname: Option<String>,
}

fn endpoints(data: &dyn ZoneData, svc: &Service) -> Vec<Ep> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let all = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut out = Vec::new();
    for slice in data.slices() {
        let owner = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL));
        if slice.metadata.namespace.as_deref() != Some(ns)
            || owner.map(String::as_str) != Some(name)
        {
            continue;
        }
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready && !all {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse() {
                    out.push(Ep {
                        ip,
                        hostname: ep.hostname.clone(),
                    });
                }
            }
        }
    }
    out.sort_by_key(|e| e.ip);
    out.dedup_by_key(|e| e.ip);
    out
}

fn cluster_ips(svc: &Service) -> Option<Vec<IpAddr>> {
    let spec = svc.spec.as_ref()?;
    if crate::proxy::model::is_headless(svc) {
        return None;
    }
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    Some(ips)
}

fn addr_records(name: &str, ips: impl IntoIterator<Item = IpAddr>, qtype: u16) -> Vec<Record> {
    ips.into_iter()
        .filter_map(|ip| {
            let data = match ip {
                IpAddr::V4(a) if qtype == TYPE_A || qtype == TYPE_ANY => RData::A(a),
                IpAddr::V6(a) if qtype == TYPE_AAAA || qtype == TYPE_ANY => RData::Aaaa(a),
                _ => return None,
            };
            Some(Record {
                name: name.to_string(),
                ttl: TTL,
                data,
            })
        })
        .collect()
}

/// The DNS label of an endpoint: its hostname, else its address dashed.
fn ep_label(ep: &Ep) -> String {
    ep.hostname
        .clone()
        .unwrap_or_else(|| ep.ip.to_string().replace(['.', ':'], "-"))
}

/// The answer to `name` (lower-case, no trailing dot) of type `qtype`.
pub fn answer(data: &dyn ZoneData, domain: &str, name: &str, qtype: u16) -> Answer {
    if qtype == TYPE_PTR {
        return reverse(data, domain, name);
    }
    let Some(head) = name
        .strip_suffix(domain)
        .and_then(|h| h.strip_suffix('.').or(h.is_empty().then_some(h)))
    else {
        return Answer::NotOurs;
    };
    let labels: Vec<&str> = if head.is_empty() {
        vec![]
    } else {
        head.split('.').collect()
    };
    // ... . ns . svc
    let Some((&"svc", rest)) = labels.split_last() else {
        return Answer::NxDomain;
    };
    match rest {
        [svc, ns] => {
            let Some(s) = data.service(ns, svc) else {
                return Answer::NxDomain;
            };
            let ips = match cluster_ips(&s) {
                Some(ips) => ips,
                None => endpoints(data, &s).into_iter().map(|e| e.ip).collect(),
            };
            Answer::Records(addr_records(name, ips, qtype))
        }
        [port, proto, svc, ns] if port.starts_with('_') && proto.starts_with('_') => srv(
            data,
            domain,
            name,
            (&port[1..], &proto[1..]),
            svc,
            ns,
            qtype,
        ),
        [host, svc, ns] => {
            let Some(s) = data.service(ns, svc) else {
                return Answer::NxDomain;
            };
            if cluster_ips(&s).is_some() {
                return Answer::NxDomain;
            }
            let ips: Vec<IpAddr> = endpoints(data, &s)
                .into_iter()
                .filter(|e| ep_label(e) == *host)
                .map(|e| e.ip)
                .collect();
            if ips.is_empty() {
                return Answer::NxDomain;
            }
            Answer::Records(addr_records(name, ips, qtype))
        }
        _ => Answer::NxDomain,
    }
}

fn srv(
    data: &dyn ZoneData,
    domain: &str,
    name: &str,
    (port, proto): (&str, &str),
    svc: &str,
    ns: &str,
    qtype: u16,
) -> Answer {
    let Some(s) = data.service(ns, svc) else {
        return Answer::NxDomain;
    };
    let found = s.spec.as_ref().and_then(|spec| {
        spec.ports.iter().flatten().find(|p| {
            p.name.as_deref() == Some(port)
                && p.protocol
                    .as_deref()
                    .unwrap_or("TCP")
                    .eq_ignore_ascii_case(proto)
        })
    });
    let Some(p) = found else {
        return Answer::NxDomain;
    };
    if qtype != TYPE_SRV && qtype != TYPE_ANY {
        return Answer::Records(vec![]);
    }
    let base = format!("{svc}.{ns}.svc.{domain}");
    let record = |target: String, port: u16| Record {
        name: name.to_string(),
        ttl: TTL,
        data: RData::Srv {
            priority: 0,
            weight: 100,
            port,
            target,
        },
    };
    if cluster_ips(&s).is_some() {
        let port = u16::try_from(p.port).unwrap_or(0);
        return Answer::Records(vec![record(base, port)]);
    }
    // Headless: one record per endpoint, on the endpoint's port.
    let port = endpoint_port(data, ns, svc, port).unwrap_or(u16::try_from(p.port).unwrap_or(0));
    let eps = endpoints(data, &s);
    Answer::Records(
        eps.iter()
            .map(|e| record(format!("{}.{base}", ep_label(e)), port))
            .collect(),
    )
}

fn endpoint_port(data: &dyn ZoneData, ns: &str, svc: &str, port: &str) -> Option<u16> {
    data.slices().iter().find_map(|s| {
        let owner = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        if s.metadata.namespace.as_deref() != Some(ns) || owner != svc {
            return None;
        }
        let p = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(port))?;
        u16::try_from(p.port?).ok()
    })
}

/// The address a reverse name (in-addr.arpa / ip6.arpa) names.
pub fn reverse_addr(name: &str) -> Option<IpAddr> {
    if let Some(h) = name.strip_suffix(".in-addr.arpa") {
        let mut parts: Vec<&str> = h.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        parts.reverse();
        return parts.join(".").parse().ok();
    }
    let h = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = h.split('.').collect();
    if nibbles.len() != 32 || nibbles.iter().any(|n| n.len() != 1) {
        return None;
    }
    let hex: String = nibbles.iter().rev().copied().collect();
    let groups: Vec<&str> = (0..8).map(|i| &hex[i * 4..i * 4 + 4]).collect();
    groups.join(":").parse().ok()
}

fn reverse(data: &dyn ZoneData, domain: &str, name: &str) -> Answer {
    let Some(ip) = reverse_addr(name) else {
        return Answer::NotOurs;
    };
    let mut targets = Vec::new();
    for s in data.services() {
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        let svc = s.metadata.name.as_deref().unwrap_or_default();
        match cluster_ips(&s) {
            Some(ips) if ips.contains(&ip) => targets.push(format!("{svc}.{ns}.svc.{domain}")),
            Some(_) => {}
            None => {
                for e in endpoints(data, &s)
                    .iter()
                    .filter(|e| e.ip == ip && e.hostname.is_some())
                {
                    targets.push(format!("{}.{svc}.{ns}.svc.{domain}", ep_label(e)));
                }
            }
        }
    }
    if targets.is_empty() {
        return Answer::NotOurs;
    }
    Answer::Records(
        targets
            .into_iter()
            .map(|t| Record {
                name: name.to_string(),
                ttl: TTL,
                data: RData::Ptr(t),
            })
            .collect(),
    )
}

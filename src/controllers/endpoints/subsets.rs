//! The subsets of a service's Endpoints, built from its pods: one address
//! per pod and service port, then repacked as kube's RepackSubsets does
//! (every distinct set of addresses, with their readiness, gets one subset
//! listing all the ports those addresses serve; an address not ready on
//! any port is not ready), and truncated to 1000 addresses as kube's
//! endpoints controller does. Order: addresses by IP then pod uid, ports
//! by name, number and protocol, subsets by their first address (kube
//! orders ports and subsets by a hash, an order no client relies on).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service,
};

use super::pods;

/// Most addresses an Endpoints object holds.
pub const MAX_ADDRESSES: usize = 1000;

/// The address of `pod` for `svc`: its IP of the service's (first) family.
pub fn address(svc: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let spec = svc.spec.as_ref();
    let v6 = match spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        Some(f) => f == "IPv6",
        None if pods::ip_set(svc) => spec
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .is_some_and(|ip| ip.is_ipv6()),
        None => pods::pod_ips(pod).first().is_some_and(|ip| ip.is_ipv6()),
    };
    let ip = pods::pod_ips(pod)
        .into_iter()
        .find(|ip| ip.is_ipv6() == v6)?;
    Some(EndpointAddress {
        ip: ip.to_string(),
        hostname: pods::hostname(pod, svc),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    })
}

/// One address per pod and port of the pods that belong in `svc`'s
/// endpoints, repacked.
pub fn build(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let publish = pods::publish_not_ready(svc);
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut raw = Vec::new();
    for pod in pods {
        if !pods::should_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(addr) = address(svc, pod) else {
            continue;
        };
        let ready = publish || pods::ready(pod);
        let single = |port: Option<EndpointPort>| {
            let (addresses, not_ready) = if ready {
                (Some(vec![addr.clone()]), None)
            } else {
                (None, Some(vec![addr.clone()]))
            };
            EndpointSubset {
                addresses,
                not_ready_addresses: not_ready,
                ports: port.map(|p| vec![p]),
            }
        };
        if ports.is_empty() {
            // A headless service may have no ports: addresses only.
            if !pods::ip_set(svc) {
                raw.push(single(None));
            }
            continue;
        }
        for sp in &ports {
            let Some(number) = pods::find_port(pod, sp) else {
                tracing::debug!(pod = ?pod.metadata.name, port = ?sp.name, "no such port");
                continue;
            };
            raw.push(single(Some(EndpointPort {
                name: sp.name.clone(),
                port: number,
                protocol: sp.protocol.clone(),
                app_protocol: sp.app_protocol.clone(),
            })));
        }
    }
    if ports.is_empty() {
        return sort(raw);
    }
    repack(&raw)
}

type AddrKey = (String, String);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    let uid = a
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_default();
    (a.ip.clone(), uid)
}

fn port_key(p: &EndpointPort) -> (String, i32, String, String) {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// kube's RepackSubsets: addresses deduplicated by IP and pod uid, not
/// ready on a port if not ready in any subset for that port, then one
/// subset per distinct set of (address, ready).
pub fn repack(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut all: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<_, (EndpointPort, BTreeMap<AddrKey, bool>)> = BTreeMap::new();
    for s in subsets {
        for port in s.ports.iter().flatten() {
            let entry = by_port
                .entry(port_key(port))
                .or_insert_with(|| (port.clone(), BTreeMap::new()));
            let listed = s
                .addresses
                .iter()
                .flatten()
                .map(|a| (a, true))
                .chain(s.not_ready_addresses.iter().flatten().map(|a| (a, false)));
            for (a, ready) in listed {
                let key = addr_key(a);
                all.entry(key.clone()).or_insert_with(|| a.clone());
                let r = entry.1.entry(key).or_insert(ready);
                *r = *r && ready;
            }
        }
    }
    let mut by_set: BTreeMap<Vec<(AddrKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, addrs) in by_port.into_values() {
        let set: Vec<(AddrKey, bool)> = addrs.into_iter().collect();
        by_set.entry(set).or_default().push(port);
    }
    let out = by_set
        .into_iter()
        .map(|(set, ports)| {
            let pick = |want: bool| {
                let v: Vec<EndpointAddress> = set
                    .iter()
                    .filter(|(_, r)| *r == want)
                    .map(|(k, _)| all[k].clone())
                    .collect();
                (!v.is_empty()).then_some(v)
            };
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: Some(ports),
            }
        })
        .collect();
    sort(out)
}

fn sort(mut subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    for s in &mut subsets {
        for l in [&mut s.addresses, &mut s.not_ready_addresses]
            .into_iter()
            .flatten()
        {
            l.sort_by_key(addr_key);
        }
        if let Some(p) = &mut s.ports {
            p.sort_by_key(port_key);
        }
    }
    let first = |s: &EndpointSubset| {
        let a = s
            .addresses
            .iter()
            .flatten()
            .chain(s.not_ready_addresses.iter().flatten())
            .map(addr_key)
            .min();
        let p: Vec<_> = s.ports.iter().flatten().map(port_key).collect();
        (a, p)
    };
    subsets.sort_by_key(first);
    subsets
}

/// kube's truncateEndpoints: over `MAX_ADDRESSES`, not-ready addresses go
/// first, then ready ones, each subset keeping its share (rounded up).
/// True when something was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |l: &Option<Vec<EndpointAddress>>| l.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_ADDRESSES {
        return false;
    }
    let cut_ready = ready > MAX_ADDRESSES;
    let (room, total) = if cut_ready {
        (MAX_ADDRESSES, ready)
    } else {
        (MAX_ADDRESSES - ready, not_ready)
    };
    let mut left = room;
    for s in subsets.iter_mut() {
        let n = if cut_ready {
            count(&s.addresses)
        } else {
            count(&s.not_ready_addresses)
        };
        let share = (n * room).div_ceil(total.max(1)).min(left);
        if cut_ready {
            if let Some(a) = &mut s.addresses {
                a.truncate(share);
            }
            s.not_ready_addresses = None;
            left -= count(&s.addresses);
        } else {
            if let Some(a) = &mut s.not_ready_addresses {
                a.truncate(share);
            }
            left -= count(&s.not_ready_addresses);
        }
    }
    true
}

#[cfg(test)]
#[path = "subsets_tests.rs"]
mod tests;

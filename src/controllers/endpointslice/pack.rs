//! The pure part of the EndpointSlice controller, after kube's
//! endpointslice reconciler: the endpoints a service wants (one per pod,
//! by address type and by the set of ports the pod serves), then how the
//! service's existing slices change to hold them: endpoints no longer
//! wanted are dropped and changed ones rewritten in place, slices that
//! changed are filled up first, leftovers go to the unchanged slice that
//! fits them best, then to new slices, at most `MAX_PER_SLICE` each; an
//! emptied slice is deleted (or reused instead of creating one); a service
//! with no endpoints keeps one empty placeholder slice.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::controllers::endpoints::pods;

pub const MAX_PER_SLICE: usize = 100;
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// What the slices of a service should become.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<String>,
}

type PortsKey = Vec<(String, i32, String, String)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut k: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    k.sort();
    k
}

/// The identity of an endpoint across syncs: its pod and addresses.
fn endpoint_key(ep: &Endpoint) -> (String, Vec<String>) {
    let uid = ep
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_default();
    let mut a = ep.addresses.clone();
    a.sort();
    (uid, a)
}

/// The address types the service's slices have (its ipFamilies; IPv4 and
/// IPv6 for a headless service without them, as kube assumes).
pub fn address_types(svc: &Service) -> Vec<String> {
    let spec = svc.spec.as_ref();
    let fams: Vec<String> = spec
        .and_then(|s| s.ip_families.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f == "IPv4" || f == "IPv6")
        .collect();
    if !fams.is_empty() {
        return fams;
    }
    if pods::ip_set(svc) {
        let v6 = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .is_some_and(|ip| ip.contains(':'));
        return vec![if v6 { "IPv6" } else { "IPv4" }.into()];
    }
    vec!["IPv4".into(), "IPv6".into()]
}

/// The ports `pod` serves of `svc`'s (named target ports resolved on it).
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(pods::find_port(pod, sp)?),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The endpoint of `pod` for `svc` of `address_type`, its node's zone
/// given; none when the pod has no address of that type.
pub fn endpoint(svc: &Service, pod: &Pod, zone: Option<String>, v6: bool) -> Option<Endpoint> {
    let addresses: Vec<String> = pods::pod_ips(pod)
        .into_iter()
        .filter(|ip| ip.is_ipv6() == v6)
        .map(|ip| ip.to_string())
        .collect();
    if addresses.is_empty() {
        return None;
    }
    let serving = pods::ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    Some(Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(pods::publish_not_ready(svc) || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: pods::hostname(pod, svc),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        zone,
        ..Default::default()
    })
}

/// The labels of `svc`'s slices: the service's own (less the reserved
/// ones), the headless label, the service name and our manager name.
pub fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = svc
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            k != SERVICE_NAME_LABEL && k != MANAGED_BY_LABEL && k != pods::HEADLESS_LABEL
        })
        .collect();
    if !pods::ip_set(svc) {
        l.insert(pods::HEADLESS_LABEL.into(), String::new());
    }
    l.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    l.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    l
}

pub fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice.metadata.owner_references.iter().flatten().any(|o| {
        Some(&o.uid) == svc.metadata.uid.as_ref() && o.kind == "Service" && o.api_version == "v1"
    })
}

fn new_slice(svc: &Service, address_type: &str, ports: &[EndpointPort]) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels(svc)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints: Vec::new(),
        ports: (!ports.is_empty()).then(|| ports.to_vec()),
    }
}

/// The desired endpoints of one address type, grouped by their ports.
pub type Desired = BTreeMap<PortsKey, (Vec<EndpointPort>, Vec<Endpoint>)>;

pub fn group(endpoints: Vec<(Vec<EndpointPort>, Endpoint)>) -> Desired {
    let mut out = Desired::new();
    for (ports, ep) in endpoints {
        out.entry(ports_key(&ports))
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(ep);
    }
    out
}

fn is_placeholder(s: &EndpointSlice) -> bool {
    s.endpoints.is_empty() && s.ports.as_ref().is_none_or(|p| p.is_empty())
}

/// How the `existing` slices of `svc` (of every address type) change to
/// hold `desired` (by address type).
pub fn plan(
    svc: &Service,
    existing: &[&EndpointSlice],
    desired: &BTreeMap<String, Desired>,
) -> Plan {
    let mut out = Plan::default();
    let want_labels = labels(svc);
    for s in existing {
        if !desired.contains_key(&s.address_type) || !owned_by(s, svc) {
            out.delete.push(s.metadata.name.clone().unwrap_or_default());
        }
    }
    for (address_type, groups) in desired {
        let mine: Vec<&EndpointSlice> = existing
            .iter()
            .copied()
            .filter(|s| &s.address_type == address_type && owned_by(s, svc))
            .collect();
        let mut create = Vec::new();
        let mut update = Vec::new();
        let mut delete = Vec::new();
        let mut by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
        for s in &mine {
            by_ports
                .entry(ports_key(s.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(s);
        }
        for (key, slices) in &by_ports {
            if !groups.contains_key(key) {
                delete.extend(slices.iter().map(|s| (*s).clone()));
            }
        }
        for (key, (ports, eps)) in groups {
            let slices = by_ports.get(key).cloned().unwrap_or_default();
            let (c, u, d) = pack_group(svc, address_type, ports, eps, &slices, &want_labels);
            create.extend(c);
            update.extend(u);
            delete.extend(d);
        }
        if delete.len() == mine.len() && create.is_empty() {
            // No endpoints: one empty placeholder slice.
            if delete.len() == 1
                && is_placeholder(&delete[0])
                && delete[0].metadata.labels.as_ref() == Some(&want_labels)
            {
                delete.clear();
            } else {
                create.push(new_slice(svc, address_type, &[]));
            }
        }
        // Reuse slices about to be deleted rather than create new ones.
        while !create.is_empty() && !delete.is_empty() {
            let mut slice = create.pop().unwrap_or_default();
            let old = delete.remove(0);
            slice.metadata = old.metadata.clone();
            slice.metadata.labels = Some(want_labels.clone());
            update.push(slice);
        }
        out.create.extend(create);
        out.update.extend(update);
        out.delete.extend(
            delete
                .iter()
                .map(|s| s.metadata.name.clone().unwrap_or_default()),
        );
    }
    out
}

type Packed = (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<EndpointSlice>);

/// kube's reconcileByPortMapping for one set of ports.
fn pack_group(
    svc: &Service,
    address_type: &str,
    ports: &[EndpointPort],
    desired: &[Endpoint],
    existing: &[&EndpointSlice],
    want_labels: &BTreeMap<String, String>,
) -> Packed {
    let mut left: BTreeMap<(String, Vec<String>), Endpoint> = desired
        .iter()
        .map(|e| (endpoint_key(e), e.clone()))
        .collect();
    let mut updated: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<EndpointSlice> = Vec::new();
    let mut deleted: Vec<EndpointSlice> = Vec::new();
    // 1. Keep wanted endpoints where they are, rewritten if they changed.
    for s in existing {
        let mut kept = Vec::new();
        let mut changed = false;
        for ep in &s.endpoints {
            if let Some(want) = left.remove(&endpoint_key(ep)) {
                changed |= &want != ep;
                kept.push(want);
            }
        }
        let removed = kept.len() != s.endpoints.len();
        let relabel = s.metadata.labels.as_ref() != Some(want_labels);
        if changed || removed {
            if kept.is_empty() {
                deleted.push((*s).clone());
                continue;
            }
            let mut n = (*s).clone();
            n.endpoints = kept;
            n.metadata.labels = Some(want_labels.clone());
            updated.push(n);
        } else if relabel {
            let mut n = (*s).clone();
            n.metadata.labels = Some(want_labels.clone());
            updated.push(n);
        } else {
            unchanged.push((*s).clone());
        }
    }
    let mut rest: Vec<Endpoint> = left.into_values().collect();
    // 2. Fill the slices that change anyway, fullest first.
    updated.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for s in &mut updated {
        while !rest.is_empty() && s.endpoints.len() < MAX_PER_SLICE {
            s.endpoints.push(rest.remove(0));
        }
    }
    // 3. The rest: into the unchanged slice closest to full that fits
    //    them all, else new slices.
    let mut created = Vec::new();
    while !rest.is_empty() {
        let fit = (rest.len() < MAX_PER_SLICE)
            .then(|| {
                unchanged
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.endpoints.len() + rest.len() <= MAX_PER_SLICE)
                    .max_by_key(|(_, s)| s.endpoints.len())
                    .map(|(i, _)| i)
            })
            .flatten();
        let (mut slice, existed) = match fit {
            Some(i) => (unchanged.remove(i), true),
            None => (new_slice(svc, address_type, ports), false),
        };
        while !rest.is_empty() && slice.endpoints.len() < MAX_PER_SLICE {
            slice.endpoints.push(rest.remove(0));
        }
        if existed {
            updated.push(slice);
        } else {
            created.push(slice);
        }
    }
    (created, updated, deleted)
}

/// Names of the slices in `plan`, for logs.
pub fn summary(plan: &Plan) -> String {
    let names: BTreeSet<&str> = plan
        .update
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    format!(
        "{} to create, update {names:?}, delete {:?}",
        plan.create.len(),
        plan.delete
    )
}

#[cfg(test)]
#[path = "pack_tests.rs"]
mod tests;

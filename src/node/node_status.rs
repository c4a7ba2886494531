//! The Node object and its status, computed from the configuration and what
//! is measured: capacity, allocatable, addresses, nodeInfo, conditions as the
//! kubelet's setters write them. Pure: the caller gathers the facts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::k8s::quantity::parse_milli;
use crate::node::config::NodeConfig;
use crate::node::machine::{MachineInfo, MachineResources, binary_quantity, kib_quantity};

/// The version the Node reports as its kubelet's: the API level deckhand
/// speaks, tagged as deckhand's (as distributions tag theirs, `+k3s1`).
pub fn kubelet_version() -> String {
    format!("v1.33.0+deckhand.{}", env!("CARGO_PKG_VERSION"))
}

/// The runtime as its Status and Version calls reported it.
#[derive(Debug, Clone, Default)]
pub struct RuntimeHealth {
    /// `None` until the first Status call answered.
    pub runtime_ready: Option<bool>,
    pub network_ready: Option<bool>,
    /// Why not ready (the condition's reason: message), or the call's error.
    pub problem: Option<String>,
    pub runtime_name: String,
    pub runtime_version: String,
}

/// Pressure signals, measured.
#[derive(Debug, Clone, Default)]
pub struct Pressure {
    pub memory_available_bytes: Option<u64>,
    pub nodefs_available_bytes: Option<u64>,
    pub nodefs_total_bytes: Option<u64>,
    pub pids_available: Option<u64>,
    pub pids_max: Option<u64>,
}

pub struct NodeFacts<'a> {
    pub resources: &'a MachineResources,
    pub info: &'a MachineInfo,
    pub runtime: &'a RuntimeHealth,
    pub pressure: &'a Pressure,
    pub addresses: &'a [String],
}

/// The Node to create when none exists: labels and taints are set only at
/// registration, as with the kubelet.
pub fn new_node(config: &NodeConfig, facts: &NodeFacts<'_>, now: &Time) -> Node {
    let mut labels: BTreeMap<String, String> = config.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), config.node_name.clone());
    labels.insert(
        "kubernetes.io/os".into(),
        facts.info.operating_system.clone(),
    );
    labels.insert("kubernetes.io/arch".into(), facts.info.architecture.clone());
    // Only on Nodes a cloud provider initialises: deckhand's are not.
    labels.remove("node.kubernetes.io/instance-type");
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels),
            annotations: Some(
                [(
                    "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..Default::default()
        }),
        status: Some(node_status(config, facts, None, now)),
    }
}

pub fn node_status(
    config: &NodeConfig,
    facts: &NodeFacts<'_>,
    old: Option<&NodeStatus>,
    now: &Time,
) -> NodeStatus {
    let capacity = capacity(config, facts.resources);
    let allocatable = allocatable(config, &capacity);
    let mut addresses: Vec<NodeAddress> = facts
        .addresses
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.clone(),
        })
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: config.node_name.clone(),
    });
    let old_conditions = old.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(addresses),
        conditions: Some(conditions(config, facts, old_conditions, now)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: facts.info.architecture.clone(),
            boot_id: facts.info.boot_id.clone(),
            container_runtime_version: format!(
                "{}://{}",
                facts.runtime.runtime_name, facts.runtime.runtime_version
            ),
            kernel_version: facts.info.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: kubelet_version(),
            machine_id: facts.info.machine_id.clone(),
            operating_system: facts.info.operating_system.clone(),
            os_image: facts.info.os_image.clone(),
            system_uuid: facts.info.system_uuid.clone(),
            swap: None,
        }),
        // Images, volumes and runtime handlers are filled by later issues;
        // keep what the API already holds rather than erasing it.
        images: old.and_then(|s| s.images.clone()),
        ..Default::default()
    }
}

/// What pods may use of the machine (capacity less reserved and eviction).
pub fn machine_allocatable(
    config: &NodeConfig,
    r: &MachineResources,
) -> BTreeMap<String, Quantity> {
    allocatable(config, &capacity(config, r))
}

fn capacity(config: &NodeConfig, r: &MachineResources) -> BTreeMap<String, Quantity> {
    let mut c = BTreeMap::new();
    c.insert("cpu".into(), Quantity(r.cpus.to_string()));
    c.insert("memory".into(), kib_quantity(r.memory_bytes));
    c.insert("pods".into(), Quantity(config.max_pods.to_string()));
    c.insert(
        "ephemeral-storage".into(),
        kib_quantity(r.ephemeral_storage_bytes),
    );
    for (size, bytes) in &r.hugepages {
        c.insert(
            format!("hugepages-{size}"),
            Quantity(binary_quantity(*bytes)),
        );
    }
    // Every page size the kernel offers is listed, even with none reserved.
    if !c.keys().any(|k| k.starts_with("hugepages-")) {
        c.insert("hugepages-2Mi".into(), Quantity("0".into()));
    }
    c
}

/// capacity less kube-reserved, system-reserved and the hard eviction
/// threshold (memory and ephemeral storage), as the kubelet's allocatable.
fn allocatable(
    config: &NodeConfig,
    capacity: &BTreeMap<String, Quantity>,
) -> BTreeMap<String, Quantity> {
    let mut out = capacity.clone();
    for (name, q) in capacity {
        let Some(total) = parse_milli(&q.0) else {
            continue;
        };
        let mut reserved: i128 = [&config.kube_reserved, &config.system_reserved]
            .iter()
            .filter_map(|m| m.get(name))
            .filter_map(|v| parse_milli(v))
            .sum();
        let signal = match name.as_str() {
            "memory" => Some("memory.available"),
            "ephemeral-storage" => Some("nodefs.available"),
            _ => None,
        };
        if let Some(threshold) = signal.and_then(|s| config.eviction_hard.get(s)) {
            reserved += threshold_milli(threshold, total).unwrap_or(0);
        }
        let left = (total - reserved).max(0);
        let value = match name.as_str() {
            "cpu" if left % 1000 != 0 => format!("{left}m"),
            "cpu" | "pods" => (left / 1000).to_string(),
            n if n.starts_with("hugepages-") => binary_quantity((left / 1000) as u64),
            _ => kib_quantity((left / 1000) as u64).0,
        };
        out.insert(name.clone(), Quantity(value));
    }
    out
}

/// An eviction threshold (`100Mi` or `10%`) in thousandths of units of `total`.
fn threshold_milli(threshold: &str, total_milli: i128) -> Option<i128> {
    match threshold.strip_suffix('%') {
        Some(pct) => Some((total_milli as f64 * pct.trim().parse::<f64>().ok()? / 100.0) as i128),
        None => parse_milli(threshold),
    }
}

/// Whether `available` is under the threshold `signal` in `eviction_hard`.
fn under_threshold(config: &NodeConfig, signal: &str, available: u64, total: u64) -> bool {
    let Some(threshold) = config.eviction_hard.get(signal) else {
        return false;
    };
    let Some(limit) = threshold_milli(threshold, i128::from(total) * 1000) else {
        return false;
    };
    i128::from(available) * 1000 < limit
}

fn conditions(
    config: &NodeConfig,
    facts: &NodeFacts<'_>,
    old: &[NodeCondition],
    now: &Time,
) -> Vec<NodeCondition> {
    let p = facts.pressure;
    let memory = matches!(
        (p.memory_available_bytes, facts.resources.memory_bytes),
        (Some(a), t) if under_threshold(config, "memory.available", a, t)
    );
    let disk = matches!(
        (p.nodefs_available_bytes, p.nodefs_total_bytes),
        (Some(a), Some(t)) if under_threshold(config, "nodefs.available", a, t)
    );
    let pid = matches!(
        (p.pids_available, p.pids_max),
        (Some(a), Some(t)) if under_threshold(config, "pid.available", a, t)
    );
    let ready = ready_condition(facts.runtime);
    let list = [
        if memory {
            (
                "MemoryPressure",
                "True",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available".to_string(),
            )
        } else {
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available".to_string(),
            )
        },
        if disk {
            (
                "DiskPressure",
                "True",
                "KubeletHasDiskPressure",
                "kubelet has disk pressure".to_string(),
            )
        } else {
            (
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure".to_string(),
            )
        },
        if pid {
            (
                "PIDPressure",
                "True",
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available".to_string(),
            )
        } else {
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available".to_string(),
            )
        },
        match ready {
            Ok(()) => (
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status".to_string(),
            ),
            Err(message) => ("Ready", "False", "KubeletNotReady", message),
        },
    ];
    list.into_iter()
        .map(|(type_, status, reason, message)| {
            let previous = old.iter().find(|c| c.type_ == type_);
            let transition = match previous {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Some(now.clone()),
            };
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: transition,
            }
        })
        .collect()
}

/// Ok when the runtime and its network say ready; else the kubelet's message.
pub fn ready_condition(runtime: &RuntimeHealth) -> Result<(), String> {
    match (runtime.runtime_ready, runtime.network_ready) {
        (Some(true), Some(true)) => Ok(()),
        (None, _) | (_, None) => Err(format!(
            "container runtime status check may not have completed yet{}",
            runtime
                .problem
                .as_deref()
                .map(|p| format!(": {p}"))
                .unwrap_or_default()
        )),
        (Some(false), _) => Err(format!(
            "container runtime is down: {}",
            runtime.problem.as_deref().unwrap_or("RuntimeReady=false")
        )),
        (Some(true), Some(false)) => Err(format!(
            "container runtime network not ready: {}",
            runtime.problem.as_deref().unwrap_or("NetworkReady=false")
        )),
    }
}

/// Whether two statuses differ in anything but heartbeat times: a change
/// is patched at once, a heartbeat only every status report period.
pub fn meaningfully_changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    fn strip(s: &NodeStatus) -> NodeStatus {
        let mut s = s.clone();
        if let Some(cs) = s.conditions.as_mut() {
            for c in cs.iter_mut() {
                c.last_heartbeat_time = None;
            }
            cs.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
        s
    }
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_with<'a>(
        r: &'a MachineResources,
        i: &'a MachineInfo,
        h: &'a RuntimeHealth,
        p: &'a Pressure,
        a: &'a [String],
    ) -> NodeFacts<'a> {
        NodeFacts {
            resources: r,
            info: i,
            runtime: h,
            pressure: p,
            addresses: a,
        }
    }

    fn now(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn allocatable_is_capacity_less_reserved_and_eviction() {
        let mut config = NodeConfig::defaults("n1");
        config.kube_reserved.insert("cpu".into(), "500m".into());
        config.system_reserved.insert("memory".into(), "1Gi".into());
        let r = MachineResources {
            cpus: 2,
            memory_bytes: 4 << 30,
            hugepages: BTreeMap::new(),
            ephemeral_storage_bytes: 100 << 30,
        };
        let (i, h, p) = (
            MachineInfo::default(),
            RuntimeHealth::default(),
            Pressure::default(),
        );
        let addrs = vec!["10.0.0.5".to_string()];
        let s = node_status(&config, &facts_with(&r, &i, &h, &p, &addrs), None, &now(1));
        let cap = s.capacity.unwrap();
        let alloc = s.allocatable.unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(alloc["cpu"].0, "1500m");
        assert_eq!(cap["memory"].0, "4194304Ki");
        // 4Gi - 1Gi - 100Mi
        assert_eq!(alloc["memory"].0, format!("{}Ki", (3 << 20) - 100 * 1024));
        assert_eq!(alloc["pods"].0, "110");
        assert_eq!(s.addresses.unwrap()[0].address, "10.0.0.5");
        assert_eq!(
            s.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            10250
        );
    }

    #[test]
    fn ready_follows_the_runtime_and_keeps_transition_times() {
        let config = NodeConfig::defaults("n1");
        let r = MachineResources::default();
        let (i, p) = (MachineInfo::default(), Pressure::default());
        let mut h = RuntimeHealth {
            runtime_ready: Some(true),
            network_ready: Some(false),
            problem: Some("NetworkPluginNotReady: no CNI config".into()),
            ..Default::default()
        };
        let first = node_status(&config, &facts_with(&r, &i, &h, &p, &[]), None, &now(1));
        let ready = |s: &NodeStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&first).status, "False");
        assert!(ready(&first).message.unwrap().contains("network not ready"));
        let same = node_status(
            &config,
            &facts_with(&r, &i, &h, &p, &[]),
            Some(&first),
            &now(5),
        );
        assert!(!meaningfully_changed(&first, &same));
        h.network_ready = Some(true);
        let up = node_status(
            &config,
            &facts_with(&r, &i, &h, &p, &[]),
            Some(&same),
            &now(9),
        );
        assert_eq!(ready(&up).status, "True");
        assert_eq!(ready(&up).last_transition_time, Some(now(9)));
        let mem = up
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .unwrap();
        assert_eq!(mem.last_transition_time, Some(now(1)));
        assert!(meaningfully_changed(&same, &up));
    }

    #[test]
    fn memory_pressure_is_true_under_the_threshold() {
        let config = NodeConfig::defaults("n1");
        let r = MachineResources {
            memory_bytes: 1 << 30,
            ..Default::default()
        };
        let (i, h) = (MachineInfo::default(), RuntimeHealth::default());
        let p = Pressure {
            memory_available_bytes: Some(50 << 20),
            ..Default::default()
        };
        let s = node_status(&config, &facts_with(&r, &i, &h, &p, &[]), None, &now(1));
        let mem = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "MemoryPressure")
            .unwrap();
        assert_eq!(mem.status, "True");
    }
}

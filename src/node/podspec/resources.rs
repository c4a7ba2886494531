//! Pod cgroups (cm, cgroupfs driver) by QoS class (crate::k8s::qos), and the CRI linux resources of a sandbox and a container
//! (kuberuntime_container_linux.go, kuberuntime_sandbox_linux.go,
//! cm/helpers_linux.go, qos/policy.go).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::NodeContext;
use crate::cri::v1;
use crate::k8s::qos::{QosClass, qos_class};
use crate::k8s::quantity;

/// cm.MinShares, cm.MaxShares, cm.SharesPerCPU, cm.MilliCPUToCPU
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;
const MILLI_CPU_TO_CPU: i64 = 1000;
/// cm.QuotaPeriod (100 ms, in µs) and cm.MinQuotaPeriod
pub const QUOTA_PERIOD: i64 = 100_000;
const MIN_QUOTA_PERIOD: i64 = 1000;

/// qos/policy.go
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// scheduling.SystemCriticalPriority and the node-critical class name
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
const SYSTEM_NODE_CRITICAL: &str = "system-node-critical";

const CPU: &str = "cpu";
const MEMORY: &str = "memory";

type ResourceList = BTreeMap<String, Quantity>;

/// The pod's cgroup as the cgroupfs driver names it:
/// `<root>/kubepods/pod<uid>` (Guaranteed), `<root>/kubepods/burstable/pod<uid>`,
/// `<root>/kubepods/besteffort/pod<uid>`.
pub fn pod_cgroup_parent(pod: &Pod, node: &NodeContext) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let root = node.cgroup_root.trim_end_matches('/');
    let qos = match qos_class(pod) {
        QosClass::Guaranteed => String::new(),
        QosClass::Burstable => "/burstable".into(),
        QosClass::BestEffort => "/besteffort".into(),
    };
    format!("{root}/kubepods{qos}/pod{uid}")
}

/// cm.MilliCPUToShares
pub fn milli_cpu_to_shares(milli_cpu: i64) -> i64 {
    if milli_cpu == 0 {
        return MIN_SHARES;
    }
    (milli_cpu * SHARES_PER_CPU / MILLI_CPU_TO_CPU).clamp(MIN_SHARES, MAX_SHARES)
}

/// cm.MilliCPUToQuota: 0 (no limit) without a cpu limit.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: i64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    (milli_cpu * period / MILLI_CPU_TO_CPU).max(MIN_QUOTA_PERIOD)
}

/// kubeGenericRuntimeManager.calculateLinuxResources (cpuCFSQuota on, the
/// kubelet default). `cpu_request` None means "not given": shares follow
/// the limit then, as the kubelet does for pods the API server did not
/// default.
fn calculate_linux_resources(
    cpu_request: Option<&Quantity>,
    cpu_limit: Option<&Quantity>,
    memory_limit: Option<&Quantity>,
) -> v1::LinuxContainerResources {
    let milli = |q: Option<&Quantity>| q.map(quantity::milli_value).unwrap_or(0);
    let shares = match cpu_request {
        None => milli_cpu_to_shares(milli(cpu_limit)),
        Some(req) => milli_cpu_to_shares(quantity::milli_value(req)),
    };
    v1::LinuxContainerResources {
        cpu_shares: shares,
        memory_limit_in_bytes: memory_limit.map(quantity::value).unwrap_or(0),
        cpu_period: QUOTA_PERIOD,
        cpu_quota: milli_cpu_to_quota(milli(cpu_limit), QUOTA_PERIOD),
        ..Default::default()
    }
}

fn get<'a>(list: Option<&'a BTreeMap<String, Quantity>>, name: &str) -> Option<&'a Quantity> {
    list.and_then(|l| l.get(name))
}

/// generateLinuxContainerResources: cpu shares/quota/period, memory limit,
/// oom_score_adj and hugepage limits of one container.
pub fn container_resources(
    pod: &Pod,
    container: &Container,
    node: &NodeContext,
) -> v1::LinuxContainerResources {
    let res = container.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let mut out =
        calculate_linux_resources(get(requests, CPU), get(limits, CPU), get(limits, MEMORY));
    out.oom_score_adj = container_oom_score_adj(pod, container, node.memory_capacity_bytes);
    out.hugepage_limits = hugepage_limits(limits);
    configure_no_swap(&mut out, node);
    out
}

/// swapConfigurationHelper.ConfigureNoSwap: v1 caps memory+swap at the
/// memory limit; v2 sets memory.swap.max to 0. Nothing without the
/// controller.
fn configure_no_swap(res: &mut v1::LinuxContainerResources, node: &NodeContext) {
    if !node.swap_controller {
        return;
    }
    if node.cgroup_v2 {
        res.unified
            .insert("memory.swap.max".to_string(), "0".to_string());
    } else {
        res.memory_swap_limit_in_bytes = res.memory_limit_in_bytes;
    }
}

/// The sandbox's resources (calculateSandboxResources) and overhead
/// (convertOverheadToLinuxResources).
pub fn sandbox_resources(pod: &Pod) -> (v1::LinuxContainerResources, v1::LinuxContainerResources) {
    let requests = pod_aggregate(pod, |r| r.requests.as_ref());
    let limits = pod_aggregate(pod, |r| r.limits.as_ref());
    let zero = Quantity("0".into());
    let resources = calculate_linux_resources(
        Some(requests.get(CPU).unwrap_or(&zero)),
        limits.get(CPU),
        limits.get(MEMORY),
    );
    let overhead = match pod.spec.as_ref().and_then(|s| s.overhead.as_ref()) {
        Some(o) => {
            let cpu = o.get(CPU).unwrap_or(&zero);
            calculate_linux_resources(Some(cpu), Some(cpu), o.get(MEMORY))
        }
        None => v1::LinuxContainerResources::default(),
    };
    (resources, overhead)
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// resourcehelper.PodRequests / PodLimits without overhead: the app
/// containers' sum plus sidecars, or the largest init container (with the
/// sidecars started before it) if that is more; pod-level resources win.
fn pod_aggregate(
    pod: &Pod,
    pick: impl Fn(&ResourceRequirements) -> Option<&BTreeMap<String, Quantity>>,
) -> ResourceList {
    let Some(spec) = pod.spec.as_ref() else {
        return ResourceList::new();
    };
    if let Some(list) = spec.resources.as_ref().and_then(&pick) {
        return list.clone();
    }
    let of = |c: &Container| -> ResourceList {
        c.resources
            .as_ref()
            .and_then(&pick)
            .cloned()
            .unwrap_or_default()
    };
    let mut total = ResourceList::new();
    for c in &spec.containers {
        for (name, q) in of(c) {
            quantity::add_to(&mut total, &name, &q);
        }
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let own = of(c);
        let effective = if is_sidecar(c) {
            for (name, q) in &own {
                quantity::add_to(&mut total, name, q);
                quantity::add_to(&mut sidecars, name, q);
            }
            sidecars.clone()
        } else {
            let mut sum = own;
            for (name, q) in &sidecars {
                quantity::add_to(&mut sum, name, q);
            }
            sum
        };
        max_into(&mut init_max, &effective);
    }
    max_into(&mut total, &init_max);
    total
}

fn max_into(into: &mut ResourceList, other: &ResourceList) {
    for (name, q) in other {
        match into.get(name) {
            Some(old) if !quantity::cmp(q, old).is_gt() => {}
            _ => {
                into.insert(name.clone(), q.clone());
            }
        }
    }
}

/// qos.GetContainerOOMScoreAdjust. `memory_capacity` 0 (unknown) scores a
/// Burstable container as if it requested nothing.
pub fn container_oom_score_adj(pod: &Pod, container: &Container, memory_capacity: u64) -> i64 {
    if is_node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let own = burstable_score(container, memory_capacity);
    let spec = pod.spec.as_ref();
    let is_sidecar_here = is_sidecar(container)
        && spec
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|ics| ics.iter().any(|c| c.name == container.name));
    if !is_sidecar_here {
        return own;
    }
    // A sidecar is killed no earlier than the app containers it serves.
    spec.map(|s| &s.containers)
        .into_iter()
        .flatten()
        .map(|c| burstable_score(c, memory_capacity))
        .min()
        .map_or(own, |min| own.min(min))
}

fn burstable_score(container: &Container, memory_capacity: u64) -> i64 {
    let request = container
        .resources
        .as_ref()
        .and_then(|r| get(r.requests.as_ref(), MEMORY))
        .map(quantity::value)
        .unwrap_or(0) as i128;
    let capacity = memory_capacity as i128;
    let adj = if capacity == 0 {
        1000
    } else {
        (1000 - (1000 * request) / capacity) as i64
    };
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        return 1000 + GUARANTEED_OOM_SCORE_ADJ;
    }
    if adj == BEST_EFFORT_OOM_SCORE_ADJ {
        return adj - 1;
    }
    adj
}

/// kubetypes.IsNodeCriticalPod: critical (static, mirror, or priority at
/// least system-critical) and of class system-node-critical.
fn is_node_critical(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.priority_class_name.as_deref()) != Some(SYSTEM_NODE_CRITICAL) {
        return false;
    }
    let annotations = pod.metadata.annotations.as_ref();
    let static_pod = annotations
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s != "api");
    let mirror = annotations.is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let priority = spec.and_then(|s| s.priority).unwrap_or(0);
    static_pod || mirror || priority >= SYSTEM_CRITICAL_PRIORITY
}

/// GetHugepageLimitsFromResources for the sizes the container asks for
/// ("hugepages-2Mi" -> page size "2MB"). The kubelet also lists every size
/// the host supports with limit 0; that needs the host's sysfs, which this
/// pure module does not read.
fn hugepage_limits(limits: Option<&BTreeMap<String, Quantity>>) -> Vec<v1::HugepageLimit> {
    let mut out = Vec::new();
    for (name, amount) in limits.into_iter().flatten() {
        let Some(size) = name.strip_prefix("hugepages-") else {
            continue;
        };
        let bytes = quantity::value(&Quantity(size.into()));
        if bytes <= 0 {
            continue;
        }
        out.push(v1::HugepageLimit {
            page_size: hugepage_unit_size(bytes as u64),
            limit: quantity::value(amount).max(0) as u64,
        });
    }
    out
}

/// v1helper.HugePageUnitSizeFromByteSize
fn hugepage_unit_size(mut size: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut idx = 0;
    while size >= 1024 && size.is_multiple_of(1024) && idx < UNITS.len() - 1 {
        size /= 1024;
        idx += 1;
    }
    format!("{size}{}", UNITS[idx])
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;

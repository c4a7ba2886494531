//! NodeResourcesFit: the pod's requests against the node's allocatable
//! minus what its pods request (cpu, memory, ephemeral-storage, extended
//! resources, pod count); and the two resource scores, least allocated and
//! balanced allocation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::status::{Code, Status};
use crate::k8s::quantity::parse_milli;

/// Resource name -> amount in thousandths of its unit.
pub type Resources = BTreeMap<String, i128>;

pub const ERR_TOO_MANY_PODS: &str = "Too many pods";
/// The non-zero requests kube assumes for scoring containers that ask for nothing.
const DEFAULT_MILLI_CPU: i128 = 100;
const DEFAULT_MEMORY_MILLI: i128 = 200 * 1024 * 1024 * 1000;

/// The resources the fit filter checks: the three core ones, extended
/// resources (domain-prefixed) and hugepages.
fn checked(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("hugepages-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

fn add_list(into: &mut Resources, list: Option<&BTreeMap<String, Quantity>>) {
    for (k, q) in list.into_iter().flatten() {
        if let Some(v) = parse_milli(&q.0) {
            *into.entry(k.clone()).or_default() += v;
        }
    }
}

/// A container's requests; a limit without a request counts as the
/// request, as kube-apiserver's defaulting makes it.
fn container_requests(c: &Container) -> Resources {
    let mut r = Resources::new();
    let res = c.resources.as_ref();
    add_list(&mut r, res.and_then(|r| r.requests.as_ref()));
    for (k, q) in res.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
        if !r.contains_key(k)
            && let Some(v) = parse_milli(&q.0)
        {
            r.insert(k.clone(), v);
        }
    }
    r
}

fn max_into(into: &mut Resources, other: &Resources) {
    for (k, v) in other {
        let e = into.entry(k.clone()).or_default();
        *e = (*e).max(*v);
    }
}

fn sum_into(into: &mut Resources, other: &Resources) {
    for (k, v) in other {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// What the pod requests: its containers' sum (with restartable init
/// containers, sidecars, running beside them), or the largest init
/// container plus the sidecars started before it, whichever is larger;
/// plus the pod overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::new();
    };
    let mut total = Resources::new();
    for c in &spec.containers {
        sum_into(&mut total, &container_requests(c));
    }
    let mut sidecars = Resources::new();
    let mut init_peak = Resources::new();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sum_into(&mut sidecars, &r);
        } else {
            let mut with_sidecars = sidecars.clone();
            sum_into(&mut with_sidecars, &r);
            max_into(&mut init_peak, &with_sidecars);
        }
    }
    sum_into(&mut total, &sidecars);
    max_into(&mut total, &init_peak);
    add_list(&mut total, spec.overhead.as_ref());
    total
}

/// cpu and memory for scoring, with kube's defaults for containers that
/// request none.
pub fn non_zero_requests(pod: &Pod) -> (i128, i128) {
    let Some(spec) = &pod.spec else {
        return (0, 0);
    };
    let (mut cpu, mut mem) = (0, 0);
    for c in &spec.containers {
        let r = container_requests(c);
        cpu += r.get("cpu").copied().unwrap_or(DEFAULT_MILLI_CPU);
        mem += r.get("memory").copied().unwrap_or(DEFAULT_MEMORY_MILLI);
    }
    (cpu, mem)
}

/// status.allocatable, or capacity where the node reports no allocatable.
pub fn allocatable(node: &Node) -> Resources {
    let mut r = Resources::new();
    let status = node.status.as_ref();
    let list = status
        .and_then(|s| s.allocatable.as_ref())
        .or(status.and_then(|s| s.capacity.as_ref()));
    add_list(&mut r, list);
    r
}

/// What the node's pods already use.
#[derive(Debug, Default, Clone)]
pub struct Used {
    pub requested: Resources,
    pub non_zero_cpu: i128,
    pub non_zero_memory: i128,
    pub pods: usize,
}

impl Used {
    pub fn add(&mut self, pod: &Pod) {
        sum_into(&mut self.requested, &pod_requests(pod));
        let (cpu, mem) = non_zero_requests(pod);
        self.non_zero_cpu += cpu;
        self.non_zero_memory += mem;
        self.pods += 1;
    }
}

/// The fit filter. Each resource short is a reason of its own; when the
/// pod asks for more than the node has at all, no eviction could help.
pub fn filter(request: &Resources, alloc: &Resources, used: &Used) -> Option<Status> {
    let mut reasons = Vec::new();
    let mut code = Code::Unschedulable;
    let allowed_pods = alloc.get("pods").copied().unwrap_or(0) / 1000;
    if used.pods as i128 + 1 > allowed_pods {
        reasons.push(ERR_TOO_MANY_PODS.to_string());
    }
    for (name, want) in request {
        if *want <= 0 || !checked(name) {
            continue;
        }
        let have = alloc.get(name).copied().unwrap_or(0);
        let taken = used.requested.get(name).copied().unwrap_or(0);
        if *want > have - taken {
            reasons.push(format!("Insufficient {name}"));
            if *want > have {
                code = Code::Unresolvable;
            }
        }
    }
    // kube lists cpu, memory, ephemeral-storage, then the rest.
    let rank = |r: &String| match r.as_str() {
        ERR_TOO_MANY_PODS => 0,
        "Insufficient cpu" => 1,
        "Insufficient memory" => 2,
        "Insufficient ephemeral-storage" => 3,
        _ => 4,
    };
    reasons.sort_by_key(rank);
    (!reasons.is_empty()).then_some(Status { code, reasons })
}

pub const MAX_SCORE: i64 = 100;

fn fraction(requested: i128, capacity: i128) -> f64 {
    if capacity <= 0 {
        return 1.0;
    }
    (requested as f64 / capacity as f64).min(1.0)
}

/// LeastAllocated (cpu and memory weighted equally): the free share left
/// after placing the pod, 0..=100.
pub fn least_allocated(pod: &Pod, alloc: &Resources, used: &Used) -> i64 {
    let (cpu, mem) = non_zero_requests(pod);
    let one = |want: i128, have: Option<&i128>| -> i64 {
        let have = have.copied().unwrap_or(0);
        if have <= 0 || want > have {
            return 0;
        }
        ((have - want) * i128::from(MAX_SCORE) / have) as i64
    };
    (one(used.non_zero_cpu + cpu, alloc.get("cpu"))
        + one(used.non_zero_memory + mem, alloc.get("memory")))
        / 2
}

/// BalancedAllocation: nodes whose cpu and memory fill up evenly score
/// higher: (1 - standard deviation of the two fractions) * 100.
pub fn balanced_allocation(pod: &Pod, alloc: &Resources, used: &Used) -> i64 {
    let (cpu, mem) = non_zero_requests(pod);
    let c = fraction(
        used.non_zero_cpu + cpu,
        alloc.get("cpu").copied().unwrap_or(0),
    );
    let m = fraction(
        used.non_zero_memory + mem,
        alloc.get("memory").copied().unwrap_or(0),
    );
    let std = (c - m).abs() / 2.0;
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeStatus, PodSpec, ResourceRequirements};

    pub fn container(requests: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(
                    requests
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: Some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(alloc: &[(&str, &str)]) -> Node {
        Node {
            status: Some(NodeStatus {
                allocatable: Some(
                    alloc
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn requests_take_init_containers_and_sidecars_into_account() {
        let p = pod(
            vec![container(&[("cpu", "100m")]), container(&[("cpu", "200m")])],
            vec![container(&[("cpu", "500m"), ("memory", "1Gi")])],
        );
        let r = pod_requests(&p);
        assert_eq!(r["cpu"], 500);
        assert_eq!(r["memory"], 1000 * (1 << 30));
        let mut sidecar = container(&[("cpu", "1")]);
        sidecar.restart_policy = Some("Always".into());
        let p = pod(vec![container(&[("cpu", "100m")])], vec![sidecar]);
        assert_eq!(pod_requests(&p)["cpu"], 1100);
    }

    #[test]
    fn fit_reports_every_shortfall() {
        let n = node(&[
            ("cpu", "1"),
            ("memory", "1Gi"),
            ("pods", "2"),
            ("ephemeral-storage", "1Gi"),
        ]);
        let alloc = allocatable(&n);
        let mut used = Used::default();
        used.add(&pod(vec![container(&[("cpu", "800m")])], vec![]));
        let p = pod(
            vec![container(&[("cpu", "300m"), ("memory", "2Gi")])],
            vec![],
        );
        let s = filter(&pod_requests(&p), &alloc, &used).unwrap();
        assert_eq!(s.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        // 2Gi of memory is more than the node has: eviction cannot help.
        assert_eq!(s.code, Code::Unresolvable);
        let p = pod(vec![container(&[("cpu", "300m")])], vec![]);
        assert_eq!(
            filter(&pod_requests(&p), &alloc, &used).unwrap().code,
            Code::Unschedulable
        );
        let small = pod(vec![container(&[("cpu", "100m")])], vec![]);
        assert!(filter(&pod_requests(&small), &alloc, &used).is_none());
        used.add(&small);
        let s = filter(&pod_requests(&small), &alloc, &used).unwrap();
        assert_eq!(s.reasons, vec![ERR_TOO_MANY_PODS]);
        // 900m of 1 cpu taken: 200m does not fit either.
        let p = pod(vec![container(&[("cpu", "200m")])], vec![]);
        let s = filter(&pod_requests(&p), &alloc, &used).unwrap();
        assert_eq!(s.reasons, vec![ERR_TOO_MANY_PODS, "Insufficient cpu"]);
        let p = pod(
            vec![container(&[
                ("ephemeral-storage", "2Gi"),
                ("example.com/gpu", "1"),
            ])],
            vec![],
        );
        let s = filter(&pod_requests(&p), &alloc, &Used::default()).unwrap();
        assert_eq!(
            s.reasons,
            vec![
                "Insufficient ephemeral-storage",
                "Insufficient example.com/gpu"
            ]
        );
    }

    #[test]
    fn scores_prefer_the_emptier_and_more_balanced_node() {
        let alloc = allocatable(&node(&[("cpu", "2"), ("memory", "2Gi"), ("pods", "10")]));
        let p = pod(vec![container(&[("cpu", "1"), ("memory", "1Gi")])], vec![]);
        let empty = Used::default();
        assert_eq!(least_allocated(&p, &alloc, &empty), 50);
        assert_eq!(balanced_allocation(&p, &alloc, &empty), 100);
        let mut busy = Used::default();
        busy.add(&pod(
            vec![container(&[("cpu", "1"), ("memory", "100Mi")])],
            vec![],
        ));
        assert!(least_allocated(&p, &alloc, &busy) < 50);
        assert!(balanced_allocation(&p, &alloc, &busy) < 100);
        // Containers without requests still count for scoring.
        let none = pod(vec![container(&[])], vec![]);
        assert_eq!(
            non_zero_requests(&none),
            (DEFAULT_MILLI_CPU, DEFAULT_MEMORY_MILLI)
        );
    }
}

//! The pod QoS class (pkg/apis/core/v1/helper/qos): the apiserver sets it in
//! a pod's status and the kubelet sizes cgroups and oom_score_adj by it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity;

const CPU: &str = "cpu";
const MEMORY: &str = "memory";

type ResourceList = BTreeMap<String, Quantity>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// v1qos.GetPodQOS: the status' class when the API already set it, else
/// computed from the pod-level resources (when given) or the containers'.
pub fn qos_class(pod: &Pod) -> QosClass {
    if let Some(class) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        match class {
            "Guaranteed" => return QosClass::Guaranteed,
            "Burstable" => return QosClass::Burstable,
            "BestEffort" => return QosClass::BestEffort,
            _ => {}
        }
    }
    compute_qos(pod)
}

/// v1qos.ComputePodQOS
fn compute_qos(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let mut requests = ResourceList::new();
    let mut limits = ResourceList::new();
    let mut guaranteed = true;
    let mut accumulate = |res: Option<&ResourceRequirements>| {
        let empty = BTreeMap::new();
        let reqs = res.and_then(|r| r.requests.as_ref()).unwrap_or(&empty);
        let lims = res.and_then(|r| r.limits.as_ref()).unwrap_or(&empty);
        for (name, q) in reqs {
            if (name == CPU || name == MEMORY) && quantity::is_positive(q) {
                quantity::add_to(&mut requests, name, q);
            }
        }
        let mut limits_found = 0;
        for (name, q) in lims {
            if (name == CPU || name == MEMORY) && quantity::is_positive(q) {
                limits_found += 1;
                quantity::add_to(&mut limits, name, q);
            }
        }
        if limits_found < 2 {
            guaranteed = false;
        }
    };
    if let Some(pod_resources) = spec.resources.as_ref() {
        accumulate(Some(pod_resources));
    } else {
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            accumulate(c.resources.as_ref());
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed {
        for (name, req) in &requests {
            match limits.get(name) {
                Some(lim) if quantity::cmp(lim, req).is_eq() => {}
                _ => {
                    guaranteed = false;
                    break;
                }
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

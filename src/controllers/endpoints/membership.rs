//! Which services a pod change concerns: those whose selector matches the
//! pod now, and those it matched when last seen (a relabelled or deleted
//! pod must leave the endpoints of services it no longer matches).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::Store;

use super::pods;
use crate::controllers::job::workqueue::key_of;

#[derive(Debug, Default)]
pub struct Membership {
    last: HashMap<String, Vec<String>>,
}

impl Membership {
    /// The keys of the services `pod` matches now or matched before; with
    /// `gone` the pod is forgotten.
    pub fn changed(&mut self, services: &Store<Service>, pod: &Pod, gone: bool) -> Vec<String> {
        let key = key_of(&pod.metadata);
        let ns = pod.metadata.namespace.as_deref();
        let now: Vec<String> = if gone {
            Vec::new()
        } else {
            services
                .state()
                .iter()
                .filter(|s| s.metadata.namespace.as_deref() == ns)
                .filter(|s| pods::selector(s).is_some_and(|sel| pods::selects(sel, pod)))
                .map(|s| key_of(&s.metadata))
                .collect()
        };
        let mut all = if gone {
            self.last.remove(&key).unwrap_or_default()
        } else {
            self.last.insert(key, now.clone()).unwrap_or_default()
        };
        all.extend(now);
        all.sort();
        all.dedup();
        all
    }
}

/// The pods of `svc`'s namespace its selector picks, by name.
pub fn selected<'a>(svc: &Service, all: &'a [std::sync::Arc<Pod>]) -> Vec<&'a Pod> {
    let Some(sel) = pods::selector(svc) else {
        return Vec::new();
    };
    let mut out: Vec<&Pod> = all
        .iter()
        .filter(|p| p.metadata.namespace == svc.metadata.namespace && pods::selects(sel, p))
        .map(|p| p.as_ref())
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

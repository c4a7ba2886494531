//! Test fixtures the scheduler's plugin tests share: pods labelled
//! `app=<name>`, selectors of them, and nodes by hostname.

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::labels::Labels;

pub const HOST: &str = "kubernetes.io/hostname";

/// The labels `app=<app>`.
pub fn app_labels(app: &str) -> Labels {
    Labels::from([("app".to_string(), app.to_string())])
}

/// A selector of the pods labelled `app=<app>`.
pub fn app_selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(app_labels(app)),
        ..Default::default()
    }
}

/// A pod in `default` labelled `app=<app>` with `spec`.
pub fn app_pod(app: &str, spec: PodSpec) -> Pod {
    Pod {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            labels: Some(app_labels(app)),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    }
}

/// A node's labels with hostname `name`.
pub fn host(name: &str) -> Labels {
    Labels::from([(HOST.to_string(), name.to_string())])
}

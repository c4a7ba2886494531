//! pod_status against the kubelet's behaviour, one case per rule; shared builders here.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

mod containers;
mod patch;
mod phase_conditions;

pub(super) const SEC: i64 = 1_000_000_000;
pub(super) const T0: i64 = 1_700_000_000;

pub(super) fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(T0 + secs).unwrap())
}

pub(super) fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

pub(super) fn with_status(mut p: Pod, s: PodStatus) -> Pod {
    p.status = Some(s);
    p
}

pub(super) fn sandbox(id: &str, created: i64, ready: bool, ip: &str) -> v1::PodSandboxStatus {
    v1::PodSandboxStatus {
        id: id.into(),
        state: if ready {
            v1::PodSandboxState::SandboxReady
        } else {
            v1::PodSandboxState::SandboxNotready
        } as i32,
        created_at: (T0 + created) * SEC,
        network: Some(v1::PodSandboxNetworkStatus {
            ip: ip.into(),
            additional_ips: vec![],
        }),
        linux: Some(v1::LinuxPodSandboxStatus {
            namespaces: Some(v1::Namespace {
                options: Some(v1::NamespaceOption::default()),
            }),
        }),
        ..Default::default()
    }
}

/// A CRI container: `exit` None is running, Some(code) exited at `created + 5`.
pub(super) fn cri(
    name: &str,
    attempt: u32,
    created: i64,
    exit: Option<i32>,
    reason: &str,
) -> v1::ContainerStatus {
    v1::ContainerStatus {
        id: format!("{name}-{attempt}"),
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt,
        }),
        state: if exit.is_some() {
            v1::ContainerState::ContainerExited
        } else {
            v1::ContainerState::ContainerRunning
        } as i32,
        created_at: (T0 + created) * SEC,
        started_at: (T0 + created + 1) * SEC + 123,
        finished_at: if exit.is_some() {
            (T0 + created + 5) * SEC
        } else {
            0
        },
        exit_code: exit.unwrap_or(0),
        reason: reason.into(),
        message: if exit.is_some() {
            "bye".into()
        } else {
            String::new()
        },
        image: Some(v1::ImageSpec {
            image: "docker.io/library/busybox:latest".into(),
            ..Default::default()
        }),
        image_ref: "docker.io/library/busybox@sha256:abc".into(),
        labels: HashMap::from([("io.kubernetes.container.name".into(), name.into())]),
        annotations: HashMap::from([(
            "io.kubernetes.container.restartCount".into(),
            attempt.to_string(),
        )]),
        ..Default::default()
    }
}

pub(super) struct Inputs {
    pub sandboxes: Vec<v1::PodSandboxStatus>,
    pub containers: Vec<v1::ContainerStatus>,
    pub waiting: HashMap<String, (String, String)>,
    pub readiness: HashMap<String, bool>,
    pub startup: HashMap<String, bool>,
}

impl Inputs {
    pub(super) fn new(
        sandboxes: Vec<v1::PodSandboxStatus>,
        containers: Vec<v1::ContainerStatus>,
    ) -> Self {
        Self {
            sandboxes,
            containers,
            waiting: HashMap::new(),
            readiness: HashMap::new(),
            startup: HashMap::new(),
        }
    }
    pub(super) fn status(&self, pod: &Pod, now: i64) -> PodStatus {
        let observed = ObservedPod {
            sandboxes: &self.sandboxes,
            containers: &self.containers,
            waiting: &self.waiting,
            readiness: &self.readiness,
            startup: &self.startup,
            qos_class: "BestEffort",
            runtime_name: "containerd",
        };
        pod_status(pod, &observed, &["192.168.1.10".to_string()], at(now))
    }
}

pub(super) fn one(restart: &str) -> Pod {
    pod(json!({"restartPolicy": restart, "containers": [{"name": "app", "image": "busybox"}]}))
}

pub(super) fn cs<'a>(s: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    s.container_statuses
        .iter()
        .chain(s.init_container_statuses.iter())
        .flatten()
        .find(|c| c.name == name)
        .unwrap()
}

pub(super) fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a k8s_openapi::api::core::v1::PodCondition {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == t)
        .unwrap()
}

pub(super) fn ready_sb() -> Vec<v1::PodSandboxStatus> {
    vec![sandbox("sb1", 0, true, "10.88.0.5")]
}

pub(super) fn with_init(restart: &str) -> Pod {
    pod(json!({"restartPolicy": restart,
        "initContainers": [{"name": "init1", "image": "busybox"}, {"name": "init2", "image": "busybox"}],
        "containers": [{"name": "app", "image": "busybox"}]}))
}

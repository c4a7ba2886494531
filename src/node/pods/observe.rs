//! What the runtime holds for one pod: its sandboxes and every attempt of
//! its containers, found by the kubelet's CRI labels (so a restarted agent
//! finds what a previous run started).

use std::collections::HashMap;
use std::time::Duration;

use crate::cri::api::v1;
use crate::cri::api::{CriError, RuntimeService};
use crate::node::podspec::labels;

/// Longest one CRI call of an observation may take.
pub const CRI_CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Newest first.
    pub sandboxes: Vec<v1::PodSandboxStatus>,
    /// Every attempt of every container, newest first.
    pub containers: Vec<v1::ContainerStatus>,
}

impl Observed {
    pub fn newest_sandbox(&self) -> Option<&v1::PodSandboxStatus> {
        self.sandboxes.first()
    }

    /// The newest attempt of container `name`.
    pub fn latest(&self, name: &str) -> Option<&v1::ContainerStatus> {
        self.containers.iter().find(|c| container_name(c) == name)
    }

    pub fn running(&self) -> impl Iterator<Item = &v1::ContainerStatus> {
        self.containers
            .iter()
            .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32)
    }

    /// The pod's IPs, from its newest ready sandbox.
    pub fn pod_ips(&self) -> Vec<String> {
        let Some(s) = self.newest_sandbox() else {
            return vec![];
        };
        let Some(net) = &s.network else {
            return vec![];
        };
        std::iter::once(net.ip.clone())
            .chain(net.additional_ips.iter().map(|i| i.ip.clone()))
            .filter(|ip| !ip.is_empty())
            .collect()
    }
}

pub fn container_name(c: &v1::ContainerStatus) -> &str {
    c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
}

pub fn attempt(c: &v1::ContainerStatus) -> u32 {
    c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)
}

pub fn is_ready(s: &v1::PodSandboxStatus) -> bool {
    s.state == v1::PodSandboxState::SandboxReady as i32
}

fn by_pod(uid: &str) -> HashMap<String, String> {
    [(labels::POD_UID.to_string(), uid.to_string())].into()
}

async fn timed<T>(
    what: &str,
    call: impl Future<Output = Result<T, CriError>>,
) -> Result<T, CriError> {
    tokio::time::timeout(CRI_CALL_TIMEOUT, call)
        .await
        .map_err(|_| CriError::deadline_exceeded(format!("{what} timed out")))?
}

/// The runtime's view of pod `uid`. Objects that vanish between the list
/// and their status call are skipped.
pub async fn observe(runtime: &dyn RuntimeService, uid: &str) -> Result<Observed, CriError> {
    let sandboxes = timed(
        "ListPodSandbox",
        runtime.list_pod_sandbox(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                label_selector: by_pod(uid),
                ..Default::default()
            }),
        }),
    )
    .await?
    .items;
    let mut out = Observed::default();
    for s in sandboxes {
        match timed(
            "PodSandboxStatus",
            runtime.pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: s.id.clone(),
                verbose: false,
            }),
        )
        .await
        {
            Ok(r) => out.sandboxes.extend(r.status),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    out.sandboxes
        .sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let containers = timed(
        "ListContainers",
        runtime.list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                label_selector: by_pod(uid),
                ..Default::default()
            }),
        }),
    )
    .await?
    .containers;
    for c in containers {
        match timed(
            "ContainerStatus",
            runtime.container_status(v1::ContainerStatusRequest {
                container_id: c.id.clone(),
                verbose: false,
            }),
        )
        .await
        {
            Ok(r) => out.containers.extend(r.status),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    out.containers
        .sort_by_key(|c| std::cmp::Reverse((attempt(c), c.created_at)));
    Ok(out)
}

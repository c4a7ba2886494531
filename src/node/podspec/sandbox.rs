//! The PodSandboxConfig (kuberuntime_sandbox.go generatePodSandboxConfig).

use k8s_openapi::api::core::v1::Pod;

use super::{NodeContext, PodSpecError};
use crate::cri::v1;

pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    node: &NodeContext,
) -> Result<v1::PodSandboxConfig, PodSpecError> {
    let _ = (pod, node);
    Ok(v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            attempt,
            ..Default::default()
        }),
        ..Default::default()
    })
}

//! The ContainerConfig (kuberuntime_container.go generateContainerConfig).

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{ContainerContext, NodeContext, PodSpecError};
use crate::cri::v1;

pub fn container_config(
    pod: &Pod,
    container: &Container,
    ctx: &ContainerContext<'_>,
    node: &NodeContext,
    envs: Vec<v1::KeyValue>,
) -> Result<v1::ContainerConfig, PodSpecError> {
    let _ = (pod, node);
    Ok(v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: container.name.clone(),
            attempt: ctx.restart_count,
        }),
        image: Some(v1::ImageSpec {
            image: ctx.image_ref.to_string(),
            ..Default::default()
        }),
        envs,
        ..Default::default()
    })
}

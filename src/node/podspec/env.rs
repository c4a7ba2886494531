//! A container's environment (kubelet_pods.go makeEnvironmentVariables).

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{ContainerContext, NodeContext, ObjectLookup, PodSpecError};
use crate::cri::v1;

pub async fn container_env(
    pod: &Pod,
    container: &Container,
    ctx: &ContainerContext<'_>,
    node: &NodeContext,
    lookup: &dyn ObjectLookup,
) -> Result<Vec<v1::KeyValue>, PodSpecError> {
    let _ = (pod, container, ctx, node, lookup);
    Ok(Vec::new())
}

//! The OCI spec containerd keeps with each container: read by Exec (the
//! process to start alongside) and by UpdateContainerResources (which
//! merges new limits into it and writes it back).

use containerd_client::services::v1::{GetContainerRequest, UpdateContainerRequest};
use oci_spec::runtime::Spec;

use super::{ContainerError, ContainerManager, SPEC_TYPE_URL};

impl ContainerManager {
    /// The container's stored spec, parsed, with the bytes it was parsed
    /// from (to write back unchanged should a later step fail).
    pub(super) async fn stored_spec(&self, id: &str) -> Result<(Spec, Vec<u8>), ContainerError> {
        let cd = &self.containerd;
        let stored = cd
            .containers()
            .get(cd.request(GetContainerRequest { id: id.to_string() }))
            .await
            .map_err(|s| ContainerError::from_status("reading container spec", &s))?
            .into_inner()
            .container
            .and_then(|c| c.spec)
            .ok_or_else(|| ContainerError::Failed("container has no spec".into()))?;
        let spec = serde_json::from_slice(&stored.value)
            .map_err(|e| ContainerError::failed("parsing container spec", e))?;
        Ok((spec, stored.value))
    }

    /// Replaces the container's stored spec with `spec` (JSON).
    pub(super) async fn store_spec(&self, id: &str, spec: Vec<u8>) -> Result<(), ContainerError> {
        let cd = &self.containerd;
        let request = UpdateContainerRequest {
            container: Some(containerd_client::services::v1::Container {
                id: id.to_string(),
                spec: Some(prost_types::Any {
                    type_url: SPEC_TYPE_URL.into(),
                    value: spec,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["spec".into()],
            }),
        };
        cd.containers()
            .update(cd.request(request))
            .await
            .map(|_| ())
            .map_err(|s| ContainerError::from_status("saving container spec", &s))
    }
}

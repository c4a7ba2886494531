//! ContainerStatus and ListContainers, from memory.

use crate::cri::api::v1 as cri;

use super::{Container, ContainerError, ContainerManager, State};

pub(super) fn cri_state(state: State) -> cri::ContainerState {
    match state {
        State::Created => cri::ContainerState::ContainerCreated,
        State::Running => cri::ContainerState::ContainerRunning,
        State::Exited => cri::ContainerState::ContainerExited,
    }
}

/// What ContainerStatus reports as the image: as containerd, the image's
/// repo tag when it has one (the kubelet creates containers by image id and
/// shows this in the pod's status), else the image as the request named it.
fn status_image_spec(container: &Container) -> cri::ImageSpec {
    match &container.image_tag {
        Some(tag) => cri::ImageSpec {
            image: tag.clone(),
            ..Default::default()
        },
        None => image_spec(container),
    }
}

/// The image as the request named it (what ListContainers reports, as
/// containerd).
fn image_spec(container: &Container) -> cri::ImageSpec {
    cri::ImageSpec {
        image: container.image.clone(),
        user_specified_image: container.user_specified_image.clone(),
        ..Default::default()
    }
}

impl ContainerManager {
    pub fn status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::ContainerStatusResponse, ContainerError> {
        let container = self.get(id)?;
        let rt = container.snapshot();
        let mut info = std::collections::HashMap::new();
        if verbose {
            let detail = serde_json::json!({
                "pid": rt.pid,
                "sandboxID": container.sandbox_id,
                "cgroup": container.cgroup,
            });
            info.insert("info".to_string(), detail.to_string());
        }
        Ok(cri::ContainerStatusResponse {
            status: Some(cri::ContainerStatus {
                id: container.id.clone(),
                metadata: Some(container.metadata.clone()),
                state: cri_state(rt.state) as i32,
                created_at: container.created_at,
                started_at: rt.started_at,
                finished_at: rt.finished_at,
                exit_code: rt.exit_code,
                image: Some(status_image_spec(&container)),
                image_ref: container.image_ref.clone(),
                image_id: container.image_id.clone(),
                user: container.user.get().cloned(),
                stop_signal: super::stop::cri_signal(container.stop_signal) as i32,
                reason: rt.reason.clone(),
                message: rt.message.clone(),
                labels: container.labels.clone(),
                annotations: container.annotations.clone(),
                mounts: container.mounts.clone(),
                log_path: container
                    .log_path
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            info,
        })
    }

    pub fn list(&self, filter: Option<&cri::ContainerFilter>) -> Vec<cri::Container> {
        let containers: Vec<_> = self.containers.lock().values().cloned().collect();
        let mut out: Vec<cri::Container> = containers
            .iter()
            .filter_map(|c| {
                let state = cri_state(c.snapshot().state) as i32;
                matches(c, state, filter).then(|| cri::Container {
                    id: c.id.clone(),
                    pod_sandbox_id: c.sandbox_id.clone(),
                    metadata: Some(c.metadata.clone()),
                    image: Some(image_spec(c)),
                    image_ref: c.image_ref.clone(),
                    image_id: c.image_id.clone(),
                    state,
                    created_at: c.created_at,
                    labels: c.labels.clone(),
                    annotations: c.annotations.clone(),
                })
            })
            .collect();
        out.sort_by_key(|c| c.created_at);
        out
    }
}

pub(super) fn matches(c: &Container, state: i32, filter: Option<&cri::ContainerFilter>) -> bool {
    let Some(f) = filter else { return true };
    (f.id.is_empty() || c.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&f.pod_sandbox_id))
        && f.state.as_ref().is_none_or(|s| s.state == state)
        && f.label_selector
            .iter()
            .all(|(k, v)| c.labels.get(k) == Some(v))
}

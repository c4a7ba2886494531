//! A container's volumeMounts as CRI Mounts (kubelet's makeMounts):
//! subPath/subPathExpr resolved inside the volume, readOnly, and
//! mountPropagation.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{VolumeManager, subpath};
use crate::cri::api::v1;

/// Err is the message of a CreateContainerConfigError.
pub async fn container_mounts(
    m: &VolumeManager,
    pod: &Pod,
    container: &Container,
    envs: &[v1::KeyValue],
) -> Result<Vec<v1::Mount>, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let volumes = m.mounted(&uid);
    let env: HashMap<String, String> = envs
        .iter()
        .map(|kv| (kv.key.clone(), String::from_utf8_lossy(&kv.value).into_owned()))
        .collect();
    let privileged = container
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    let mut out = vec![];
    for vm in container.volume_mounts.iter().flatten() {
        let Some(vol) = volumes.get(&vm.name) else {
            return Err(format!(
                "cannot find volume {:?} to mount into container {:?}",
                vm.name, container.name
            ));
        };
        let sub = match (&vm.sub_path_expr, &vm.sub_path) {
            (Some(expr), _) if !expr.is_empty() => subpath::expand_expr(expr, &env),
            (_, Some(s)) => s.clone(),
            _ => String::new(),
        };
        let host_path = if sub.is_empty() {
            vol.path.clone()
        } else {
            let root = vol.path.clone();
            let s = sub.clone();
            tokio::task::spawn_blocking(move || subpath::resolve(&root, &s))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| {
                    format!(
                        "failed to prepare subPath for volumeMount {:?} of container {:?}: {e}",
                        vm.name, container.name
                    )
                })?
        };
        let propagation = match vm.mount_propagation.as_deref() {
            None | Some("None") => v1::MountPropagation::PropagationPrivate,
            Some("HostToContainer") => v1::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") if privileged => v1::MountPropagation::PropagationBidirectional,
            Some("Bidirectional") => {
                return Err(format!(
                    "volumeMount {:?}: Bidirectional mount propagation is available only to privileged containers",
                    vm.name
                ));
            }
            Some(other) => {
                return Err(format!(
                    "volumeMount {:?}: unknown mountPropagation {other:?}",
                    vm.name
                ));
            }
        };
        let readonly = vm.read_only.unwrap_or(false) || vol.read_only;
        let recursive_read_only = readonly
            && vm.recursive_read_only.as_deref() == Some("Enabled")
            && propagation == v1::MountPropagation::PropagationPrivate;
        out.push(v1::Mount {
            container_path: vm.mount_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly,
            propagation: propagation as i32,
            recursive_read_only,
            ..Default::default()
        });
    }
    Ok(out)
}

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
        .map(|kv| {
            (
                kv.key.clone(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::node::podspec::testutil::{FakeLookup, first_container, pod_with_spec};
    use crate::node::volumes::{Mounted, PodState};

    async fn manager(volumes: &[(&str, Mounted)]) -> VolumeManager {
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let m = VolumeManager::new(
            "/nonexistent".into(),
            client,
            Arc::new(FakeLookup::default()),
        );
        let state = PodState {
            volumes: volumes
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            failures: 0,
        };
        m.pods.lock().unwrap().insert("uid-1".into(), state);
        m
    }

    #[tokio::test]
    async fn read_only_propagation_and_sub_paths() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::create_dir(&cfg).unwrap();
        let m = manager(&[
            (
                "data",
                Mounted {
                    path: data.clone(),
                    read_only: false,
                },
            ),
            (
                "cfg",
                Mounted {
                    path: cfg.clone(),
                    read_only: true,
                },
            ),
        ])
        .await;
        let pod = pod_with_spec(json!({"containers": [{"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/data", "mountPropagation": "HostToContainer"},
            {"name": "data", "mountPath": "/ro", "readOnly": true},
            {"name": "cfg", "mountPath": "/cfg"},
            {"name": "data", "mountPath": "/logs", "subPathExpr": "logs/$(POD)"},
        ]}]}));
        let envs = vec![v1::KeyValue {
            key: "POD".into(),
            value: b"web".to_vec(),
        }];
        let mounts = container_mounts(&m, &pod, first_container(&pod), &envs)
            .await
            .unwrap();
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[0].host_path, data.to_string_lossy());
        assert!(!mounts[0].readonly);
        assert_eq!(
            mounts[0].propagation,
            v1::MountPropagation::PropagationHostToContainer as i32
        );
        assert!(mounts[1].readonly);
        assert!(mounts[2].readonly, "configMap-like volumes are read-only");
        let logs = data.canonicalize().unwrap().join("logs/web");
        assert_eq!(mounts[3].host_path, logs.to_string_lossy());
        assert!(logs.is_dir());
    }

    #[tokio::test]
    async fn bad_mounts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(&[(
            "data",
            Mounted {
                path: dir.path().to_path_buf(),
                read_only: false,
            },
        )])
        .await;
        let check = |mount: serde_json::Value, privileged: bool| {
            let pod = pod_with_spec(json!({"containers": [{"name": "c",
                "securityContext": {"privileged": privileged}, "volumeMounts": [mount]}]}));
            let m = &m;
            async move {
                container_mounts(m, &pod, first_container(&pod), &[])
                    .await
                    .map(|_| ())
            }
        };
        let e = check(
            json!({"name": "data", "mountPath": "/x", "subPath": "../x"}),
            false,
        )
        .await
        .unwrap_err();
        assert!(e.contains("must not contain '..'"), "{e}");
        let e = check(json!({"name": "nope", "mountPath": "/x"}), false)
            .await
            .unwrap_err();
        assert!(e.contains("cannot find volume"), "{e}");
        let bidi = json!({"name": "data", "mountPath": "/x", "mountPropagation": "Bidirectional"});
        let e = check(bidi.clone(), false).await.unwrap_err();
        assert!(e.contains("only to privileged"), "{e}");
        check(bidi, true).await.unwrap();
    }
}

//! emptyDir sizeLimit, as the kubelet's eviction manager enforces it
//! (localStorageEviction / emptyDirLimitEviction): a disk-backed emptyDir
//! whose usage exceeds its sizeLimit evicts the pod. A memory-backed one is
//! a tmpfs of that size already and cannot grow past it.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::{EMPTY_DIR, volume_dir};
use crate::k8s::quantity;

/// How often the worker measures (the eviction manager's monitoring
/// interval is 10 s).
pub const CHECK_PERIOD: Duration = Duration::from_secs(10);

/// Bytes used under `dir`, as du counts them (allocated blocks), without
/// following symlinks or crossing into other file systems.
pub fn usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let dev = root.dev();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            total = total.saturating_add(m.blocks().saturating_mul(512));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// The eviction message when one of the pod's disk emptyDirs is over its
/// sizeLimit (kubelet's wording); blocking, run it off the executor.
pub fn over_limit(root_dir: &Path, pod: &Pod) -> Option<String> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let volumes = pod.spec.as_ref()?.volumes.as_ref()?;
    for v in volumes {
        let Some(e) = &v.empty_dir else { continue };
        let Some(limit) = &e.size_limit else { continue };
        if e.medium.as_deref() == Some("Memory") {
            continue;
        }
        let bytes = quantity::value(limit);
        if bytes <= 0 {
            continue;
        }
        let used = usage(&volume_dir(root_dir, uid, EMPTY_DIR, &v.name));
        if used > bytes as u64 {
            return Some(format!(
                "Usage of EmptyDir volume \"{}\" exceeds the limit \"{}\". ",
                v.name, limit.0
            ));
        }
    }
    None
}

/// Whether the pod has an emptyDir the worker must watch.
pub fn has_limits(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .any(|v| {
            v.empty_dir
                .as_ref()
                .is_some_and(|e| e.size_limit.is_some() && e.medium.as_deref() != Some("Memory"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec, Volume};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn a_full_empty_dir_is_over_its_limit() {
        let root = tempfile::tempdir().unwrap();
        let mut pod = Pod {
            spec: Some(PodSpec {
                volumes: Some(vec![Volume {
                    name: "scratch".into(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        size_limit: Some(Quantity("1Mi".into())),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod.metadata.uid = Some("u".into());
        assert!(has_limits(&pod));
        let dir = volume_dir(root.path(), "u", EMPTY_DIR, "scratch");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        assert_eq!(over_limit(root.path(), &pod), None);
        std::fs::write(dir.join("sub/big"), vec![1u8; 2 << 20]).unwrap();
        assert_eq!(
            over_limit(root.path(), &pod).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ")
        );
    }
}

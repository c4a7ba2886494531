//! Reading the image's /etc/passwd and /etc/group: a read-only view of the
//! image's top snapshot, mounted for a moment in a private directory.

use std::path::{Path, PathBuf};

use containerd_client::services::v1::snapshots::{RemoveSnapshotRequest, ViewSnapshotRequest};
use containerd_client::types::Mount;
use nix::mount::{MntFlags, MsFlags};

use super::{ContainerError, blocking};
use crate::runtime::containerd::{Containerd, Lease};

/// The image's (passwd, group); empty strings for files it lacks.
pub async fn read_user_files(
    containerd: &Containerd,
    lease: &Lease,
    snapshotter: &str,
    chain_id: &str,
    view_key: &str,
    mount_point: PathBuf,
) -> Result<(String, String), ContainerError> {
    let request = ViewSnapshotRequest {
        snapshotter: snapshotter.to_string(),
        key: view_key.to_string(),
        parent: chain_id.to_string(),
        labels: Default::default(),
    };
    let mounts = containerd
        .snapshots()
        .view(containerd.request_in(request, Some(lease)))
        .await
        .map_err(|s| ContainerError::from_status("viewing the image snapshot", &s))?
        .into_inner()
        .mounts;
    let read = blocking(move || read_mounted(&mounts, &mount_point)).await;
    let request = RemoveSnapshotRequest {
        snapshotter: snapshotter.to_string(),
        key: view_key.to_string(),
    };
    if let Err(status) = containerd
        .snapshots()
        .remove(containerd.request(request))
        .await
    {
        tracing::warn!(key = view_key, %status, "removing the passwd view snapshot");
    }
    read?
}

/// Mounts, reads, unmounts. Blocking.
fn read_mounted(mounts: &[Mount], target: &Path) -> Result<(String, String), ContainerError> {
    std::fs::create_dir_all(target)
        .map_err(|e| ContainerError::failed("creating the view mount point", e))?;
    let result = mount_all(mounts, target).and_then(|()| {
        let read = |name: &str| match std::fs::read_to_string(target.join(name)) {
            Ok(s) => Ok(s),
            // A missing (or deleted: a whiteout is not readable) file means no entries.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(ContainerError::failed(&format!("reading {name}"), e)),
        };
        Ok((read("etc/passwd")?, read("etc/group")?))
    });
    // Lazily, so a reader we never heard of cannot keep the mount alive.
    while nix::mount::umount2(target, MntFlags::MNT_DETACH).is_ok() {}
    let _ = std::fs::remove_dir(target);
    result
}

fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), ContainerError> {
    if mounts.is_empty() {
        return Err(ContainerError::Failed(
            "image snapshot has no mounts".into(),
        ));
    }
    for m in mounts {
        let mut flags = MsFlags::MS_RDONLY;
        let mut data = Vec::new();
        for option in &m.options {
            match option.as_str() {
                "ro" => flags |= MsFlags::MS_RDONLY,
                "rw" => {}
                "bind" => flags |= MsFlags::MS_BIND,
                "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
                other => data.push(other),
            }
        }
        let data = data.join(",");
        let fstype = (!flags.contains(MsFlags::MS_BIND)).then_some(m.r#type.as_str());
        nix::mount::mount(
            Some(m.source.as_str()),
            target,
            fstype,
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| ContainerError::failed(&format!("mounting {} view", m.r#type), e))?;
    }
    Ok(())
}

//! Bind mounts, their propagation, and the devices of privileged containers.

use super::*;

/// A path inside the container must be absolute and must not climb out.
pub(super) fn container_path(path: &str) -> Result<PathBuf, SpecError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(invalid(format!("container path {path:?} is not absolute")));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!(
            "container path {path:?} must not contain \"..\""
        )));
    }
    Ok(p.to_path_buf())
}

/// A CRI mount as an OCI bind mount: the host path must exist (symlinks are
/// resolved, as the kubelet expects), the container path must be clean.
/// Propagation is checked against the host mount holding the source, as
/// containerd does: rshared needs a shared source mount, rslave a shared or
/// slave one (a private source would never propagate anything). A recursive
/// read-only mount must be read-only and private, and needs runc and kernel
/// support (`rro`).
pub fn bind_mount(
    mount: &cri::Mount,
    mountinfo: &str,
    rro_supported: bool,
) -> Result<Mount, SpecError> {
    let destination = container_path(&mount.container_path)?;
    if !Path::new(&mount.host_path).is_absolute() {
        return Err(invalid(format!(
            "host path {:?} is not absolute",
            mount.host_path
        )));
    }
    let source = std::fs::canonicalize(&mount.host_path).map_err(|e| {
        invalid(format!(
            "host path {:?} of mount {:?}: {e}",
            mount.host_path, mount.container_path
        ))
    })?;
    let propagation = cri::MountPropagation::try_from(mount.propagation)
        .unwrap_or(cri::MountPropagation::PropagationPrivate);
    let host_mount = || {
        mount_of_in(mountinfo, &source).ok_or_else(|| {
            invalid(format!(
                "host path {:?}: no mount holds it",
                mount.host_path
            ))
        })
    };
    let propagation_option = match propagation {
        cri::MountPropagation::PropagationPrivate => "rprivate",
        cri::MountPropagation::PropagationBidirectional => {
            let held = host_mount()?;
            if held.propagation != Propagation::Shared {
                return Err(invalid(format!(
                    "mount {:?} asks for bidirectional propagation, but host path {:?} is on {} which is not a shared mount",
                    mount.container_path,
                    mount.host_path,
                    held.mount_point.display()
                )));
            }
            "rshared"
        }
        cri::MountPropagation::PropagationHostToContainer => {
            let held = host_mount()?;
            if held.propagation == Propagation::Private {
                return Err(invalid(format!(
                    "mount {:?} asks for host-to-container propagation, but host path {:?} is on {} which is neither a shared nor a slave mount",
                    mount.container_path,
                    mount.host_path,
                    held.mount_point.display()
                )));
            }
            "rslave"
        }
    };
    let mut options = vec!["rbind".to_string(), propagation_option.to_string()];
    options.push(if mount.readonly { "ro" } else { "rw" }.to_string());
    if mount.recursive_read_only {
        if !mount.readonly {
            return Err(invalid(format!(
                "mount {:?}: a recursive read-only mount must also be read-only",
                mount.container_path
            )));
        }
        if propagation != cri::MountPropagation::PropagationPrivate {
            return Err(invalid(format!(
                "mount {:?}: a recursive read-only mount needs private propagation",
                mount.container_path
            )));
        }
        if !rro_supported {
            return Err(invalid(format!(
                "mount {:?}: recursive read-only mounts are not supported here (runc with rro and Linux 5.12 needed)",
                mount.container_path
            )));
        }
        options.push("rro".to_string());
    }
    let mut built = Mount::default();
    built.set_destination(destination);
    built.set_source(Some(source));
    built.set_typ(Some("bind".into()));
    built.set_options(Some(options));
    Ok(built)
}

/// The rootfs propagation the bind mounts need (containerd's rule): rshared
/// when one is bidirectional, else rslave when one receives from the host,
/// else runc's default.
pub(super) fn rootfs_propagation(mounts: &[cri::Mount]) -> Option<String> {
    let has = |p: cri::MountPropagation| mounts.iter().any(|m| m.propagation == p as i32);
    if has(cri::MountPropagation::PropagationBidirectional) {
        Some("rshared".into())
    } else if has(cri::MountPropagation::PropagationHostToContainer) {
        Some("rslave".into())
    } else {
        None
    }
}

/// A privileged container sees every host device, and may use any.
pub(super) fn privileged_devices(host: &[HostDevice]) -> (Vec<LinuxDevice>, LinuxDeviceCgroup) {
    let devices = host
        .iter()
        .map(|d| crate::runtime::container::devices::linux_device(d, &d.path))
        .collect();
    let mut allow_all = LinuxDeviceCgroup::default();
    allow_all.set_allow(true);
    allow_all.set_typ(Some(LinuxDeviceType::A));
    allow_all.set_access(Some("rwm".into()));
    (devices, allow_all)
}

pub(super) fn ro_bind(source: &Path, destination: &str, readonly: bool) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_source(Some(source.to_path_buf()));
    m.set_typ(Some("bind".into()));
    m.set_options(Some(vec![
        "rbind".into(),
        "rprivate".into(),
        if readonly { "ro" } else { "rw" }.into(),
    ]));
    m
}

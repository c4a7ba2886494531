//! CRI Devices as OCI devices and device-cgroup rules, as containerd's CRI
//! plugin maps them: each host device node (or every node below a host
//! directory) appears at its container path, and the cgroup allows exactly
//! the permissions asked for.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use crate::cri::api::v1 as cri;
use crate::sys::mount::{self, HostDevice};

use super::ContainerError;

/// One host device node for the container.
#[derive(Debug, Clone)]
pub struct RequestedDevice {
    pub host: HostDevice,
    pub container_path: PathBuf,
    /// `r`, `w` and/or `m`; empty means all three, as in containerd.
    pub permissions: String,
}

/// Reads the host's device nodes the request names. Blocking.
pub fn resolve(requested: &[cri::Device]) -> Result<Vec<RequestedDevice>, ContainerError> {
    let mut out = Vec::new();
    for device in requested {
        let found = mount::devices_at(Path::new(&device.host_path)).map_err(|e| {
            ContainerError::InvalidArgument(format!("device {:?}: {e}", device.host_path))
        })?;
        let permissions = if device.permissions.is_empty() {
            "rwm".to_string()
        } else {
            device.permissions.clone()
        };
        for (relative, host) in found {
            let container_path = if relative.as_os_str().is_empty() {
                PathBuf::from(&device.container_path)
            } else {
                Path::new(&device.container_path).join(relative)
            };
            out.push(RequestedDevice {
                host,
                container_path,
                permissions: permissions.clone(),
            });
        }
    }
    Ok(out)
}

/// The OCI device node for `host`, at `path` in the container.
pub fn linux_device(host: &HostDevice, path: &Path) -> LinuxDevice {
    let mut device = LinuxDevice::default();
    device.set_path(path.to_path_buf());
    device.set_typ(device_type(host));
    device.set_major(host.major as i64);
    device.set_minor(host.minor as i64);
    device.set_file_mode(Some(host.mode));
    device.set_uid(Some(host.uid));
    device.set_gid(Some(host.gid));
    device
}

fn device_type(host: &HostDevice) -> LinuxDeviceType {
    if host.block {
        LinuxDeviceType::B
    } else {
        LinuxDeviceType::C
    }
}

/// The device nodes and the cgroup rules that let the container use them.
pub fn oci(devices: &[RequestedDevice]) -> (Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>) {
    devices
        .iter()
        .map(|d| {
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(device_type(&d.host)));
            rule.set_major(Some(d.host.major as i64));
            rule.set_minor(Some(d.host.minor as i64));
            rule.set_access(Some(d.permissions.clone()));
            (linux_device(&d.host, &d.container_path), rule)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str, container: &str, permissions: &str) -> cri::Device {
        cri::Device {
            host_path: host.into(),
            container_path: container.into(),
            permissions: permissions.into(),
        }
    }

    #[test]
    fn a_device_node_is_mapped_with_its_permissions() {
        let devices = resolve(&[request("/dev/null", "/dev/mynull", "rw")]).unwrap();
        assert_eq!(devices.len(), 1);
        let (nodes, rules) = oci(&devices);
        assert_eq!(nodes[0].path(), Path::new("/dev/mynull"));
        assert_eq!(nodes[0].typ(), LinuxDeviceType::C);
        assert_eq!((nodes[0].major(), nodes[0].minor()), (1, 3));
        assert_eq!(rules[0].access().as_deref(), Some("rw"));
        assert_eq!((rules[0].major(), rules[0].minor()), (Some(1), Some(3)));
        assert!(rules[0].allow());
    }

    #[test]
    fn empty_permissions_mean_all_and_files_are_refused() {
        let devices = resolve(&[request("/dev/zero", "/dev/zero", "")]).unwrap();
        assert_eq!(devices[0].permissions, "rwm");
        let err = resolve(&[request("/etc/hostname", "/dev/x", "r")]).unwrap_err();
        assert!(err.to_string().contains("not a device node"), "{err}");
        let err = resolve(&[request("/dev/no-such", "/dev/x", "r")]).unwrap_err();
        assert!(matches!(err, ContainerError::InvalidArgument(_)), "{err}");
    }

    #[test]
    fn a_directory_maps_every_node_below_it() {
        // /dev/fd style: a directory of device nodes is walked; /dev holds
        // at least null, zero and full on any Linux.
        let devices = resolve(&[request("/dev", "/host-dev", "r")]).unwrap();
        assert!(
            devices
                .iter()
                .any(|d| d.container_path == Path::new("/host-dev/null")),
            "{devices:?}"
        );
    }
}

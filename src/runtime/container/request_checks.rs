//! CreateContainer's request, checked before anything is made: fields that
//! would fail later (at start, as Internal) or reach outside the pod (a log
//! path, a device) are InvalidArgument here, with the field named.

use std::path::{Path, PathBuf};

use crate::cri::api::v1 as cri;
use crate::runtime::validate;

use super::ContainerError;

fn invalid(message: String) -> ContainerError {
    ContainerError::InvalidArgument(message)
}

/// Every check on the config; `log_directory` is the sandbox's.
pub fn check(config: &cri::ContainerConfig) -> Result<(), ContainerError> {
    if !config.log_path.is_empty() {
        log_file(Path::new("/"), &config.log_path)?;
    }
    for kv in &config.envs {
        if kv.key.is_empty() || kv.key.contains(['=', '\0']) {
            return Err(invalid(format!(
                "env name {:?} must be non-empty, without '=' or NUL",
                kv.key
            )));
        }
        if kv.value.contains(&0) {
            return Err(invalid(format!("env {} has a NUL in its value", kv.key)));
        }
    }
    for arg in config.command.iter().chain(&config.args) {
        if arg.contains('\0') {
            return Err(invalid(format!("command or args {arg:?} contain NUL")));
        }
    }
    if config.working_dir.contains('\0') {
        return Err(invalid("working_dir contains NUL".into()));
    }
    for mount in &config.mounts {
        let dest = Path::new(&mount.container_path);
        if !dest.is_absolute() || mount.container_path.contains('\0') {
            return Err(invalid(format!(
                "mount container_path {:?} must be an absolute path",
                mount.container_path
            )));
        }
        if dest
            .components()
            .all(|c| c == std::path::Component::RootDir)
        {
            return Err(invalid(format!(
                "mount of {:?} over the container's root is not allowed",
                mount.host_path
            )));
        }
    }
    for device in &config.devices {
        check_device(device)?;
    }
    if let Some(security) = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
    {
        for (field, id) in [
            ("run_as_user", security.run_as_user.as_ref()),
            ("run_as_group", security.run_as_group.as_ref()),
        ] {
            // 4294967295 is (uid_t)-1: "no change" to the kernel, never an id.
            if let Some(id) = id
                && !(0..i64::from(u32::MAX)).contains(&id.value)
            {
                return Err(invalid(format!("{field} {} is not a valid id", id.value)));
            }
        }
    }
    Ok(())
}

/// The container's log file: `log_path` below the sandbox's log directory.
pub fn log_file(log_directory: &Path, log_path: &str) -> Result<PathBuf, ContainerError> {
    let relative =
        validate::path_within("log_path", log_path).map_err(|e| invalid(e.to_string()))?;
    Ok(log_directory.join(relative))
}

fn check_device(device: &cri::Device) -> Result<(), ContainerError> {
    if !Path::new(&device.container_path).is_absolute() {
        return Err(invalid(format!(
            "device container_path {:?} must be an absolute path",
            device.container_path
        )));
    }
    if let Some(bad) = device
        .permissions
        .chars()
        .find(|c| !matches!(c, 'r' | 'w' | 'm'))
    {
        return Err(invalid(format!(
            "device {} permissions {:?}: {bad:?} is not one of r, w, m",
            device.host_path, device.permissions
        )));
    }
    if !Path::new(&device.host_path).is_absolute() {
        return Err(invalid(format!(
            "device host_path {:?} must be an absolute path",
            device.host_path
        )));
    }
    // Whether the host has it, and that it is a device node, is read when
    // the spec is built (devices::resolve).
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> cri::ContainerConfig {
        cri::ContainerConfig {
            log_path: "c/0.log".into(),
            envs: vec![cri::KeyValue {
                key: "A".into(),
                value: "1".into(),
            }],
            ..Default::default()
        }
    }

    fn refused(f: impl FnOnce(&mut cri::ContainerConfig)) -> String {
        let mut c = config();
        f(&mut c);
        match check(&c) {
            Err(ContainerError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_config_passes() {
        check(&config()).unwrap();
        assert_eq!(
            log_file(Path::new("/var/log/pods/x"), "c/0.log").unwrap(),
            PathBuf::from("/var/log/pods/x/c/0.log")
        );
    }

    #[test]
    fn log_paths_stay_in_the_log_directory() {
        for bad in [
            "/tmp/x/abs-escape.log",
            "../../../../../tmp/x/dotdot-escape.log",
        ] {
            let m = refused(|c| c.log_path = bad.into());
            assert!(m.contains("log_path"), "{m}");
        }
    }

    #[test]
    fn env_names_and_values() {
        refused(|c| c.envs[0].key.clear());
        refused(|c| c.envs[0].key = "A\0B".into());
        refused(|c| c.envs[0].key = "A=B".into());
        refused(|c| c.envs[0].value = "x\0".into());
    }

    #[test]
    fn mounts_over_the_root_and_relative_destinations() {
        let mount = |dest: &str| cri::Mount {
            container_path: dest.into(),
            host_path: "/proc".into(),
            ..Default::default()
        };
        refused(|c| c.mounts = vec![mount("/")]);
        refused(|c| c.mounts = vec![mount("//")]);
        refused(|c| c.mounts = vec![mount("relative")]);
        let mut c = config();
        c.mounts = vec![mount("/host-proc")];
        check(&c).unwrap();
    }

    #[test]
    fn devices_need_absolute_paths_and_known_permissions() {
        let device = |host: &str, perms: &str| cri::Device {
            container_path: "/dev/x".into(),
            host_path: host.into(),
            permissions: perms.into(),
        };
        let m = refused(|c| c.devices = vec![device("/dev/null", "xyzzy")]);
        assert!(m.contains("permissions"), "{m}");
        let m = refused(|c| c.devices = vec![device("dev/null", "rw")]);
        assert!(m.contains("absolute"), "{m}");
        let mut c = config();
        c.devices = vec![device("/dev/null", "rwm")];
        check(&c).unwrap();
    }

    #[test]
    fn ids_of_minus_one_are_refused() {
        let security = |uid: i64| {
            Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    run_as_user: Some(cri::Int64Value { value: uid }),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        refused(|c| c.linux = security(4294967295));
        refused(|c| c.linux = security(-1));
        let mut c = config();
        c.linux = security(1000);
        check(&c).unwrap();
    }
}

//! A CRI container config becomes an OCI runtime spec: the image's process
//! settings merged with the request's, joined to the sandbox's namespaces and
//! cgroup, with kubelet/containerd defaults for what the request leaves out.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::cri::api::v1 as cri;
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxHugepageLimit, LinuxIdMapping, LinuxIdMappingBuilder, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxResources, LinuxSeccomp, LinuxSeccompAction, LinuxSyscall, Mount,
    Spec, User,
};

use super::user::ResolvedUser;
use crate::runtime::image::manifest::ExecConfig;
use crate::sys::cgroup_support::HostCgroups;
use crate::sys::idmap::IdMapping;
use crate::sys::mount::{HostDevice, Propagation, mount_of_in};

mod capabilities;
mod defaults;
mod mounts;
mod process;
mod resources;
mod seccomp;
pub use capabilities::*;
pub use defaults::*;
pub use mounts::*;
pub use process::*;
pub use resources::*;
use seccomp::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

fn invalid(message: impl Into<String>) -> SpecError {
    SpecError(message.into())
}

/// The sandbox a container joins: `None` for a namespace means the host's.
#[derive(Debug, Clone, Default)]
pub struct SandboxContext {
    pub network: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The PID namespace to join: the pod's when it shares one, or a target
    /// container's; with `None` and no host PID the container gets one of
    /// its own.
    pub pid: Option<PathBuf>,
    pub host_pid: bool,
    /// The pod's user namespace: joined, with its maps repeated (runc wants
    /// them to know who root is).
    pub user: Option<UserNamespaceJoin>,
    /// Where deckhand mounted the root filesystem itself (ID-mapped, for a
    /// pod with a user namespace); `None`: containerd's shim mounts it in
    /// the bundle.
    pub rootfs: Option<PathBuf>,
    pub cgroups_path: String,
    pub hostname: String,
    /// Files the sandbox wrote for its containers, bind-mounted read-only
    /// unless the request mounts its own at the same path.
    pub etc_hostname: Option<PathBuf>,
    pub etc_hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    pub dev_shm: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct UserNamespaceJoin {
    pub path: PathBuf,
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

fn oci_id_mappings(maps: &[IdMapping]) -> Vec<LinuxIdMapping> {
    maps.iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .expect("every field is set")
        })
        .collect()
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path.map(Path::to_path_buf));
    ns
}

/// Everything the spec needs besides the request.
pub struct SpecInputs<'a> {
    pub config: &'a cri::ContainerConfig,
    pub image: &'a ExecConfig,
    pub sandbox: &'a SandboxContext,
    pub user: &'a ResolvedUser,
    /// Seccomp profile files for `Localhost` profiles live under this root.
    pub seccomp_root: &'a Path,
    /// What the node can grant ([`available_capabilities`]).
    pub available_capabilities: &'a [Capability],
    /// The limits the host's cgroups can take under the container's parent.
    pub host_cgroups: &'a HostCgroups,
    /// The host's /proc/self/mountinfo, for the propagation of bind sources.
    pub mountinfo: &'a str,
    /// runc and the kernel can make mounts recursively read-only.
    pub recursive_read_only: bool,
    /// The host's devices, given to privileged containers.
    pub host_devices: &'a [HostDevice],
    /// The devices the request names (not for privileged containers, which
    /// get them all).
    pub devices: &'a [super::devices::RequestedDevice],
}

pub fn build(inputs: &SpecInputs<'_>) -> Result<Spec, SpecError> {
    let config = inputs.config;
    let linux_config = config.linux.clone().unwrap_or_default();
    let security = linux_config.security_context.clone().unwrap_or_default();
    let privileged = security.privileged;

    let mut spec = Spec::default();
    // Only a UTS namespace of the pod's own has a hostname to set: a
    // host-network pod keeps the node's (runc refuses one without it).
    spec.set_hostname(
        inputs
            .sandbox
            .uts
            .is_some()
            .then(|| inputs.sandbox.hostname.clone()),
    );

    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(process_args(config, inputs.image)?));
    process.set_env(Some(process_env(
        config,
        inputs.image,
        &inputs.sandbox.hostname,
    )?));
    let cwd = match (&config.working_dir, &inputs.image.working_dir) {
        (w, _) if !w.is_empty() => w.clone(),
        (_, Some(w)) if !w.is_empty() => w.clone(),
        _ => "/".to_string(),
    };
    process.set_cwd(container_path(&cwd)?);
    process.set_terminal(Some(config.tty));
    let mut user = User::default();
    user.set_uid(inputs.user.uid);
    user.set_gid(inputs.user.gid);
    user.set_additional_gids(Some(inputs.user.additional_gids.clone()));
    process.set_user(user);
    let caps = capabilities(
        privileged,
        security.capabilities.as_ref(),
        inputs.available_capabilities,
    )?;
    let caps: oci_spec::runtime::Capabilities = caps.into_iter().collect();
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(caps.clone()));
    capabilities.set_effective(Some(caps.clone()));
    capabilities.set_permitted(Some(caps.clone()));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    process.set_capabilities(Some(capabilities));
    process.set_no_new_privileges(Some(security.no_new_privs));
    // Root here lacks CAP_SYS_RESOURCE, and no one may lower it: clamp at 0.
    let oom = linux_config
        .resources
        .as_ref()
        .map(|r| r.oom_score_adj)
        .unwrap_or_default()
        .clamp(0, 1000);
    process.set_oom_score_adj(Some(oom as i32));
    spec.set_process(Some(process));

    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(
        inputs
            .sandbox
            .rootfs
            .clone()
            .unwrap_or_else(|| "rootfs".into()),
    );
    root.set_readonly(Some(security.readonly_rootfs));
    spec.set_root(Some(root));

    // Mounts: runtime defaults, then the sandbox's files, then the request's,
    // a later mount at the same destination replacing an earlier one.
    let mut mounts: Vec<Mount> = spec.mounts().clone().unwrap_or_default();
    let sandbox = inputs.sandbox;
    let requested: Vec<Mount> = config
        .mounts
        .iter()
        .map(|m| bind_mount(m, inputs.mountinfo, inputs.recursive_read_only))
        .collect::<Result<_, _>>()?;
    let requested_at = |dest: &str| requested.iter().any(|m| m.destination() == Path::new(dest));
    for (file, dest) in [
        (&sandbox.etc_hostname, "/etc/hostname"),
        (&sandbox.etc_hosts, "/etc/hosts"),
        (&sandbox.resolv_conf, "/etc/resolv.conf"),
    ] {
        if let Some(file) = file
            && !requested_at(dest)
        {
            mounts.push(ro_bind(file, dest, security.readonly_rootfs));
        }
    }
    if let Some(shm) = &sandbox.dev_shm {
        mounts.retain(|m| m.destination() != Path::new("/dev/shm"));
        mounts.push(ro_bind(shm, "/dev/shm", false));
    }
    for mount in requested {
        mounts.retain(|m| m.destination() != mount.destination());
        mounts.push(mount);
    }
    if privileged {
        // A privileged container sees /sys and cgroups writable.
        for m in &mut mounts {
            let sys = m.destination() == Path::new("/sys")
                || m.destination() == Path::new("/sys/fs/cgroup");
            if sys && let Some(options) = m.options().clone() {
                m.set_options(Some(options.into_iter().filter(|o| o != "ro").collect()));
            }
        }
    }
    spec.set_mounts(Some(mounts));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = vec![];
    if let Some(user) = &sandbox.user {
        namespaces.push(namespace(LinuxNamespaceType::User, Some(&user.path)));
        linux.set_uid_mappings(Some(oci_id_mappings(&user.uids)));
        linux.set_gid_mappings(Some(oci_id_mappings(&user.gids)));
    }
    namespaces.push(namespace(LinuxNamespaceType::Mount, None));
    namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    for (typ, path) in [
        (LinuxNamespaceType::Network, &sandbox.network),
        (LinuxNamespaceType::Ipc, &sandbox.ipc),
        (LinuxNamespaceType::Uts, &sandbox.uts),
    ] {
        if let Some(path) = path {
            namespaces.push(namespace(typ, Some(path)));
        }
    }
    if !sandbox.host_pid {
        namespaces.push(namespace(LinuxNamespaceType::Pid, sandbox.pid.as_deref()));
    }
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(PathBuf::from(&sandbox.cgroups_path)));
    // Sysctls are the pod's, set once in its namespaces by the sandbox.
    linux.set_sysctl(None);
    if let Some(r) = &linux_config.resources {
        linux.set_resources(Some(resources(r, inputs.host_cgroups)?));
    }
    linux.set_rootfs_propagation(rootfs_propagation(&config.mounts));
    if privileged {
        let (devices, allow_all) = privileged_devices(inputs.host_devices);
        linux.set_devices(Some(devices));
        let mut resources = linux.resources().clone().unwrap_or_default();
        resources.set_devices(Some(vec![allow_all]));
        linux.set_resources(Some(resources));
        linux.set_masked_paths(Some(vec![]));
        linux.set_readonly_paths(Some(vec![]));
    } else {
        // Every device denied but those asked for (runc adds its usual
        // few: null, zero, full, random, urandom, tty, ptmx), as in
        // containerd's default spec: without a first deny-all rule the
        // device cgroup allows everything.
        let (nodes, rules) = super::devices::oci(inputs.devices);
        if !nodes.is_empty() {
            let mut all = linux.devices().clone().unwrap_or_default();
            all.extend(nodes);
            linux.set_devices(Some(all));
        }
        let mut deny_all = LinuxDeviceCgroup::default();
        deny_all.set_allow(false);
        deny_all.set_access(Some("rwm".into()));
        let mut resources = linux.resources().clone().unwrap_or_default();
        resources.set_devices(Some(std::iter::once(deny_all).chain(rules).collect()));
        linux.set_resources(Some(resources));
        let masked = if security.masked_paths.is_empty() {
            DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        } else {
            security.masked_paths.clone()
        };
        let readonly = if security.readonly_paths.is_empty() {
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            security.readonly_paths.clone()
        };
        linux.set_masked_paths(Some(masked));
        linux.set_readonly_paths(Some(readonly));
    }
    linux.set_seccomp(seccomp(&security, privileged, inputs.seccomp_root)?);
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests;

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

/// What containerd grants a container when nobody says otherwise.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Syscalls RuntimeDefault refuses (EPERM): those docker's and containerd's
/// default profiles keep from unprivileged containers.
const RUNTIME_DEFAULT_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// Parses a CRI capability name (`NET_ADMIN` or `CAP_NET_ADMIN`); `ALL` is
/// handled by the caller.
fn capability(name: &str) -> Result<Capability, SpecError> {
    let bare = name.trim().to_ascii_uppercase();
    let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
    Capability::from_str(bare).map_err(|_| invalid(format!("unknown capability {name:?}")))
}

/// Every capability this node can grant: known to the kernel (and to the
/// caps crate) and still in our own bounding set. runc fails a start with
/// EPERM for any other (root here lacks CAP_SYS_RESOURCE), so "ALL" and
/// privileged mean these, as containerd's "all current capabilities" does.
pub fn available_capabilities() -> Vec<Capability> {
    let supported = caps::runtime::thread_all_supported();
    let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| supported.clone());
    let mut known: Vec<caps::Capability> = supported.intersection(&bounding).copied().collect();
    known.sort_by_key(|c| c.index());
    known
        .into_iter()
        .filter_map(|c| capability(&c.to_string()).ok())
        .collect()
}

/// The effective capability set: defaults (or all available when
/// privileged), plus adds, minus drops; `ALL` in add or drop means every
/// available capability. Asking for one the node cannot grant is refused
/// here, with its name, rather than by runc at start.
pub fn capabilities(
    privileged: bool,
    requested: Option<&cri::Capability>,
    available: &[Capability],
) -> Result<Vec<Capability>, SpecError> {
    let grantable = |cap: Capability| {
        if available.contains(&cap) {
            Ok(cap)
        } else {
            Err(invalid(format!(
                "capability {cap} is not available on this node (not in its bounding set)"
            )))
        }
    };
    let mut set: Vec<Capability> = if privileged {
        available.to_vec()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .copied()
            .filter(|c| available.contains(c))
            .collect()
    };
    let Some(requested) = requested else {
        return Ok(set);
    };
    let is_all = |names: &[String]| names.iter().any(|n| n.eq_ignore_ascii_case("ALL"));
    if is_all(&requested.add_capabilities) {
        set = available.to_vec();
    } else {
        for name in &requested.add_capabilities {
            let cap = grantable(capability(name)?)?;
            if !set.contains(&cap) {
                set.push(cap);
            }
        }
    }
    if is_all(&requested.drop_capabilities) {
        // Dropping ALL keeps only what is added explicitly, as containerd does.
        set.clear();
        for name in requested
            .add_capabilities
            .iter()
            .filter(|n| !n.eq_ignore_ascii_case("ALL"))
        {
            set.push(grantable(capability(name)?)?);
        }
    } else {
        for name in &requested.drop_capabilities {
            let cap = capability(name)?;
            set.retain(|c| *c != cap);
        }
    }
    Ok(set)
}

/// The process's argv: the request's command replaces the image entrypoint
/// (and then the image cmd is dropped); the request's args replace the cmd.
pub fn process_args(
    config: &cri::ContainerConfig,
    image: &ExecConfig,
) -> Result<Vec<String>, SpecError> {
    let mut args: Vec<String> = if !config.command.is_empty() {
        config.command.clone()
    } else {
        image.entrypoint.clone().unwrap_or_default()
    };
    if !config.args.is_empty() {
        args.extend(config.args.iter().cloned());
    } else if config.command.is_empty() {
        args.extend(image.cmd.clone().unwrap_or_default());
    }
    if args.is_empty() {
        return Err(invalid(
            "no command specified: neither the request nor the image gives one",
        ));
    }
    Ok(args)
}

/// Image env first, then the request's, a later key replacing an earlier one.
/// CRI carries values as bytes; an OCI spec holds strings, so a value that is
/// not UTF-8 is refused rather than mangled.
pub fn process_env(
    config: &cri::ContainerConfig,
    image: &ExecConfig,
    hostname: &str,
) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_string();
        match index.get(&key) {
            Some(&i) => env[i] = entry,
            None => {
                index.insert(key, env.len());
                env.push(entry);
            }
        }
    };
    set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string());
    if !hostname.is_empty() {
        set(format!("HOSTNAME={hostname}"));
    }
    for entry in image.env.iter().flatten() {
        set(entry.clone());
    }
    for kv in &config.envs {
        let value = std::str::from_utf8(&kv.value).map_err(|_| {
            invalid(format!(
                "environment variable {:?} is not valid UTF-8",
                kv.key
            ))
        })?;
        set(format!("{}={value}", kv.key));
    }
    Ok(env)
}

/// A path inside the container must be absolute and must not climb out.
fn container_path(path: &str) -> Result<PathBuf, SpecError> {
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
fn rootfs_propagation(mounts: &[cri::Mount]) -> Option<String> {
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
fn privileged_devices(host: &[HostDevice]) -> (Vec<LinuxDevice>, LinuxDeviceCgroup) {
    let devices = host
        .iter()
        .map(|d| super::devices::linux_device(d, &d.path))
        .collect();
    let mut allow_all = LinuxDeviceCgroup::default();
    allow_all.set_allow(true);
    allow_all.set_typ(Some(LinuxDeviceType::A));
    allow_all.set_access(Some("rwm".into()));
    (devices, allow_all)
}

fn ro_bind(source: &Path, destination: &str, readonly: bool) -> Mount {
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

/// The request's limits as OCI resources, without those the host's cgroups
/// cannot take (hugepages without a hugetlb controller, swap without swap
/// accounting), as containerd's CRI plugin drops them.
pub fn resources(
    r: &cri::LinuxContainerResources,
    host: &HostCgroups,
) -> Result<LinuxResources, SpecError> {
    let mut resources = LinuxResources::default();
    let mut cpu = LinuxCpu::default();
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
    }
    resources.set_cpu(Some(cpu));
    let mut memory = LinuxMemory::default();
    if r.memory_limit_in_bytes > 0 {
        memory.set_limit(Some(r.memory_limit_in_bytes));
        // As containerd: swap no further than the limit unless asked.
        if host.swap {
            memory.set_swap(Some(r.memory_limit_in_bytes));
        }
    }
    if r.memory_swap_limit_in_bytes > 0 && host.swap {
        memory.set_swap(Some(r.memory_swap_limit_in_bytes));
    }
    resources.set_memory(Some(memory));
    if !r.hugepage_limits.is_empty() && !host.hugetlb {
        tracing::debug!("no hugetlb cgroup controller: hugepage limits dropped");
    } else if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|h| {
                let mut l = LinuxHugepageLimit::default();
                l.set_page_size(h.page_size.clone());
                l.set_limit(h.limit as i64);
                l
            })
            .collect();
        resources.set_hugepage_limits(Some(limits));
    }
    if !r.unified.is_empty() {
        resources.set_unified(Some(r.unified.clone()));
    }
    Ok(resources)
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path.map(Path::to_path_buf));
    ns
}

fn runtime_default_seccomp() -> LinuxSeccomp {
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(
        RUNTIME_DEFAULT_DENIED
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    syscall.set_action(LinuxSeccompAction::ScmpActErrno);
    syscall.set_errno_ret(Some(libc_eperm()));
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActAllow);
    seccomp.set_syscalls(Some(vec![syscall]));
    seccomp
}

const fn libc_eperm() -> u32 {
    1
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

fn seccomp(
    security: &cri::LinuxContainerSecurityContext,
    privileged: bool,
    root: &Path,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let Some(profile) = &security.seccomp else {
        return Ok(None);
    };
    // A privileged container runs unconfined whatever profile it names, as
    // with containerd and the kubelet's documented behaviour.
    if privileged {
        return Ok(None);
    }
    match cri::security_profile::ProfileType::try_from(profile.profile_type) {
        Ok(cri::security_profile::ProfileType::Unconfined) | Err(_) => Ok(None),
        Ok(cri::security_profile::ProfileType::RuntimeDefault) => {
            Ok(Some(runtime_default_seccomp()))
        }
        Ok(cri::security_profile::ProfileType::Localhost) => {
            let path = Path::new(&profile.localhost_ref);
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                root.join(path)
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid(format!("seccomp profile {}: {e}", path.display())))?;
            let parsed: LinuxSeccomp = serde_json::from_str(&text)
                .map_err(|e| invalid(format!("seccomp profile {}: {e}", path.display())))?;
            Ok(Some(parsed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ExecConfig {
        ExecConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default-arg".into()]),
            env: Some(vec!["A=image".into(), "B=image".into()]),
            ..Default::default()
        }
    }

    fn config() -> cri::ContainerConfig {
        cri::ContainerConfig::default()
    }

    #[test]
    fn command_and_args_merge_like_the_kubelet() {
        let image = image();
        let mut c = config();
        assert_eq!(process_args(&c, &image).unwrap(), ["/entry", "default-arg"]);
        c.args = vec!["x".into()];
        assert_eq!(process_args(&c, &image).unwrap(), ["/entry", "x"]);
        c.command = vec!["/bin/sh".into()];
        c.args = vec![];
        assert_eq!(process_args(&c, &image).unwrap(), ["/bin/sh"]);
        assert!(process_args(&config(), &ExecConfig::default()).is_err());
    }

    #[test]
    fn request_env_overrides_image_env() {
        let mut c = config();
        c.envs = vec![cri::KeyValue {
            key: "B".into(),
            value: "request".into(),
        }];
        let env = process_env(&c, &image(), "pod").unwrap();
        assert!(env.contains(&"A=image".to_string()));
        assert!(env.contains(&"B=request".to_string()));
        assert!(!env.contains(&"B=image".to_string()));
        assert!(env.contains(&"HOSTNAME=pod".to_string()));
    }

    /// Every capability but SYS_RESOURCE, as on this project's machines.
    fn node_caps() -> Vec<Capability> {
        all_known()
            .into_iter()
            .filter(|c| *c != Capability::SysResource)
            .collect()
    }

    fn all_known() -> Vec<Capability> {
        caps::all()
            .into_iter()
            .filter_map(|c| capability(&c.to_string()).ok())
            .collect()
    }

    #[test]
    fn requested_devices_are_nodes_with_their_cgroup_rules() {
        let devices = super::super::devices::resolve(&[cri::Device {
            host_path: "/dev/null".into(),
            container_path: "/dev/mynull".into(),
            permissions: "rw".into(),
        }])
        .unwrap();
        let mut c = config();
        c.linux.get_or_insert_default().resources = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        });
        let spec = build(&SpecInputs {
            config: &c,
            image: &image(),
            sandbox: &SandboxContext::default(),
            user: &ResolvedUser::default(),
            seccomp_root: Path::new("/seccomp"),
            available_capabilities: &node_caps(),
            host_cgroups: &HostCgroups::ALL,
            mountinfo: MOUNTINFO,
            recursive_read_only: false,
            host_devices: &[],
            devices: &devices,
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let linux = &json["linux"];
        let node = linux["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["path"] == "/dev/mynull")
            .expect("the requested node");
        assert_eq!(
            (&node["type"], &node["major"], &node["minor"]),
            (&"c".into(), &1.into(), &3.into())
        );
        let rules = linux["resources"]["devices"].as_array().unwrap();
        // Everything else stays denied: the first rule denies all.
        assert_eq!(rules[0]["allow"], false, "{rules:?}");
        assert_eq!(rules[0]["access"], "rwm", "{rules:?}");
        assert!(
            rules.contains(&serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"})),
            "{rules:?}"
        );
        assert_eq!(linux["resources"]["memory"]["limit"], 64 << 20);
    }

    #[test]
    fn namespaces_user_namespace_and_hostname_follow_the_sandbox() {
        let build_with = |sandbox: &SandboxContext| {
            build(&SpecInputs {
                config: &config(),
                image: &image(),
                sandbox,
                user: &ResolvedUser::default(),
                seccomp_root: Path::new("/seccomp"),
                available_capabilities: &node_caps(),
                host_cgroups: &HostCgroups::ALL,
                mountinfo: MOUNTINFO,
                recursive_read_only: false,
                host_devices: &[],
                devices: &[],
            })
            .unwrap()
        };
        // Host network (no UTS namespace of the pod's): the node's hostname.
        let host = build_with(&SandboxContext {
            hostname: "node".into(),
            ..Default::default()
        });
        assert_eq!(host.hostname(), &None);
        let maps = vec![IdMapping {
            container_id: 0,
            host_id: 100_000,
            length: 65_536,
        }];
        let spec = build_with(&SandboxContext {
            uts: Some("/pins/uts".into()),
            hostname: "pod".into(),
            user: Some(UserNamespaceJoin {
                path: "/pins/user".into(),
                uids: maps.clone(),
                gids: maps,
            }),
            rootfs: Some("/run/deckhand/containers/c/rootfs".into()),
            ..Default::default()
        });
        assert_eq!(spec.hostname().as_deref(), Some("pod"));
        let linux = spec.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        assert_eq!(ns[0].typ(), LinuxNamespaceType::User);
        assert_eq!(ns[0].path().as_deref(), Some(Path::new("/pins/user")));
        let uids = linux.uid_mappings().as_ref().unwrap();
        assert_eq!(
            (uids[0].container_id(), uids[0].host_id(), uids[0].size()),
            (0, 100_000, 65_536)
        );
        assert_eq!(
            spec.root().as_ref().unwrap().path(),
            Path::new("/run/deckhand/containers/c/rootfs")
        );
    }

    #[test]
    fn capabilities_add_drop_and_all() {
        let req = |add: &[&str], drop: &[&str]| cri::Capability {
            add_capabilities: add.iter().map(|s| s.to_string()).collect(),
            drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let node = node_caps();
        let caps = capabilities(false, Some(&req(&["NET_ADMIN"], &["CAP_CHOWN"])), &node).unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::Chown));
        let caps = capabilities(false, Some(&req(&["NET_RAW"], &["ALL"])), &node).unwrap();
        assert_eq!(caps, vec![Capability::NetRaw]);
        let caps = capabilities(false, Some(&req(&["ALL"], &[])), &node).unwrap();
        assert!(caps.contains(&Capability::SysAdmin));
        assert!(capabilities(false, Some(&req(&["FLY"], &[])), &node).is_err());
        let privileged = capabilities(true, None, &node).unwrap();
        assert!(privileged.contains(&Capability::SysAdmin));
        // Never more than the node has: runc would fail the start.
        assert!(!privileged.contains(&Capability::SysResource));
        let err = capabilities(false, Some(&req(&["SYS_RESOURCE"], &[])), &node).unwrap_err();
        assert!(err.0.contains("not available"), "{err}");
    }

    #[test]
    fn the_available_set_is_within_our_bounding_set() {
        let available = available_capabilities();
        let bounding = caps::read(None, caps::CapSet::Bounding).unwrap();
        assert!(!available.is_empty());
        for cap in &available {
            assert!(
                bounding
                    .iter()
                    .any(|b| capability(&b.to_string()).ok() == Some(*cap)),
                "{cap} not in the bounding set"
            );
        }
    }

    const MOUNTINFO: &str = "\
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 27 0:40 / /shared rw shared:5 - tmpfs tmpfs rw
41 27 0:41 / /slave rw master:5 - tmpfs tmpfs rw
";

    fn mount(container: &str, host: &str, propagation: cri::MountPropagation) -> cri::Mount {
        cri::Mount {
            container_path: container.into(),
            host_path: host.into(),
            propagation: propagation as i32,
            ..Default::default()
        }
    }

    #[test]
    fn mounts_must_exist_and_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let mut request = mount(
            "/data",
            &link.display().to_string(),
            cri::MountPropagation::PropagationPrivate,
        );
        request.readonly = true;
        let m = bind_mount(&request, MOUNTINFO, false).unwrap();
        assert_eq!(
            m.source().as_deref(),
            Some(std::fs::canonicalize(dir.path()).unwrap().as_path())
        );
        assert_eq!(m.options().as_ref().unwrap(), &["rbind", "rprivate", "ro"]);
        let bad = |container: &str, host: &str| {
            bind_mount(
                &mount(container, host, cri::MountPropagation::PropagationPrivate),
                MOUNTINFO,
                false,
            )
            .is_err()
        };
        assert!(bad("/data", "/no/such/path"));
        assert!(bad("relative", "/tmp"));
        assert!(bad("/a/../../etc", "/tmp"));
        assert!(bad("/data", "relative/host"));
    }

    /// Whether the propagation check passes for a source on a mount of the
    /// given mountinfo line's kind. The paths exist on every machine (/, /proc).
    fn propagation_ok(info: &str, propagation: cri::MountPropagation) -> Result<Mount, SpecError> {
        bind_mount(&mount("/data", "/proc", propagation), info, false)
    }

    #[test]
    fn propagation_needs_a_fitting_host_mount() {
        use cri::MountPropagation::*;
        let info = |kind: &str| {
            format!("27 1 8:1 / / rw - ext4 sda rw\n22 27 0:21 / /proc rw{kind} - proc proc rw\n")
        };
        let (shared, slave, private) = (info(" shared:1"), info(" master:1"), info(""));
        assert!(propagation_ok(&shared, PropagationBidirectional).is_ok());
        assert!(propagation_ok(&slave, PropagationBidirectional).is_err());
        assert!(propagation_ok(&private, PropagationHostToContainer).is_err());
        let m = propagation_ok(&slave, PropagationHostToContainer).unwrap();
        assert_eq!(m.options().as_ref().unwrap(), &["rbind", "rslave", "rw"]);
        assert!(propagation_ok(&private, PropagationPrivate).is_ok());
        let both = [
            mount("/a", "/proc", PropagationHostToContainer),
            mount("/b", "/proc", PropagationBidirectional),
        ];
        assert_eq!(rootfs_propagation(&both).as_deref(), Some("rshared"));
        assert_eq!(rootfs_propagation(&both[..1]).as_deref(), Some("rslave"));
        assert_eq!(rootfs_propagation(&[]), None);
    }

    #[test]
    fn recursive_read_only_is_read_only_private_and_supported() {
        let rro = |readonly: bool, propagation: cri::MountPropagation, supported: bool| {
            let mut m = mount("/data", "/proc", propagation);
            m.readonly = readonly;
            m.recursive_read_only = true;
            bind_mount(
                &m,
                "22 1 0:21 / /proc rw shared:1 - proc proc rw\n",
                supported,
            )
        };
        use cri::MountPropagation::*;
        let ok = rro(true, PropagationPrivate, true).unwrap();
        assert_eq!(
            ok.options().as_ref().unwrap(),
            &["rbind", "rprivate", "ro", "rro"]
        );
        assert!(rro(false, PropagationPrivate, true).is_err());
        assert!(rro(true, PropagationHostToContainer, true).is_err());
        assert!(rro(true, PropagationBidirectional, true).is_err());
        assert!(rro(true, PropagationPrivate, false).is_err());
    }

    #[test]
    fn limits_the_host_cannot_take_are_dropped() {
        // What the kubelet sends for a burstable pod on a node with 2Mi and
        // 1Gi pages: zero hugepage limits, and swap as large as memory.
        let r = cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 64 << 20,
            hugepage_limits: vec![
                cri::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 0,
                },
                cri::HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0,
                },
            ],
            ..Default::default()
        };
        let all = resources(&r, &HostCgroups::ALL).unwrap();
        assert_eq!(all.hugepage_limits().as_ref().map(Vec::len), Some(2));
        assert_eq!(all.memory().as_ref().unwrap().swap(), Some(64 << 20));
        let bare = HostCgroups {
            hugetlb: false,
            swap: false,
        };
        let none = resources(&r, &bare).unwrap();
        assert_eq!(none.hugepage_limits(), &None);
        assert_eq!(none.memory().as_ref().unwrap().swap(), None);
        assert_eq!(none.memory().as_ref().unwrap().limit(), Some(64 << 20));
        // Without a swap request, swap is held to the memory limit (as
        // containerd), where the host accounts swap.
        let r = cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        };
        let memory = resources(&r, &HostCgroups::ALL).unwrap().memory().unwrap();
        assert_eq!(memory.swap(), Some(32 << 20));
    }

    #[test]
    fn a_spec_joins_the_sandbox_and_applies_limits() {
        let mut c = config();
        c.linux = Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_shares: 512,
                cpu_quota: 50_000,
                cpu_period: 100_000,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: -998,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                readonly_rootfs: true,
                no_new_privs: true,
                seccomp: Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        });
        let sandbox = SandboxContext {
            network: Some("/run/deckhand/sb/ns/net".into()),
            ipc: Some("/run/deckhand/sb/ns/ipc".into()),
            uts: Some("/run/deckhand/sb/ns/uts".into()),
            cgroups_path: "/kubepods/pod1/ctr1".into(),
            hostname: "pod".into(),
            ..Default::default()
        };
        let user = ResolvedUser::default();
        let spec = build(&SpecInputs {
            config: &c,
            image: &image(),
            sandbox: &sandbox,
            user: &user,
            seccomp_root: Path::new("/var/lib/kubelet/seccomp"),
            available_capabilities: &node_caps(),
            host_cgroups: &HostCgroups::ALL,
            mountinfo: MOUNTINFO,
            recursive_read_only: true,
            host_devices: &[],
            devices: &[],
        })
        .unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(
            net.path().as_deref(),
            Some(Path::new("/run/deckhand/sb/ns/net"))
        );
        assert!(
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
        );
        let resources = linux.resources().as_ref().unwrap();
        assert_eq!(resources.cpu().as_ref().unwrap().shares(), Some(512));
        assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(64 << 20));
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.oom_score_adj(), Some(0), "never negative");
        assert_eq!(process.no_new_privileges(), Some(true));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert!(linux.seccomp().is_some());
        assert!(
            linux
                .masked_paths()
                .as_ref()
                .unwrap()
                .contains(&"/proc/kcore".to_string())
        );
        // The spec serializes to what runc reads.
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["linux"]["cgroupsPath"], "/kubepods/pod1/ctr1");
        assert_eq!(json["process"]["args"][0], "/entry");
    }

    #[test]
    fn a_privileged_container_gets_devices_and_no_confinement() {
        let mut c = config();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                privileged: true,
                seccomp: Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: "/no/such/profile.json".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        // Host UTS: runc would refuse a hostname.
        let sandbox = SandboxContext {
            hostname: "node".into(),
            ..Default::default()
        };
        let null = HostDevice {
            path: "/dev/null".into(),
            block: false,
            major: 1,
            minor: 3,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        let spec = build(&SpecInputs {
            config: &c,
            image: &image(),
            sandbox: &sandbox,
            user: &ResolvedUser::default(),
            seccomp_root: Path::new("/nowhere"),
            available_capabilities: &node_caps(),
            host_cgroups: &HostCgroups::ALL,
            mountinfo: MOUNTINFO,
            recursive_read_only: false,
            host_devices: std::slice::from_ref(&null),
            devices: &[],
        })
        .unwrap();
        assert_eq!(spec.hostname(), &None);
        let json = serde_json::to_value(&spec).unwrap();
        let linux = &json["linux"];
        assert!(
            linux.get("seccomp").is_none(),
            "a privileged container is unconfined"
        );
        assert_eq!(linux["maskedPaths"], serde_json::json!([]));
        assert_eq!(linux["devices"][0]["path"], "/dev/null");
        assert_eq!(
            linux["resources"]["devices"],
            serde_json::json!([{"allow": true, "type": "a", "access": "rwm"}])
        );
        let bounding = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(bounding.len(), node_caps().len());
        assert!(!bounding.contains(&serde_json::json!("CAP_SYS_RESOURCE")));
    }
}

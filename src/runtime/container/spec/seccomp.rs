//! Seccomp: the RuntimeDefault profile, Localhost profiles, Unconfined.

use super::*;

/// Syscalls RuntimeDefault refuses (EPERM): those docker's and containerd's
/// default profiles keep from unprivileged containers.
pub(super) const RUNTIME_DEFAULT_DENIED: &[&str] = &[
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

pub(super) fn runtime_default_seccomp() -> LinuxSeccomp {
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

pub(super) const fn libc_eperm() -> u32 {
    1
}

pub(super) fn seccomp(
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

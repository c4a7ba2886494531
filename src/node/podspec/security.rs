//! Security contexts: the sandbox's (generatePodSandboxLinuxConfig) and a
//! container's (determineEffectiveSecurityContext, verifyRunAsNonRoot,
//! getSeccompProfile), with pkg/securitycontext's merge of the pod's
//! securityContext into the container's and its procMount -> masked /
//! readonly paths.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, Pod, PodSecurityContext, SELinuxOptions, SeccompProfile,
    SecurityContext,
};

use super::{NodeContext, PodSpecError, pod_ref};
use crate::cri::v1;

/// securitycontext.defaultMaskedPaths
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
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

/// securitycontext.defaultReadonlyPaths
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// securitycontext.DetermineEffectiveSecurityContext: the container's
/// context with the pod's user/group/non-root/SELinux/seccomp/AppArmor
/// settings where the container leaves them unset. None when neither has one.
pub fn effective_security_context(pod: &Pod, container: &Container) -> Option<SecurityContext> {
    let from_pod = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .map(|psc| SecurityContext {
            se_linux_options: psc.se_linux_options.clone(),
            windows_options: psc.windows_options.clone(),
            run_as_user: psc.run_as_user,
            run_as_group: psc.run_as_group,
            run_as_non_root: psc.run_as_non_root,
            seccomp_profile: psc.seccomp_profile.clone(),
            app_armor_profile: psc.app_armor_profile.clone(),
            ..Default::default()
        });
    let Some(csc) = container.security_context.as_ref() else {
        return from_pod;
    };
    let Some(mut eff) = from_pod else {
        return Some(csc.clone());
    };
    macro_rules! over {
        ($($field:ident),*) => {$(
            if csc.$field.is_some() {
                eff.$field = csc.$field.clone();
            }
        )*};
    }
    over!(
        se_linux_options,
        windows_options,
        capabilities,
        privileged,
        run_as_user,
        run_as_group,
        run_as_non_root,
        read_only_root_filesystem,
        allow_privilege_escalation,
        proc_mount,
        seccomp_profile,
        app_armor_profile
    );
    Some(eff)
}

/// What the image's config says it runs as (getImageUser): a uid when the
/// user part of `User` is numeric, else the name; no user is root.
pub fn image_user(user: Option<&str>) -> (Option<i64>, String) {
    let user = user.unwrap_or_default();
    if user.is_empty() {
        return (Some(0), String::new());
    }
    let name = user.split(':').next().unwrap_or_default();
    match name.parse::<i64>() {
        Ok(uid) if uid >= 0 => (Some(uid), String::new()),
        _ if name.is_empty() => (Some(0), String::new()),
        _ => (None, name.to_string()),
    }
}

/// verifyRunAsNonRoot, worded as the kubelet words it.
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    uid: Option<i64>,
    username: &str,
) -> Result<(), PodSpecError> {
    let Some(sc) = effective_security_context(pod, container) else {
        return Ok(());
    };
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let name = &container.name;
    if let Some(run_as) = sc.run_as_user {
        if run_as == 0 {
            return Err(PodSpecError::config(format!(
                "container's runAsUser breaks non-root policy (pod: {:?}, container: {name})",
                pod_ref(pod)
            )));
        }
        return Ok(());
    }
    match uid {
        Some(0) => Err(PodSpecError::config(format!(
            "container has runAsNonRoot and image will run as root (pod: {:?}, container: {name})",
            pod_ref(pod)
        ))),
        None if !username.is_empty() => Err(PodSpecError::config(format!(
            "container has runAsNonRoot and image has non-numeric user ({username}), cannot verify user is non-root (pod: {:?}, container: {name})",
            pod_ref(pod)
        ))),
        _ => Ok(()),
    }
}

fn mode(host: bool, otherwise: v1::NamespaceMode) -> i32 {
    if host {
        v1::NamespaceMode::Node as i32
    } else {
        otherwise as i32
    }
}

/// runtimeutil.NamespacesForPod. User namespaces (hostUsers: false) need
/// an id-mapping allocator this node does not have: refused, not ignored.
pub fn namespaces_for_pod(pod: &Pod) -> Result<v1::NamespaceOption, PodSpecError> {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    if spec.and_then(|s| s.host_users) == Some(false) {
        return Err(PodSpecError::sandbox(
            "user namespaces (spec.hostUsers: false) are not supported by this node",
        ));
    }
    let pid = if flag(|s| s.host_pid) {
        v1::NamespaceMode::Node as i32
    } else if flag(|s| s.share_process_namespace) {
        v1::NamespaceMode::Pod as i32
    } else {
        v1::NamespaceMode::Container as i32
    };
    Ok(v1::NamespaceOption {
        network: mode(flag(|s| s.host_network), v1::NamespaceMode::Pod),
        pid,
        ipc: mode(flag(|s| s.host_ipc), v1::NamespaceMode::Pod),
        target_id: String::new(),
        userns_options: Some(v1::UserNamespace {
            mode: v1::NamespaceMode::Node as i32,
            ..Default::default()
        }),
    })
}

fn selinux(opts: Option<&SELinuxOptions>) -> Option<v1::SeLinuxOption> {
    opts.map(|o| v1::SeLinuxOption {
        user: o.user.clone().unwrap_or_default(),
        role: o.role.clone().unwrap_or_default(),
        r#type: o.type_.clone().unwrap_or_default(),
        level: o.level.clone().unwrap_or_default(),
    })
}

fn capabilities(caps: Option<&Capabilities>) -> Option<v1::Capability> {
    caps.map(|c| v1::Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        add_ambient_capabilities: Vec::new(),
    })
}

/// The pod's groups: fsGroup first, then supplementalGroups (the kubelet's
/// order), and the policy when given.
fn supplemental_groups(psc: Option<&PodSecurityContext>) -> (Vec<i64>, i32) {
    let Some(psc) = psc else {
        return (Vec::new(), 0);
    };
    let mut groups: Vec<i64> = psc.fs_group.into_iter().collect();
    groups.extend(psc.supplemental_groups.iter().flatten());
    let policy = match psc.supplemental_groups_policy.as_deref() {
        Some("Strict") => v1::SupplementalGroupsPolicy::Strict as i32,
        _ => v1::SupplementalGroupsPolicy::Merge as i32,
    };
    (groups, policy)
}

fn profile(kind: v1::security_profile::ProfileType) -> v1::SecurityProfile {
    v1::SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: String::new(),
    }
}

/// fieldSeccompProfile
fn seccomp_from_field(
    scmp: &SeccompProfile,
    node: &NodeContext,
) -> Result<v1::SecurityProfile, PodSpecError> {
    use v1::security_profile::ProfileType;
    match scmp.type_.as_str() {
        "RuntimeDefault" => Ok(profile(ProfileType::RuntimeDefault)),
        "Localhost" => match scmp.localhost_profile.as_deref() {
            Some(p) if !p.is_empty() => Ok(v1::SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: node
                    .seccomp_profile_root
                    .join(p)
                    .to_string_lossy()
                    .into_owned(),
            }),
            _ => Err(PodSpecError::config(
                "localhostProfile must be set if seccompProfile type is Localhost.",
            )),
        },
        _ => Ok(profile(ProfileType::Unconfined)),
    }
}

/// getSeccompProfile: the container's field, else the pod's, else
/// RuntimeDefault with seccompDefault on and Unconfined without.
fn seccomp(
    pod: &Pod,
    container: &Container,
    node: &NodeContext,
) -> Result<v1::SecurityProfile, PodSpecError> {
    use v1::security_profile::ProfileType;
    let container_field = container
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref());
    let pod_field = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.seccomp_profile.as_ref());
    match container_field.or(pod_field) {
        Some(f) => seccomp_from_field(f, node),
        None if node.seccomp_default => Ok(profile(ProfileType::RuntimeDefault)),
        None => Ok(profile(ProfileType::Unconfined)),
    }
}

/// getAppArmorProfile: the container's field, else the pod's; None leaves
/// the runtime's default.
fn apparmor(sc: Option<&SecurityContext>) -> Result<Option<v1::SecurityProfile>, PodSpecError> {
    use v1::security_profile::ProfileType;
    let Some(p) = sc.and_then(|s| s.app_armor_profile.as_ref()) else {
        return Ok(None);
    };
    Ok(Some(match p.type_.as_str() {
        "RuntimeDefault" => profile(ProfileType::RuntimeDefault),
        "Localhost" => match p.localhost_profile.as_deref() {
            Some(name) if !name.is_empty() => v1::SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: name.to_string(),
            },
            _ => {
                return Err(PodSpecError::config(
                    "missing localhost apparmor profile name",
                ));
            }
        },
        _ => profile(ProfileType::Unconfined),
    }))
}

/// The container's CRI security context (determineEffectiveSecurityContext).
pub fn container_security_context(
    pod: &Pod,
    container: &Container,
    node: &NodeContext,
    uid: Option<i64>,
    username: &str,
) -> Result<v1::LinuxContainerSecurityContext, PodSpecError> {
    let eff = effective_security_context(pod, container);
    let eff = eff.as_ref();
    let mut sc = v1::LinuxContainerSecurityContext {
        capabilities: capabilities(eff.and_then(|s| s.capabilities.as_ref())),
        selinux_options: selinux(eff.and_then(|s| s.se_linux_options.as_ref())),
        run_as_user: eff
            .and_then(|s| s.run_as_user)
            .map(|value| v1::Int64Value { value }),
        run_as_group: eff
            .and_then(|s| s.run_as_group)
            .map(|value| v1::Int64Value { value }),
        privileged: eff.and_then(|s| s.privileged).unwrap_or(false),
        readonly_rootfs: eff
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        ..Default::default()
    };
    sc.seccomp = Some(seccomp(pod, container, node)?);
    sc.apparmor = apparmor(eff)?;
    if let Some(p) = &sc.apparmor {
        // The deprecated string form, as the kubelet still fills it for
        // runtimes that read only that.
        use v1::security_profile::ProfileType;
        #[allow(deprecated)]
        let legacy = &mut sc.apparmor_profile;
        *legacy = match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => "runtime/default".into(),
            Ok(ProfileType::Localhost) => format!("localhost/{}", p.localhost_ref),
            _ => "unconfined".into(),
        };
    }
    if sc.run_as_user.is_none() {
        sc.run_as_user = uid.map(|value| v1::Int64Value { value });
        sc.run_as_username = username.to_string();
    }
    sc.namespace_options = Some(namespaces_for_pod(pod)?);
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    (sc.supplemental_groups, sc.supplemental_groups_policy) = supplemental_groups(psc);
    sc.no_new_privs = eff.and_then(|s| s.allow_privilege_escalation) == Some(false);
    let unmasked = eff.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    if !unmasked {
        sc.masked_paths = DEFAULT_MASKED_PATHS.iter().map(|p| p.to_string()).collect();
        sc.readonly_paths = DEFAULT_READONLY_PATHS
            .iter()
            .map(|p| p.to_string())
            .collect();
    }
    Ok(sc)
}

/// kubecontainer.HasPrivilegedContainer over init, app and ephemeral containers.
fn has_privileged_container(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let privileged = |sc: Option<&SecurityContext>| sc.and_then(|s| s.privileged).unwrap_or(false);
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| privileged(c.security_context.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| privileged(c.security_context.as_ref()))
}

/// The sandbox's security context and sysctls (generatePodSandboxLinuxConfig).
pub fn sandbox_security_context(
    pod: &Pod,
) -> Result<(v1::LinuxSandboxSecurityContext, HashMap<String, String>), PodSpecError> {
    use v1::security_profile::ProfileType;
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut sc = v1::LinuxSandboxSecurityContext {
        privileged: has_privileged_container(pod),
        // The sandbox always runs RuntimeDefault so that pods may use least
        // privileged profiles (kubernetes#84623).
        seccomp: Some(profile(ProfileType::RuntimeDefault)),
        // Set even without a pod securityContext (the kubelet only reaches
        // this with one, which the API server always defaults).
        namespace_options: Some(namespaces_for_pod(pod)?),
        ..Default::default()
    };
    let mut sysctls = HashMap::new();
    if let Some(psc) = psc {
        for s in psc.sysctls.iter().flatten() {
            sysctls.insert(s.name.clone(), s.value.clone());
        }
        sc.run_as_user = psc.run_as_user.map(|value| v1::Int64Value { value });
        sc.run_as_group = psc.run_as_group.map(|value| v1::Int64Value { value });
        (sc.supplemental_groups, sc.supplemental_groups_policy) = supplemental_groups(Some(psc));
        sc.selinux_options = selinux(psc.se_linux_options.as_ref());
    }
    Ok((sc, sysctls))
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;

//! Namespaced sysctls, written through /proc/sys from a thread that joined
//! the pod's namespaces (never by forking sysctl(8)).

use std::path::{Path, PathBuf};

use crate::sys::ns::{self, NsKind};

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("sysctl {0:?}: invalid name")]
    InvalidName(String),
    #[error("sysctl {0:?} is not namespaced (or not in a namespace this pod owns)")]
    NotNamespaced(String),
    #[error("sysctl {name}={value}: {source}")]
    Write {
        name: String,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ns(#[from] ns::NsError),
}

/// Which namespace a sysctl belongs to (the kernel's namespaced set, as
/// kubelet's safe/unsafe sysctl lists know it), or None for node-wide ones.
pub fn namespace_of(name: &str) -> Option<NsKind> {
    let dotted = name.replace('/', ".");
    if dotted.starts_with("net.") {
        Some(NsKind::Net)
    } else if dotted.starts_with("fs.mqueue.")
        || matches!(
            dotted.as_str(),
            "kernel.shmmax"
                | "kernel.shmall"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
                | "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
        )
    {
        Some(NsKind::Ipc)
    } else if matches!(dotted.as_str(), "kernel.hostname" | "kernel.domainname") {
        Some(NsKind::Uts)
    } else {
        None
    }
}

/// `net.ipv4.ip_forward` or `net/ipv4/ip_forward` -> /proc/sys/net/ipv4/ip_forward.
/// With '/' as separator, dots belong to the name (`net/ipv4/conf/eth0.1/..`).
pub fn proc_path(name: &str) -> Result<PathBuf, SysctlError> {
    let parts: Vec<&str> = if name.contains('/') {
        name.split('/').collect()
    } else {
        name.split('.').collect()
    };
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(SysctlError::InvalidName(name.to_string()));
    }
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    Ok(path)
}

/// Writes each sysctl inside the namespace it belongs to. `pinned` maps the
/// namespaces the pod owns to their pinned paths; a sysctl for a namespace
/// the pod shares with the host is refused rather than changing the node.
pub fn apply(
    pinned: &[(PathBuf, NsKind)],
    sysctls: &[(String, String)],
) -> Result<(), SysctlError> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let mut writes = Vec::new();
    for (name, value) in sysctls {
        let kind = namespace_of(name).ok_or_else(|| SysctlError::NotNamespaced(name.clone()))?;
        if !pinned.iter().any(|(_, k)| *k == kind) {
            return Err(SysctlError::NotNamespaced(name.clone()));
        }
        writes.push((name.clone(), value.clone(), proc_path(name)?));
    }
    // Only the namespaces sysctls live in: a PID namespace changes nothing
    // for this thread, and a multithreaded process may not join a user one
    // (nor needs to: root here is root over the pod's namespaces).
    let joins = pinned
        .iter()
        .filter(|(_, k)| matches!(k, NsKind::Net | NsKind::Ipc | NsKind::Uts))
        .cloned()
        .collect();
    ns::run_in(joins, move || {
        for (name, value, path) in writes {
            write(&path, &value).map_err(|source| SysctlError::Write {
                name,
                value,
                source,
            })?;
        }
        Ok(())
    })?
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_namespaced_sysctls() {
        assert_eq!(namespace_of("net.ipv4.ip_forward"), Some(NsKind::Net));
        assert_eq!(
            namespace_of("net/ipv4/conf/eth0.1/forwarding"),
            Some(NsKind::Net)
        );
        assert_eq!(namespace_of("kernel.shmmax"), Some(NsKind::Ipc));
        assert_eq!(namespace_of("fs.mqueue.msg_max"), Some(NsKind::Ipc));
        assert_eq!(namespace_of("kernel.panic"), None);
        assert_eq!(namespace_of("vm.swappiness"), None);
    }

    #[test]
    fn maps_names_to_proc_paths() {
        assert_eq!(
            proc_path("net.ipv4.ip_forward").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            proc_path("net/ipv4/conf/eth0.1/forwarding").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.1/forwarding")
        );
        assert!(proc_path("net/../../etc/passwd").is_err());
        assert!(proc_path("net..x").is_err());
    }

    #[test]
    fn refuses_node_wide_and_unowned_namespaces() {
        let s = |n: &str| vec![(n.to_string(), "1".to_string())];
        assert!(matches!(
            apply(&[], &s("kernel.panic")),
            Err(SysctlError::NotNamespaced(_))
        ));
        // A host-network pod may not set net.* sysctls.
        assert!(matches!(
            apply(
                &[(PathBuf::from("/x"), NsKind::Ipc)],
                &s("net.ipv4.ip_forward")
            ),
            Err(SysctlError::NotNamespaced(_))
        ));
        assert!(apply(&[], &[]).is_ok());
    }
}

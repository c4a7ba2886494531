//! The pod cgroup, with the cgroupfs driver (cgroups-rs): v1 (one hierarchy
//! per controller) or v2 (unified), whichever the host mounts.

use cgroups_rs::fs::{Cgroup, hierarchies};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup parent {0:?}: {1}")]
    InvalidParent(String, &'static str),
    #[error("cgroup {path}: {message}")]
    Sys { path: String, message: String },
}

/// Checks a cgroup parent as the CRI passes it (`/kubepods/burstable/pod..`)
/// and returns it normalised, without the leading '/'. A relative path or one
/// with `..` could place the pod anywhere in the hierarchy: refused.
pub fn validate_parent(parent: &str) -> Result<String, CgroupError> {
    let invalid = |why| CgroupError::InvalidParent(parent.to_string(), why);
    if !parent.starts_with('/') {
        return Err(invalid("must be an absolute path"));
    }
    if parent.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    let mut parts = Vec::new();
    for part in parent.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid("must not contain '..'")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Joins a normalised parent and a leaf into a path relative to the
/// hierarchy roots (what cgroups-rs expects: an absolute one would replace
/// the mount point when joined).
pub fn child_path(parent: &str, leaf: &str) -> String {
    if parent.is_empty() {
        leaf.to_string()
    } else {
        format!("{parent}/{leaf}")
    }
}

fn sys(path: &str) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError + '_ {
    move |e| CgroupError::Sys {
        path: path.to_string(),
        message: e.to_string(),
    }
}

/// Creates the cgroup `path` (and missing parents) in every hierarchy.
pub fn create(path: &str) -> Result<(), CgroupError> {
    Cgroup::new(hierarchies::auto(), path)
        .map(|_| ())
        .map_err(sys(path))
}

/// Moves process `pid` (all its threads) into the cgroup.
pub fn add_process(path: &str, pid: u32) -> Result<(), CgroupError> {
    Cgroup::load(hierarchies::auto(), path)
        .add_task_by_tgid(cgroups_rs::CgroupPid::from(pid as u64))
        .map_err(sys(path))
}

pub fn exists(path: &str) -> bool {
    Cgroup::load(hierarchies::auto(), path).exists()
}

/// Removes the cgroup; absent is fine (idempotent release).
pub fn remove(path: &str) -> Result<(), CgroupError> {
    remove_hybrid_unified(path);
    let cg = Cgroup::load(hierarchies::auto(), path);
    if !cg.exists() {
        return Ok(());
    }
    cg.delete().map_err(sys(path))
}

/// On a hybrid host (v1 controllers plus a v2 tree at
/// /sys/fs/cgroup/unified) runc also makes a container's cgroup, and its
/// missing parents, in the v2 tree, which cgroups-rs does not manage: the
/// pod's dir there is ours to remove once its containers are gone.
fn remove_hybrid_unified(path: &str) {
    let unified = std::path::Path::new("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.procs").exists()
    {
        let dir = unified.join(path.trim_start_matches('/'));
        if let Err(e) = std::fs::remove_dir(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "removing v2 cgroup of a hybrid host");
        }
    }
}

/// The pids in the cgroup (from the first hierarchy that has it).
pub fn procs(path: &str) -> Vec<u64> {
    Cgroup::load(hierarchies::auto(), path)
        .procs()
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_normalised_or_refused() {
        assert_eq!(validate_parent("/kubepods/pod1").unwrap(), "kubepods/pod1");
        assert_eq!(validate_parent("//a/./b/").unwrap(), "a/b");
        assert_eq!(validate_parent("/").unwrap(), "");
        assert!(validate_parent("kubepods").is_err());
        assert!(validate_parent("").is_err());
        assert!(validate_parent("/a/../../etc").is_err());
        assert!(validate_parent("/a/..").is_err());
        assert_eq!(child_path("", "x"), "x");
        assert_eq!(child_path("a/b", "x"), "a/b/x");
    }
}

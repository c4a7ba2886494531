//! Where a container's and a pod's cgroup is, for cAdvisor's `id` label
//! (the cgroup path, as in `/kubepods/burstable/pod<uid>/<container id>`).
//! The runtime does not say, so the hierarchy is walked: a directory whose
//! name holds a 64-hex container id (`<id>`, `cri-containerd-<id>.scope`)
//! is that container's, one named `pod<uid>` (or the systemd driver's
//! `kubepods-...-pod<uid with _>.slice`) the pod's. This works for
//! deckhand's runtime and containerd's CRI plugin alike, cgroupfs or
//! systemd driver, v1 (the memory hierarchy is walked) or v2.

use std::collections::HashMap;
use std::path::Path;

/// How deep under the root a pod's containers may sit.
const MAX_DEPTH: usize = 7;

#[derive(Debug, Default)]
pub struct CgroupPaths {
    /// Container id -> cgroup path (from the hierarchy's root, leading `/`).
    pub containers: HashMap<String, String>,
    /// Pod uid -> cgroup path.
    pub pods: HashMap<String, String>,
}

/// The root of the hierarchy walked: the unified one on v2, the memory
/// controller's on v1.
pub fn hierarchy_root() -> &'static Path {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup/memory")
    }
}

impl CgroupPaths {
    /// Walks `root` (blocking: call it off the async threads).
    pub fn scan(root: &Path) -> Self {
        let mut out = Self::default();
        walk(root, "", 0, &mut out);
        out
    }
}

fn walk(dir: &Path, rel: &str, depth: usize, out: &mut CgroupPaths) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let path = format!("{rel}/{name}");
        if let Some(id) = container_id(&name) {
            // A sandbox's cgroup is named by its id too, with its
            // containers under it: keep walking.
            out.containers.insert(id.to_string(), path.clone());
        } else if let Some(uid) = pod_uid(&name) {
            out.pods.insert(uid, path.clone());
        }
        walk(&e.path(), &path, depth + 1, out);
    }
}

/// The 64-hex container id in a cgroup directory's name.
pub fn container_id(name: &str) -> Option<&str> {
    let bytes = name.as_bytes();
    if bytes.len() < 64 {
        return None;
    }
    (0..=bytes.len() - 64).find_map(|i| {
        let cand = &name[i..i + 64];
        let hex = cand
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let bounded = (i == 0 || !bytes[i - 1].is_ascii_hexdigit())
            && bytes.get(i + 64).is_none_or(|b| !b.is_ascii_hexdigit());
        (hex && bounded).then_some(cand)
    })
}

/// The pod uid in `pod<uid>` or `kubepods-<qos>-pod<uid_>.slice`.
pub fn pod_uid(name: &str) -> Option<String> {
    let at = name.rfind("pod")?;
    let rest = name[at + 3..].trim_end_matches(".slice");
    let uid = rest.replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "6b3c7a2e-1f00-4a7e-9d2b-0a1b2c3d4e5f";

    #[test]
    fn names_of_both_drivers() {
        assert_eq!(container_id(ID), Some(ID));
        assert_eq!(
            container_id(&format!("cri-containerd-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(container_id("kubepods"), None);
        assert_eq!(container_id(&format!("{ID}0")), None);
        assert_eq!(pod_uid(&format!("pod{UID}")).as_deref(), Some(UID));
        let slice = format!("kubepods-besteffort-pod{}.slice", UID.replace('-', "_"));
        assert_eq!(pod_uid(&slice).as_deref(), Some(UID));
        assert_eq!(pod_uid("kubepods-besteffort.slice"), None);
    }

    #[test]
    fn walks_a_hierarchy() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join(format!("kubepods/burstable/pod{UID}"));
        std::fs::create_dir_all(pod.join(ID)).unwrap();
        let found = CgroupPaths::scan(dir.path());
        assert_eq!(
            found.containers[ID],
            format!("/kubepods/burstable/pod{UID}/{ID}")
        );
        assert_eq!(found.pods[UID], format!("/kubepods/burstable/pod{UID}"));
    }
}

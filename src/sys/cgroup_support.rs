//! Which resource limits this host's cgroups can take, so that a container
//! asking for one the host lacks is started without it (as containerd's CRI
//! plugin does) rather than failing in runc. The kubelet always sends zero
//! hugepage limits for every page size the node has; on a host without a
//! hugetlb controller runc refuses them ("cannot set hugetlb limit").
//!
//! - cgroup v2 (`/sys/fs/cgroup` is a cgroup2 mount): a controller is there
//!   when the `cgroup.controllers` of the container's parent lists it (the
//!   nearest existing ancestor: runc creates the missing ones with what that
//!   one has). containerd reads the root's; the parent's is what runc can
//!   actually enable below it.
//! - cgroup v1 (and hybrid hosts, where runc sets limits through v1): a v1
//!   hierarchy carrying the controller is mounted. containerd checks for
//!   `/sys/fs/cgroup/hugetlb`; mountinfo also finds co-mounted hierarchies.
//!
//! Swap limits, as containerd, need the swap accounting files: v1
//! `memory.memsw.limit_in_bytes` at the memory hierarchy's root, v2
//! `memory.swap.max` in the parent (the root has none).

use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What the host can limit for containers under one parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCgroups {
    pub hugetlb: bool,
    pub swap: bool,
}

impl HostCgroups {
    /// Everything: for callers (and tests) that must not drop anything.
    pub const ALL: HostCgroups = HostCgroups {
        hugetlb: true,
        swap: true,
    };
}

/// What the host can limit for a cgroup at `cgroup` (a path relative to the
/// hierarchy roots, a leading '/' allowed; it need not exist yet). Blocking:
/// reads mountinfo and a few cgroup files.
pub fn for_cgroup(cgroup: &str) -> HostCgroups {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = cgroup_mounts(&mountinfo);
    let root = Path::new(CGROUP_ROOT);
    let unified = mounts.iter().any(|m| m.v2 && m.point == root);
    if unified {
        let parent = nearest_existing(root, cgroup);
        let controllers =
            std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
        let swap_dir = if parent == root {
            own_v2_cgroup(root).unwrap_or(parent.clone())
        } else {
            parent
        };
        HostCgroups {
            hugetlb: lists(&controllers, "hugetlb"),
            swap: swap_dir.join("memory.swap.max").exists(),
        }
    } else {
        let v1 = |controller: &str| {
            mounts
                .iter()
                .find(|m| !m.v2 && m.options.iter().any(|o| o == controller))
                .map(|m| m.point.clone())
        };
        HostCgroups {
            hugetlb: v1("hugetlb").is_some(),
            swap: v1("memory").is_some_and(|p| p.join("memory.memsw.limit_in_bytes").exists()),
        }
    }
}

fn lists(controllers: &str, controller: &str) -> bool {
    controllers.split_whitespace().any(|c| c == controller)
}

/// `root/cgroup`, or its nearest ancestor that exists (at worst `root`).
fn nearest_existing(root: &Path, cgroup: &str) -> PathBuf {
    let mut dir = root.join(cgroup.trim_start_matches('/'));
    while dir != root && !dir.is_dir() {
        if !dir.pop() {
            return root.to_path_buf();
        }
    }
    dir
}

/// Our own cgroup in the v2 tree (`0::/path` in /proc/self/cgroup).
fn own_v2_cgroup(root: &Path) -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(root.join(path.trim_start_matches('/')))
}

#[derive(Debug, PartialEq, Eq)]
struct CgroupMount {
    point: PathBuf,
    v2: bool,
    /// Super options: the controllers of a v1 hierarchy.
    options: Vec<String>,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // <id> <parent> <dev> <root> <mount point> <options> [optional...] - <fstype> <source> <super options>
            let (left, right) = line.split_once(" - ")?;
            let point = PathBuf::from(left.split(' ').nth(4)?);
            let mut right = right.split(' ');
            let v2 = match right.next()? {
                "cgroup" => false,
                "cgroup2" => true,
                _ => return None,
            };
            let options = right
                .nth(1)
                .unwrap_or_default()
                .split(',')
                .map(str::to_string)
                .collect();
            Some(CgroupMount { point, v2, options })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn v1_hierarchies_are_found_with_their_controllers() {
        let mounts = cgroup_mounts(HYBRID);
        assert_eq!(mounts.len(), 3);
        assert!(mounts[0].v2);
        assert_eq!(mounts[0].point, Path::new("/sys/fs/cgroup/unified"));
        let v1_has = |c: &str| {
            mounts
                .iter()
                .any(|m| !m.v2 && m.options.iter().any(|o| o == c))
        };
        assert!(v1_has("memory") && v1_has("cpuacct"));
        // A hybrid host's v2 tree lists hugetlb, but runc sets limits
        // through v1, where there is none.
        assert!(!v1_has("hugetlb"));
    }

    #[test]
    fn controllers_are_matched_whole() {
        assert!(lists("cpuset cpu io memory hugetlb pids", "hugetlb"));
        assert!(!lists("cpuset cpu io memory pids", "hugetlb"));
        assert!(!lists("hugetlbx", "hugetlb"));
    }

    #[test]
    fn a_parent_not_made_yet_is_looked_for_in_its_ancestors() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("kubepods/burstable")).unwrap();
        assert_eq!(
            nearest_existing(root.path(), "/kubepods/burstable/pod1/abc"),
            root.path().join("kubepods/burstable")
        );
        assert_eq!(nearest_existing(root.path(), "/nothing/here"), root.path());
        assert_eq!(nearest_existing(root.path(), ""), root.path());
    }

    #[test]
    fn this_host_answers_without_panicking() {
        // Whatever the host has, the answer is consistent with its files.
        let host = for_cgroup("/deckhand-test-parent-that-does-not-exist");
        if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
            && !Path::new("/sys/fs/cgroup/hugetlb").exists()
        {
            assert!(!host.hugetlb, "{host:?}");
        }
    }
}

//! A cgroup's controller files, read and written directly (no fork, and
//! every failed write reported, which cgroups-rs's `apply` does not do):
//! what the cgroup has used (CPU time, memory, tasks) for stats, and its CPU
//! and memory limits for resource updates. Works on cgroup v1 (one hierarchy
//! per controller, found in /proc/self/mountinfo, so cpu and cpuacct may be
//! apart or together) and v2; on a hybrid host a controller that no v1
//! hierarchy carries is looked for in the cgroup2 tree.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::mount;

/// Above this a v1 limit means "no limit" (the kernel reports a page-aligned
/// i64::MAX).
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Cumulative CPU time of every task in the cgroup, in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    pub memory: Option<MemoryUsage>,
    /// Tasks (processes and threads) in the cgroup: the pids controller's count.
    pub pids: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Everything charged, page cache included.
    pub usage_bytes: u64,
    /// Usage less the inactive file cache: what the kernel cannot easily
    /// reclaim (the figure the kubelet evicts on), as containerd computes it.
    pub working_set_bytes: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The hard limit, when there is one.
    pub limit_bytes: Option<u64>,
}

impl MemoryUsage {
    /// What is left below the limit, as the CRI's `available_bytes`.
    pub fn available_bytes(&self) -> Option<u64> {
        self.limit_bytes
            .map(|l| l.saturating_sub(self.working_set_bytes))
    }
}

/// Where a controller's files are: a v1 hierarchy's mount point or the
/// cgroup2 mount.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tree {
    V1(PathBuf),
    V2(PathBuf),
}

impl Tree {
    fn dir(&self, cgroup: &str) -> PathBuf {
        let root = match self {
            Tree::V1(p) | Tree::V2(p) => p,
        };
        root.join(cgroup.trim_start_matches('/'))
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Trees {
    /// Usage: cpuacct on v1.
    cpuacct: Option<Tree>,
    /// Limits: shares and CFS quota.
    cpu: Option<Tree>,
    cpuset: Option<Tree>,
    memory: Option<Tree>,
    pids: Option<Tree>,
}

/// Reads every counter of the cgroup at `path` (relative to the hierarchy
/// roots, a leading '/' allowed). A counter whose file is missing (no such
/// cgroup, controller not mounted) is `None`. Blocking.
pub fn usage(path: &str) -> CgroupUsage {
    let trees = trees();
    CgroupUsage {
        cpu_usage_ns: trees.cpuacct.as_ref().and_then(|t| cpu_usage_ns(t, path)),
        memory: trees.memory.as_ref().and_then(|t| memory(t, path)),
        pids: trees
            .pids
            .as_ref()
            .and_then(|t| read_u64(&t.dir(path).join("pids.current"))),
    }
}

fn trees() -> &'static Trees {
    static TREES: OnceLock<Trees> = OnceLock::new();
    TREES.get_or_init(|| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| parse_mountinfo(&m))
            .unwrap_or_default()
    })
}

/// Picks, per controller, the v1 hierarchy that carries it, else the
/// cgroup2 mount (the unified tree, or a hybrid host's v2 side).
fn parse_mountinfo(mountinfo: &str) -> Trees {
    let mut v1: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut v2: Option<PathBuf> = None;
    for entry in mount::mountinfo_entries(mountinfo) {
        let (fstype, super_options, mount_point) =
            (entry.fstype, entry.super_options, entry.mount_point);
        match fstype {
            "cgroup" => v1.push((
                mount_point,
                super_options.split(',').map(str::to_string).collect(),
            )),
            // The first cgroup2 mount; /sys/fs/cgroup itself wins if it is one.
            "cgroup2" if v2.is_none() || mount_point == Path::new("/sys/fs/cgroup") => {
                v2 = Some(mount_point)
            }
            _ => {}
        }
    }
    let pick = |controller: &str| {
        v1.iter()
            .find(|(_, options)| options.iter().any(|o| o == controller))
            .map(|(p, _)| Tree::V1(p.clone()))
            .or_else(|| v2.clone().map(Tree::V2))
    };
    Trees {
        cpuacct: pick("cpuacct"),
        cpu: pick("cpu"),
        cpuset: pick("cpuset"),
        memory: pick("memory"),
        pids: pick("pids"),
    }
}

fn cpu_usage_ns(tree: &Tree, path: &str) -> Option<u64> {
    let dir = tree.dir(path);
    match tree {
        Tree::V1(_) => read_u64(&dir.join("cpuacct.usage")),
        Tree::V2(_) => {
            let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
            flat_keyed(&stat, "usage_usec").map(|us| us.saturating_mul(1000))
        }
    }
}

fn memory(tree: &Tree, path: &str) -> Option<MemoryUsage> {
    let dir = tree.dir(path);
    let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
    let key = |k: &str| flat_keyed(&stat, k).unwrap_or(0);
    match tree {
        Tree::V1(_) => {
            let usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
            let limit = read_u64(&dir.join("memory.limit_in_bytes")).filter(|l| *l < V1_UNLIMITED);
            Some(MemoryUsage {
                usage_bytes: usage,
                working_set_bytes: usage.saturating_sub(key("total_inactive_file")),
                rss_bytes: key("total_rss"),
                page_faults: key("total_pgfault"),
                major_page_faults: key("total_pgmajfault"),
                limit_bytes: limit,
            })
        }
        Tree::V2(_) => {
            let usage = read_u64(&dir.join("memory.current"))?;
            // "max" when unlimited: no number, no limit.
            let limit = read_u64(&dir.join("memory.max"));
            Some(MemoryUsage {
                usage_bytes: usage,
                working_set_bytes: usage.saturating_sub(key("inactive_file")),
                rss_bytes: key("anon"),
                page_faults: key("pgfault"),
                major_page_faults: key("pgmajfault"),
                limit_bytes: limit,
            })
        }
    }
}

/// CPU and memory limits to write; `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// v1 `cpu.shares` (2..262144); converted to `cpu.weight` on v2.
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per period; negative means none.
    pub cpu_quota: Option<i64>,
    /// CFS period in µs.
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Hard memory limit in bytes; negative means none.
    pub memory_bytes: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("no {0} controller is mounted")]
    NoController(&'static str),
    #[error("writing {value:?} to {}: {source}", file.display())]
    Write {
        file: PathBuf,
        value: String,
        source: std::io::Error,
    },
}

/// Writes `limits` into the cgroup at `path` (relative to the hierarchy
/// roots), stopping at the first file the kernel refuses. Blocking.
pub fn set_limits(path: &str, limits: &Limits) -> Result<(), LimitError> {
    let writes = limit_writes(trees(), path, limits, |p| std::fs::read_to_string(p).ok())?;
    for (file, value) in writes {
        std::fs::write(&file, &value).map_err(|source| LimitError::Write {
            file,
            value,
            source,
        })?;
    }
    Ok(())
}

/// The files to write, in order, and what goes in each. `current` reads a
/// file: v2's cpu.max holds "quota period", and a change of the period alone
/// keeps the quota.
fn limit_writes(
    trees: &Trees,
    path: &str,
    limits: &Limits,
    current: impl Fn(&Path) -> Option<String>,
) -> Result<Vec<(PathBuf, String)>, LimitError> {
    let mut writes = Vec::new();
    let tree = |t: &Option<Tree>, name| t.clone().ok_or(LimitError::NoController(name));
    let cpu_wanted =
        limits.cpu_shares.is_some() || limits.cpu_quota.is_some() || limits.cpu_period.is_some();
    if cpu_wanted {
        let cpu = tree(&trees.cpu, "cpu")?;
        let file = |name: &str| cpu.dir(path).join(name);
        match &cpu {
            Tree::V1(_) => {
                if let Some(shares) = limits.cpu_shares {
                    writes.push((file("cpu.shares"), shares.to_string()));
                }
                // The period first: a quota is checked against it.
                if let Some(period) = limits.cpu_period {
                    writes.push((file("cpu.cfs_period_us"), period.to_string()));
                }
                if let Some(quota) = limits.cpu_quota {
                    writes.push((file("cpu.cfs_quota_us"), quota.max(-1).to_string()));
                }
            }
            Tree::V2(_) => {
                if let Some(shares) = limits.cpu_shares {
                    writes.push((file("cpu.weight"), shares_to_weight(shares).to_string()));
                }
                let quota = |q: i64| if q > 0 { q.to_string() } else { "max".into() };
                let max = match (limits.cpu_quota, limits.cpu_period) {
                    (Some(q), Some(p)) => Some(format!("{} {p}", quota(q))),
                    // The kernel keeps the period when given the quota alone.
                    (Some(q), None) => Some(quota(q)),
                    (None, Some(p)) => {
                        let now = current(&file("cpu.max")).unwrap_or_default();
                        let q = now.split_whitespace().next().unwrap_or("max").to_string();
                        Some(format!("{q} {p}"))
                    }
                    (None, None) => None,
                };
                if let Some(max) = max {
                    writes.push((file("cpu.max"), max));
                }
            }
        }
    }
    if limits.cpuset_cpus.is_some() || limits.cpuset_mems.is_some() {
        let cpuset = tree(&trees.cpuset, "cpuset")?;
        if let Some(cpus) = &limits.cpuset_cpus {
            writes.push((cpuset.dir(path).join("cpuset.cpus"), cpus.clone()));
        }
        if let Some(mems) = &limits.cpuset_mems {
            writes.push((cpuset.dir(path).join("cpuset.mems"), mems.clone()));
        }
    }
    if let Some(bytes) = limits.memory_bytes {
        let memory = tree(&trees.memory, "memory")?;
        let (name, value) = match (&memory, bytes) {
            (Tree::V1(_), b) => ("memory.limit_in_bytes", b.max(-1).to_string()),
            (Tree::V2(_), b) if b > 0 => ("memory.max", b.to_string()),
            (Tree::V2(_), _) => ("memory.max", "max".to_string()),
        };
        writes.push((memory.dir(path).join(name), value));
    }
    Ok(writes)
}

/// runc's mapping of v1 shares (2..262144) onto v2 weights (1..10000).
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn flat_keyed(body: &str, key: &str) -> Option<u64> {
    body.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_controllers_are_found_apart_or_together_and_v2_fills_in() {
        let trees = parse_mountinfo(HYBRID);
        assert_eq!(
            trees.cpuacct,
            Some(Tree::V1("/sys/fs/cgroup/cpuacct".into()))
        );
        assert_eq!(trees.cpu, Some(Tree::V1("/sys/fs/cgroup/cpu".into())));
        assert_eq!(trees.memory, Some(Tree::V1("/sys/fs/cgroup/memory".into())));
        assert_eq!(trees.pids, Some(Tree::V1("/sys/fs/cgroup/pids".into())));

        let together = "25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                        26 20 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let trees = parse_mountinfo(together);
        assert_eq!(trees.cpu, trees.cpuacct);
        assert_eq!(
            trees.cpu,
            Some(Tree::V1("/sys/fs/cgroup/cpu,cpuacct".into()))
        );
        // No v1 memory hierarchy: the cgroup2 tree is tried.
        assert_eq!(
            trees.memory,
            Some(Tree::V2("/sys/fs/cgroup/unified".into()))
        );

        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let trees = parse_mountinfo(v2);
        assert_eq!(trees.pids, Some(Tree::V2("/sys/fs/cgroup".into())));
        assert_eq!(parse_mountinfo(""), Trees::default());
    }

    #[test]
    fn paths_join_below_the_root_with_or_without_a_leading_slash() {
        let t = Tree::V1("/sys/fs/cgroup/memory".into());
        assert_eq!(t.dir("/a/b"), Path::new("/sys/fs/cgroup/memory/a/b"));
        assert_eq!(t.dir("a/b"), Path::new("/sys/fs/cgroup/memory/a/b"));
        assert_eq!(mount::unescape(r"/mnt/a\040b"), "/mnt/a b");
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, body) in files {
            std::fs::write(dir.join(name), body).unwrap();
        }
    }

    #[test]
    fn v1_memory_and_cpu_files_are_read_as_containerd_reads_them() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pod/c");
        std::fs::create_dir_all(&dir).unwrap();
        write(
            &dir,
            &[
                ("cpuacct.usage", "123456789\n"),
                ("memory.usage_in_bytes", "10000\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory.stat",
                    "rss 1\ninactive_file 5\ntotal_rss 4000\ntotal_inactive_file 3000\n\
                     total_pgfault 77\ntotal_pgmajfault 2\n",
                ),
            ],
        );
        let tree = Tree::V1(root.path().into());
        assert_eq!(cpu_usage_ns(&tree, "/pod/c"), Some(123_456_789));
        let m = memory(&tree, "/pod/c").unwrap();
        assert_eq!(
            m,
            MemoryUsage {
                usage_bytes: 10000,
                working_set_bytes: 7000,
                rss_bytes: 4000,
                page_faults: 77,
                major_page_faults: 2,
                limit_bytes: None,
            }
        );
        write(&dir, &[("memory.limit_in_bytes", "8192\n")]);
        let m = memory(&tree, "pod/c").unwrap();
        assert_eq!(m.available_bytes(), Some(1192));
        assert_eq!(memory(&tree, "/missing"), None);
    }

    #[test]
    fn v2_memory_and_cpu_files_are_read_as_containerd_reads_them() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            &[
                (
                    "cpu.stat",
                    "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
                ),
                ("memory.current", "9000\n"),
                ("memory.max", "max\n"),
                (
                    "memory.stat",
                    "anon 2000\nfile 6000\ninactive_file 4000\npgfault 10\npgmajfault 1\n",
                ),
            ],
        );
        let tree = Tree::V2(root.path().into());
        assert_eq!(cpu_usage_ns(&tree, "/"), Some(1_500_000));
        let m = memory(&tree, "").unwrap();
        assert_eq!(m.working_set_bytes, 5000);
        assert_eq!(m.rss_bytes, 2000);
        assert_eq!((m.page_faults, m.major_page_faults), (10, 1));
        assert_eq!(m.limit_bytes, None);
        write(root.path(), &[("memory.max", "65536\n")]);
        assert_eq!(memory(&tree, "").unwrap().limit_bytes, Some(65536));
    }

    #[test]
    fn limits_become_v1_files_in_order() {
        let trees = parse_mountinfo(HYBRID);
        let limits = Limits {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpuset_cpus: Some("0".into()),
            cpuset_mems: None,
            memory_bytes: Some(64 << 20),
        };
        let mut trees = trees;
        trees.cpuset = Some(Tree::V1("/sys/fs/cgroup/cpuset".into()));
        let writes = limit_writes(&trees, "/pods/p1", &limits, |_| None).unwrap();
        let writes: Vec<(String, String)> = writes
            .into_iter()
            .map(|(f, v)| (f.display().to_string(), v))
            .collect();
        let expect = |f: &str, v: &str| (f.to_string(), v.to_string());
        assert_eq!(
            writes,
            vec![
                expect("/sys/fs/cgroup/cpu/pods/p1/cpu.shares", "512"),
                expect("/sys/fs/cgroup/cpu/pods/p1/cpu.cfs_period_us", "100000"),
                expect("/sys/fs/cgroup/cpu/pods/p1/cpu.cfs_quota_us", "50000"),
                expect("/sys/fs/cgroup/cpuset/pods/p1/cpuset.cpus", "0"),
                expect(
                    "/sys/fs/cgroup/memory/pods/p1/memory.limit_in_bytes",
                    "67108864"
                ),
            ]
        );
        assert!(
            limit_writes(&trees, "x", &Limits::default(), |_| None)
                .unwrap()
                .is_empty()
        );
        let no_cpuset = parse_mountinfo(HYBRID);
        let err = limit_writes(
            &Trees {
                cpuset: None,
                ..no_cpuset
            },
            "x",
            &limits,
            |_| None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cpuset"), "{err}");
    }

    #[test]
    fn limits_become_v2_files_keeping_the_other_half_of_cpu_max() {
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let trees = parse_mountinfo(v2);
        let limits = Limits {
            cpu_shares: Some(1024),
            cpu_period: Some(50_000),
            memory_bytes: Some(-1),
            ..Default::default()
        };
        let writes = limit_writes(&trees, "p", &limits, |f| {
            assert_eq!(f, Path::new("/sys/fs/cgroup/p/cpu.max"));
            Some("20000 100000\n".into())
        })
        .unwrap();
        let values: Vec<&str> = writes.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["39", "20000 50000", "max"]);
        let quota_only = Limits {
            cpu_quota: Some(-1),
            ..Default::default()
        };
        let writes = limit_writes(&trees, "p", &quota_only, |_| None).unwrap();
        assert_eq!(writes[0].1, "max");
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}

//! What the soak counts as left behind by a runtime, at one moment.

use std::path::{Path, PathBuf};

use super::Runtime;

/// What a runtime may leave behind, counted at one moment.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    netns: i64,
    cgroups: i64,
    mounts: i64,
    veths: i64,
    fds: i64,
    processes: i64,
    containers: i64,
    tasks: i64,
    snapshots: i64,
    leases: i64,
}

pub const COUNT_NAMES: [&str; 10] = [
    "netns",
    "cgroups",
    "mounts",
    "veths",
    "fds",
    "processes",
    "containers",
    "tasks",
    "snapshots",
    "leases",
];

impl Counts {
    pub fn values(&self) -> [i64; 10] {
        [
            self.netns,
            self.cgroups,
            self.mounts,
            self.veths,
            self.fds,
            self.processes,
            self.containers,
            self.tasks,
            self.snapshots,
            self.leases,
        ]
    }
}

fn sh(args: &[&str]) -> String {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn dir_count(dir: &Path) -> i64 {
    std::fs::read_dir(dir)
        .map(|d| d.count() as i64)
        .unwrap_or(0)
}

/// Every directory under the runtime's cgroup parent, in every hierarchy,
/// with its depth below the parent (1: a pod's cgroup, which the kubelet
/// makes and removes, not the runtime; 2 and deeper: the runtime's own).
pub fn cgroup_dirs(parent: &str) -> Vec<(PathBuf, usize)> {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()));
    }
    let mut out = Vec::new();
    for root in roots {
        let mut stack = vec![(root.join(parent.trim_start_matches('/')), 0)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push((entry.path(), depth + 1));
                    stack.push((entry.path(), depth + 1));
                }
            }
        }
    }
    out
}

pub fn count(rt: &Runtime) -> Counts {
    let mountinfo = std::fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
    let cgroups = cgroup_dirs(&rt.cgroup_parent);
    let in_cgroups: i64 = cgroups
        .iter()
        .map(|(d, _)| {
            std::fs::read_to_string(d.join("cgroup.procs"))
                .map(|s| s.lines().count() as i64)
                .unwrap_or(0)
        })
        .sum();
    // Shims of our pods: deckhand's by namespace, the CRI plugin's by id.
    let shims = sh(&["ps", "-eo", "args"])
        .lines()
        .filter(|l| l.contains("containerd-shim"))
        .filter(|l| {
            if rt.shared {
                rt.ids.iter().any(|id| l.contains(id.as_str()))
            } else {
                l.contains(&format!("-namespace {}", rt.namespace))
            }
        })
        .count() as i64;
    let objects = |what: &str| -> i64 {
        let out = sh(&["ctr", "-n", rt.namespace, what, "ls"]);
        out.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !rt.shared || rt.ids.iter().any(|id| l.contains(id.as_str())))
            .count() as i64
    };
    Counts {
        netns: mountinfo.lines().filter(|l| l.contains(" nsfs ")).count() as i64
            + dir_count(Path::new("/run/netns")),
        cgroups: cgroups.iter().filter(|(_, depth)| *depth >= 2).count() as i64,
        mounts: mountinfo.lines().count() as i64,
        veths: sh(&["ip", "-o", "link", "show", "master", rt.bridge])
            .lines()
            .count() as i64,
        fds: dir_count(&PathBuf::from(format!("/proc/{}/fd", rt.pid))),
        processes: in_cgroups + shims,
        containers: objects("containers"),
        tasks: objects("tasks"),
        snapshots: objects("snapshots"),
        leases: if rt.shared { 0 } else { objects("leases") },
    }
}

pub fn containerd_pid() -> u32 {
    sh(&["pgrep", "-xo", "containerd"])
        .trim()
        .parse()
        .unwrap_or(0)
}

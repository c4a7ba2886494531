//! What the machine is: CPUs, memory, hugepages, disk, and the identifiers
//! the Node's nodeInfo carries. Read from /proc, /sys and /etc as cadvisor
//! reads them for the kubelet.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Resources the machine has, in the units the Node reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineResources {
    pub cpus: u64,
    pub memory_bytes: u64,
    /// Page size (e.g. "2Mi") -> bytes reserved as hugepages of that size.
    pub hugepages: BTreeMap<String, u64>,
    /// Size of the filesystem holding the node's root dir.
    pub ephemeral_storage_bytes: u64,
}

impl MachineResources {
    pub fn read(root_dir: &Path) -> Self {
        Self {
            cpus: online_cpus(),
            memory_bytes: meminfo_kib("MemTotal").unwrap_or(0) * 1024,
            hugepages: hugepages(),
            ephemeral_storage_bytes: filesystem_bytes(root_dir).unwrap_or(0),
        }
    }
}

fn online_cpus() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as u64 } else { 1 }
}

/// A field of /proc/meminfo in KiB.
pub fn meminfo_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn hugepages() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(kib) = name
            .strip_prefix("hugepages-")
            .and_then(|s| s.strip_suffix("kB"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let pages: u64 = std::fs::read_to_string(entry.path().join("nr_hugepages"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        out.insert(binary_quantity(kib * 1024), pages * kib * 1024);
    }
    out
}

fn filesystem_bytes(path: &Path) -> Option<u64> {
    // The root dir may not exist yet on a fresh node: measure its parent.
    let existing = path.ancestors().find(|p| p.exists())?;
    let st = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(st.blocks() * st.fragment_size())
}

/// Bytes as a Kubernetes binary-suffixed quantity when exact (`2Mi`, `1Gi`),
/// else plain bytes.
pub fn binary_quantity(bytes: u64) -> String {
    for (suffix, shift) in [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ] {
        let unit = 1u64 << shift;
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Bytes as the kubelet writes memory capacity: KiB when whole.
pub fn kib_quantity(bytes: u64) -> Quantity {
    if bytes.is_multiple_of(1024) {
        Quantity(format!("{}Ki", bytes / 1024))
    } else {
        Quantity(bytes.to_string())
    }
}

/// Whether the host mounts cgroup v2 (unified) at /sys/fs/cgroup.
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Whether the kernel has the swap cgroup controller: v2's memory.swap.max
/// (in any first-level cgroup: the root has none), v1's memory.memsw.*.
pub fn swap_controller() -> bool {
    if !cgroup_v2() {
        return Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    }
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("memory.swap.max").exists())
}

/// The identifiers in Node.status.nodeInfo that come from the machine.
#[derive(Debug, Clone, Default)]
pub struct MachineInfo {
    pub machine_id: String,
    pub boot_id: String,
    pub system_uuid: String,
    pub kernel_version: String,
    pub os_image: String,
    pub operating_system: String,
    pub architecture: String,
    pub hostname: String,
}

impl MachineInfo {
    pub fn read() -> Self {
        Self {
            machine_id: first_line("/etc/machine-id")
                .or_else(|| first_line("/var/lib/dbus/machine-id"))
                .unwrap_or_default(),
            boot_id: first_line("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            system_uuid: first_line("/sys/class/dmi/id/product_uuid")
                .unwrap_or_default()
                .to_lowercase(),
            kernel_version: first_line("/proc/sys/kernel/osrelease").unwrap_or_default(),
            os_image: os_pretty_name().unwrap_or_else(|| "Linux".to_string()),
            operating_system: std::env::consts::OS.to_string(),
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            hostname: first_line("/proc/sys/kernel/hostname").unwrap_or_default(),
        }
    }
}

fn first_line(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

fn os_pretty_name() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim_matches('"').to_string())
    })
}

/// Rust's architecture names as Go's GOARCH spells them (kubernetes.io/arch).
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_written_as_the_kubelet_writes_them() {
        assert_eq!(binary_quantity(2 << 20), "2Mi");
        assert_eq!(binary_quantity(1 << 30), "1Gi");
        assert_eq!(binary_quantity(1000), "1000");
        assert_eq!(kib_quantity(8 * 1024 * 1024).0, "8192Ki");
    }

    #[test]
    fn reads_this_machine() {
        let r = MachineResources::read(Path::new("/var/lib/deckhand-test-missing/x"));
        assert!(r.cpus >= 1);
        assert!(r.memory_bytes > 0);
        assert!(r.ephemeral_storage_bytes > 0);
        let i = MachineInfo::read();
        assert!(!i.kernel_version.is_empty());
        assert_eq!(i.operating_system, "linux");
    }
}

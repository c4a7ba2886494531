//! The request's limits as OCI resources the host's cgroups can take.

use super::*;

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

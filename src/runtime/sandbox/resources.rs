//! UpdatePodSandboxResources: the pod cgroup is ours (the kubelet's
//! cgroupfs driver would make it; here the sandbox does), so its limits are
//! the pod's resources plus its overhead, written into it.

use crate::cri::api::v1 as cri;

use super::{SandboxError, SandboxManager, blocking};
use crate::sys::cgroup_files::{self, LimitError, Limits};

impl SandboxManager {
    pub async fn update_resources(
        &self,
        id: &str,
        overhead: Option<&cri::LinuxContainerResources>,
        resources: Option<&cri::LinuxContainerResources>,
    ) -> Result<(), SandboxError> {
        let sandbox = self.get(id)?;
        let cgroup = sandbox.record.lock().cgroup.clone();
        let Some(cgroup) = cgroup else {
            return Err(SandboxError::InvalidArgument(format!(
                "pod sandbox {id} has no cgroup of its own"
            )));
        };
        let limits = pod_limits(overhead, resources);
        if limits == Limits::default() {
            return Ok(());
        }
        blocking(move || cgroup_files::set_limits(&cgroup, &limits))
            .await?
            .map_err(|e| match &e {
                // EINVAL, ERANGE: the kernel refused the value itself.
                LimitError::Write { source, .. }
                    if matches!(source.raw_os_error(), Some(libc::EINVAL | libc::ERANGE)) =>
                {
                    SandboxError::InvalidArgument(e.to_string())
                }
                _ => SandboxError::failed("updating pod cgroup", e),
            })
    }
}

/// The pod cgroup's limits: what its containers may use together plus the
/// pod's overhead. A field the request leaves at zero stays as it is.
fn pod_limits(
    overhead: Option<&cri::LinuxContainerResources>,
    resources: Option<&cri::LinuxContainerResources>,
) -> Limits {
    let none = cri::LinuxContainerResources::default();
    let (o, r) = (overhead.unwrap_or(&none), resources.unwrap_or(&none));
    let sum = |a: i64, b: i64| -> Option<i64> {
        match (a, b) {
            // Unlimited containers make an unlimited pod.
            (a, _) if a < 0 => Some(-1),
            (0, _) => None,
            (a, b) => Some(a + b.max(0)),
        }
    };
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Limits {
        cpu_shares: sum(r.cpu_shares, o.cpu_shares).and_then(|s| u64::try_from(s).ok()),
        cpu_quota: sum(r.cpu_quota, o.cpu_quota),
        cpu_period: [r.cpu_period, o.cpu_period]
            .into_iter()
            .find(|p| *p > 0)
            .map(|p| p as u64),
        cpuset_cpus: nonempty(&r.cpuset_cpus),
        cpuset_mems: nonempty(&r.cpuset_mems),
        memory_bytes: sum(r.memory_limit_in_bytes, o.memory_limit_in_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_limits_are_resources_plus_overhead() {
        let resources = cri::LinuxContainerResources {
            cpu_shares: 1024,
            cpu_quota: 100_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 256 << 20,
            cpuset_cpus: "0-1".into(),
            ..Default::default()
        };
        let overhead = cri::LinuxContainerResources {
            cpu_shares: 102,
            cpu_quota: 10_000,
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        };
        assert_eq!(
            pod_limits(Some(&overhead), Some(&resources)),
            Limits {
                cpu_shares: Some(1126),
                cpu_quota: Some(110_000),
                cpu_period: Some(100_000),
                cpuset_cpus: Some("0-1".into()),
                cpuset_mems: None,
                memory_bytes: Some(288 << 20),
            }
        );
        // Nothing asked, nothing changed; an overhead alone changes nothing.
        assert_eq!(pod_limits(None, None), Limits::default());
        assert_eq!(pod_limits(Some(&overhead), None), Limits::default());
        let unlimited = cri::LinuxContainerResources {
            cpu_quota: -1,
            ..Default::default()
        };
        assert_eq!(
            pod_limits(Some(&overhead), Some(&unlimited)).cpu_quota,
            Some(-1)
        );
    }
}

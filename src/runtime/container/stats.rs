//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.
//! CPU, memory and task counts come from the cgroup files
//! ([`crate::sys::cgroup_files`]), the writable layer's size from the
//! snapshotter (containerd's snapshots Usage: the upper dir of the
//! container's overlay), a pod's network from its namespace's interface
//! counters ([`crate::sys::netdev`]). `usage_nano_cores` is the rate between
//! this sample and the previous one of the same cgroup, as containerd
//! computes it (zero on the first).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use containerd_client::services::v1::snapshots::UsageRequest;
use futures::StreamExt;

use crate::cri::api::v1 as cri;
use crate::runtime::sandbox::stats::SandboxStatsSource;
use crate::sys::cgroup_files::{self, CgroupUsage};
use crate::sys::netdev;

use super::{Container, ContainerError, ContainerManager, State, blocking, now_ns};

/// Snapshot Usage calls in flight at once for one list (each walks an upper
/// dir in containerd).
const LAYER_USAGE_CONCURRENCY: usize = 4;
/// The interface a pod's CNI network is attached as.
const POD_INTERFACE: &str = "eth0";

/// The previous CPU sample of each container and pod cgroup.
#[derive(Default)]
pub(super) struct CpuRates {
    samples: Mutex<HashMap<String, CpuSample>>,
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    usage_ns: u64,
    at_ns: i64,
}

impl CpuRates {
    /// Nanocores used since the previous sample of `key` (0 without one),
    /// and this sample kept for the next call.
    fn rate(&self, key: &str, usage_ns: u64, at_ns: i64) -> u64 {
        let mut samples = self.samples.lock();
        let previous = samples.insert(key.to_string(), CpuSample { usage_ns, at_ns });
        previous.map_or(0, |p| nano_cores(p, CpuSample { usage_ns, at_ns }))
    }

    pub(super) fn forget(&self, key: &str) {
        self.samples.lock().remove(key);
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.samples.lock().retain(|k, _| keep(k));
    }
}

fn nano_cores(previous: CpuSample, now: CpuSample) -> u64 {
    let elapsed = now.at_ns - previous.at_ns;
    // A counter that went back is a new cgroup under an old key.
    if elapsed <= 0 || now.usage_ns < previous.usage_ns {
        return 0;
    }
    ((now.usage_ns - previous.usage_ns) as f64 / elapsed as f64 * 1e9) as u64
}

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

/// A cgroup's usage as the CRI reports it, sampled at `at`.
struct Sample {
    usage: CgroupUsage,
    at: i64,
}

fn read_cgroup(path: &str) -> Sample {
    Sample {
        usage: cgroup_files::usage(path),
        at: now_ns(),
    }
}

impl ContainerManager {
    fn cpu(&self, key: &str, sample: &Sample) -> Option<cri::CpuUsage> {
        let usage_ns = sample.usage.cpu_usage_ns?;
        Some(cri::CpuUsage {
            timestamp: sample.at,
            usage_core_nano_seconds: value(usage_ns),
            usage_nano_cores: value(self.cpu_rates.rate(key, usage_ns, sample.at)),
            psi: None,
        })
    }

    pub async fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, ContainerError> {
        let container = self.get(id)?;
        Ok(self
            .containers_stats(vec![container])
            .await?
            .pop()
            .expect("one container in, one out"))
    }

    pub async fn list_container_stats(
        &self,
        filter: Option<&cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>, ContainerError> {
        let filter = filter.map(|f| cri::ContainerFilter {
            id: f.id.clone(),
            state: None,
            pod_sandbox_id: f.pod_sandbox_id.clone(),
            label_selector: f.label_selector.clone(),
        });
        let mut containers: Vec<Arc<Container>> = self
            .containers
            .lock()
            .values()
            .filter(|c| {
                let state = super::status::cri_state(c.snapshot().state) as i32;
                super::status::matches(c, state, filter.as_ref())
            })
            .cloned()
            .collect();
        containers.sort_by_key(|c| c.created_at);
        self.containers_stats(containers).await
    }

    /// Stats of each container, in the order given. A container that does
    /// not run has no cgroup: its entry carries attributes and writable layer.
    async fn containers_stats(
        &self,
        containers: Vec<Arc<Container>>,
    ) -> Result<Vec<cri::ContainerStats>, ContainerError> {
        let cgroups: Vec<Option<String>> = containers
            .iter()
            .map(|c| (c.snapshot().state == State::Running).then(|| c.cgroup.clone()))
            .collect();
        let samples: Vec<Option<Sample>> = blocking(move || {
            cgroups
                .iter()
                .map(|cg| cg.as_deref().map(read_cgroup))
                .collect()
        })
        .await?;
        // The futures made first: a closure inside the stream would make
        // the gRPC handler's future fail the Send check (rust#102211).
        let pending: Vec<_> = containers
            .iter()
            .map(|c| self.writable_layer(&c.id))
            .collect();
        let layers: Vec<Option<cri::FilesystemUsage>> = futures::stream::iter(pending)
            .buffered(LAYER_USAGE_CONCURRENCY)
            .collect()
            .await;
        Ok(containers
            .iter()
            .zip(samples)
            .zip(layers)
            .map(|((c, sample), writable_layer)| cri::ContainerStats {
                attributes: Some(cri::ContainerAttributes {
                    id: c.id.clone(),
                    metadata: Some(c.metadata.clone()),
                    labels: c.labels.clone(),
                    annotations: c.annotations.clone(),
                }),
                cpu: sample.as_ref().and_then(|s| self.cpu(&c.id, s)),
                memory: sample.as_ref().and_then(memory),
                writable_layer,
                swap: None,
                io: None,
            })
            .collect())
    }

    /// The container's snapshot: what it wrote over its image.
    async fn writable_layer(&self, id: &str) -> Option<cri::FilesystemUsage> {
        let cd = &self.containerd;
        let usage = cd
            .snapshots()
            .usage(cd.request(UsageRequest {
                snapshotter: self.config.snapshotter.clone(),
                key: id.to_string(),
            }))
            .await;
        match usage {
            Ok(u) => {
                let u = u.into_inner();
                Some(cri::FilesystemUsage {
                    timestamp: now_ns(),
                    fs_id: Some(cri::FilesystemIdentifier {
                        mountpoint: self.images.snapshotter_root().display().to_string(),
                    }),
                    used_bytes: value(u.size.max(0) as u64),
                    inodes_used: value(u.inodes.max(0) as u64),
                })
            }
            // Removed meanwhile.
            Err(status) if super::is_not_found(&status) => None,
            Err(status) => {
                tracing::debug!(%id, %status, "writable layer usage");
                None
            }
        }
    }

    pub async fn pod_sandbox_stats(
        &self,
        id: &str,
    ) -> Result<cri::PodSandboxStats, ContainerError> {
        let source = self.sandboxes.stats_source(id)?;
        Ok(self
            .pods_stats(vec![source])
            .await?
            .pop()
            .expect("one pod in, one out"))
    }

    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Result<Vec<cri::PodSandboxStats>, ContainerError> {
        let sources = self.sandboxes.stats_sources(filter);
        let stats = self.pods_stats(sources).await?;
        if filter.is_none() {
            // Every pod and container was just sampled: drop the samples
            // of those that are gone.
            let pods: std::collections::HashSet<String> = stats
                .iter()
                .filter_map(|s| s.attributes.as_ref().map(|a| a.id.clone()))
                .collect();
            let containers = self.containers.lock();
            self.cpu_rates
                .retain(|k| pods.contains(k) || containers.contains_key(k));
        }
        Ok(stats)
    }

    async fn pods_stats(
        &self,
        sources: Vec<SandboxStatsSource>,
    ) -> Result<Vec<cri::PodSandboxStats>, ContainerError> {
        let reads: Vec<(Option<String>, Option<i32>)> = sources
            .iter()
            .map(|s| (s.cgroup.clone(), s.netns_pid))
            .collect();
        let samples: Vec<(Option<Sample>, Option<cri::NetworkUsage>)> = blocking(move || {
            reads
                .iter()
                .map(|(cgroup, pid)| (cgroup.as_deref().map(read_cgroup), pid.and_then(network)))
                .collect()
        })
        .await?;
        let mut out = Vec::with_capacity(sources.len());
        for (source, (sample, network)) in sources.into_iter().zip(samples) {
            let id = source.attributes.id.clone();
            let running: Vec<Arc<Container>> = {
                let mut running: Vec<Arc<Container>> = self
                    .containers
                    .lock()
                    .values()
                    .filter(|c| c.sandbox_id == id && c.snapshot().state == State::Running)
                    .cloned()
                    .collect();
                running.sort_by_key(|c| c.created_at);
                running
            };
            let containers = self.containers_stats(running).await?;
            out.push(cri::PodSandboxStats {
                attributes: Some(source.attributes),
                linux: Some(cri::LinuxPodSandboxStats {
                    cpu: sample.as_ref().and_then(|s| self.cpu(&id, s)),
                    memory: sample.as_ref().and_then(memory),
                    network,
                    process: sample.as_ref().and_then(|s| {
                        Some(cri::ProcessUsage {
                            timestamp: s.at,
                            process_count: value(s.usage.pids?),
                        })
                    }),
                    containers,
                    io: None,
                }),
                windows: None,
            });
        }
        Ok(out)
    }
}

fn memory(sample: &Sample) -> Option<cri::MemoryUsage> {
    let m = sample.usage.memory.as_ref()?;
    Some(cri::MemoryUsage {
        timestamp: sample.at,
        working_set_bytes: value(m.working_set_bytes),
        available_bytes: m.available_bytes().and_then(value),
        usage_bytes: value(m.usage_bytes),
        rss_bytes: value(m.rss_bytes),
        page_faults: value(m.page_faults),
        major_page_faults: value(m.major_page_faults),
        psi: None,
    })
}

/// The pod namespace's interfaces but loopback; eth0 is the default one.
/// Blocking.
fn network(pid: i32) -> Option<cri::NetworkUsage> {
    let interfaces = match netdev::read(pid) {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!(pid, error = %e, "reading pod network counters");
            return None;
        }
    };
    let interfaces: Vec<cri::NetworkInterfaceUsage> = interfaces
        .into_iter()
        .filter(|i| i.name != "lo")
        .map(|i| cri::NetworkInterfaceUsage {
            name: i.name,
            rx_bytes: value(i.rx_bytes),
            rx_errors: value(i.rx_errors),
            tx_bytes: value(i.tx_bytes),
            tx_errors: value(i.tx_errors),
        })
        .collect();
    Some(cri::NetworkUsage {
        timestamp: now_ns(),
        default_interface: interfaces.iter().find(|i| i.name == POD_INTERFACE).cloned(),
        interfaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_are_the_rate_between_two_samples() {
        let rates = CpuRates::default();
        assert_eq!(rates.rate("c", 1_000_000_000, 10_000_000_000), 0);
        // Half a core over two seconds.
        assert_eq!(rates.rate("c", 2_000_000_000, 12_000_000_000), 500_000_000);
        // No time passed, or a counter that went back: no rate.
        assert_eq!(rates.rate("c", 3_000_000_000, 12_000_000_000), 0);
        assert_eq!(rates.rate("c", 5, 13_000_000_000), 0);
        rates.forget("c");
        assert_eq!(rates.rate("c", 10, 14_000_000_000), 0);
        rates.retain(|_| false);
        assert!(rates.samples.lock().is_empty());
    }
}

//! `/stats/summary` in the kubelet's JSON shape (stats/v1alpha1 Summary),
//! as metrics-server and `kubectl get --raw .../proxy/stats/summary` read
//! it: the node's CPU, memory and root filesystem from the kernel (root
//! cgroup, /proc/meminfo, statvfs of the root dir), the pods and their
//! containers from the runtime's ListPodSandboxStats.

use std::sync::Mutex;
use std::time::Duration;

use http::{Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::{Body, Server, json as reply, text};
use crate::cri::api::v1;

const TIMEOUT: Duration = Duration::from_secs(15);

/// The last node CPU sample, for usageNanoCores (a rate needs two).
#[derive(Default)]
pub struct CpuSampler {
    last: Mutex<Option<(i128, u64)>>,
}

impl CpuSampler {
    /// usageNanoCores since the previous call, None on the first.
    fn rate(&self, now_ns: i128, usage_ns: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let rate = last.and_then(|(t, u)| {
            let dt = now_ns - t;
            (dt > 0 && usage_ns >= u).then(|| ((usage_ns - u) as i128 * 1_000_000_000 / dt) as u64)
        });
        *last = Some((now_ns, usage_ns));
        rate
    }
}

fn time(ns: i64) -> Value {
    Timestamp::from_nanosecond(ns as i128)
        .map(|t| json!(t.to_string()))
        .unwrap_or(Value::Null)
}

fn now() -> (Timestamp, Value) {
    let t = Timestamp::now();
    (t, json!(t.to_string()))
}

/// The node's CPU time in nanoseconds: the root cgroup's (v2), else
/// /proc/stat's non-idle jiffies.
pub fn node_cpu_ns() -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string("/sys/fs/cgroup/cpu.stat")
        && let Some(us) = s
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(us * 1000);
    }
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system (idle) (iowait) irq softirq steal; USER_HZ is 100.
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
    Some(busy * 10_000_000)
}

fn meminfo(field: &str) -> Option<u64> {
    crate::node::machine::meminfo_kib(field.trim_end_matches(':')).map(|k| k * 1024)
}

/// The node's memory working set: used less inactive file pages, as
/// cAdvisor counts it for the root cgroup.
pub fn node_working_set_bytes() -> u64 {
    let total = meminfo("MemTotal:").unwrap_or(0);
    let free = meminfo("MemFree:").unwrap_or(0);
    total
        .saturating_sub(free)
        .saturating_sub(meminfo("Inactive(file):").unwrap_or(0))
}

/// Every pod's stats from the runtime (ListPodSandboxStats).
pub async fn sandbox_stats(server: &Server) -> Result<Vec<v1::PodSandboxStats>, String> {
    let call = server
        .runtime
        .list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest { filter: None });
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(r)) => Ok(r.stats),
        Ok(Err(e)) => Err(format!("ListPodSandboxStats: {e}")),
        Err(_) => Err("ListPodSandboxStats: timed out".into()),
    }
}

fn node_memory(ts: &Value) -> Value {
    let total = meminfo("MemTotal:").unwrap_or(0);
    let free = meminfo("MemFree:").unwrap_or(0);
    let available = meminfo("MemAvailable:").unwrap_or(free);
    let usage = total.saturating_sub(free);
    let inactive_file = meminfo("Inactive(file):").unwrap_or(0);
    json!({
        "time": ts,
        "availableBytes": available,
        "usageBytes": usage,
        "workingSetBytes": usage.saturating_sub(inactive_file),
        "rssBytes": meminfo("AnonPages:").unwrap_or(0),
        "pageFaults": 0,
        "majorPageFaults": 0,
    })
}

fn fs_stats(path: &std::path::Path, ts: &Value) -> Value {
    // The root dir may not exist yet: its nearest existing parent's disk.
    let mut p = path.to_path_buf();
    while !p.exists() && p.pop() {}
    match nix::sys::statvfs::statvfs(&p) {
        Ok(s) => {
            let frag = s.fragment_size();
            let capacity = s.blocks() * frag;
            let available = s.blocks_available() * frag;
            let free = s.blocks_free() * frag;
            json!({
                "time": ts,
                "availableBytes": available,
                "capacityBytes": capacity,
                "usedBytes": capacity.saturating_sub(free),
                "inodesFree": s.files_free(),
                "inodes": s.files(),
                "inodesUsed": s.files().saturating_sub(s.files_free()),
            })
        }
        Err(_) => json!({"time": ts}),
    }
}

fn cpu(c: &Option<v1::CpuUsage>) -> Value {
    match c {
        Some(c) => json!({
            "time": time(c.timestamp),
            "usageNanoCores": c.usage_nano_cores.as_ref().map(|v| v.value),
            "usageCoreNanoSeconds": c.usage_core_nano_seconds.as_ref().map(|v| v.value),
        }),
        None => Value::Null,
    }
}

fn memory(m: &Option<v1::MemoryUsage>) -> Value {
    let Some(m) = m else { return Value::Null };
    let v = |x: &Option<v1::UInt64Value>| x.as_ref().map(|v| v.value);
    json!({
        "time": time(m.timestamp),
        "availableBytes": v(&m.available_bytes),
        "usageBytes": v(&m.usage_bytes),
        "workingSetBytes": v(&m.working_set_bytes),
        "rssBytes": v(&m.rss_bytes),
        "pageFaults": v(&m.page_faults),
        "majorPageFaults": v(&m.major_page_faults),
    })
}

fn interface(i: &v1::NetworkInterfaceUsage) -> Value {
    let v = |x: &Option<v1::UInt64Value>| x.as_ref().map(|v| v.value);
    json!({
        "name": i.name,
        "rxBytes": v(&i.rx_bytes),
        "rxErrors": v(&i.rx_errors),
        "txBytes": v(&i.tx_bytes),
        "txErrors": v(&i.tx_errors),
    })
}

fn network(n: &Option<v1::NetworkUsage>) -> Value {
    let Some(n) = n else { return Value::Null };
    let mut out = n
        .default_interface
        .as_ref()
        .map(interface)
        .unwrap_or_else(|| json!({}));
    out["time"] = time(n.timestamp);
    out["interfaces"] = n.interfaces.iter().map(interface).collect();
    out
}

fn container(c: &v1::ContainerStats) -> Value {
    let a = c.attributes.clone().unwrap_or_default();
    let name = a.metadata.map(|m| m.name).unwrap_or_default();
    let rootfs = c.writable_layer.as_ref().map(|w| {
        json!({
            "time": time(w.timestamp),
            "usedBytes": w.used_bytes.as_ref().map(|v| v.value),
            "inodesUsed": w.inodes_used.as_ref().map(|v| v.value),
        })
    });
    json!({
        "name": name,
        "startTime": Value::Null,
        "cpu": cpu(&c.cpu),
        "memory": memory(&c.memory),
        "rootfs": rootfs,
    })
}

fn pod(p: &v1::PodSandboxStats) -> Option<Value> {
    let a = p.attributes.clone()?;
    let m = a.metadata?;
    let linux = p.linux.clone().unwrap_or_default();
    let used: u64 = linux
        .containers
        .iter()
        .filter_map(|c| {
            c.writable_layer
                .as_ref()?
                .used_bytes
                .as_ref()
                .map(|v| v.value)
        })
        .sum();
    Some(json!({
        "podRef": {"name": m.name, "namespace": m.namespace, "uid": m.uid},
        "startTime": Value::Null,
        "containers": linux.containers.iter().map(container).collect::<Vec<_>>(),
        "cpu": cpu(&linux.cpu),
        "memory": memory(&linux.memory),
        "network": network(&linux.network),
        "volume": [],
        "ephemeral-storage": {"usedBytes": used},
        "process_stats": {"process_count": linux.process.as_ref()
            .and_then(|p| p.process_count.as_ref()).map(|v| v.value)},
    }))
}

pub async fn summary(server: &Server) -> Response<Body> {
    let pods = match sandbox_stats(server).await {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let root = server.config.root_dir.clone();
    let (stamp, ts) = now();
    let cpu_ns = node_cpu_ns();
    let nano_cores = cpu_ns.and_then(|u| server.node_cpu.rate(stamp.as_nanosecond(), u));
    let node = json!({
        "nodeName": server.node_name,
        "systemContainers": [],
        "startTime": ts,
        "cpu": {"time": ts, "usageNanoCores": nano_cores, "usageCoreNanoSeconds": cpu_ns},
        "memory": node_memory(&ts),
        "fs": fs_stats(&root, &ts),
        "runtime": {"imageFs": fs_stats(std::path::Path::new("/var/lib/containerd"), &ts)},
    });
    let pods: Vec<Value> = pods.iter().filter_map(pod).collect();
    reply(StatusCode::OK, &json!({"node": node, "pods": pods}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_need_two_samples() {
        let s = CpuSampler::default();
        assert_eq!(s.rate(0, 0), None);
        // Half a core for a second.
        assert_eq!(s.rate(1_000_000_000, 500_000_000), Some(500_000_000));
        assert!(node_cpu_ns().is_some_and(|n| n > 0));
        // /proc/meminfo's names, given with or without the colon.
        assert!(meminfo("MemTotal:").is_some_and(|b| b > 0));
        assert!(node_working_set_bytes() > 0);
    }
}

//! `/metrics`: the agent's own figures. kubelet's names where deckhand has
//! the same thing (running pods and containers counted from the runtime at
//! scrape time, pod start and relist durations, the node name), and the
//! process_* metrics every Prometheus client library exports, read from
//! /proc/self.

use std::time::Duration;

use http::Response;
use prometheus_client::registry::Registry;

use super::{Body, Server, counter, exposition, gauge, one_counter, one_gauge, recorders, set};
use crate::cri::api::v1;

const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn metrics(server: &Server) -> Response<Body> {
    let mut reg = Registry::default();
    let node = gauge(
        &mut reg,
        "kubelet_node_name",
        "The node's name. The count is always 1.",
    );
    set(&node, vec![("node", server.node_name.clone())], 1.0);
    let r = recorders();
    reg.register(
        "kubelet_pod_start_duration_seconds",
        "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
        r.pod_start.clone(),
    );
    reg.register(
        "kubelet_pleg_relist_duration_seconds",
        "Duration in seconds for relisting pods in PLEG.",
        r.pleg_relist.clone(),
    );
    let containers = gauge(
        &mut reg,
        "kubelet_running_containers",
        "Number of containers currently running",
    );
    let errors = counter(
        &mut reg,
        "kubelet_runtime_operations_errors",
        "Cumulative number of runtime operation errors by operation type.",
    );
    let runtime = server.runtime.as_ref();
    match tokio::time::timeout(
        TIMEOUT,
        runtime.list_pod_sandbox(v1::ListPodSandboxRequest { filter: None }),
    )
    .await
    {
        Ok(Ok(l)) => {
            let ready = l
                .items
                .iter()
                .filter(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
                .count();
            one_gauge(
                &mut reg,
                "kubelet_running_pods",
                "Number of pods that have a running pod sandbox",
                ready as f64,
            );
        }
        _ => super::count(
            &errors,
            vec![("operation_type", "list_podsandbox".into())],
            1.0,
        ),
    }
    match tokio::time::timeout(
        TIMEOUT,
        runtime.list_containers(v1::ListContainersRequest { filter: None }),
    )
    .await
    {
        Ok(Ok(l)) => {
            for (state, name) in [
                (v1::ContainerState::ContainerCreated, "created"),
                (v1::ContainerState::ContainerRunning, "running"),
                (v1::ContainerState::ContainerExited, "exited"),
                (v1::ContainerState::ContainerUnknown, "unknown"),
            ] {
                let n = l
                    .containers
                    .iter()
                    .filter(|c| c.state == state as i32)
                    .count();
                set(
                    &containers,
                    vec![("container_state", name.to_string())],
                    n as f64,
                );
            }
        }
        _ => super::count(
            &errors,
            vec![("operation_type", "list_containers".into())],
            1.0,
        ),
    }
    process(&mut reg);
    exposition(&reg)
}

/// The process_* metrics of the Prometheus client libraries, plus the
/// tokio runtime's figures standing in for go_goroutines and go_threads.
fn process(reg: &mut Registry) {
    let p = ProcSelf::read();
    let g = |reg: &mut Registry, name: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            one_gauge(reg, name, help, v);
        }
    };
    if let Some(cpu) = p.cpu_seconds {
        one_counter(
            reg,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            cpu,
        );
    }
    g(
        reg,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        p.rss_bytes,
    );
    g(
        reg,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        p.vsize_bytes,
    );
    g(
        reg,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds,
    );
    g(
        reg,
        "process_open_fds",
        "Number of open file descriptors.",
        p.open_fds,
    );
    g(
        reg,
        "process_max_fds",
        "Maximum number of open file descriptors.",
        p.max_fds,
    );
    g(
        reg,
        "process_threads",
        "Number of OS threads in the process.",
        p.threads,
    );
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        let m = h.metrics();
        g(
            reg,
            "tokio_alive_tasks",
            "Number of tokio tasks alive (the counterpart of go_goroutines).",
            Some(m.num_alive_tasks() as f64),
        );
        g(
            reg,
            "tokio_workers",
            "Number of tokio worker threads (the counterpart of go_threads).",
            Some(m.num_workers() as f64),
        );
    }
}

/// What /proc/self tells.
#[derive(Debug, Default)]
pub struct ProcSelf {
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<f64>,
    pub vsize_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub threads: Option<f64>,
}

/// USER_HZ, as the kernel reports times in /proc (100 on every Linux port
/// deckhand runs on).
const CLOCK_TICKS: f64 = 100.0;

impl ProcSelf {
    pub fn read() -> Self {
        let mut out = Self::default();
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as f64;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(f) = stat_fields(&stat)
        {
            // Fields after the command: state is index 0 (field 3).
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            if let (Some(u), Some(s)) = (num(11), num(12)) {
                out.cpu_seconds = Some((u + s) / CLOCK_TICKS);
            }
            out.threads = num(17);
            out.vsize_bytes = num(20);
            out.rss_bytes = num(21).map(|p| p * page);
            if let (Some(start), Some(boot)) = (num(19), boot_time()) {
                out.start_time_seconds = Some(boot + start / CLOCK_TICKS);
            }
        }
        out.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        out.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse::<f64>().ok())
            });
        out
    }
}

/// /proc/<pid>/stat's fields after `(comm)` (which may hold spaces).
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let p = ProcSelf::read();
        assert!(p.rss_bytes.is_some_and(|v| v > 0.0), "{p:?}");
        assert!(p.open_fds.is_some_and(|v| v >= 3.0), "{p:?}");
        assert!(p.threads.is_some_and(|v| v >= 1.0), "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = p.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        let f = stat_fields("1 (a b) S 0 1").unwrap();
        assert_eq!(f, ["S", "0", "1"]);
    }
}

//! `/metrics/cadvisor`: cAdvisor's container metrics as kubelet serves
//! them, with cAdvisor's labels (`container`, `id` = the cgroup path,
//! `image`, `name` = the runtime's id, `namespace`, `pod`, and `cpu`,
//! `interface` or `device` where cAdvisor has them). The figures come from
//! ListPodSandboxStats; the root cgroup (`id="/"`) is the node.

use std::collections::HashMap;
use std::time::Duration;

use http::Response;
use prometheus_client::registry::Registry;

use super::cgroups::{CgroupPaths, hierarchy_root};
use super::resource::{cpu_seconds, working_set};
use super::{
    Body, CounterFamily, GaugeFamily, Labels, Server, count, counter, exposition, gauge, one_gauge,
    set,
};
use crate::cri::api::v1;
use crate::node::server::stats;

const TIMEOUT: Duration = Duration::from_secs(10);

struct Families {
    cpu: CounterFamily,
    mem_usage: GaugeFamily,
    mem_ws: GaugeFamily,
    mem_rss: GaugeFamily,
    start: GaugeFamily,
    rx_bytes: CounterFamily,
    rx_errors: CounterFamily,
    tx_bytes: CounterFamily,
    tx_errors: CounterFamily,
    fs_usage: GaugeFamily,
    fs_inodes: GaugeFamily,
}

impl Families {
    fn new(reg: &mut Registry) -> Self {
        Self {
            cpu: counter(
                reg,
                "container_cpu_usage_seconds",
                "Cumulative cpu time consumed in seconds.",
            ),
            mem_usage: gauge(
                reg,
                "container_memory_usage_bytes",
                "Current memory usage in bytes, including all memory regardless of when it was accessed",
            ),
            mem_ws: gauge(
                reg,
                "container_memory_working_set_bytes",
                "Current working set in bytes.",
            ),
            mem_rss: gauge(reg, "container_memory_rss", "Size of RSS in bytes."),
            start: gauge(
                reg,
                "container_start_time_seconds",
                "Start time of the container since unix epoch in seconds.",
            ),
            rx_bytes: counter(
                reg,
                "container_network_receive_bytes",
                "Cumulative count of bytes received",
            ),
            rx_errors: counter(
                reg,
                "container_network_receive_errors",
                "Cumulative count of errors encountered while receiving",
            ),
            tx_bytes: counter(
                reg,
                "container_network_transmit_bytes",
                "Cumulative count of bytes transmitted",
            ),
            tx_errors: counter(
                reg,
                "container_network_transmit_errors",
                "Cumulative count of errors encountered while transmitting",
            ),
            fs_usage: gauge(
                reg,
                "container_fs_usage_bytes",
                "Number of bytes that are consumed by the container on this filesystem.",
            ),
            fs_inodes: gauge(
                reg,
                "container_fs_inodes_used",
                "Number of inodes used by the container on this filesystem.",
            ),
        }
    }
}

/// cAdvisor's label set, sorted by name as cAdvisor writes it.
fn labels(base: &Base, extra: Option<(&'static str, String)>) -> Labels {
    let mut l: Labels = vec![
        ("container", base.container.clone()),
        ("id", base.id.clone()),
        ("image", base.image.clone()),
        ("name", base.name.clone()),
        ("namespace", base.namespace.clone()),
        ("pod", base.pod.clone()),
    ];
    l.extend(extra);
    l.sort_by_key(|(k, _)| *k);
    l
}

#[derive(Clone, Default)]
struct Base {
    container: String,
    id: String,
    image: String,
    name: String,
    namespace: String,
    pod: String,
}

fn u(v: &Option<v1::UInt64Value>) -> Option<f64> {
    v.as_ref().map(|v| v.value as f64)
}

fn memory(f: &Families, base: &Base, m: &Option<v1::MemoryUsage>) {
    let Some(m) = m else { return };
    if let Some(v) = u(&m.usage_bytes) {
        set(&f.mem_usage, labels(base, None), v);
    }
    if let Some(v) = working_set(&Some(*m)) {
        set(&f.mem_ws, labels(base, None), v);
    }
    if let Some(v) = u(&m.rss_bytes) {
        set(&f.mem_rss, labels(base, None), v);
    }
}

fn network(f: &Families, base: &Base, n: &Option<v1::NetworkUsage>) {
    let Some(n) = n else { return };
    let mut seen = std::collections::HashSet::new();
    for i in n.default_interface.iter().chain(n.interfaces.iter()) {
        if !seen.insert(i.name.clone()) {
            continue;
        }
        let l = || labels(base, Some(("interface", i.name.clone())));
        for (fam, v) in [
            (&f.rx_bytes, &i.rx_bytes),
            (&f.rx_errors, &i.rx_errors),
            (&f.tx_bytes, &i.tx_bytes),
            (&f.tx_errors, &i.tx_errors),
        ] {
            if let Some(v) = u(v) {
                count(fam, l(), v);
            }
        }
    }
}

pub async fn metrics(server: &Server) -> Response<Body> {
    let mut reg = Registry::default();
    let f = Families::new(&mut reg);
    let root = Base {
        id: "/".into(),
        ..Default::default()
    };
    if let Some(ns) = stats::node_cpu_ns() {
        count(
            &f.cpu,
            labels(&root, Some(("cpu", "total".into()))),
            ns as f64 / 1e9,
        );
    }
    set(
        &f.mem_ws,
        labels(&root, None),
        stats::node_working_set_bytes() as f64,
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    one_gauge(
        &mut reg,
        "machine_cpu_cores",
        "Number of logical CPU cores.",
        cores as f64,
    );
    if let Some(kib) = crate::node::machine::meminfo_kib("MemTotal") {
        one_gauge(
            &mut reg,
            "machine_memory_bytes",
            "Amount of memory installed on the machine.",
            (kib * 1024) as f64,
        );
    }

    let pods = match stats::sandbox_stats(server).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "cadvisor metrics");
            return exposition(&reg);
        }
    };
    // Images and start times are not in the stats: one ListContainers.
    let listed = tokio::time::timeout(
        TIMEOUT,
        server
            .runtime
            .list_containers(v1::ListContainersRequest { filter: None }),
    )
    .await;
    let containers: HashMap<String, v1::Container> = match listed {
        Ok(Ok(l)) => l
            .containers
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect(),
        _ => HashMap::new(),
    };
    let paths = tokio::task::spawn_blocking(|| CgroupPaths::scan(hierarchy_root()))
        .await
        .unwrap_or_default();

    for p in &pods {
        let Some(attrs) = p.attributes.as_ref() else {
            continue;
        };
        let Some(m) = attrs.metadata.as_ref() else {
            continue;
        };
        let linux = p.linux.clone().unwrap_or_default();
        let pod_id = paths
            .pods
            .get(&m.uid)
            .cloned()
            .or_else(|| paths.containers.get(&attrs.id).cloned())
            .unwrap_or_default();
        // The pod's cgroup: its totals and its network, as cAdvisor reports
        // the sandbox's.
        let pod_base = Base {
            container: "POD".into(),
            id: pod_id,
            name: attrs.id.clone(),
            namespace: m.namespace.clone(),
            pod: m.name.clone(),
            ..Default::default()
        };
        network(&f, &pod_base, &linux.network);
        let pod_total = Base {
            container: String::new(),
            ..pod_base.clone()
        };
        if let Some(v) = cpu_seconds(&linux.cpu) {
            count(&f.cpu, labels(&pod_total, Some(("cpu", "total".into()))), v);
        }
        memory(&f, &pod_total, &linux.memory);

        for c in &linux.containers {
            let Some(ca) = c.attributes.as_ref() else {
                continue;
            };
            let listed = containers.get(&ca.id);
            let base = Base {
                container: ca
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                id: paths.containers.get(&ca.id).cloned().unwrap_or_default(),
                image: listed
                    .and_then(|c| c.image.as_ref())
                    .map(|i| i.image.clone())
                    .filter(|i| !i.is_empty())
                    .or_else(|| listed.map(|c| c.image_ref.clone()))
                    .unwrap_or_default(),
                name: ca.id.clone(),
                namespace: m.namespace.clone(),
                pod: m.name.clone(),
            };
            if let Some(v) = cpu_seconds(&c.cpu) {
                count(&f.cpu, labels(&base, Some(("cpu", "total".into()))), v);
            }
            memory(&f, &base, &c.memory);
            if let Some(l) = listed.filter(|l| l.created_at > 0) {
                set(&f.start, labels(&base, None), l.created_at as f64 / 1e9);
            }
            if let Some(w) = &c.writable_layer {
                let device = w
                    .fs_id
                    .as_ref()
                    .map(|f| f.mountpoint.clone())
                    .unwrap_or_default();
                if let Some(v) = u(&w.used_bytes) {
                    set(
                        &f.fs_usage,
                        labels(&base, Some(("device", device.clone()))),
                        v,
                    );
                }
                if let Some(v) = u(&w.inodes_used) {
                    set(&f.fs_inodes, labels(&base, Some(("device", device))), v);
                }
            }
        }
    }
    exposition(&reg)
}

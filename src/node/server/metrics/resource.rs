//! `/metrics/resource`: kubelet's resource metrics endpoint, what
//! metrics-server scrapes: cumulative CPU seconds and the memory working
//! set of the node, each pod and each container (from the runtime's
//! ListPodSandboxStats), and `scrape_error` when the runtime did not answer.

use http::Response;
use prometheus_client::registry::Registry;

use super::{Body, Labels, Server, count, counter, exposition, gauge, one_counter, one_gauge, set};
use crate::cri::api::v1;
use crate::node::server::stats;

pub async fn metrics(server: &Server) -> Response<Body> {
    let mut reg = Registry::default();
    if let Some(ns) = stats::node_cpu_ns() {
        one_counter(
            &mut reg,
            "node_cpu_usage_seconds",
            "Cumulative cpu time consumed by the node in core-seconds",
            ns as f64 / 1e9,
        );
    }
    one_gauge(
        &mut reg,
        "node_memory_working_set_bytes",
        "Current working set of the node in bytes",
        stats::node_working_set_bytes() as f64,
    );
    let pod_cpu = counter(
        &mut reg,
        "pod_cpu_usage_seconds",
        "Cumulative cpu time consumed by the pod in core-seconds",
    );
    let pod_mem = gauge(
        &mut reg,
        "pod_memory_working_set_bytes",
        "Current working set of the pod in bytes",
    );
    let ctr_cpu = counter(
        &mut reg,
        "container_cpu_usage_seconds",
        "Cumulative cpu time consumed by the container in core-seconds",
    );
    let ctr_mem = gauge(
        &mut reg,
        "container_memory_working_set_bytes",
        "Current working set of the container in bytes",
    );
    let scraped = stats::sandbox_stats(server).await;
    one_gauge(
        &mut reg,
        "scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
        if scraped.is_ok() { 0.0 } else { 1.0 },
    );
    let pods = match scraped {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "resource metrics");
            return exposition(&reg);
        }
    };
    for p in &pods {
        let Some(m) = p.attributes.as_ref().and_then(|a| a.metadata.as_ref()) else {
            continue;
        };
        let linux = p.linux.clone().unwrap_or_default();
        let pod_labels: Labels = vec![("namespace", m.namespace.clone()), ("pod", m.name.clone())];
        if let Some(v) = cpu_seconds(&linux.cpu) {
            count(&pod_cpu, pod_labels.clone(), v);
        }
        if let Some(v) = working_set(&linux.memory) {
            set(&pod_mem, pod_labels.clone(), v);
        }
        for c in &linux.containers {
            let name = c
                .attributes
                .as_ref()
                .and_then(|a| a.metadata.as_ref())
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let mut labels: Labels = vec![("container", name)];
            labels.extend(pod_labels.iter().cloned());
            if let Some(v) = cpu_seconds(&c.cpu) {
                count(&ctr_cpu, labels.clone(), v);
            }
            if let Some(v) = working_set(&c.memory) {
                set(&ctr_mem, labels, v);
            }
        }
    }
    exposition(&reg)
}

pub fn cpu_seconds(c: &Option<v1::CpuUsage>) -> Option<f64> {
    c.as_ref()?
        .usage_core_nano_seconds
        .as_ref()
        .map(|v| v.value as f64 / 1e9)
}

pub fn working_set(m: &Option<v1::MemoryUsage>) -> Option<f64> {
    m.as_ref()?
        .working_set_bytes
        .as_ref()
        .map(|v| v.value as f64)
}

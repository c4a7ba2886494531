//! The kubelet's Prometheus endpoints, in the text exposition format
//! written by the `prometheus-client` crate:
//!
//! - `/metrics` (`agent`): the agent's own figures under kubelet's names
//!   (kubelet_running_pods, kubelet_pod_start_duration_seconds, ...) and
//!   the process_* ones;
//! - `/metrics/resource` (`resource`): what metrics-server reads;
//! - `/metrics/cadvisor` (`cadvisor`): cAdvisor's container_* names and labels;
//! - `/metrics/probes`: prober_probe_total.
//!
//! The figures of the last three come from the runtime's
//! ListPodSandboxStats (the same call /stats/summary makes). The recorders
//! at the bottom (`observe_*`) are what the pod workers, the relist loop
//! and the probers call; they keep process-wide histograms and counters.

pub mod agent;
pub mod cadvisor;
pub mod cgroups;
pub mod resource;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{Body, Server, text};

/// A label set: (name, value) pairs in the order they are written.
pub type Labels = Vec<(&'static str, String)>;
pub type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
pub type CounterFamily = Family<Labels, Counter<f64, AtomicU64>>;

/// The OpenMetrics text format that prometheus-client writes (Prometheus
/// and every scraper that speaks the 0.0.4 text format read it).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The encoder ends each help text with a full stop of its own.
fn help(h: &str) -> &str {
    h.trim_end_matches('.')
}

/// Registers a gauge family named `name` in `reg` and returns it.
pub fn gauge(reg: &mut Registry, name: &str, help_text: &str) -> GaugeFamily {
    let f = GaugeFamily::default();
    reg.register(name, help(help_text), f.clone());
    f
}

/// Registers an unlabelled gauge holding `v`.
pub fn one_gauge(reg: &mut Registry, name: &str, help_text: &str, v: f64) {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(v);
    reg.register(name, help(help_text), g);
}

/// Registers an unlabelled counter holding `v` (named without `_total`).
pub fn one_counter(reg: &mut Registry, name: &str, help_text: &str, v: f64) {
    let c = Counter::<f64, AtomicU64>::default();
    c.inc_by(v);
    reg.register(name, help(help_text), c);
}

/// Registers a counter family; `name` is without `_total` (the encoder
/// adds it).
pub fn counter(reg: &mut Registry, name: &str, help_text: &str) -> CounterFamily {
    let f = CounterFamily::default();
    reg.register(name, help(help_text), f.clone());
    f
}

pub fn set(f: &GaugeFamily, labels: Labels, v: f64) {
    f.get_or_create(&labels).set(v);
}

pub fn count(f: &CounterFamily, labels: Labels, v: f64) {
    f.get_or_create(&labels).inc_by(v);
}

/// `reg` in the text format, as a response.
pub fn exposition(reg: &Registry) -> Response<Body> {
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, reg) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        );
    }
    let mut r = Response::new(
        Full::new(Bytes::from(out))
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed(),
    );
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

/// `/metrics[/...]`.
pub async fn handle(server: &Server, sub: Option<&str>) -> Response<Body> {
    match sub {
        None | Some("") => agent::metrics(server).await,
        Some("resource") => resource::metrics(server).await,
        Some("cadvisor") => cadvisor::metrics(server).await,
        Some("probes") => {
            let mut reg = Registry::default();
            reg.register(
                "prober_probe",
                "Cumulative number of a liveness, readiness or startup probe for a container by result.",
                recorders().probes.clone(),
            );
            exposition(&reg)
        }
        Some(_) => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The process-wide recorders.
pub struct Recorders {
    pub pod_start: Histogram,
    pub pleg_relist: Histogram,
    pub probes: CounterFamily,
    /// Pods seen but not yet running: when they were first reported.
    pending: Mutex<HashMap<String, Instant>>,
}

/// Pods waiting to run that are remembered for the start histogram.
const MAX_PENDING: usize = 10_000;

pub fn recorders() -> &'static Recorders {
    static R: OnceLock<Recorders> = OnceLock::new();
    R.get_or_init(|| Recorders {
        // kubelet's buckets for pod start (0.5 s .. 1 h).
        pod_start: Histogram::new([
            0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0,
            240.0, 300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
        ]),
        // The default Prometheus buckets, as kubelet's PLEG histogram has.
        pleg_relist: Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]),
        probes: CounterFamily::default(),
        pending: Mutex::new(HashMap::new()),
    })
}

/// A pod's status is being reported, going from `old` to `new` phase:
/// the first report starts its clock, the first `Running` stops it
/// (kubelet_pod_start_duration_seconds). A pod that runs by its first
/// report is timed from its creation, which for a scheduled pod is when
/// this node could first have seen it.
pub fn observe_pod_phase(
    pod: &k8s_openapi::api::core::v1::Pod,
    old: Option<&str>,
    new: Option<&str>,
) {
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let r = recorders();
    let mut pending = r.pending.lock().unwrap_or_else(|e| e.into_inner());
    match (old, new) {
        (Some("Running"), _) => {
            pending.remove(uid);
        }
        (_, Some("Running")) => {
            let since_first = pending.remove(uid).map(|t| t.elapsed().as_secs_f64());
            let since_created = || {
                let created = pod.metadata.creation_timestamp.as_ref()?.0;
                let d = k8s_openapi::jiff::Timestamp::now().duration_since(created);
                let secs = d.as_secs_f64();
                (0.0..3600.0).contains(&secs).then_some(secs)
            };
            if let Some(s) = since_first.or_else(since_created) {
                r.pod_start.observe(s);
            }
        }
        (_, Some("Pending") | None) => {
            if pending.len() < MAX_PENDING {
                pending.entry(uid.to_string()).or_insert_with(Instant::now);
            }
        }
        _ => {
            pending.remove(uid);
        }
    }
}

/// One relist of the runtime took `d`.
pub fn observe_pleg_relist(d: Duration) {
    recorders().pleg_relist.observe(d.as_secs_f64());
}

/// One probe ran: `kind` is liveness/readiness/startup, `ok` its outcome.
pub fn observe_probe(kind: &str, ok: bool, pod: &k8s_openapi::api::core::v1::Pod, container: &str) {
    let m = &pod.metadata;
    let labels: Labels = vec![
        ("probe_type", capitalized(kind)),
        (
            "result",
            if ok { "successful" } else { "failed" }.to_string(),
        ),
        ("container", container.to_string()),
        ("pod", m.name.clone().unwrap_or_default()),
        ("namespace", m.namespace.clone().unwrap_or_default()),
        ("pod_uid", m.uid.clone().unwrap_or_default()),
    ];
    recorders().probes.get_or_create(&labels).inc();
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_start_is_timed_from_the_first_report_to_running() {
        let count = || {
            let mut reg = Registry::default();
            reg.register("h", "", recorders().pod_start.clone());
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
            out.lines()
                .find_map(|l| l.strip_prefix("h_count "))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap()
        };
        let before = count();
        let pod = |uid: &str| {
            let mut p = k8s_openapi::api::core::v1::Pod::default();
            p.metadata.uid = Some(uid.into());
            p
        };
        observe_pod_phase(&pod("u1"), None, Some("Pending"));
        observe_pod_phase(&pod("u1"), Some("Pending"), Some("Pending"));
        observe_pod_phase(&pod("u1"), Some("Pending"), Some("Running"));
        // An adopted pod that is already running, of unknown age, is not timed.
        observe_pod_phase(&pod("u2"), Some("Running"), Some("Running"));
        observe_pod_phase(&pod("u3"), None, Some("Running"));
        assert_eq!(count(), before + 1);
        assert_eq!(capitalized("liveness"), "Liveness");
    }

    #[test]
    fn exposition_has_the_kubelet_names() {
        let mut reg = Registry::default();
        one_gauge(&mut reg, "kubelet_running_pods", "Number of pods.", 3.0);
        let c = counter(&mut reg, "container_cpu_usage_seconds", "CPU.");
        count(
            &c,
            vec![("container", "a".into()), ("pod", "p".into())],
            1.5,
        );
        let r = exposition(&reg);
        assert_eq!(r.status(), StatusCode::OK);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("kubelet_running_pods 3.0\n"), "{out}");
        assert!(
            out.contains("# HELP kubelet_running_pods Number of pods.\n"),
            "{out}"
        );
        assert!(
            out.contains("container_cpu_usage_seconds_total{container=\"a\",pod=\"p\"} 1.5"),
            "{out}"
        );
    }
}

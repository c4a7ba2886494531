//! `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics) for `kubectl top`,
//! served the way metrics-server serves it: each node's kubelet is asked
//! for `/stats/summary` through the apiserver's kubelet client (its
//! kubelet-client certificate, the node's InternalIP and kubelet port),
//! CPU is the rate between two cumulative samples (kept per node from the
//! previous request; a node seen for the first time is sampled twice, a
//! second apart) and memory is the working set. Also the group's
//! discovery: `/apis` gains metrics.k8s.io, and `/apis/metrics.k8s.io[/v1beta1]`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::apiserver::auth::Attributes;
use crate::apiserver::context::{Body, json as reply};
use crate::apiserver::error::ApiError;
use crate::apiserver::kubelet_proxy;
use crate::apiserver::selectors::LabelSelector;
use crate::apiserver::state::State;
use crate::apiserver::state::blocking;
use crate::apiserver::store::collection_prefix;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";
/// How long one kubelet may take to answer /stats/summary.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(15);
/// A previous sample older than this is not used for a rate.
const MAX_WINDOW: Duration = Duration::from_secs(120);
/// The gap between the two samples of a node seen for the first time.
const FIRST_WINDOW: Duration = Duration::from_secs(1);

/// One request on the group, parsed.
#[derive(Debug, PartialEq)]
pub enum MetricsRequest {
    /// `/apis` with the group added.
    GroupList,
    Group,
    ResourceList,
    Nodes {
        name: Option<String>,
    },
    Pods {
        namespace: String,
        name: Option<String>,
    },
}

impl MetricsRequest {
    /// The request `path` (no trailing slash) is for this group, or None.
    pub fn parse(method: &Method, path: &str) -> Option<Self> {
        if method != Method::GET {
            return None;
        }
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        Some(match segs.as_slice() {
            ["apis"] => Self::GroupList,
            ["apis", GROUP] => Self::Group,
            ["apis", GROUP, VERSION] => Self::ResourceList,
            ["apis", GROUP, VERSION, "nodes"] => Self::Nodes { name: None },
            ["apis", GROUP, VERSION, "nodes", n] => Self::Nodes {
                name: Some(n.to_string()),
            },
            ["apis", GROUP, VERSION, "pods"] => Self::Pods {
                namespace: String::new(),
                name: None,
            },
            ["apis", GROUP, VERSION, "namespaces", ns, "pods"] => Self::Pods {
                namespace: ns.to_string(),
                name: None,
            },
            ["apis", GROUP, VERSION, "namespaces", ns, "pods", n] => Self::Pods {
                namespace: ns.to_string(),
                name: Some(n.to_string()),
            },
            _ => return None,
        })
    }

    /// What to authorize (None: discovery, open to every user).
    pub fn attributes(&self) -> Option<Attributes<'_>> {
        let (resource, namespace, name) = match self {
            Self::Nodes { name } => ("nodes", "", name.as_deref()),
            Self::Pods { namespace, name } => ("pods", namespace.as_str(), name.as_deref()),
            _ => return None,
        };
        Some(Attributes {
            verb: if name.is_some() { "get" } else { "list" },
            group: GROUP,
            resource,
            subresource: "",
            namespace,
            name: name.unwrap_or(""),
        })
    }
}

fn group_entry() -> Value {
    let gv = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

fn resource_list() -> Value {
    let res = |name: &str, kind: &str, namespaced: bool| {
        json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
               "verbs": ["get", "list"]})
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
           "resources": [res("nodes", "NodeMetrics", false), res("pods", "PodMetrics", true)]})
}

/// Serves `req` (authorized already).
pub async fn serve(
    state: &Arc<State>,
    req: MetricsRequest,
    query: &HashMap<String, String>,
) -> Result<http::Response<Body>, ApiError> {
    let selector = LabelSelector::parse(query.get("labelSelector").map_or("", |s| s.as_str()))?;
    let body = match req {
        MetricsRequest::GroupList => {
            let mut list = crate::apiserver::discovery::api_group_list();
            if let Some(groups) = list["groups"].as_array_mut() {
                groups.push(group_entry());
            }
            list
        }
        MetricsRequest::Group => {
            let mut g = group_entry();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            g
        }
        MetricsRequest::ResourceList => resource_list(),
        MetricsRequest::Nodes { name } => {
            let nodes = list_objects(state, "nodes", "").await?;
            let mut items = Vec::new();
            for node in nodes
                .iter()
                .filter(|n| name_is(n, name.as_deref()))
                .filter(|n| selector.matches(n))
            {
                if let Some(sample) = usage(state, node).await {
                    items.push(node_metrics(node, &sample));
                }
            }
            return single_or_list(items, name.as_deref(), "nodes", "NodeMetricsList");
        }
        MetricsRequest::Pods { namespace, name } => {
            let pods = list_objects(state, "pods", &namespace).await?;
            let pods: Vec<&Value> = pods
                .iter()
                .filter(|p| name_is(p, name.as_deref()) && selector.matches(p))
                .collect();
            let mut by_node: HashMap<&str, Vec<&Value>> = HashMap::new();
            for p in pods {
                if let Some(n) = p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                    by_node.entry(n).or_default().push(p);
                }
            }
            let nodes = list_objects(state, "nodes", "").await?;
            let mut items = Vec::new();
            for node in &nodes {
                let node_name = node["metadata"]["name"].as_str().unwrap_or("");
                let Some(wanted) = by_node.get(node_name) else {
                    continue;
                };
                let Some(sample) = usage(state, node).await else {
                    continue;
                };
                for p in wanted {
                    if let Some(m) = pod_metrics(p, &sample) {
                        items.push(m);
                    }
                }
            }
            return single_or_list(items, name.as_deref(), "pods", "PodMetricsList");
        }
    };
    Ok(reply(StatusCode::OK, &body))
}

fn name_is(obj: &Value, name: Option<&str>) -> bool {
    name.is_none_or(|n| obj["metadata"]["name"] == n)
}

fn single_or_list(
    items: Vec<Value>,
    name: Option<&str>,
    resource: &str,
    kind: &str,
) -> Result<http::Response<Body>, ApiError> {
    match name {
        Some(n) => match items.into_iter().next() {
            Some(item) => Ok(reply(StatusCode::OK, &item)),
            None => Err(ApiError::not_found(GROUP, resource, n)),
        },
        None => Ok(reply(
            StatusCode::OK,
            &json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items}),
        )),
    }
}

async fn list_objects(
    state: &Arc<State>,
    resource: &'static str,
    namespace: &str,
) -> Result<Vec<Value>, ApiError> {
    let mut prefix = collection_prefix("", resource);
    if !namespace.is_empty() {
        prefix.push_str(namespace);
        prefix.push('/');
    }
    blocking(state, move |s| {
        let (_, items) = s.store.list(&prefix, None, usize::MAX)?;
        Ok(items.into_iter().map(|(_, v)| v).collect())
    })
    .await
}

/// Cumulative CPU (ns) and memory working set of one thing at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub cpu_ns: u64,
    pub memory: u64,
}

/// A node's /stats/summary, reduced: the node and every container by
/// (namespace, pod, container).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub node: Option<Reading>,
    pub containers: HashMap<(String, String, String), Reading>,
}

/// Reads the summary's JSON (stats/v1alpha1).
pub fn parse_summary(v: &Value) -> Summary {
    let reading = |o: &Value| -> Option<Reading> {
        Some(Reading {
            cpu_ns: o["cpu"]["usageCoreNanoSeconds"].as_u64()?,
            memory: o["memory"]["workingSetBytes"].as_u64().unwrap_or(0),
        })
    };
    let mut out = Summary {
        node: reading(&v["node"]),
        ..Default::default()
    };
    for p in v["pods"].as_array().into_iter().flatten() {
        let ns = p["podRef"]["namespace"].as_str().unwrap_or("").to_string();
        let pod = p["podRef"]["name"].as_str().unwrap_or("").to_string();
        for c in p["containers"].as_array().into_iter().flatten() {
            if let (Some(name), Some(r)) = (c["name"].as_str(), reading(c)) {
                out.containers
                    .insert((ns.clone(), pod.clone(), name.to_string()), r);
            }
        }
    }
    out
}

/// Two samples of a node, and what they make: nanocores and bytes.
pub struct Sample {
    pub time: Timestamp,
    pub window: Duration,
    pub node: Option<(u64, u64)>,
    pub containers: HashMap<(String, String, String), (u64, u64)>,
}

fn rate(old: &Reading, new: &Reading, window: Duration) -> (u64, u64) {
    let secs = window.as_secs_f64().max(1e-3);
    let cores = new.cpu_ns.saturating_sub(old.cpu_ns) as f64 / secs;
    (cores as u64, new.memory)
}

pub fn combine(old: &Summary, new: &Summary, window: Duration, time: Timestamp) -> Sample {
    Sample {
        time,
        window,
        node: match (&old.node, &new.node) {
            (Some(o), Some(n)) => Some(rate(o, n, window)),
            _ => None,
        },
        containers: new
            .containers
            .iter()
            .filter_map(|(k, n)| Some((k.clone(), rate(old.containers.get(k)?, n, window))))
            .collect(),
    }
}

/// The previous summary of each node, for the next rate.
fn previous() -> &'static Mutex<HashMap<String, (Instant, Summary)>> {
    static P: OnceLock<Mutex<HashMap<String, (Instant, Summary)>>> = OnceLock::new();
    P.get_or_init(Default::default)
}

/// The node's usage now, or None when its kubelet does not answer (as
/// metrics-server leaves such a node out).
async fn usage(state: &Arc<State>, node: &Value) -> Option<Sample> {
    let name = node["metadata"]["name"].as_str()?.to_string();
    let kept = previous()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .cloned()
        .filter(|(t, _)| t.elapsed() <= MAX_WINDOW);
    let (then, old) = match kept {
        Some(k) => k,
        None => {
            let first = scrape(state, node).await?;
            let t = Instant::now();
            tokio::time::sleep(FIRST_WINDOW).await;
            (t, first)
        }
    };
    let new = scrape(state, node).await?;
    let now = Instant::now();
    previous()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name, (now, new.clone()));
    Some(combine(&old, &new, now - then, Timestamp::now()))
}

async fn scrape(state: &Arc<State>, node: &Value) -> Option<Summary> {
    let name = node["metadata"]["name"].as_str().unwrap_or("");
    match tokio::time::timeout(SCRAPE_TIMEOUT, get_summary(state, node)).await {
        Ok(Ok(v)) => Some(parse_summary(&v)),
        Ok(Err(e)) => {
            tracing::warn!(node = %name, error = %e, "metrics: scraping the kubelet");
            None
        }
        Err(_) => {
            tracing::warn!(node = %name, "metrics: the kubelet's /stats/summary timed out");
            None
        }
    }
}

async fn get_summary(state: &Arc<State>, node: &Value) -> Result<Value, String> {
    let (host, port) =
        kubelet_proxy::kubelet_endpoint(node).ok_or("the node has no kubelet address")?;
    let mut sender = kubelet_proxy::connect(state, &host, port)
        .await
        .map_err(|e| e.to_string())?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let req = Request::get("/stats/summary")
        .header(http::header::HOST, authority)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

fn quantities(cpu_nanocores: u64, memory: u64) -> Value {
    json!({"cpu": format!("{cpu_nanocores}n"), "memory": format!("{}Ki", memory / 1024)})
}

fn meta(obj: &Value, time: &str) -> Value {
    let mut m = json!({"name": obj["metadata"]["name"], "creationTimestamp": time});
    if obj["metadata"]["namespace"].is_string() {
        m["namespace"] = obj["metadata"]["namespace"].clone();
    }
    if obj["metadata"]["labels"].is_object() {
        m["labels"] = obj["metadata"]["labels"].clone();
    }
    m
}

fn window(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

pub fn node_metrics(node: &Value, s: &Sample) -> Value {
    let t = s.time.to_string();
    let (cpu, mem) = s.node.unwrap_or((0, 0));
    json!({"kind": "NodeMetrics", "apiVersion": API_VERSION, "metadata": meta(node, &t),
           "timestamp": t, "window": window(s.window), "usage": quantities(cpu, mem)})
}

/// A pod's metrics, None when the node has none of its containers (not
/// running yet, or gone), as metrics-server leaves such pods out.
pub fn pod_metrics(pod: &Value, s: &Sample) -> Option<Value> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let mut containers: Vec<Value> = s
        .containers
        .iter()
        .filter(|((n, p, _), _)| n == ns && p == name)
        .map(|((_, _, c), (cpu, mem))| json!({"name": c, "usage": quantities(*cpu, *mem)}))
        .collect();
    if containers.is_empty() {
        return None;
    }
    containers.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let t = s.time.to_string();
    Some(
        json!({"kind": "PodMetrics", "apiVersion": API_VERSION, "metadata": meta(pod, &t),
                "timestamp": t, "window": window(s.window), "containers": containers}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_their_authorization() {
        let get = Method::GET;
        assert_eq!(
            MetricsRequest::parse(&get, "/apis"),
            Some(MetricsRequest::GroupList)
        );
        assert_eq!(MetricsRequest::parse(&Method::POST, "/apis"), None);
        assert_eq!(MetricsRequest::parse(&get, "/apis/apps/v1"), None);
        let r = MetricsRequest::parse(&get, "/apis/metrics.k8s.io/v1beta1/namespaces/d/pods/p")
            .unwrap();
        let a = r.attributes().unwrap();
        assert_eq!(
            (a.verb, a.group, a.resource, a.namespace, a.name),
            ("get", GROUP, "pods", "d", "p")
        );
        let r = MetricsRequest::parse(&get, "/apis/metrics.k8s.io/v1beta1/nodes").unwrap();
        assert_eq!(r.attributes().unwrap().verb, "list");
        assert!(MetricsRequest::Group.attributes().is_none());
    }

    #[test]
    fn rates_from_two_summaries() {
        let summary = |cpu: u64, mem: u64| {
            json!({"node": {"cpu": {"usageCoreNanoSeconds": cpu * 2}, "memory": {"workingSetBytes": mem}},
                   "pods": [{"podRef": {"namespace": "d", "name": "p"},
                             "containers": [{"name": "c", "cpu": {"usageCoreNanoSeconds": cpu},
                                             "memory": {"workingSetBytes": mem}}]}]})
        };
        let old = parse_summary(&summary(1_000_000_000, 1 << 20));
        let new = parse_summary(&summary(1_500_000_000, 2 << 20));
        let s = combine(&old, &new, Duration::from_secs(1), Timestamp::UNIX_EPOCH);
        assert_eq!(s.node, Some((1_000_000_000, 2 << 20)));
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}});
        let m = pod_metrics(&pod, &s).unwrap();
        assert_eq!(m["containers"][0]["usage"]["cpu"], "500000000n");
        assert_eq!(m["containers"][0]["usage"]["memory"], "2048Ki");
        assert_eq!(m["window"], "1.000s");
        let other = json!({"metadata": {"name": "q", "namespace": "d"}});
        assert!(pod_metrics(&other, &s).is_none());
        let n = node_metrics(&json!({"metadata": {"name": "n1"}}), &s);
        assert_eq!(n["usage"]["cpu"], "1000000000n");
    }
}

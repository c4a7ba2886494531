//! The node agent: pod start latency and the agent's own cost, for three
//! agents in the same run against the same (bundled) apiserver:
//!
//! - `deckhand node` with its in-process runtime (the fast path);
//! - `deckhand node` driving containerd's CRI plugin (the same agent, the
//!   stock runtime);
//! - the stock kubelet v1.36.2 of ../shared/k8s on containerd's CRI plugin
//!   (the peer a user would keep), skipped, saying so, without that folder.
//!
//!   hack/bench node [--samples N] [--pods N] [--only deckhand|deckhand-cri|kubelet] [--volume-samples N] [--probe-pods N]
//!
//! Per agent, one at a time (a kubelet removes every CRI sandbox it does not
//! know, and two agents would share two cores): the Node turns Ready; its
//! RSS and CPU idle with 0 pods; N single pods one after the other (created
//! in the apiserver -> Running seen by a watch); 10 pods, then RSS and CPU;
//! 100 pods created at once: p50/p99 and time until all are Running, then
//! RSS and CPU; N (50) pods one after the other that mount a configMap, a
//! secret and a projected service-account token: p50/p99; then M (100)
//! busybox pods each with an exec readiness probe and an http liveness
//! probe every 10 s: the agent's CPU and RSS over 30 s. Pods run the local
//! registry's pause image (present: pulled by a warm-up pod). Every batch
//! is deleted and its sandboxes gone before the next.
//!
//! The agent's process alone is measured: containerd and its shims are not
//! (for the in-process runtime, the per-sandbox infra processes are not
//! either: they are what a pause container is to the others).

mod common;

#[allow(dead_code)]
#[path = "../tests/common/stock.rs"]
mod stock;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{CONTAINERD_SOCKET, Stats, arg, ms};
use deckhand::cri::v1 as cri;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use stock::ControlPlane;

const NODE: &str = "bench-node";
const IMAGE: &str = "127.0.0.1:5000/pause:3.10";
const CGROUP_ROOT: &str = "/deckhand-bench-node";
/// containerd's CRI plugin takes its pod network from here.
const CONTAINERD_CNI_CONF: &str = "/etc/cni/net.d/05-deckhand-bench-node.conflist";
const IN_PROCESS_NAMESPACE: &str = "deckhand-bench-node";

/// Where the stock binaries are (what tests/common/stock.rs asks its parent).
pub fn stock_k8s_dir() -> PathBuf {
    std::env::var_os("DECKHAND_K8S_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/k8s"))
}

fn conflist(bridge: &str, subnet: &str, ipam: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("deckhand-bench-{bridge}"),
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "dataDir": ipam, "ranges": [[{"subnet": subnet}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
    .to_string()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    InProcess,
    DeckhandCri,
    Kubelet,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::InProcess => "deckhand",
            Kind::DeckhandCri => "deckhand-cri",
            Kind::Kubelet => "kubelet",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Kind::InProcess => "deckhand node (in-process runtime)",
            Kind::DeckhandCri => "deckhand node on containerd's CRI plugin",
            Kind::Kubelet => "stock kubelet v1.36.2 on containerd's CRI plugin",
        }
    }
}

/// One running agent; stopped, and what it made removed, on drop.
enum Agent {
    Deckhand {
        child: Child,
        dir: tempfile::TempDir,
    },
    Kubelet(Box<stock::StockKubelet>),
}

impl Agent {
    fn pid(&self) -> u32 {
        match self {
            Agent::Deckhand { child, .. } => child.id(),
            Agent::Kubelet(k) => k.pid().expect("kubelet running"),
        }
    }

    fn log(&self) -> String {
        match self {
            Agent::Deckhand { dir, .. } => stock::tail(&dir.path().join("node.log"), 30),
            Agent::Kubelet(k) => k.log_tail(),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Agent::Deckhand { child, .. } = self {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_deckhand(plane: &dyn ControlPlane, kind: Kind, cni_dir: &Path) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deckhand"));
    cmd.arg("node")
        .arg("--kubeconfig")
        .arg(plane.node_kubeconfig())
        .args(["--hostname-override", NODE, "--node-ip", "127.0.0.1"])
        .arg("--root-dir")
        .arg(dir.path().join("root"))
        .args(["--cgroup-root", CGROUP_ROOT, "--log-level", "warn"]);
    match kind {
        Kind::InProcess => {
            cmd.args(["--containerd-namespace", IN_PROCESS_NAMESPACE])
                .arg("--state-dir")
                .arg(dir.path().join("state"))
                .arg("--run-dir")
                .arg(dir.path().join("run"))
                .arg("--cni-conf-dir")
                .arg(cni_dir);
        }
        _ => {
            cmd.arg(format!(
                "--container-runtime-endpoint=unix://{CONTAINERD_SOCKET}"
            ));
        }
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start deckhand node");
    Agent::Deckhand { child, dir }
}

/// VmRSS in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let f = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after ')'.
    f(11) + f(12)
}

#[derive(Clone, Copy, Default)]
struct Cost {
    rss_kib: u64,
    /// Percent of one core over the window.
    cpu: f64,
}

/// After `settle`, the agent's CPU over `window` and its RSS at the end.
async fn cost(pid: u32, settle: Duration, window: Duration) -> Cost {
    tokio::time::sleep(settle).await;
    let ticks = cpu_ticks(pid);
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let used = (cpu_ticks(pid) - ticks) as f64
        / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
    Cost {
        rss_kib: rss_kib(pid),
        cpu: used / t.elapsed().as_secs_f64() * 100.0,
    }
}

/// What the bench's pods carry besides the pause container.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Plain,
    /// A configMap, a secret and the projected service-account token.
    Volumes,
    /// busybox serving HTTP, with an exec readiness probe and an http
    /// liveness probe, each every 10 s.
    Probes,
}

const BUSYBOX: &str = "127.0.0.1:5000/e2e-test-images/busybox:1.29-2";

fn shaped(name: &str, batch: &str, shape: Shape) -> Pod {
    let mut pod = pod(name, batch);
    let spec = pod.spec.as_mut().unwrap();
    match shape {
        Shape::Plain => {}
        Shape::Volumes => {
            *spec = serde_json::from_value(serde_json::json!({
                "nodeName": NODE,
                "enableServiceLinks": false,
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/config"},
                        {"name": "secret", "mountPath": "/secret"},
                        {"name": "token", "mountPath": "/token"}]}],
                "volumes": [
                    {"name": "config", "configMap": {"name": "bench-config"}},
                    {"name": "secret", "secret": {"secretName": "bench-secret"}},
                    {"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                        "path": "token", "expirationSeconds": 3600}}]}}]
            }))
            .unwrap();
        }
        Shape::Probes => {
            *spec = serde_json::from_value(serde_json::json!({
                "nodeName": NODE,
                "automountServiceAccountToken": false,
                "enableServiceLinks": false,
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c",
                        "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"],
                    "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 10},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                        "periodSeconds": 10}}]
            }))
            .unwrap();
        }
    }
    pod
}

fn pod(name: &str, batch: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "node", "batch": batch}},
        "spec": {
            "nodeName": NODE,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "IfNotPresent"}]
        }
    }))
    .unwrap()
}

struct Batch {
    latencies: Vec<Duration>,
    /// From the first create sent to the last Running seen.
    all: Duration,
}

/// `n` pods created at once; each one's latency from its create's answer
/// to a watch seeing it Running.
async fn batch(api: &Api<Pod>, batch: &str, n: usize, agent: &Agent) -> Batch {
    batch_of(api, batch, n, agent, Shape::Plain).await
}

async fn batch_of(api: &Api<Pod>, batch: &str, n: usize, agent: &Agent, shape: Shape) -> Batch {
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut stream = api
        .watch(
            &WatchParams::default()
                .labels(&format!("batch={batch}"))
                .timeout(290),
            "0",
        )
        .await
        .expect("watch pods")
        .boxed();
    let watch_seen = seen.clone();
    let watcher = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            let pod = match event {
                Ok(WatchEvent::Added(p)) | Ok(WatchEvent::Modified(p)) => p,
                _ => continue,
            };
            let running = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Running");
            if running {
                let now = Instant::now();
                let mut seen = watch_seen.lock().unwrap();
                seen.entry(pod.metadata.name.unwrap_or_default())
                    .or_insert(now);
                if seen.len() == n {
                    return;
                }
            }
        }
    });
    let start = Instant::now();
    let created: Vec<(String, Instant)> = futures::future::join_all((0..n).map(|i| async move {
        let name = format!("{batch}-{i}");
        api.create(&PostParams::default(), &shaped(&name, batch, shape))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        (name, Instant::now())
    }))
    .await;
    if tokio::time::timeout(Duration::from_secs(300), watcher)
        .await
        .is_err()
    {
        panic!(
            "{batch}: only {} of {n} pods Running after 300 s\n--- agent ---\n{}",
            seen.lock().unwrap().len(),
            agent.log()
        );
    }
    let seen = seen.lock().unwrap();
    let latencies = created
        .iter()
        .filter_map(|(name, at)| Some(seen.get(name)?.saturating_duration_since(*at)))
        .collect();
    let last = seen.values().max().copied().unwrap_or(start);
    Batch {
        latencies,
        all: last - start,
    }
}

/// Deletes the pods of `batch` and waits until they are gone from the API
/// and no sandbox of theirs is ready in the runtime.
async fn delete_batch(api: &Api<Pod>, batch: &str, kind: Kind) {
    let labels = format!("batch={batch}");
    let _ = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&labels),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left = api
            .list(&ListParams::default().labels(&labels))
            .await
            .map(|l| l.items.len())
            .unwrap_or(1);
        if left == 0 && ready_sandboxes(kind).await == 0 {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("{batch}: {left} pods still there after 180 s");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sandboxes of the bench's pods that are still ready.
async fn ready_sandboxes(kind: Kind) -> usize {
    if kind == Kind::InProcess {
        let out = Command::new("ctr")
            .args(["-n", IN_PROCESS_NAMESPACE, "containers", "ls", "-q"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        return out.lines().filter(|l| !l.is_empty()).count();
    }
    sandboxes_of_bench(Some(cri::PodSandboxState::SandboxReady))
        .await
        .len()
}

/// The CRI plugin's sandboxes of bench pods (in `state`, or any).
async fn sandboxes_of_bench(state: Option<cri::PodSandboxState>) -> Vec<String> {
    let Ok(mut client) = deckhand::cri::client::connect(Path::new(CONTAINERD_SOCKET)).await else {
        return vec![];
    };
    let filter = cri::PodSandboxFilter {
        state: state.map(|s| cri::PodSandboxStateValue { state: s as i32 }),
        label_selector: [("bench".to_string(), "node".to_string())].into(),
        ..Default::default()
    };
    client
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await
        .map(|r| r.into_inner().items.into_iter().map(|s| s.id).collect())
        .unwrap_or_default()
}

/// What a kubelet leaves for its garbage collector: stopped sandboxes.
async fn remove_bench_sandboxes() {
    let Ok(mut client) = deckhand::cri::client::connect(Path::new(CONTAINERD_SOCKET)).await else {
        return;
    };
    for id in sandboxes_of_bench(None).await {
        let _ = client
            .runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        let _ = client
            .runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await;
    }
}

async fn wait_node_ready(nodes: &Api<Node>, agent: &Agent) -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(180) {
        let ready = nodes.get_opt(NODE).await.ok().flatten().is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            return t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "the Node did not turn Ready\n--- agent ---\n{}",
        agent.log()
    );
}

#[derive(Default)]
struct Results {
    ready: Duration,
    single: Option<Stats>,
    many: Option<(Stats, Duration)>,
    idle: [Cost; 3],
    /// Start latency of a pod with a configMap, a secret and a token.
    volumes: Option<Stats>,
    /// The agent with the probed pods running.
    probes: Option<Cost>,
}

/// The issue-9 figures: pods with volumes, and probe overhead.
struct Extra {
    volume_samples: usize,
    probe_pods: usize,
}

async fn measure(
    kind: Kind,
    agent: Agent,
    pods: &Api<Pod>,
    nodes: &Api<Node>,
    samples: usize,
    many: usize,
    extra: &Extra,
) -> Results {
    let pid = agent.pid();
    let mut r = Results {
        ready: wait_node_ready(nodes, &agent).await,
        ..Default::default()
    };
    let tag = kind.label();
    // Warm-up: the image into this runtime's store.
    batch(pods, &format!("{tag}-warm"), 1, &agent).await;
    delete_batch(pods, &format!("{tag}-warm"), kind).await;
    r.idle[0] = cost(pid, Duration::from_secs(3), Duration::from_secs(10)).await;

    let mut single = vec![];
    for i in 0..samples {
        let name = format!("{tag}-one{i}");
        single.extend(batch(pods, &name, 1, &agent).await.latencies);
        delete_batch(pods, &name, kind).await;
    }
    r.single = Some(Stats::of(single));

    let ten = format!("{tag}-ten");
    batch(pods, &ten, 10, &agent).await;
    r.idle[1] = cost(pid, Duration::from_secs(5), Duration::from_secs(10)).await;
    delete_batch(pods, &ten, kind).await;

    let hundred = format!("{tag}-many");
    let b = batch(pods, &hundred, many, &agent).await;
    r.many = Some((Stats::of(b.latencies), b.all));
    r.idle[2] = cost(pid, Duration::from_secs(5), Duration::from_secs(15)).await;
    delete_batch(pods, &hundred, kind).await;

    let mut with_volumes = vec![];
    for i in 0..extra.volume_samples {
        let name = format!("{tag}-vol{i}");
        with_volumes.extend(
            batch_of(pods, &name, 1, &agent, Shape::Volumes)
                .await
                .latencies,
        );
        delete_batch(pods, &name, kind).await;
    }
    r.volumes = (!with_volumes.is_empty()).then(|| Stats::of(with_volumes));
    if extra.probe_pods > 0 {
        let probed = format!("{tag}-probed");
        batch_of(pods, &probed, extra.probe_pods, &agent, Shape::Probes).await;
        // Three probe periods of each kind, after the starts settled.
        r.probes = Some(cost(pid, Duration::from_secs(20), Duration::from_secs(30)).await);
        delete_batch(pods, &probed, kind).await;
    }
    drop(agent);
    if kind != Kind::InProcess {
        remove_bench_sandboxes().await;
    }
    let _ = nodes.delete(NODE, &DeleteParams::default()).await;
    r
}

fn remove_cni(bridge: &str) {
    let _ = Command::new("ip").args(["link", "del", bridge]).status();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "node") {
        eprintln!(
            "usage: node node [--samples N] [--pods N] [--only deckhand|deckhand-cri|kubelet] [--volume-samples N] [--probe-pods N]"
        );
        return;
    }
    let samples: usize = arg("--samples", 5);
    let many: usize = arg("--pods", 100);
    let only: String = arg("--only", String::new());
    let extra = Extra {
        volume_samples: arg("--volume-samples", 50),
        probe_pods: arg("--probe-pods", 100),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();

    let kubelet_bin = match stock::k8s_bin() {
        Ok(bin) => Some(bin),
        Err(why) => {
            println!("stock kubelet: skipped: {why}");
            None
        }
    };
    let mut kinds = vec![Kind::InProcess, Kind::DeckhandCri];
    if kubelet_bin.is_some() {
        kinds.push(Kind::Kubelet);
    }
    kinds.retain(|k| only.is_empty() || k.label() == only);

    let plane = stock::BundledApiserver::start(NODE);
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(plane.admin_kubeconfig()).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // What the volume pods mount.
    let objects: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    let _ = objects
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "bench-config"}, "data": {"a": "1", "b": "2"}}))
            .unwrap(),
        )
        .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    let _ = secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "bench-secret"}, "stringData": {"password": "x"}}))
            .unwrap(),
        )
        .await;
    let nodes: Api<Node> = Api::all(client);

    // The pod networks: one for the in-process runtime, one in containerd's
    // CNI dir for its CRI plugin (both agents on it use it).
    let cni = tempfile::tempdir().unwrap();
    let ipam = tempfile::tempdir().unwrap();
    std::fs::write(
        cni.path().join("10-bench.conflist"),
        conflist("dhbn0", "10.239.0.0/24", &ipam.path().join("a")),
    )
    .unwrap();
    std::fs::create_dir_all("/etc/cni/net.d").unwrap();
    std::fs::write(
        CONTAINERD_CNI_CONF,
        conflist("dhbn1", "10.239.1.0/24", &ipam.path().join("b")),
    )
    .unwrap();
    // The agents' cgroup root, as a kubelet wants it: there before they start.
    deckhand::sys::cgroup::create(CGROUP_ROOT.trim_start_matches('/')).expect("cgroup root");
    // containerd's CRI plugin notices a new CNI config within a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut results = vec![];
    for kind in kinds {
        eprintln!("-- {}", kind.title());
        let agent = match kind {
            Kind::Kubelet => Agent::Kubelet(Box::new(stock::StockKubelet::start(
                kubelet_bin.as_ref().unwrap(),
                &plane,
                stock::KubeletOptions {
                    node_name: NODE,
                    runtime_endpoint: format!("unix://{CONTAINERD_SOCKET}"),
                    extra_config: "",
                },
            ))),
            _ => start_deckhand(&plane, kind, cni.path()),
        };
        let r = measure(kind, agent, &pods, &nodes, samples, many, &extra).await;
        results.push((kind, r));
    }
    let _ = std::fs::remove_file(CONTAINERD_CNI_CONF);
    remove_cni("dhbn0");
    remove_cni("dhbn1");
    // The in-process runtime's images, then its (empty) namespace.
    let images = Command::new("ctr")
        .args(["-n", IN_PROCESS_NAMESPACE, "images", "ls", "-q"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for image in images.lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("ctr")
            .args(["-n", IN_PROCESS_NAMESPACE, "images", "rm", "--sync", image])
            .stdout(Stdio::null())
            .status();
    }
    common::remove_namespace(IN_PROCESS_NAMESPACE);
    stock::remove_cgroup_tree(CGROUP_ROOT);
    drop(plane);
    report(&results, samples, many, &extra);
}

fn report(results: &[(Kind, Results)], samples: usize, many: usize, extra: &Extra) {
    type Row = (String, Box<dyn Fn(&Results) -> f64>);
    let rows: Vec<Row> = vec![
        (
            "Node Ready after start (ms)".into(),
            Box::new(|r| ms(r.ready)),
        ),
        (
            format!("1 pod start, p50 of {samples} (ms)"),
            Box::new(|r| ms(r.single.as_ref().unwrap().p50)),
        ),
        (
            format!("1 pod start, p99 of {samples} (ms)"),
            Box::new(|r| ms(r.single.as_ref().unwrap().p99)),
        ),
        (
            format!("{many} pods at once: p50 (ms)"),
            Box::new(|r| ms(r.many.as_ref().unwrap().0.p50)),
        ),
        (
            format!("{many} pods at once: p99 (ms)"),
            Box::new(|r| ms(r.many.as_ref().unwrap().0.p99)),
        ),
        (
            format!("all {many} Running (ms)"),
            Box::new(|r| ms(r.many.as_ref().unwrap().1)),
        ),
        (
            "RSS, 0 pods (MiB)".into(),
            Box::new(|r| r.idle[0].rss_kib as f64 / 1024.0),
        ),
        (
            "RSS, 10 pods (MiB)".into(),
            Box::new(|r| r.idle[1].rss_kib as f64 / 1024.0),
        ),
        (
            format!("RSS, {many} pods (MiB)"),
            Box::new(|r| r.idle[2].rss_kib as f64 / 1024.0),
        ),
        (
            "CPU idle, 0 pods (% core)".into(),
            Box::new(|r| r.idle[0].cpu),
        ),
        (
            "CPU idle, 10 pods (% core)".into(),
            Box::new(|r| r.idle[1].cpu),
        ),
        (
            format!("CPU idle, {many} pods (% core)"),
            Box::new(|r| r.idle[2].cpu),
        ),
        (
            format!("cm+secret+token pod, p50 of {} (ms)", extra.volume_samples),
            Box::new(|r| r.volumes.as_ref().map_or(0.0, |s| ms(s.p50))),
        ),
        (
            format!("cm+secret+token pod, p99 of {} (ms)", extra.volume_samples),
            Box::new(|r| r.volumes.as_ref().map_or(0.0, |s| ms(s.p99))),
        ),
        (
            format!("CPU, {} probed pods (% core)", extra.probe_pods),
            Box::new(|r| r.probes.as_ref().map_or(0.0, |c| c.cpu)),
        ),
        (
            format!("RSS, {} probed pods (MiB)", extra.probe_pods),
            Box::new(|r| r.probes.as_ref().map_or(0.0, |c| c.rss_kib as f64 / 1024.0)),
        ),
    ];
    // The peer: the stock kubelet, or (without it) deckhand on containerd's CRI.
    let peer = results
        .iter()
        .find(|(k, _)| *k == Kind::Kubelet)
        .or_else(|| results.iter().find(|(k, _)| *k == Kind::DeckhandCri));
    println!();
    for (kind, _) in results {
        println!("{:>14} = {}", kind.label(), kind.title());
    }
    let mut header = format!("{:<32}", "");
    for (kind, _) in results {
        header += &format!("{:>14}", kind.label());
    }
    if let Some((pk, _)) = peer {
        for (kind, _) in results.iter().filter(|(k, _)| k != pk) {
            header += &format!("{:>22}", format!("{}/{}", kind.label(), pk.label()));
        }
    }
    println!("{header}");
    for (name, value) in &rows {
        let mut line = format!("{name:<32}");
        for (_, r) in results {
            line += &format!("{:>14.1}", value(r));
        }
        if let Some((pk, p)) = peer {
            for (_, r) in results.iter().filter(|(k, _)| k != pk) {
                let (a, b) = (value(r), value(p));
                let ratio = if b > 0.0 {
                    format!("{:.2}", a / b)
                } else {
                    "-".into()
                };
                line += &format!("{ratio:>22}");
            }
        }
        println!("{line}");
    }
}

//! Compatibility with the stock Kubernetes v1.36 binaries in ../shared/k8s
//! (or `$DECKHAND_K8S_DIR`); skipped, saying so, where they are absent.
//!
//! One scenario, as a user would walk it with kubectl, against three
//! set-ups:
//! - stock kube-apiserver (+ kcm), stock kubelet on `deckhand cri`;
//! - deckhand's bundled apiserver, stock kubelet on containerd's CRI plugin;
//! - deckhand's bundled apiserver, stock kubelet on `deckhand cri`.
//!
//! The scenario: the Node registers and turns Ready, and stays Ready for
//! `DECKHAND_STOCK_READY_SECS` seconds (default 60 here; the issue's bar is
//! 300: set it for a long run); a pod runs with its status (image name,
//! imageID, containerID, podIP); `kubectl logs`; `kubectl exec` with an exit
//! code; `exec -i` with stdin; `port-forward`; the kubelet's
//! `/stats/summary` through the apiserver's node proxy, with the pod's
//! network; a graceful delete of a pod whose shell traps TERM and sees it
//! exactly once.
//!
//! Needs root, containerd, the local registry, and the integration lock
//! (see RULES: a stock kubelet adopts every sandbox its CRI reports).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pod::TestPod;
use common::stock::{
    BundledApiserver, ControlPlane, KubeletOptions, StockControlPlane, StockKubelet, k8s_bin,
    kubectl, kubectl_code, kubectl_with_stdin, remove_cgroup_tree,
};
use common::{BUSYBOX, CONTAINERD_SOCKET, CriServer};
use deckhand::cri::v1 as cri;

/// deckhand cri answers the CRI stats calls itself; the kubelet reads pod
/// network stats from them only with this gate (without it, from cAdvisor's
/// view of a containerd task named by the sandbox id: a pause container,
/// which deckhand does not run).
const DECKHAND_KUBELET_CONFIG: &str = "featureGates:\n  PodAndContainerStatsFromCRI: true\n";

fn ready_hold() -> Duration {
    let secs = std::env::var("DECKHAND_STOCK_READY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

fn skip_reason() -> Option<String> {
    k8s_bin().err()
}

/// What the scenario knows of the set-up.
struct Setup<'a> {
    plane: &'a dyn ControlPlane,
    kubelet: &'a mut StockKubelet,
    node: &'a str,
    /// The pod IPs start with this (the CNI subnet).
    pod_ip_prefix: &'a str,
    /// `containerd` or `deckhand`: the containerID's scheme.
    runtime_name: &'a str,
    /// A host dir the trapping pod writes what it saw into.
    out_dir: &'a Path,
}

impl Setup<'_> {
    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        kubectl(self.plane.admin_kubeconfig(), args)
    }

    /// `kubectl ARGS`, which must succeed: its stdout.
    fn ok(&mut self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        if !ok {
            self.fail(&format!("kubectl {args:?} failed: {err}{out}"));
        }
        out
    }

    fn fail(&mut self, message: &str) -> ! {
        panic!(
            "{message}\n--- kubelet (alive: {}) ---\n{}\n--- apiserver ---\n{}",
            self.kubelet.alive(),
            self.kubelet.log_tail(),
            self.plane.logs()
        );
    }

    fn wait(&mut self, timeout: Duration, what: &str, mut ready: impl FnMut(&mut Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn node_ready(&self) -> bool {
        let (_, out, _) = self.kubectl(&[
            "get",
            "node",
            self.node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        out.trim() == "True"
    }

    fn pod_json(&mut self, name: &str) -> serde_json::Value {
        let out = self.ok(&["get", "pod", name, "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    }
}

/// The pod: an HTTP server for port-forward, a line for logs, and a shell
/// (PID 1) that traps TERM and records each one it sees.
fn web_pod(node: &str, out_dir: &Path) -> String {
    let script = "mkdir -p /www && echo port-forward-ok > /www/index.html && \
                  httpd -p 8080 -h /www && echo hello-from-pod && \
                  trap 'echo TERM >> /out/term.log; exit 0' TERM && \
                  while true; do sleep 1; done";
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "main",
                "image": BUSYBOX,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "ports": [{"containerPort": 8080}],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }],
            "volumes": [{"name": "out", "hostPath": {"path": out_dir, "type": "Directory"}}],
        }
    })
    .to_string()
}

/// The scenario; returns the uids of the pods it made (for the clean-up).
fn scenario(s: &mut Setup<'_>) -> Vec<String> {
    let started = Instant::now();
    // Registration: on a loopback-only host the kubelet publishes no
    // address (127.0.0.1 is refused as a node IP), so set them as admin.
    s.wait(Duration::from_secs(90), "the Node to register", |s| {
        s.kubectl(&["get", "node", s.node]).0
    });
    let addresses = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}},{{"type":"Hostname","address":"{}"}}]}}}}"#,
        s.node
    );
    s.ok(&[
        "patch",
        "node",
        s.node,
        "--subresource=status",
        "--type=merge",
        "-p",
        &addresses,
    ]);
    s.wait(Duration::from_secs(120), "the Node to be Ready", |s| {
        s.node_ready()
    });
    let ready_at = Instant::now();
    eprintln!("node Ready {:?} after start", started.elapsed());

    // A pod, Running, with its status. (ServiceAccount admission wants the
    // namespace's default account, which the controller manager makes.)
    s.wait(Duration::from_secs(60), "the default ServiceAccount", |s| {
        s.kubectl(&["get", "serviceaccount", "default"]).0
    });
    let manifest = web_pod(s.node, s.out_dir);
    let (ok, out, err) = kubectl_with_stdin(
        s.plane.admin_kubeconfig(),
        &["create", "-f", "-"],
        Some(&manifest),
    );
    if !ok {
        s.fail(&format!("creating the pod: {err}{out}"));
    }
    s.wait(Duration::from_secs(120), "pod web to run", |s| {
        let pod = s.pod_json("web");
        pod["status"]["phase"] == "Running"
            && pod["status"]["containerStatuses"][0]["ready"] == true
    });
    let pod = s.pod_json("web");
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let status = &pod["status"]["containerStatuses"][0];
    let image = status["image"].as_str().unwrap_or_default();
    let image_id = status["imageID"].as_str().unwrap_or_default();
    if s.runtime_name == "containerd" {
        // containerd's CRI (the peer) names an image by the first of its
        // tags: one that another client also pulled under the mirror's
        // name (127.0.0.1:5000/...) into k8s.io shows that name.
        assert!(
            image.ends_with("/e2e-test-images/busybox:1.29-2"),
            "the image by name: {status}"
        );
        assert!(
            image_id.contains("/e2e-test-images/busybox@sha256:"),
            "imageID is the repo digest: {status}"
        );
    } else {
        // deckhand answers with the name the pod asked for.
        assert_eq!(image, BUSYBOX, "the image by name: {status}");
        assert!(
            image_id.starts_with("registry.k8s.io/e2e-test-images/busybox@sha256:"),
            "imageID is the repo digest: {status}"
        );
    }
    let container_id = status["containerID"].as_str().unwrap_or_default();
    assert!(
        container_id.starts_with(&format!("{}://", s.runtime_name)) && container_id.len() > 20,
        "containerID: {status}"
    );
    let pod_ip = pod["status"]["podIP"].as_str().unwrap_or_default();
    assert!(
        pod_ip.starts_with(s.pod_ip_prefix),
        "podIP {pod_ip:?} in {}",
        s.pod_ip_prefix
    );

    // logs, exec (exit code, output), exec -i (stdin).
    s.wait(Duration::from_secs(30), "the pod's log line", |s| {
        s.kubectl(&["logs", "web"]).1.contains("hello-from-pod")
    });
    let (ok, out, err) = s.kubectl(&["exec", "web", "--", "echo", "exec-ok"]);
    assert!(ok && out.trim() == "exec-ok", "kubectl exec: {out}{err}");
    let code = kubectl_code(
        s.plane.admin_kubeconfig(),
        &["exec", "web", "--", "sh", "-c", "exit 7"],
    );
    assert_eq!(code, Some(7), "kubectl exec passes the exit code");
    let (ok, out, err) = kubectl_with_stdin(
        s.plane.admin_kubeconfig(),
        &["exec", "-i", "web", "--", "sh", "-c", "cat; echo end"],
        Some("piped-input\n"),
    );
    assert!(
        ok && out == "piped-input\nend\n",
        "kubectl exec -i: {out:?} {err}"
    );

    port_forward(s);
    stats_summary(s);

    // The Node stays Ready (checked all along the hold).
    while ready_at.elapsed() < ready_hold() {
        if !s.node_ready() {
            s.fail(&format!(
                "the Node left Ready after {:?}",
                ready_at.elapsed()
            ));
        }
        std::thread::sleep(Duration::from_secs(5));
    }

    // Graceful delete: TERM to the shell, once; it exits at once.
    let deleting = Instant::now();
    s.ok(&["delete", "pod", "web", "--wait=true", "--timeout=90s"]);
    let took = deleting.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the trap ended the pod, not the grace period: {took:?}"
    );
    let seen = std::fs::read_to_string(s.out_dir.join("term.log")).unwrap_or_default();
    assert_eq!(
        seen.lines().filter(|l| *l == "TERM").count(),
        1,
        "TERM seen {seen:?}"
    );
    vec![uid]
}

fn port_forward(s: &mut Setup<'_>) {
    let port = common::free_port();
    let mut child = std::process::Command::new(common::stock::KUBECTL)
        .arg("--kubeconfig")
        .arg(s.plane.admin_kubeconfig())
        .args(["port-forward", "pod/web", &format!("{port}:8080")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(text) = http_get(port) {
            body = text;
            if body.contains("port-forward-ok") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    if !body.contains("port-forward-ok") {
        s.fail(&format!(
            "port-forward served {body:?}; kubectl said {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// /stats/summary through the node proxy: the pod, with its network.
fn stats_summary(s: &mut Setup<'_>) {
    let path = format!("/api/v1/nodes/{}/proxy/stats/summary", s.node);
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let (mut ok, mut out, err) = s.kubectl(&["get", "--raw", &path]);
        if !ok && err.contains("address not allowed") {
            // kube-apiserver does not proxy to a node's loopback address
            // (the only one this test host has): ask the kubelet as the
            // apiserver would, with its kubelet client certificate.
            (ok, out) = kubelet_get(s, "/stats/summary");
        }
        last = format!("{out}{err}");
        if ok && let Ok(summary) = serde_json::from_str::<serde_json::Value>(&out) {
            let pod = summary["pods"]
                .as_array()
                .and_then(|pods| pods.iter().find(|p| p["podRef"]["name"] == "web"))
                .cloned();
            if let Some(pod) = pod {
                let network = &pod["network"];
                let has_interfaces = network["interfaces"]
                    .as_array()
                    .is_some_and(|i| !i.is_empty());
                if has_interfaces
                    && network["rxBytes"].is_u64()
                    && pod["containers"][0]["name"] == "main"
                {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    s.fail(&format!(
        "/stats/summary has no network for pod web:\n{last}"
    ));
}

/// GET on the kubelet's API with the apiserver's kubelet client certificate.
fn kubelet_get(s: &Setup<'_>, path: &str) -> (bool, String) {
    let (cert, key) = s.plane.kubelet_client();
    let out = std::process::Command::new("curl")
        .args(["-sS", "-k", "--max-time", "20", "--cert"])
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg(format!("https://127.0.0.1:{}{path}", s.kubelet.port))
        .output()
        .expect("running curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Stops and removes the sandboxes of the pods the scenario made that the
/// kubelet left behind (it removes them itself, eventually).
async fn remove_sandboxes(endpoint: &Path, uids: &[String]) {
    let Ok(mut client) = deckhand::cri::client::connect(endpoint).await else {
        return;
    };
    let Ok(listed) = client
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
    else {
        return;
    };
    for sandbox in listed.into_inner().items {
        let ours = sandbox
            .metadata
            .as_ref()
            .is_some_and(|m| uids.contains(&m.uid));
        if !ours {
            continue;
        }
        let id = sandbox.id.clone();
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

/// A stock kubelet on a fresh `deckhand cri` (its own socket, containerd
/// namespace, bridge and subnet), then the scenario.
async fn on_deckhand_cri(plane: Box<dyn ControlPlane + Send>, node: &'static str, index: u8) {
    let bin = k8s_bin().unwrap();
    let pod = TestPod::new("dhsk", 217, index);
    let (server, _client) = CriServer::start_with(pod.options()).await;
    let socket = server.socket.clone();
    let prefix = pod.subnet_prefix.clone();
    let uids = tokio::task::spawn_blocking(move || {
        let out = tempfile::tempdir().unwrap();
        let mut kubelet = StockKubelet::start(
            &bin,
            &*plane,
            KubeletOptions {
                node_name: node,
                runtime_endpoint: format!("unix://{}", socket.display()),
                extra_config: DECKHAND_KUBELET_CONFIG,
            },
        );
        let mut setup = Setup {
            plane: &*plane,
            kubelet: &mut kubelet,
            node,
            pod_ip_prefix: &prefix,
            runtime_name: "deckhand",
            out_dir: out.path(),
        };
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&mut setup)));
        let _ = kubectl(
            plane.admin_kubeconfig(),
            &["delete", "pod", "--all", "--grace-period=1", "--wait=false"],
        );
        let cgroup_root = kubelet.cgroup_root.clone();
        drop(kubelet);
        drop(plane);
        (result, cgroup_root)
    })
    .await
    .unwrap();
    let (uids, cgroup_root) = uids;
    // Whatever the kubelet left (also after a failure): the sandboxes of
    // this server are all the test's.
    let mut reset = std::process::Command::new(env!("CARGO_BIN_EXE_deckhand"));
    reset.args(["cri-reset", "--endpoint"]).arg(&server.socket);
    let _ = reset.status();
    drop(server);
    drop(pod);
    // The pods' cgroups under the kubelet's root, now that they are empty.
    remove_cgroup_tree(&cgroup_root);
    if let Err(panic) = uids {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_kubelet_on_deckhand_cri_with_stock_apiserver() {
    if let Some(why) = skip_reason() {
        common::say_skipped("stock_kubelet_on_deckhand_cri_with_stock_apiserver", &why);
        return;
    }
    let node = "dh-stock-cri";
    let plane = tokio::task::spawn_blocking(move || StockControlPlane::start(node))
        .await
        .unwrap();
    on_deckhand_cri(Box::new(plane), node, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_kubelet_on_deckhand_cri_with_bundled_apiserver() {
    if let Some(why) = skip_reason() {
        common::say_skipped("stock_kubelet_on_deckhand_cri_with_bundled_apiserver", &why);
        return;
    }
    let node = "dh-bundled-cri";
    let plane = tokio::task::spawn_blocking(move || BundledApiserver::start(node))
        .await
        .unwrap();
    on_deckhand_cri(Box::new(plane), node, 2).await;
}

/// containerd's CRI plugin takes its pod network from /etc/cni/net.d: a
/// conflist of the test's own there, removed on drop.
struct ContainerdNetwork {
    file: PathBuf,
    pod: TestPod,
}

impl ContainerdNetwork {
    fn install(index: u8) -> Self {
        let pod = TestPod::new("dhsk", 217, index);
        let file = PathBuf::from(format!(
            "/etc/cni/net.d/05-deckhand-stock-{}.conflist",
            std::process::id()
        ));
        std::fs::create_dir_all("/etc/cni/net.d").unwrap();
        std::fs::copy(pod.conf.path().join("10-test.conflist"), &file).unwrap();
        ContainerdNetwork { file, pod }
    }
}

impl Drop for ContainerdNetwork {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_kubelet_on_containerd_with_bundled_apiserver() {
    if let Some(why) = skip_reason() {
        common::say_skipped("stock_kubelet_on_containerd_with_bundled_apiserver", &why);
        return;
    }
    let bin = k8s_bin().unwrap();
    let node = "dh-bundled-ctrd";
    let network = ContainerdNetwork::install(1);
    let prefix = network.pod.subnet_prefix.clone();
    let result = tokio::task::spawn_blocking(move || {
        let plane = BundledApiserver::start(node);
        let out = tempfile::tempdir().unwrap();
        let mut kubelet = StockKubelet::start(
            &bin,
            &plane,
            KubeletOptions {
                node_name: node,
                runtime_endpoint: format!("unix://{CONTAINERD_SOCKET}"),
                extra_config: "",
            },
        );
        let mut setup = Setup {
            plane: &plane,
            kubelet: &mut kubelet,
            node,
            pod_ip_prefix: &prefix,
            runtime_name: "containerd",
            out_dir: out.path(),
        };
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&mut setup)));
        let cgroup_root = kubelet.cgroup_root.clone();
        let uids: Vec<String> = kubectl(
            plane.admin_kubeconfig(),
            &["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"],
        )
        .1
        .split_whitespace()
        .map(str::to_string)
        .collect();
        let _ = kubectl(
            plane.admin_kubeconfig(),
            &["delete", "pod", "--all", "--grace-period=1", "--wait=false"],
        );
        drop(kubelet);
        (result, uids, cgroup_root)
    })
    .await
    .unwrap();
    let (result, mut uids, cgroup_root) = result;
    if let Ok(made) = &result {
        uids.extend(made.iter().cloned());
    }
    remove_sandboxes(Path::new(CONTAINERD_SOCKET), &uids).await;
    remove_cgroup_tree(&cgroup_root);
    drop(network);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

//! The node agent's test harness: a real `deckhand apiserver` (or the stock
//! kube-apiserver from ../shared/k8s) and a real `deckhand node` on it,
//! driven with /usr/bin/kubectl. Each node gets its own name, containerd
//! namespace, CNI network, cgroup root and dirs, all removed on drop after
//! its pods are deleted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cleanup;
use super::pod::TestPod;
use super::{BUSYBOX, CriServer, registry_config, remove_namespace, require_environment};

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// Polls `check` every 200 ms until it gives a value; panics with `what`
/// (and `log`) after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    log: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n--- log ---\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A control plane: its admin kubeconfig, and a node kubeconfig per name.
pub trait ControlPlane {
    fn admin_kubeconfig(&self) -> PathBuf;
    fn node_kubeconfig(&self, node: &str) -> PathBuf;
    fn dir(&self) -> &Path;
    fn log(&self) -> String;
    /// The CA that signed the apiserver's kubelet client certificate: the
    /// node's --client-ca-file.
    fn client_ca(&self) -> PathBuf;

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir().join("kubectl-cache"))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl create -f -` of a manifest.
    fn create(&self, manifest: &Value) {
        let mut child = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir().join("kubectl-cache"))
            .args(["create", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl create");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(manifest.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The object as JSON, or None when it does not exist.
    fn get(&self, args: &[&str]) -> Option<Value> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend(["-o", "json"]);
        let out = self.kubectl(&full);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.get(&["pod", name])
    }

    /// The Events about one object, as "Type Reason: message" lines.
    fn events_of(&self, name: &str) -> Vec<String> {
        let selector = format!("involvedObject.name={name}");
        let Some(list) = self.get(&["events", "--field-selector", &selector]) else {
            return vec![];
        };
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e["type"].as_str().unwrap_or(""),
                    e["reason"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

/// `deckhand apiserver` on a free port, with a node kubeconfig per node.
pub struct DeckhandApiserver {
    child: Option<Child>,
    dir: tempfile::TempDir,
    nodes: Vec<String>,
}

impl DeckhandApiserver {
    pub fn start(nodes: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let mut server = Self {
            child: None,
            dir,
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn("127.0.0.1:0");
        wait_for(
            "the apiserver's kubeconfig",
            Duration::from_secs(90),
            || server.log(),
            || {
                let ready = kubeconfig.exists()
                    && server
                        .nodes
                        .iter()
                        .all(|n| server.node_kubeconfig(n).exists());
                ready.then_some(())
            },
        );
        server
    }

    fn spawn(&mut self, listen: &str) {
        let dir = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("apiserver.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deckhand"));
        cmd.args(["apiserver", "--listen", listen, "--data-dir"])
            .arg(dir.join("data"))
            .arg("--write-kubeconfig")
            .arg(dir.join("admin.kubeconfig"));
        for n in &self.nodes {
            cmd.arg("--write-node-kubeconfig").arg(format!(
                "{n}={}",
                dir.join(format!("node-{n}.kubeconfig")).display()
            ));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start deckhand apiserver");
        self.child = Some(child);
    }

    /// kill -9, `down` away, then the same data dir again on the same port;
    /// returns once it answers.
    pub fn restart_after(&mut self, down: Duration) {
        let kubeconfig = std::fs::read_to_string(self.admin_kubeconfig()).unwrap();
        let port = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://127.0.0.1:"))
            .expect("the kubeconfig's server")
            .trim()
            .to_string();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(down);
        self.spawn(&format!("127.0.0.1:{port}"));
        wait_for(
            "the restarted apiserver",
            Duration::from_secs(30),
            || self.log(),
            || self.get(&["namespace", "default"]).map(|_| ()),
        );
    }
}

impl ControlPlane for DeckhandApiserver {
    fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }
    fn node_kubeconfig(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("node-{node}.kubeconfig"))
    }
    fn dir(&self) -> &Path {
        self.dir.path()
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }
    fn client_ca(&self) -> PathBuf {
        self.dir.path().join("data/pki/ca.crt")
    }
}

impl Drop for DeckhandApiserver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The stock kube-apiserver (+ etcd, kcm) from ../shared/k8s.
pub struct StockApiserver {
    k8s: PathBuf,
    dir: tempfile::TempDir,
    node: String,
}

/// ../shared/k8s (or $DECKHAND_K8S_DIR), when its binaries are there.
pub fn stock_k8s_dir() -> Option<PathBuf> {
    let dir = super::stock_k8s_dir();
    (dir.join("start-apiserver").exists() && dir.join("bin").exists()).then_some(dir)
}

impl StockApiserver {
    pub fn start(k8s: &Path, port: u16, node: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(k8s.join("start-apiserver"))
            .arg(dir.path())
            .arg(port.to_string())
            .arg(node)
            .env("WITH_KCM", "1")
            .output()
            .expect("run start-apiserver");
        let server = Self {
            k8s: k8s.to_path_buf(),
            dir,
            node: node.to_string(),
        };
        assert!(
            out.status.success(),
            "start-apiserver failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Pods need the default ServiceAccount, which kcm creates.
        wait_for(
            "the default service account",
            Duration::from_secs(60),
            || server.log(),
            || server.get(&["serviceaccount", "default"]).map(|_| ()),
        );
        server
    }
}

impl ControlPlane for StockApiserver {
    fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }
    fn node_kubeconfig(&self, node: &str) -> PathBuf {
        assert_eq!(node, self.node, "start-apiserver wrote one node kubeconfig");
        self.dir.path().join("kubelet.kubeconfig")
    }
    fn dir(&self) -> &Path {
        self.dir.path()
    }
    fn client_ca(&self) -> PathBuf {
        self.dir.path().join("pki/ca.crt")
    }
    fn log(&self) -> String {
        let logs = self.dir.path().join("logs");
        let mut out = String::new();
        for f in std::fs::read_dir(logs).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out += &format!("--- {}\n", f.path().display());
            for l in tail.into_iter().rev() {
                out += l;
                out += "\n";
            }
        }
        out
    }
}

impl Drop for StockApiserver {
    fn drop(&mut self) {
        let _ = Command::new(self.k8s.join("stop-apiserver"))
            .arg(self.dir.path())
            .arg("--purge")
            .output();
    }
}

/// Which runtime the node drives.
pub enum Runtime {
    /// deckhand's own, in the node's process.
    InProcess,
    /// `deckhand cri` over its socket.
    DeckhandCri,
    /// containerd's CRI plugin over containerd's socket.
    ContainerdCri,
}

/// A running `deckhand node`.
pub struct NodeAgent {
    pub name: String,
    /// The kubelet API's port (on 127.0.0.1), free when the node started.
    pub port: u16,
    child: Option<Child>,
    args: Vec<std::ffi::OsString>,
    dir: tempfile::TempDir,
    pub namespace: String,
    pub net: TestPod,
    cri: Option<CriServer>,
    _hosts: tempfile::TempDir,
    admin: PathBuf,
    cache: PathBuf,
}

impl NodeAgent {
    /// `name` is the node's (unique per test); `octet`/`index` choose its
    /// CNI subnet 10.<octet>.<index>.0/24.
    pub async fn start(
        plane: &dyn ControlPlane,
        name: &str,
        runtime: Runtime,
        octet: u8,
        index: u8,
    ) -> Self {
        require_environment();
        let dir = tempfile::tempdir().unwrap();
        let net = TestPod::new("dhnd", octet, index);
        let hosts = registry_config(&[]);
        let namespace = format!("deckhand-node-test-{}-{name}", std::process::id());
        let mut args: Vec<std::ffi::OsString> = vec!["node".into(), "--kubeconfig".into()];
        args.push(plane.node_kubeconfig(name).into());
        args.extend(["--hostname-override".into(), name.into()]);
        args.extend(["--node-ip".into(), "127.0.0.1".into()]);
        args.extend(["--root-dir".into(), dir.path().join("root").into()]);
        args.extend(["--cgroup-root".into(), net.cgroup_parent.clone().into()]);
        args.extend(["--log-level".into(), "info,deckhand=debug".into()]);
        // Never the kubelet's 10250: nodes of parallel tests must not collide.
        let port = super::stock::free_ports(1);
        args.extend(["--address".into(), "127.0.0.1".into()]);
        args.extend(["--port".into(), port.to_string().into()]);
        args.extend(["--client-ca-file".into(), plane.client_ca().into()]);
        // Flags a kubeadm drop-in passes, which deckhand accepts and ignores.
        args.extend([
            "--fail-swap-on=false".into(),
            "--rotate-certificates".into(),
        ]);
        let mut cri = None;
        match runtime {
            Runtime::InProcess => {
                args.extend(["--containerd-namespace".into(), namespace.clone().into()]);
                args.extend(["--state-dir".into(), dir.path().join("state").into()]);
                args.extend(["--run-dir".into(), dir.path().join("run").into()]);
                args.extend(["--registry-config-dir".into(), hosts.path().into()]);
                args.extend(["--cni-conf-dir".into(), net.conf.path().into()]);
                args.extend(["--cni-bin-dir".into(), super::pod::CNI_BIN_DIR.into()]);
            }
            Runtime::DeckhandCri => {
                let (server, _) = CriServer::start_with(net.options()).await;
                args.push(
                    format!(
                        "--container-runtime-endpoint=unix://{}",
                        server.socket.display()
                    )
                    .into(),
                );
                cri = Some(server);
            }
            Runtime::ContainerdCri => {
                args.push(
                    format!(
                        "--container-runtime-endpoint=unix://{}",
                        super::CONTAINERD_SOCKET
                    )
                    .into(),
                );
            }
        }
        let mut node = Self {
            name: name.to_string(),
            port,
            child: None,
            args,
            dir,
            namespace,
            net,
            cri,
            _hosts: hosts,
            admin: plane.admin_kubeconfig(),
            cache: plane.dir().join("kubectl-cache"),
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node.log"))
            .unwrap();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_deckhand"))
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start deckhand node"),
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// The node's --root-dir (pods/<uid>/volumes/... live under it).
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// kill -9, then the same command line again.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// kill -9, then the command line with `extra` flags added.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.kill9();
        self.args.extend(extra.iter().map(std::ffi::OsString::from));
        self.spawn();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.admin)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .output()
            .expect("run kubectl")
    }
}

/// Removes `dir` and every empty directory under it, deepest first.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        // The node tears its pods down when they are deleted: delete them all
        // (on this node) and wait, so nothing is left in the runtime.
        let mut log_dirs = vec![];
        if self.is_running() {
            let selector = format!("spec.nodeName={}", self.name);
            // Their log dirs, which the node removes last.
            let out = self.kubectl(&[
                "get", "pods", "-A", "--field-selector", &selector, "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}_{.metadata.name}_{.metadata.uid}{\"\\n\"}{end}",
            ]);
            log_dirs = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| Path::new("/var/log/pods").join(l))
                .collect();
            let _ = self.kubectl(&cleanup::delete_pods_args(&selector));
            // The last pod's teardown (after its final delete) takes a moment.
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline
                && (self.runtime_holds_pods() || log_dirs.iter().any(|d| d.exists()))
            {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.kill9();
        for d in &log_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = self.kubectl(&["delete", "node", &self.name, "--wait=false"]);
        if self.in_process() {
            remove_namespace(&self.namespace);
        }
        self.cri = None;
        let root = self.net.cgroup_parent.trim_start_matches('/').to_string();
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                remove_cgroup_tree(&c.path().join(&root));
            }
        }
        remove_cgroup_tree(&Path::new("/sys/fs/cgroup").join(&root));
    }
}

impl NodeAgent {
    /// Whether the runtime still holds containers of this node's pods.
    fn runtime_holds_pods(&self) -> bool {
        let out = match &self.cri {
            Some(server) => server.ctr(&["containers", "ls", "-q"]),
            None if self.in_process() => super::ctr(&self.namespace, &["containers", "ls", "-q"]),
            // containerd's CRI plugin: the sandboxes this node labelled.
            None => super::ctr(
                "k8s.io",
                &[
                    "containers",
                    "ls",
                    "-q",
                    &format!("labels.\"deckhand.io/node-name\"=={}", self.name),
                ],
            ),
        };
        !out.trim().is_empty()
    }

    fn in_process(&self) -> bool {
        !self.args.iter().any(|a| {
            a.to_string_lossy()
                .starts_with("--container-runtime-endpoint")
        })
    }
}

// Pod and node objects as the node tests read them.

pub fn pod_manifest(name: &str, node: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = json!(node);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

pub fn busybox(name: &str, script: &str) -> Value {
    json!({"name": name, "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
           "command": ["sh", "-c", script]})
}

pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

pub fn wait_node_ready(plane: &dyn ControlPlane, node: &NodeAgent) -> Value {
    wait_for(
        "the Node to be Ready",
        Duration::from_secs(60),
        || node.log(),
        || {
            let n = plane.get(&["node", &node.name])?;
            (condition(&n, "Ready")?["status"] == "True").then_some(n)
        },
    )
}

/// Waits for the pod's phase (or a container's state) per `check`.
pub fn wait_pod(
    plane: &dyn ControlPlane,
    node: &NodeAgent,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(
        &format!("pod {name}: {what}"),
        timeout,
        || {
            format!(
                "pod: {}\nevents: {:?}\nnode log:\n{}",
                plane
                    .pod(name)
                    .map(|p| p["status"].to_string())
                    .unwrap_or_default(),
                plane.events_of(name),
                node.log()
            )
        },
        || plane.pod(name).filter(|p| check(p)),
    )
}

pub fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

pub fn container_status<'a>(p: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    p["status"][list]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

//! The stock Kubernetes v1.36 binaries of ../shared/k8s for the
//! compatibility suite: a control plane (etcd + kube-apiserver + kcm, through
//! its `start-apiserver`), or deckhand's bundled apiserver, and a stock
//! kubelet on any CRI endpoint. Everything is stopped and removed on drop,
//! on a failed assertion too: processes, the kubelet's mounts, its cgroups,
//! the sysctls it sets, temp dirs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// ../shared/k8s (from the repository root), or `$DECKHAND_K8S_DIR`, with
/// its binaries unpacked: the bin dir. `Err` says why the suite skips.
pub fn k8s_bin() -> Result<PathBuf, String> {
    let dir = super::stock_k8s_dir();
    for file in ["unpack", "start-apiserver", "stop-apiserver", "bin"] {
        if !dir.join(file).exists() {
            return Err(format!(
                "{} has no {file} (set DECKHAND_K8S_DIR)",
                dir.display()
            ));
        }
    }
    if !Path::new(KUBECTL).exists() {
        return Err(format!("no {KUBECTL}"));
    }
    let out = Command::new(dir.join("unpack"))
        .output()
        .map_err(|e| format!("running unpack: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "unpack failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    for binary in [
        "kube-apiserver",
        "kubelet",
        "etcd",
        "kube-controller-manager",
    ] {
        if !bin.join(binary).exists() {
            return Err(format!("{} lacks {binary}", bin.display()));
        }
    }
    Ok(bin)
}

/// `n` consecutive free loopback ports, the first one returned. Each call
/// in this process starts from another block, so tests running side by side
/// do not pick the same ports before either binds them.
pub fn free_ports(n: u16) -> u16 {
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let seed = (std::process::id() as u16).wrapping_mul(7);
    for attempt in 0..500u16 {
        let block = seed
            .wrapping_add(call.wrapping_mul(97))
            .wrapping_add(attempt.wrapping_mul(13));
        // Below the kernel's ephemeral range (32768 up), which outgoing
        // connections draw from while a test runs.
        let base = 20_000 + (block % 1_200) * 10;
        let all_free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// What a kubelet and kubectl need of a control plane.
pub trait ControlPlane {
    /// A system:masters kubeconfig, for kubectl.
    fn admin_kubeconfig(&self) -> &Path;
    /// The node's own kubeconfig (CN=system:node:<name>).
    fn node_kubeconfig(&self) -> &Path;
    /// The CA that signed the apiserver's kubelet client certificate: the
    /// kubelet's `clientCAFile`.
    fn client_ca(&self) -> &Path;
    /// The certificate and key the apiserver presents to kubelets.
    fn kubelet_client(&self) -> (PathBuf, PathBuf);
    /// Logs, for failure messages.
    fn logs(&self) -> String;
}

/// etcd + kube-apiserver + kube-controller-manager, started by
/// ../shared/k8s/start-apiserver in a temp dir on ports of their own.
pub struct StockControlPlane {
    dir: tempfile::TempDir,
    admin: PathBuf,
    node: PathBuf,
    ca: PathBuf,
}

impl StockControlPlane {
    pub fn start(node_name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(5);
        let out = Command::new(super::stock_k8s_dir().join("start-apiserver"))
            .arg(dir.path())
            .arg(port.to_string())
            .arg(node_name)
            .env("WITH_KCM", "1")
            .env("ETCD_UNSAFE_NO_FSYNC", "1")
            .env("KUBECTL", KUBECTL)
            .output()
            .expect("running start-apiserver");
        let plane = StockControlPlane {
            admin: dir.path().join("admin.kubeconfig"),
            node: dir.path().join("kubelet.kubeconfig"),
            ca: dir.path().join("pki/ca.crt"),
            dir,
        };
        assert!(
            out.status.success(),
            "start-apiserver failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            plane.logs()
        );
        plane
    }
}

impl ControlPlane for StockControlPlane {
    fn admin_kubeconfig(&self) -> &Path {
        &self.admin
    }
    fn node_kubeconfig(&self) -> &Path {
        &self.node
    }
    fn client_ca(&self) -> &Path {
        &self.ca
    }
    fn kubelet_client(&self) -> (PathBuf, PathBuf) {
        let pki = self.dir.path().join("pki");
        (
            pki.join("apiserver-kubelet-client.crt"),
            pki.join("apiserver-kubelet-client.key"),
        )
    }
    fn logs(&self) -> String {
        tail(&self.dir.path().join("logs/kube-apiserver.log"), 40)
    }
}

impl Drop for StockControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(super::stock_k8s_dir().join("stop-apiserver"))
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .status();
    }
}

/// `deckhand apiserver` on a port of its own, with a kubeconfig for the node.
pub struct BundledApiserver {
    child: Option<Child>,
    dir: tempfile::TempDir,
    admin: PathBuf,
    node: PathBuf,
    ca: PathBuf,
}

impl BundledApiserver {
    pub fn start(node_name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("admin.kubeconfig");
        let node = dir.path().join("node.kubeconfig");
        let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
            .args([
                "apiserver",
                "--listen",
                &format!("127.0.0.1:{}", free_ports(1)),
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--write-kubeconfig")
            .arg(&admin)
            .arg("--write-node-kubeconfig")
            .arg(format!("{node_name}={}", node.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting deckhand apiserver");
        let server = BundledApiserver {
            child: Some(child),
            ca: dir.path().join("data/pki/ca.crt"),
            dir,
            admin,
            node,
        };
        wait_for(
            Duration::from_secs(30),
            "the bundled apiserver's kubeconfigs",
            || server.admin.exists() && server.node.exists(),
        );
        server
    }
}

impl ControlPlane for BundledApiserver {
    fn admin_kubeconfig(&self) -> &Path {
        &self.admin
    }
    fn node_kubeconfig(&self) -> &Path {
        &self.node
    }
    fn client_ca(&self) -> &Path {
        &self.ca
    }
    fn kubelet_client(&self) -> (PathBuf, PathBuf) {
        let pki = self.dir.path().join("data/pki");
        (
            pki.join("kubelet-client.crt"),
            pki.join("kubelet-client.key"),
        )
    }
    fn logs(&self) -> String {
        tail(&self.dir.path().join("apiserver.log"), 40)
    }
}

impl Drop for BundledApiserver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How a stock kubelet is run.
pub struct KubeletOptions<'a> {
    pub node_name: &'a str,
    /// `unix:///path`.
    pub runtime_endpoint: String,
    /// Extra KubeletConfiguration lines (YAML, top level).
    pub extra_config: &'a str,
}

/// The kubelet's settings on a shared host: the sysctls it sets at start
/// (protectKernelDefaults false), restored when it is gone.
const KUBELET_SYSCTLS: [&str; 3] = [
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
];

/// A stock kubelet with its own root dir, cert dir, ports and cgroupRoot.
pub struct StockKubelet {
    child: Option<Child>,
    pub root: tempfile::TempDir,
    /// `/deckhand-stock-<pid>-<n>`: the kubelet's cgroupRoot.
    pub cgroup_root: String,
    sysctls: Vec<(String, String)>,
    pub port: u16,
}

impl StockKubelet {
    pub fn start(bin: &Path, plane: &dyn ControlPlane, options: KubeletOptions<'_>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let sysctls = KUBELET_SYSCTLS
            .iter()
            .filter_map(|k| {
                let v = std::fs::read_to_string(Path::new("/proc/sys").join(k)).ok()?;
                Some((k.to_string(), v.trim().to_string()))
            })
            .collect();
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let cgroup_root = format!(
            "/deckhand-stock-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        // The kubelet refuses a cgroupRoot that does not exist.
        deckhand::sys::cgroup::create(cgroup_root.trim_start_matches('/'))
            .expect("kubelet cgroupRoot");
        let port = free_ports(2);
        let config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: {endpoint}
cgroupDriver: cgroupfs
cgroupsPerQOS: true
cgroupRoot: {cgroup_root}
failCgroupV1: false
failSwapOn: false
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
podLogsDir: {logs}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
{extra}
",
            endpoint = options.runtime_endpoint,
            healthz = port + 1,
            logs = root.path().join("pod-logs").display(),
            ca = plane.client_ca().display(),
            extra = options.extra_config,
        );
        std::fs::write(root.path().join("config.yaml"), config).unwrap();
        let log = std::fs::File::create(root.path().join("kubelet.log")).unwrap();
        let child = Command::new(bin.join("kubelet"))
            .arg("--config")
            .arg(root.path().join("config.yaml"))
            .arg("--kubeconfig")
            .arg(plane.node_kubeconfig())
            .arg("--root-dir")
            .arg(root.path().join("root"))
            .arg("--cert-dir")
            .arg(root.path().join("pki"))
            .args([
                "--hostname-override",
                options.node_name,
                "--node-ip",
                "127.0.0.1",
                "--v=2",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting the stock kubelet");
        StockKubelet {
            child: Some(child),
            root,
            cgroup_root,
            sysctls,
            port,
        }
    }

    /// The kubelet's distinct errors (the last 25), then its last lines:
    /// a kubelet repeats the same few errors many times a second.
    pub fn log_tail(&self) -> String {
        let path = self.root.path().join("kubelet.log");
        let body = std::fs::read_to_string(&path).unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        let mut errors: Vec<&str> = body
            .lines()
            .rev()
            .filter(|l| l.starts_with('E'))
            .filter(|l| {
                let message = l.split_once("] ").map_or(*l, |(_, m)| m);
                seen.insert(message.chars().take(100).collect::<String>())
            })
            .take(25)
            .collect();
        errors.reverse();
        format!(
            "{}\n--- last lines ---\n{}",
            errors.join("\n"),
            tail(&path, 15)
        )
    }

    /// The kubelet's process id, while it runs (the node benchmark reads
    /// its RSS and CPU).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Still running (not exited).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGTERM, up to 20 s, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for StockKubelet {
    fn drop(&mut self) {
        self.stop();
        // Its mounts under the root dir (the rshared bind of the root onto
        // itself, tmpfs of projected volumes), deepest first.
        let root = self.root.path().to_string_lossy().into_owned();
        let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| p.starts_with(&root))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for (key, value) in &self.sysctls {
            let _ = std::fs::write(Path::new("/proc/sys").join(key), value);
        }
        remove_cgroup_tree(&self.cgroup_root);
    }
}

/// Removes a cgroup and everything below it, deepest first, in every
/// hierarchy (v1 controllers, a hybrid host's v2 tree, or the v2 root).
pub fn remove_cgroup_tree(cgroup: &str) {
    let relative = cgroup.trim_start_matches('/');
    let mut roots = vec![];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                roots.push(e.path());
            }
        }
    }
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    // A nested test host keeps memory cgroups under /process_api/<id>.
    if let Ok(nested) = std::fs::read_dir("/sys/fs/cgroup/memory/process_api") {
        roots.extend(nested.flatten().map(|e| e.path()));
    }
    for root in roots {
        let top = root.join(relative);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = vec![];
        collect_dirs(&top, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let body = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = body.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `ready` until it holds, or panics after `timeout` naming `what`.
pub fn wait_for(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `kubectl --kubeconfig K ARGS`: (success, stdout, stderr).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    kubectl_with_stdin(kubeconfig, args, None)
}

pub fn kubectl_with_stdin(
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut cmd = Command::new(KUBECTL);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "30s"])
        .args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running kubectl");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The exit code of `kubectl ARGS`.
pub fn kubectl_code(kubeconfig: &Path, args: &[&str]) -> Option<i32> {
    Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .code()
}

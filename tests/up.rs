//! `deckhand up` end to end: the quickstart a Kubernetes introduction
//! teaches, walked with the real kubectl against a `deckhand up` process
//! the test starts, then a restart on the same data dir (pods keep running
//! and are re-adopted), and the bad input `up` must refuse with one line.
//! Run as root, holding /tmp/deckhand-integration.lock.
//!
//! Each `up` gets its own data dir, ports, node name, containerd namespace
//! (on the shared containerd), CNI bridge and subnet 10.232.<index>.0/24,
//! cgroup root and CRI socket, all removed on drop.

#[path = "up/bad_input.rs"]
mod bad_input;
mod common;
#[path = "up/two_nodes.rs"]
mod two_nodes;
#[path = "up/workloads.rs"]
mod workloads;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::cleanup;
use common::node::{ControlPlane, wait_for};
use common::pod::{CNI_BIN_DIR, TestPod};
use serde_json::Value;

const OCTET: u8 = 232;
const BIN: &str = env!("CARGO_BIN_EXE_deckhand");

/// A `deckhand up` of this test.
struct Up {
    name: String,
    dir: tempfile::TempDir,
    net: TestPod,
    namespace: String,
    port: u16,
    _hosts: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
    /// Started with a containerd socket nobody serves: `up` runs its own.
    own_containerd: bool,
    /// Runs the service proxy (its nftables table is the machine's one:
    /// only one `up` of the tests at a time may).
    proxy: bool,
}

impl Up {
    fn new(name: &str, index: u8) -> Self {
        common::require_environment();
        let dir = cleanup::temp_dir();
        let net = TestPod::new("dhup", OCTET, index);
        let namespace = cleanup::test_namespace(name);
        let port = common::stock::free_ports(2);
        let hosts = common::registry_config(&[]);
        let d = dir.path();
        let args: Vec<String> = vec![
            "up".into(),
            format!("--data-dir={}", d.join("data").display()),
            format!("--node-name={name}"),
            format!("--listen=127.0.0.1:{port}"),
            format!("--kubelet-port={}", port + 1),
            format!("--containerd={}", common::CONTAINERD_SOCKET),
            format!("--containerd-namespace={namespace}"),
            format!("--cri-listen=unix://{}", d.join("cri.sock").display()),
            format!("--cni-conf-dir={}", net.conf.path().display()),
            format!("--cni-bin-dir={CNI_BIN_DIR}"),
            format!("--cgroup-root={}", net.cgroup_parent),
            format!("--run-dir={}", d.join("run").display()),
            format!("--registry-config-dir={}", hosts.path().display()),
            "--node-ip=127.0.0.1".into(),
            "--proxy-mode=none".into(),
            "--log-level=info,deckhand=debug".into(),
        ];
        Up {
            name: name.into(),
            dir,
            net,
            namespace,
            port,
            _hosts: hosts,
            args,
            child: None,
            own_containerd: false,
            proxy: false,
        }
    }

    /// The same, with the service proxy on.
    fn with_proxy(name: &str, index: u8) -> Self {
        let mut up = Up::new(name, index);
        up.args.retain(|a| a != "--proxy-mode=none");
        up.proxy = true;
        up
    }

    /// The same, but pointed at a containerd socket nobody serves, so
    /// that `up` starts (and supervises) a containerd of its own.
    fn with_own_containerd(name: &str, index: u8) -> Self {
        let mut up = Up::new(name, index);
        let nobody = up.dir.path().join("nobody.sock");
        for a in up.args.iter_mut() {
            if a.starts_with("--containerd=") {
                *a = format!("--containerd={}", nobody.display());
            }
        }
        up.own_containerd = true;
        up
    }

    /// The apiserver listens on `ip` (an address of this host) instead of
    /// 127.0.0.1; the kubeconfigs `up` writes name it.
    fn listen_on(&mut self, ip: std::net::Ipv4Addr) {
        for a in self.args.iter_mut() {
            if a.starts_with("--listen=") {
                *a = format!("--listen={ip}:{}", self.port);
            }
        }
    }

    /// Processes of the containerd `up` started (its config path is on
    /// their command lines).
    fn own_containerd_processes(&self) -> Vec<u32> {
        cleanup::processes_mentioning(&self.data_dir().join("containerd").to_string_lossy())
    }

    /// ctr against the containerd this `up` uses.
    fn ctr(&self, args: &[&str]) -> String {
        if !self.own_containerd {
            return common::ctr(&self.namespace, args);
        }
        let sock = self.data_dir().join("containerd/containerd.sock");
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .args(["--namespace", &self.namespace])
            .args(args)
            .output()
            .expect("run ctr");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `up` and waits for its line saying the node is Ready.
    fn start(&mut self) {
        let out = self.dir.path().join("up.out");
        let from = std::fs::read_to_string(&out).unwrap_or_default().len();
        let append = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        let child = Command::new(BIN)
            .args(&self.args)
            .stdout(append(&out))
            .stderr(append(&self.dir.path().join("up.log")))
            .spawn()
            .expect("start deckhand up");
        self.child = Some(child);
        wait_for(
            "deckhand up to say the node is Ready",
            Duration::from_secs(120),
            || self.log(),
            || {
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                let ours = &text[from.min(text.len())..];
                if let Some(c) = self.child.as_ref()
                    && !Path::new(&format!("/proc/{}", c.id())).exists()
                {
                    panic!("deckhand up exited\n{}", self.log());
                }
                ours.contains("is Ready").then_some(())
            },
        );
    }

    /// SIGTERM, and its exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "deckhand up did not stop within 60 s of SIGTERM\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.out")).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl ControlPlane for Up {
    fn admin_kubeconfig(&self) -> PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }
    fn node_kubeconfig(&self, _node: &str) -> PathBuf {
        self.data_dir().join("node.kubeconfig")
    }
    fn dir(&self) -> &Path {
        self.dir.path()
    }
    fn client_ca(&self) -> PathBuf {
        self.data_dir().join("apiserver/pki/ca.crt")
    }
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let mut out = format!("--- stdout\n{}--- stderr (tail)\n", self.stdout());
        for l in tail.into_iter().rev() {
            out += l;
            out += "\n";
        }
        out
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // The node removes its pods (containers, sandboxes, log dirs) when
        // they are deleted; then `up` stops and what is left is forced.
        if self.running() {
            // Controllers first, so that no pod is made again.
            let _ = self.kubectl(&[
                "delete",
                "deployments,replicasets,replicationcontrollers",
                "--all",
                "--all-namespaces",
                "--cascade=orphan",
            ]);
            let _ = self.kubectl(&[
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=1",
                "--timeout=60s",
                "--wait=true",
            ]);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline
                && !self.ctr(&["containers", "ls", "-q"]).trim().is_empty()
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            self.stop();
        }
        if self.own_containerd {
            let left = cleanup::wait_gone(&self.own_containerd_processes());
            if !left.is_empty() {
                cleanup::kill_processes_mentioning(
                    &self.data_dir().join("containerd").to_string_lossy(),
                );
                cleanup::leftover(&format!(
                    "the containerd of {} left running: {left:?}",
                    self.name
                ));
            }
        } else {
            common::remove_namespace(&self.namespace);
        }
        // A stopped proxy removes its table: one still there was left.
        if self.proxy
            && Command::new("nft")
                .args(["delete", "table", "ip", "deckhand-proxy"])
                .output()
                .is_ok_and(|o| o.status.success())
        {
            cleanup::leftover(&format!("the proxy table of {}", self.name));
        }
        cleanup::remove_pod_log_dirs(&format!("default_{}-", self.name));
        // Pods of a namespace named after the node.
        cleanup::remove_pod_log_dirs(&format!("{}_", self.name));
        if let Err(e) = cleanup::remove_cgroup_tree(&self.net.cgroup_parent) {
            cleanup::leftover(&format!("cgroups of {}: {e}", self.name));
        }
        cleanup::unmount_under(self.dir.path());
    }
}

/// A unique node name for this run.
fn node_name(test: &str) -> String {
    format!("up11-{test}-{}", std::process::id())
}

fn phase(p: &Value) -> String {
    p["status"]["phase"].as_str().unwrap_or("").to_string()
}

fn wait_pod(up: &Up, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(
        &format!("pod {name}: {what}"),
        Duration::from_secs(120),
        || {
            format!(
                "pod: {}\nevents: {:?}\n{}",
                up.pod(name)
                    .map(|p| p["status"].to_string())
                    .unwrap_or_default(),
                up.events_of(name),
                up.log()
            )
        },
        || up.pod(name).filter(|p| check(p)),
    )
}

fn kubectl_create_file(up: &Up, yaml: &str) {
    let path = up.dir().join("pod.yaml");
    std::fs::write(&path, yaml).unwrap();
    up.ok(&["create", "-f", path.to_str().unwrap()]);
}

/// The row of `name` in a table kubectl printed, split on whitespace.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
        .split_whitespace()
        .collect()
}

fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

/// What an introduction to Kubernetes walks, then a restart that keeps the
/// pods and objects, then a second `up` on the same data dir refused.
#[test]
fn quickstart_with_kubectl_then_a_restart_keeps_pods_running() {
    let name = node_name("quick");
    let mut up = Up::new(&name, 1);
    up.start();
    let stdout = up.stdout();
    assert!(
        stdout.contains(&format!(
            "export KUBECONFIG={}",
            up.admin_kubeconfig().display()
        )),
        "{stdout}"
    );

    let version = up.ok(&["version"]);
    assert!(version.contains("Server Version: v1."), "{version}");
    let info = up.ok(&["cluster-info"]);
    assert!(
        info.contains(&format!("is running at https://127.0.0.1:{}", up.port)),
        "{info}"
    );

    let nodes = up.ok(&["get", "nodes"]);
    assert_eq!(
        header(&nodes),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    );
    assert_eq!(row(&nodes, &name)[1], "Ready", "{nodes}");
    let labels = up.ok(&["get", "nodes", "--show-labels"]);
    assert!(
        labels.contains(&format!("kubernetes.io/hostname={name}")),
        "{labels}"
    );
    up.ok(&["label", "nodes", &name, "disktype=ssd"]);
    let ssd = up.ok(&["get", "nodes", "-l", "disktype=ssd", "-o", "name"]);
    assert_eq!(ssd.trim(), format!("node/{name}"));

    // A pod from YAML, env and command/args, restartPolicy Never.
    let echo = format!("{name}-echo");
    kubectl_create_file(
        &up,
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {echo}
spec:
  nodeSelector:
    disktype: ssd
  restartPolicy: Never
  containers:
  - name: hello
    image: {image}
    env:
    - name: MESSAGE
      value: hello from deckhand up
    command: [\"/bin/sh\", \"-c\"]
    args: ['/bin/echo \"$MESSAGE\"']
",
            image = common::BUSYBOX
        ),
    );
    let pod = wait_pod(&up, &echo, "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(
        pod["spec"]["nodeName"],
        name.as_str(),
        "scheduled onto the node"
    );
    // Events go out by queues of their own, after the status.
    wait_for(
        "a Scheduled event",
        Duration::from_secs(60),
        || format!("{:?}", up.events_of(&echo)),
        || {
            up.events_of(&echo)
                .iter()
                .any(|e| e.starts_with("Normal Scheduled:"))
                .then_some(())
        },
    );
    // Its output, where the node writes it (the log driver may still be
    // writing it when the exit is posted), and through kubectl (the
    // apiserver proxies to the node's kubelet API).
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let path = format!("/var/log/pods/default_{echo}_{uid}/hello/0.log");
    wait_for(
        "the container's log line",
        Duration::from_secs(60),
        || std::fs::read_to_string(&path).unwrap_or_default(),
        || {
            std::fs::read_to_string(&path)
                .ok()
                .filter(|l| l.contains("stdout F hello from deckhand up"))
        },
    );
    assert_eq!(up.ok(&["logs", &echo]), "hello from deckhand up\n");

    let pods = up.ok(&["get", "pods"]);
    assert_eq!(
        header(&pods),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let r = row(&pods, &echo);
    assert_eq!(&r[1..4], ["0/1", "Completed", "0"], "{pods}");
    let wide = up.ok(&["get", "pods", "-o", "wide"]);
    let r = row(&wide, &echo);
    assert!(r[5].starts_with(&up.net.subnet_prefix), "IP in {wide}");
    assert_eq!(r[6], name, "NODE in {wide}");
    wait_for(
        "describe with the Pulled, Created and Started events",
        Duration::from_secs(60),
        || up.ok(&["describe", "pod", &echo]),
        || {
            let described = up.ok(&["describe", "pod", &echo]);
            (described.contains("Events:")
                && ["Pulled", "Created", "Started"]
                    .iter()
                    .all(|r| described.contains(r)))
            .then_some(())
        },
    );

    up.ok(&["label", "pod", &echo, "role=backend"]);
    let by_role = up.ok(&["get", "pods", "-Lrole"]);
    assert_eq!(header(&by_role).last(), Some(&"ROLE"), "{by_role}");
    assert_eq!(row(&by_role, &echo).last(), Some(&"backend"), "{by_role}");
    let refused = up.kubectl(&["label", "pod", &echo, "role=frontend"]);
    assert!(!refused.status.success(), "relabel without --overwrite");
    up.ok(&["label", "--overwrite", "pod", &echo, "role=frontend"]);
    assert_eq!(
        row(&up.ok(&["get", "pods", "-Lrole"]), &echo).last(),
        Some(&"frontend")
    );
    up.ok(&["label", "pod", &echo, "role-"]);
    assert!(up.pod(&echo).unwrap()["metadata"]["labels"]["role"].is_null());

    assert_eq!(up.ok(&["get", "--raw", "/healthz"]).trim(), "ok");

    // Nothing matches this nodeSelector: Pending, with kube-scheduler's message.
    let nowhere = format!("{name}-nowhere");
    up.create(&serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": nowhere},
        "spec": {"nodeSelector": {"disktype": "tape"},
                 "containers": [{"name": "c", "image": common::BUSYBOX}]}}));
    let failed = wait_for(
        "a FailedScheduling event",
        Duration::from_secs(60),
        || up.log(),
        || {
            up.events_of(&nowhere)
                .into_iter()
                .find(|e| e.starts_with("Warning FailedScheduling:"))
        },
    );
    assert!(failed.contains("0/1 nodes are available"), "{failed}");
    let pending = up.pod(&nowhere).unwrap();
    assert_eq!(phase(&pending), "Pending");
    assert!(pending["spec"]["nodeName"].is_null(), "{pending}");
    up.ok(&["delete", "pod", &nowhere]);

    // A pod that keeps running, for the restart.
    let sleeper = format!("{name}-sleeper");
    kubectl_create_file(
        &up,
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {sleeper}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleep
    image: {image}
    command: [\"sleep\", \"3600\"]
",
            image = common::BUSYBOX
        ),
    );
    let running = wait_pod(&up, &sleeper, "Running", |p| {
        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    let container_id = running["status"]["containerStatuses"][0]["containerID"].clone();
    assert!(container_id.is_string(), "{running}");

    up.ok(&["delete", "pod", &echo]);
    assert!(up.pod(&echo).is_none());

    // Stopped, the pod keeps running; started again, it is adopted.
    let status = up.stop();
    assert!(status.success(), "up exited with {status}\n{}", up.log());
    assert!(
        up.stdout().contains("deckhand up: stopped"),
        "{}",
        up.stdout()
    );
    let tasks = up.ctr(&["tasks", "ls"]);
    assert!(tasks.contains("RUNNING"), "the container survives: {tasks}");
    up.start();
    let adopted = wait_pod(&up, &sleeper, "still Running after the restart", |p| {
        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    let cs = &adopted["status"]["containerStatuses"][0];
    assert_eq!(cs["containerID"], container_id, "{adopted}");
    assert_eq!(cs["restartCount"], 0, "{adopted}");
    let node = up.get(&["node", &name]).unwrap();
    assert_eq!(
        node["metadata"]["labels"]["disktype"], "ssd",
        "objects are kept"
    );

    // A second `up` on the same data dir refuses, with the lock's message
    // (checked before anything else, the port included).
    let second = Command::new(BIN).args(&up.args).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "second up ran: {err}");
    assert!(err.contains("another `deckhand up`"), "{err}");
    assert!(err.contains("is running on data dir"), "{err}");
    assert!(up.running(), "the first one is untouched");

    up.ok(&["delete", &format!("pods/{sleeper}")]);
    assert!(up.pod(&sleeper).is_none());
}

/// With no containerd on its socket, `up` starts one of its own (state
/// under the data dir), runs pods on it, and stops it on exit.
#[test]
fn without_containerd_up_supervises_its_own() {
    let name = node_name("ownctd");
    let mut up = Up::with_own_containerd(&name, 2);
    up.start();
    let stdout = up.stdout();
    assert!(stdout.contains("no containerd on"), "{stdout}");
    assert!(stdout.contains("containerd/containerd.sock"), "{stdout}");
    let pids = up.own_containerd_processes();
    assert!(!pids.is_empty(), "containerd runs");
    assert!(up.data_dir().join("containerd/root").is_dir());

    let pod = format!("{name}-sleeper");
    up.create(&serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod},
        "spec": {"nodeName": name, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "sleep", "image": common::BUSYBOX,
                                 "command": ["sleep", "3600"]}]}}));
    wait_pod(&up, &pod, "Running", |p| {
        p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    });
    assert!(up.ctr(&["tasks", "ls"]).contains("RUNNING"));

    // Killed, containerd is started again by `up`.
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    wait_for(
        "containerd restarted",
        Duration::from_secs(60),
        || up.log(),
        || {
            let now = up.own_containerd_processes();
            (!now.is_empty()
                && now.iter().all(|p| !pids.contains(p))
                && up.ctr(&["version"]).contains("Server"))
            .then_some(())
        },
    );

    up.ok(&["delete", "pod", &pod, "--grace-period=1"]);
    wait_for(
        "the pod's containers removed",
        Duration::from_secs(60),
        || up.log(),
        || {
            up.ctr(&["containers", "ls", "-q"])
                .trim()
                .is_empty()
                .then_some(())
        },
    );
    let status = up.stop();
    assert!(status.success(), "{status}\n{}", up.log());
    let left = cleanup::wait_gone(&up.own_containerd_processes());
    assert!(left.is_empty(), "containerd stopped with up: {left:?}");
}

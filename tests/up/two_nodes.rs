//! Two nodes on one `deckhand up`: its own, and a second `deckhand node`
//! in a network namespace the test makes (a veth pair to the host, an
//! address of its own, a registry forwarder on the host end), with its own
//! root dir, CRI state, in-process runtime and containerd namespace. The
//! scheduler spreads pods over both, a nodeSelector picks the labelled
//! one, and a stopped agent's node goes NotReady by its Lease.
//!
//! Teardown holds when the test fails: the node's pods are deleted (or,
//! when it is stopped, its containerd namespace purged and its cgroups
//! emptied), the agent killed, its mounts and log dirs removed, the
//! namespace and veths deleted. A namespace a crashed run left is swept
//! before the next one is made.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::node::{ControlPlane, condition, wait_for};
use super::common::pod::{CNI_BIN_DIR, TestPod};
use super::common::{self, cleanup};
use super::{BIN, OCTET, Up, node_name, phase, wait_pod};

/// This run's network namespaces: `deckhand-up-test-<pid>-<name>`.
const NETNS_PREFIX: &str = "deckhand-up-test-";

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Kills what runs in network namespace `name` and deletes it (its veth
/// ends and bridges go with it).
fn remove_netns(name: &str) -> Result<(), String> {
    if !netns_exists(name) {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pids = ip(&["netns", "pids", name]).unwrap_or_default();
        let pids: Vec<i32> = pids.lines().filter_map(|p| p.trim().parse().ok()).collect();
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("processes in netns {name} stay: {pids:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ip(&["netns", "del", name])?;
    Ok(())
}

/// Namespaces of earlier runs of this binary whose process is gone.
fn sweep_earlier_netns() {
    let ours = std::process::id();
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != ours
            && !Path::new(&format!("/proc/{pid}")).exists()
            && let Err(e) = remove_netns(&name)
        {
            eprintln!("sweep: netns {name} of an earlier run: {e}");
        }
    }
}

/// A network namespace joined to the host by a veth pair: the host end
/// 10.<OCTET>.250.1/30, the namespace's 10.<OCTET>.250.2/30; and, on the
/// host end, a TCP forwarder to the local registry (which listens on the
/// host's loopback only), for the node's own pulls.
struct Netns {
    name: String,
    host_veth: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
    registry: u16,
}

impl Netns {
    fn new(tag: &str) -> Self {
        sweep_earlier_netns();
        let pid = std::process::id();
        let name = format!("{NETNS_PREFIX}{pid}-{tag}");
        let host_veth = format!("dhupv{}h", pid % 10000);
        let ns_veth = format!("dhupv{}n", pid % 10000);
        let (host_ip, ns_ip) = (
            Ipv4Addr::new(10, OCTET, 250, 1),
            Ipv4Addr::new(10, OCTET, 250, 2),
        );
        // Made first, so that a failure below still removes what was made.
        let mut netns = Netns {
            name: name.clone(),
            host_veth: host_veth.clone(),
            host_ip,
            ns_ip,
            registry: 0,
        };
        let steps: [&[&str]; 6] = [
            &["netns", "add", &name],
            &[
                "link", "add", &host_veth, "type", "veth", "peer", "name", &ns_veth, "netns", &name,
            ],
            &["addr", "add", &format!("{host_ip}/30"), "dev", &host_veth],
            &["link", "set", &host_veth, "up"],
            &[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_ip}/30"),
                "dev",
                &ns_veth,
            ],
            &["-n", &name, "link", "set", &ns_veth, "up"],
        ];
        for step in steps {
            ip(step).unwrap_or_else(|e| panic!("making netns {name}: {e}"));
        }
        ip(&["-n", &name, "link", "set", "lo", "up"]).expect("loopback up in the netns");
        netns.registry = forward(host_ip, common::REGISTRY);
        netns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = remove_netns(&self.name) {
            cleanup::leftover(&e);
        }
        if cleanup::link_exists(&self.host_veth) {
            let _ = ip(&["link", "del", &self.host_veth]);
        }
        if netns_exists(&self.name) || cleanup::link_exists(&self.host_veth) {
            cleanup::leftover(&format!(
                "netns {} or veth {} left",
                self.name, self.host_veth
            ));
        }
    }
}

/// Forwards connections to `ip`:<a free port> to `to`, for the life of the
/// test binary; the port.
fn forward(ip: Ipv4Addr, to: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("a forwarder port on the veth");
    let port = listener.local_addr().unwrap().port();
    let to = to.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(inbound) = conn else { return };
            let Ok(outbound) = TcpStream::connect(&to) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut into: TcpStream| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            };
            match (inbound.try_clone(), outbound.try_clone()) {
                (Ok(i2), Ok(o2)) => {
                    pipe(inbound, outbound);
                    pipe(o2, i2);
                }
                _ => continue,
            }
        }
    });
    port
}

/// A `deckhand node` in `netns`, joined to `up`.
struct SecondNode {
    name: String,
    dir: tempfile::TempDir,
    namespace: String,
    net: TestPod,
    _hosts: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
    admin: PathBuf,
}

impl SecondNode {
    fn start(up: &Up, netns: &Netns, name: &str, kubeconfig: &Path, index: u8) -> Self {
        let dir = cleanup::temp_dir();
        let net = TestPod::new("dhup", OCTET, index);
        let namespace = cleanup::test_namespace(name);
        let registry = format!(
            "server = \"https://registry.k8s.io\"\n[host.\"http://{}:{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            netns.host_ip, netns.registry
        );
        let hosts = common::registry_config(&[("registry.k8s.io", &registry)]);
        let d = dir.path();
        let args = vec![
            format!("--net=/run/netns/{}", netns.name),
            BIN.to_string(),
            "node".into(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--hostname-override={name}"),
            format!("--node-ip={}", netns.ns_ip),
            format!("--address={}", netns.ns_ip),
            format!("--port={}", common::stock::free_ports(1)),
            format!("--client-ca-file={}", up.client_ca().display()),
            format!("--root-dir={}", d.join("root").display()),
            format!("--state-dir={}", d.join("state").display()),
            format!("--run-dir={}", d.join("run").display()),
            format!("--containerd-namespace={namespace}"),
            format!("--cni-conf-dir={}", net.conf.path().display()),
            format!("--cni-bin-dir={CNI_BIN_DIR}"),
            format!("--cgroup-root={}", net.cgroup_parent),
            format!("--registry-config-dir={}", hosts.path().display()),
            "--log-level=info,deckhand=debug".into(),
        ];
        let mut node = SecondNode {
            name: name.into(),
            dir,
            namespace,
            net,
            _hosts: hosts,
            args,
            child: None,
            admin: up.admin_kubeconfig(),
        };
        let log = std::fs::File::create(node.dir.path().join("node.log")).unwrap();
        // nsenter joins the network namespace only (`ip netns exec` would
        // also remount /sys, hiding the cgroup tree) and execs the node.
        node.child = Some(
            Command::new("nsenter")
                .args(&node.args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start deckhand node in the netns"),
        );
        node
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGTERM, and waits for it to exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("deckhand node did not stop within 60 s\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(common::node::KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn holds_containers(&self) -> bool {
        !common::ctr(&self.namespace, &["containers", "ls", "-q"])
            .trim()
            .is_empty()
    }
}

impl Drop for SecondNode {
    fn drop(&mut self) {
        let selector = format!("spec.nodeName={}", self.name);
        if self.running() {
            // The node tears its pods down itself when they are deleted.
            let _ = self.kubectl(&cleanup::delete_pods_args(&selector));
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && self.holds_containers() {
                std::thread::sleep(Duration::from_millis(200));
            }
        } else {
            // Nobody will confirm their deletion: force it.
            let _ = self.kubectl(&[
                "delete",
                "pods",
                "-A",
                "--field-selector",
                &selector,
                "--grace-period=0",
                "--force",
                "--wait=false",
            ]);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // What a stopped node left: tasks and shims (the namespace), infra
        // processes (the cgroups), namespace pins (mounts), log dirs.
        common::remove_namespace(&self.namespace);
        if let Err(e) = cleanup::remove_cgroup_tree(&self.net.cgroup_parent) {
            cleanup::leftover(&format!("cgroups of node {}: {e}", self.name));
        }
        cleanup::unmount_under(self.dir.path());
        cleanup::remove_pod_log_dirs(&format!("default_{}-", self.name));
        // The network namespace (and the bridge CNI made in it) goes with
        // its `Netns`, dropped after the `Up`.
        let _ = self.kubectl(&["delete", "node", &self.name, "--wait=false"]);
    }
}

fn sleeper(name: &str, spec_extra: Value) -> Value {
    let mut spec = json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": common::BUSYBOX,
            "command": ["sh", "-c", "echo up on $(hostname); exec sleep 3600"],
            "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}}}]
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn running(p: &Value) -> bool {
    p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

/// The Node's Ready condition status ("True", "False", "Unknown").
fn ready_status(up: &Up, node: &str) -> String {
    up.get(&["node", node])
        .and_then(|n| {
            condition(&n, "Ready").map(|c| c["status"].as_str().unwrap_or("").to_string())
        })
        .unwrap_or_default()
}

#[test]
fn a_second_node_in_its_own_netns_gets_pods_and_goes_not_ready_when_stopped() {
    common::require_environment();
    let name = node_name("two");
    let second_name = format!("{name}-b");
    let netns = Netns::new("two");
    let mut up = Up::new(&name, 4);
    let kubeconfig = up.dir.path().join("second.kubeconfig");
    up.listen_on(netns.host_ip);
    up.args.push(format!(
        "--write-node-kubeconfig={second_name}={}",
        kubeconfig.display()
    ));
    up.start();
    let mut second = SecondNode::start(&up, &netns, &second_name, &kubeconfig, 5);
    let log = || format!("{}\n--- second node\n{}", up.log(), second.log());
    wait_for(
        "the second node Ready",
        Duration::from_secs(120),
        log,
        || (ready_status(&up, &second_name) == "True").then_some(()),
    );
    let node = up.get(&["node", &second_name]).unwrap();
    let addresses = node["status"]["addresses"].to_string();
    assert!(addresses.contains(&netns.ns_ip.to_string()), "{addresses}");

    // Four pods with requests, no nodeName: least-requested spreads them.
    let pods: Vec<String> = (0..4).map(|i| format!("{name}-spread{i}")).collect();
    for p in &pods {
        up.create(&sleeper(p, json!({})));
    }
    let mut on = std::collections::BTreeMap::<String, Vec<String>>::new();
    for p in &pods {
        let pod = wait_pod(&up, p, "Running", running);
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        on.entry(node).or_default().push(p.clone());
    }
    assert_eq!(
        on.keys().collect::<Vec<_>>(),
        [&name, &second_name],
        "pods spread over both nodes: {on:?}"
    );

    // A nodeSelector lands on the labelled node; its pod runs in the
    // second node's network and its log comes through the kubelet API
    // reached over the veth.
    up.ok(&["label", "nodes", &second_name, "deckhand.test/where=netns"]);
    let picked = format!("{name}-picked");
    up.create(&sleeper(
        &picked,
        json!({"nodeSelector": {"deckhand.test/where": "netns"}}),
    ));
    let pod = wait_pod(&up, &picked, "Running", running);
    assert_eq!(pod["spec"]["nodeName"], second_name.as_str(), "{pod}");
    let pod_ip = pod["status"]["podIP"].as_str().unwrap_or("");
    assert!(
        pod_ip.starts_with(&second.net.subnet_prefix),
        "pod IP {pod_ip} from the second node's network"
    );
    let logs = wait_for(
        "the picked pod's log through the apiserver",
        Duration::from_secs(60),
        log,
        || {
            let out = up.kubectl(&["logs", &picked]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.starts_with("up on ").then_some(text)
        },
    );
    assert_eq!(logs.trim(), format!("up on {picked}"));

    // The second agent stops: its Lease is no longer renewed, and the node
    // lifecycle controller marks the node NotReady (Ready=Unknown) with the
    // unreachable taint, and its pods not Ready; the first stays Ready.
    second.stop();
    let stopped = Instant::now();
    wait_for(
        "the stopped node's Ready=Unknown",
        Duration::from_secs(180),
        || up.log(),
        || (ready_status(&up, &second_name) == "Unknown").then_some(()),
    );
    eprintln!("NotReady {:?} after the agent stopped", stopped.elapsed());
    let nodes = up.ok(&["get", "nodes"]);
    let row: Vec<&str> = nodes
        .lines()
        .find(|l| l.starts_with(&format!("{second_name} ")))
        .unwrap_or_else(|| panic!("{nodes}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1], "NotReady", "{nodes}");
    let node = up.get(&["node", &second_name]).unwrap();
    let taints = node["spec"]["taints"].to_string();
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "{taints}"
    );
    assert_eq!(
        ready_status(&up, &name),
        "True",
        "the first node stays Ready"
    );
    wait_for(
        "the stopped node's pod marked not Ready",
        Duration::from_secs(60),
        || up.log(),
        || {
            let p = up.pod(&picked)?;
            (condition(&p, "Ready")?["status"] == "False").then_some(())
        },
    );
    assert_eq!(phase(&up.pod(&picked).unwrap()), "Running");
}

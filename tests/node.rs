//! End-to-end tests of `deckhand node`: the real `deckhand apiserver` (and
//! the stock kube-apiserver when ../shared/k8s is there), the real node agent
//! on real containerd, driven with /usr/bin/kubectl. Run as root, holding
//! /tmp/deckhand-integration.lock.
//!
//! Each test takes its own node name and CNI subnet 10.220.<index>.0/24.

mod common;

use std::time::{Duration, Instant};

use common::node::{ControlPlane, DeckhandApiserver, NodeAgent, Runtime, wait_for};
use serde_json::{Value, json};

const BUSYBOX: &str = common::BUSYBOX;
const OCTET: u8 = 220;

fn pod_manifest(name: &str, node: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = json!(node);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn busybox(name: &str, script: &str) -> Value {
    json!({"name": name, "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
           "command": ["sh", "-c", script]})
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn wait_node_ready(plane: &dyn ControlPlane, node: &NodeAgent) -> Value {
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
fn wait_pod(
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
                plane.pod(name).map(|p| p["status"].to_string()).unwrap_or_default(),
                plane.events_of(name),
                node.log()
            )
        },
        || plane.pod(name).filter(|p| check(p)),
    )
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

/// The Node registers with what the machine has, its Lease is renewed, and
/// a pod goes from `kubectl create` to Running with a correct status and is
/// deleted within its grace period.
fn node_runs_a_pod(plane: &dyn ControlPlane, node: &NodeAgent) {
    let n = wait_node_ready(plane, node);
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], node.name.as_str());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string());
    assert!(labels.get("node.kubernetes.io/instance-type").is_none());
    let status = &n["status"];
    assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
    assert_eq!(status["capacity"]["pods"], "110");
    assert!(status["capacity"]["cpu"].as_str().unwrap().parse::<u32>().unwrap() >= 1);
    assert!(status["allocatable"]["memory"].as_str().unwrap().ends_with("Ki"));
    let addresses = status["addresses"].as_array().unwrap();
    assert!(addresses.iter().any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1"));
    assert!(addresses.iter().any(|a| a["type"] == "Hostname"));
    for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&n, c).unwrap()["status"], "False", "{c}");
    }
    assert!(status["nodeInfo"]["kubeletVersion"].as_str().unwrap().starts_with("v1."));
    assert!(!status["nodeInfo"]["bootID"].as_str().unwrap().is_empty());
    assert!(status["nodeInfo"]["containerRuntimeVersion"].as_str().unwrap().contains("://"));

    // The Lease: held by the node, 40 s, renewed (every 10 s).
    let lease = wait_for("the node's Lease", Duration::from_secs(30), || node.log(), || {
        plane.get(&["lease", "-n", "kube-node-lease", &node.name])
    });
    assert_eq!(lease["spec"]["holderIdentity"], node.name.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    wait_for("the Lease to be renewed", Duration::from_secs(25), || node.log(), || {
        let l = plane.get(&["lease", "-n", "kube-node-lease", &node.name])?;
        (l["spec"]["renewTime"].as_str()? != first).then_some(())
    });

    // A pod, Running with its IP and container status.
    plane.create(&pod_manifest(
        "web",
        &node.name,
        json!({"terminationGracePeriodSeconds": 5,
               "containers": [busybox("app", "trap 'exit 0' TERM; while true; do sleep 0.2; done")]}),
    ));
    let p = wait_pod(plane, node, "web", "Running", Duration::from_secs(90), |p| {
        phase(p) == "Running" && p["status"]["containerStatuses"][0]["ready"] == true
    });
    let st = &p["status"];
    let ip = st["podIP"].as_str().unwrap();
    assert!(ip.starts_with(&node.net.subnet_prefix), "pod IP {ip} not in the node's subnet");
    assert_eq!(st["podIPs"][0]["ip"], ip);
    assert_eq!(st["hostIP"], "127.0.0.1");
    assert!(st["startTime"].is_string());
    assert_eq!(st["qosClass"], "BestEffort");
    let cs = &st["containerStatuses"][0];
    assert_eq!(cs["name"], "app");
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(cs["started"], true);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    assert!(cs["containerID"].as_str().unwrap().contains("://"));
    assert!(cs["imageID"].as_str().is_some_and(|s| !s.is_empty()));
    for c in ["Initialized", "ContainersReady", "Ready", "PodScheduled"] {
        assert_eq!(condition(&p, c).map(|c| c["status"].clone()), Some(json!("True")), "{c}");
    }
    let events = plane.events_of("web");
    for reason in ["Pulled", "Created", "Started"] {
        assert!(
            events.iter().any(|e| e.contains(&format!(" {reason}:"))),
            "no {reason} event in {events:?}"
        );
    }

    // kubectl delete: SIGTERM, the container exits, the object goes.
    let started = Instant::now();
    plane.ok(&["delete", "pod", "web", "--wait=true", "--timeout=60s"]);
    let took = started.elapsed();
    assert!(plane.pod("web").is_none());
    assert!(took < Duration::from_secs(15), "deletion took {took:?} (grace 5 s)");
    let events = plane.events_of("web");
    assert!(events.iter().any(|e| e.contains("Killing:")), "no Killing event in {events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_process_runtime_runs_a_pod() {
    let plane = DeckhandApiserver::start(&["nd-inproc"]);
    let node = NodeAgent::start(&plane, "nd-inproc", Runtime::InProcess, OCTET, 1).await;
    node_runs_a_pod(&plane, &node);
}

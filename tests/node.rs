//! End-to-end tests of `deckhand node`: the real `deckhand apiserver` (and
//! the stock kube-apiserver when ../shared/k8s is there), the real node agent
//! on real containerd, driven with /usr/bin/kubectl. Run as root, holding
//! /tmp/deckhand-integration.lock.
//!
//! Each test takes its own node name and CNI subnet 10.220.<index>.0/24.

mod common;

use std::time::{Duration, Instant};

use common::node::{
    ControlPlane, DeckhandApiserver, NodeAgent, Runtime, busybox, condition, container_status,
    phase, pod_manifest, wait_for, wait_node_ready, wait_pod,
};
use serde_json::{Value, json};

const OCTET: u8 = 220;

/// The Node registers with what the machine has, its Lease is renewed, and
/// a pod goes from `kubectl create` to Running with a correct status and is
/// deleted within its grace period.
fn node_runs_a_pod(plane: &dyn ControlPlane, node: &NodeAgent) {
    node_runs_a_pod_on(plane, node, true)
}

/// `pod_network` false: the runtime has no CNI network (containerd's CRI
/// plugin without /etc/cni/net.d): the Node says so in Ready=False, and a
/// hostNetwork pod still runs, as with the kubelet.
fn node_runs_a_pod_on(plane: &dyn ControlPlane, node: &NodeAgent, pod_network: bool) {
    let n = if pod_network {
        wait_node_ready(plane, node)
    } else {
        wait_for(
            "the Node's Ready=False for the network",
            Duration::from_secs(60),
            || node.log(),
            || {
                let n = plane.get(&["node", &node.name])?;
                let ready = condition(&n, "Ready")?;
                (ready["status"] == "False"
                    && ready["message"].as_str()?.contains("network not ready"))
                .then_some(n)
            },
        )
    };
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], node.name.as_str());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string());
    assert!(labels.get("node.kubernetes.io/instance-type").is_none());
    let status = &n["status"];
    assert_eq!(
        status["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        node.port
    );
    assert_eq!(status["capacity"]["pods"], "110");
    assert!(
        status["capacity"]["cpu"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert!(
        status["allocatable"]["memory"]
            .as_str()
            .unwrap()
            .ends_with("Ki")
    );
    let addresses = status["addresses"].as_array().unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1")
    );
    assert!(addresses.iter().any(|a| a["type"] == "Hostname"));
    for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&n, c).unwrap()["status"], "False", "{c}");
    }
    assert!(
        status["nodeInfo"]["kubeletVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.")
    );
    assert!(!status["nodeInfo"]["bootID"].as_str().unwrap().is_empty());
    assert!(
        status["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .contains("://")
    );

    // The Lease: held by the node, 40 s, renewed (every 10 s).
    let lease = wait_for(
        "the node's Lease",
        Duration::from_secs(30),
        || node.log(),
        || plane.get(&["lease", "-n", "kube-node-lease", &node.name]),
    );
    assert_eq!(lease["spec"]["holderIdentity"], node.name.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    wait_for(
        "the Lease to be renewed",
        Duration::from_secs(25),
        || node.log(),
        || {
            let l = plane.get(&["lease", "-n", "kube-node-lease", &node.name])?;
            (l["spec"]["renewTime"].as_str()? != first).then_some(())
        },
    );

    // A pod, Running with its IP and container status.
    plane.create(&pod_manifest(
        "web",
        &node.name,
        json!({"terminationGracePeriodSeconds": 5, "hostNetwork": !pod_network,
               "containers": [busybox("app", "trap 'exit 0' TERM; while true; do sleep 0.2; done")]}),
    ));
    let p = wait_pod(
        plane,
        node,
        "web",
        "Running",
        Duration::from_secs(90),
        |p| phase(p) == "Running" && p["status"]["containerStatuses"][0]["ready"] == true,
    );
    let st = &p["status"];
    let ip = st["podIP"].as_str().unwrap();
    if pod_network {
        assert!(
            ip.starts_with(&node.net.subnet_prefix),
            "pod IP {ip} not in the node's subnet"
        );
    } else {
        assert_eq!(ip, "127.0.0.1", "a hostNetwork pod has the node's IP");
    }
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
        assert_eq!(
            condition(&p, c).map(|c| c["status"].clone()),
            Some(json!("True")),
            "{c}"
        );
    }
    // Events are posted after the fact, by a queue of their own.
    for reason in ["Pulled", "Created", "Started"] {
        wait_for(
            &format!("a {reason} event"),
            Duration::from_secs(60),
            || format!("{:?}", plane.events_of("web")),
            || {
                plane
                    .events_of("web")
                    .iter()
                    .any(|e| e.contains(&format!(" {reason}:")))
                    .then_some(())
            },
        );
    }

    // kubectl delete: SIGTERM, the container exits, the object goes.
    let started = Instant::now();
    plane.ok(&["delete", "pod", "web", "--wait=true", "--timeout=60s"]);
    let took = started.elapsed();
    assert!(plane.pod("web").is_none());
    assert!(
        took < Duration::from_secs(45),
        "deletion took {took:?} (grace 5 s; a bound for a hang on a loaded host)"
    );
    wait_event(plane, "web", |e| e.contains("Killing:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn in_process_runtime_runs_a_pod() {
    let plane = DeckhandApiserver::start(&["nd-inproc"]);
    let node = NodeAgent::start(&plane, "nd-inproc", Runtime::InProcess, OCTET, 1).await;
    node_runs_a_pod(&plane, &node);
}

/// Waits for an event on `pod` that `matches`: events are posted by a
/// queue of their own, after the status that the test saw.
fn wait_event(plane: &dyn ControlPlane, pod: &str, matches: impl Fn(&str) -> bool) {
    wait_for(
        &format!("an event on {pod}"),
        Duration::from_secs(60),
        || format!("events: {:?}", plane.events_of(pod)),
        || {
            plane
                .events_of(pod)
                .iter()
                .any(|e| matches(e))
                .then_some(())
        },
    );
}

fn terminated<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
    container_status(p, "containerStatuses", name)
        .map(|c| &c["state"]["terminated"])
        .filter(|t| t.is_object())
}

fn waiting_reason(p: &Value, name: &str) -> String {
    container_status(p, "containerStatuses", name)
        .and_then(|c| c["state"]["waiting"]["reason"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Every regular file under `dir` named `file` whose content is `value`.
fn find_cgroup_value(dir: &std::path::Path, file: &str, value: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if find_cgroup_value(&path, file, value) {
                return true;
            }
        } else if e.file_name() == file
            && std::fs::read_to_string(&path).is_ok_and(|s| s.trim() == value)
        {
            return true;
        }
    }
    false
}

/// The memory controller's directory for a cgroup path (v1 or v2).
fn memory_cgroup(path: &str) -> std::path::PathBuf {
    let base = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        std::path::PathBuf::from("/sys/fs/cgroup")
    } else {
        std::path::PathBuf::from("/sys/fs/cgroup/memory")
    };
    base.join(path.trim_start_matches('/'))
}

/// Restart policies, back-off, init containers, env, limits and QoS, an
/// active deadline, and bad input, all at once on one node: the agent keeps
/// serving every pod whatever the others do.
#[tokio::test(flavor = "multi_thread")]
async fn pods_run_as_their_specs_say() {
    let plane = DeckhandApiserver::start(&["nd-specs"]);
    let node = NodeAgent::start(&plane, "nd-specs", Runtime::InProcess, OCTET, 2).await;
    wait_node_ready(&plane, &node);
    let n = &node.name;
    plane.ok(&["create", "configmap", "cm", "--from-literal=k=v-from-cm"]);
    plane.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=k=v-from-secret",
    ]);
    let never = |name: &str, script: &str| {
        pod_manifest(
            name,
            n,
            json!({"restartPolicy": "Never", "containers": [busybox("app", script)]}),
        )
    };
    plane.create(&never("never-ok", "exit 0"));
    plane.create(&never("never-fail", "exit 3"));
    plane.create(&pod_manifest(
        "onfailure",
        n,
        json!({"restartPolicy": "OnFailure", "containers": [busybox("app", "exit 1")]}),
    ));
    plane.create(&pod_manifest(
        "crashloop",
        n,
        json!({"restartPolicy": "Always", "containers": [busybox("app", "exit 1")]}),
    ));
    plane.create(&pod_manifest(
        "init",
        n,
        json!({
        "initContainers": [busybox("i1", "sleep 1"), busybox("i2", "sleep 1")],
        "containers": [busybox("app", "sleep 3600")]}),
    ));
    let mut env_app = busybox(
        "app",
        "echo \"A=$A B=$B C=$C D=$D E=$E F=[$F]\"; sleep 3600",
    );
    env_app["env"] = json!([
        {"name": "A", "value": "hello"},
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "D", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
        {"name": "E", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}},
        {"name": "F", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": true}}},
    ]);
    plane.create(&pod_manifest("env", n, json!({"containers": [env_app]})));
    let mut guaranteed = busybox("app", "sleep 3600");
    guaranteed["resources"] = json!({"limits": {"cpu": "100m", "memory": "64Mi"}});
    plane.create(&pod_manifest(
        "guaranteed",
        n,
        json!({"containers": [guaranteed]}),
    ));
    let mut burstable = busybox("app", "sleep 3600");
    burstable["resources"] = json!({"requests": {"memory": "32Mi"}, "limits": {"memory": "96Mi"}});
    plane.create(&pod_manifest(
        "burstable",
        n,
        json!({"containers": [burstable]}),
    ));
    plane.create(&pod_manifest(
        "deadline",
        n,
        json!({"activeDeadlineSeconds": 5, "containers": [busybox("app", "sleep 3600")]}),
    ));
    plane.create(&pod_manifest(
        "bad-image",
        n,
        json!({"containers": [
        {"name": "app", "image": "127.0.0.1:5000/deckhand-no-such-image:1"}]}),
    ));
    let mut missing = busybox("app", "sleep 3600");
    missing["env"] =
        json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "missing"}}}]);
    plane.create(&pod_manifest(
        "missing-key",
        n,
        json!({"containers": [missing]}),
    ));

    let long = Duration::from_secs(120);
    let p = wait_pod(&plane, &node, "never-ok", "Succeeded", long, |p| {
        phase(p) == "Succeeded"
    });
    assert_eq!(terminated(&p, "app").unwrap()["exitCode"], 0);
    assert_eq!(terminated(&p, "app").unwrap()["reason"], "Completed");
    let p = wait_pod(&plane, &node, "never-fail", "Failed", long, |p| {
        phase(p) == "Failed"
    });
    assert_eq!(terminated(&p, "app").unwrap()["exitCode"], 3);
    assert_eq!(terminated(&p, "app").unwrap()["reason"], "Error");
    wait_pod(&plane, &node, "onfailure", "restarted", long, |p| {
        container_status(p, "containerStatuses", "app")
            .is_some_and(|c| c["restartCount"].as_u64() >= Some(1))
    });
    wait_pod(&plane, &node, "crashloop", "CrashLoopBackOff", long, |p| {
        waiting_reason(p, "app") == "CrashLoopBackOff"
    });
    wait_pod(&plane, &node, "crashloop", "restartCount >= 2", long, |p| {
        container_status(p, "containerStatuses", "app")
            .is_some_and(|c| c["restartCount"].as_u64() >= Some(2))
    });
    // Events are posted by a queue of their own, after the status.
    wait_for(
        "a BackOff event on crashloop",
        Duration::from_secs(60),
        || format!("events: {:?}", plane.events_of("crashloop")),
        || {
            plane
                .events_of("crashloop")
                .iter()
                .any(|e| e.contains("BackOff:"))
                .then_some(())
        },
    );

    // Init containers ran in order, each to completion, before the app.
    let p = wait_pod(&plane, &node, "init", "Running", long, |p| {
        phase(p) == "Running"
    });
    let done = |name: &str| {
        container_status(&p, "initContainerStatuses", name).unwrap()["state"]["terminated"].clone()
    };
    let (i1, i2) = (done("i1"), done("i2"));
    assert_eq!(
        (i1["exitCode"].clone(), i2["exitCode"].clone()),
        (json!(0), json!(0))
    );
    assert!(
        i1["finishedAt"].as_str().unwrap() <= i2["startedAt"].as_str().unwrap(),
        "{i1} {i2}"
    );
    let app_started = container_status(&p, "containerStatuses", "app").unwrap()["state"]["running"]
        ["startedAt"]
        .clone();
    assert!(i2["finishedAt"].as_str().unwrap() <= app_started.as_str().unwrap());
    assert_eq!(condition(&p, "Initialized").unwrap()["status"], "True");

    // Env values, as the container printed them to its log.
    let p = wait_pod(&plane, &node, "env", "Running", long, |p| {
        phase(p) == "Running"
    });
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let log = format!("/var/log/pods/default_env_{uid}/app/0.log");
    let line = wait_for(
        "the env pod's log",
        Duration::from_secs(30),
        || node.log(),
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|s| s.contains("A="))
        },
    );
    let want = format!("A=hello B=env C={ip} D=v-from-cm E=v-from-secret F=[]");
    assert!(line.contains(&want), "log {line:?} lacks {want:?}");

    // Limits in the cgroups, and the QoS class.
    let p = wait_pod(&plane, &node, "guaranteed", "Running", long, |p| {
        phase(p) == "Running"
    });
    assert_eq!(p["status"]["qosClass"], "Guaranteed");
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let dir = memory_cgroup(&format!("{}/kubepods/pod{uid}", node.net.cgroup_parent));
    assert!(dir.exists(), "no pod cgroup {}", dir.display());
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (file, value) = if v2 {
        ("memory.max", "67108864")
    } else {
        ("memory.limit_in_bytes", "67108864")
    };
    assert!(
        find_cgroup_value(&dir, file, value),
        "no {file} = {value} under {}",
        dir.display()
    );
    let p = wait_pod(&plane, &node, "burstable", "Running", long, |p| {
        phase(p) == "Running"
    });
    assert_eq!(p["status"]["qosClass"], "Burstable");
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let dir = memory_cgroup(&format!(
        "{}/kubepods/burstable/pod{uid}",
        node.net.cgroup_parent
    ));
    assert!(dir.exists(), "no pod cgroup {}", dir.display());
    assert!(find_cgroup_value(&dir, file, &(96u64 << 20).to_string()));

    let p = wait_pod(&plane, &node, "deadline", "Failed", long, |p| {
        phase(p) == "Failed"
    });
    assert_eq!(p["status"]["reason"], "DeadlineExceeded");

    // Bad input: the kubelet's waiting reasons, with an Event each.
    wait_pod(
        &plane,
        &node,
        "bad-image",
        "ErrImagePull/ImagePullBackOff",
        long,
        |p| {
            matches!(
                waiting_reason(p, "app").as_str(),
                "ErrImagePull" | "ImagePullBackOff"
            )
        },
    );
    wait_event(&plane, "bad-image", |e| {
        e.starts_with("Warning Failed: Failed to pull image")
    });
    let p = wait_pod(
        &plane,
        &node,
        "missing-key",
        "CreateContainerConfigError",
        long,
        |p| waiting_reason(p, "app") == "CreateContainerConfigError",
    );
    let message =
        container_status(&p, "containerStatuses", "app").unwrap()["state"]["waiting"]["message"]
            .clone();
    assert!(
        message.as_str().unwrap_or("").contains("missing"),
        "{message}"
    );
    wait_event(&plane, "missing-key", |e| {
        e.starts_with("Warning Failed: Error:")
    });
}

/// kill -9 of the agent with a pod running, then a restart: the pod's
/// container is adopted (same ID, restartCount 0) and new pods still run.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_restarts_no_container() {
    let plane = DeckhandApiserver::start(&["nd-kill"]);
    let mut node = NodeAgent::start(&plane, "nd-kill", Runtime::InProcess, OCTET, 3).await;
    wait_node_ready(&plane, &node);
    plane.create(&pod_manifest(
        "first",
        &node.name,
        json!({"containers": [busybox("app", "sleep 3600")]}),
    ));
    let before = wait_pod(
        &plane,
        &node,
        "first",
        "Running",
        Duration::from_secs(90),
        |p| phase(p) == "Running",
    );
    let id = container_status(&before, "containerStatuses", "app").unwrap()["containerID"].clone();
    node.kill9_and_restart();
    // Once a pod created after the restart runs, the agent has synced the
    // first one too (both come from the same initial list or watch).
    plane.create(&pod_manifest(
        "second",
        &node.name,
        json!({"containers": [busybox("app", "sleep 3600")]}),
    ));
    wait_pod(
        &plane,
        &node,
        "second",
        "Running",
        Duration::from_secs(90),
        |p| phase(p) == "Running",
    );
    let after = plane.pod("first").unwrap();
    let c = container_status(&after, "containerStatuses", "app").unwrap();
    assert_eq!(c["containerID"], id, "the container was replaced");
    assert_eq!(c["restartCount"], 0);
    assert_eq!(phase(&after), "Running");
}

#[tokio::test(flavor = "multi_thread")]
async fn deckhand_cri_socket_runs_a_pod() {
    let plane = DeckhandApiserver::start(&["nd-dhcri"]);
    let node = NodeAgent::start(&plane, "nd-dhcri", Runtime::DeckhandCri, OCTET, 4).await;
    node_runs_a_pod(&plane, &node);
}

/// containerd's own CRI plugin (shared with other tests: this node's pods
/// carry its unique name and are deleted before it stops).
#[tokio::test(flavor = "multi_thread")]
async fn containerd_cri_plugin_runs_a_pod() {
    let plane = DeckhandApiserver::start(&["nd-ctrd"]);
    let node = NodeAgent::start(&plane, "nd-ctrd", Runtime::ContainerdCri, OCTET, 5).await;
    // containerd's CNI config is the host's: this test does not write it.
    let network = std::fs::read_dir("/etc/cni/net.d").is_ok_and(|mut d| d.next().is_some());
    node_runs_a_pod_on(&plane, &node, network);
}

/// The drop-in claim: the stock kube-apiserver v1.36 with its Node
/// authorizer and NodeRestriction admission.
#[tokio::test(flavor = "multi_thread")]
async fn stock_apiserver_accepts_the_node() {
    let Some(k8s) = common::node::stock_k8s_dir() else {
        common::say_skipped(
            "stock_apiserver_accepts_the_node",
            "no stock Kubernetes binaries (../shared/k8s or DECKHAND_K8S_DIR)",
        );
        return;
    };
    // start-apiserver takes PORT to PORT+3 (etcd, kcm): all four must be free.
    let port = common::stock::free_ports(4);
    let plane = common::node::StockApiserver::start(&k8s, port, "nd-stock");
    let node = NodeAgent::start(&plane, "nd-stock", Runtime::InProcess, OCTET, 6).await;
    node_runs_a_pod(&plane, &node);
}

/// A container's image patched to another: kubelet's "definition changed"
/// restart (a Killing event, restartCount 1, the new image's imageID).
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_image_restarts_the_container() {
    let plane = DeckhandApiserver::start(&["nd-hash"]);
    let node = NodeAgent::start(&plane, "nd-hash", Runtime::InProcess, OCTET, 7).await;
    wait_node_ready(&plane, &node);
    plane.create(&pod_manifest(
        "hash",
        &node.name,
        json!({"terminationGracePeriodSeconds": 2,
               "containers": [busybox("app", "sleep 3600")]}),
    ));
    let before = wait_pod(
        &plane,
        &node,
        "hash",
        "Running",
        Duration::from_secs(90),
        |p| phase(p) == "Running",
    );
    let old = container_status(&before, "containerStatuses", "app")
        .unwrap()
        .clone();
    assert_eq!(old["restartCount"], 0);
    let image = format!("{}/deckhand/helpers:1", common::REGISTRY);
    let patch = json!([{"op": "replace", "path": "/spec/containers/0/image", "value": image}]);
    plane.ok(&[
        "patch",
        "pod",
        "hash",
        "--type=json",
        "-p",
        &patch.to_string(),
    ]);
    let after = wait_pod(
        &plane,
        &node,
        "hash",
        "the container restarted on the new image",
        Duration::from_secs(90),
        |p| {
            container_status(p, "containerStatuses", "app")
                .is_some_and(|c| c["restartCount"] == 1 && c["state"]["running"].is_object())
        },
    );
    let new = container_status(&after, "containerStatuses", "app").unwrap();
    assert_ne!(new["containerID"], old["containerID"]);
    assert_ne!(new["imageID"], old["imageID"], "{new}");
    assert!(
        new["image"].as_str().unwrap_or("").contains("helpers"),
        "{new}"
    );
    assert_eq!(phase(&after), "Running");
    wait_event(&plane, "hash", |e| {
        e == "Normal Killing: Container app definition changed, will be restarted"
    });
}

/// The bundled apiserver away for 15 s and back on the same port and data:
/// running pods are untouched, the Lease is renewed again, and a pod
/// created afterwards runs.
#[tokio::test(flavor = "multi_thread")]
async fn pods_outlive_an_apiserver_restart() {
    let mut plane = DeckhandApiserver::start(&["nd-apirestart"]);
    let node = NodeAgent::start(&plane, "nd-apirestart", Runtime::InProcess, OCTET, 8).await;
    wait_node_ready(&plane, &node);
    plane.create(&pod_manifest(
        "before",
        &node.name,
        json!({"containers": [busybox("app", "sleep 3600")]}),
    ));
    let running = wait_pod(
        &plane,
        &node,
        "before",
        "Running",
        Duration::from_secs(90),
        |p| phase(p) == "Running",
    );
    let id = container_status(&running, "containerStatuses", "app").unwrap()["containerID"].clone();
    let renew_time = |plane: &DeckhandApiserver| {
        plane
            .get(&["lease", "-n", "kube-node-lease", &node.name])
            .and_then(|l| l["spec"]["renewTime"].as_str().map(str::to_string))
    };
    let renewed_before = renew_time(&plane).expect("the node's Lease");

    plane.restart_after(Duration::from_secs(15));

    // The Lease is renewed again (every 10 s) by the same agent.
    wait_for(
        "the Lease renewed after the restart",
        Duration::from_secs(40),
        || node.log(),
        || renew_time(&plane).filter(|t| *t != renewed_before),
    );
    plane.create(&pod_manifest(
        "after",
        &node.name,
        json!({"containers": [busybox("app", "sleep 3600")]}),
    ));
    wait_pod(
        &plane,
        &node,
        "after",
        "Running",
        Duration::from_secs(90),
        |p| phase(p) == "Running",
    );
    let p = plane.pod("before").unwrap();
    let c = container_status(&p, "containerStatuses", "app").unwrap();
    assert_eq!(c["containerID"], id, "the container was replaced");
    assert_eq!(c["restartCount"], 0);
    assert_eq!(phase(&p), "Running");
    wait_node_ready(&plane, &node);
}

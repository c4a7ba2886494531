//! `deckhand scheduler` as a process against a real apiserver (the bundled
//! one, and the stock kube-apiserver when ../shared/k8s is there), with
//! Node objects created through the API (no node agent runs): pods land
//! where they fit, pods that fit nowhere wait with kube-scheduler's
//! FailedScheduling message and are placed once a node that fits appears;
//! and the node lifecycle controller turns a node with a stale Lease
//! Unknown, taints it, marks its pods not Ready and evicts them.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use common::node::{ControlPlane, DeckhandApiserver, StockApiserver, stock_k8s_dir, wait_for};

const WAIT: Duration = Duration::from_secs(90);

/// `deckhand scheduler` with its log in `dir`; killed on drop.
struct Scheduler {
    child: Child,
    log: std::path::PathBuf,
}

impl Scheduler {
    fn start(kubeconfig: &Path, dir: &Path, extra: &[&str]) -> Self {
        let log = dir.join("scheduler.log");
        let child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
            .args(["--log-level", "deckhand=debug", "scheduler", "--kubeconfig"])
            .arg(kubeconfig)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start deckhand scheduler");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(name: &str, cpu: &str, labels: Value, taints: Value) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let resources =
        json!({"cpu": cpu, "memory": "4Gi", "pods": "110", "ephemeral-storage": "10Gi"});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now, "lastTransitionTime": now}],
        },
    })
}

fn pod(name: &str, cpu: &str, extra_spec: Value) -> Value {
    let mut spec = json!({
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu}}}],
    });
    for (k, v) in extra_spec.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn node_of(cp: &dyn ControlPlane, pod: &str) -> Option<String> {
    cp.pod(pod)?["spec"]["nodeName"]
        .as_str()
        .map(String::from)
        .filter(|n| !n.is_empty())
}

fn wait_bound(cp: &dyn ControlPlane, s: &Scheduler, pod: &str) -> String {
    wait_for(
        &format!("{pod} to be bound"),
        WAIT,
        || format!("{}\n--- apiserver ---\n{}", s.log(), cp.log()),
        || node_of(cp, pod),
    )
}

/// Waits for the pod's FailedScheduling event; its message.
fn wait_failed(cp: &dyn ControlPlane, s: &Scheduler, pod: &str) -> String {
    wait_for(
        &format!("a FailedScheduling event on {pod}"),
        WAIT,
        || s.log(),
        || {
            cp.events_of(pod).into_iter().find_map(|e| {
                e.strip_prefix("Warning FailedScheduling: ")
                    .map(String::from)
            })
        },
    )
}

fn pod_condition(cp: &dyn ControlPlane, pod: &str, ty: &str) -> Option<Value> {
    cp.pod(pod)?["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .cloned()
}

const SELECTOR_MISMATCH: &str = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
     no new claims to deallocate, preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";

/// The scenario both apiservers run.
fn scheduling_scenario(cp: &dyn ControlPlane, prefix: &str) {
    let (a, b, c) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}-c"),
    );
    cp.create(&node(&a, "1", json!({"zone": "one"}), json!([])));
    cp.create(&node(&b, "4", json!({"disktype": "ssd"}), json!([])));
    let s = Scheduler::start(&cp.admin_kubeconfig(), cp.dir(), &[]);

    // Only b has room for 2 cpus.
    cp.create(&pod("big", "2", json!({})));
    assert_eq!(wait_bound(cp, &s, "big"), b);
    let scheduled = wait_for(
        "the Scheduled event",
        WAIT,
        || s.log(),
        || {
            cp.events_of("big")
                .into_iter()
                .find(|e| e.starts_with("Normal Scheduled: "))
        },
    );
    assert_eq!(
        scheduled,
        format!("Normal Scheduled: Successfully assigned default/big to {b}")
    );
    let cond = wait_for(
        "PodScheduled=True",
        WAIT,
        || s.log(),
        || pod_condition(cp, "big", "PodScheduled"),
    );
    assert_eq!(cond["status"], "True", "{cond}");

    cp.create(&pod(
        "ssd",
        "100m",
        json!({"nodeSelector": {"disktype": "ssd"}}),
    ));
    assert_eq!(wait_bound(cp, &s, "ssd"), b);
    cp.create(&pod(
        "zone",
        "100m",
        json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["one"]}]}]}}}}),
    ));
    assert_eq!(wait_bound(cp, &s, "zone"), a);

    // 3 cpus: more than a has at all, more than b has left.
    cp.create(&pod("huge", "3", json!({})));
    assert_eq!(
        wait_failed(cp, &s, "huge"),
        "0/2 nodes are available: 2 Insufficient cpu. no new claims to deallocate, preemption: \
         0/2 nodes are available: 1 No preemption victims found for incoming pod, \
         1 Preemption is not helpful for scheduling."
    );

    // Nothing is labelled nvme (yet).
    cp.create(&pod(
        "nvme",
        "100m",
        json!({"nodeSelector": {"disktype": "nvme"}}),
    ));
    assert_eq!(wait_failed(cp, &s, "nvme"), SELECTOR_MISMATCH);
    let cond = pod_condition(cp, "nvme", "PodScheduled").expect("PodScheduled condition");
    assert_eq!(
        (cond["status"].as_str(), cond["reason"].as_str()),
        (Some("False"), Some("Unschedulable"))
    );
    assert_eq!(cond["message"], SELECTOR_MISMATCH);
    assert_eq!(node_of(cp, "nvme"), None);

    // Another scheduler's pod is not ours to place.
    cp.create(&pod(
        "other",
        "100m",
        json!({"schedulerName": "someone-else"}),
    ));

    // A node that fits appears: the pod is placed without being touched.
    cp.create(&node(&c, "2", json!({"disktype": "nvme"}), json!([])));
    assert_eq!(wait_bound(cp, &s, "nvme"), c);

    // A taint keeps pods away unless tolerated.
    cp.ok(&["taint", "node", &c, "dedicated=db:NoSchedule"]);
    cp.create(&pod("db", "100m", json!({"nodeSelector": {"disktype": "nvme"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]})));
    assert_eq!(wait_bound(cp, &s, "db"), c);
    cp.create(&pod(
        "nodb",
        "100m",
        json!({"nodeSelector": {"disktype": "nvme"}}),
    ));
    assert_eq!(
        wait_failed(cp, &s, "nodb"),
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node affinity/selector. \
         no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );

    assert_eq!(
        node_of(cp, "other"),
        None,
        "a pod of another scheduler was bound"
    );
    assert!(
        !cp.events_of("other")
            .iter()
            .any(|e| e.contains("FailedScheduling")),
        "{:?}",
        cp.events_of("other")
    );
}

#[test]
fn pods_land_where_they_fit_and_wait_for_a_node_that_does() {
    let cp = DeckhandApiserver::start(&[]);
    scheduling_scenario(&cp, "sched11");
}

#[test]
fn the_scheduler_runs_on_the_stock_apiserver() {
    let Some(k8s) = stock_k8s_dir() else {
        common::say_skipped(
            "the_scheduler_runs_on_the_stock_apiserver",
            "no stock Kubernetes binaries in ../shared/k8s",
        );
        return;
    };
    let port = common::stock::free_ports(5);
    let cp = StockApiserver::start(&k8s, port, "sched11-stock");
    scheduling_scenario(&cp, "sched11-stock");
}

fn renew_lease(cp: &dyn ControlPlane, node: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    cp.ok(&[
        "-n",
        "kube-node-lease",
        "patch",
        "lease",
        node,
        "--type=merge",
        "-p",
        &json!({"spec": {"renewTime": now}}).to_string(),
    ]);
}

fn taint_keys(cp: &dyn ControlPlane, node: &str) -> Vec<String> {
    cp.get(&["node", node]).unwrap()["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn a_node_whose_lease_goes_stale_is_marked_unknown_tainted_and_drained() {
    let cp = DeckhandApiserver::start(&[]);
    let n = "sched11-lease";
    cp.create(&node(n, "2", json!({}), json!([])));
    if cp.get(&["namespace", "kube-node-lease"]).is_none() {
        cp.ok(&["create", "namespace", "kube-node-lease"]);
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    cp.create(
        &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": n, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": n, "leaseDurationSeconds": 40, "renewTime": now}}),
    );
    // Two pods on the node: one tolerates unreachable for 1 s, one gets
    // the apiserver's default (300 s).
    cp.create(&pod("stayer", "100m", json!({"nodeName": n})));
    cp.create(&pod(
        "leaver",
        "100m",
        json!({"nodeName": n, "tolerations": [{"key": "node.kubernetes.io/unreachable",
        "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]}),
    ));
    let defaults = cp.pod("stayer").unwrap()["spec"]["tolerations"].clone();
    assert!(
        defaults
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable"
                && t["effect"] == "NoExecute"
                && t["tolerationSeconds"] == 300),
        "DefaultTolerationSeconds not applied: {defaults}"
    );
    for p in ["stayer", "leaver"] {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        cp.ok(&[
            "patch",
            "pod",
            p,
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now}]}})
            .to_string(),
        ]);
    }
    let s = Scheduler::start(
        &cp.admin_kubeconfig(),
        cp.dir(),
        &["--node-lifecycle", "--node-monitor-grace-period", "12s"],
    );

    // While the lease is renewed the node stays as it is. Each renewal is a
    // kubectl run, which takes seconds on a loaded host: the grace period
    // is several of those, not one.
    for _ in 0..6 {
        renew_lease(&cp, n);
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        taint_keys(&cp, n).is_empty(),
        "{:?}\n{}",
        taint_keys(&cp, n),
        s.log()
    );

    // It stops: Unknown, tainted, pods not Ready, the short-tolerating one evicted.
    let ready = wait_for(
        "Ready=Unknown",
        WAIT,
        || s.log(),
        || {
            let node = cp.get(&["node", n])?;
            node["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready" && c["status"] == "Unknown")
                .cloned()
        },
    );
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    wait_for(
        "the unreachable taints",
        WAIT,
        || s.log(),
        || {
            let keys = taint_keys(&cp, n);
            (keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
                && keys.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string()))
            .then_some(())
        },
    );
    wait_for(
        "stayer not Ready",
        WAIT,
        || s.log(),
        || (pod_condition(&cp, "stayer", "Ready")?["status"] == "False").then_some(()),
    );
    wait_for(
        "leaver evicted",
        WAIT,
        || s.log(),
        || {
            let p = cp.pod("leaver");
            (p.is_none() || p.is_some_and(|p| p["metadata"]["deletionTimestamp"].is_string()))
                .then_some(())
        },
    );
    let stayer = cp
        .pod("stayer")
        .expect("stayer tolerates unreachable for 300 s");
    assert!(
        stayer["metadata"]["deletionTimestamp"].is_null(),
        "{stayer}"
    );

    // The lease is renewed again: the taints go.
    wait_for(
        "the taints removed",
        WAIT,
        || s.log(),
        || {
            renew_lease(&cp, n);
            (!taint_keys(&cp, n)
                .iter()
                .any(|k| k.starts_with("node.kubernetes.io/unreachable")))
            .then_some(())
        },
    );
}

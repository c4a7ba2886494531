//! End-to-end tests of ephemeral containers (`kubectl debug`) and in-place
//! pod resize (`kubectl patch --subresource resize`) on `deckhand node`
//! with the real `deckhand apiserver`, containerd and kubectl. Run as root,
//! holding /tmp/deckhand-integration.lock.
//!
//! Each test takes its own node name and CNI subnet 10.243.<index>.0/24.

mod common;

use std::time::Duration;

use common::BUSYBOX;
use common::node::{
    ControlPlane, DeckhandApiserver, NodeAgent, Runtime, busybox, container_status, phase,
    pod_manifest, wait_for, wait_node_ready, wait_pod,
};
use serde_json::{Value, json};

const OCTET: u8 = 243;

fn running(p: &Value, list: &str, name: &str) -> bool {
    container_status(p, list, name).is_some_and(|c| c["state"]["running"].is_object())
}

/// `kubectl debug --target` runs a container in the pod that sees the
/// target's processes; its logs are served; it is never restarted; the
/// apiserver refuses what kube refuses.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_debug_targets_a_container() {
    let plane = DeckhandApiserver::start(&["dbg-node"]);
    let node = NodeAgent::start(&plane, "dbg-node", Runtime::InProcess, OCTET, 1).await;
    wait_node_ready(&plane, &node);
    plane.create(&pod_manifest(
        "target",
        &node.name,
        json!({"containers": [busybox("app", "exec sleep 3600")],
               "terminationGracePeriodSeconds": 2}),
    ));
    wait_pod(
        &plane,
        &node,
        "target",
        "running",
        Duration::from_secs(120),
        |p| running(p, "containerStatuses", "app"),
    );

    plane.ok(&[
        "debug",
        "target",
        &format!("--image={BUSYBOX}"),
        "--image-pull-policy=IfNotPresent",
        "--container=debugger",
        "--target=app",
        "--",
        "ps",
    ]);
    let p = wait_pod(
        &plane,
        &node,
        "target",
        "the debugger ran",
        Duration::from_secs(120),
        |p| {
            container_status(p, "ephemeralContainerStatuses", "debugger")
                .is_some_and(|c| c["state"]["terminated"].is_object())
        },
    );
    let status = container_status(&p, "ephemeralContainerStatuses", "debugger").unwrap();
    assert_eq!(status["restartCount"], 0, "{status}");
    assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status}");
    // The target's `sleep 3600` is among the processes ps saw.
    let logs = wait_for(
        "the debugger's logs",
        Duration::from_secs(60),
        || node.log(),
        || {
            let out = plane.kubectl(&["logs", "target", "-c", "debugger"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("sleep 3600").then_some(text)
        },
    );
    assert!(logs.contains("ps"), "{logs}");
    // Never restarted, the pod keeps running, the app was not touched.
    std::thread::sleep(Duration::from_secs(5));
    let p = plane.pod("target").unwrap();
    assert_eq!(phase(&p), "Running");
    let app = container_status(&p, "containerStatuses", "app").unwrap();
    assert_eq!(app["restartCount"], 0, "{app}");
    let debugger = container_status(&p, "ephemeralContainerStatuses", "debugger").unwrap();
    assert!(debugger["state"]["terminated"].is_object(), "{debugger}");

    // kube's validation: no ports, no duplicate names, no removal.
    let bad = json!({"spec": {"ephemeralContainers": [
        {"name": "debugger", "image": BUSYBOX},
        {"name": "app", "image": BUSYBOX, "ports": [{"containerPort": 80}]}]}});
    let out = plane.kubectl(&[
        "patch",
        "pod",
        "target",
        "--subresource=ephemeralcontainers",
        "--type=strategic",
        "-p",
        &bad.to_string(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("spec.ephemeralContainers[1].name: Duplicate value: \"app\""),
        "{err}"
    );
    assert!(
        err.contains(
            "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container"
        ),
        "{err}"
    );
    let out = plane.kubectl(&[
        "patch",
        "pod",
        "target",
        "--subresource=ephemeralcontainers",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("existing ephemeral containers \"debugger\" may not be removed"),
        "{err}"
    );
    plane.ok(&["delete", "pod", "target", "--wait=false"]);
}

fn cgroup_value(plane: &dyn ControlPlane, pod: &str, v2: &str, v1: &str) -> String {
    let script = format!("cat /sys/fs/cgroup/{v2} 2>/dev/null || cat /sys/fs/cgroup/{v1}");
    plane
        .ok(&["exec", pod, "-c", "app", "--", "sh", "-c", &script])
        .trim()
        .to_string()
}

fn memory_limit(plane: &dyn ControlPlane, pod: &str) -> String {
    cgroup_value(plane, pod, "memory.max", "memory/memory.limit_in_bytes")
}

/// The cpu quota per 100 ms period, from cpu.max ("50000 100000") or v1's
/// cpu.cfs_quota_us.
fn cpu_quota(plane: &dyn ControlPlane, pod: &str) -> String {
    let raw = cgroup_value(plane, pod, "cpu.max", "cpu/cpu.cfs_quota_us");
    raw.split_whitespace().next().unwrap_or("").to_string()
}

/// A resize through the subresource raises the memory and cpu limits of a
/// running container in its cgroup without a restart; a memory resize
/// with RestartContainer restarts it; kube's validation is kept.
#[tokio::test(flavor = "multi_thread")]
async fn resize_changes_the_cgroup_in_place() {
    let plane = DeckhandApiserver::start(&["rsz-node"]);
    let node = NodeAgent::start(&plane, "rsz-node", Runtime::InProcess, OCTET, 2).await;
    wait_node_ready(&plane, &node);
    let mut app = busybox("app", "exec sleep 3600");
    app["resources"] = json!({"requests": {"cpu": "100m", "memory": "32Mi"},
                              "limits": {"cpu": "200m", "memory": "64Mi"}});
    plane.create(&pod_manifest(
        "grow",
        &node.name,
        json!({"containers": [app.clone()], "terminationGracePeriodSeconds": 2}),
    ));
    let mut restarting = app.clone();
    restarting["resizePolicy"] = json!([
        {"resourceName": "memory", "restartPolicy": "RestartContainer"}]);
    plane.create(&pod_manifest(
        "restart",
        &node.name,
        json!({"containers": [restarting], "terminationGracePeriodSeconds": 2}),
    ));
    for pod in ["grow", "restart"] {
        wait_pod(
            &plane,
            &node,
            pod,
            "running",
            Duration::from_secs(120),
            |p| running(p, "containerStatuses", "app"),
        );
    }
    assert_eq!(memory_limit(&plane, "grow"), (64u64 << 20).to_string());
    assert_eq!(cpu_quota(&plane, "grow"), "20000");

    let patch = json!({"spec": {"containers": [{"name": "app", "resources": {
        "requests": {"cpu": "100m", "memory": "32Mi"},
        "limits": {"cpu": "500m", "memory": "128Mi"}}}]}});
    for pod in ["grow", "restart"] {
        plane.ok(&[
            "patch",
            "pod",
            pod,
            "--subresource=resize",
            "--type=strategic",
            "-p",
            &patch.to_string(),
        ]);
    }
    wait_for(
        "the new limits in the cgroup",
        Duration::from_secs(120),
        || node.log(),
        || {
            (memory_limit(&plane, "grow") == (128u64 << 20).to_string()
                && cpu_quota(&plane, "grow") == "50000")
                .then_some(())
        },
    );
    let p = wait_pod(
        &plane,
        &node,
        "grow",
        "status.resources shows the new limits, the resize conditions gone",
        Duration::from_secs(120),
        // The conditions may go a status update after the resources land.
        |p| {
            container_status(p, "containerStatuses", "app")
                .is_some_and(|c| c["resources"]["limits"]["memory"] == "128Mi")
                && p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().all(|c| {
                        c["type"] != "PodResizePending" && c["type"] != "PodResizeInProgress"
                    })
                })
        },
    );
    let c = container_status(&p, "containerStatuses", "app").unwrap();
    assert_eq!(c["restartCount"], 0, "{c}");
    assert_eq!(c["allocatedResources"]["memory"], "32Mi", "{c}");
    // RestartContainer for memory: restarted, with the new limit.
    wait_pod(
        &plane,
        &node,
        "restart",
        "restarted by the resize",
        Duration::from_secs(120),
        |p| {
            container_status(p, "containerStatuses", "app")
                .is_some_and(|c| c["restartCount"] == 1 && c["state"]["running"].is_object())
        },
    );
    assert_eq!(memory_limit(&plane, "restart"), (128u64 << 20).to_string());

    // kube's validation: no QoS change, requests not above limits, and
    // nothing but resources changes through the subresource.
    let out = plane.kubectl(&[
        "patch",
        "pod",
        "grow",
        "--subresource=resize",
        "--type=strategic",
        "-p",
        r#"{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"1"}}}]}}"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must be less than or equal to cpu limit of 500m"),
        "{err}"
    );
    plane.ok(&[
        "patch",
        "pod",
        "grow",
        "--subresource=resize",
        "--type=strategic",
        "-p",
        r#"{"metadata":{"labels":{"x":"y"}},"spec":{"containers":[{"name":"app","image":"other"}]}}"#,
    ]);
    let p = plane.pod("grow").unwrap();
    assert!(p["metadata"]["labels"]["x"].is_null());
    assert_eq!(p["spec"]["containers"][0]["image"], BUSYBOX);
    for pod in ["grow", "restart"] {
        plane.ok(&["delete", "pod", pod, "--wait=false"]);
    }
}

//! End-to-end tests of probes, lifecycle hooks and native sidecars on
//! `deckhand node`: the real `deckhand apiserver`, the node agent on real
//! containerd, kubectl. Run as root, holding /tmp/deckhand-integration.lock.
//!
//! The test images are busybox: `httpd` serves the HTTP probes, a closed
//! port fails them. No test image has a gRPC health server, so a passing
//! grpc probe is tested in src/node/probes/grpc.rs against a tonic server;
//! here a grpc probe against a closed port must fail and keep the pod out
//! of Ready.
//!
//! Each test takes its own node name and CNI subnet 10.239.<index>.0/24.

mod common;

use std::time::{Duration, Instant};

use common::node::{
    ControlPlane, DeckhandApiserver, NodeAgent, Runtime, busybox, condition, container_status,
    phase, pod_manifest, wait_for, wait_node_ready, wait_pod,
};
use serde_json::{Value, json};

const OCTET: u8 = 239;

/// A busybox container serving /www on port 8080 (named "web").
fn web(name: &str) -> Value {
    let mut c = busybox(
        name,
        "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www",
    );
    c["ports"] = json!([{"name": "web", "containerPort": 8080}]);
    c
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn is_true(p: &Value, type_: &str) -> bool {
    condition(p, type_).is_some_and(|c| c["status"] == "True")
}

fn wait_event(plane: &dyn ControlPlane, node: &NodeAgent, pod: &str, needle: &str) {
    wait_for(
        &format!("an event on {pod} with {needle:?}"),
        Duration::from_secs(60),
        || {
            format!(
                "events: {:?}\nnode log:\n{}",
                plane.events_of(pod),
                node.log()
            )
        },
        || {
            plane
                .events_of(pod)
                .iter()
                .any(|e| e.contains(needle))
                .then_some(())
        },
    )
}

/// A probe every second that decides after one result.
fn fast(probe: Value) -> Value {
    let mut p = probe;
    p["periodSeconds"] = json!(1);
    p["timeoutSeconds"] = json!(1);
    p["failureThreshold"] = json!(1);
    p
}

/// Readiness, liveness and startup probes of every kind pass and fail as
/// they should, and drive ready, started, the pod's Ready and restarts.
#[tokio::test(flavor = "multi_thread")]
async fn probes_pass_and_fail_as_they_should() {
    let plane = DeckhandApiserver::start(&["pr-probes"]);
    let node = NodeAgent::start(&plane, "pr-probes", Runtime::InProcess, OCTET, 1).await;
    wait_node_ready(&plane, &node);
    let n = node.name.as_str();
    let http = |path: &str, port: Value| fast(json!({"httpGet": {"path": path, "port": port}}));
    let ready = |name: &str, c: Value| {
        plane.create(&pod_manifest(name, n, json!({"containers": [c]})));
    };
    ready(
        "http-ok",
        with(web("c"), "readinessProbe", http("/healthz", json!("web"))),
    );
    ready(
        "http-404",
        with(web("c"), "readinessProbe", http("/missing", json!(8080))),
    );
    ready(
        "tcp-ok",
        with(
            web("c"),
            "readinessProbe",
            fast(json!({"tcpSocket": {"port": 8080}})),
        ),
    );
    ready(
        "tcp-closed",
        with(
            web("c"),
            "readinessProbe",
            fast(json!({"tcpSocket": {"port": 9}})),
        ),
    );
    ready(
        "exec-ok",
        with(
            busybox("c", "touch /tmp/ready; sleep 3600"),
            "readinessProbe",
            fast(json!({"exec": {"command": ["cat", "/tmp/ready"]}})),
        ),
    );
    ready(
        "exec-fail",
        with(
            busybox("c", "sleep 3600"),
            "readinessProbe",
            fast(json!({"exec": {"command": ["cat", "/tmp/nope"]}})),
        ),
    );
    ready(
        "grpc-closed",
        with(
            web("c"),
            "readinessProbe",
            fast(json!({"grpc": {"port": 9}})),
        ),
    );
    ready(
        "live-fail",
        with(
            busybox("c", "sleep 3600"),
            "livenessProbe",
            fast(json!({"exec": {"command": ["false"]}, "initialDelaySeconds": 1})),
        ),
    );
    // A passing liveness probe: patient enough that a loaded host (httpd
    // not yet listening at the first probe, a reply later than a second)
    // does not count as a failure, which would restart it.
    ready(
        "live-ok",
        with(
            web("c"),
            "livenessProbe",
            json!({"httpGet": {"path": "/healthz", "port": "web"}, "periodSeconds": 1,
                "timeoutSeconds": 10, "failureThreshold": 30}),
        ),
    );
    ready(
        "startup",
        with(
            busybox("c", "sleep 4; touch /tmp/started; sleep 3600"),
            "startupProbe",
            json!({"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 30}),
        ),
    );

    let long = Duration::from_secs(120);
    for name in ["http-ok", "tcp-ok", "exec-ok", "startup"] {
        let p = wait_pod(&plane, &node, name, "Ready", long, |p| is_true(p, "Ready"));
        assert!(is_true(&p, "ContainersReady"), "{name}");
        let c = container_status(&p, "containerStatuses", "c").unwrap();
        assert_eq!(c["ready"], true, "{name}");
        assert_eq!(c["started"], true, "{name}");
    }
    // The startup probe held `started` back for its first seconds.
    wait_event(&plane, &node, "startup", "Unhealthy: Startup probe failed");
    wait_event(
        &plane,
        &node,
        "http-404",
        "Readiness probe failed: HTTP probe failed with statuscode: 404",
    );
    wait_event(
        &plane,
        &node,
        "tcp-closed",
        "Readiness probe failed: dial tcp",
    );
    wait_event(&plane, &node, "exec-fail", "Readiness probe failed:");
    wait_event(&plane, &node, "grpc-closed", "Readiness probe failed:");
    for name in ["http-404", "tcp-closed", "exec-fail", "grpc-closed"] {
        let p = plane.pod(name).unwrap();
        assert_eq!(phase(&p), "Running", "{name}: {}", p["status"]);
        assert!(!is_true(&p, "Ready"), "{name} is Ready: {}", p["status"]);
        assert!(!is_true(&p, "ContainersReady"), "{name}");
        let c = container_status(&p, "containerStatuses", "c").unwrap();
        assert_eq!(c["ready"], false, "{name}");
        assert_eq!(c["restartCount"], 0, "a readiness failure restarted {name}");
    }

    // A failing liveness probe restarts the container, again and again.
    wait_pod(&plane, &node, "live-fail", "restartCount >= 2", long, |p| {
        container_status(p, "containerStatuses", "c")
            .and_then(|c| c["restartCount"].as_i64())
            .is_some_and(|n| n >= 2)
    });
    wait_event(
        &plane,
        &node,
        "live-fail",
        "Warning Unhealthy: Liveness probe failed",
    );
    wait_event(
        &plane,
        &node,
        "live-fail",
        "Normal Killing: Container c failed liveness probe, will be restarted",
    );
    // A passing one leaves its container alone.
    let p = plane.pod("live-ok").unwrap();
    let c = container_status(&p, "containerStatuses", "c").unwrap();
    assert_eq!(c["restartCount"], 0, "{}", p["status"]);
    assert!(node.log().lines().all(|l| !l.contains("panicked")));
    let mut node = node;
    assert!(
        node.is_running(),
        "probes against closed ports took the agent down"
    );
}

/// postStart runs before the container counts as started and its file is
/// seen by the container; a failed postStart kills it; preStop runs
/// before SIGTERM; a hanging preStop is cut at the grace period.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_hooks_run_around_the_container() {
    let plane = DeckhandApiserver::start(&["pr-hooks"]);
    let node = NodeAgent::start(&plane, "pr-hooks", Runtime::InProcess, OCTET, 2).await;
    wait_node_ready(&plane, &node);
    let n = node.name.as_str();
    let exec = |cmd: &str| json!({"exec": {"command": ["sh", "-c", cmd]}});

    // The container exits 0 only if it saw the hook's file (the hook runs
    // beside it: it looks for a minute, not a fixed 2 s).
    let post = with(
        busybox(
            "c",
            "for i in $(seq 600); do [ \"$(cat /tmp/post 2>/dev/null)\" = hi ] && exit 0; sleep 0.1; done; exit 3",
        ),
        "lifecycle",
        json!({"postStart": exec("echo hi > /tmp/post")}),
    );
    plane.create(&pod_manifest(
        "post-start",
        n,
        json!({"restartPolicy": "Never", "containers": [post]}),
    ));
    let bad = with(
        busybox("c", "sleep 3600"),
        "lifecycle",
        json!({"postStart": exec("exit 7")}),
    );
    plane.create(&pod_manifest(
        "post-start-fails",
        n,
        json!({"containers": [bad]}),
    ));
    // preStop writes the exit code the TERM trap then uses: 42 only if the
    // hook ran before the signal. A liveness failure does the stop.
    let pre = with(
        with(
            busybox(
                "c",
                "trap 'exit $(cat /tmp/code 2>/dev/null || echo 1)' TERM; while true; do sleep 0.2; done",
            ),
            "lifecycle",
            json!({"preStop": exec("echo 42 > /tmp/code")}),
        ),
        "livenessProbe",
        fast(json!({"exec": {"command": ["false"]}, "initialDelaySeconds": 2})),
    );
    plane.create(&pod_manifest("pre-stop", n, json!({"containers": [pre]})));
    let hang = with(
        busybox("c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"),
        "lifecycle",
        json!({"preStop": exec("sleep 3600")}),
    );
    plane.create(&pod_manifest(
        "pre-stop-hangs",
        n,
        json!({"terminationGracePeriodSeconds": 3, "containers": [hang]}),
    ));

    let long = Duration::from_secs(120);
    let p = wait_pod(&plane, &node, "post-start", "done", long, |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    });
    assert_eq!(
        phase(&p),
        "Succeeded",
        "the container did not see /tmp/post: {}",
        p["status"]
    );

    wait_event(&plane, &node, "post-start-fails", "FailedPostStartHook");
    wait_pod(&plane, &node, "post-start-fails", "restarted", long, |p| {
        container_status(p, "containerStatuses", "c")
            .and_then(|c| c["restartCount"].as_i64())
            .is_some_and(|n| n >= 1)
    });

    let p = wait_pod(&plane, &node, "pre-stop", "restarted", long, |p| {
        container_status(p, "containerStatuses", "c")
            .is_some_and(|c| c["lastState"]["terminated"].is_object())
    });
    let c = container_status(&p, "containerStatuses", "c").unwrap();
    assert_eq!(
        c["lastState"]["terminated"]["exitCode"], 42,
        "preStop did not run before SIGTERM: {c}"
    );

    wait_pod(&plane, &node, "pre-stop-hangs", "Running", long, |p| {
        phase(p) == "Running"
    });
    let begun = Instant::now();
    plane.ok(&[
        "delete",
        "pod",
        "pre-stop-hangs",
        "--wait=true",
        "--timeout=60s",
    ]);
    let took = begun.elapsed();
    assert!(
        took < Duration::from_secs(45),
        "a hanging preStop held the pod for {took:?} (grace 3 s; the hook sleeps an hour)"
    );
    wait_event(&plane, &node, "pre-stop-hangs", "FailedPreStopHook");
}

/// A native sidecar starts before the app, stays running next to it,
/// counts for Ready, and in a Never pod is stopped after the app finished.
#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_runs_beside_the_app_and_stops_after_it() {
    let plane = DeckhandApiserver::start(&["pr-sidecar"]);
    let node = NodeAgent::start(&plane, "pr-sidecar", Runtime::InProcess, OCTET, 3).await;
    wait_node_ready(&plane, &node);
    let side = with(
        busybox(
            "side",
            "trap 'exit 0' TERM; touch /tmp/up; while true; do sleep 0.2; done",
        ),
        "restartPolicy",
        json!("Always"),
    );
    let side = with(
        side,
        "startupProbe",
        json!({"exec": {"command": ["cat", "/tmp/up"]}, "periodSeconds": 1, "failureThreshold": 30}),
    );
    plane.create(&pod_manifest(
        "sidecar",
        &node.name,
        json!({
            "restartPolicy": "Never",
            "initContainers": [side],
            // Long enough to still run when the test sees Ready on a loaded host.
            "containers": [busybox("app", "sleep 30; exit 0")],
        }),
    ));
    let long = Duration::from_secs(120);
    let p = wait_pod(
        &plane,
        &node,
        "sidecar",
        "Ready with its sidecar",
        long,
        |p| is_true(p, "Ready"),
    );
    let s = container_status(&p, "initContainerStatuses", "side").unwrap();
    assert!(s["state"]["running"].is_object(), "{s}");
    assert_eq!(s["started"], true);
    assert_eq!(s["ready"], true);
    assert!(is_true(&p, "Initialized"));
    let app = container_status(&p, "containerStatuses", "app").unwrap();
    assert!(app["state"]["running"].is_object(), "{app}");

    let p = wait_pod(&plane, &node, "sidecar", "Succeeded", long, |p| {
        matches!(phase(p), "Succeeded" | "Failed")
            && container_status(p, "initContainerStatuses", "side")
                .is_some_and(|s| s["state"]["terminated"].is_object())
    });
    assert_eq!(phase(&p), "Succeeded", "{}", p["status"]);
    let app = &container_status(&p, "containerStatuses", "app").unwrap()["state"]["terminated"];
    let side =
        &container_status(&p, "initContainerStatuses", "side").unwrap()["state"]["terminated"];
    assert_eq!(app["exitCode"], 0);
    let at = |t: &Value| t["finishedAt"].as_str().unwrap_or("").to_string();
    assert!(
        at(side) >= at(app),
        "the sidecar stopped before the app: {side} {app}"
    );
    // Started before the app.
    let started = |t: &Value| t["startedAt"].as_str().unwrap_or("").to_string();
    assert!(started(side) <= started(app), "{side} {app}");
}

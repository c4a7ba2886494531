//! Phase and conditions.

use serde_json::json;

use super::*;

#[test]
fn never_exit_0_succeeds_once_the_sandbox_is_stopped() {
    let p = one("Never");
    // Exited but the sandbox still runs: the kubelet holds the terminal phase back,
    // while its generated status already says Succeeded (time to tear down).
    let mut i = Inputs::new(ready_sb(), vec![cri("app", 0, 1, Some(0), "Completed")]);
    let observed = ObservedPod {
        sandboxes: &i.sandboxes,
        containers: &i.containers,
        waiting: &i.waiting,
        readiness: &i.readiness,
        startup: &i.startup,
        qos_class: "",
        runtime_name: "containerd",
    };
    let g = generated_status(&p, &observed, &[], at(10));
    assert_eq!(g.phase.as_deref(), Some("Succeeded"));
    let s = i.status(&p, 10);
    assert_eq!(s.phase, None, "held back while the sandbox runs");
    i.sandboxes = vec![sandbox("sb1", 0, false, "")];
    let s = i.status(&p, 11);
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    let t = cs(&s, "app")
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(
        (t.exit_code, t.reason.as_deref(), t.message.as_deref()),
        (0, Some("Completed"), Some("bye"))
    );
    assert_eq!(t.started_at, Some(at(2)));
    assert_eq!(t.finished_at, Some(at(6)));
    assert_eq!(t.container_id.as_deref(), Some("containerd://app-0"));
    assert!(!cs(&s, "app").ready);
    assert_eq!(cs(&s, "app").started, Some(false));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    assert_eq!(
        cond(&s, "Initialized").reason.as_deref(),
        Some("PodCompleted")
    );
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
    // The stopped sandbox no longer reports its IP: the pod keeps the one it had.
    let with_ip = with_status(
        p.clone(),
        PodStatus {
            pod_ip: Some("10.88.0.5".into()),
            pod_ips: Some(vec![k8s_openapi::api::core::v1::PodIP {
                ip: "10.88.0.5".into(),
            }]),
            ..Default::default()
        },
    );
    assert_eq!(i.status(&with_ip, 12).pod_ip.as_deref(), Some("10.88.0.5"));
}

#[test]
fn never_exit_3_fails_with_exit_code_and_error() {
    let p = one("Never");
    let s = Inputs::new(
        vec![sandbox("sb1", 0, false, "")],
        vec![cri("app", 0, 1, Some(3), "Error")],
    )
    .status(&p, 10);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let t = cs(&s, "app")
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(
        cond(&s, "ContainersReady").reason.as_deref(),
        Some("PodFailed")
    );
}

#[test]
fn on_failure_restarts_failures_and_succeeds_on_exit_0() {
    let p = one("OnFailure");
    let failed = Inputs::new(ready_sb(), vec![cri("app", 0, 1, Some(1), "Error")]).status(&p, 10);
    assert_eq!(
        failed.phase.as_deref(),
        Some("Running"),
        "a failed container restarts"
    );
    let done = Inputs::new(
        vec![],
        vec![
            cri("app", 1, 10, Some(0), "Completed"),
            cri("app", 0, 1, Some(1), "Error"),
        ],
    )
    .status(&p, 20);
    assert_eq!(done.phase.as_deref(), Some("Succeeded"));
    assert_eq!(cs(&done, "app").restart_count, 1);
    let last = cs(&done, "app")
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(last.exit_code, 1);
}

#[test]
fn conditions_of_others_stay_and_scheduler_time_is_kept() {
    let p = with_status(
        one("Always"),
        serde_json::from_value(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2023-11-14T22:13:00Z"},
            {"type": "example.com/gate", "status": "False"},
        ]}))
        .unwrap(),
    );
    let s = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]).status(&p, 10);
    let types: Vec<_> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(types[0], "example.com/gate");
    assert_eq!(types.len(), 6);
    assert_eq!(
        cond(&s, "PodScheduled")
            .last_transition_time
            .as_ref()
            .unwrap()
            .0
            .to_string(),
        "2023-11-14T22:13:00Z"
    );
}

#[test]
fn readiness_gate_not_satisfied_keeps_ready_false() {
    let p = pod(
        json!({"containers": [{"name": "app", "image": "busybox"}], "readinessGates": [{"conditionType": "example.com/lb"}]}),
    );
    let s = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]).status(&p, 10);
    assert_eq!(cond(&s, "ContainersReady").status, "True");
    let r = cond(&s, "Ready");
    assert_eq!(r.reason.as_deref(), Some("ReadinessGatesNotReady"));
    assert_eq!(
        r.message.as_deref(),
        Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist.")
    );
}

#[test]
fn pending_while_init_containers_run_then_running() {
    let p = with_init("Always");
    let s = Inputs::new(ready_sb(), vec![cri("init1", 0, 1, None, "")]).status(&p, 5);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let names: Vec<_> = s
        .init_container_statuses
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["init1", "init2"], "init statuses in spec order");
    let app = cs(&s, "app")
        .state
        .as_ref()
        .unwrap()
        .waiting
        .clone()
        .unwrap();
    assert_eq!(app.reason.as_deref(), Some("PodInitializing"));
    let init = cond(&s, "Initialized");
    assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
    assert_eq!(
        init.message.as_deref(),
        Some("containers with incomplete status: [init1 init2]")
    );

    let s = Inputs::new(
        ready_sb(),
        vec![
            cri("init1", 0, 1, Some(0), "Completed"),
            cri("init2", 0, 7, Some(0), "Completed"),
            cri("app", 0, 13, None, ""),
        ],
    )
    .status(&p, 20);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert!(cs(&s, "init1").ready && cs(&s, "init2").ready);
    assert_eq!(cs(&s, "init1").started, Some(false));
    assert_eq!(cond(&s, "Initialized").status, "True");
}

#[test]
fn failed_init_container_fails_the_pod_under_never_only() {
    let never = with_init("Never");
    let s = Inputs::new(vec![], vec![cri("init1", 0, 1, Some(1), "Error")]).status(&never, 5);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let always = with_init("Always");
    let s = Inputs::new(ready_sb(), vec![cri("init1", 0, 1, Some(1), "Error")]).status(&always, 5);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
}

#[test]
fn terminal_phase_never_goes_back() {
    let p = with_status(
        one("Always"),
        PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        },
    );
    let s = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]).status(&p, 5);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn terminated_never_container_cannot_run_again() {
    let p = one("Never");
    let done = Inputs::new(vec![], vec![cri("app", 0, 1, Some(0), "Completed")]).status(&p, 10);
    let p2 = with_status(p, done.clone());
    // A runtime that reports it running again is not believed: the update is refused.
    let s = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]).status(&p2, 20);
    assert_eq!(s, done);
}

#[test]
fn pod_ip_comes_from_the_newest_ready_sandbox_in_node_family_order() {
    let p = one("Always");
    let mut newest = sandbox("sb2", 100, true, "fd00::5");
    newest
        .network
        .as_mut()
        .unwrap()
        .additional_ips
        .push(v1::PodIp {
            ip: "10.88.0.9".into(),
        });
    let i = Inputs::new(
        vec![newest, sandbox("sb1", 0, false, "10.88.0.5")],
        vec![cri("app", 0, 101, None, "")],
    );
    let s = i.status(&p, 110);
    let ips: Vec<_> = s.pod_ips.iter().flatten().map(|i| i.ip.as_str()).collect();
    assert_eq!(
        ips,
        ["10.88.0.9", "fd00::5"],
        "the node is IPv4: its family first"
    );
    assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.9"));
}

#[test]
fn host_network_pod_gets_the_node_ip() {
    let p = pod(json!({"hostNetwork": true, "containers": [{"name": "app", "image": "busybox"}]}));
    let mut sb = sandbox("sb1", 0, true, "");
    sb.linux = Some(v1::LinuxPodSandboxStatus {
        namespaces: Some(v1::Namespace {
            options: Some(v1::NamespaceOption {
                network: v1::NamespaceMode::Node as i32,
                ..Default::default()
            }),
        }),
    });
    let s = Inputs::new(vec![sb], vec![cri("app", 0, 1, None, "")]).status(&p, 5);
    assert_eq!(s.pod_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
}

#[test]
fn sidecar_must_start_before_the_pod_initializes() {
    let p = pod(json!({
        "initContainers": [{"name": "side", "image": "busybox", "restartPolicy": "Always",
                            "startupProbe": {"exec": {"command": ["true"]}}}],
        "containers": [{"name": "app", "image": "busybox"}]}));
    let mut i = Inputs::new(ready_sb(), vec![cri("side", 0, 1, None, "")]);
    let s = i.status(&p, 5);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&s, "Initialized").status, "False");
    i.startup.insert("side".into(), true);
    i.containers.push(cri("app", 0, 3, None, ""));
    let s = i.status(&p, 6);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert!(cs(&s, "side").ready);
    assert_eq!(cond(&s, "Ready").status, "True");
}

#[test]
fn deleted_always_pod_ends_terminal_once_stopped() {
    let mut p = one("Always");
    p.metadata.deletion_timestamp = Some(at(5));
    let stopped = vec![sandbox("sb1", 0, false, "")];
    let s = Inputs::new(
        stopped.clone(),
        vec![cri("app", 0, 1, Some(0), "Completed")],
    )
    .status(&p, 10);
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    let s = Inputs::new(stopped, vec![cri("app", 0, 1, Some(137), "Error")]).status(&p, 10);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    // Still stopping: not terminal yet.
    let s = Inputs::new(ready_sb(), vec![cri("app", 0, 1, Some(137), "Error")]).status(&p, 10);
    assert_eq!(s.phase.as_deref(), Some("Running"));
}

#[test]
fn sandboxes_are_taken_newest_first_whatever_the_order_given() {
    let p = one("Always");
    let old = sandbox("sb1", 0, false, "10.88.0.5");
    let new = sandbox("sb2", 100, true, "10.88.0.6");
    let s = Inputs::new(vec![old, new], vec![cri("app", 0, 101, None, "")]).status(&p, 110);
    assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.6"));
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
}

#[test]
fn succeeded_never_turns_failed() {
    let p = with_status(
        one("Never"),
        PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        },
    );
    let s = Inputs::new(vec![], vec![cri("app", 0, 1, Some(1), "Error")]).status(&p, 5);
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
}

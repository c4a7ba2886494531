//! Container states, attempts, waiting reasons and probes.

use serde_json::json;

use super::*;

#[test]
fn running_container_reports_running_with_ips_and_conditions() {
    let p = one("Always");
    let s = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]).status(&p, 10);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.5"));
    assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "10.88.0.5");
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(s.host_ips.as_ref().unwrap()[0].ip, "192.168.1.10");
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(s.start_time, Some(at(10)));
    assert_eq!(s.observed_generation, Some(1));
    let c = cs(&s, "app");
    assert!(c.ready);
    assert_eq!(c.started, Some(true));
    assert_eq!(c.container_id.as_deref(), Some("containerd://app-0"));
    assert_eq!(c.image, "docker.io/library/busybox:latest");
    assert_eq!(c.image_id, "docker.io/library/busybox@sha256:abc");
    // Times are cut to seconds, as the status manager stores them.
    assert_eq!(
        c.state
            .as_ref()
            .unwrap()
            .running
            .as_ref()
            .unwrap()
            .started_at,
        Some(at(2))
    );
    let types: Vec<_> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", "True"),
            ("ContainersReady", "True"),
            ("PodScheduled", "True")
        ]
    );
    assert!(
        s.conditions
            .iter()
            .flatten()
            .all(|c| c.last_transition_time == Some(at(10)))
    );
}

#[test]
fn nothing_created_yet_is_pending_container_creating() {
    let p = one("Always");
    let s = Inputs::new(vec![], vec![]).status(&p, 0);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let w = cs(&s, "app")
        .state
        .as_ref()
        .unwrap()
        .waiting
        .clone()
        .unwrap();
    assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
    assert_eq!(cs(&s, "app").image, "busybox");
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
    let ready = cond(&s, "Ready");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [app]")
    );
    assert_eq!(s.pod_ip, None);
}

#[test]
fn oom_killed_reason_is_the_cri_one() {
    let p = one("Never");
    let s = Inputs::new(vec![], vec![cri("app", 0, 1, Some(137), "OOMKilled")]).status(&p, 10);
    let t = cs(&s, "app")
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn always_crash_loop_shows_back_off_last_state_and_restart_count() {
    let p = one("Always");
    let mut i = Inputs::new(
        ready_sb(),
        vec![
            cri("app", 2, 30, Some(1), "Error"),
            cri("app", 1, 20, Some(1), "Error"),
            cri("app", 0, 1, Some(1), "Error"),
        ],
    );
    i.waiting.insert(
        "app".into(),
        (
            "CrashLoopBackOff".into(),
            "back-off 40s restarting failed container=app pod=web_default(u1)".into(),
        ),
    );
    let s = i.status(&p, 40);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let c = cs(&s, "app");
    assert_eq!(c.restart_count, 2);
    let w = c.state.as_ref().unwrap().waiting.clone().unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(w.message.unwrap().starts_with("back-off 40s"));
    // The newest attempt moved to lastState when the container went waiting.
    let last = c.last_state.as_ref().unwrap().terminated.clone().unwrap();
    assert_eq!(last.container_id.as_deref(), Some("containerd://app-2"));
    assert_eq!(c.container_id.as_deref(), Some("containerd://app-2"));
    assert!(!c.ready);
}

#[test]
fn restarted_container_has_previous_attempt_as_last_state() {
    let p = one("Always");
    let s = Inputs::new(
        ready_sb(),
        vec![
            cri("app", 0, 1, Some(2), "Error"),
            cri("app", 1, 20, None, ""),
        ],
    )
    .status(&p, 30);
    let c = cs(&s, "app");
    assert_eq!(c.restart_count, 1);
    assert!(c.state.as_ref().unwrap().running.is_some());
    let last = c.last_state.as_ref().unwrap().terminated.clone().unwrap();
    assert_eq!(
        (last.exit_code, last.container_id.as_deref()),
        (2, Some("containerd://app-0"))
    );
}

#[test]
fn waiting_reason_is_ignored_for_a_running_container() {
    let p = one("Always");
    let mut i = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]);
    i.waiting
        .insert("app".into(), ("ErrImagePull".into(), "stale".into()));
    assert!(
        cs(&i.status(&p, 5), "app")
            .state
            .as_ref()
            .unwrap()
            .running
            .is_some()
    );
    let mut fresh = Inputs::new(ready_sb(), vec![]);
    fresh
        .waiting
        .insert("app".into(), ("ErrImagePull".into(), "pull failed".into()));
    let s = fresh.status(&p, 5);
    let w = cs(&s, "app")
        .state
        .as_ref()
        .unwrap()
        .waiting
        .clone()
        .unwrap();
    assert_eq!(
        (w.reason.as_deref(), w.message.as_deref()),
        (Some("ErrImagePull"), Some("pull failed"))
    );
    assert_eq!(s.phase.as_deref(), Some("Pending"));
}

#[test]
fn readiness_and_startup_probes_gate_ready_and_started() {
    let p = pod(json!({"containers": [
        {"name": "app", "image": "busybox", "readinessProbe": {"exec": {"command": ["true"]}}},
        {"name": "slow", "image": "busybox", "startupProbe": {"exec": {"command": ["true"]}}},
    ]}));
    let mut i = Inputs::new(
        ready_sb(),
        vec![cri("app", 0, 1, None, ""), cri("slow", 0, 1, None, "")],
    );
    let s = i.status(&p, 5);
    assert!(
        !cs(&s, "app").ready,
        "a readiness probe without result is not ready"
    );
    assert_eq!(cs(&s, "app").started, Some(true));
    assert_eq!(cs(&s, "slow").started, Some(false));
    assert!(!cs(&s, "slow").ready, "not started is not ready");
    assert_eq!(
        cond(&s, "ContainersReady").message.as_deref(),
        Some("containers with unready status: [app slow]")
    );
    i.readiness.insert("app".into(), true);
    i.startup.insert("slow".into(), true);
    let s = i.status(&p, 6);
    assert!(cs(&s, "app").ready && cs(&s, "slow").ready);
    assert_eq!(cond(&s, "Ready").status, "True");
    i.readiness.insert("app".into(), false);
    assert!(!cs(&i.status(&p, 7), "app").ready);
}

#[test]
fn lost_running_container_is_terminated_unknown() {
    let p = one("Always");
    let running = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]).status(&p, 10);
    let p2 = with_status(p, running);
    let s = Inputs::new(ready_sb(), vec![]).status(&p2, 20);
    let c = cs(&s, "app");
    let last = c.last_state.as_ref().unwrap().terminated.clone().unwrap();
    assert_eq!(
        (last.reason.as_deref(), last.exit_code),
        (Some("ContainerStatusUnknown"), 137)
    );
    assert_eq!(c.restart_count, 1);
    assert_eq!(s.phase.as_deref(), Some("Running"), "not back to Pending");
}

#[test]
fn volume_mounts_resources_and_user_as_the_kubelet_lists_them() {
    let p = pod(json!({"containers": [{"name": "app", "image": "busybox",
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "64Mi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"},
                         {"name": "token", "mountPath": "/var/run/secrets", "readOnly": true}]}]}));
    // The waiting status lists the mounts; the running one carries them over.
    let pending = Inputs::new(vec![], vec![]).status(&p, 0);
    let mounts = serde_json::to_value(&cs(&pending, "app").volume_mounts).unwrap();
    assert_eq!(
        mounts,
        json!([{"name": "data", "mountPath": "/data"},
               {"name": "token", "mountPath": "/var/run/secrets", "readOnly": true, "recursiveReadOnly": "Disabled"}])
    );
    let mut c = cri("app", 0, 1, None, "");
    c.user = Some(v1::ContainerUser {
        linux: Some(v1::LinuxContainerUser {
            uid: 1000,
            gid: 3000,
            supplemental_groups: vec![3000, 4000],
        }),
    });
    let running = Inputs::new(ready_sb(), vec![c]).status(&with_status(p, pending), 5);
    let app = cs(&running, "app");
    assert_eq!(serde_json::to_value(&app.volume_mounts).unwrap(), mounts);
    assert_eq!(
        serde_json::to_value(&app.resources).unwrap(),
        json!({"requests": {"cpu": "250m"}, "limits": {"memory": "64Mi"}})
    );
    assert_eq!(
        serde_json::to_value(&app.allocated_resources).unwrap(),
        json!({"cpu": "250m"})
    );
    assert_eq!(
        serde_json::to_value(&app.user).unwrap(),
        json!({"linux": {"uid": 1000, "gid": 3000, "supplementalGroups": [3000, 4000]}})
    );
}

#[test]
fn termination_message_is_appended_to_the_runtime_one() {
    let mut c = cri("app", 0, 1, Some(1), "Error");
    crate::node::status::containers::add_termination_message(&mut c, "disk full");
    assert_eq!(c.message, "bye: disk full");
    let p = one("Never");
    let s = Inputs::new(vec![], vec![c]).status(&p, 10);
    let t = cs(&s, "app")
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(t.message.as_deref(), Some("bye: disk full"));
}

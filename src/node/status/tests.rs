//! pod_status against the kubelet's behaviour, one case per rule.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(T0 + secs).unwrap())
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

fn with_status(mut p: Pod, s: PodStatus) -> Pod {
    p.status = Some(s);
    p
}

fn sandbox(id: &str, created: i64, ready: bool, ip: &str) -> v1::PodSandboxStatus {
    v1::PodSandboxStatus {
        id: id.into(),
        state: if ready {
            v1::PodSandboxState::SandboxReady
        } else {
            v1::PodSandboxState::SandboxNotready
        } as i32,
        created_at: (T0 + created) * SEC,
        network: Some(v1::PodSandboxNetworkStatus {
            ip: ip.into(),
            additional_ips: vec![],
        }),
        linux: Some(v1::LinuxPodSandboxStatus {
            namespaces: Some(v1::Namespace {
                options: Some(v1::NamespaceOption::default()),
            }),
        }),
        ..Default::default()
    }
}

/// A CRI container: `exit` None is running, Some(code) exited at `created + 5`.
fn cri(
    name: &str,
    attempt: u32,
    created: i64,
    exit: Option<i32>,
    reason: &str,
) -> v1::ContainerStatus {
    v1::ContainerStatus {
        id: format!("{name}-{attempt}"),
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt,
        }),
        state: if exit.is_some() {
            v1::ContainerState::ContainerExited
        } else {
            v1::ContainerState::ContainerRunning
        } as i32,
        created_at: (T0 + created) * SEC,
        started_at: (T0 + created + 1) * SEC + 123,
        finished_at: if exit.is_some() {
            (T0 + created + 5) * SEC
        } else {
            0
        },
        exit_code: exit.unwrap_or(0),
        reason: reason.into(),
        message: if exit.is_some() {
            "bye".into()
        } else {
            String::new()
        },
        image: Some(v1::ImageSpec {
            image: "docker.io/library/busybox:latest".into(),
            ..Default::default()
        }),
        image_ref: "docker.io/library/busybox@sha256:abc".into(),
        labels: HashMap::from([("io.kubernetes.container.name".into(), name.into())]),
        annotations: HashMap::from([(
            "io.kubernetes.container.restartCount".into(),
            attempt.to_string(),
        )]),
        ..Default::default()
    }
}

struct Inputs {
    sandboxes: Vec<v1::PodSandboxStatus>,
    containers: Vec<v1::ContainerStatus>,
    waiting: HashMap<String, (String, String)>,
    readiness: HashMap<String, bool>,
    startup: HashMap<String, bool>,
}

impl Inputs {
    fn new(sandboxes: Vec<v1::PodSandboxStatus>, containers: Vec<v1::ContainerStatus>) -> Self {
        Self {
            sandboxes,
            containers,
            waiting: HashMap::new(),
            readiness: HashMap::new(),
            startup: HashMap::new(),
        }
    }
    fn status(&self, pod: &Pod, now: i64) -> PodStatus {
        let observed = ObservedPod {
            sandboxes: &self.sandboxes,
            containers: &self.containers,
            waiting: &self.waiting,
            readiness: &self.readiness,
            startup: &self.startup,
            qos_class: "BestEffort",
            runtime_name: "containerd",
        };
        pod_status(pod, &observed, &["192.168.1.10".to_string()], at(now))
    }
}

fn one(restart: &str) -> Pod {
    pod(json!({"restartPolicy": restart, "containers": [{"name": "app", "image": "busybox"}]}))
}

fn cs<'a>(s: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    s.container_statuses
        .iter()
        .chain(s.init_container_statuses.iter())
        .flatten()
        .find(|c| c.name == name)
        .unwrap()
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a k8s_openapi::api::core::v1::PodCondition {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == t)
        .unwrap()
}

fn ready_sb() -> Vec<v1::PodSandboxStatus> {
    vec![sandbox("sb1", 0, true, "10.88.0.5")]
}

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
fn transition_times_are_kept_while_the_status_is_unchanged() {
    let p = one("Always");
    let i = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]);
    let first = i.status(&p, 10);
    let p2 = with_status(p.clone(), first.clone());
    let second = i.status(&p2, 50);
    assert_eq!(first, second, "nothing changed, not even times");
    assert_eq!(status_patch(&first, &second), None);
    assert_eq!(second.start_time, Some(at(10)), "startTime kept once set");
    // Ready goes False: only its (and ContainersReady's) transition time moves.
    let stopped = Inputs::new(ready_sb(), vec![cri("app", 0, 1, Some(1), "Error")]);
    let third = stopped.status(&p2, 60);
    assert_eq!(cond(&third, "Ready").last_transition_time, Some(at(60)));
    assert_eq!(
        cond(&third, "ContainersReady").last_transition_time,
        Some(at(60))
    );
    assert_eq!(
        cond(&third, "PodScheduled").last_transition_time,
        Some(at(10))
    );
    assert_eq!(
        cond(&third, "Initialized").last_transition_time,
        Some(at(10))
    );
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

fn with_init(restart: &str) -> Pod {
    pod(json!({"restartPolicy": restart,
        "initContainers": [{"name": "init1", "image": "busybox"}, {"name": "init2", "image": "busybox"}],
        "containers": [{"name": "app", "image": "busybox"}]}))
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
fn status_patch_is_a_strategic_merge_patch_with_uid() {
    let p = one("Always");
    let pending = Inputs::new(vec![], vec![]).status(&p, 0);
    let p2 = with_status(p.clone(), pending.clone());
    let running = Inputs::new(ready_sb(), vec![cri("app", 0, 1, None, "")]).status(&p2, 10);
    let patch = pod_status_patch(&p2, &running).unwrap();
    assert_eq!(patch["metadata"], json!({"uid": "u1"}));
    let st = &patch["status"];
    assert_eq!(st["phase"], "Running");
    assert_eq!(st["podIP"], "10.88.0.5");
    assert_eq!(st["podIPs"], json!([{"ip": "10.88.0.5"}]));
    // Conditions merge by type: only the changed ones, plus the order directive.
    let changed: Vec<_> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        changed,
        ["PodReadyToStartContainers", "Ready", "ContainersReady"]
    );
    assert_eq!(
        st["conditions"][0],
        json!({"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2023-11-14T22:13:30Z"})
    );
    assert_eq!(
        st["$setElementOrder/conditions"].as_array().unwrap().len(),
        5
    );
    // Container statuses are atomic: the whole list.
    assert_eq!(st["containerStatuses"].as_array().unwrap().len(), 1);
    assert!(
        st.get("startTime").is_none(),
        "unchanged fields are left out"
    );
    assert!(pod_status_patch(&with_status(p, running.clone()), &running).is_none());
}

#[test]
fn status_patch_removes_and_deletes() {
    let old: PodStatus = serde_json::from_value(json!({
        "phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
        "conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}))
    .unwrap();
    let new: PodStatus = serde_json::from_value(json!({
        "phase": "Running", "podIPs": [{"ip": "10.0.0.1"}],
        "conditions": [{"type": "A", "status": "True"}]}))
    .unwrap();
    let patch = status_patch(&old, &new).unwrap();
    assert_eq!(
        patch,
        json!({"status": {
            "podIP": null,
            "podIPs": [{"$patch": "delete", "ip": "fd00::1"}],
            "$setElementOrder/podIPs": [{"ip": "10.0.0.1"}],
            "conditions": [{"$patch": "delete", "type": "B"}],
            "$setElementOrder/conditions": [{"type": "A"}],
        }})
    );
}

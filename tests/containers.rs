//! Containers against real containerd, runc and CNI: a `deckhand cri` per
//! test with its own containerd namespace, bridge, subnet and cgroup parent,
//! and a check after each test that nothing is left behind.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pod::{
    TestPod, assert_no_containerd_leftovers, busybox_container, child_cgroups, create, remove,
    remove_sandbox, start, stop, wait_exited,
};
use common::{BUSYBOX, CriServer};
use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;

/// Nothing of the test's containers is left: no containerd containers,
/// tasks or active snapshots in the namespace, no mounts under the run
/// dir, no child cgroups, no container processes.
fn assert_clean(pod: &TestPod, server: &CriServer, pids: &[u32]) {
    assert_no_containerd_leftovers(server);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let run = server.run_dir().to_string_lossy().into_owned();
    assert!(!mounts.contains(&run), "mounts left under {run}");
    let children = child_cgroups(&pod.cgroup_dir("memory", ""));
    assert!(children.is_empty(), "cgroups left: {children:?}");
    // A hybrid host's v2 tree, where runc makes cgroups as well.
    let unified =
        Path::new("/sys/fs/cgroup/unified").join(pod.cgroup_parent.trim_start_matches('/'));
    let children = child_cgroups(&unified);
    assert!(children.is_empty(), "v2 cgroups left: {children:?}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "container process {pid} still exists"
        );
    }
}

/// The memory hierarchy (v1) or the unified one.
fn memory_cgroup_root() -> PathBuf {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/memory")
    }
}

fn container_config(name: &str, script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        labels: HashMap::from([("io.kubernetes.container.name".into(), name.into())]),
        annotations: HashMap::from([("note".into(), "x".into())]),
        ..busybox_container(name, script)
    }
}

async fn status(
    client: &mut CriClient,
    id: &str,
) -> Result<(cri::ContainerStatus, serde_json::Value), tonic::Status> {
    let r = client
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info = serde_json::from_str(r.info.get("info").expect("verbose info")).unwrap();
    Ok((r.status.unwrap(), info))
}

/// Polls a file until it holds every needle, or fails at the deadline.
async fn wait_for_lines(path: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| body.lines().any(|l| l.ends_with(n))) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{} lacks {needles:?}:\n{body}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_container_runs_logs_stops_and_goes() {
    let pod = TestPod::new("dhct", 214, 1);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "life").await;

    let mut config = container_config("app", "echo hello; echo err >&2; sleep 3600");
    config.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut client, &sandbox, config, &pod, "life")
        .await
        .expect("create");
    let (s, _) = status(&mut client, &id).await.unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerCreated as i32);
    assert_eq!(s.metadata.as_ref().unwrap().name, "app");
    assert_eq!(s.image.as_ref().unwrap().image, BUSYBOX);
    // As containerd: the id is the config digest, the ref a repo digest.
    assert!(s.image_id.starts_with("sha256:"), "{}", s.image_id);
    assert!(
        s.image_ref
            .starts_with("registry.k8s.io/e2e-test-images/busybox@sha256:"),
        "{}",
        s.image_ref
    );
    assert_eq!(s.annotations.get("note").map(String::as_str), Some("x"));
    let log = pod.logs.path().join("app/0.log");
    assert_eq!(s.log_path, log.to_string_lossy());

    start(&mut client, &id).await;
    let (s, info) = status(&mut client, &id).await.unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    assert!(s.started_at >= s.created_at && s.created_at > 0);
    let pid = info["pid"].as_u64().expect("pid") as u32;
    assert!(pid > 0 && Path::new(&format!("/proc/{pid}")).exists());
    // The container sits in its own cgroup under the pod's, with its limit
    // (found through the kernel's view: a nested test host may root the
    // memory hierarchy elsewhere).
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let memory = cgroups
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        .or_else(|| {
            cgroups
                .lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
        .expect("memory cgroup");
    assert!(
        memory.ends_with(&format!("{}/{sandbox}/{id}", pod.cgroup_parent)),
        "{memory}"
    );
    let dir = memory_cgroup_root().join(memory.trim_start_matches('/'));
    let limit = std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(dir.join("memory.max")))
        .expect("container memory limit file");
    assert_eq!(limit.trim(), (64u64 << 20).to_string());

    let body = wait_for_lines(&log, &[" stdout F hello", " stderr F err"]).await;
    for line in body.lines() {
        let ts = line.split(' ').next().unwrap();
        assert!(
            humantime::parse_rfc3339(ts).is_ok(),
            "not an RFC 3339 time in {line:?}"
        );
    }

    let listed = client
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sandbox.clone(),
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                label_selector: HashMap::from([(
                    "io.kubernetes.container.name".into(),
                    "app".into(),
                )]),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    let none = client
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerExited as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(none.is_empty());

    let stopping = Instant::now();
    stop(&mut client, &id, 2).await;
    // A bound that catches a hang, not a timing (a loaded host is slow).
    assert!(stopping.elapsed() < Duration::from_secs(40));
    let (s, _) = status(&mut client, &id).await.unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    assert!(
        s.exit_code == 137 || s.exit_code == 143,
        "exit code {}",
        s.exit_code
    );
    assert_eq!(s.reason, "Error");
    assert!(s.finished_at >= s.started_at);
    // Stopping again is fine.
    stop(&mut client, &id, 2).await;

    remove(&mut client, &id).await;
    let err = status(&mut client, &id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    remove(&mut client, &id).await;

    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[pid]);
}

#[tokio::test]
async fn exit_codes_and_reasons_come_from_the_exit_event() {
    let pod = TestPod::new("dhct", 214, 2);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "codes").await;

    let failing = create(
        &mut client,
        &sandbox,
        container_config("fails", "exit 3"),
        &pod,
        "codes",
    )
    .await
    .unwrap();
    let passing = create(
        &mut client,
        &sandbox,
        container_config("passes", "true"),
        &pod,
        "codes",
    )
    .await
    .unwrap();
    start(&mut client, &failing).await;
    start(&mut client, &passing).await;
    let s = wait_exited(&mut client, &failing).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
    assert!(s.finished_at >= s.started_at && s.started_at > 0);
    let s = wait_exited(&mut client, &passing).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    // An exited container cannot be started again.
    let err = client
        .runtime
        .start_container(cri::StartContainerRequest {
            container_id: failing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // A binary that is not there: the start fails, and says so.
    let mut missing = container_config("missing", "");
    missing.command = vec!["/no/such/binary".into()];
    let missing = create(&mut client, &sandbox, missing, &pod, "codes")
        .await
        .unwrap();
    let err = client
        .runtime
        .start_container(cri::StartContainerRequest {
            container_id: missing.clone(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("no/such/binary"), "{err:?}");
    let (s, _) = status(&mut client, &missing).await.unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!((s.exit_code, s.reason.as_str()), (128, "StartError"));

    remove(&mut client, &missing).await;
    remove(&mut client, &failing).await;
    remove(&mut client, &passing).await;
    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[]);
}

#[tokio::test]
async fn bad_requests_are_refused_and_leave_nothing() {
    let pod = TestPod::new("dhct", 214, 3);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "bad").await;

    let err = create(
        &mut client,
        "no-such-sandbox",
        container_config("a", "true"),
        &pod,
        "bad",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    let mut unknown = container_config("a", "true");
    unknown.image = common::image_spec("registry.k8s.io/no-such-image:1");
    let err = create(&mut client, &sandbox, unknown, &pod, "bad")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("no-such-image"), "{err:?}");

    let mut malformed = container_config("a", "true");
    malformed.image = common::image_spec("UPPER/Case:tag");
    let err = create(&mut client, &sandbox, malformed, &pod, "bad")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    let mut nameless = container_config("a", "true");
    nameless.metadata = None;
    let err = create(&mut client, &sandbox, nameless, &pod, "bad")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let mut empty_name = container_config("a", "true");
    empty_name.metadata.as_mut().unwrap().name.clear();
    let err = create(&mut client, &sandbox, empty_name, &pod, "bad")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // The image by id works as well as by name.
    let image_id = common::status(&mut client, BUSYBOX).await.unwrap().id;
    let mut by_id = container_config("a", "true");
    by_id.image = common::image_spec(&image_id);
    let first = create(&mut client, &sandbox, by_id, &pod, "bad")
        .await
        .expect("create by image id");
    let err = create(
        &mut client,
        &sandbox,
        container_config("a", "true"),
        &pod,
        "bad",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    // A failed creation left nothing in containerd.
    let listed = server.ctr(&["containers", "ls", "-q"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), vec![first.as_str()]);

    let err = status(&mut client, "no-such-container").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    stop(&mut client, "no-such-container", 1).await;
    remove(&mut client, "no-such-container").await;

    // Removal frees the name.
    remove(&mut client, &first).await;
    let first = create(
        &mut client,
        &sandbox,
        container_config("a", "true"),
        &pod,
        "bad",
    )
    .await
    .expect("the name is free again after removal");

    // A sandbox that is not ready takes no new containers.
    client
        .runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    let err = create(
        &mut client,
        &sandbox,
        container_config("b", "true"),
        &pod,
        "bad",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    remove(&mut client, &first).await;
    assert_eq!(server.ctr(&["containers", "ls", "-q"]).trim(), "");
    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[]);
}

#[tokio::test]
async fn stopping_and_removing_a_sandbox_takes_its_containers() {
    let pod = TestPod::new("dhct", 214, 4);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "owner").await;
    let id = create(
        &mut client,
        &sandbox,
        container_config("sleeper", "sleep 3600"),
        &pod,
        "owner",
    )
    .await
    .unwrap();
    start(&mut client, &id).await;
    let (_, info) = status(&mut client, &id).await.unwrap();
    let pid = info["pid"].as_u64().unwrap() as u32;
    // One created and never started goes as well.
    let idle = create(
        &mut client,
        &sandbox,
        container_config("idle", "true"),
        &pod,
        "owner",
    )
    .await
    .unwrap();
    let by_prefix = client
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                id: idle[..12].to_string(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(by_prefix.len(), 1);
    assert_eq!(by_prefix[0].id, idle);
    // A unique prefix names a container; one under 4 characters does not.
    assert!(status(&mut client, &idle[..12]).await.is_ok());
    let err = status(&mut client, &idle[..3]).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = client
        .runtime
        .stop_container(cri::StopContainerRequest {
            container_id: String::new(),
            timeout: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(
        by_prefix[0].state,
        cri::ContainerState::ContainerCreated as i32
    );

    client
        .runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    let (s, _) = status(&mut client, &id).await.unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);

    client
        .runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .unwrap();
    for gone in [&id, &idle] {
        let err = status(&mut client, gone).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
    assert_clean(&pod, &server, &[pid]);
}

#[tokio::test]
async fn a_rotated_log_is_reopened() {
    let pod = TestPod::new("dhct", 214, 5);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "rotate").await;
    let id = create(
        &mut client,
        &sandbox,
        container_config("ticker", "while true; do echo tick; sleep 0.1; done"),
        &pod,
        "rotate",
    )
    .await
    .unwrap();
    let reopen = |client: &mut CriClient, id: &str| {
        let request = cri::ReopenContainerLogRequest {
            container_id: id.into(),
        };
        let mut runtime = client.runtime.clone();
        async move { runtime.reopen_container_log(request).await }
    };
    // Not running yet: nothing to reopen.
    let err = reopen(&mut client, &id).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    start(&mut client, &id).await;
    let log = pod.logs.path().join("ticker/0.log");
    wait_for_lines(&log, &[" stdout F tick"]).await;

    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    reopen(&mut client, &id).await.expect("reopen");
    // The new file is there when the call returns (the kubelet checks).
    assert!(log.exists(), "no new log file after ReopenContainerLog");
    wait_for_lines(&log, &[" stdout F tick"]).await;

    let (_, info) = status(&mut client, &id).await.unwrap();
    let pid = info["pid"].as_u64().unwrap() as u32;
    stop(&mut client, &id, 0).await;
    remove(&mut client, &id).await;
    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[pid]);
}

#[tokio::test]
async fn exec_sync_returns_output_and_code_and_times_out_alone() {
    let pod = TestPod::new("dhct", 214, 6);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "exec").await;
    let id = create(
        &mut client,
        &sandbox,
        container_config("target", "sleep 3600"),
        &pod,
        "exec",
    )
    .await
    .unwrap();
    let exec = |client: &mut CriClient, cmd: &str, timeout: i64| {
        let request = cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into(), "-c".into(), cmd.into()],
            timeout,
        };
        let mut runtime = client.runtime.clone();
        async move { runtime.exec_sync(request).await.map(|r| r.into_inner()) }
    };
    let err = exec(&mut client, "true", 0).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    start(&mut client, &id).await;

    let r = exec(&mut client, "echo out; echo err >&2; hostname; exit 7", 10)
        .await
        .expect("exec");
    assert_eq!(r.stdout, b"out\nexec\n");
    assert_eq!(r.stderr, b"err\n");
    assert_eq!(r.exit_code, 7);

    let started = Instant::now();
    let err = exec(&mut client, "sleep 61; echo never", 1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    // Well under the sleep's 61 s, with room for a loaded host.
    assert!(started.elapsed() < Duration::from_secs(30));
    // The shell is gone, and so is the sleep it started.
    let r = exec(&mut client, "ps -o args | grep -c '[s]leep 61'", 10)
        .await
        .expect("exec");
    assert_eq!(r.stdout, b"0\n", "{r:?}");
    // A caller that goes away (a client deadline, a dropped call) takes
    // its exec with it, even one without a timeout of its own.
    let mut runtime = client.runtime.clone();
    let mut request = tonic::Request::new(cri::ExecSyncRequest {
        container_id: id.clone(),
        cmd: vec!["sh".into(), "-c".into(), "sleep 62".into()],
        timeout: 0,
    });
    request.set_timeout(Duration::from_millis(500));
    let err = runtime.exec_sync(request).await.unwrap_err();
    // tonic's client gives up itself at the deadline: Cancelled.
    assert!(
        matches!(
            err.code(),
            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
        ),
        "{err:?}"
    );
    let dropped = exec(&mut client, "sleep 63", 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), dropped)
            .await
            .is_err()
    );
    let mut left = Vec::new();
    for _ in 0..50 {
        let r = exec(&mut client, "ps -o args | grep -c '[s]leep 6[23]'", 10)
            .await
            .expect("exec");
        left = r.stdout;
        if left == b"0\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, b"0\n", "cancelled execs still run");
    // At most 16 at once in one container; the rest are refused at once.
    let calls: Vec<_> = (0..20).map(|_| exec(&mut client, "sleep 2", 10)).collect();
    let results = futures::future::join_all(calls).await;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == tonic::Code::ResourceExhausted))
        .count();
    assert_eq!(
        (results.len() - refused, refused),
        (16, 4),
        "{:?}",
        results
            .iter()
            .map(|r| r.as_ref().map(|r| r.exit_code).map_err(|e| e.code()))
            .collect::<Vec<_>>()
    );
    assert!(
        exec(&mut client, "true", 10).await.is_ok(),
        "slots come back"
    );
    // Only the exec died: the container runs on.
    let (s, info) = status(&mut client, &id).await.unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    let r = exec(&mut client, "echo still", 10).await.expect("exec");
    assert_eq!(r.stdout, b"still\n");

    let pid = info["pid"].as_u64().unwrap() as u32;
    remove(&mut client, &id).await;
    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[pid]);
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let pod = TestPod::new("dhct", 214, 7);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "oom").await;
    // A shell variable far larger than the limit.
    let mut config = container_config(
        "hog",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    );
    config.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut client, &sandbox, config, &pod, "oom")
        .await
        .unwrap();
    start(&mut client, &id).await;
    let s = wait_exited(&mut client, &id).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_ne!(s.exit_code, 0);

    remove(&mut client, &id).await;
    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[]);
}

#[tokio::test]
async fn a_restarted_deckhand_adopts_its_containers() {
    let pod = TestPod::new("dhct", 214, 8);
    let (mut server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "adopt").await;
    let running = create(
        &mut client,
        &sandbox,
        container_config("runs", "sleep 3600"),
        &pod,
        "adopt",
    )
    .await
    .unwrap();
    let done = create(
        &mut client,
        &sandbox,
        container_config("done", "exit 3"),
        &pod,
        "adopt",
    )
    .await
    .unwrap();
    let idle = create(
        &mut client,
        &sandbox,
        container_config("idle", "true"),
        &pod,
        "adopt",
    )
    .await
    .unwrap();
    start(&mut client, &running).await;
    start(&mut client, &done).await;
    wait_exited(&mut client, &done).await;
    let (before, info) = status(&mut client, &running).await.unwrap();
    let pid = info["pid"].as_u64().unwrap() as u32;

    let mut client = server.kill_and_restart().await;
    let (s, info) = status(&mut client, &running).await.expect("adopted");
    assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(info["pid"].as_u64().unwrap() as u32, pid);
    assert_eq!(s.started_at, before.started_at);
    assert_eq!(s.labels, before.labels);
    assert_eq!(s.log_path, before.log_path);
    assert_eq!(
        (&s.image_id, &s.image_ref),
        (&before.image_id, &before.image_ref)
    );
    assert!(s.user.is_some() && s.user == before.user, "{s:?}");
    let (s, _) = status(&mut client, &done).await.unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
    let (s, _) = status(&mut client, &idle).await.unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerCreated as i32);
    // Names stay reserved across the restart.
    let err = create(
        &mut client,
        &sandbox,
        container_config("runs", "true"),
        &pod,
        "adopt",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");

    // Exits are seen by the new process.
    stop(&mut client, &running, 1).await;
    let (s, _) = status(&mut client, &running).await.unwrap();
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    assert!(s.exit_code == 137 || s.exit_code == 143, "{s:?}");

    remove_sandbox(&mut client, &sandbox).await;
    for id in [&running, &done, &idle] {
        let err = status(&mut client, id).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
    assert_clean(&pod, &server, &[pid]);
}

/// Runs a container to its end and returns its log.
async fn run_to_end(
    client: &mut CriClient,
    pod: &TestPod,
    sandbox: &str,
    pod_name: &str,
    config: cri::ContainerConfig,
) -> (cri::ContainerStatus, String) {
    let name = config.metadata.as_ref().unwrap().name.clone();
    let id = create(client, sandbox, config, pod, pod_name)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
    start(client, &id).await;
    let s = wait_exited(client, &id).await;
    // The log driver may still be writing the last lines.
    let log = wait_for_lines(&pod.logs.path().join(format!("{name}/0.log")), &["end"]).await;
    remove(client, &id).await;
    (s, log)
}

fn security(config: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// A capability set's bits from a /proc/<pid>/status text (or a log of one).
fn cap_set(status: &str, set: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.contains(&format!("{set}:")))
        .unwrap_or_else(|| panic!("no {set} in {status}"));
    let hex = line
        .rsplit(|c: char| c.is_whitespace() || c == ':')
        .next()
        .unwrap();
    u64::from_str_radix(hex, 16).unwrap()
}

#[tokio::test]
async fn the_security_context_shapes_the_process() {
    let pod = TestPod::new("dhct", 214, 14);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "secctx").await;

    // A read-only rootfs refuses writes.
    let mut ro = container_config("ro", "touch /probe; echo end");
    security(&mut ro).readonly_rootfs = true;
    let (_, log) = run_to_end(&mut client, &pod, &sandbox, "secctx", ro).await;
    assert!(log.contains("Read-only file system"), "{log}");

    // Run as a user, a group and supplemental groups; ContainerStatus says
    // whom, and which image.
    let mut user = container_config("user", "id -u; id -g; id -G; sleep 3600");
    let sc = security(&mut user);
    sc.run_as_user = Some(cri::Int64Value { value: 1001 });
    sc.run_as_group = Some(cri::Int64Value { value: 1002 });
    sc.supplemental_groups = vec![1234];
    let id = create(&mut client, &sandbox, user, &pod, "secctx")
        .await
        .unwrap();
    start(&mut client, &id).await;
    let log = pod.logs.path().join("user/0.log");
    wait_for_lines(&log, &[" 1001", " 1002", " 1002 1234"]).await;
    let (s, _) = status(&mut client, &id).await.unwrap();
    assert_eq!(
        s.user,
        Some(cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: 1001,
                gid: 1002,
                supplemental_groups: vec![1002, 1234],
            })
        })
    );
    let image = common::status(&mut client, BUSYBOX).await.unwrap();
    assert_eq!(s.image_id, image.id, "image_id is the config digest");
    assert!(
        image.repo_digests.contains(&s.image_ref),
        "image_ref {} is a repo digest of {:?}",
        s.image_ref,
        image.repo_digests
    );
    stop(&mut client, &id, 0).await;
    remove(&mut client, &id).await;

    // Dropped capabilities are gone from every set; the others stay.
    let mut dropped = container_config("dropped", "cat /proc/self/status; echo end");
    security(&mut dropped).capabilities = Some(cri::Capability {
        drop_capabilities: vec!["NET_RAW".into(), "CAP_CHOWN".into()],
        ..Default::default()
    });
    let (_, log) = run_to_end(&mut client, &pod, &sandbox, "secctx", dropped).await;
    let text: String = log
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect::<Vec<_>>()
        .join("\n");
    let (chown, kill, net_raw) = (1u64 << 0, 1u64 << 5, 1u64 << 13);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let bits = cap_set(&text, set);
        assert_eq!(bits & (chown | net_raw), 0, "{set} {bits:x}");
        assert_ne!(bits & kill, 0, "{set} {bits:x}");
    }

    // A masked path reads as /dev/null: the applet cannot be run.
    let mut masked = container_config("masked", "ls /; echo end");
    security(&mut masked).masked_paths = vec!["/bin/ls".into()];
    let (_, log) = run_to_end(&mut client, &pod, &sandbox, "secctx", masked).await;
    assert!(log.contains("ls: Permission denied"), "{log}");

    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[]);
}

/// Our own bounding set: what the node can grant.
fn node_bounding_set() -> u64 {
    cap_set(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "CapBnd",
    )
}

#[tokio::test]
async fn privileged_and_all_capabilities_get_what_the_node_has() {
    let pod = TestPod::new("dhct", 214, 15);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "priv").await;
    let node = node_bounding_set();

    // ALL: every capability the node has (root here lacks SYS_RESOURCE, so
    // asking for more would fail the start).
    let mut all = container_config("all", "cat /proc/self/status; echo end");
    security(&mut all).capabilities = Some(cri::Capability {
        add_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    let (s, log) = run_to_end(&mut client, &pod, &sandbox, "priv", all).await;
    assert_eq!(s.exit_code, 0, "{log}");
    assert_eq!(cap_set(&log, "CapEff"), node, "{log}");

    // Privileged: all capabilities, the host's devices, and no seccomp
    // even when a profile blocking sethostname is named.
    let profile = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        profile.path(),
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let host_device = ["/dev/kmsg", "/dev/mem", "/dev/loop-control", "/dev/fuse"]
        .into_iter()
        .find(|d| Path::new(d).exists())
        .expect("a host device outside runc's default set");
    let mut privileged = container_config(
        "privileged",
        &format!(
            "grep CapEff /proc/self/status; test -e {host_device} && echo has-device; hostname renamed && echo renamed; echo end"
        ),
    );
    let sc = security(&mut privileged);
    sc.privileged = true;
    sc.seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Localhost as i32,
        localhost_ref: profile.path().to_string_lossy().into_owned(),
    });
    let (s, log) = run_to_end(&mut client, &pod, &sandbox, "priv", privileged).await;
    assert_eq!(s.exit_code, 0, "{log}");
    assert_eq!(cap_set(&log, "CapEff"), node, "{log}");
    assert!(log.contains("stdout F has-device"), "{log}");
    assert!(log.contains("stdout F renamed"), "{log}");

    // Asking for a capability the node lacks fails at once, by name.
    let mut lacking = container_config("lacking", "true");
    security(&mut lacking).capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_RESOURCE".into()],
        ..Default::default()
    });
    if node & (1 << 24) == 0 {
        let err = create(&mut client, &sandbox, lacking, &pod, "priv")
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("SYS_RESOURCE"), "{err:?}");
    }

    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[]);
}

/// A host directory bind-mounted on itself with a propagation, unmounted
/// (with everything under it) on drop.
struct HostMount {
    dir: tempfile::TempDir,
}

impl HostMount {
    fn new(flags: nix::mount::MsFlags) -> Self {
        use nix::mount::{MsFlags, mount};
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some(dir.path()),
            dir.path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .unwrap();
        mount(
            None::<&str>,
            dir.path(),
            None::<&str>,
            flags | MsFlags::MS_REC,
            None::<&str>,
        )
        .unwrap();
        HostMount { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn tmpfs(&self, sub: &str) -> PathBuf {
        let at = self.path().join(sub);
        std::fs::create_dir_all(&at).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        at
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        // Detach until nothing is mounted there any more (submounts too).
        while nix::mount::umount2(self.path(), nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    }
}

fn bind(host: &Path, container: &str, propagation: cri::MountPropagation) -> cri::Mount {
    cri::Mount {
        host_path: host.to_string_lossy().into_owned(),
        container_path: container.into(),
        propagation: propagation as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn bind_mounts_propagate_as_asked() {
    use cri::MountPropagation::*;
    let pod = TestPod::new("dhct", 214, 16);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "propagate").await;
    let shared = HostMount::new(nix::mount::MsFlags::MS_SHARED);
    let private = HostMount::new(nix::mount::MsFlags::MS_PRIVATE);

    let mut ids = Vec::new();
    for (name, source, propagation) in [
        ("private", private.path(), PropagationPrivate),
        ("slave", shared.path(), PropagationHostToContainer),
        ("both", shared.path(), PropagationBidirectional),
    ] {
        let mut config = container_config(name, "sleep 3600");
        config.mounts = vec![bind(source, "/data", propagation)];
        // Privileged, to mount inside.
        security(&mut config).privileged = true;
        let id = create(&mut client, &sandbox, config, &pod, "propagate")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        start(&mut client, &id).await;
        let (s, _) = status(&mut client, &id).await.unwrap();
        assert_eq!(s.mounts[0].propagation, propagation as i32);
        ids.push(id);
    }
    let exec = |client: &mut CriClient, id: &str, cmd: &str| {
        let request = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), cmd.into()],
            timeout: 10,
        };
        let mut runtime = client.runtime.clone();
        async move {
            let r = runtime.exec_sync(request).await.unwrap().into_inner();
            String::from_utf8(r.stdout).unwrap()
        }
    };

    // Host to container: a mount made on the host after the start.
    for host in [&shared, &private] {
        let at = host.tmpfs("from-host");
        std::fs::write(at.join("flag"), "x").unwrap();
    }
    let seen = |out: String| out.contains("flag");
    assert!(!seen(
        exec(&mut client, &ids[0], "ls /data/from-host").await
    ));
    assert!(seen(exec(&mut client, &ids[1], "ls /data/from-host").await));
    assert!(seen(exec(&mut client, &ids[2], "ls /data/from-host").await));

    // Container to host: only the bidirectional mount carries it back.
    for (id, sub) in [(&ids[1], "from-slave"), (&ids[2], "from-both")] {
        exec(
            &mut client,
            id,
            &format!(
                "mkdir -p /data/{sub} && mount -t tmpfs tmpfs /data/{sub} && touch /data/{sub}/flag"
            ),
        )
        .await;
    }
    assert!(!shared.path().join("from-slave/flag").exists());
    assert!(shared.path().join("from-both/flag").exists());

    // A private source cannot receive anything: refused, with the reason.
    let mut config = container_config("refused", "true");
    config.mounts = vec![bind(private.path(), "/data", PropagationHostToContainer)];
    let err = create(&mut client, &sandbox, config, &pod, "propagate")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("neither a shared nor a slave"),
        "{err:?}"
    );

    remove_sandbox(&mut client, &sandbox).await;
    drop((shared, private));
    assert_clean(&pod, &server, &[]);
}

#[tokio::test]
async fn recursive_read_only_mounts_are_advertised_and_honoured() {
    let pod = TestPod::new("dhct", 214, 17);
    let (server, mut client) = pod.server().await;
    let r = client
        .runtime
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(r.features.unwrap().supplemental_groups_policy);
    let handler = &r.runtime_handlers[0];
    assert_eq!(handler.name, "");
    // This project's machines: runc 1.1 with rro, Linux 6.
    assert!(handler.features.unwrap().recursive_read_only_mounts);

    let sandbox = pod.run_sandbox(&mut client, "rro").await;
    let host = HostMount::new(nix::mount::MsFlags::MS_PRIVATE);
    host.tmpfs("tmpfs");
    for (name, rro, expected) in [("ro", false, "written"), ("rro", true, "Read-only")] {
        let mut config = container_config(name, "touch /mnt/tmpfs/f && echo written; echo end");
        let mut mount = bind(
            host.path(),
            "/mnt",
            cri::MountPropagation::PropagationPrivate,
        );
        mount.readonly = true;
        mount.recursive_read_only = rro;
        config.mounts = vec![mount];
        let (_, log) = run_to_end(&mut client, &pod, &sandbox, "rro", config).await;
        assert!(log.contains(expected), "{name}: {log}");
    }
    // Recursive read-only must be read-only (and private).
    let mut config = container_config("rw-rro", "true");
    let mut mount = bind(
        host.path(),
        "/mnt",
        cri::MountPropagation::PropagationPrivate,
    );
    mount.recursive_read_only = true;
    config.mounts = vec![mount];
    let err = create(&mut client, &sandbox, config, &pod, "rro")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    remove_sandbox(&mut client, &sandbox).await;
    drop(host);
    assert_clean(&pod, &server, &[]);
}

// --- Pod namespaces as containers see them ---------------------------------

/// A sandbox config with namespace options (and maybe port mappings).
fn sandbox_with(
    pod: &TestPod,
    name: &str,
    options: cri::NamespaceOption,
    port_mappings: Vec<cri::PortMapping>,
) -> cri::PodSandboxConfig {
    let mut config = pod.sandbox_config(name);
    config.port_mappings = port_mappings;
    config.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(options),
        ..Default::default()
    });
    config
}

async fn run_sandbox_config(client: &mut CriClient, config: &cri::PodSandboxConfig) -> String {
    client
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("run sandbox")
        .into_inner()
        .pod_sandbox_id
}

async fn create_in(
    client: &mut CriClient,
    sandbox_id: &str,
    sandbox: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    client
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .expect("create container")
        .into_inner()
        .container_id
}

fn with_container_namespaces(
    mut config: cri::ContainerConfig,
    options: cri::NamespaceOption,
) -> cri::ContainerConfig {
    config.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            namespace_options: Some(options),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

async fn exec_sh(client: &mut CriClient, id: &str, script: &str) -> cri::ExecSyncResponse {
    client
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 20,
        })
        .await
        .expect("exec")
        .into_inner()
}

async fn container_pid(client: &mut CriClient, id: &str) -> u32 {
    let (_, info) = status(client, id).await.unwrap();
    info["pid"].as_u64().unwrap() as u32
}

/// An HTTP GET over a plain TCP connection; the response, or the error.
fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    conn.read_to_string(&mut body)?;
    Ok(body)
}

/// busybox httpd on :80 serving one page, as the pod's web server.
const WEB_SERVER: &str =
    "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www";

#[tokio::test]
async fn pods_reach_each_other_by_ip_and_a_host_port_reaches_the_pod() {
    let pod = TestPod::new("dhct", 214, 9);
    let (server, mut client) = pod.server().await;
    let host_port = common::free_port();
    let web_config = sandbox_with(
        &pod,
        "web",
        cri::NamespaceOption::default(),
        vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: host_port as i32,
            host_ip: String::new(),
        }],
    );
    let web = run_sandbox_config(&mut client, &web_config).await;
    let web_ip = client
        .runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: web.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip;
    let httpd = create_in(
        &mut client,
        &web,
        &web_config,
        container_config("httpd", WEB_SERVER),
    )
    .await;
    start(&mut client, &httpd).await;

    // Another pod's container fetches the page by the web pod's IP.
    let client_config = sandbox_with(&pod, "client", Default::default(), vec![]);
    let other = run_sandbox_config(&mut client, &client_config).await;
    let fetcher = create_in(
        &mut client,
        &other,
        &client_config,
        container_config("fetcher", "sleep 3600"),
    )
    .await;
    start(&mut client, &fetcher).await;
    let r = exec_sh(
        &mut client,
        &fetcher,
        &format!(
            "for i in $(seq 100); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {web_ip} 80 | tail -n 1 | grep hello && exit 0; sleep 0.1; done; exit 1"
        ),
    )
    .await;
    assert_eq!(
        (r.exit_code, String::from_utf8_lossy(&r.stdout).trim()),
        (0, "hello-from-web"),
        "stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );

    // The host port on the node's loopback reaches the server (portmap's
    // DNAT, as the kubelet's hostPort promises).
    let target: std::net::SocketAddr = format!("127.0.0.1:{host_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        match tokio::task::spawn_blocking(move || http_get(target))
            .await
            .unwrap()
        {
            Ok(page) if page.contains("hello-from-web") => break page,
            other => assert!(Instant::now() < deadline, "{target}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(page.starts_with("HTTP/1."), "{page}");

    let pids = [
        container_pid(&mut client, &httpd).await,
        container_pid(&mut client, &fetcher).await,
    ];
    remove_sandbox(&mut client, &web).await;
    remove_sandbox(&mut client, &other).await;
    assert!(http_get(target).is_err(), "the host port outlived its pod");
    assert_clean(&pod, &server, &pids);
}

#[tokio::test]
async fn a_host_network_pod_has_the_nodes_network_and_hostname() {
    let pod = TestPod::new("dhct", 214, 10);
    let (server, mut client) = pod.server().await;
    let config = sandbox_with(
        &pod,
        "hostnet",
        cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            ..Default::default()
        },
        vec![],
    );
    let sandbox = run_sandbox_config(&mut client, &config).await;
    let id = create_in(
        &mut client,
        &sandbox,
        &config,
        container_config(
            "probe",
            "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/uts",
        ),
    )
    .await;
    start(&mut client, &id).await;
    let s = wait_exited(&mut client, &id).await;
    assert_eq!(s.exit_code, 0, "{s:?}");
    let node = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let link = |kind: &str| {
        std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    wait_for_lines(
        &pod.logs.path().join("probe/0.log"),
        &[&node, &link("net"), &link("uts")],
    )
    .await;
    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[]);
}

#[tokio::test]
async fn pid_namespaces_are_the_pods_a_containers_own_or_a_targets() {
    use cri::NamespaceMode::{Container, Pod, Target};
    let pod = TestPod::new("dhct", 214, 11);
    let (server, mut client) = pod.server().await;
    let pid_mode = |mode: cri::NamespaceMode, target: &str| cri::NamespaceOption {
        pid: mode as i32,
        target_id: target.into(),
        ..Default::default()
    };
    let sleeper =
        |name: &str, seconds: u32| container_config(name, &format!("exec sleep {seconds}"));
    let mut pids = vec![];

    // Shared: one container sees the other's processes; PID 1 is the infra.
    let shared_config = sandbox_with(&pod, "shared", pid_mode(Pod, ""), vec![]);
    let shared = run_sandbox_config(&mut client, &shared_config).await;
    let mut ids = vec![];
    for (name, seconds) in [("a", 3601), ("b", 3600)] {
        let config = with_container_namespaces(sleeper(name, seconds), pid_mode(Pod, ""));
        let id = create_in(&mut client, &shared, &shared_config, config).await;
        start(&mut client, &id).await;
        pids.push(container_pid(&mut client, &id).await);
        ids.push(id);
    }
    let r = exec_sh(&mut client, &ids[1], "ps -o args; cat /proc/1/cmdline").await;
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("sleep 3601"), "b cannot see a:\n{out}");
    assert!(
        out.contains("sandbox-infra"),
        "PID 1 is not the infra:\n{out}"
    );

    // Per container: its own namespace, unless it targets another's.
    let own_config = sandbox_with(&pod, "own", pid_mode(Container, ""), vec![]);
    let own = run_sandbox_config(&mut client, &own_config).await;
    let c = create_in(
        &mut client,
        &own,
        &own_config,
        with_container_namespaces(sleeper("c", 3602), pid_mode(Container, "")),
    )
    .await;
    start(&mut client, &c).await;
    let d = create_in(
        &mut client,
        &own,
        &own_config,
        with_container_namespaces(sleeper("d", 3603), pid_mode(Container, "")),
    )
    .await;
    start(&mut client, &d).await;
    let e = create_in(
        &mut client,
        &own,
        &own_config,
        with_container_namespaces(sleeper("e", 3604), pid_mode(Target, &c)),
    )
    .await;
    start(&mut client, &e).await;
    for id in [&c, &d, &e] {
        pids.push(container_pid(&mut client, id).await);
    }
    let r = exec_sh(&mut client, &d, "ps -o args").await;
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(!out.contains("sleep 3602"), "d sees c:\n{out}");
    let r = exec_sh(&mut client, &e, "ps -o args").await;
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains("sleep 3602"),
        "e does not see its target c:\n{out}"
    );
    let r = exec_sh(&mut client, &c, "cat /proc/1/cmdline").await;
    assert_eq!(String::from_utf8_lossy(&r.stdout), "sleep\x003602\0");

    // A target that is not running, or not there, is refused.
    let err = client
        .runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: own.clone(),
            config: Some(with_container_namespaces(
                sleeper("f", 1),
                pid_mode(Target, "no-such-container"),
            )),
            sandbox_config: Some(own_config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    remove_sandbox(&mut client, &shared).await;
    remove_sandbox(&mut client, &own).await;
    assert_clean(&pod, &server, &pids);
}

#[tokio::test]
async fn a_user_namespaced_pod_maps_its_containers_root() {
    let pod = TestPod::new("dhct", 214, 12);
    let (server, mut client) = pod.server().await;
    let maps = vec![cri::IdMapping {
        container_id: 0,
        host_id: 310_000,
        length: 65_536,
    }];
    let options = cri::NamespaceOption {
        userns_options: Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: maps.clone(),
            gids: maps,
        }),
        ..Default::default()
    };
    let config = sandbox_with(&pod, "userns", options.clone(), vec![]);
    let sandbox = run_sandbox_config(&mut client, &config).await;
    let id = create_in(
        &mut client,
        &sandbox,
        &config,
        with_container_namespaces(
            container_config(
                "mapped",
                "cat /proc/self/uid_map; echo uid=$(id -u); touch /made-here && echo wrote; \
                 stat -c owner=%u /bin/busybox; hostname; exec sleep 3600",
            ),
            options,
        ),
    )
    .await;
    start(&mut client, &id).await;
    let log = wait_for_lines(
        &pod.logs.path().join("mapped/0.log"),
        &["uid=0", "wrote", "owner=0", "userns"],
    )
    .await;
    let map_line = log
        .lines()
        .find_map(|l| l.split_once(" stdout F ").map(|(_, m)| m))
        .unwrap();
    assert_eq!(
        map_line.split_whitespace().collect::<Vec<_>>(),
        ["0", "310000", "65536"],
        "{log}"
    );
    // On the host, the container's root is the mapped uid.
    let pid = container_pid(&mut client, &id).await;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = proc_status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("310000"),
        "{uid_line}"
    );

    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[pid]);
}

/// What a stock kubelet sends and reads: a container created by image id
/// with the zero hugepage limits it always sends (runc refuses them on a
/// host without a hugetlb controller, so they must be dropped) and swap as
/// large as memory; ContainerStatus names the image by its tag, as
/// containerd does; StopContainer signals the init process only, once.
#[tokio::test]
async fn a_kubelet_style_container_runs_and_stops_as_on_containerd() {
    let pod = TestPod::new("dhct", 214, 18);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "kubelet").await;
    let image = common::status(&mut client, BUSYBOX).await.unwrap();

    let script = "(trap 'echo child-term; exit 0' TERM; while true; do sleep 0.1; done) & \
                  trap 'echo parent-term; exit 0' TERM; echo ready; wait";
    let mut config = container_config("trap", script);
    config.image = common::image_spec(&image.id);
    config.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            cpu_shares: 2,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 64 << 20,
            hugepage_limits: vec![
                cri::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 0,
                },
                cri::HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0,
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&mut client, &sandbox, config, &pod, "kubelet")
        .await
        .unwrap();
    start(&mut client, &id).await;
    let log = pod.logs.path().join("trap/0.log");
    wait_for_lines(&log, &["ready"]).await;

    let (s, _) = status(&mut client, &id).await.unwrap();
    assert_eq!(
        s.image.as_ref().map(|i| i.image.as_str()),
        Some(BUSYBOX),
        "ContainerStatus names the image by its tag"
    );
    assert_eq!(s.image_id, image.id, "image_id: the config digest");
    assert!(
        image.repo_digests.contains(&s.image_ref),
        "image_ref {} is a repo digest of {:?}",
        s.image_ref,
        image.repo_digests
    );
    assert_eq!(s.stop_signal, cri::Signal::Sigterm as i32);
    let listed = client
        .runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(
        listed[0].image.as_ref().map(|i| i.image.as_str()),
        Some(image.id.as_str()),
        "ListContainers echoes the image as created (as containerd)"
    );

    // TERM to the init only: the parent's trap runs once and it exits; the
    // child, never signalled, dies with the PID namespace (SIGKILL).
    let started = Instant::now();
    stop(&mut client, &id, 30).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(25),
        "stopped by TERM, not the grace period (30 s): {elapsed:?}"
    );
    let s = wait_exited(&mut client, &id).await;
    assert_eq!(s.exit_code, 0, "the trap's exit");
    stop(&mut client, &id, 30).await;
    let body = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        body.lines().filter(|l| l.ends_with("parent-term")).count(),
        1,
        "{body}"
    );
    assert!(!body.contains("child-term"), "the child saw TERM:\n{body}");

    // A process that ignores TERM is killed, all of it, after the grace period.
    let deaf = create(
        &mut client,
        &sandbox,
        container_config("deaf", "trap '' TERM; sleep 3600 & echo ready; wait"),
        &pod,
        "kubelet",
    )
    .await
    .unwrap();
    start(&mut client, &deaf).await;
    wait_for_lines(&pod.logs.path().join("deaf/0.log"), &["ready"]).await;
    let started = Instant::now();
    stop(&mut client, &deaf, 1).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    let s = wait_exited(&mut client, &deaf).await;
    assert_eq!(s.exit_code, 137, "SIGKILL");

    remove(&mut client, &id).await;
    remove(&mut client, &deaf).await;
    remove_sandbox(&mut client, &sandbox).await;
    assert_clean(&pod, &server, &[]);
}

/// CRI devices: the node appears at its container path with the asked
/// permissions; every other device stays denied by the device cgroup (a
/// node made with mknod cannot be opened), as under containerd; a device
/// that does not exist or has bad permissions is refused at create.
#[tokio::test]
async fn devices_are_mapped_and_the_rest_denied() {
    let pod = TestPod::new("dhct", 214, 19);
    let (server, mut client) = pod.server().await;
    let sandbox = pod.run_sandbox(&mut client, "devices").await;
    let mut config = container_config("dev", "sleep 600");
    config.devices = vec![cri::Device {
        container_path: "/dev/mynull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let id = create(&mut client, &sandbox, config, &pod, "devices")
        .await
        .unwrap();
    start(&mut client, &id).await;
    let out = exec_sh(
        &mut client,
        &id,
        "echo x > /dev/mynull && ls -l /dev/mynull; \
         mknod /tmp/mem c 1 1 && head -c1 /tmp/mem >/dev/null; echo mem=$?",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("1,   3") && stdout.contains("/dev/mynull"),
        "{stdout} {stderr}"
    );
    assert!(
        stdout.contains("mem=1"),
        "a device outside the list opened: {stdout} {stderr}"
    );
    assert!(stderr.contains("not permitted"), "{stderr}");

    for (host, perms, want) in [
        ("/dev/no-such-device", "rw", "No such file"),
        ("/dev/null", "xyzzy", "permissions"),
        ("/etc/hostname", "r", "not a device node"),
    ] {
        let mut config = container_config(&format!("bad-{perms}"), "true");
        config.devices = vec![cri::Device {
            container_path: "/dev/x".into(),
            host_path: host.into(),
            permissions: perms.into(),
        }];
        let err = create(&mut client, &sandbox, config, &pod, "devices")
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{host}: {err:?}");
        assert!(err.message().contains(want), "{host}: {}", err.message());
    }
    stop(&mut client, &id, 0).await;
    remove(&mut client, &id).await;
    remove_sandbox(&mut client, &sandbox).await;
    assert_no_containerd_leftovers(&server);
}

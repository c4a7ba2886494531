//! A container whose containerd shim stops answering (SIGSTOP, as a shim
//! wedged on its own lock behaves): CRI calls about it fail with
//! DeadlineExceeded instead of hanging, other pods and the lists keep
//! answering, and stop/remove kill the shim and clean up.

mod common;

use std::time::Duration;

use common::pod::{TestPod, assert_no_containerd_leftovers, busybox_container, create, start};
use deckhand::cri::client::CriClient;
use deckhand::cri::v1 as cri;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Far above the runtime's own call timeout (30 s): only a hang fails.
const ANSWER: Duration = Duration::from_secs(180);

/// SIGCONTs the shim if the test fails before it is killed.
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

fn parent(pid: u32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn pid_of(client: &mut CriClient, id: &str) -> u32 {
    let status = client
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    info["pid"].as_u64().unwrap() as u32
}

async fn exec(client: &mut CriClient, id: &str) -> Result<cri::ExecSyncResponse, tonic::Status> {
    tokio::time::timeout(
        ANSWER,
        client.runtime.exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["true".into()],
            timeout: 60,
        }),
    )
    .await
    .expect("ExecSync hung")
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_wedged_shim_times_out_and_is_killed_by_stop_and_remove() {
    let pod = TestPod::new("dhws", 221, 1);
    let (server, mut client) = pod.server().await;
    let wedged_pod = pod.run_sandbox(&mut client, "wedged").await;
    let fine_pod = pod.run_sandbox(&mut client, "fine").await;
    let wedged = create(
        &mut client,
        &wedged_pod,
        busybox_container("w", "sleep 3600"),
        &pod,
        "wedged",
    )
    .await
    .unwrap();
    let fine = create(
        &mut client,
        &fine_pod,
        busybox_container("f", "sleep 3600"),
        &pod,
        "fine",
    )
    .await
    .unwrap();
    start(&mut client, &wedged).await;
    start(&mut client, &fine).await;
    let pid = pid_of(&mut client, &wedged).await;
    let shim = parent(pid);
    let comm = std::fs::read_to_string(format!("/proc/{shim}/comm")).unwrap();
    assert!(
        comm.starts_with("containerd-shim"),
        "parent {shim} is {comm}"
    );
    kill(Pid::from_raw(shim), Signal::SIGSTOP).unwrap();
    let _guard = Stopped(shim);

    // Calls about the wedged container fail in time, with a reason.
    let err = exec(&mut client, &wedged).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("shim"), "{}", err.message());

    // The lists and the other pod answer.
    let listed = tokio::time::timeout(
        ANSWER,
        client
            .runtime
            .list_containers(cri::ListContainersRequest::default()),
    )
    .await
    .expect("ListContainers hung")
    .unwrap_or_else(|e| panic!("ListContainers: {e:?}"))
    .into_inner()
    .containers;
    assert_eq!(listed.len(), 2);
    let pods = tokio::time::timeout(
        ANSWER,
        client
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest::default()),
    )
    .await
    .expect("ListPodSandbox hung")
    .unwrap_or_else(|e| panic!("ListPodSandbox: {e:?}"))
    .into_inner()
    .items;
    assert_eq!(pods.len(), 2);
    let fine_exec = exec(&mut client, &fine).await;
    assert_eq!(
        fine_exec
            .unwrap_or_else(|e| panic!("ExecSync in the other pod: {e:?}"))
            .exit_code,
        0
    );

    // StopContainer kills the wedged shim; the container is exited.
    tokio::time::timeout(
        ANSWER,
        client.runtime.stop_container(cri::StopContainerRequest {
            container_id: wedged.clone(),
            timeout: 2,
        }),
    )
    .await
    .expect("StopContainer hung")
    .unwrap_or_else(|e| panic!("StopContainer of the wedged container: {e:?}"));
    let status = client
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: wedged.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, cri::ContainerState::ContainerExited as i32);
    let alive =
        std::fs::read_to_string(format!("/proc/{shim}/stat")).is_ok_and(|s| !s.contains(") Z "));
    assert!(!alive, "shim {shim} still runs");

    // Removing both pods leaves nothing.
    for sandbox in [&wedged_pod, &fine_pod] {
        tokio::time::timeout(
            ANSWER,
            client.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sandbox.to_string(),
            }),
        )
        .await
        .expect("StopPodSandbox hung")
        .unwrap_or_else(|e| panic!("StopPodSandbox {sandbox}: {e:?}"));
        tokio::time::timeout(
            ANSWER,
            client
                .runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: sandbox.to_string(),
                }),
        )
        .await
        .expect("RemovePodSandbox hung")
        .unwrap_or_else(|e| panic!("RemovePodSandbox {sandbox}: {e:?}"));
    }
    assert_no_containerd_leftovers(&server);
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let run = server.run_dir().to_string_lossy().into_owned();
    assert!(!mounts.contains(&run), "mounts left under {run}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "container process {pid} still exists"
    );
}

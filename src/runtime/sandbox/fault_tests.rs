//! RunPodSandbox, release and re-adoption over the fake kernel: a failure
//! or a hang at each step, and a crash at each step, without root.

use super::fake_kernel::{FakeKernel, Fault};
use super::tests::request;
use super::*;

/// The creation steps a pod with its own network takes, in order.
const CREATE_STEPS: [Step; 7] = [
    Step::Dir,
    Step::Cgroup,
    Step::Infra,
    Step::Pin,
    Step::Sysctls,
    Step::CniAdd,
    Step::Files,
];

fn config(dir: &Path) -> SandboxManagerConfig {
    SandboxManagerConfig {
        run_dir: dir.join("run"),
        state_dir: dir.join("state"),
        cni_conf_dir: dir.join("cni"),
        cni_bin_dirs: vec![],
        cni_timeout: Duration::from_millis(100),
        infra_exe: PathBuf::from("/nonexistent/deckhand"),
    }
}

async fn manager(dir: &Path, fake: &FakeKernel) -> Arc<SandboxManager> {
    SandboxManager::with_kernel(
        config(dir),
        Arc::new(fake.clone()),
        Duration::from_millis(200),
    )
    .await
}

/// The records left under the state dir.
fn records(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("state/sandboxes"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The position of `step` among the creation steps.
fn index(step: Step) -> usize {
    CREATE_STEPS.iter().position(|s| *s == step).unwrap()
}

#[tokio::test]
async fn a_pod_is_made_in_order_and_released_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKernel::new();
    let manager = manager(dir.path(), &fake).await;
    let id = manager.run(request("p")).await.unwrap();
    let made: Vec<Step> = fake.log().into_iter().skip(1).collect();
    assert_eq!(made, CREATE_STEPS);
    assert!(!fake.held().is_empty());
    assert_eq!(manager.list(None).len(), 1);
    manager.remove(&id).await.unwrap();
    assert!(fake.held().is_empty(), "left: {:?}", fake.held());
    assert_eq!(records(dir.path()), 0);
    assert!(manager.list(None).is_empty());
}

#[tokio::test]
async fn each_failure_rolls_back_exactly_what_was_made() {
    for failing in CREATE_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeKernel::new();
        let manager = manager(dir.path(), &fake).await;
        fake.fault(failing, Fault::Fail);
        let err = manager.run(request("p")).await.unwrap_err();
        assert!(
            err.to_string().contains("injected fault"),
            "{failing:?}: {err}"
        );
        assert!(fake.held().is_empty(), "{failing:?} left {:?}", fake.held());
        assert_eq!(records(dir.path()), 0, "{failing:?} left a record");
        let log = fake.log();
        // No creation step after the failing one was tried.
        for later in &CREATE_STEPS[index(failing) + 1..] {
            assert!(!log.contains(later), "{failing:?}: {later:?} ran: {log:?}");
        }
        // Everything made is undone (release steps are idempotent: each is
        // tried, a missing resource counts as released).
        // DEL is owed from the moment ADD is tried (a failed ADD may have
        // made part of the network).
        assert_eq!(
            log.contains(&Step::CniDel),
            index(failing) >= index(Step::CniAdd),
            "{failing:?}: {log:?}"
        );
        // The name is free again.
        fake.clear();
        let id = manager.run(request("p")).await.unwrap();
        manager.remove(&id).await.unwrap();
        assert!(fake.held().is_empty());
    }
}

#[tokio::test]
async fn release_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKernel::new();
    let manager = manager(dir.path(), &fake).await;
    let id = manager.run(request("p")).await.unwrap();
    manager.stop(&id).await.unwrap();
    manager.stop(&id).await.unwrap();
    assert_eq!(
        manager.status(&id, false).unwrap().status.unwrap().state,
        cri::PodSandboxState::SandboxNotready as i32
    );
    manager.remove(&id).await.unwrap();
    manager.remove(&id).await.unwrap();
    manager.stop(&id).await.unwrap();
    assert!(fake.held().is_empty());
    assert!(matches!(
        manager.status(&id, false),
        Err(SandboxError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_failed_release_keeps_the_record_and_a_retry_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKernel::new();
    let manager = manager(dir.path(), &fake).await;
    let id = manager.run(request("p")).await.unwrap();
    fake.fault(Step::CgroupRemove, Fault::Fail);
    assert!(manager.remove(&id).await.is_err());
    assert_eq!(records(dir.path()), 1);
    assert_eq!(manager.list(None).len(), 1);
    fake.clear();
    manager.remove(&id).await.unwrap();
    assert!(fake.held().is_empty());
    assert_eq!(records(dir.path()), 0);
}

#[tokio::test]
async fn a_crash_at_each_step_is_released_on_restart() {
    for failing in CREATE_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeKernel::new();
        let manager = manager(dir.path(), &fake).await;
        // What a crash at `failing` leaves: the record as saved so far and
        // the resources made before it, with no rollback.
        let plan = Plan::from_request(request("p")).unwrap();
        let network = fake.load_network().await.unwrap();
        let mut record = plan.record(new_id(), &manager.config.run_dir, Some(network));
        fake.fault(failing, Fault::Fail);
        assert!(manager.create(&mut record, &plan).await.is_err());
        drop(manager);
        fake.clear();
        let restarted = self::manager(dir.path(), &fake).await;
        assert!(
            fake.held().is_empty(),
            "{failing:?}: restart left {:?}",
            fake.held()
        );
        assert_eq!(records(dir.path()), 0, "{failing:?}");
        assert!(restarted.list(None).is_empty());
        // A second restart finds nothing more to do.
        fake.clear_log();
        let again = self::manager(dir.path(), &fake).await;
        assert!(fake.log().is_empty(), "{failing:?}: {:?}", fake.log());
        assert!(again.list(None).is_empty());
    }
}

#[tokio::test]
async fn a_restart_adopts_ready_pods_and_marks_dead_ones_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKernel::new();
    let manager = manager(dir.path(), &fake).await;
    let alive = manager.run(request("alive")).await.unwrap();
    let dead = manager.run(request("dead")).await.unwrap();
    let dead_pid = manager.get(&dead).unwrap().record.lock().infra.unwrap().pid;
    drop(manager);
    // The infra of one pod dies while deckhand is down.
    fake.kill_infra(dead_pid);
    let restarted = self::manager(dir.path(), &fake).await;
    let state = |id: &str| restarted.status(id, false).unwrap().status.unwrap().state;
    assert_eq!(state(&alive), cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(state(&dead), cri::PodSandboxState::SandboxNotready as i32);
    // The reserved names come back with the pods.
    assert!(matches!(
        restarted.run(request("alive")).await,
        Err(SandboxError::AlreadyExists(_))
    ));
    restarted.remove(&alive).await.unwrap();
    restarted.remove(&dead).await.unwrap();
    assert!(fake.held().is_empty(), "left {:?}", fake.held());
}

#[tokio::test]
async fn a_hung_step_times_out_rolls_back_and_frees_the_name() {
    for hanging in CREATE_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeKernel::new();
        let manager = manager(dir.path(), &fake).await;
        fake.fault(hanging, Fault::Hang);
        let err = manager.run(request("p")).await.unwrap_err();
        assert!(
            matches!(err, SandboxError::DeadlineExceeded(_)),
            "{hanging:?}: {err}"
        );
        assert!(fake.held().is_empty(), "{hanging:?} left {:?}", fake.held());
        assert_eq!(records(dir.path()), 0);
        fake.clear();
        let id = manager.run(request("p")).await.unwrap();
        manager.remove(&id).await.unwrap();
    }
}

#[tokio::test]
async fn a_hung_release_step_times_out_and_lets_go_of_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKernel::new();
    let manager = manager(dir.path(), &fake).await;
    let id = manager.run(request("p")).await.unwrap();
    let other = manager.run(request("other")).await.unwrap();
    fake.fault(Step::CniDel, Fault::Hang);
    let err = manager.stop(&id).await.unwrap_err();
    assert!(matches!(err, SandboxError::DeadlineExceeded(_)), "{err}");
    // Other pods still answer, and the hung one's lock is free.
    assert_eq!(manager.list(None).len(), 2);
    assert!(manager.status(&other, false).is_ok());
    fake.clear();
    manager.remove(&id).await.unwrap();
    manager.remove(&other).await.unwrap();
    assert!(fake.held().is_empty(), "left {:?}", fake.held());
}

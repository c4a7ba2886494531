use super::*;
use crate::controllers::job::pods::fake;
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::jiff::SignedDuration;

fn job(completions: Option<i32>, parallelism: i32) -> Job {
    let mut j = Job::default();
    j.metadata.name = Some("j".into());
    j.spec = Some(JobSpec {
        completions,
        parallelism: Some(parallelism),
        backoff_limit: Some(6),
        ..Default::default()
    });
    j
}

fn t(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_000_000 + secs)
}

fn refs(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter().collect()
}

/// Applies a plan's status and finalizer removals to the job and pods,
/// as the controller's writes would.
fn apply(job: &mut Job, pods: &mut [Pod], plan: &Plan) {
    job.status = Some(plan.status.clone());
    for p in pods.iter_mut() {
        if plan.finalize.iter().any(|n| n == pods::name(p)) {
            p.metadata.finalizers = None;
        }
    }
}

#[test]
fn a_new_job_starts_parallelism_pods() {
    let p = plan(&job(Some(3), 2), &[], t(0), &Backoff::default());
    assert_eq!(p.create, vec![None, None]);
    assert_eq!(p.status.start_time, Some(Time(t(0))));
    assert_eq!(p.status.active, None);
    assert_eq!(p.status.ready, Some(0));

    let pods = [fake::ready_pod("a"), fake::pod("b", "Pending")];
    let p = plan(&job(Some(3), 2), &refs(&pods), t(1), &Backoff::default());
    assert!(p.create.is_empty() && p.delete.is_empty());
    assert_eq!((p.status.active, p.status.ready), (Some(2), Some(1)));
}

#[test]
fn completions_are_counted_through_uncounted_then_complete() {
    let mut j = job(Some(3), 2);
    let mut pods = vec![
        fake::exited("a", 0, t(5)),
        fake::exited("b", 0, t(6)),
        fake::pod("c", "Running"),
    ];
    let p = plan(&j, &refs(&pods), t(10), &Backoff::default());
    let unc = p.status.uncounted_terminated_pods.clone().unwrap();
    assert_eq!(unc.succeeded, Some(vec!["uid-a".into(), "uid-b".into()]));
    assert_eq!(
        p.status.succeeded, None,
        "counted only once the finalizers are gone"
    );
    assert_eq!(p.finalize, vec!["a", "b"]);
    assert!(p.create.is_empty(), "3 - 2 done = 1 wanted, 1 runs");
    apply(&mut j, &mut pods, &p);

    let p = plan(&j, &refs(&pods), t(11), &Backoff::default());
    assert_eq!(p.status.succeeded, Some(2));
    assert_eq!(
        p.status
            .uncounted_terminated_pods
            .as_ref()
            .unwrap()
            .succeeded,
        None
    );
    apply(&mut j, &mut pods, &p);

    pods[2] = fake::exited("c", 0, t(12));
    let p = plan(&j, &refs(&pods), t(13), &Backoff::default());
    assert!(condition(Some(&p.status), SUCCESS_CRITERIA_MET).is_some());
    assert!(
        condition(Some(&p.status), COMPLETE).is_none(),
        "c still uncounted"
    );
    apply(&mut j, &mut pods, &p);
    let p = plan(&j, &refs(&pods), t(14), &Backoff::default());
    let c = condition(Some(&p.status), COMPLETE).expect("Complete");
    assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
    assert_eq!(p.status.succeeded, Some(3));
    assert_eq!(p.status.completion_time, Some(Time(t(14))));
    assert_eq!(p.events.last().unwrap().1, "Completed");
}

#[test]
fn failed_pods_are_recreated_after_a_doubling_backoff() {
    let backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(360),
    };
    assert_eq!(backoff.delay(1), Duration::from_secs(10));
    assert_eq!(backoff.delay(3), Duration::from_secs(40));
    assert_eq!(backoff.delay(30), Duration::from_secs(360));
    let j = job(Some(1), 1);
    let pods = [fake::exited("a", 1, t(0))];
    let p = plan(&j, &refs(&pods), t(4), &backoff);
    assert!(p.create.is_empty());
    assert_eq!(p.requeue, Some(Duration::from_secs(6)));
    let pods = [fake::exited("a", 1, t(0)), fake::exited("b", 1, t(20))];
    let p = plan(&j, &refs(&pods), t(30), &backoff);
    assert_eq!(
        p.requeue,
        Some(Duration::from_secs(10)),
        "20 s after the second failure"
    );
    let p = plan(&j, &refs(&pods), t(40), &backoff);
    assert_eq!(p.create, vec![None]);
    // A success resets the count.
    let pods = [fake::exited("a", 1, t(0)), fake::exited("b", 0, t(20))];
    let p = plan(&job(Some(2), 1), &refs(&pods), t(21), &backoff);
    assert_eq!(p.create, vec![None]);
}

#[test]
fn backoff_limit_fails_the_job_via_failure_target() {
    let mut j = job(Some(1), 1);
    j.spec.as_mut().unwrap().backoff_limit = Some(1);
    let mut pods = vec![
        fake::exited("a", 1, t(0)),
        fake::exited("b", 2, t(1)),
        fake::pod("c", "Running"),
    ];
    let p = plan(&j, &refs(&pods), t(2), &Backoff::default());
    let ft = condition(Some(&p.status), FAILURE_TARGET).expect("FailureTarget");
    assert_eq!(ft.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(p.delete, vec!["c"]);
    assert!(p.create.is_empty());
    apply(&mut j, &mut pods, &p);
    pods[2].metadata.deletion_timestamp = Some(Time(t(2)));
    let p = plan(&j, &refs(&pods), t(3), &Backoff::default());
    assert!(condition(Some(&p.status), FAILED).is_none(), "c terminates");
    assert_eq!(p.finalize, vec!["c"]);
    apply(&mut j, &mut pods, &p);
    pods.pop();
    let p = plan(&j, &refs(&pods), t(4), &Backoff::default());
    let f = condition(Some(&p.status), FAILED).expect("Failed");
    assert_eq!(
        f.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert_eq!(p.status.failed, Some(3));
    assert_eq!(p.status.completion_time, None);
}

#[test]
fn active_deadline_fails_and_is_waited_for() {
    let mut j = job(Some(1), 1);
    j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
    j.status = Some(JobStatus {
        start_time: Some(Time(t(0))),
        ..Default::default()
    });
    let pods = [fake::pod("a", "Running")];
    let p = plan(&j, &refs(&pods), t(10), &Backoff::default());
    assert_eq!(p.requeue, Some(Duration::from_secs(20)));
    let p = plan(&j, &refs(&pods), t(30), &Backoff::default());
    let ft = condition(Some(&p.status), FAILURE_TARGET).unwrap();
    assert_eq!(ft.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(p.delete, vec!["a"]);
}

#[test]
fn pod_failure_policy_fail_job_and_ignore() {
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
    };
    let rule = |action: &str, code: i32| PodFailurePolicyRule {
        action: action.into(),
        on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
            container_name: None,
            operator: "In".into(),
            values: vec![code],
        }),
        on_pod_conditions: None,
    };
    let mut j = job(Some(1), 1);
    j.spec.as_mut().unwrap().pod_failure_policy = Some(PodFailurePolicy {
        rules: vec![rule("Ignore", 3), rule("FailJob", 42)],
    });
    let pods = [fake::exited("a", 3, t(0))];
    let p = plan(&j, &refs(&pods), t(1), &Backoff::default());
    assert_eq!(p.create, vec![None], "ignored: no back-off, no count");
    assert_eq!(p.finalize, vec!["a"]);
    assert_eq!(
        p.status.uncounted_terminated_pods.as_ref().unwrap().failed,
        None
    );
    let pods = [fake::exited("b", 42, t(0))];
    let p = plan(&j, &refs(&pods), t(1), &Backoff::default());
    let ft = condition(Some(&p.status), FAILURE_TARGET).unwrap();
    assert_eq!(ft.reason.as_deref(), Some("PodFailurePolicy"));
}

#[test]
fn indexed_jobs_fill_missing_indexes() {
    let mut j = job(Some(4), 2);
    j.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
    let p = plan(&j, &[], t(0), &Backoff::default());
    assert_eq!(p.create, vec![Some(0), Some(1)]);
    let pods = [
        fake::indexed(fake::exited("a", 0, t(1)), 0),
        fake::indexed(fake::pod("b", "Running"), 1),
        fake::indexed(fake::pod("c", "Running"), 1),
    ];
    let p = plan(&j, &refs(&pods), t(2), &Backoff::default());
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0"));
    assert_eq!(p.delete, vec!["c"], "a duplicate index");
    assert_eq!(p.create, vec![Some(2)]);
}

#[test]
fn excess_pods_are_removed_not_ready_first() {
    let pods = [
        fake::ready_pod("a"),
        fake::pod("b", "Pending"),
        fake::ready_pod("c"),
    ];
    let p = plan(&job(None, 2), &refs(&pods), t(0), &Backoff::default());
    assert_eq!(p.delete, vec!["b"]);
}

#[test]
fn suspended_jobs_stop_their_pods() {
    let mut j = job(Some(2), 2);
    j.spec.as_mut().unwrap().suspend = Some(true);
    let pods = [fake::pod("a", "Running")];
    let p = plan(&j, &refs(&pods), t(0), &Backoff::default());
    assert_eq!(p.delete, vec!["a"]);
    assert!(p.create.is_empty());
    assert!(condition(Some(&p.status), "Suspended").is_some());
    assert_eq!(p.status.start_time, None);
}

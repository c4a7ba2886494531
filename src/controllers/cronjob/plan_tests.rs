use super::*;
use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::ObjectReference;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cronjob(schedule: &str, policy: &str, created: &str) -> CronJob {
    let mut cj = CronJob::default();
    cj.metadata.name = Some("tick".into());
    cj.metadata.creation_timestamp = Some(Time(ts(created)));
    cj.spec = Some(CronJobSpec {
        schedule: schedule.into(),
        concurrency_policy: Some(policy.into()),
        time_zone: Some("UTC".into()),
        ..Default::default()
    });
    cj
}

fn job(name: &str, uid: &str, done: Option<&str>, start: &str) -> Job {
    let mut j = Job::default();
    j.metadata.name = Some(name.into());
    j.metadata.uid = Some(uid.into());
    j.status = Some(JobStatus {
        start_time: Some(Time(ts(start))),
        completion_time: (done == Some("Complete")).then(|| Time(ts(start))),
        conditions: done.map(|c| {
            vec![JobCondition {
                type_: c.into(),
                status: "True".into(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    });
    j
}

fn active_ref(name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        name: Some(name.into()),
        uid: Some(uid.into()),
        ..Default::default()
    }
}

#[test]
fn job_names_are_minutes_since_the_epoch() {
    assert_eq!(
        job_name("tick", ts("2026-01-01T00:05:00Z")),
        "tick-29453765"
    );
}

#[test]
fn starts_the_most_recent_missed_time_once() {
    let cj = cronjob("*/5 * * * *", "Allow", "2026-01-01T00:00:30Z");
    let p = plan(&cj, &[], ts("2026-01-01T00:12:00Z"));
    let (name, at) = p.create.unwrap();
    assert_eq!(at, ts("2026-01-01T00:10:00Z"));
    assert_eq!(name, job_name("tick", at));
    assert_eq!(p.status.last_schedule_time, Some(Time(at)));
    assert_eq!(p.requeue, Some(Duration::from_millis(180_100)));
    // Too early for anything: wait for 00:05.
    let p = plan(&cj, &[], ts("2026-01-01T00:03:00Z"));
    assert!(p.create.is_none());
    assert_eq!(p.requeue, Some(Duration::from_millis(120_100)));
}

#[test]
fn concurrency_policies() {
    let mut cj = cronjob("* * * * *", "Forbid", "2026-01-01T00:00:00Z");
    let running = job("tick-1", "u1", None, "2026-01-01T00:01:00Z");
    cj.status = Some(CronJobStatus {
        active: Some(vec![active_ref("tick-1", "u1")]),
        last_schedule_time: Some(Time(ts("2026-01-01T00:01:00Z"))),
        ..Default::default()
    });
    let now = ts("2026-01-01T00:02:10Z");
    let p = plan(&cj, &[&running], now);
    assert!(p.create.is_none());
    assert_eq!(p.events[0].1, "JobAlreadyActive");
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Replace".into());
    let p = plan(&cj, &[&running], now);
    assert!(p.create.is_some());
    assert_eq!(p.delete, vec!["tick-1"]);
    assert!(p.status.active.is_none());
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Allow".into());
    let p = plan(&cj, &[&running], now);
    assert!(p.create.is_some() && p.delete.is_empty());
    assert_eq!(p.status.active.unwrap().len(), 1);
}

#[test]
fn finished_jobs_leave_active_and_history_is_trimmed() {
    let mut cj = cronjob("* * * * *", "Allow", "2026-01-01T00:00:00Z");
    let spec = cj.spec.as_mut().unwrap();
    spec.successful_jobs_history_limit = Some(1);
    spec.failed_jobs_history_limit = Some(0);
    cj.status = Some(CronJobStatus {
        active: Some(vec![active_ref("b", "ub"), active_ref("gone", "ug")]),
        last_schedule_time: Some(Time(ts("2026-01-01T00:03:00Z"))),
        ..Default::default()
    });
    let a = job("a", "ua", Some("Complete"), "2026-01-01T00:01:00Z");
    let b = job("b", "ub", Some("Complete"), "2026-01-01T00:02:00Z");
    let c = job("c", "uc", Some("Failed"), "2026-01-01T00:03:00Z");
    let p = plan(&cj, &[&a, &b, &c], ts("2026-01-01T00:03:30Z"));
    assert!(p.status.active.is_none());
    assert_eq!(
        p.status.last_successful_time,
        Some(Time(ts("2026-01-01T00:02:00Z")))
    );
    assert_eq!(p.delete, vec!["a", "c"]);
    let reasons: Vec<_> = p.events.iter().map(|e| e.1).collect();
    assert_eq!(reasons, ["SawCompletedJob", "MissingJob"]);
}

#[test]
fn suspend_deadline_and_bad_schedules() {
    let mut cj = cronjob("*/5 * * * *", "Allow", "2026-01-01T00:00:00Z");
    cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(60);
    let p = plan(&cj, &[], ts("2026-01-01T00:07:00Z"));
    assert!(p.create.is_none(), "00:05 is more than 60 s ago");
    let p = plan(&cj, &[], ts("2026-01-01T00:05:30Z"));
    assert!(p.create.is_some());
    cj.spec.as_mut().unwrap().suspend = Some(true);
    assert!(plan(&cj, &[], ts("2026-01-01T00:05:30Z")).create.is_none());
    let bad = cronjob("61 * * * *", "Allow", "2026-01-01T00:00:00Z");
    let p = plan(&bad, &[], ts("2026-01-01T00:05:30Z"));
    assert_eq!(p.events[0].1, "UnparseableSchedule");
    assert!(p.requeue.is_none());
}

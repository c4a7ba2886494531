//! The CronJob controller's decision, pure: from a CronJob, the jobs it
//! owns and the time, the job to start (for which scheduled time), the
//! jobs to delete (Replace, and the history limits), the status, and when
//! to look again: kube's cronjob controller (v2) in one function.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::schedule::{self, Schedule};
use crate::controllers::job::plan as job_plan;

/// More missed start times than this and kube warns (it still starts the
/// most recent one).
const MISSED_WARNING: usize = 100;

pub type Event = (&'static str, &'static str, String);

#[derive(Debug, Default)]
pub struct Plan {
    pub status: CronJobStatus,
    /// Start the job for this scheduled time, named so.
    pub create: Option<(String, Timestamp)>,
    /// Jobs to delete (by name), with background propagation.
    pub delete: Vec<String>,
    pub requeue: Option<Duration>,
    pub events: Vec<Event>,
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`, as kube names them.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn finished(job: &Job) -> Option<&str> {
    job_plan::finished(job).map(|c| c.type_.as_str())
}

/// The latest schedule time in (earliest, now], and how many there were.
fn most_recent(
    sched: &Schedule,
    earliest: Timestamp,
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
) -> (Option<Timestamp>, usize) {
    let mut last = None;
    let mut count = 0;
    let mut t = earliest;
    while let Some(n) = schedule::next(sched, t, tz) {
        if n > now || count > 100_000 {
            break;
        }
        last = Some(n);
        count += 1;
        t = n;
    }
    (last, count)
}

fn until(at: Timestamp, now: Timestamp) -> Duration {
    let d = at.duration_since(now);
    if d.is_positive() {
        d.unsigned_abs()
    } else {
        Duration::ZERO
    }
}

pub fn plan(cj: &CronJob, owned: &[&Job], now: Timestamp) -> Plan {
    let mut out = Plan::default();
    let Some(spec) = cj.spec.as_ref() else {
        return out;
    };
    let name = cj.metadata.name.as_deref().unwrap_or("");
    let mut status = cj.status.clone().unwrap_or_default();

    // The active list keeps the jobs that exist and run.
    let mut active = status.active.take().unwrap_or_default();
    active.retain(|r| {
        let job = owned.iter().find(|j| j.metadata.uid == r.uid);
        match job {
            None => {
                out.events.push((
                    "Normal",
                    "MissingJob",
                    format!(
                        "Active job went missing: {}",
                        r.name.as_deref().unwrap_or("")
                    ),
                ));
                false
            }
            Some(j) => match finished(j) {
                Some(cond) => {
                    out.events.push((
                        "Normal",
                        "SawCompletedJob",
                        format!(
                            "Saw completed job: {}, condition: {cond}",
                            r.name.as_deref().unwrap_or("")
                        ),
                    ));
                    false
                }
                None => true,
            },
        }
    });
    for j in owned
        .iter()
        .filter(|j| finished(j) == Some(job_plan::COMPLETE))
    {
        let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
        if done.as_ref().is_some_and(|d| {
            status
                .last_successful_time
                .as_ref()
                .is_none_or(|l| d.0 > l.0)
        }) {
            status.last_successful_time = done;
        }
    }

    // History: the oldest finished jobs beyond the limits go.
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
            .or(j.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    for (cond, limit) in [
        (
            job_plan::COMPLETE,
            spec.successful_jobs_history_limit.unwrap_or(3),
        ),
        (
            job_plan::FAILED,
            spec.failed_jobs_history_limit.unwrap_or(1),
        ),
    ] {
        let mut done: Vec<&Job> = owned
            .iter()
            .copied()
            .filter(|j| finished(j) == Some(cond) && j.metadata.deletion_timestamp.is_none())
            .collect();
        done.sort_by_key(|j| start(j));
        let excess = done
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        out.delete.extend(
            done.iter()
                .take(excess)
                .filter_map(|j| j.metadata.name.clone()),
        );
    }

    let finish = |mut out: Plan, status: CronJobStatus, active| {
        out.status = status;
        out.status.active = Some(active).filter(|a: &Vec<_>| !a.is_empty());
        out
    };
    if cj.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        return finish(out, status, active);
    }
    let tz = match schedule::time_zone(spec.time_zone.as_deref()) {
        Ok(tz) => tz,
        Err(e) => {
            out.events
                .push(("Warning", "UnknownTimeZone", e.to_string()));
            return finish(out, status, active);
        }
    };
    let sched = match schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            out.events.push((
                "Warning",
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return finish(out, status, active);
        }
    };
    let mut earliest = status
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    if let Some(sds) = spec.starting_deadline_seconds {
        let deadline = now - jiff::SignedDuration::from_secs(sds);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let next = schedule::next(&sched, now, &tz);
    out.requeue = next.map(|n| until(n, now) + Duration::from_millis(100));
    let (scheduled, missed) = most_recent(&sched, earliest, now, &tz);
    let Some(scheduled) = scheduled else {
        return finish(out, status, active);
    };
    if missed > MISSED_WARNING {
        out.events.push(("Warning", "TooManyMissedTimes", format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew")));
    }
    if let Some(sds) = spec.starting_deadline_seconds
        && scheduled + jiff::SignedDuration::from_secs(sds) < now
    {
        out.events.push((
            "Warning",
            "MissSchedule",
            format!("Missed scheduled time to start a job: {}", scheduled),
        ));
        return finish(out, status, active);
    }
    let job = job_name(name, scheduled);
    let already = owned
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some(job.as_str()))
        || status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 >= scheduled);
    if already {
        return finish(out, status, active);
    }
    match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Forbid" if !active.is_empty() => {
            out.events.push(("Normal", "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into()));
            return finish(out, status, active);
        }
        "Replace" => {
            for r in active.drain(..) {
                if let Some(n) = r.name {
                    out.delete.push(n);
                }
            }
        }
        _ => {}
    }
    out.create = Some((job, scheduled));
    status.last_schedule_time = Some(Time(scheduled));
    finish(out, status, active)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

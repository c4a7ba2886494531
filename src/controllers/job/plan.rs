//! The Job controller's decision, pure: from a job and the pods it owns
//! (and the time), the status to write, the pods whose tracking finalizer
//! goes, the pods to delete and to create, and when to look again.
//!
//! Counting follows kube's job-tracking: a finished pod's uid first goes to
//! status.uncountedTerminatedPods (written before its finalizer is
//! removed), and moves into succeeded/failed once its finalizer is gone, so
//! that no finish is counted twice or lost. A job that met its completions
//! or failed gets the interim SuccessCriteriaMet / FailureTarget condition
//! at once, and Complete / Failed once no pod of it runs or terminates and
//! every finish is counted, as kube 1.36 does.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::failure_policy::{self, Verdict};
use super::{indexes, pods};

/// The back-off between re-creations of failed pods: `base` doubling per
/// failure since the last success, at most `max` (kube: 10 s, 6 min).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(10),
            max: Duration::from_secs(360),
        }
    }
}

impl Backoff {
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exp = (failures - 1).min(30);
        self.base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.max)
    }
}

/// An event to record on the job: (type, reason, message).
pub type JobEvent = (&'static str, String, String);

#[derive(Debug, Default)]
pub struct Plan {
    pub status: JobStatus,
    /// Pods (by name) whose job-tracking finalizer is to be removed, once
    /// `status` is written.
    pub finalize: Vec<String>,
    pub delete: Vec<String>,
    /// One entry per pod to create: its completion index (Indexed jobs).
    pub create: Vec<Option<i32>>,
    pub requeue: Option<Duration>,
    pub events: Vec<JobEvent>,
}

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const FAILURE_TARGET: &str = "FailureTarget";
const SUSPENDED: &str = "Suspended";

pub fn condition<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// The job is Complete or Failed.
pub fn finished(job: &Job) -> Option<&JobCondition> {
    let st = job.status.as_ref();
    condition(st, COMPLETE).or_else(|| condition(st, FAILED))
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets (or replaces, when its status changes) the condition of its type.
fn set_condition(status: &mut JobStatus, cond: JobCondition) {
    let conds = status.conditions.get_or_insert_default();
    match conds.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(c) if c.status == cond.status => {}
        Some(c) => *c = cond,
        None => conds.push(cond),
    }
}

fn nonzero(n: usize) -> Option<i32> {
    (n != 0).then(|| i32::try_from(n).unwrap_or(i32::MAX))
}

fn sorted(set: HashSet<String>) -> Option<Vec<String>> {
    let mut v: Vec<String> = set.into_iter().collect();
    v.sort();
    (!v.is_empty()).then_some(v)
}

/// The failures since the last success (among the pods still there) and
/// when the latest of them happened.
fn failures_since_success(pods: &[&Pod], ignored: &HashSet<String>) -> (u32, Option<Timestamp>) {
    let last_success = pods
        .iter()
        .filter(|p| pods::phase(p) == "Succeeded")
        .filter_map(|p| pods::finish_time(p))
        .max();
    let failed: Vec<Timestamp> = pods
        .iter()
        .filter(|p| pods::phase(p) == "Failed" && !ignored.contains(pods::uid(p)))
        .filter_map(|p| pods::finish_time(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    (
        u32::try_from(failed.len()).unwrap_or(u32::MAX),
        failed.into_iter().max(),
    )
}

fn until(at: Timestamp, now: Timestamp) -> Option<Duration> {
    let d = at.duration_since(now);
    (d.is_positive()).then(|| d.unsigned_abs())
}

/// Pods to delete when `have` active pods are `excess` too many: the not
/// ready first, then the newest.
fn excess_pods(active: &[&Pod], excess: usize) -> Vec<String> {
    let mut order: Vec<&Pod> = active.to_vec();
    order.sort_by(|a, b| {
        pods::ready(a).cmp(&pods::ready(b)).then_with(|| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
        })
    });
    order
        .into_iter()
        .take(excess)
        .map(|p| pods::name(p).to_string())
        .collect()
}

pub fn plan(job: &Job, owned: &[&Pod], now: Timestamp, backoff: &Backoff) -> Plan {
    let mut out = Plan::default();
    let Some(spec) = job.spec.as_ref() else {
        return out;
    };
    let old = job.status.clone().unwrap_or_default();
    if finished(job).is_some() {
        out.status = old;
        out.finalize = owned
            .iter()
            .filter(|p| pods::has_finalizer(p))
            .map(|p| pods::name(p).to_string())
            .collect();
        return out;
    }
    let mut status = old.clone();
    let st = &mut status;
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1).max(0)).unwrap_or(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed")
        || spec.pod_failure_policy.is_some();

    let mut target = condition(Some(&old), FAILURE_TARGET)
        .or_else(|| condition(Some(&old), SUCCESS_CRITERIA_MET))
        .cloned();
    let failing = |t: &Option<JobCondition>| t.as_ref().is_some_and(|c| c.type_ == FAILURE_TARGET);

    // Finishes already written down: counted once their finalizer is gone.
    let by_uid: BTreeMap<&str, &Pod> = owned.iter().map(|p| (pods::uid(p), *p)).collect();
    let unc = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut succeeded = usize::try_from(old.succeeded.unwrap_or(0)).unwrap_or(0);
    let mut failed = usize::try_from(old.failed.unwrap_or(0)).unwrap_or(0);
    let still_tracked = |uid: &str| by_uid.get(uid).is_some_and(|p| pods::has_finalizer(p));
    let mut succ_unc: HashSet<String> = HashSet::new();
    for uid in unc.succeeded.into_iter().flatten() {
        if still_tracked(&uid) {
            succ_unc.insert(uid);
        } else {
            succeeded += 1;
        }
    }
    let mut fail_unc: HashSet<String> = HashSet::new();
    for uid in unc.failed.into_iter().flatten() {
        if still_tracked(&uid) {
            fail_unc.insert(uid);
        } else {
            failed += 1;
        }
    }
    let total = completions.unwrap_or(0);
    let mut done_indexes: BTreeSet<i32> = if indexed {
        indexes::parse(old.completed_indexes.as_deref().unwrap_or(""), total)
    } else {
        BTreeSet::new()
    };

    // New finishes.
    let mut ignored: HashSet<String> = HashSet::new();
    let mut fail_job: Option<String> = None;
    for p in owned.iter().filter(|p| pods::has_finalizer(p)) {
        let uid = pods::uid(p).to_string();
        if succ_unc.contains(&uid) || fail_unc.contains(&uid) {
            out.finalize.push(pods::name(p).to_string());
            continue;
        }
        let counts_failed = pods::phase(p) == "Failed"
            || (pods::terminating(p) && (!only_failed || failing(&target)));
        if pods::phase(p) == "Succeeded" {
            if let Some(ix) = pods::index(p).filter(|i| indexed && *i < total) {
                done_indexes.insert(ix);
            }
            succ_unc.insert(uid);
        } else if counts_failed {
            let verdict = match &spec.pod_failure_policy {
                Some(policy) if pods::phase(p) == "Failed" => failure_policy::verdict(policy, p),
                _ => Verdict::Count,
            };
            match verdict {
                Verdict::Ignore => {
                    ignored.insert(uid);
                }
                Verdict::FailJob(message) => {
                    fail_job.get_or_insert(message);
                    fail_unc.insert(uid);
                }
                Verdict::Count => {
                    fail_unc.insert(uid);
                }
            }
        } else {
            continue;
        }
        out.finalize.push(pods::name(p).to_string());
    }
    let succ_total = succeeded + succ_unc.len();
    let fail_total = failed + fail_unc.len();

    let active: Vec<&Pod> = owned.iter().copied().filter(|p| pods::active(p)).collect();
    let terminating = owned.iter().filter(|p| pods::terminating(p)).count();
    let ready = active.iter().filter(|p| pods::ready(p)).count();

    // Suspension and start time.
    if suspended {
        if condition(Some(&old), SUSPENDED).is_none() {
            set_condition(
                st,
                new_condition(SUSPENDED, "True", "JobSuspended", "Job suspended", now),
            );
            out.events
                .push(("Normal", "Suspended".into(), "Job suspended".into()));
        }
    } else {
        if condition(Some(&old), SUSPENDED).is_some() {
            set_condition(
                st,
                new_condition(SUSPENDED, "False", "JobResumed", "Job resumed", now),
            );
            st.start_time = Some(Time(now));
            out.events
                .push(("Normal", "Resumed".into(), "Job resumed".into()));
        }
        st.start_time.get_or_insert(Time(now));
    }

    // Has the job met its success criteria or failed?
    if target.is_none() && !suspended {
        let restarts: i32 = active.iter().map(|p| pods::restarts(p)).sum();
        let on_failure = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        let past_restarts = on_failure
            && if backoff_limit == 0 {
                restarts > 0
            } else {
                restarts >= backoff_limit
            };
        let deadline = spec.active_deadline_seconds.and_then(|secs| {
            let start = st.start_time.as_ref()?.0;
            Some(start + k8s_openapi::jiff::SignedDuration::from_secs(secs))
        });
        let complete = if indexed {
            done_indexes.len() >= usize::try_from(total).unwrap_or(0)
        } else {
            match completions {
                Some(c) => succ_total >= usize::try_from(c).unwrap_or(0),
                None => succ_total > 0 && active.is_empty(),
            }
        };
        let failure = |reason: &str, message: &str| {
            new_condition(FAILURE_TARGET, "True", reason, message, now)
        };
        target = if let Some(message) = &fail_job {
            Some(failure("PodFailurePolicy", message))
        } else if i64::try_from(fail_total).unwrap_or(i64::MAX) > i64::from(backoff_limit)
            || past_restarts
        {
            Some(failure(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|d| d <= now) {
            Some(failure(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else if complete {
            Some(new_condition(
                SUCCESS_CRITERIA_MET,
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ))
        } else {
            if let Some(d) = deadline {
                out.requeue = until(d, now);
            }
            None
        };
        if let Some(t) = &target {
            set_condition(st, t.clone());
            if t.type_ == FAILURE_TARGET {
                out.events.push((
                    "Warning",
                    t.reason.clone().unwrap_or_default(),
                    t.message.clone().unwrap_or_default(),
                ));
            }
        }
    }

    if let Some(t) = &target {
        // Finishing: nothing new runs, what runs is stopped.
        out.delete = active.iter().map(|p| pods::name(p).to_string()).collect();
        let settled =
            active.is_empty() && terminating == 0 && succ_unc.is_empty() && fail_unc.is_empty();
        if settled {
            let (type_, ok) = if t.type_ == FAILURE_TARGET {
                (FAILED, false)
            } else {
                (COMPLETE, true)
            };
            let mut terminal = t.clone();
            terminal.type_ = type_.into();
            terminal.last_probe_time = Some(Time(now));
            terminal.last_transition_time = Some(Time(now));
            set_condition(st, terminal);
            if ok {
                st.completion_time = Some(Time(now));
                out.events
                    .push(("Normal", "Completed".into(), "Job completed".into()));
            }
        }
    } else if suspended {
        out.delete = active.iter().map(|p| pods::name(p).to_string()).collect();
    } else {
        let blocking = if only_failed { terminating } else { 0 };
        let (failures, last_failure) = failures_since_success(owned, &ignored);
        let wait = last_failure
            .and_then(|t| until(t + backoff.delay(failures), now))
            .filter(|_| failures > 0);
        if indexed {
            plan_indexed(
                &mut out,
                &active,
                owned,
                &done_indexes,
                total,
                parallelism,
                only_failed,
                wait,
            );
        } else {
            let want = match completions {
                None if succ_total > 0 => 0,
                None => parallelism,
                Some(c) => {
                    parallelism.min(usize::try_from(c).unwrap_or(0).saturating_sub(succ_total))
                }
            };
            let have = active.len() + blocking;
            if have > want {
                out.delete = excess_pods(&active, (have - want).min(active.len()));
            } else if want > have {
                match wait {
                    Some(w) => out.requeue = Some(out.requeue.map_or(w, |r| r.min(w))),
                    None => out.create = vec![None; want - have],
                }
            }
        }
    }

    st.active = nonzero(active.len());
    st.ready = Some(i32::try_from(ready).unwrap_or(i32::MAX));
    st.terminating = Some(i32::try_from(terminating).unwrap_or(i32::MAX));
    st.succeeded = nonzero(succeeded);
    st.failed = nonzero(failed);
    st.completed_indexes = if indexed {
        Some(indexes::format(&done_indexes)).filter(|s| !s.is_empty())
    } else {
        None
    };
    st.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: sorted(succ_unc),
        failed: sorted(fail_unc),
    });
    out.status = status;
    out
}

#[allow(clippy::too_many_arguments)]
fn plan_indexed(
    out: &mut Plan,
    active: &[&Pod],
    owned: &[&Pod],
    done: &BTreeSet<i32>,
    total: i32,
    parallelism: usize,
    only_failed: bool,
    wait: Option<Duration>,
) {
    let mut running: BTreeSet<i32> = BTreeSet::new();
    let mut keep = 0usize;
    for p in active {
        match pods::index(p) {
            Some(ix) if ix < total && !done.contains(&ix) && running.insert(ix) => keep += 1,
            // A bad, duplicate or already succeeded index.
            _ => out.delete.push(pods::name(p).to_string()),
        }
    }
    if only_failed {
        running.extend(
            owned
                .iter()
                .filter(|p| pods::terminating(p))
                .filter_map(|p| pods::index(p)),
        );
    }
    let remaining = usize::try_from(total)
        .unwrap_or(0)
        .saturating_sub(done.len());
    let want = parallelism.min(remaining);
    if want <= keep {
        return;
    }
    if let Some(w) = wait {
        out.requeue = Some(out.requeue.map_or(w, |r| r.min(w)));
        return;
    }
    out.create = (0..total)
        .filter(|i| !done.contains(i) && !running.contains(i))
        .take(want - keep)
        .map(Some)
        .collect();
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

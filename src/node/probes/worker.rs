//! One probe of one container attempt, run every periodSeconds after
//! initialDelaySeconds (the kubelet's prober worker). Results change only
//! at the thresholds; each failure is an `Unhealthy` event.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Pod, Probe};
use tokio::sync::{Notify, watch};

use super::results::{Kind, Outcome, Tracker};
use super::{Results, Target, run_once};
use crate::cri::api::RuntimeService;
use crate::node::events::{EventRecorder, container_field_path};
use crate::node::status::events as reasons;

pub struct ProbeTask {
    pub kind: Kind,
    pub probe: Probe,
    pub target: Target,
    pub container: String,
    pub has_startup: bool,
    pub started_at: SystemTime,
    pub runtime: Arc<dyn RuntimeService>,
    pub events: EventRecorder,
    pub pod: Arc<Pod>,
    pub results: Arc<watch::Sender<Results>>,
    pub kick: Option<Arc<Notify>>,
}

/// The API defaults: period 10 s, timeout 1 s; both at least 1 s.
fn seconds(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.filter(|s| *s > 0).map_or(default, |s| s as u64))
}

/// How long to wait from `now` until `delay` after `started_at`.
pub fn initial_wait(started_at: SystemTime, delay: Duration, now: SystemTime) -> Duration {
    (started_at + delay)
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
}

impl ProbeTask {
    pub async fn run(self) {
        let period = seconds(self.probe.period_seconds, 10);
        let timeout = seconds(self.probe.timeout_seconds, 1);
        let delay =
            Duration::from_secs(self.probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let client = if self.probe.http_get.is_some() {
            match super::http::client() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "probe HTTP client");
                    None
                }
            }
        } else {
            None
        };
        let mut tracker = Tracker::new(
            self.kind,
            self.probe.success_threshold.unwrap_or(1),
            self.probe.failure_threshold.unwrap_or(3),
        );
        tokio::time::sleep(initial_wait(self.started_at, delay, SystemTime::now())).await;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let startup = self.results.borrow().startup;
            match self.kind {
                // A passed startup probe is not run again for this attempt.
                Kind::Startup if startup == Some(true) => return,
                // Liveness and readiness wait for the startup probe.
                Kind::Liveness | Kind::Readiness if self.has_startup && startup != Some(true) => {
                    continue;
                }
                _ => {}
            }
            let out = run_once(
                &self.probe,
                &self.target,
                self.runtime.as_ref(),
                client.as_ref(),
                timeout,
            )
            .await;
            let ok = out == Outcome::Success;
            crate::node::server::metrics::observe_probe(
                self.kind.lower(),
                ok,
                &self.pod,
                &self.container,
            );
            if let Outcome::Failure(message) = &out {
                tracing::debug!(container = %self.container, kind = ?self.kind, %message, "probe failed");
                self.events.pod_event(
                    &self.pod,
                    Some(container_field_path(&self.pod, &self.container)),
                    reasons::WARNING,
                    reasons::CONTAINER_UNHEALTHY,
                    format!("{} probe failed: {message}", self.kind.title()),
                );
            }
            if tracker.record(out == Outcome::Success) {
                let result = tracker.result;
                self.results.send_modify(|r| r.set(self.kind, result));
                if let Some(k) = &self.kick {
                    k.notify_one();
                }
            }
            // A failed liveness or startup probe holds until the container
            // is replaced: the pod worker kills it.
            if matches!(self.kind, Kind::Liveness | Kind::Startup) && tracker.result == Some(false)
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_delay_counts_from_the_container_start() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let d = Duration::from_secs(5);
        assert_eq!(
            initial_wait(start, d, start + Duration::from_secs(2)),
            Duration::from_secs(3)
        );
        assert_eq!(
            initial_wait(start, d, start + Duration::from_secs(9)),
            Duration::ZERO
        );
        assert_eq!(seconds(None, 10), Duration::from_secs(10));
        assert_eq!(seconds(Some(0), 1), Duration::from_secs(1));
        assert_eq!(seconds(Some(3), 1), Duration::from_secs(3));
    }
}

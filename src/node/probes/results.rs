//! A probe's result from its raw outcomes: successThreshold consecutive
//! successes flip it to success, failureThreshold consecutive failures to
//! failure (the kubelet's prober worker). Pure.

/// One probe attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Why it failed, for the Unhealthy event.
    Failure(String),
}

/// The probe kinds, as the kubelet names them in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    pub fn lower(self) -> &'static str {
        match self {
            Kind::Startup => "startup",
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
        }
    }

    /// The result before the first probe: a container is not ready until
    /// its readiness probe passes, is alive until its liveness probe says
    /// otherwise, and not started until its startup probe passes.
    pub fn initial(self) -> Option<bool> {
        match self {
            Kind::Readiness => Some(false),
            Kind::Liveness => Some(true),
            Kind::Startup => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    /// The current result (None: unknown yet).
    pub result: Option<bool>,
    /// Consecutive outcomes equal to the last one.
    run: u32,
    last: Option<bool>,
}

impl Tracker {
    pub fn new(kind: Kind, success_threshold: i32, failure_threshold: i32) -> Self {
        Self {
            // The API defaults both (1 and 3); a zero from a client that
            // skipped defaulting means the default.
            success_threshold: if success_threshold > 0 {
                success_threshold as u32
            } else {
                1
            },
            failure_threshold: if failure_threshold > 0 {
                failure_threshold as u32
            } else {
                3
            },
            result: kind.initial(),
            run: 0,
            last: None,
        }
    }

    /// Records one outcome; true when the result changed.
    pub fn record(&mut self, ok: bool) -> bool {
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        // The kubelet keeps the result until the run reaches the threshold.
        if self.run < threshold || self.result == Some(ok) {
            return false;
        }
        self.result = Some(ok);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_flip_the_result_only_at_the_threshold() {
        let mut t = Tracker::new(Kind::Liveness, 1, 3);
        assert_eq!(t.result, Some(true));
        assert!(!t.record(false));
        assert!(!t.record(false));
        assert!(t.record(false));
        assert_eq!(t.result, Some(false));
        // A success in between starts the count over.
        let mut t = Tracker::new(Kind::Liveness, 1, 2);
        t.record(false);
        t.record(true);
        assert!(!t.record(false));
        assert_eq!(t.result, Some(true));
        assert!(t.record(false));
    }

    #[test]
    fn readiness_needs_success_threshold_successes() {
        let mut t = Tracker::new(Kind::Readiness, 2, 1);
        assert_eq!(t.result, Some(false));
        assert!(!t.record(true));
        assert!(t.record(true));
        assert_eq!(t.result, Some(true));
        assert!(!t.record(true));
        assert!(t.record(false));
        assert_eq!(t.result, Some(false));
    }

    #[test]
    fn startup_is_unknown_until_probed_and_zero_thresholds_mean_defaults() {
        let mut t = Tracker::new(Kind::Startup, 0, 0);
        assert_eq!(t.result, None);
        assert!(t.record(true));
        assert_eq!(t.result, Some(true));
        let mut t = Tracker::new(Kind::Startup, 0, 0);
        t.record(false);
        t.record(false);
        assert_eq!(t.result, None);
        assert!(t.record(false));
        assert_eq!(t.result, Some(false));
    }
}

//! Back-off for retrying API calls: 200 ms doubling to 30 s, with jitter
//! so many nodes restarting together do not retry in step.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ApiBackoff {
    next: Duration,
    max: Duration,
}

impl Default for ApiBackoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(30))
    }
}

impl ApiBackoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// The delay before the next attempt (it grows each call).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        // Up to 10% jitter, from the clock's low bits (no rng needed).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.subsec_nanos())
            .unwrap_or(0);
        d + d.mul_f64(f64::from(nanos % 100) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = ApiBackoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let d: Vec<u64> = (0..4).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 4]);
    }
}

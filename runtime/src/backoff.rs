//! Exponential back-off, the one every retry in delestage uses: reconnects
//! to another service, refused switches, RTE failures, accept errors.

use std::time::Duration;

/// `min` after the first failure, doubling with each failure in a row, never
/// more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// The wait after the `failures`-th failure in a row (1 for the first;
    /// 0 is treated as 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.min
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max)
    }

    /// A counter of failures in a row, for a loop that retries.
    pub fn start(self) -> Retry {
        Retry {
            backoff: self,
            failures: 0,
        }
    }
}

/// Failures in a row, and the wait each one earns.
#[derive(Debug, Clone)]
pub struct Retry {
    backoff: Backoff,
    failures: u32,
}

impl Retry {
    /// Counts a failure; returns how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.delay(self.failures)
    }

    /// After a success: the next failure waits `min` again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_min_to_max() {
        let b = Backoff::new(200 * MS, 5000 * MS);
        let waits: Vec<u128> = (1..=7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.delay(0), b.delay(1));
        assert_eq!(b.delay(u32::MAX), 5000 * MS);
    }

    #[test]
    fn a_success_starts_over() {
        let mut r = Backoff::new(MS, 8 * MS).start();
        assert_eq!((r.failed(), r.failed(), r.failed()), (MS, 2 * MS, 4 * MS));
        r.succeeded();
        assert_eq!(r.failed(), MS);
    }
}

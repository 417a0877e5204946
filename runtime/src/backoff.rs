//! Exponential back-off, the one every retry in delestage uses: reconnects
//! to another service, refused switches, RTE failures, accept errors.
//!
//! [`Backoff::delay`] is exact (pure decisions use it: a refused switch's
//! retry time, the RTE schedule). A retry loop's [`Retry::failed`] spreads
//! each wait by ±20 %, so that many clients that lost one server (every
//! replica of a forecast root, every controller of a broker) do not all
//! come back in the same instant.

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
        let mut seed = [0u8; 8];
        // Only a spread: without the OS's randomness, the address of a
        // local and the time still differ between processes.
        if getrandom::fill(&mut seed).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            seed = (now ^ (&raw const seed as u64)).to_le_bytes();
        }
        Retry {
            backoff: self,
            failures: 0,
            // xorshift must not start at zero.
            random: u64::from_le_bytes(seed) | 1,
        }
    }
}

/// How far a retry's wait is spread either way: ±20 %.
const JITTER: f64 = 0.2;

/// `delay` spread by ±20 %: `unit` in [0, 1) picks where (0: 20 % shorter,
/// 0.5: as is, towards 1: 20 % longer).
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    delay.mul_f64(factor)
}

/// Failures in a row, and the wait each one earns.
#[derive(Debug, Clone)]
pub struct Retry {
    backoff: Backoff,
    failures: u32,
    /// xorshift64* state for the jitter: no need for more than spread.
    random: u64,
}

impl Retry {
    /// Counts a failure; returns how long to wait before the next try,
    /// spread by ±20 % (see the module doc).
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let unit = self.next_unit();
        jittered(self.backoff.delay(self.failures), unit)
    }

    /// A number in [0, 1).
    fn next_unit(&mut self) -> f64 {
        let mut x = self.random;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
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

    /// Within ±20 % of the exact delay.
    fn near(wait: Duration, exact: Duration) -> bool {
        wait >= exact.mul_f64(0.8) && wait <= exact.mul_f64(1.2)
    }

    #[test]
    fn a_success_starts_over() {
        let mut r = Backoff::new(100 * MS, 800 * MS).start();
        let waits = [r.failed(), r.failed(), r.failed()];
        for (wait, exact) in waits.iter().zip([100 * MS, 200 * MS, 400 * MS]) {
            assert!(near(*wait, exact), "{wait:?} for {exact:?}");
        }
        r.succeeded();
        assert!(near(r.failed(), 100 * MS));
    }

    #[test]
    fn jitter_spreads_a_wait_by_twenty_percent_either_way() {
        let d = 1000 * MS;
        assert_eq!(jittered(d, 0.0), 800 * MS);
        assert_eq!(jittered(d, 0.5), d);
        assert_eq!(jittered(d, 1.0), 1200 * MS);
        assert_eq!(jittered(d, 7.0), 1200 * MS, "clamped");
    }

    #[test]
    fn retries_of_one_failure_spread_over_the_whole_range() {
        // Many clients failing once: their first waits are spread, not
        // one instant. 1,000 retries, 10 buckets of 40 ms over 800..1200.
        let b = Backoff::new(1000 * MS, 1000 * MS);
        let mut buckets = [0u32; 10];
        for _ in 0..1000 {
            let wait = b.start().failed();
            assert!(near(wait, 1000 * MS), "{wait:?}");
            let at = ((wait.as_millis() - 800) / 40).min(9) as usize;
            buckets[at] += 1;
        }
        // Uniform would be 100 each; a stuck generator fills one bucket.
        assert!(
            buckets.iter().all(|n| (40..=160).contains(n)),
            "{buckets:?}"
        );
        // And one client's successive waits differ too.
        let mut r = b.start();
        let waits: std::collections::HashSet<Duration> = (0..20).map(|_| r.failed()).collect();
        assert!(waits.len() > 10, "{waits:?}");
    }
}

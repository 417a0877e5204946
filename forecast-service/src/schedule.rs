//! When to call RTE next: the rate limit, the refresh interval and the
//! back-off, as a pure function of what happened.
//!
//! RTE allows one signals call per 15 minutes per application; past that it
//! answers 429. The waits here are counted from the end of the last signals
//! call (see `refresh`), not from the start of an attempt, so token calls
//! never shorten them. Every upstream call goes through the one refresh task, which
//! asks this policy how long to wait, so the number of clients never changes
//! the number of calls.

use std::time::Duration;

use delestage_runtime::backoff::Backoff;

/// RTE's limit: one signals call per 15 minutes.
pub const RTE_MIN_SPACING: Duration = Duration::from_secs(15 * 60);

/// The longest back-off after failures (at most this long without trying).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// A `Retry-After` longer than this is treated as this (a broken header must
/// not stop refreshes for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Between two calls when all is well.
    pub interval: Duration,
    /// Never two calls closer than this (15 minutes for RTE's production
    /// API; nothing for the sandbox or a local server).
    pub floor: Duration,
    /// Added to every wait (30 s by default, `--call-margin`): our clock and
    /// RTE's need not agree to the second, and a call that lands just inside
    /// RTE's window costs a 429 and a 15-minute back-off.
    pub margin: Duration,
}

impl RefreshPolicy {
    /// The wait after a call that brought a good forecast.
    pub fn after_success(&self) -> Duration {
        self.interval.max(self.floor) + self.margin
    }

    /// The wait after the `consecutive`-th failure in a row (1 for the
    /// first). A 429's `Retry-After` is honoured; other failures back off
    /// exponentially from the smaller of the interval and 15 minutes, up to
    /// an hour (or the interval, if longer).
    pub fn after_failure(&self, consecutive: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(MAX_RETRY_AFTER).max(self.floor) + self.margin;
        }
        let base = self.interval.min(RTE_MIN_SPACING).max(self.floor);
        let cap = MAX_BACKOFF.max(self.interval);
        Backoff::new(base, cap).delay(consecutive).max(self.floor) + self.margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Duration = Duration::from_secs(60);

    fn production() -> RefreshPolicy {
        RefreshPolicy {
            interval: 15 * MIN,
            floor: RTE_MIN_SPACING,
            margin: Duration::ZERO,
        }
    }

    #[test]
    fn production_backs_off_15_30_60_60_minutes() {
        let p = production();
        let waits: Vec<_> = (1..=4).map(|n| p.after_failure(n, None) / 60).collect();
        assert_eq!(
            waits,
            [
                Duration::from_secs(15),
                Duration::from_secs(30),
                Duration::from_secs(60),
                Duration::from_secs(60)
            ]
        );
    }

    #[test]
    fn retry_after_is_honoured_but_never_below_the_floor() {
        let p = production();
        assert_eq!(p.after_failure(1, Some(40 * MIN)), 40 * MIN);
        assert_eq!(p.after_failure(1, Some(MIN)), 15 * MIN);
        assert_eq!(
            p.after_failure(1, Some(Duration::from_secs(86400 * 30))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn the_margin_is_added_to_every_wait() {
        let p = RefreshPolicy {
            margin: Duration::from_secs(30),
            ..production()
        };
        assert_eq!(p.after_success(), 15 * MIN + Duration::from_secs(30));
        assert_eq!(p.after_failure(2, None), 30 * MIN + Duration::from_secs(30));
        assert_eq!(
            p.after_failure(1, Some(20 * MIN)),
            20 * MIN + Duration::from_secs(30)
        );
    }

    #[test]
    fn a_local_server_can_be_polled_fast() {
        let p = RefreshPolicy {
            interval: Duration::from_millis(200),
            floor: Duration::ZERO,
            margin: Duration::ZERO,
        };
        assert_eq!(p.after_success(), Duration::from_millis(200));
        assert_eq!(p.after_failure(1, None), Duration::from_millis(200));
        assert_eq!(p.after_failure(3, None), Duration::from_millis(800));
    }

    proptest! {
        /// Whatever happens, two production calls are never closer than 15 minutes.
        #[test]
        fn production_never_waits_less_than_the_floor(
            interval_min in 15u64..600,
            consecutive in 0u32..100,
            retry_after in proptest::option::of(0u64..100_000),
            margin_s in 0u64..120,
        ) {
            let margin = Duration::from_secs(margin_s);
            let p = RefreshPolicy { interval: MIN * interval_min as u32, floor: RTE_MIN_SPACING, margin };
            prop_assert!(p.after_success() >= RTE_MIN_SPACING + margin);
            prop_assert!(p.after_success() >= p.interval + margin);
            let wait = p.after_failure(consecutive, retry_after.map(Duration::from_secs));
            prop_assert!(wait >= RTE_MIN_SPACING + margin);
            prop_assert!(wait <= MAX_RETRY_AFTER.max(p.interval) + margin);
        }
    }
}

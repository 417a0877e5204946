//! The restore jitter (`[policy] restore_jitter`): when thousands of homes
//! restore at the end of the same red hour, the rebound is a new peak, so
//! each controller delays its restores after a tense period by its own
//! amount, up to the configured bound (OpenADR's randomised start).
//!
//! The amount is a pure function of a seed (an instance id the controller
//! keeps in its state dir) and the Paris date: the plan can show it, a
//! restart does not change it, and two homes draw different amounts.

use std::time::Duration;

use jiff::civil::Date;

/// The bound and this instance's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RestoreJitter {
    /// `restore_jitter`: zero for none.
    pub max: Duration,
    pub seed: u64,
}

impl RestoreJitter {
    /// The delay of this instance's restores on `date`: within `[0, max]`,
    /// to the second (to the millisecond under a second), and the same
    /// every time for the same seed and date.
    pub(crate) fn on(&self, date: Date) -> Duration {
        if self.max.is_zero() {
            return Duration::ZERO;
        }
        let day = (i64::from(date.year()) * 10_000
            + i64::from(date.month()) * 100
            + i64::from(date.day())) as u64;
        let draw = splitmix64(self.seed ^ splitmix64(day));
        let secs = self.max.as_secs();
        if secs == 0 {
            let millis = self.max.as_millis() as u64;
            return Duration::from_millis(draw % (millis + 1));
        }
        Duration::from_secs(draw % (secs + 1))
    }
}

/// SplitMix64's mixing step: a stable, well-spread hash of a u64 (the
/// standard library's hasher may change between releases, and a restart
/// on a new binary must keep the same delay).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Within its bound, and deterministic per seed and day.
        #[test]
        fn jitter_is_bounded_and_deterministic(
            seed in any::<u64>(),
            max_ms in 0u64..3_600_000,
            days in 0i32..3650,
        ) {
            let date = jiff::civil::date(2026, 1, 1)
                .checked_add(jiff::Span::new().days(days))
                .expect("in range");
            let jitter = RestoreJitter { max: Duration::from_millis(max_ms), seed };
            let delay = jitter.on(date);
            prop_assert!(delay <= jitter.max, "{delay:?} over {:?}", jitter.max);
            prop_assert_eq!(delay, jitter.on(date));
            prop_assert_eq!(delay, RestoreJitter { max: jitter.max, seed }.on(date));
        }
    }

    #[test]
    fn seeds_and_days_spread_the_delay() {
        let max = Duration::from_secs(300);
        let date = jiff::civil::date(2026, 12, 2);
        let delays: std::collections::BTreeSet<Duration> = (0..200u64)
            .map(|seed| RestoreJitter { max, seed }.on(date))
            .collect();
        // 200 homes over 301 possible seconds: most draw their own.
        assert!(delays.len() > 100, "{} distinct delays", delays.len());
        let one = RestoreJitter { max, seed: 7 };
        let days: std::collections::BTreeSet<Duration> = (0..30)
            .map(|d| one.on(date.checked_add(jiff::Span::new().days(d)).expect("date")))
            .collect();
        assert!(
            days.len() > 15,
            "{} distinct delays over 30 days",
            days.len()
        );
        assert_eq!(RestoreJitter::default().on(date), Duration::ZERO);
    }
}

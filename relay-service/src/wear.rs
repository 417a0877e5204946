//! The wear guard: at most N switching cycles per channel in any rolling
//! minute.
//!
//! The 1017's relays are rated for 20 switching cycles per minute; past that
//! they heat and wear. A misbehaving client (or controller bug) must not be
//! able to chatter a relay, so a switch over the limit is refused, with the
//! time at which it would be allowed, never dropped silently.
//!
//! Pure logic: the caller passes `now`.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The rolling window the limit applies to.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// The relays' rating, and the highest limit we accept.
pub(crate) const MAX_SWITCHES_PER_MINUTE: u32 = 20;

/// A refused switch: the channel has used its budget for the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Switches in the current window (equal to the limit).
    pub recent: u32,
    pub limit: u32,
    /// How long until the oldest switch leaves the window.
    pub retry_after: Duration,
}

/// Per-channel switch times within the last [`WINDOW`].
#[derive(Debug, Clone)]
pub(crate) struct WearGuard {
    limit: u32,
    switches: Vec<VecDeque<Instant>>,
}

impl WearGuard {
    /// `limit` switches per rolling minute for each of `channels` channels.
    /// A limit of 0 turns the guard off (for benchmarks on the simulated
    /// board only; see `--benchmark-without-wear-guard`).
    pub(crate) fn new(channels: usize, limit: u32) -> Self {
        Self {
            limit,
            switches: vec![VecDeque::new(); channels],
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether `channel` may switch at `now`.
    pub(crate) fn check(&mut self, channel: usize, now: Instant) -> Result<(), Refusal> {
        let limit = self.limit;
        if limit == 0 {
            return Ok(());
        }
        let Some(times) = self.switches.get_mut(channel) else {
            return Ok(());
        };
        prune(times, now);
        if (times.len() as u32) < limit {
            return Ok(());
        }
        // The oldest switch still in the window frees a slot when it leaves.
        let oldest = times.front().copied().unwrap_or(now);
        Err(Refusal {
            recent: times.len() as u32,
            limit,
            retry_after: (oldest + WINDOW).saturating_duration_since(now),
        })
    }

    /// Counts a switch of `channel` at `now`.
    pub(crate) fn record(&mut self, channel: usize, now: Instant) {
        if self.limit == 0 {
            return;
        }
        if let Some(times) = self.switches.get_mut(channel) {
            prune(times, now);
            times.push_back(now);
        }
    }

    /// Switches of `channel` within the window ending at `now`.
    pub(crate) fn recent(&mut self, channel: usize, now: Instant) -> u32 {
        self.switches.get_mut(channel).map_or(0, |times| {
            prune(times, now);
            times.len() as u32
        })
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while let Some(&t) = times.front() {
        if now.saturating_duration_since(t) >= WINDOW {
            times.pop_front();
        } else {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_over_the_limit_is_refused_until_the_oldest_leaves_the_window() {
        let t0 = Instant::now();
        let mut guard = WearGuard::new(2, 20);
        for i in 0..20 {
            let now = t0 + Duration::from_secs(i);
            assert_eq!(guard.check(0, now), Ok(()), "switch {i}");
            guard.record(0, now);
        }
        let now = t0 + Duration::from_secs(25);
        let refusal = guard.check(0, now).expect_err("21st switch in a minute");
        assert_eq!(refusal.recent, 20);
        assert_eq!(refusal.limit, 20);
        // The first switch was at t0: it leaves the window at t0 + 60 s.
        assert_eq!(refusal.retry_after, Duration::from_secs(35));

        // Other channels are not affected.
        assert_eq!(guard.check(1, now), Ok(()));

        // Just before the oldest leaves: still refused; at that instant: allowed.
        assert!(guard.check(0, t0 + Duration::from_millis(59_999)).is_err());
        assert_eq!(guard.check(0, t0 + WINDOW), Ok(()));
        assert_eq!(guard.recent(0, t0 + WINDOW), 19);
    }

    #[test]
    fn a_lower_limit_is_honoured() {
        let t0 = Instant::now();
        let mut guard = WearGuard::new(1, 2);
        guard.record(0, t0);
        guard.record(0, t0);
        let refusal = guard.check(0, t0).expect_err("limit 2");
        assert_eq!(refusal.limit, 2);
        assert_eq!(refusal.retry_after, WINDOW);
    }

    #[test]
    fn an_unknown_channel_is_not_the_guards_business() {
        let mut guard = WearGuard::new(1, 1);
        guard.record(5, Instant::now());
        assert_eq!(guard.check(5, Instant::now()), Ok(()));
        assert_eq!(guard.recent(5, Instant::now()), 0);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the requests, no rolling minute ever holds more
            /// switches than the limit; a refusal's `retry_after` is exact:
            /// refused just before it, allowed at it.
            #[test]
            fn never_more_than_the_limit_in_any_minute_and_retry_after_is_exact(
                limit in 1u32..=20,
                gaps_ms in proptest::collection::vec(0u64..10_000, 1..200),
            ) {
                let t0 = Instant::now();
                let mut guard = WearGuard::new(1, limit);
                let mut accepted: Vec<Instant> = Vec::new();
                let mut now = t0;
                for gap in gaps_ms {
                    now += Duration::from_millis(gap);
                    match guard.check(0, now) {
                        Ok(()) => {
                            guard.record(0, now);
                            accepted.push(now);
                        }
                        Err(refusal) => {
                            prop_assert_eq!(refusal.limit, limit);
                            prop_assert!(refusal.retry_after > Duration::ZERO);
                            prop_assert!(refusal.retry_after <= WINDOW);
                            let mut probe = guard.clone();
                            let at = now + refusal.retry_after;
                            prop_assert!(probe.check(0, at - Duration::from_nanos(1)).is_err());
                            prop_assert!(probe.check(0, at).is_ok());
                        }
                    }
                }
                // Every window [t, t + 60 s) starting at an accepted switch.
                for (i, start) in accepted.iter().enumerate() {
                    let in_window = accepted[i..]
                        .iter()
                        .take_while(|t| t.duration_since(*start) < WINDOW)
                        .count();
                    prop_assert!(in_window as u32 <= limit);
                }
            }
        }
    }
}

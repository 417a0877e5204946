//! What each load draws, measured rather than guessed: at every switch of a
//! load, the meter's power before (the last reading before the switch) and
//! after (the median of the readings 2–6 s after) give one sample. A
//! sample is discarded when another load switched in that window, when the
//! readings after vary by more than the change itself, or when the house
//! had not settled from 1 s after the switch (an appliance the controller
//! does not drive, switched by hand just after: its power would be taken
//! for the load's). The estimate is
//! the median of the last [`KEPT`] samples: one odd sample (a kettle
//! switched on at the same moment, unseen) does not move it. Pure.

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};

/// Samples kept per load.
pub(crate) const KEPT: usize = 9;
/// The readings that say "after": from 2 s to 6 s after the switch.
pub(crate) const AFTER_FROM: SignedDuration = SignedDuration::from_secs(2);
pub(crate) const AFTER_TO: SignedDuration = SignedDuration::from_secs(6);
/// From this long after the switch the house must have settled (the
/// first readings may still be frames sent before the relay moved).
pub(crate) const SETTLED_FROM: SignedDuration = SignedDuration::from_secs(1);

/// One switch, as the estimator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Switched {
    pub load: String,
    pub at: Timestamp,
    /// Switched on (true) or cut.
    pub to_powered: bool,
}

/// The load's power from one switch, in VA: `None` when the window is not
/// clean (or not over yet: call it once `at + AFTER_TO` has passed).
/// `readings` are (time, VA), in time order; `switches` are every load's
/// switches (this one included).
pub(crate) fn sample(
    switch: &Switched,
    readings: &[(Timestamp, u32)],
    switches: &[Switched],
) -> Option<u32> {
    let (before_at, before) = readings.iter().rev().find(|(t, _)| *t < switch.at)?;
    let window_end = switch.at + AFTER_TO;
    let disturbed = switches
        .iter()
        .any(|s| s != switch && s.at > *before_at && s.at <= window_end);
    if disturbed {
        return None;
    }
    let mut after: Vec<u32> = readings
        .iter()
        .filter(|(t, _)| *t >= switch.at + AFTER_FROM && *t <= window_end)
        .map(|(_, va)| *va)
        .collect();
    if after.is_empty() {
        return None;
    }
    after.sort_unstable();
    let median = after[after.len() / 2];
    let spread = after[after.len() - 1] - after[0];
    let delta = if switch.to_powered {
        i64::from(median) - i64::from(*before)
    } else {
        i64::from(*before) - i64::from(median)
    };
    // The load drew nothing measurable, or the house moved more than it.
    if delta <= 0 || i64::from(spread) > delta {
        return None;
    }
    // Settled from 1 s on: no other change (by a third of this one) in
    // the meantime.
    let settling = readings
        .iter()
        .filter(|(t, _)| *t >= switch.at + SETTLED_FROM && *t <= window_end)
        .map(|(_, va)| i64::from(*va));
    let (low, high) = settling.fold((i64::MAX, i64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    if low <= high && 3 * (high - low) > delta {
        return None;
    }
    u32::try_from(delta).ok()
}

/// A load's measured power: the median of its last samples.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Estimate {
    pub samples: VecDeque<u32>,
}

impl Estimate {
    pub(crate) fn add(&mut self, va: u32) {
        if self.samples.len() == KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(va);
    }

    /// `None` before the first sample.
    pub(crate) fn measured_va(&self) -> Option<u32> {
        let mut sorted: Vec<u32> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied()
    }
}

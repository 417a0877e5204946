//! Shedding by power, as a panel délesteur does: when the house draws
//! close to its subscribed power, cut the lowest-priority `shed_on_power`
//! load at once, then the next at each new reading still over; bring them
//! back one at a time, highest priority first, once there is room. Pure:
//! the readings, the loads and `now` are passed in; the caller acts and
//! logs.
//!
//! The rules (`[power]` in the controller's config):
//!
//! 1. A reading at or over `limit − margin` cuts the lowest-priority powered
//!    `shed_on_power` load not cut yet (one per reading).
//! 2. A cut load comes back, highest priority first, one at a time, when
//!    `restore_hold` has passed since the last power cut (and since the
//!    meter came back after a silence), the power leaves room for it
//!    (power + its power ≤ limit − margin), its `min_off` has passed, and
//!    two readings have come since the last restore.
//! 3. A meter silent for [`SILENT_AFTER`] freezes the rule: nothing is
//!    restored, what is cut stays cut.
//! 4. Power cuts ignore `min_on`, `max_off` and overrides (a tripped meter
//!    cuts everything); the relay's wear guard still applies (the
//!    relay-service refuses, the switch is retried).

pub(crate) mod estimate;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::policy::{Interval, Plan, Reason};

/// A meter that sent nothing valid this long freezes power decisions.
pub(crate) const SILENT_AFTER: Duration = Duration::from_secs(10);

/// `[power]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerSettings {
    /// The relay box whose meter governs (`[power] meter`).
    pub meter: String,
    /// Default: the meter's subscribed power.
    pub limit_va: Option<u32>,
    /// Default: 5 % of the limit.
    pub margin_va: Option<u32>,
    pub restore_hold: Duration,
}

impl PowerSettings {
    /// The power at and over which a load is cut: `limit − margin`.
    pub(crate) fn threshold(&self, subscribed_va: u32) -> u32 {
        let limit = self.limit_va.unwrap_or(subscribed_va);
        let margin = self.margin_va.unwrap_or(limit / 20);
        limit.saturating_sub(margin)
    }

    /// The limit in force with this subscribed power.
    pub(crate) fn limit(&self, subscribed_va: u32) -> u32 {
        self.limit_va.unwrap_or(subscribed_va)
    }
}

/// One meter reading, as the rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub at: Timestamp,
    pub apparent_power_va: u32,
    pub subscribed_va: u32,
}

/// A load as the rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PowerLoad {
    pub name: String,
    pub priority: i32,
    pub shed_on_power: bool,
    /// From its relay; `None` when unknown (its box unreachable).
    pub powered: Option<bool>,
    /// What it draws: measured, else its `power_w`, else 20 % of the limit.
    pub power_va: u32,
    /// When it was last cut (for `min_off`), if known.
    pub off_since: Option<Timestamp>,
    pub min_off: Duration,
}

/// What the rule remembers between readings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PowerState {
    /// The loads cut for power, in the order they were cut.
    pub cut: Vec<String>,
    pub last_cut_at: Option<Timestamp>,
    /// Readings since the last restore (`None`: no restore yet).
    pub readings_since_restore: Option<u32>,
    /// The last reading acted on.
    pub last_reading_at: Option<Timestamp>,
    /// Since when the meter has been silent, while it is.
    pub silent_since: Option<Timestamp>,
    /// When the meter came back after a silence.
    pub back_at: Option<Timestamp>,
}

/// What one step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No new reading, or nothing to do.
    Nothing,
    /// Over the threshold: cut this load.
    Cut {
        load: String,
        power_va: u32,
        threshold_va: u32,
    },
    /// Over the threshold, and no powered `shed_on_power` load is left.
    NothingLeftToCut { power_va: u32, threshold_va: u32 },
    /// Room again: bring this load back.
    Restore { load: String, power_va: u32 },
    /// The meter has just gone silent: decisions frozen.
    Frozen,
}

/// Decides on the latest reading (`None`: none yet). Only a new reading
/// decides anything; a silent meter freezes.
pub(crate) fn step(
    state: &mut PowerState,
    settings: &PowerSettings,
    reading: Option<Reading>,
    loads: &[PowerLoad],
    now: Timestamp,
) -> Decision {
    let silent_after = SignedDuration::try_from(SILENT_AFTER).unwrap_or(SignedDuration::MAX);
    let fresh = reading.filter(|r| now.duration_since(r.at) <= silent_after);
    let Some(reading) = fresh else {
        if state.silent_since.is_none() {
            state.silent_since = Some(now);
            return Decision::Frozen;
        }
        return Decision::Nothing;
    };
    if state.last_reading_at.is_some_and(|last| reading.at <= last) {
        return Decision::Nothing;
    }
    state.last_reading_at = Some(reading.at);
    if state.silent_since.take().is_some() {
        state.back_at = Some(now);
    }
    if let Some(n) = state.readings_since_restore.as_mut() {
        *n = n.saturating_add(1);
    }
    // A load no longer configured for power is no longer held.
    state
        .cut
        .retain(|name| loads.iter().any(|l| &l.name == name && l.shed_on_power));
    let threshold = settings.threshold(reading.subscribed_va);
    let power = reading.apparent_power_va;
    if power >= threshold {
        let victim = loads
            .iter()
            .filter(|l| l.shed_on_power && l.powered == Some(true) && !state.cut.contains(&l.name))
            .min_by(|a, b| {
                a.priority
                    .cmp(&b.priority)
                    .then_with(|| a.name.cmp(&b.name))
            });
        return match victim {
            Some(load) => {
                state.cut.push(load.name.clone());
                state.last_cut_at = Some(now);
                Decision::Cut {
                    load: load.name.clone(),
                    power_va: power,
                    threshold_va: threshold,
                }
            }
            None => Decision::NothingLeftToCut {
                power_va: power,
                threshold_va: threshold,
            },
        };
    }
    match restorable(state, settings, loads, power, threshold, now) {
        Some(name) => {
            state.cut.retain(|n| n != &name);
            state.readings_since_restore = Some(0);
            Decision::Restore {
                load: name,
                power_va: power,
            }
        }
        None => Decision::Nothing,
    }
}

/// The cut load to bring back now, if any: highest priority first (the
/// last cut first among equals), and only when every rule allows it.
fn restorable(
    state: &PowerState,
    settings: &PowerSettings,
    loads: &[PowerLoad],
    power: u32,
    threshold: u32,
    now: Timestamp,
) -> Option<String> {
    let hold = SignedDuration::try_from(settings.restore_hold).unwrap_or(SignedDuration::MAX);
    let held = |since: Option<Timestamp>| since.is_some_and(|t| now.duration_since(t) < hold);
    if held(state.last_cut_at) || held(state.back_at) {
        return None;
    }
    if state.readings_since_restore.is_some_and(|n| n < 2) {
        return None;
    }
    let candidate = state
        .cut
        .iter()
        .rev()
        .filter_map(|name| loads.iter().find(|l| &l.name == name))
        .max_by_key(|l| l.priority)?;
    let min_off = SignedDuration::try_from(candidate.min_off).unwrap_or(SignedDuration::MAX);
    let off_long_enough = candidate
        .off_since
        .is_none_or(|t| now.duration_since(t) >= min_off);
    (power.saturating_add(candidate.power_va) <= threshold && off_long_enough)
        .then(|| candidate.name.clone())
}

/// Shows the loads cut for power in the plan, for now only: a power cut
/// cannot be planned. A load already planned cut now stays as planned
/// (power only adds cuts).
pub(crate) fn apply(plan: &mut Plan, cut: &[String], now: Timestamp) {
    let until = now + SignedDuration::from_secs(1);
    for lp in plan.loads.iter_mut().filter(|lp| cut.contains(&lp.load)) {
        let Some(i) = lp
            .intervals
            .iter()
            .position(|iv| iv.start <= now && now < iv.end)
        else {
            continue;
        };
        let current = lp.intervals[i];
        if !current.powered {
            continue;
        }
        let mut replacement = Vec::new();
        if current.start < now {
            replacement.push(Interval {
                end: now,
                ..current
            });
        }
        replacement.push(Interval {
            start: now,
            end: until.min(current.end),
            powered: false,
            reason: Reason::PowerLimit,
        });
        if until < current.end {
            replacement.push(Interval {
                start: until,
                ..current
            });
        }
        lp.intervals.splice(i..=i, replacement);
    }
}

#[cfg(test)]
mod tests;

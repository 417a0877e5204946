//! The policy's vocabulary: what it reads (`PlanInput`: the forecast
//! hours, the Tempo days, overrides, what each load is doing) and what it
//! gives (`Plan`: a timeline per load), with the time arithmetic the rules
//! share.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{Reason, RestoreJitter};
use crate::model::{Hour, Load, TariffDay};

/// A person's decision: this load is `powered` until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Override {
    pub powered: bool,
    pub until: Timestamp,
    /// Act at once, skipping the load's minimum on/off time (a control
    /// caller's `force`). Without it an override waits for the minimum, as
    /// the policy does: nobody outside can short-cycle a compressor.
    pub force: bool,
}

/// What a load is doing now: powered or not, and since when the controller
/// put it in that state (`None`: not by the controller, or unknown; no
/// minimum time applies then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadState {
    pub powered: bool,
    pub since: Option<Timestamp>,
    /// Why it was put in that state, when `since` is known.
    pub reason: Option<Reason>,
}

/// One piece of a load's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interval {
    pub start: Timestamp,
    pub end: Timestamp,
    pub powered: bool,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadPlan {
    pub load: String,
    /// Contiguous, from the plan's `computed_at` to its `horizon`.
    pub intervals: Vec<Interval>,
    /// Today's daily runtime, for a load with `run_daily`.
    pub budget: Option<DayBudget>,
}

/// A `run_daily` load's day (Paris time), as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayBudget {
    /// `run_daily`.
    pub run_daily: Duration,
    /// Powered so far today (from the history).
    pub done: Duration,
    /// Powered in the plan from now to the end of the day.
    pub planned: Duration,
    /// When: the plan's powered intervals today, from now.
    pub runs: Vec<(Timestamp, Timestamp)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub computed_at: Timestamp,
    pub horizon: Timestamp,
    /// In the order of the configured loads.
    pub loads: Vec<LoadPlan>,
}

impl Plan {
    pub(crate) fn load(&self, name: &str) -> Option<&LoadPlan> {
        self.loads.iter().find(|l| l.load == name)
    }
}

impl LoadPlan {
    /// The interval containing `t`, if within the plan.
    pub(crate) fn at(&self, t: Timestamp) -> Option<&Interval> {
        self.intervals.iter().find(|i| i.start <= t && t < i.end)
    }

    /// The first interval after the one containing `t` whose powered state
    /// differs: the next planned switch.
    pub(crate) fn next_change(&self, t: Timestamp) -> Option<&Interval> {
        let current = self.at(t)?;
        self.intervals
            .iter()
            .find(|i| i.start > t && i.powered != current.powered)
    }
}

/// Everything the policy looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanInput<'a> {
    pub now: Timestamp,
    pub loads: &'a [Load],
    /// Sorted, disjoint hours; `None` when there is no usable forecast
    /// (missing, or older than the configured max age).
    pub forecast: Option<&'a [Hour]>,
    /// When the forecast passes its max age: from then on it governs no
    /// hour, and each load follows its fallback (the plan still reaches
    /// the forecast's end, so that the change at the expiry shows).
    pub forecast_expires: Option<Timestamp>,
    /// The known Tempo days, sorted; empty when Tempo is off or unknown.
    pub tempo: &'a [TariffDay],
    pub overrides: &'a HashMap<String, Override>,
    /// What each load is doing now; a load without an entry is unknown and
    /// starts in whatever the plan wants.
    pub states: &'a HashMap<String, LoadState>,
    /// When the controller last restored a load (any load).
    pub last_restore_at: Option<Timestamp>,
    pub restore_stagger: Duration,
    /// The delay of restores after a tense period.
    pub restore_jitter: RestoreJitter,
    /// How long each `run_daily` load has been powered today (Paris time)
    /// before `now`, from the history; a load without an entry had nothing.
    pub delivered_today: &'a HashMap<String, Duration>,
    /// When the controller started watching the loads: one found cut
    /// without its own switch (`since: None`) has been cut at least since
    /// then, for its `max_off`.
    pub watching_since: Timestamp,
    /// How far to plan when the forecast does not say (no usable forecast,
    /// or it ends before now).
    pub default_horizon: Duration,
}

/// Starts a new interval at `t` unless the last one is the same state for
/// the same reason.
pub(super) fn record(timeline: &mut Vec<Interval>, t: Timestamp, powered: bool, reason: Reason) {
    if let Some(last) = timeline.last_mut() {
        if last.powered == powered && last.reason == reason {
            return;
        }
        last.end = t;
    }
    timeline.push(Interval {
        start: t,
        end: t,
        powered,
        reason,
    });
}

pub(super) fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

pub(super) fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

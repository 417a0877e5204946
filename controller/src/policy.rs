//! The shedding policy: (forecast, loads, overrides, what the loads are
//! doing now, now) -> a plan. Pure: no I/O, no clock; `now` is an input.
//!
//! The plan gives each load a timeline of contiguous intervals
//! `{start, end, powered, reason}` from `now` to the end of the forecast.
//! It is computed by walking time forward over every instant where
//! something may change (an hour boundary, the start of an anticipation, an
//! override's end, a minimum on/off time running out, a restore slot),
//! deciding at each instant, for every load:
//!
//! 1. what it wants: an override wins until it expires; an hour at or above
//!    its `shed_at` level cuts it, and so do the peak hours (06:00-22:00
//!    Paris time) of a Tempo day of its `shed_on_tempo` colour or dearer,
//!    and either of these starting within its `anticipate`; otherwise, when
//!    a signal it sheds on is not known for that time (no usable forecast,
//!    an hour the forecast does not cover, a Tempo day not published), it
//!    follows its fallback; otherwise it is powered;
//! 2. whether it may change now: not before its minimum on (or off) time
//!    has passed since it last switched (overrides skip this); and a cut
//!    load is not restored when its minimum on time would hold it powered
//!    into a time it must be cut for: it stays cut, as an anticipation;
//! 3. for loads coming back, when: one at a time, most important first,
//!    `restore_stagger` apart. Cuts happen at once (the reconciler switches
//!    them least important first).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use delestage_proto::vocabulary::ReasonKind;

use crate::model::{Fallback, Load, SignalLevel, TempoColor};

/// One forecast hour, [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hour {
    pub start: Timestamp,
    pub end: Timestamp,
    pub level: SignalLevel,
}

/// One Tempo tariff day: [start, end) is 06:00 to 06:00 Paris time, and
/// its peak hours are [start, peak_end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TariffDay {
    /// Its date (Paris time).
    pub date: jiff::civil::Date,
    pub start: Timestamp,
    pub peak_end: Timestamp,
    pub end: Timestamp,
    pub color: TempoColor,
}

/// A person's decision: this load is `powered` until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Override {
    pub powered: bool,
    pub until: Timestamp,
}

/// What a load is doing now: powered or not, and since when the controller
/// put it in that state (`None`: not by the controller, or unknown; no
/// minimum time applies then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadState {
    pub powered: bool,
    pub since: Option<Timestamp>,
}

/// Why a load is in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// Nothing to shed.
    Normal,
    /// The hour's level is at or above the load's `shed_at`.
    ShedForLevel(SignalLevel),
    /// A tense hour (of this level) starts within the load's `anticipate`.
    Anticipation(SignalLevel),
    /// In the peak hours of a Tempo day of this colour.
    ShedForTempo(TempoColor),
    /// The peak hours of a Tempo day of this colour start within the load's
    /// `anticipate`.
    TempoAnticipation(TempoColor),
    /// A person's override.
    Override,
    /// No usable forecast for this time: the load's fallback.
    ForecastUnknown,
    /// Kept powered until its minimum on time has passed.
    MinOnHold,
    /// Kept cut until its minimum off time has passed.
    MinOffHold,
    /// Waiting for its turn to be restored.
    RestoreStagger,
}

impl Reason {
    /// Its kind, whose name is the one every output uses.
    pub(crate) fn kind(self) -> ReasonKind {
        match self {
            Reason::Normal => ReasonKind::Normal,
            Reason::ShedForLevel(_) => ReasonKind::ShedForLevel,
            Reason::Anticipation(_) | Reason::TempoAnticipation(_) => ReasonKind::Anticipation,
            Reason::ShedForTempo(_) => ReasonKind::ShedForTempo,
            Reason::Override => ReasonKind::Override,
            Reason::ForecastUnknown => ReasonKind::ForecastUnknown,
            Reason::MinOnHold => ReasonKind::MinOnHold,
            Reason::MinOffHold => ReasonKind::MinOffHold,
            Reason::RestoreStagger => ReasonKind::RestoreStagger,
        }
    }

    /// A kind and the level or colour beside it, back into a reason; `None`
    /// for a shed without what caused it.
    pub(crate) fn from_kind(
        kind: ReasonKind,
        level: Option<SignalLevel>,
        color: Option<TempoColor>,
    ) -> Option<Self> {
        Some(match kind {
            ReasonKind::Normal => Reason::Normal,
            ReasonKind::ShedForLevel => Reason::ShedForLevel(level?),
            ReasonKind::Anticipation => match (level, color) {
                (Some(level), _) => Reason::Anticipation(level),
                (None, color) => Reason::TempoAnticipation(color?),
            },
            ReasonKind::ShedForTempo => Reason::ShedForTempo(color?),
            ReasonKind::Override => Reason::Override,
            ReasonKind::ForecastUnknown => Reason::ForecastUnknown,
            ReasonKind::MinOnHold => Reason::MinOnHold,
            ReasonKind::MinOffHold => Reason::MinOffHold,
            ReasonKind::RestoreStagger => Reason::RestoreStagger,
        })
    }

    /// The level behind a shed, if any.
    pub(crate) fn level(self) -> Option<SignalLevel> {
        match self {
            Reason::ShedForLevel(l) | Reason::Anticipation(l) => Some(l),
            _ => None,
        }
    }

    /// The Tempo colour behind a shed, if any.
    pub(crate) fn tempo_color(self) -> Option<TempoColor> {
        match self {
            Reason::ShedForTempo(c) | Reason::TempoAnticipation(c) => Some(c),
            _ => None,
        }
    }
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
    /// The known Tempo days, sorted; empty when Tempo is off or unknown.
    pub tempo: &'a [TariffDay],
    pub overrides: &'a HashMap<String, Override>,
    /// What each load is doing now; a load without an entry is unknown and
    /// starts in whatever the plan wants.
    pub states: &'a HashMap<String, LoadState>,
    /// When the controller last restored a load (any load).
    pub last_restore_at: Option<Timestamp>,
    pub restore_stagger: Duration,
    /// How far to plan when the forecast does not say (no usable forecast,
    /// or it ends before now).
    pub default_horizon: Duration,
}

/// Computes the plan. See the module docs for the rules.
pub(crate) fn plan(input: &PlanInput<'_>) -> Plan {
    let now = input.now;
    let hours = input.forecast.unwrap_or(&[]);
    let horizon = hours
        .last()
        .map(|h| h.end)
        .into_iter()
        .chain(input.tempo.last().map(|d| d.end))
        .max()
        .filter(|end| *end > now)
        .unwrap_or_else(|| add(now, input.default_horizon));

    // Every instant where a load may want something else.
    let mut events: BTreeSet<Timestamp> = BTreeSet::new();
    for h in hours {
        events.insert(h.start);
        events.insert(h.end);
    }
    for d in input.tempo {
        events.extend([d.start, d.peak_end, d.end]);
    }
    for load in input.loads {
        if !load.anticipate.is_zero() {
            if let Some(shed_at) = load.shed_at {
                for h in hours.iter().filter(|h| h.level >= shed_at) {
                    events.insert(sub(h.start, load.anticipate));
                }
            }
            if let Some(color) = load.shed_on_tempo {
                for d in input.tempo.iter().filter(|d| d.color >= color) {
                    events.insert(sub(d.start, load.anticipate));
                }
            }
        }
        if let Some(o) = input.overrides.get(&load.name) {
            events.insert(o.until);
        }
    }

    let mut current: Vec<LoadState> = input
        .loads
        .iter()
        .map(|load| match input.states.get(&load.name) {
            Some(s) => *s,
            None => LoadState {
                powered: wanted(load, now, input).0.unwrap_or(true),
                since: None,
            },
        })
        .collect();
    let mut timelines: Vec<Vec<Interval>> = vec![Vec::new(); input.loads.len()];
    let mut last_restore = input.last_restore_at;

    let mut t = now;
    while t < horizon {
        let mut restores: Vec<(usize, Reason)> = Vec::new();
        for (i, load) in input.loads.iter().enumerate() {
            let (want, reason) = wanted(load, t, input);
            let state = current[i];
            let target = want.unwrap_or(state.powered);
            if target == state.powered {
                record(&mut timelines[i], t, state.powered, reason);
                continue;
            }
            if reason == Reason::Override {
                current[i] = LoadState {
                    powered: target,
                    since: Some(t),
                };
                record(&mut timelines[i], t, target, reason);
                continue;
            }
            let (min, hold) = if state.powered {
                (load.min_on, Reason::MinOnHold)
            } else {
                (load.min_off, Reason::MinOffHold)
            };
            if let Some(since) = state.since {
                let allowed_at = add(since, min);
                if allowed_at > t {
                    record(&mut timelines[i], t, state.powered, hold);
                    events.insert(allowed_at);
                    continue;
                }
            }
            if target {
                // No restore that its min_on would hold powered into a cut.
                if let Some(ahead) = cut_within(load, t, load.min_on, &events, input) {
                    record(&mut timelines[i], t, false, ahead);
                    continue;
                }
                restores.push((i, reason));
            } else {
                current[i] = LoadState {
                    powered: false,
                    since: Some(t),
                };
                record(&mut timelines[i], t, false, reason);
            }
        }

        // Most important first; the name breaks ties so plans are stable.
        restores.sort_by(|(a, _), (b, _)| {
            let (a, b) = (&input.loads[*a], &input.loads[*b]);
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        for (i, reason) in restores {
            let slot = match last_restore {
                Some(last) if !input.restore_stagger.is_zero() => add(last, input.restore_stagger),
                _ => t,
            };
            if slot <= t {
                current[i] = LoadState {
                    powered: true,
                    since: Some(t),
                };
                last_restore = Some(t);
                record(&mut timelines[i], t, true, reason);
            } else {
                record(&mut timelines[i], t, false, Reason::RestoreStagger);
                events.insert(slot);
            }
        }

        t = events
            .range((std::ops::Bound::Excluded(t), std::ops::Bound::Unbounded))
            .next()
            .copied()
            .filter(|next| *next < horizon)
            .unwrap_or(horizon);
    }

    let loads = input
        .loads
        .iter()
        .zip(timelines)
        .map(|(load, mut intervals)| {
            if let Some(last) = intervals.last_mut() {
                last.end = horizon;
            }
            LoadPlan {
                load: load.name.clone(),
                intervals,
            }
        })
        .collect();
    Plan {
        computed_at: now,
        horizon,
        loads,
    }
}

/// What `load` wants at `t`, before minimum times and stagger: `Some(powered)`,
/// or `None` to stay as it is (the "keep" fallback).
///
/// Each signal the load sheds on gives a verdict; a cut wins (a shed hour
/// over a Tempo peak over an anticipation), then an unknown signal (the
/// fallback), then "powered".
fn wanted(load: &Load, t: Timestamp, input: &PlanInput<'_>) -> (Option<bool>, Reason) {
    if let Some(o) = input.overrides.get(&load.name)
        && t < o.until
    {
        return (Some(o.powered), Reason::Override);
    }
    let verdicts = [
        load.shed_at
            .map(|level| ecowatt_verdict(load, level, t, input.forecast)),
        load.shed_on_tempo
            .map(|color| tempo_verdict(load, color, t, input.tempo)),
    ];
    let cut = verdicts
        .iter()
        .flatten()
        .filter_map(|v| match v {
            Verdict::Cut(reason) => Some(*reason),
            _ => None,
        })
        .min_by_key(|r| cut_rank(*r));
    if let Some(reason) = cut {
        return (Some(false), reason);
    }
    if verdicts.iter().flatten().any(|v| *v == Verdict::Unknown) {
        let powered = match load.when_forecast_unknown {
            Fallback::Keep => None,
            Fallback::Shed => Some(false),
            Fallback::Restore => Some(true),
        };
        return (powered, Reason::ForecastUnknown);
    }
    (Some(true), Reason::Normal)
}

/// If restoring `load` at `t` would have its `min_on` (`window`) hold it
/// powered into a time its signals cut it, the anticipation of that cut:
/// it had better stay cut. Overrides and fallbacks ahead do not count.
fn cut_within(
    load: &Load,
    t: Timestamp,
    window: Duration,
    events: &BTreeSet<Timestamp>,
    input: &PlanInput<'_>,
) -> Option<Reason> {
    if window.is_zero() {
        return None;
    }
    let end = add(t, window);
    events
        .range((std::ops::Bound::Excluded(t), std::ops::Bound::Excluded(end)))
        .find_map(|at| match wanted(load, *at, input) {
            (Some(false), Reason::ShedForLevel(l) | Reason::Anticipation(l)) => {
                Some(Reason::Anticipation(l))
            }
            (Some(false), Reason::ShedForTempo(c) | Reason::TempoAnticipation(c)) => {
                Some(Reason::TempoAnticipation(c))
            }
            _ => None,
        })
}

/// What one signal says of a load at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Cut(Reason),
    Clear,
    Unknown,
}

/// Which cut reason shows when several apply: the most urgent first.
fn cut_rank(reason: Reason) -> u8 {
    match reason {
        Reason::ShedForLevel(_) => 0,
        Reason::ShedForTempo(_) => 1,
        Reason::Anticipation(_) => 2,
        _ => 3,
    }
}

fn ecowatt_verdict(
    load: &Load,
    shed_at: SignalLevel,
    t: Timestamp,
    forecast: Option<&[Hour]>,
) -> Verdict {
    let Some(hours) = forecast else {
        return Verdict::Unknown;
    };
    let Some(hour) = hour_at(hours, t) else {
        return Verdict::Unknown;
    };
    if hour.level >= shed_at {
        return Verdict::Cut(Reason::ShedForLevel(hour.level));
    }
    if !load.anticipate.is_zero() {
        let until = add(t, load.anticipate);
        if let Some(tense) = hours
            .iter()
            .find(|h| h.start > t && h.start <= until && h.level >= shed_at)
        {
            return Verdict::Cut(Reason::Anticipation(tense.level));
        }
    }
    Verdict::Clear
}

/// Cut in the peak hours of a day of `color` or dearer, and `anticipate`
/// before them; unknown when the tariff day containing `t` is not known.
fn tempo_verdict(load: &Load, color: TempoColor, t: Timestamp, days: &[TariffDay]) -> Verdict {
    let day = days.iter().find(|d| d.start <= t && t < d.end);
    if let Some(d) = day
        && d.color >= color
        && t < d.peak_end
    {
        return Verdict::Cut(Reason::ShedForTempo(d.color));
    }
    if !load.anticipate.is_zero() {
        let until = add(t, load.anticipate);
        if let Some(next) = days
            .iter()
            .find(|d| d.start > t && d.start <= until && d.color >= color)
        {
            return Verdict::Cut(Reason::TempoAnticipation(next.color));
        }
    }
    if day.is_some() {
        Verdict::Clear
    } else {
        Verdict::Unknown
    }
}

/// The hour containing `t`.
pub(crate) fn hour_at(hours: &[Hour], t: Timestamp) -> Option<&Hour> {
    let after = hours.partition_point(|h| h.start <= t);
    let hour = hours.get(after.checked_sub(1)?)?;
    (t < hour.end).then_some(hour)
}

/// Starts a new interval at `t` unless the last one is the same state for
/// the same reason.
fn record(timeline: &mut Vec<Interval>, t: Timestamp, powered: bool, reason: Reason) {
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

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

#[cfg(test)]
mod tests;

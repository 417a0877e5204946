//! The shedding policy: (forecast, loads, overrides, what the loads are
//! doing now, now) -> a plan. Pure: no I/O, no clock; `now` is an input.
//!
//! The plan gives each load a timeline of contiguous intervals
//! `{start, end, powered, reason}` from `now` to the end of the forecast.
//! It is computed by walking time forward over every instant where
//! something may change (an hour boundary, the start of an anticipation, an
//! override's end, a minimum on/off time running out, a restore slot, a
//! scheduled run), deciding at each instant, for every load:
//!
//! 1. what it wants: an override wins until it expires. A load with a daily
//!    runtime (`run_daily`) is powered in the runs placed for it (see
//!    [`budget`]) and cut otherwise. For the others, an hour at or above
//!    its `shed_at` level cuts it, and so do the peak hours (06:00-22:00
//!    Paris time) of a Tempo day of its `shed_on_tempo` colour or dearer,
//!    and either of these starting within its `anticipate`; otherwise, when
//!    a signal it sheds on is not known for that time (no usable forecast,
//!    an hour the forecast does not cover, a Tempo day not published), it
//!    follows its fallback; otherwise it is powered;
//! 2. the comfort limit: a load cut for its `max_off` is powered at once
//!    for its `min_on` (30 min at least), whatever it wants (overrides
//!    aside);
//! 3. whether it may change now: not before its minimum on (or off) time
//!    has passed since it last switched (an override waits for it too,
//!    unless it is forced); a cut load is
//!    not restored when its minimum on time would hold it powered into a
//!    time it must be cut for: it stays cut, as an anticipation; and a
//!    restore after a tense period waits for the restore jitter (see
//!    [`jitter`]);
//! 4. for loads coming back, when: one at a time, most important first,
//!    `restore_stagger` apart. Cuts happen at once (the reconciler switches
//!    them least important first).

mod budget;
mod hold;
mod hours;
mod jitter;
mod reason;
mod signals;
mod types;

use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::time::Duration;

use jiff::Timestamp;

pub(crate) use crate::model::{Hour, TariffDay};
pub(crate) use budget::day_of;
use hold::min_hold;
pub(crate) use hours::{hour_at, hours_until};
pub(crate) use jitter::RestoreJitter;
pub(crate) use reason::Reason;
pub(crate) use types::{DayBudget, Interval, LoadPlan, LoadState, Override, Plan, PlanInput};
use types::{add, record, sub};

use crate::model::{Fallback, Load, PARIS};
use budget::Schedule;
use signals::Verdict;

/// The shortest comfort run, when a load's `min_on` is shorter.
const COMFORT_RUN: Duration = Duration::from_secs(30 * 60);

/// Computes the plan. See the module docs for the rules.
pub(crate) fn plan(input: &PlanInput<'_>) -> Plan {
    let now = input.now;
    let hours = input.forecast.unwrap_or(&[]);
    let horizon = horizon(input);
    // Past its expiry the forecast says nothing (the horizon above stays).
    let governed;
    let input = &match input.forecast_expires {
        Some(expiry) => {
            governed = hours_until(hours, expiry);
            PlanInput {
                forecast: Some(&governed),
                ..*input
            }
        }
        None => *input,
    };

    let mut events = signal_events(input);
    let schedules = schedules(input, &mut events, horizon);

    let mut current: Vec<LoadState> = input
        .loads
        .iter()
        .zip(&schedules)
        .map(|(load, schedule)| match input.states.get(&load.name) {
            Some(s) => *s,
            None => LoadState {
                powered: wanted(load, now, input, schedule.as_ref())
                    .0
                    .unwrap_or(true),
                since: None,
                reason: None,
            },
        })
        .collect();
    let mut timelines: Vec<Vec<Interval>> = vec![Vec::new(); input.loads.len()];
    let mut last_restore = input.last_restore_at;

    let mut t = now;
    while t < horizon {
        let mut restores: Vec<(usize, Reason)> = Vec::new();
        for (i, load) in input.loads.iter().enumerate() {
            match step(
                load,
                &current[i],
                t,
                input,
                schedules[i].as_ref(),
                &mut events,
            ) {
                Step::Keep { powered, reason } => record(&mut timelines[i], t, powered, reason),
                Step::Switch { powered, reason } => {
                    current[i] = LoadState {
                        powered,
                        since: Some(t),
                        reason: Some(reason),
                    };
                    record(&mut timelines[i], t, powered, reason);
                }
                Step::Restore(reason) => restores.push((i, reason)),
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
                    reason: Some(reason),
                };
                last_restore = Some(t);
                record(&mut timelines[i], t, true, reason);
            } else {
                record(&mut timelines[i], t, false, Reason::RestoreStagger);
                events.insert(slot);
            }
        }

        // A load cut now is visited again when its max_off runs out.
        for (load, state) in input.loads.iter().zip(&current) {
            if let Some(max_off) = load.max_off
                && !state.powered
            {
                events.insert(add(cut_since(state, input), max_off));
            }
        }

        t = events
            .range((Excluded(t), Unbounded))
            .next()
            .copied()
            .filter(|next| *next < horizon)
            .unwrap_or(horizon);
    }

    assemble(input, timelines, horizon)
}

/// The plan from each load's timeline, with today's runtime for the loads
/// that have a budget.
fn assemble(input: &PlanInput<'_>, timelines: Vec<Vec<Interval>>, horizon: Timestamp) -> Plan {
    let now = input.now;
    let today_ends = day_of(now).map_or(horizon, |(_, end)| end.min(horizon));
    let loads = input
        .loads
        .iter()
        .zip(timelines)
        .map(|(load, mut intervals)| {
            if let Some(last) = intervals.last_mut() {
                last.end = horizon;
            }
            let budget = load.run_daily.as_ref().map(|daily| {
                let (planned, runs) = budget::powered_within(&intervals, now, today_ends);
                DayBudget {
                    run_daily: daily.budget,
                    done: input
                        .delivered_today
                        .get(&load.name)
                        .copied()
                        .unwrap_or_default(),
                    planned,
                    runs,
                }
            });
            LoadPlan {
                load: load.name.clone(),
                intervals,
                budget,
            }
        })
        .collect();
    Plan {
        computed_at: now,
        horizon,
        loads,
    }
}

/// Where the plan ends: the end of what the forecast and the Tempo
/// calendar cover, else `default_horizon` from now.
fn horizon(input: &PlanInput<'_>) -> Timestamp {
    input
        .forecast
        .unwrap_or(&[])
        .last()
        .map(|h| h.end)
        .into_iter()
        .chain(input.tempo.last().map(|d| d.end))
        .max()
        .filter(|end| *end > input.now)
        .unwrap_or_else(|| add(input.now, input.default_horizon))
}

/// The runs placed for each load with a daily runtime (rule 1), their ends
/// and every midnight added to `events`.
fn schedules(
    input: &PlanInput<'_>,
    events: &mut BTreeSet<Timestamp>,
    horizon: Timestamp,
) -> Vec<Option<Schedule>> {
    let schedules: Vec<Option<Schedule>> = input
        .loads
        .iter()
        .map(|load| {
            let daily = load.run_daily.as_ref()?;
            let state = input.states.get(&load.name).copied();
            Some(budget::place(load, daily, input, events, horizon, state))
        })
        .collect();
    for schedule in schedules.iter().flatten() {
        events.extend(schedule.runs.iter().flat_map(|run| [run.0, run.1]));
    }
    if schedules.iter().any(Option::is_some) {
        // A budgeted load's reason may change at midnight (met, then not).
        let mut t = input.now;
        while let Some((_, next)) = day_of(t).filter(|_| t < horizon) {
            events.insert(next);
            t = next;
        }
    }
    schedules
}

/// What rules 1 to 3 decide for one load at `t`; rule 4 (the order and
/// pace of restores) is the caller's.
enum Step {
    /// Stays powered or cut, for `reason`.
    Keep { powered: bool, reason: Reason },
    /// Switches now.
    Switch { powered: bool, reason: Reason },
    /// Would be powered again: waits its turn.
    Restore(Reason),
}

/// One load at `t`, from its `state`: the rules of the module docs, in
/// their order. Adds to `events` the instants it must be visited again.
fn step(
    load: &Load,
    state: &LoadState,
    t: Timestamp,
    input: &PlanInput<'_>,
    schedule: Option<&Schedule>,
    events: &mut BTreeSet<Timestamp>,
) -> Step {
    // 1. What it wants.
    let (want, reason) = wanted(load, t, input, schedule);
    // 2. The comfort limit (overrides aside).
    if reason != Reason::Override
        && let Some(step) = comfort(load, state, t, input, events)
    {
        return step;
    }
    // 3. Whether it may change now.
    let target = want.unwrap_or(state.powered);
    if target == state.powered {
        return Step::Keep {
            powered: state.powered,
            reason,
        };
    }
    let forced =
        reason == Reason::Override && input.overrides.get(&load.name).is_some_and(|o| o.force);
    if !forced && let Some((allowed_at, hold)) = min_hold(load, state, t) {
        events.insert(allowed_at);
        return Step::Keep {
            powered: state.powered,
            reason: hold,
        };
    }
    if reason == Reason::Override || !target {
        return Step::Switch {
            powered: target,
            reason,
        };
    }
    // A scheduled run was placed with the signals in mind.
    if reason != Reason::ScheduledRun
        && let Some(ahead) = cut_within(load, t, load.min_on, events, input, schedule)
    {
        // No restore that its min_on would hold powered into a cut.
        return Step::Keep {
            powered: false,
            reason: ahead,
        };
    }
    if reason == Reason::Normal
        && let Some(at) = jittered_restore(load, t, events, input, schedule)
        && at > t
    {
        events.insert(at);
        return Step::Keep {
            powered: false,
            reason: Reason::RestoreJitter,
        };
    }
    Step::Restore(reason)
}

/// Rule 2: a comfort run lasts its length whatever the signals, and a load
/// cut for its `max_off` starts one.
fn comfort(
    load: &Load,
    state: &LoadState,
    t: Timestamp,
    input: &PlanInput<'_>,
    events: &mut BTreeSet<Timestamp>,
) -> Option<Step> {
    let max_off = load.max_off?;
    if state.powered
        && state.reason == Some(Reason::ComfortLimit)
        && let Some(since) = state.since
    {
        let until = add(since, comfort_run(load));
        if t < until {
            events.insert(until);
            return Some(Step::Keep {
                powered: true,
                reason: Reason::ComfortLimit,
            });
        }
    }
    if !state.powered && t >= add(cut_since(state, input), max_off) {
        events.insert(add(t, comfort_run(load)));
        return Some(Step::Switch {
            powered: true,
            reason: Reason::ComfortLimit,
        });
    }
    None
}

/// Every instant where a signal may change what a load wants: the forecast
/// hours, the Tempo days and their peaks, the anticipations of both, and
/// the ends of overrides.
fn signal_events(input: &PlanInput<'_>) -> BTreeSet<Timestamp> {
    let hours = input.forecast.unwrap_or(&[]);
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
    events
}

/// Since when a cut load has been cut, for its `max_off`.
fn cut_since(state: &LoadState, input: &PlanInput<'_>) -> Timestamp {
    state.since.unwrap_or(input.watching_since.min(input.now))
}

/// How long a comfort run lasts: the load's `min_on`, 30 min at least.
fn comfort_run(load: &Load) -> Duration {
    load.min_on.max(COMFORT_RUN)
}

/// What `load` wants at `t`, before minimum times and stagger: `Some(powered)`,
/// or `None` to stay as it is (the "keep" fallback).
///
/// An override wins. A load with a daily runtime runs when `schedule` says,
/// and is cut otherwise (for its signals, if they cut it then). Otherwise
/// each signal the load sheds on gives a verdict; a cut wins (a shed hour
/// over a Tempo peak over an anticipation), then an unknown signal (the
/// fallback), then "powered".
fn wanted(
    load: &Load,
    t: Timestamp,
    input: &PlanInput<'_>,
    schedule: Option<&Schedule>,
) -> (Option<bool>, Reason) {
    if let Some(o) = input.overrides.get(&load.name)
        && t < o.until
    {
        return (Some(o.powered), Reason::Override);
    }
    let verdicts = signals::verdicts(load, t, input);
    let cut = signals::cut_of(&verdicts);
    if let Some(schedule) = schedule {
        if schedule.running(t) {
            return (Some(true), Reason::ScheduledRun);
        }
        let idle = if schedule.more_today(t) {
            Reason::WaitingForBestHours
        } else {
            Reason::BudgetMet
        };
        return (Some(false), cut.unwrap_or(idle));
    }
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
    schedule: Option<&Schedule>,
) -> Option<Reason> {
    if window.is_zero() {
        return None;
    }
    let end = add(t, window);
    events.range((Excluded(t), Excluded(end))).find_map(|at| {
        match wanted(load, *at, input, schedule) {
            (Some(false), Reason::ShedForLevel(l) | Reason::Anticipation(l)) => {
                Some(Reason::Anticipation(l))
            }
            (Some(false), Reason::ShedForTempo(c) | Reason::TempoAnticipation(c)) => {
                Some(Reason::TempoAnticipation(c))
            }
            _ => None,
        }
    })
}

/// When a load that wants back at `t` may be restored for the restore
/// jitter: the end of the tense period before `t` plus the day's delay.
/// `None` when it is not coming back from a tense period (an override, a
/// fallback; nothing within the last day), or there is no jitter.
fn jittered_restore(
    load: &Load,
    t: Timestamp,
    events: &BTreeSet<Timestamp>,
    input: &PlanInput<'_>,
    schedule: Option<&Schedule>,
) -> Option<Timestamp> {
    if input.restore_jitter.max.is_zero() {
        return None;
    }
    let floor = sub(t, Duration::from_secs(24 * 3600));
    // Walk back over the calm stretch to the instant the tense period ended.
    for &at in events.range((Excluded(floor), Included(t))).rev() {
        let just_before = sub(at, Duration::from_nanos(1));
        match wanted(load, just_before, input, schedule) {
            (Some(false), reason) if reason.is_signal_cut() => {
                let date = at.to_zoned_datetime(PARIS.clone()).date();
                return Some(add(at, input.restore_jitter.on(date)));
            }
            (Some(true), Reason::Normal) => {}
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests;

//! Daily runtimes (`run_daily`, `run_window`): which hours a load runs in.
//!
//! For each Paris day from today to the plan's horizon, the load's windows
//! (from `now` on, for today) are cut into pieces at every instant where a
//! signal may change (forecast hours, Tempo peaks, anticipations), and the
//! pieces are taken best first until the day's budget is met:
//!
//! 1. pieces where the load's own `shed_at` / `shed_on_tempo` cut it come
//!    last, whatever else;
//! 2. then the least tense: carbon-free before green before orange before
//!    red, a Tempo peak hour counting as tense as its day's colour (blue as
//!    green, white as orange, red as red). A day the forecast does not
//!    cover in full is placed by time instead: the start of its windows;
//! 3. earlier before later among equals.
//!
//! The runs are then made to last `min_on` and the gaps between them
//! `min_off` (lengthening runs, filling gaps within a window, then trimming
//! the excess from the most tense ends), so that the plan's holds neither
//! add runtime nor lose it.
//!
//! What today already had (`delivered_today`, from the history) counts:
//! only the rest of the budget is placed, so a restart does not run a load
//! twice.

use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Unbounded};
use std::time::Duration;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

use super::{LoadState, PlanInput, add, signals, sub};
use crate::model::{DailyRun, Load, PARIS};

/// `[start, end)`.
pub(crate) type Span = (Timestamp, Timestamp);

/// Where a load's daily runtime goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// When it runs: sorted, disjoint, never touching.
    pub runs: Vec<Span>,
    /// The days (by their midnight) whose budget does not fit in their
    /// windows.
    short_days: Vec<Timestamp>,
}

impl Schedule {
    /// Whether a run covers `t`.
    pub(super) fn running(&self, t: Timestamp) -> bool {
        let after = self.runs.partition_point(|r| r.0 <= t);
        after > 0 && t < self.runs[after - 1].1
    }

    /// Whether runtime is still to come on `t`'s day: a run later that
    /// day, or a budget that did not fit (it waits for tomorrow's hours).
    pub(super) fn more_today(&self, t: Timestamp) -> bool {
        let Some((start, end)) = day_of(t) else {
            return false;
        };
        self.short_days.contains(&start) || self.runs.iter().any(|r| r.0 > t && r.0 < end)
    }
}

/// The Paris day containing `t`: its date, and its midnight and the next.
pub(crate) fn day_of(t: Timestamp) -> Option<(Timestamp, Timestamp)> {
    let date = t.to_zoned_datetime(PARIS.clone()).date();
    Some((midnight(date)?, midnight(date.tomorrow().ok()?)?))
}

fn midnight(date: Date) -> Option<Timestamp> {
    date.to_zoned_datetime(PARIS.clone())
        .ok()
        .map(|z| z.timestamp())
}

/// Places `daily` for `load` from `now` to `horizon` (see the module docs).
/// `state` is what the load is doing now.
pub(super) fn place(
    load: &Load,
    daily: &DailyRun,
    input: &PlanInput<'_>,
    events: &BTreeSet<Timestamp>,
    horizon: Timestamp,
    state: Option<LoadState>,
) -> Schedule {
    let now = input.now;
    let delivered = input
        .delivered_today
        .get(&load.name)
        .copied()
        .unwrap_or_default();
    let rules = Rules {
        min_on: load.min_on,
        min_off: load.min_off,
        now,
        // A run going on now has had part of its min_on already.
        on_for: state.filter(|s| s.powered).map(|s| match s.since {
            Some(since) => now.duration_since(since).try_into().unwrap_or_default(),
            None => Duration::MAX,
        }),
    };
    let score = |t: Timestamp, covered: bool| Score {
        shed: signals::cut_at(load, t, input).is_some(),
        tension: if covered {
            signals::tension(t, input).unwrap_or((u8::MAX, u8::MAX))
        } else {
            (0, 0)
        },
    };

    let mut schedule = Schedule::default();
    let mut date = now.to_zoned_datetime(PARIS.clone()).date();
    while let (Some(start), Some(end)) = (midnight(date), date.tomorrow().ok().and_then(midnight)) {
        if start >= horizon {
            break;
        }
        let budget = if start <= now {
            daily.budget.saturating_sub(delivered)
        } else {
            daily.budget
        };
        let spans = spans_of(daily, date, start.max(now), end);
        let pieces = pieces_of(&spans, events);
        let covered = pieces
            .iter()
            .all(|p| signals::tension(p.0, input).is_some());
        let mut ranked: Vec<(Score, Span)> =
            pieces.iter().map(|p| (score(p.0, covered), *p)).collect();
        ranked.sort_by_key(|(score, p)| (*score, p.0));
        let runs = settle(
            take_best(&ranked, budget),
            budget,
            &spans,
            events,
            &rules,
            &|t| score(t, covered),
        );
        if total(&runs) < budget {
            schedule.short_days.push(start);
        }
        schedule.runs.extend(runs);
        match date.tomorrow() {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
    schedule.runs = merged(std::mem::take(&mut schedule.runs));
    schedule
}

/// How good a time is for running: lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    /// The load's own signals cut it then.
    shed: bool,
    /// See [`signals::tension`]; `(0, 0)` throughout a day the forecast
    /// does not cover.
    tension: (u8, u8),
}

/// The minimum times a placement must respect.
struct Rules {
    min_on: Duration,
    min_off: Duration,
    now: Timestamp,
    /// Powered now, for this long.
    on_for: Option<Duration>,
}

impl Rules {
    /// The shortest `run` may be: `min_on`, less what a run going on now
    /// has already had.
    fn shortest(&self, run: Span) -> Duration {
        match self.on_for {
            Some(had) if run.0 == self.now => self.min_on.saturating_sub(had),
            _ => self.min_on,
        }
    }
}

/// The load's windows on `date`, within `[from, to)`, merged.
fn spans_of(daily: &DailyRun, date: Date, from: Timestamp, to: Timestamp) -> Vec<Span> {
    let at = |t: jiff::civil::Time| {
        date.to_datetime(t)
            .to_zoned_datetime(PARIS.clone())
            .ok()
            .map(|z| z.timestamp())
    };
    let mut spans: Vec<Span> = daily
        .windows
        .iter()
        .flat_map(|w| w.pieces())
        .filter_map(|(start, end)| {
            let start = at(start)?.max(from);
            let end = match end {
                Some(end) => at(end)?,
                None => to,
            }
            .min(to);
            (start < end).then_some((start, end))
        })
        .collect();
    spans.sort();
    merged(spans)
}

/// `spans` cut at every event within them.
fn pieces_of(spans: &[Span], events: &BTreeSet<Timestamp>) -> Vec<Span> {
    let mut pieces = Vec::new();
    for &(start, end) in spans {
        let mut from = start;
        for cut in events
            .range((Excluded(start), Excluded(end)))
            .copied()
            .chain([end])
        {
            pieces.push((from, cut));
            from = cut;
        }
    }
    pieces
}

/// The best pieces, up to `budget`. The last one taken may be a part: the
/// part next to a piece already taken, so that the run is not split.
fn take_best(ranked: &[(Score, Span)], budget: Duration) -> Vec<Span> {
    let mut left = budget;
    let mut taken: Vec<Span> = Vec::new();
    for &(_, (start, end)) in ranked {
        if left.is_zero() {
            break;
        }
        let len = length((start, end));
        if len <= left {
            taken.push((start, end));
            left -= len;
            continue;
        }
        let after_taken = taken.iter().any(|r| r.1 == start);
        let before_taken = taken.iter().any(|r| r.0 == end);
        taken.push(if before_taken && !after_taken {
            (sub(end, left), end)
        } else {
            (start, add(start, left))
        });
        left = Duration::ZERO;
    }
    taken.sort();
    merged(taken)
}

/// Makes runs last their minimum and gaps theirs, keeping the total at
/// `budget` where it can (see the module docs).
fn settle(
    runs: Vec<Span>,
    budget: Duration,
    spans: &[Span],
    events: &BTreeSet<Timestamp>,
    rules: &Rules,
    score: &dyn Fn(Timestamp) -> Score,
) -> Vec<Span> {
    let span_of = |t: Timestamp| spans.iter().find(|s| s.0 <= t && t <= s.1).copied();
    let fill_gaps = |runs: Vec<Span>| -> Vec<Span> {
        let mut out: Vec<Span> = Vec::new();
        for run in runs {
            if let Some(last) = out.last_mut()
                && length((last.1, run.0)) < rules.min_off
                && span_of(last.1).is_some_and(|s| run.0 <= s.1)
            {
                last.1 = run.1;
                continue;
            }
            out.push(run);
        }
        out
    };

    let mut runs = fill_gaps(runs);
    for run in &mut runs {
        let short = rules.shortest(*run).saturating_sub(length(*run));
        if short.is_zero() {
            continue;
        }
        let Some(span) = span_of(run.0) else { continue };
        let end = add(run.1, short).min(span.1);
        let left = short.saturating_sub(length((run.1, end)));
        run.1 = end;
        run.0 = sub(run.0, left).max(span.0);
    }
    runs.sort();
    let mut runs = fill_gaps(merged(runs));

    // Trim what is over the budget from the worst ends, a piece at a time.
    let mut excess = total(&runs).saturating_sub(budget);
    for _ in 0..10_000 {
        if excess.is_zero() {
            break;
        }
        let mut worst: Option<(Score, Timestamp, usize, bool)> = None;
        for (i, run) in runs.iter().enumerate() {
            if length(*run) <= rules.shortest(*run) {
                continue;
            }
            let end_side = (score(sub(run.1, Duration::from_nanos(1))), run.1, i, true);
            worst = worst.max(Some(end_side));
            let running_now = run.0 == rules.now && rules.on_for.is_some();
            if !running_now {
                worst = worst.max(Some((score(run.0), run.0, i, false)));
            }
        }
        let Some((_, _, i, end_side)) = worst else {
            break;
        };
        let run = &mut runs[i];
        let room = length(*run).saturating_sub(rules.shortest(*run));
        let piece = if end_side {
            let from = events
                .range((Excluded(run.0), Excluded(run.1)))
                .next_back()
                .copied()
                .unwrap_or(run.0);
            length((from, run.1))
        } else {
            let to = events
                .range((Excluded(run.0), Unbounded))
                .next()
                .copied()
                .unwrap_or(run.1)
                .min(run.1);
            length((run.0, to))
        };
        let cut = excess.min(room).min(piece);
        if end_side {
            run.1 = sub(run.1, cut);
        } else {
            run.0 = add(run.0, cut);
        }
        excess -= cut;
    }
    runs
}

/// Sorted spans with the touching and overlapping ones joined.
fn merged(spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match out.last_mut() {
            Some(last) if span.0 <= last.1 => last.1 = last.1.max(span.1),
            _ => out.push(span),
        }
    }
    out
}

fn length(span: Span) -> Duration {
    let d: SignedDuration = span.1.duration_since(span.0);
    d.try_into().unwrap_or_default()
}

fn total(runs: &[Span]) -> Duration {
    runs.iter().map(|r| length(*r)).sum()
}

/// The powered time of `intervals` (a plan's timeline) within `[from, to)`.
pub(crate) fn powered_within(
    intervals: &[super::Interval],
    from: Timestamp,
    to: Timestamp,
) -> (Duration, Vec<Span>) {
    let runs: Vec<Span> = intervals
        .iter()
        .filter(|i| i.powered)
        .map(|i| (i.start.max(from), i.end.min(to)))
        .filter(|(s, e)| s < e)
        .collect();
    let runs = merged(runs);
    (total(&runs), runs)
}

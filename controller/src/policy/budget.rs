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
//! `min_off`: the worse of two runs too close, or a run too short, is given
//! up and its time lengthens the others (see [`settle`]), so that the
//! plan's holds neither add runtime nor lose it.
//!
//! What today already had (`delivered_today`, from the history) counts:
//! only the rest of the budget is placed, so a restart does not run a load
//! twice.

use std::collections::BTreeSet;
use std::ops::Bound::Excluded;
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
        let runs = settle(take_best(&ranked, budget), &pieces, &rules, &|t| {
            score(t, covered)
        });
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
    let spans: Vec<Span> = daily
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
    merged(taken)
}

/// Makes runs last their minimum and gaps theirs, keeping the total: while
/// a run is too short, or two runs are too close, the worse of them is
/// given up and its time goes to lengthening the others, best neighbouring
/// piece first (never back into a run given up). Each round gives up one
/// run, so this ends.
fn settle(
    mut runs: Vec<Span>,
    pieces: &[Span],
    rules: &Rules,
    score: &dyn Fn(Timestamp) -> Score,
) -> Vec<Span> {
    let worst_of = |run: Span| -> Score {
        pieces
            .iter()
            .filter(|p| p.0 < run.1 && run.0 < p.1)
            .map(|p| score(p.0))
            .max()
            .unwrap_or(score(run.0))
    };
    let mut given_up: Vec<Span> = Vec::new();
    for _ in 0..=pieces.len() {
        runs = merged(runs);
        let mut offenders: Vec<usize> = (0..runs.len())
            .filter(|i| length(runs[*i]) < rules.shortest(runs[*i]))
            .collect();
        for i in 1..runs.len() {
            if length((runs[i - 1].1, runs[i].0)) < rules.min_off {
                let worse = if worst_of(runs[i - 1]) > worst_of(runs[i]) {
                    i - 1
                } else {
                    i
                };
                offenders.push(worse);
            }
        }
        let Some(victim) = offenders
            .into_iter()
            .max_by_key(|i| (worst_of(runs[*i]), runs[*i].0))
        else {
            break;
        };
        let run = runs.remove(victim);
        given_up.push(run);
        let mut free = length(run);
        while !free.is_zero() {
            let taken: Vec<Span> = runs.iter().chain(&given_up).copied().collect();
            let Some((part, before_a_run)) = best_extension(&runs, pieces, &taken, score) else {
                break;
            };
            let take = free.min(length(part));
            runs.push(if before_a_run {
                (sub(part.1, take), part.1)
            } else {
                (part.0, add(part.0, take))
            });
            runs = merged(runs);
            free -= take;
        }
    }
    runs
}

/// The best free time to add: next to a run (right before it, or right
/// after), or anywhere when there is no run left. Free: in a piece, and in
/// none of `taken`. `true` when it ends where a run starts.
fn best_extension(
    runs: &[Span],
    pieces: &[Span],
    taken: &[Span],
    score: &dyn Fn(Timestamp) -> Score,
) -> Option<(Span, bool)> {
    let free: Vec<Span> = pieces.iter().flat_map(|p| without(*p, taken)).collect();
    let candidates = free.into_iter().filter_map(|f| {
        if runs.is_empty() {
            return Some((f, false));
        }
        if runs.iter().any(|r| r.0 == f.1) {
            return Some((f, true));
        }
        runs.iter().any(|r| r.1 == f.0).then_some((f, false))
    });
    candidates.min_by_key(|(f, before)| {
        // The part next to the run is what gets taken: score that.
        let at = if *before {
            sub(f.1, Duration::from_nanos(1))
        } else {
            f.0
        };
        (score(at), f.0)
    })
}

/// `span` less every one of `taken` (sorted or not).
fn without(span: Span, taken: &[Span]) -> Vec<Span> {
    let mut parts = vec![span];
    for t in taken {
        parts = parts
            .into_iter()
            .flat_map(|p| {
                if t.1 <= p.0 || p.1 <= t.0 {
                    return vec![p];
                }
                [(p.0, t.0), (t.1, p.1)]
                    .into_iter()
                    .filter(|(a, b)| a < b)
                    .collect()
            })
            .collect();
    }
    parts
}

/// The spans, sorted, with the touching and overlapping ones joined.
fn merged(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort();
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

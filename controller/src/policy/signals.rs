//! What each signal a load sheds on says of it at a time: a tense hour
//! (Ecowatt, `shed_at`) or a Tempo peak (`shed_on_tempo`), or the
//! anticipation of either; and how tense a time is, for placing runtime.

use jiff::Timestamp;

use super::{Hour, PlanInput, Reason, TariffDay, add, hour_at};
use crate::model::{Load, SignalLevel, TempoColor};

/// The cut the load's signals ask for at `t`, the most urgent first; `None`
/// when they are clear or unknown.
pub(super) fn cut_at(load: &Load, t: Timestamp, input: &PlanInput<'_>) -> Option<Reason> {
    cut_of(&verdicts(load, t, input))
}

/// The most urgent cut among `verdicts`.
pub(super) fn cut_of(verdicts: &[Option<Verdict>; 2]) -> Option<Reason> {
    verdicts
        .iter()
        .flatten()
        .filter_map(|v| match v {
            Verdict::Cut(reason) => Some(*reason),
            _ => None,
        })
        .min_by_key(|r| cut_rank(*r))
}

/// One verdict per signal the load sheds on.
pub(super) fn verdicts(load: &Load, t: Timestamp, input: &PlanInput<'_>) -> [Option<Verdict>; 2] {
    [
        load.shed_at
            .map(|level| ecowatt_verdict(load, level, t, input.forecast)),
        load.shed_on_tempo
            .map(|color| tempo_verdict(load, color, t, input.tempo)),
    ]
}

/// How tense `t` is for the grid, worst signal first: 0 for a carbon-free
/// hour off Tempo peak hours, up to 3 for a red hour or a red day's peak;
/// then the Ecowatt level alone, to break ties. `None` when the forecast
/// does not cover `t`.
pub(super) fn tension(t: Timestamp, input: &PlanInput<'_>) -> Option<(u8, u8)> {
    let hour = hour_at(input.forecast?, t)?;
    let eco = match hour.level {
        SignalLevel::CarbonFree => 0,
        SignalLevel::Green => 1,
        SignalLevel::Orange => 2,
        SignalLevel::Red => 3,
    };
    let peak = input
        .tempo
        .iter()
        .find(|d| d.start <= t && t < d.peak_end)
        .map_or(0, |d| match d.color {
            TempoColor::Blue => 1,
            TempoColor::White => 2,
            TempoColor::Red => 3,
        });
    Some((eco.max(peak), eco))
}

/// What one signal says of a load at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
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

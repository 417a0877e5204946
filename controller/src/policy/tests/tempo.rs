//! The policy on Tempo days: cuts only in the peak hours (06:00-22:00 Paris
//! time) of days of the load's colour or dearer, and `anticipate` before
//! them; an unknown tariff day is the fallback. Examples, then properties
//! over random calendars, loads and starting states.

use super::*;
use crate::model::TempoColor;

static PARIS: jiff::tz::TimeZone = jiff::tz::get!("Europe/Paris");

/// 2026-12-07, a Monday, plus `offset` days.
pub(super) fn date(offset: i64) -> jiff::civil::Date {
    jiff::civil::date(2026, 12, 7)
        .checked_add(jiff::Span::new().days(offset))
        .expect("date")
}

pub(super) fn paris(offset: i64, hour: i8, minute: i8) -> Timestamp {
    date(offset)
        .at(hour, minute, 0, 0)
        .to_zoned_datetime(PARIS.clone())
        .expect("time")
        .timestamp()
}

pub(super) fn tariff_day(offset: i64, color: TempoColor) -> TariffDay {
    TariffDay {
        date: date(offset),
        start: paris(offset, 6, 0),
        peak_end: paris(offset, 22, 0),
        end: paris(offset + 1, 6, 0),
        color,
    }
}

fn tempo_load(name: &str, color: TempoColor) -> Load {
    let mut l = load(name, Red, 1);
    l.shed_at = None;
    l.shed_on_tempo = Some(color);
    l
}

fn tempo_case(loads: Vec<Load>, tempo: Vec<TariffDay>, now: Timestamp) -> Case {
    let mut case = Case::new(loads, Vec::new());
    case.hours = None;
    case.tempo = tempo;
    case.now = now;
    case
}

/// (start, powered, reason) of each interval.
fn timeline(plan: &Plan, name: &str) -> Vec<(Timestamp, bool, Reason)> {
    plan.load(name)
        .expect("load planned")
        .intervals
        .iter()
        .map(|i| (i.start, i.powered, i.reason))
        .collect()
}

use TempoColor::{Blue, Red as TempoRed, White};

#[test]
fn a_red_day_cuts_red_and_white_loads_in_its_peak_hours_only() {
    let case = tempo_case(
        vec![tempo_load("heater", TempoRed), tempo_load("dryer", White)],
        vec![tariff_day(0, White), tariff_day(1, TempoRed)],
        paris(0, 7, 0),
    );
    let plan = case.plan();
    assert_eq!(plan.horizon, paris(2, 6, 0));
    assert_eq!(
        timeline(&plan, "heater"),
        [
            (paris(0, 7, 0), true, Reason::Normal),
            (paris(1, 6, 0), false, Reason::ShedForTempo(TempoRed)),
            (paris(1, 22, 0), true, Reason::Normal),
        ]
    );
    assert_eq!(
        timeline(&plan, "dryer"),
        [
            (paris(0, 7, 0), false, Reason::ShedForTempo(White)),
            (paris(0, 22, 0), true, Reason::Normal),
            (paris(1, 6, 0), false, Reason::ShedForTempo(TempoRed)),
            (paris(1, 22, 0), true, Reason::Normal),
        ]
    );
}

#[test]
fn anticipation_cuts_before_the_peak_hours_begin() {
    let mut heater = tempo_load("heater", TempoRed);
    heater.anticipate = 30 * MIN;
    let case = tempo_case(
        vec![heater],
        vec![tariff_day(0, Blue), tariff_day(1, TempoRed)],
        paris(0, 21, 0),
    );
    assert_eq!(
        timeline(&case.plan(), "heater"),
        [
            (paris(0, 21, 0), true, Reason::Normal),
            (paris(1, 5, 30), false, Reason::TempoAnticipation(TempoRed)),
            (paris(1, 6, 0), false, Reason::ShedForTempo(TempoRed)),
            (paris(1, 22, 0), true, Reason::Normal),
        ]
    );
}

#[test]
fn an_unknown_tariff_day_is_the_fallback_and_ecowatt_still_applies() {
    // No calendar at all: the fallback.
    let mut heater = tempo_load("heater", TempoRed);
    heater.when_forecast_unknown = Fallback::Shed;
    let case = tempo_case(vec![heater.clone()], Vec::new(), paris(0, 12, 0));
    assert_eq!(
        timeline(&case.plan(), "heater"),
        [(paris(0, 12, 0), false, Reason::ForecastUnknown)]
    );

    // Both signals: a red Ecowatt hour cuts outside the Tempo peak, a red
    // Tempo day inside it, whatever Ecowatt says.
    let mut both = tempo_load("both", TempoRed);
    both.shed_at = Some(Orange);
    let mut case = tempo_case(
        vec![both],
        vec![tariff_day(0, TempoRed), tariff_day(1, Blue)],
        paris(0, 21, 0),
    );
    case.hours = Some(vec![
        Hour {
            start: paris(0, 21, 0),
            end: paris(0, 22, 0),
            level: Green,
        },
        Hour {
            start: paris(0, 22, 0),
            end: paris(0, 23, 0),
            level: Red,
        },
        Hour {
            start: paris(0, 23, 0),
            end: paris(1, 12, 0),
            level: Green,
        },
    ]);
    let plan = case.plan();
    assert_eq!(
        timeline(&plan, "both")[..3],
        [
            (paris(0, 21, 0), false, Reason::ShedForTempo(TempoRed)),
            (paris(0, 22, 0), false, Reason::ShedForLevel(Red)),
            (paris(0, 23, 0), true, Reason::Normal),
        ]
    );
}

prop_compose! {
    fn tempo_load_strategy(index: usize)(
        white in any::<bool>(),
        min_on in duration_strategy(),
        min_off in duration_strategy(),
        anticipate in prop_oneof![Just(Duration::ZERO), Just(30 * MIN), Just(90 * MIN)],
        fallback in prop_oneof![Just(Fallback::Keep), Just(Fallback::Shed), Just(Fallback::Restore)],
    ) -> Load {
        let mut l = tempo_load(&format!("load{index}"), if white { White } else { TempoRed });
        l.min_on = min_on;
        l.min_off = min_off;
        l.anticipate = anticipate;
        l.when_forecast_unknown = fallback;
        l
    }
}

fn color_strategy() -> impl Strategy<Value = TempoColor> {
    prop_oneof![Just(Blue), Just(White), Just(TempoRed)]
}

prop_compose! {
    fn tempo_case_strategy()(
        loads in (1usize..5).prop_flat_map(|n| (0..n).map(tempo_load_strategy).collect::<Vec<_>>()),
        colors in proptest::collection::vec(color_strategy(), 0..4),
        now_min in 0i64..(4 * 24 * 60),
        seeds in proptest::collection::vec((any::<bool>(), proptest::option::of(0i64..600)), 5),
    ) -> Case {
        let tempo = colors.iter().enumerate().map(|(i, c)| tariff_day(i as i64, *c)).collect();
        let now = paris(0, 0, 0) + SignedDuration::from_mins(now_min);
        let mut case = tempo_case(loads, tempo, now);
        for (load, (powered, since_ago)) in case.loads.iter().zip(seeds) {
            case.states.insert(load.name.clone(), LoadState {
                powered,
                since: since_ago.map(|m| now - SignedDuration::from_mins(m)),
                reason: None,
            });
        }
        case
    }
}

fn qualifying<'a>(case: &'a Case, load: &Load) -> impl Iterator<Item = &'a TariffDay> {
    let color = load.shed_on_tempo.expect("Tempo loads here");
    case.tempo.iter().filter(move |d| d.color >= color)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A Tempo cut lies within the peak hours of a day of the load's colour
    /// or dearer (and names that day's colour); an anticipation ends where
    /// such peak hours begin, at most `anticipate` before.
    #[test]
    fn tempo_cuts_only_in_and_just_before_qualifying_peak_hours(case in tempo_case_strategy()) {
        let plan = case.plan();
        for (load, lp) in case.loads.iter().zip(&plan.loads) {
            // Anticipation: within `anticipate` plus `min_on` (a
            // restore would be held into the peak hours).
            let anticipate = SignedDuration::try_from(load.anticipate + load.min_on).expect("fits");
            for i in &lp.intervals {
                match i.reason {
                    Reason::ShedForTempo(color) => {
                        prop_assert!(!i.powered);
                        prop_assert!(
                            qualifying(&case, load).any(|d| d.color == color && d.start <= i.start && i.end <= d.peak_end),
                            "{} cut outside qualifying peak hours: {:?}", load.name, i
                        );
                    }
                    Reason::TempoAnticipation(color) => {
                        prop_assert!(!i.powered);
                        prop_assert!(
                            qualifying(&case, load).any(|d| d.color == color && i.end <= d.start && d.start - anticipate <= i.start),
                            "{} anticipated nothing: {:?}", load.name, i
                        );
                    }
                    Reason::ShedForLevel(_) | Reason::Anticipation(_) => {
                        prop_assert!(false, "an Ecowatt reason without Ecowatt: {:?}", i);
                    }
                    Reason::ForecastUnknown => {
                        prop_assert!(
                            !case.tempo.iter().any(|d| d.start <= i.start && i.start < d.end),
                            "{} fell back within a known tariff day: {:?}", load.name, i
                        );
                    }
                    Reason::Normal => prop_assert!(i.powered),
                    _ => {}
                }
            }
        }
    }

    /// When the peak hours of a qualifying day begin (or now, within them),
    /// the load is cut, unless its minimum on time holds it.
    #[test]
    fn qualifying_peak_hours_cut(case in tempo_case_strategy()) {
        let plan = case.plan();
        for (load, lp) in case.loads.iter().zip(&plan.loads) {
            for d in qualifying(&case, load).filter(|d| d.peak_end > case.now) {
                let t = d.start.max(case.now);
                let i = lp.at(t).expect("within the plan");
                prop_assert!(
                    !i.powered || i.reason == Reason::MinOnHold,
                    "{} at {}: {:?}", load.name, t, i
                );
            }
        }
    }
}

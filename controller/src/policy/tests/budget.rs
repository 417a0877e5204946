//! Daily runtimes (`run_daily`, `run_window`; issue 15, point 2): where the
//! hours go, what counts, and the reasons. Examples, then properties over
//! random forecasts, Tempo days, windows and minimum times.

use super::tempo::{paris, tariff_day};
use super::*;
use crate::model::{DailyRun, RunWindow, TempoColor};

/// A load that only runs on its budget.
fn budgeted(name: &str, budget: Duration, windows: &[&str]) -> Load {
    let mut l = load(name, Red, 1);
    l.shed_at = None;
    l.run_daily = Some(DailyRun {
        budget,
        windows: if windows.is_empty() {
            vec![RunWindow::ALL_DAY]
        } else {
            windows.iter().map(|w| w.parse().expect("window")).collect()
        },
    });
    l
}

/// Hours from Paris midnight of day 0, one per level.
fn day_hours(levels: &[SignalLevel]) -> Vec<Hour> {
    levels
        .iter()
        .enumerate()
        .map(|(i, level)| Hour {
            start: paris(0, 0, 0) + SignedDuration::from_hours(i as i64),
            end: paris(0, 0, 0) + SignedDuration::from_hours(i as i64 + 1),
            level: *level,
        })
        .collect()
}

/// (hour from Paris midnight, powered, reason) of each interval.
fn by_hour(plan: &Plan, name: &str) -> Vec<(i64, bool, Reason)> {
    plan.load(name)
        .expect("load planned")
        .intervals
        .iter()
        .map(|i| {
            let mins = i.start.duration_since(paris(0, 0, 0)).as_mins();
            (mins / 60, i.powered, i.reason)
        })
        .collect()
}

/// 24 green hours with carbon-free ones at `clean`.
fn green_day_with_clean(clean: &[usize]) -> Vec<SignalLevel> {
    (0..24)
        .map(|h| {
            if clean.contains(&h) {
                CarbonFree
            } else {
                Green
            }
        })
        .collect()
}

fn case_at_midnight(loads: Vec<Load>, levels: &[SignalLevel]) -> Case {
    let mut case = Case::new(loads, day_hours(levels));
    case.now = paris(0, 0, 0);
    case
}

#[test]
fn the_budget_goes_to_the_carbon_free_hours() {
    let case = case_at_midnight(
        vec![budgeted("pump", 3 * HOUR, &[])],
        &green_day_with_clean(&[13, 14, 15]),
    );
    let plan = case.plan();
    assert_eq!(
        by_hour(&plan, "pump"),
        [
            (0, false, Reason::WaitingForBestHours),
            (13, true, Reason::ScheduledRun),
            (16, false, Reason::BudgetMet),
        ]
    );
    let budget = plan
        .load("pump")
        .and_then(|l| l.budget.clone())
        .expect("budget");
    assert_eq!(budget.planned, 3 * HOUR);
    assert_eq!(budget.done, Duration::ZERO);
    assert_eq!(budget.runs, [(paris(0, 13, 0), paris(0, 16, 0))]);
}

#[test]
fn runtime_already_delivered_today_counts() {
    let mut case = case_at_midnight(
        vec![budgeted("pump", 3 * HOUR, &[])],
        &green_day_with_clean(&[13, 14, 15]),
    );
    case.now = paris(0, 9, 0);
    case.delivered.insert("pump".to_owned(), HOUR);
    let plan = case.plan();
    let budget = plan
        .load("pump")
        .and_then(|l| l.budget.clone())
        .expect("budget");
    assert_eq!(budget.runs, [(paris(0, 13, 0), paris(0, 15, 0))]);
    assert_eq!(budget.done, HOUR);

    // All of it: nothing more today.
    case.delivered.insert("pump".to_owned(), 3 * HOUR);
    assert_eq!(
        by_hour(&case.plan(), "pump"),
        [(9, false, Reason::BudgetMet)]
    );
}

#[test]
fn tense_hours_and_tempo_peaks_are_used_last_and_least_tense_first() {
    // Only orange and red hours in the window 18:00-22:00, and a red
    // Tempo day's peak up to 22:00: the orange ones.
    let mut levels = vec![Green; 24];
    levels[18] = Red;
    levels[19] = Orange;
    levels[20] = Red;
    levels[21] = Orange;
    let mut case = case_at_midnight(vec![budgeted("ev", 2 * HOUR, &["18:00-22:00"])], &levels);
    case.tempo = vec![tariff_day(0, TempoColor::Red)];
    let runs = case
        .plan()
        .load("ev")
        .and_then(|l| l.budget.clone())
        .expect("budget")
        .runs;
    assert_eq!(
        runs,
        [
            (paris(0, 19, 0), paris(0, 20, 0)),
            (paris(0, 21, 0), paris(0, 22, 0))
        ]
    );
}

#[test]
fn a_shed_hour_is_used_only_when_nothing_else_fits() {
    // shed_at orange: the red and orange hours of the window come last,
    // even after green hours of a white Tempo peak.
    let mut heater = budgeted("heater", 3 * HOUR, &["04:00-09:00"]);
    heater.shed_at = Some(Orange);
    let mut levels = vec![Green; 24];
    levels[4] = Orange;
    levels[5] = CarbonFree;
    let mut case = case_at_midnight(vec![heater], &levels);
    case.tempo = vec![tariff_day(0, TempoColor::White)];
    let plan = case.plan();
    let runs = plan
        .load("heater")
        .and_then(|l| l.budget.clone())
        .expect("budget")
        .runs;
    // 05:00 carbon-free, then 06:00-08:00 (white peak, green) before the
    // orange hour at 04:00.
    assert_eq!(runs, [(paris(0, 5, 0), paris(0, 8, 0))]);
    // Outside its runs, an orange hour says why it is cut.
    assert_eq!(
        plan.load("heater")
            .and_then(|l| l.at(paris(0, 4, 30)))
            .map(|i| i.reason),
        Some(Reason::ShedForLevel(Orange))
    );
}

#[test]
fn without_a_forecast_the_runtime_goes_to_the_start_of_the_windows() {
    let mut case = Case::new(
        vec![budgeted("pump", 3 * HOUR, &["22:00-06:00", "12:00-14:00"])],
        Vec::new(),
    );
    case.hours = None;
    case.now = paris(0, 0, 0);
    case.horizon = 24 * HOUR;
    let plan = case.plan();
    let budget = plan
        .load("pump")
        .and_then(|l| l.budget.clone())
        .expect("budget");
    assert_eq!(budget.runs, [(paris(0, 0, 0), paris(0, 3, 0))]);
}

#[test]
fn runs_last_min_on_and_gaps_min_off() {
    // Three isolated carbon-free hours, min_on 2h: one run of 3h around
    // the best of them rather than three runs of an hour.
    let mut pump = budgeted("pump", 3 * HOUR, &[]);
    pump.min_on = 2 * HOUR;
    pump.min_off = 2 * HOUR;
    let case = case_at_midnight(vec![pump], &green_day_with_clean(&[3, 10, 20]));
    let plan = case.plan();
    let lp = plan.load("pump").expect("planned");
    let budget = lp.budget.clone().expect("budget");
    assert_eq!(budget.planned, 3 * HOUR, "{:?}", lp.intervals);
    for run in &budget.runs {
        assert!(
            run.1.duration_since(run.0) >= SignedDuration::from_hours(2),
            "{budget:?}"
        );
    }
    for w in budget.runs.windows(2) {
        assert!(
            w[1].0.duration_since(w[0].1) >= SignedDuration::from_hours(2),
            "{budget:?}"
        );
    }
    assert!(
        lp.intervals
            .iter()
            .all(|i| i.reason != Reason::MinOnHold && i.reason != Reason::MinOffHold)
    );
}

#[test]
fn an_override_wins_over_the_schedule() {
    let mut case = case_at_midnight(
        vec![budgeted("pump", 3 * HOUR, &[])],
        &green_day_with_clean(&[13, 14, 15]),
    );
    case.overrides.insert(
        "pump".to_owned(),
        Override {
            powered: false,
            until: paris(0, 14, 0),
            force: false,
        },
    );
    let plan = case.plan();
    assert_eq!(
        plan.load("pump")
            .and_then(|l| l.at(paris(0, 13, 30)))
            .map(|i| (i.powered, i.reason)),
        Some((false, Reason::Override))
    );
}

/// The tension of an hour for a load, as the issue orders it: its own
/// sheds last, then the grid's level or the Tempo peak, whichever is worse.
fn tension_of(load: &Load, case: &Case, t: Timestamp) -> (bool, u8) {
    let level = known_hour(case, t).map(|h| h.level).expect("covered");
    let peak = case.tempo.iter().find(|d| d.start <= t && t < d.peak_end);
    let shed = load.shed_at.is_some_and(|s| level >= s)
        || load
            .shed_on_tempo
            .zip(peak)
            .is_some_and(|(c, d)| d.color >= c);
    let eco = level as u8;
    let tempo = peak.map_or(0, |d| match d.color {
        TempoColor::Blue => 1,
        TempoColor::White => 2,
        TempoColor::Red => 3,
    });
    (shed, eco.max(tempo))
}

fn color_strategy() -> impl Strategy<Value = TempoColor> {
    prop_oneof![
        6 => Just(TempoColor::Blue),
        2 => Just(TempoColor::White),
        1 => Just(TempoColor::Red),
    ]
}

prop_compose! {
    /// Two whole Paris days of forecast from midnight, now at midnight,
    /// one budgeted load with whole-hour windows and budget, and minimum
    /// times up to an hour.
    fn budget_case()(
        levels in proptest::collection::vec(prop_oneof![
            2 => Just(CarbonFree), 5 => Just(Green), 2 => Just(Orange), 1 => Just(Red)
        ], 48),
        colors in proptest::option::of(proptest::collection::vec(color_strategy(), 2)),
        windows in proptest::option::of(proptest::collection::vec((0i8..24, 1i8..14), 1..3)),
        budget_h in 1u64..14,
        min_on in prop_oneof![Just(0u64), Just(30), Just(60)],
        min_off in prop_oneof![Just(0u64), Just(30), Just(60)],
        shed_at in proptest::option::of(prop_oneof![Just(Orange), Just(Red)]),
        shed_on_tempo in proptest::option::of(prop_oneof![Just(TempoColor::White), Just(TempoColor::Red)]),
    ) -> Case {
        let windows: Vec<String> = windows
            .unwrap_or_default()
            .iter()
            .map(|(start, len)| format!("{:02}:00-{:02}:00", start, (start + len) % 24))
            .collect();
        let windows: Vec<&str> = windows.iter().map(String::as_str).collect();
        let mut pump = budgeted("pump", Duration::ZERO, &windows);
        // The budget fits the windows: whole hours a day they cover.
        let mut covered = [false; 24];
        for w in &pump.run_daily.as_ref().expect("set").windows {
            let hours = w.nominal_length().as_secs() / 3600;
            for h in 0..hours {
                covered[(w.start.hour() as usize + h as usize) % 24] = true;
            }
        }
        let room = covered.iter().filter(|c| **c).count() as u64;
        if let Some(daily) = pump.run_daily.as_mut() {
            daily.budget = Duration::from_secs(3600 * budget_h.min(room));
        }
        pump.min_on = Duration::from_secs(60 * min_on);
        pump.min_off = Duration::from_secs(60 * min_off);
        pump.shed_at = shed_at;
        pump.shed_on_tempo = shed_on_tempo;
        let mut case = case_at_midnight(vec![pump], &levels);
        case.tempo = colors
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, c)| tariff_day(i as i64, c))
            .collect();
        case
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// On a day the forecast covers, the load is powered for its budget.
    #[test]
    fn powered_time_is_the_budget(case in budget_case()) {
        let plan = case.plan();
        let load = &case.loads[0];
        let lp = plan.load(&load.name).expect("planned");
        let budget = load.run_daily.as_ref().expect("set").budget;
        for day in 0..2 {
            let (from, to) = (paris(day, 0, 0), paris(day + 1, 0, 0));
            let (powered, _) = crate::policy::budget::powered_within(&lp.intervals, from, to);
            prop_assert_eq!(powered, budget, "day {}: {:?}", day, lp.intervals);
        }
    }

    /// Every powered hour is at most as tense as every unused hour of the
    /// windows.
    #[test]
    fn powered_hours_are_the_least_tense(case in budget_case()) {
        let plan = case.plan();
        let load = &case.loads[0];
        let lp = plan.load(&load.name).expect("planned");
        let windows = &load.run_daily.as_ref().expect("set").windows;
        for day in 0..2i64 {
            let mut powered = Vec::new();
            let mut unused = Vec::new();
            for h in 0..24i8 {
                let t = paris(day, h, 0);
                let clock = jiff::civil::time(h, 0, 0, 0);
                let in_window = windows.iter().any(|w| {
                    w.pieces().iter().any(|(s, e)| *s <= clock && e.is_none_or(|e| clock < e))
                });
                if !in_window {
                    continue;
                }
                let i = lp.at(t).expect("in plan");
                let tension = tension_of(load, &case, t);
                if i.powered { powered.push((h, tension)) } else { unused.push((h, tension)) }
            }
            for (ph, p) in &powered {
                for (uh, u) in &unused {
                    prop_assert!(p <= u, "day {}: {}:00 powered at {:?}, {}:00 unused at {:?}: {:?}", day, ph, p, uh, u, lp.intervals);
                }
            }
        }
    }
}

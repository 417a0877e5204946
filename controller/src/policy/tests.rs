//! The policy's rules, as examples and as properties over random forecasts,
//! load sets, overrides and starting states.

use super::*;
use std::collections::HashMap;

use jiff::SignedDuration;

use crate::model::{RelayAddress, SignalLevel, Wiring};
use proptest::prelude::*;

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> Timestamp {
    "2026-12-08T00:00:00Z".parse().expect("ts")
}

fn at(minutes: i64) -> Timestamp {
    t0() + SignedDuration::from_mins(minutes)
}

fn load(name: &str, shed_at: SignalLevel, priority: i32) -> Load {
    Load {
        name: name.to_owned(),
        relay: RelayAddress {
            relay_service: "box".to_owned(),
            channel: 0,
        },
        wiring: Wiring::NormallyOpen,
        shed_at: Some(shed_at),
        shed_on_tempo: None,
        priority,
        min_on: Duration::ZERO,
        min_off: Duration::ZERO,
        anticipate: Duration::ZERO,
        when_forecast_unknown: Fallback::Keep,
        when_controller_lost: Fallback::Restore,
        max_off: None,
        run_daily: None,
    }
}

/// Hours from t0, one per level.
fn hours(levels: &[SignalLevel]) -> Vec<Hour> {
    levels
        .iter()
        .enumerate()
        .map(|(i, level)| Hour {
            start: at(60 * i as i64),
            end: at(60 * (i as i64 + 1)),
            level: *level,
        })
        .collect()
}

#[derive(Debug)]
struct Case {
    now: Timestamp,
    loads: Vec<Load>,
    hours: Option<Vec<Hour>>,
    overrides: HashMap<String, Override>,
    states: HashMap<String, LoadState>,
    last_restore_at: Option<Timestamp>,
    stagger: Duration,
    tempo: Vec<TariffDay>,
    jitter: RestoreJitter,
    delivered: HashMap<String, Duration>,
    /// How far to plan without a forecast.
    horizon: Duration,
    /// When the controller started watching; `None`: now.
    watching_since: Option<Timestamp>,
    /// When the forecast passes its max age.
    expires: Option<Timestamp>,
}

impl Case {
    fn new(loads: Vec<Load>, hours: Vec<Hour>) -> Self {
        Self {
            now: t0(),
            loads,
            hours: Some(hours),
            overrides: HashMap::new(),
            states: HashMap::new(),
            last_restore_at: None,
            stagger: Duration::ZERO,
            tempo: Vec::new(),
            jitter: RestoreJitter::default(),
            delivered: HashMap::new(),
            horizon: HOUR,
            watching_since: None,
            expires: None,
        }
    }

    fn plan(&self) -> Plan {
        plan(&PlanInput {
            now: self.now,
            loads: &self.loads,
            forecast: self.hours.as_deref(),
            forecast_expires: self.expires,
            tempo: &self.tempo,
            overrides: &self.overrides,
            states: &self.states,
            last_restore_at: self.last_restore_at,
            restore_stagger: self.stagger,
            restore_jitter: self.jitter,
            delivered_today: &self.delivered,
            watching_since: self.watching_since.unwrap_or(self.now),
            default_horizon: self.horizon,
        })
    }
}

/// (start minute, powered, reason) of each interval.
fn summary(plan: &Plan, name: &str) -> Vec<(i64, bool, Reason)> {
    plan.load(name)
        .expect("load planned")
        .intervals
        .iter()
        .map(|i| (i.start.duration_since(t0()).as_mins(), i.powered, i.reason))
        .collect()
}

use SignalLevel::{CarbonFree, Green, Orange, Red};

#[test]
fn an_orange_hour_cuts_orange_loads_and_a_red_hour_cuts_both() {
    let case = Case::new(
        vec![load("heater", Orange, 1), load("ev", Red, 2)],
        hours(&[Green, Orange, Red, CarbonFree]),
    );
    let plan = case.plan();
    assert_eq!(plan.horizon, at(240));
    assert_eq!(
        summary(&plan, "heater"),
        [
            (0, true, Reason::Normal),
            (60, false, Reason::ShedForLevel(Orange)),
            (120, false, Reason::ShedForLevel(Red)),
            (180, true, Reason::Normal),
        ]
    );
    assert_eq!(
        summary(&plan, "ev"),
        [
            (0, true, Reason::Normal),
            (120, false, Reason::ShedForLevel(Red)),
            (180, true, Reason::Normal),
        ]
    );
}

#[test]
fn anticipation_cuts_ahead_of_the_tense_hour() {
    let mut heater = load("heater", Orange, 1);
    heater.anticipate = 20 * MIN;
    let plan = Case::new(vec![heater], hours(&[Green, Green, Orange])).plan();
    assert_eq!(
        summary(&plan, "heater"),
        [
            (0, true, Reason::Normal),
            (100, false, Reason::Anticipation(Orange)),
            (120, false, Reason::ShedForLevel(Orange)),
        ]
    );
}

#[test]
fn minimum_on_and_off_times_hold_the_state() {
    let mut heater = load("heater", Orange, 1);
    heater.min_on = 30 * MIN;
    heater.min_off = 90 * MIN;
    let mut case = Case::new(vec![heater], hours(&[Orange, Green, Green, Green]));
    // Switched on 10 minutes ago: must stay on 20 more.
    case.states.insert(
        "heater".to_owned(),
        LoadState {
            powered: true,
            since: Some(at(-10)),
            reason: None,
        },
    );
    assert_eq!(
        summary(&case.plan(), "heater"),
        [
            (0, true, Reason::MinOnHold),
            (20, false, Reason::ShedForLevel(Orange)),
            (60, false, Reason::MinOffHold),
            (110, true, Reason::Normal),
        ]
    );
}

#[test]
fn an_override_wins_until_it_expires() {
    let mut heater = load("heater", Orange, 1);
    heater.min_on = 120 * MIN;
    let mut case = Case::new(vec![heater], hours(&[Red, Red, Green]));
    case.states.insert(
        "heater".to_owned(),
        LoadState {
            powered: false,
            since: Some(at(-1)),
            reason: None,
        },
    );
    case.overrides.insert(
        "heater".to_owned(),
        Override {
            powered: true,
            until: at(90),
            force: false,
        },
    );
    assert_eq!(
        summary(&case.plan(), "heater"),
        [
            (0, true, Reason::Override),
            // Back under the policy, but on since 0: min_on holds it.
            (90, true, Reason::MinOnHold),
            (120, true, Reason::Normal),
        ]
    );
}

#[test]
fn without_a_forecast_each_load_follows_its_fallback() {
    let mut keep = load("keep", Orange, 1);
    keep.when_forecast_unknown = Fallback::Keep;
    let mut shed = load("shed", Orange, 1);
    shed.when_forecast_unknown = Fallback::Shed;
    let mut restore = load("restore", Orange, 1);
    restore.when_forecast_unknown = Fallback::Restore;
    let mut case = Case::new(vec![keep, shed, restore], Vec::new());
    case.hours = None;
    for name in ["keep", "shed", "restore"] {
        case.states.insert(
            name.to_owned(),
            LoadState {
                powered: name != "restore",
                since: None,
                reason: None,
            },
        );
    }
    let plan = case.plan();
    assert_eq!(plan.horizon, at(60));
    assert_eq!(summary(&plan, "keep"), [(0, true, Reason::ForecastUnknown)]);
    assert_eq!(
        summary(&plan, "shed"),
        [(0, false, Reason::ForecastUnknown)]
    );
    assert_eq!(
        summary(&plan, "restore"),
        [(0, true, Reason::ForecastUnknown)]
    );
}

#[test]
fn the_next_change_is_the_next_different_state() {
    let plan = Case::new(
        vec![load("heater", Orange, 1)],
        hours(&[Green, Orange, Orange, Green]),
    )
    .plan();
    let heater = plan.load("heater").expect("planned");
    let next = heater.next_change(at(10)).expect("a change");
    assert_eq!((next.start, next.powered), (at(60), false));
    let next = heater.next_change(at(70)).expect("a change");
    assert_eq!((next.start, next.powered), (at(180), true));
    assert!(heater.next_change(at(200)).is_none());
}

#[test]
fn past_the_forecast_s_expiry_the_plan_follows_the_fallback() {
    // Red for four hours, but the forecast expires at 01:30: a `restore`
    // load is cut at once and comes back at the expiry, not after the red
    // hours.
    let mut heater = load("heater", Orange, 1);
    heater.when_forecast_unknown = Fallback::Restore;
    let all = hours(&[Red, Red, Red, Red]);
    let cut = hours_until(&all, at(90));
    assert_eq!(cut.len(), 2);
    assert_eq!((cut[1].start, cut[1].end), (at(60), at(90)));
    assert!(hours_until(&all, at(0)).is_empty());
    assert_eq!(hours_until(&all, at(1000)), all);

    let mut case = Case::new(vec![heater], all);
    case.expires = Some(at(90));
    let plan = case.plan();
    assert_eq!(
        plan.horizon,
        at(240),
        "the plan still reaches the forecast's end"
    );
    let next = plan
        .load("heater")
        .expect("planned")
        .next_change(at(10))
        .expect("a change");
    assert_eq!(
        (next.start, next.powered),
        (at(90), true),
        "{:?}",
        summary(&plan, "heater")
    );
}

#[test]
fn an_override_waits_for_the_minimum_time_unless_forced() {
    // Cut 10 minutes ago by the controller, min_off 30 min: an override
    // to power it acts at 20, not now; forced, it acts now.
    let mut pump = load("heat-pump", Orange, 1);
    pump.min_off = 30 * MIN;
    let mut case = Case::new(vec![pump], hours(&[Green, Green]));
    case.states.insert(
        "heat-pump".to_owned(),
        LoadState {
            powered: false,
            since: Some(at(-10)),
            reason: Some(Reason::ShedForLevel(Red)),
        },
    );
    let over = |force| Override {
        powered: true,
        until: at(100),
        force,
    };
    case.overrides.insert("heat-pump".to_owned(), over(false));
    let plan = case.plan();
    assert_eq!(
        summary(&plan, "heat-pump"),
        [
            (0, false, Reason::MinOffHold),
            (20, true, Reason::Override),
            (100, true, Reason::Normal)
        ]
    );
    let next = plan
        .load("heat-pump")
        .expect("planned")
        .next_change(at(0))
        .expect("a change");
    assert_eq!(
        (next.start, next.powered, next.reason),
        (at(20), true, Reason::Override)
    );

    case.overrides.insert("heat-pump".to_owned(), over(true));
    assert_eq!(
        summary(&case.plan(), "heat-pump")[0],
        (0, true, Reason::Override)
    );
}

// ---- properties ----

fn level_strategy() -> impl Strategy<Value = Option<SignalLevel>> {
    prop_oneof![
        3 => Just(Some(Green)),
        2 => Just(Some(CarbonFree)),
        2 => Just(Some(Orange)),
        2 => Just(Some(Red)),
        1 => Just(None),
    ]
}

fn duration_strategy() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(5 * MIN),
        Just(45 * MIN),
        Just(2 * HOUR)
    ]
}

prop_compose! {
    fn load_strategy(index: usize)(
        red in any::<bool>(),
        priority in -3i32..10,
        min_on in duration_strategy(),
        min_off in duration_strategy(),
        anticipate in prop_oneof![Just(Duration::ZERO), Just(30 * MIN), Just(90 * MIN)],
        fallback in prop_oneof![Just(Fallback::Keep), Just(Fallback::Shed), Just(Fallback::Restore)],
    ) -> Load {
        let mut l = load(&format!("load{index}"), if red { Red } else { Orange }, priority);
        l.min_on = min_on;
        l.min_off = min_off;
        l.anticipate = anticipate;
        l.when_forecast_unknown = fallback;
        l
    }
}

fn loads_strategy() -> impl Strategy<Value = Vec<Load>> {
    (1usize..6).prop_flat_map(|n| (0..n).map(load_strategy).collect::<Vec<_>>())
}

prop_compose! {
    fn case_strategy()(
        loads in loads_strategy(),
        levels in proptest::collection::vec(level_strategy(), 0..30),
        usable in prop::bool::weighted(0.9),
        now_min in 0i64..240,
        stagger in prop_oneof![Just(Duration::ZERO), Just(30 * MIN / 60), Just(10 * MIN)],
        last_restore_ago in proptest::option::of(0i64..30),
        seeds in proptest::collection::vec((any::<bool>(), proptest::option::of(0i64..200), proptest::option::of((any::<bool>(), 1i64..600))), 6),
    ) -> Case {
        let hours: Vec<Hour> = levels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.map(|level| Hour {
                start: at(60 * i as i64),
                end: at(60 * (i as i64 + 1)),
                level,
            }))
            .collect();
        let now = at(now_min);
        let mut states = HashMap::new();
        let mut overrides = HashMap::new();
        for (load, (powered, since_ago, over)) in loads.iter().zip(seeds) {
            states.insert(load.name.clone(), LoadState {
                powered,
                since: since_ago.map(|m| now - SignedDuration::from_mins(m)),
                reason: None,
            });
            if let Some((powered, minutes)) = over {
                overrides.insert(load.name.clone(), Override {
                    powered,
                    until: now + SignedDuration::from_mins(minutes),
                    force: false,
                });
            }
        }
        Case {
            now,
            loads,
            hours: usable.then_some(hours),
            overrides,
            states,
            last_restore_at: last_restore_ago.map(|m| now - SignedDuration::from_mins(m)),
            stagger,
            tempo: Vec::new(),
            jitter: RestoreJitter::default(),
            delivered: HashMap::new(),
            horizon: HOUR,
            watching_since: None,
            expires: None,
        }
    }
}

fn override_active(case: &Case, name: &str, t: Timestamp) -> Option<bool> {
    case.overrides
        .get(name)
        .filter(|o| t < o.until)
        .map(|o| o.powered)
}

fn known_hour(case: &Case, t: Timestamp) -> Option<Hour> {
    case.hours.as_deref().and_then(|h| hour_at(h, t)).copied()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Each load's intervals are contiguous, non-empty and cover now to the
    /// horizon, and neighbours differ.
    #[test]
    fn intervals_are_contiguous_and_cover_the_horizon(case in case_strategy()) {
        let plan = case.plan();
        prop_assert!(plan.horizon > case.now);
        prop_assert_eq!(plan.loads.len(), case.loads.len());
        for lp in &plan.loads {
            prop_assert!(!lp.intervals.is_empty());
            prop_assert_eq!(lp.intervals[0].start, case.now);
            prop_assert_eq!(lp.intervals.last().map(|i| i.end), Some(plan.horizon));
            for i in &lp.intervals {
                prop_assert!(i.start < i.end, "{:?}", i);
            }
            for w in lp.intervals.windows(2) {
                prop_assert_eq!(w[0].end, w[1].start);
                prop_assert!((w[0].powered, w[0].reason) != (w[1].powered, w[1].reason));
            }
        }
    }

    /// Every interval's reason is true of its start, and its state follows
    /// from the reason.
    #[test]
    fn reasons_are_true(case in case_strategy()) {
        let plan = case.plan();
        for (load, lp) in case.loads.iter().zip(&plan.loads) {
            let shed_at = load.shed_at.expect("Ecowatt loads here");
            for i in &lp.intervals {
                let over = override_active(&case, &load.name, i.start);
                let hour = known_hour(&case, i.start);
                match i.reason {
                    Reason::Override => prop_assert_eq!(over, Some(i.powered)),
                    Reason::ShedForLevel(level) => {
                        prop_assert!(!i.powered);
                        prop_assert!(over.is_none());
                        prop_assert!(level >= shed_at);
                        prop_assert_eq!(hour.map(|h| h.level), Some(level));
                    }
                    Reason::Anticipation(level) => {
                        // Ahead of a tense hour: within `anticipate`, plus
                        // `min_on` (a restore would be held into the cut).
                        prop_assert!(!i.powered);
                        prop_assert!(level >= shed_at);
                        prop_assert!(hour.is_none_or(|h| h.level < shed_at));
                        let ahead = SignedDuration::try_from(load.anticipate + load.min_on).expect("fits");
                        let tense_ahead = case.hours.as_deref().unwrap_or(&[]).iter().any(|h| {
                            h.level == level && h.start > i.start && h.start <= i.start + ahead
                        });
                        prop_assert!(tense_ahead, "{} anticipates nothing: {:?}", load.name, i);
                    }
                    Reason::Normal => {
                        prop_assert!(i.powered);
                        prop_assert!(over.is_none());
                        // Carbon-free and green hours never shed; a powered
                        // load is in such an hour.
                        prop_assert!(hour.is_some_and(|h| h.level < shed_at));
                    }
                    Reason::ForecastUnknown => {
                        prop_assert!(over.is_none());
                        prop_assert!(hour.is_none());
                        match load.when_forecast_unknown {
                            Fallback::Shed => prop_assert!(!i.powered),
                            Fallback::Restore => prop_assert!(i.powered),
                            Fallback::Keep => {}
                        }
                    }
                    Reason::MinOnHold => prop_assert!(i.powered),
                    Reason::MinOffHold | Reason::RestoreStagger => prop_assert!(!i.powered),
                    Reason::ShedForTempo(_) | Reason::TempoAnticipation(_) => {
                        prop_assert!(false, "no Tempo here: {:?}", i);
                    }
                    Reason::ComfortLimit
                    | Reason::ScheduledRun
                    | Reason::WaitingForBestHours
                    | Reason::BudgetMet
                    | Reason::RestoreJitter => {
                        prop_assert!(false, "no max_off, run_daily or jitter here: {:?}", i);
                    }
                }
            }
        }
    }

    /// At the start of every tense hour (or now, within one), a load without
    /// an override is cut, unless its minimum on time holds it.
    #[test]
    fn tense_hours_cut(case in case_strategy()) {
        let plan = case.plan();
        let Some(hours) = case.hours.as_deref() else { return Ok(()) };
        for (load, lp) in case.loads.iter().zip(&plan.loads) {
            let shed_at = load.shed_at.expect("Ecowatt loads here");
            for h in hours.iter().filter(|h| h.level >= shed_at && h.end > case.now) {
                let t = h.start.max(case.now);
                if override_active(&case, &load.name, t).is_some() {
                    continue;
                }
                let i = lp.at(t).expect("within the plan");
                prop_assert!(!i.powered || i.reason == Reason::MinOnHold, "{} at {}: {:?}", load.name, t, i);
            }
        }
    }

    /// A load switched by the policy stays in its state at least its
    /// minimum time (overrides excepted).
    #[test]
    fn minimum_times_hold(case in case_strategy()) {
        let plan = case.plan();
        for (load, lp) in case.loads.iter().zip(&plan.loads) {
            let start = case.states.get(&load.name).copied();
            let mut run_powered = start.map(|s| s.powered).unwrap_or(lp.intervals[0].powered);
            let mut run_since = start.and_then(|s| s.since);
            let mut previous_reason: Option<Reason> = None;
            for i in &lp.intervals {
                if i.powered != run_powered {
                    let by_override = i.reason == Reason::Override;
                    if let (false, Some(since)) = (by_override, run_since) {
                        let min = if run_powered { load.min_on } else { load.min_off };
                        let lasted = i.start.duration_since(since);
                        prop_assert!(
                            lasted >= SignedDuration::try_from(min).expect("fits"),
                            "{} switched after {:?} (min {:?}), before: {:?}", load.name, lasted, min, previous_reason
                        );
                    }
                    run_powered = i.powered;
                    run_since = Some(i.start);
                }
                previous_reason = Some(i.reason);
            }
        }
    }

    /// Restores (not by override) are `restore_stagger` apart, and a load
    /// waiting for its turn is never more important than one restored then.
    #[test]
    fn restores_are_staggered_by_priority(case in case_strategy()) {
        let plan = case.plan();
        let mut restores: Vec<(Timestamp, i32)> = Vec::new();
        for (load, lp) in case.loads.iter().zip(&plan.loads) {
            let mut powered = case.states.get(&load.name).map(|s| s.powered).unwrap_or(lp.intervals[0].powered);
            for i in &lp.intervals {
                if i.powered && !powered && i.reason != Reason::Override {
                    restores.push((i.start, load.priority));
                }
                powered = i.powered;
            }
        }
        restores.sort();
        if !case.stagger.is_zero() {
            let stagger = SignedDuration::try_from(case.stagger).expect("fits");
            if let (Some(last), Some(first)) = (case.last_restore_at, restores.first()) {
                prop_assert!(first.0.duration_since(last) >= stagger);
            }
            for w in restores.windows(2) {
                prop_assert!(w[1].0.duration_since(w[0].0) >= stagger, "{:?}", restores);
            }
        }
        for (t, priority) in &restores {
            for (load, lp) in case.loads.iter().zip(&plan.loads) {
                if lp.at(*t).is_some_and(|i| i.reason == Reason::RestoreStagger) {
                    prop_assert!(load.priority <= *priority, "{} waits at {} behind a less important load", load.name, t);
                }
            }
        }
    }
}

mod budget;
mod comfort;
mod restore;
mod tempo;

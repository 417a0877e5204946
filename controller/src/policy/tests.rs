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
    let relay = RelayAddress {
        relay_service: "box".to_owned(),
        channel: 0,
    };
    Load {
        priority,
        ..Load::new(name, relay, Wiring::NormallyOpen, shed_at)
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

mod budget;
mod comfort;
mod properties;

use properties::{case_strategy, duration_strategy, known_hour, override_active};
mod restore;
mod tempo;

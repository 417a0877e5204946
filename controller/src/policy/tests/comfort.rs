//! The comfort limit (`max_off`) and the restore jitter (issue 15, points 1
//! and 3): examples, then properties over random forecasts and states.

use super::*;

#[test]
fn a_long_red_spell_is_broken_by_comfort_runs() {
    let mut heater = load("heater", Orange, 1);
    heater.max_off = Some(2 * HOUR);
    heater.min_on = 10 * MIN;
    let case = Case::new(vec![heater], hours(&[Red, Red, Red, Red, Red, Red, Green]));
    assert_eq!(
        summary(&case.plan(), "heater"),
        [
            (0, false, Reason::ShedForLevel(Red)),
            // Cut for 2h: powered for 30 min (min_on is shorter).
            (120, true, Reason::ComfortLimit),
            (150, false, Reason::ShedForLevel(Red)),
            (270, true, Reason::ComfortLimit),
            (300, false, Reason::ShedForLevel(Red)),
            (360, true, Reason::Normal),
        ]
    );
}

#[test]
fn a_comfort_run_lasts_min_on_when_longer_and_counts_the_time_already_cut() {
    let mut heater = load("heater", Orange, 1);
    heater.max_off = Some(2 * HOUR);
    heater.min_on = 45 * MIN;
    let mut case = Case::new(vec![heater], hours(&[Red, Red, Red, Red]));
    case.states.insert(
        "heater".to_owned(),
        LoadState {
            powered: false,
            since: Some(at(-90)),
            reason: Some(Reason::ShedForLevel(Red)),
        },
    );
    assert_eq!(
        summary(&case.plan(), "heater"),
        [
            (0, false, Reason::ShedForLevel(Red)),
            (30, true, Reason::ComfortLimit),
            (75, false, Reason::ShedForLevel(Red)),
            (195, true, Reason::ComfortLimit),
        ]
    );
}

#[test]
fn a_comfort_run_started_before_a_restart_is_kept_for_its_length() {
    let mut heater = load("heater", Orange, 1);
    heater.max_off = Some(2 * HOUR);
    let mut case = Case::new(vec![heater], hours(&[Red, Red, Red, Red]));
    case.states.insert(
        "heater".to_owned(),
        LoadState {
            powered: true,
            since: Some(at(-10)),
            reason: Some(Reason::ComfortLimit),
        },
    );
    assert_eq!(
        summary(&case.plan(), "heater"),
        [
            (0, true, Reason::ComfortLimit),
            (20, false, Reason::ShedForLevel(Red)),
            (140, true, Reason::ComfortLimit),
            (170, false, Reason::ShedForLevel(Red)),
        ]
    );
}

#[test]
fn a_load_found_cut_counts_from_when_the_controller_started_watching() {
    // Found cut, not by the controller (a relay-service restart with its
    // relays off): cut at least since the controller started, 3h ago.
    let mut heater = load("heater", Orange, 1);
    heater.max_off = Some(2 * HOUR);
    let mut case = Case::new(vec![heater], hours(&[Red, Red]));
    case.watching_since = Some(at(-180));
    case.states.insert(
        "heater".to_owned(),
        LoadState {
            powered: false,
            since: None,
            reason: None,
        },
    );
    assert_eq!(
        summary(&case.plan(), "heater"),
        [
            (0, true, Reason::ComfortLimit),
            (30, false, Reason::ShedForLevel(Red)),
        ]
    );
}

#[test]
fn an_override_wins_over_the_comfort_limit() {
    let mut heater = load("heater", Orange, 1);
    heater.max_off = Some(HOUR);
    let mut case = Case::new(vec![heater], hours(&[Red, Red, Red, Red]));
    case.overrides.insert(
        "heater".to_owned(),
        Override {
            powered: false,
            until: at(150),
            force: false,
        },
    );
    assert_eq!(
        summary(&case.plan(), "heater"),
        [
            (0, false, Reason::Override),
            // Cut since the start, for longer than max_off: at once.
            (150, true, Reason::ComfortLimit),
            (180, false, Reason::ShedForLevel(Red)),
        ]
    );
}

/// A seed whose delay on t0's date is at least a minute.
fn jitter_with_delay() -> (RestoreJitter, Duration) {
    let date = t0().to_zoned_datetime(PARIS.clone()).date();
    (0u64..)
        .map(|seed| RestoreJitter { max: 5 * MIN, seed })
        .map(|j| (j, j.on(date)))
        .find(|(_, delay)| *delay >= MIN)
        .expect("some seed")
}

#[test]
fn a_restore_after_a_red_hour_waits_for_the_jitter_and_keeps_it_across_passes() {
    let (jitter, delay) = jitter_with_delay();
    let mut case = Case::new(vec![load("heater", Orange, 1)], hours(&[Red, Green, Green]));
    case.jitter = jitter;
    let restore = at(60) + SignedDuration::try_from(delay).expect("fits");
    let plan = case.plan();
    let heater = plan.load("heater").expect("planned");
    assert_eq!(
        heater.at(at(60)).map(|i| i.reason),
        Some(Reason::RestoreJitter)
    );
    let back = heater.next_change(at(0)).expect("restored");
    assert_eq!(
        (back.start, back.powered, back.reason),
        (restore, true, Reason::Normal)
    );

    // A pass a little later, with the load still cut: the same instant.
    case.now = at(61);
    case.states.insert(
        "heater".to_owned(),
        LoadState {
            powered: false,
            since: Some(at(0)),
            reason: Some(Reason::ShedForLevel(Red)),
        },
    );
    let later = case.plan();
    let back = later
        .load("heater")
        .and_then(|l| l.next_change(at(61)))
        .expect("restored");
    assert_eq!(back.start, restore);
}

#[test]
fn no_jitter_after_an_override() {
    let (jitter, _) = jitter_with_delay();
    let mut case = Case::new(vec![load("heater", Orange, 1)], hours(&[Green, Green]));
    case.jitter = jitter;
    case.overrides.insert(
        "heater".to_owned(),
        Override {
            powered: false,
            until: at(30),
            force: false,
        },
    );
    assert_eq!(
        summary(&case.plan(), "heater"),
        [(0, false, Reason::Override), (30, true, Reason::Normal)]
    );
}

/// Merged cut stretches of a timeline: (start, end).
fn cut_stretches(intervals: &[Interval]) -> Vec<(Timestamp, Timestamp)> {
    let mut out: Vec<(Timestamp, Timestamp)> = Vec::new();
    for i in intervals.iter().filter(|i| !i.powered) {
        match out.last_mut() {
            Some(last) if last.1 == i.start => last.1 = i.end,
            _ => out.push((i.start, i.end)),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No cut lasts longer than `max_off`, counted from when the load was
    /// cut (or from now when unknown), unless an override intervenes.
    #[test]
    fn no_cut_is_longer_than_max_off(
        mut case in case_strategy(),
        limits in proptest::collection::vec(30i64..360, 6),
    ) {
        for (load, extra) in case.loads.iter_mut().zip(limits) {
            load.max_off = Some(load.min_off + Duration::from_secs(60 * extra as u64));
        }
        let plan = case.plan();
        for (load, lp) in case.loads.iter().zip(&plan.loads) {
            if case.overrides.contains_key(&load.name) {
                continue;
            }
            let max_off = SignedDuration::try_from(load.max_off.expect("set")).expect("fits");
            let state = case.states.get(&load.name);
            for (n, (start, end)) in cut_stretches(&lp.intervals).into_iter().enumerate() {
                let began = match state {
                    Some(s) if n == 0 && start == case.now && !s.powered => s.since.unwrap_or(case.now),
                    _ => start,
                };
                prop_assert!(
                    end <= (began + max_off).max(case.now),
                    "{} cut from {} to {} (max_off {:?}): {:?}", load.name, began, end, max_off, lp.intervals
                );
            }
        }
    }
}

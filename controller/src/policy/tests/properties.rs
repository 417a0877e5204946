//! The policy's rules as properties over random forecasts, load sets,
//! overrides and starting states (proptest).

use super::*;

fn level_strategy() -> impl Strategy<Value = Option<SignalLevel>> {
    prop_oneof![
        3 => Just(Some(Green)),
        2 => Just(Some(CarbonFree)),
        2 => Just(Some(Orange)),
        2 => Just(Some(Red)),
        1 => Just(None),
    ]
}

pub(super) fn duration_strategy() -> impl Strategy<Value = Duration> {
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
    pub(super) fn case_strategy()(
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

pub(super) fn override_active(case: &Case, name: &str, t: Timestamp) -> Option<bool> {
    case.overrides
        .get(name)
        .filter(|o| t < o.until)
        .map(|o| o.powered)
}

pub(super) fn known_hour(case: &Case, t: Timestamp) -> Option<Hour> {
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
                    Reason::PowerLimit => {
                        prop_assert!(false, "the policy never plans a power cut: {:?}", i);
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

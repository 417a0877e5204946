//! Restores: staggered, most important first; and no restore just before a
//! cut (issue 15, point 4): a load whose `min_on` would hold it powered into
//! a time it must be cut for stays cut, as an anticipation.

use super::*;

#[test]
fn restores_are_staggered_most_important_first() {
    let mut case = Case::new(
        vec![
            load("low", Orange, 1),
            load("high", Orange, 10),
            load("mid", Orange, 5),
        ],
        hours(&[Orange, Green]),
    );
    case.stagger = 5 * MIN;
    let plan = case.plan();
    assert_eq!(
        summary(&plan, "high"),
        [
            (0, false, Reason::ShedForLevel(Orange)),
            (60, true, Reason::Normal)
        ]
    );
    assert_eq!(
        summary(&plan, "mid"),
        [
            (0, false, Reason::ShedForLevel(Orange)),
            (60, false, Reason::RestoreStagger),
            (65, true, Reason::Normal)
        ]
    );
    assert_eq!(
        summary(&plan, "low"),
        [
            (0, false, Reason::ShedForLevel(Orange)),
            (60, false, Reason::RestoreStagger),
            (70, true, Reason::Normal)
        ]
    );
}

#[test]
fn a_recent_restore_delays_the_next_one() {
    let mut case = Case::new(vec![load("a", Orange, 1)], hours(&[Green]));
    case.states.insert(
        "a".to_owned(),
        LoadState {
            powered: false,
            since: None,
            reason: None,
        },
    );
    case.stagger = 10 * MIN;
    case.last_restore_at = Some(at(-4));
    assert_eq!(
        summary(&case.plan(), "a"),
        [
            (0, false, Reason::RestoreStagger),
            (6, true, Reason::Normal)
        ]
    );
}

#[test]
fn a_load_is_not_restored_when_min_on_would_hold_it_into_a_red_hour() {
    let mut heater = load("heater", Orange, 1);
    heater.min_on = 90 * MIN;
    // Red, green for an hour, red again: a restore at 01:00 would be held
    // on until 02:30, into the red hour at 02:00.
    let case = Case::new(vec![heater], hours(&[Red, Green, Red, Green, Green, Green]));
    assert_eq!(
        summary(&case.plan(), "heater"),
        [
            (0, false, Reason::ShedForLevel(Red)),
            (60, false, Reason::Anticipation(Red)),
            (120, false, Reason::ShedForLevel(Red)),
            (180, true, Reason::Normal),
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// After a restore by the policy, the load is never held on by its
    /// `min_on` against a cut the forecast asks for: no MIN_ON_HOLD in a
    /// known hour within `min_on` of it.
    #[test]
    fn restores_are_never_held_into_a_cut(case in case_strategy()) {
        let plan = case.plan();
        for (load, lp) in case.loads.iter().zip(&plan.loads) {
            let min_on = SignedDuration::try_from(load.min_on).expect("fits");
            let mut powered = case.states.get(&load.name).map(|s| s.powered).unwrap_or(lp.intervals[0].powered);
            let mut restored_at: Option<Timestamp> = None;
            for i in &lp.intervals {
                if i.powered && !powered {
                    restored_at = (i.reason != Reason::Override).then_some(i.start);
                }
                // A hold against the fallback of an hour without forecast
                // is not against a cut the signals ask for.
                if let Some(r) = restored_at
                    && i.reason == Reason::MinOnHold
                    && known_hour(&case, i.start).is_some()
                    && override_active(&case, &load.name, r).is_none()
                {
                    prop_assert!(i.start >= r + min_on, "{} restored at {} and held on at {}: {:?}", load.name, r, i.start, lp.intervals);
                }
                powered = i.powered;
            }
        }
    }
}

//! No restore just before a cut (issue 15, point 4): a load whose `min_on`
//! would hold it powered into a time it must be cut for stays cut, as an
//! anticipation.

use super::*;

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

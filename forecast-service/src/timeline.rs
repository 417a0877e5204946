//! The time rule: how an Ecowatt `pas` becomes an interval of real time.
//!
//! RTE does not say what `pas` means on the days clocks change, so the rule
//! is ours, and this is where it is written down: `pas` h of a date is the wall-clock hour
//! [h:00, h+1:00) of that date in Europe/Paris. On the spring-forward day the
//! hour that does not exist (02:00) covers no time (its level is folded into
//! 03:00, the higher of the two: see `Forecast::from_signals`); on the
//! fall-back day the repeated hour (02:00) covers both occurrences. The timeline in UTC is then
//! contiguous: no gap, no overlap.
//!
//! Pure functions: no clock is read here.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// Europe/Paris, compiled in: the rule must not depend on the box's tzdata.
pub static PARIS: TimeZone = jiff::tz::get!("Europe/Paris");

/// The instant at which wall-clock hour `hour` (0..=24; 24 is the next
/// midnight) of `date` starts in Europe/Paris.
///
/// A wall-clock time that does not exist (the spring-forward gap) maps to
/// the end of the gap, and one that exists twice (the fall-back fold) to its
/// first occurrence. That is exactly what makes the skipped hour empty and
/// the repeated hour two hours long. `None` only for dates near the end of
/// the calendar.
pub fn hour_start(date: Date, hour: u8) -> Option<Timestamp> {
    let (date, hour) = if hour >= 24 {
        (date.tomorrow().ok()?, 0)
    } else {
        (date, hour)
    };
    // "Compatible" is exactly the rule: a gap maps forward, a fold to its
    // first occurrence.
    PARIS
        .to_ambiguous_timestamp(date.at(hour as i8, 0, 0, 0))
        .compatible()
        .ok()
}

/// The Ecowatt hour that contains `at`: its date and `pas` in Europe/Paris,
/// and its start and end by the rule above.
pub fn hour_containing(at: Timestamp) -> Option<(Date, u8, Timestamp, Timestamp)> {
    let local = at.to_zoned_datetime(PARIS.clone());
    let date = local.date();
    let hour = u8::try_from(local.hour()).ok()?;
    let start = hour_start(date, hour)?;
    let end = hour_start(date, hour + 1)?;
    Some((date, hour, start, end))
}

/// The date in Europe/Paris at `at`.
pub fn paris_date(at: Timestamp) -> Date {
    at.to_zoned_datetime(PARIS.clone()).date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn an_ordinary_winter_day() {
        let d = date(2026, 12, 8);
        assert_eq!(hour_start(d, 0), Some(ts("2026-12-07T23:00:00Z")));
        assert_eq!(hour_start(d, 17), Some(ts("2026-12-08T16:00:00Z")));
        assert_eq!(hour_start(d, 24), Some(ts("2026-12-08T23:00:00Z")));
    }

    #[test]
    fn spring_forward_2026_03_29_the_skipped_hour_is_empty() {
        let d = date(2026, 3, 29);
        // 02:00 CET does not exist: clocks jump from 02:00 to 03:00 CEST,
        // at 01:00 UTC.
        assert_eq!(hour_start(d, 1), Some(ts("2026-03-29T00:00:00Z")));
        assert_eq!(hour_start(d, 2), Some(ts("2026-03-29T01:00:00Z")));
        assert_eq!(hour_start(d, 3), Some(ts("2026-03-29T01:00:00Z")));
        assert_eq!(hour_start(d, 24), Some(ts("2026-03-29T22:00:00Z")));
    }

    #[test]
    fn fall_back_2026_10_25_the_repeated_hour_is_two_hours_long() {
        let d = date(2026, 10, 25);
        // 02:00 CEST (00:00 UTC) happens, then 03:00 CEST becomes 02:00 CET
        // again (01:00 UTC), then 03:00 CET (02:00 UTC).
        assert_eq!(hour_start(d, 2), Some(ts("2026-10-25T00:00:00Z")));
        assert_eq!(hour_start(d, 3), Some(ts("2026-10-25T02:00:00Z")));
        let (_, pas, start, end) = hour_containing(ts("2026-10-25T01:30:00Z")).expect("hour");
        assert_eq!(pas, 2);
        assert_eq!(
            (start, end),
            (ts("2026-10-25T00:00:00Z"), ts("2026-10-25T02:00:00Z"))
        );
    }

    #[test]
    fn every_day_of_2026_is_contiguous_in_utc() {
        let mut d = date(2026, 1, 1);
        let mut total_hours = 0;
        while d.year() == 2026 {
            let mut prev = hour_start(d, 0).expect("midnight");
            for h in 1..=24 {
                let next = hour_start(d, h).expect("hour");
                assert!(next >= prev, "{d} pas {h} goes back in time");
                prev = next;
            }
            let next_midnight = hour_start(d.tomorrow().expect("tomorrow"), 0).expect("midnight");
            assert_eq!(prev, next_midnight, "{d}: a gap or overlap at midnight");
            let len = prev.duration_since(hour_start(d, 0).expect("midnight"));
            total_hours += len.as_secs() / 3600;
            d = d.tomorrow().expect("tomorrow");
        }
        assert_eq!(total_hours, 365 * 24);
    }

    #[test]
    fn the_hour_containing_an_instant_contains_it() {
        for s in [
            "2026-03-29T00:59:59Z",
            "2026-03-29T01:00:00Z",
            "2026-06-01T12:34:56Z",
            "2026-10-25T00:00:00Z",
            "2026-10-25T02:00:00Z",
        ] {
            let at = ts(s);
            let (_, _, start, end) = hour_containing(at).expect("hour");
            assert!(start <= at && at < end, "{s}: [{start}, {end})");
        }
    }
}

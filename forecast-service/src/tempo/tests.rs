use super::*;
use proptest::prelude::*;

const MIN: Duration = Duration::from_secs(60);

fn date(y: i16, m: i8, d: i8) -> Date {
    Date::new(y, m, d).expect("date")
}

fn paris(y: i16, m: i8, d: i8, h: i8, min: i8) -> Timestamp {
    timeline::PARIS
        .to_ambiguous_timestamp(date(y, m, d).at(h, min, 0, 0))
        .compatible()
        .expect("time")
}

/// RTE's shape, newest day first.
fn body(days: &[(&str, &str, &str)]) -> Vec<u8> {
    let values: Vec<String> = days
        .iter()
        .map(|(start, end, value)| {
            format!(
                r#"{{"start_date":"{start}","end_date":"{end}","value":"{value}","updated_date":"{start}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"tempo_like_calendars":{{"start_date":"2026-11-26T00:00:00+01:00","end_date":"2026-11-29T00:00:00+01:00","values":[{}]}}}}"#,
        values.join(",")
    )
    .into_bytes()
}

#[test]
fn parses_rtes_shape_newest_first_into_date_order() {
    let c = parse(&body(&[
        (
            "2026-11-28T00:00:00+01:00",
            "2026-11-29T00:00:00+01:00",
            "RED",
        ),
        (
            "2026-11-27T00:00:00+01:00",
            "2026-11-28T00:00:00+01:00",
            "WHITE",
        ),
        (
            "2026-11-26T00:00:00+01:00",
            "2026-11-27T00:00:00+01:00",
            "BLUE",
        ),
    ]))
    .expect("parses");
    assert_eq!(
        c.days,
        [
            TempoDay {
                date: date(2026, 11, 26),
                color: TempoColor::Blue
            },
            TempoDay {
                date: date(2026, 11, 27),
                color: TempoColor::White
            },
            TempoDay {
                date: date(2026, 11, 28),
                color: TempoColor::Red
            },
        ]
    );
    assert!(require_today(&c, date(2026, 11, 27)).is_ok());
    assert_eq!(
        require_today(&c, date(2026, 11, 30)),
        Err(TempoError::MissingToday {
            date: date(2026, 11, 30)
        })
    );
}

#[test]
fn bad_bodies_are_rejected_with_the_reason() {
    let cases: [(Vec<u8>, &str); 5] = [
        (b"<html>503</html>".to_vec(), "not a Tempo calendar body"),
        (
            body(&[(
                "2026-11-27T00:00:00+01:00",
                "2026-11-28T00:00:00+01:00",
                "PURPLE",
            )]),
            "unknown colour \"PURPLE\"",
        ),
        (
            body(&[(
                "2026-11-27T00:00:00+01:00",
                "2026-11-29T00:00:00+01:00",
                "RED",
            )]),
            "not one calendar day",
        ),
        (
            body(&[
                (
                    "2026-11-27T00:00:00+01:00",
                    "2026-11-28T00:00:00+01:00",
                    "RED",
                ),
                (
                    "2026-11-27T00:00:00+01:00",
                    "2026-11-28T00:00:00+01:00",
                    "BLUE",
                ),
            ]),
            "appears twice",
        ),
        (
            body(&[("yesterday", "2026-11-28T00:00:00+01:00", "RED")]),
            "start_date \"yesterday\"",
        ),
    ];
    for (b, expected) in cases {
        let err = parse(&b).expect_err(expected).to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }
}

#[test]
fn dst_days_are_one_day_too() {
    // 25 October 2026 lasts 25 hours, 29 March 2026 23.
    let c = parse(&body(&[
        (
            "2026-10-25T00:00:00+02:00",
            "2026-10-26T00:00:00+01:00",
            "BLUE",
        ),
        (
            "2026-03-29T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
            "WHITE",
        ),
    ]))
    .expect("parses");
    assert_eq!(c.days.len(), 2);
}

#[test]
fn a_tariff_day_runs_from_six_to_six_with_peak_hours_until_ten_pm() {
    let day = TempoDay {
        date: date(2026, 11, 27),
        color: TempoColor::Red,
    };
    assert_eq!(
        day.start(),
        Some("2026-11-27T05:00:00Z".parse().expect("ts"))
    );
    assert_eq!(
        day.peak_end(),
        Some("2026-11-27T21:00:00Z".parse().expect("ts"))
    );
    assert_eq!(day.end(), Some("2026-11-28T05:00:00Z".parse().expect("ts")));
    // In summer time, the same wall-clock hours.
    let summer = TempoDay {
        date: date(2026, 7, 1),
        color: TempoColor::Blue,
    };
    assert_eq!(
        summer.start(),
        Some("2026-07-01T04:00:00Z".parse().expect("ts"))
    );
}

#[test]
fn the_query_covers_yesterday_to_the_end_of_tomorrow_with_the_paris_offset() {
    assert_eq!(
        query_range(date(2026, 11, 27)),
        Some((
            "2026-11-26T00:00:00+01:00".to_owned(),
            "2026-11-29T00:00:00+01:00".to_owned()
        ))
    );
}

#[test]
fn rebasing_makes_the_latest_day_tomorrow() {
    let c = Calendar {
        days: vec![
            TempoDay {
                date: date(2023, 1, 18),
                color: TempoColor::Blue,
            },
            TempoDay {
                date: date(2023, 1, 19),
                color: TempoColor::White,
            },
            TempoDay {
                date: date(2023, 1, 20),
                color: TempoColor::Red,
            },
        ],
    }
    .rebased(date(2026, 11, 27));
    assert_eq!(c.color_of(date(2026, 11, 26)), Some(TempoColor::Blue));
    assert_eq!(c.color_of(date(2026, 11, 27)), Some(TempoColor::White));
    assert_eq!(c.color_of(date(2026, 11, 28)), Some(TempoColor::Red));
}

fn production() -> TempoSchedule {
    TempoSchedule {
        spacing: 15 * MIN,
        margin: Duration::from_secs(30),
    }
}

fn known_through(last: Date) -> Calendar {
    Calendar {
        days: vec![TempoDay {
            date: last,
            color: TempoColor::Blue,
        }],
    }
}

#[test]
fn the_call_pattern_over_a_day() {
    let s = production();
    let now = paris(2026, 11, 27, 8, 0);
    // First start: at once.
    assert_eq!(s.next_call(now, None, None, 0), now);
    // Called at 00:02 with tomorrow (the 28th) unknown: wait for 10:40.
    let last = paris(2026, 11, 27, 0, 2);
    let cal = known_through(date(2026, 11, 27));
    assert_eq!(
        s.next_call(now, Some(last), Some(&cal), 0),
        paris(2026, 11, 27, 10, 40)
    );
    // From 10:40, every 15 minutes (and the margin) until it is known.
    let at = paris(2026, 11, 27, 10, 41);
    let last = paris(2026, 11, 27, 10, 40);
    assert_eq!(
        s.next_call(at, Some(last), Some(&cal), 0),
        paris(2026, 11, 27, 10, 55) + SignedDuration::from_secs(30)
    );
    // Known: next call just after midnight.
    let cal = known_through(date(2026, 11, 28));
    let last = paris(2026, 11, 27, 11, 10);
    assert_eq!(
        s.next_call(paris(2026, 11, 27, 11, 11), Some(last), Some(&cal), 0),
        paris(2026, 11, 28, 0, 0)
    );
    // The day changed: once, now.
    let now = paris(2026, 11, 28, 0, 0);
    assert_eq!(s.next_call(now, Some(last), Some(&cal), 0), now);
}

#[test]
fn failures_back_off_from_the_last_call() {
    let s = production();
    let last = paris(2026, 11, 27, 11, 0);
    let now = paris(2026, 11, 27, 11, 1);
    let cal = known_through(date(2026, 11, 27));
    let after = |n| s.next_call(now, Some(last), Some(&cal), n);
    let margin = SignedDuration::from_secs(30);
    assert_eq!(after(1), paris(2026, 11, 27, 11, 15) + margin);
    assert_eq!(after(2), paris(2026, 11, 27, 11, 30) + margin);
    assert_eq!(after(3), paris(2026, 11, 27, 12, 0) + margin);
    assert_eq!(after(9), paris(2026, 11, 27, 12, 0) + margin);
}

proptest! {
    /// Whatever the time, the calendar and the failures, two calls are
    /// never closer than the spacing and the margin, and the next call is
    /// never in the past.
    #[test]
    fn calls_are_never_closer_than_the_spacing(
        last_min in 0i64..(3 * 24 * 60),
        after_min in 0i64..(2 * 24 * 60),
        known_days in 0i64..3,
        failures in 0u32..10,
    ) {
        let s = production();
        let base = paris(2026, 11, 26, 0, 0);
        let last = base + SignedDuration::from_mins(last_min);
        let now = last + SignedDuration::from_mins(after_min);
        let cal = Calendar {
            days: (0..known_days)
                .map(|i| TempoDay {
                    date: timeline::paris_date(now).checked_add(jiff::Span::new().days(i)).expect("date"),
                    color: TempoColor::Blue,
                })
                .collect(),
        };
        let next = s.next_call(now, Some(last), Some(&cal), failures);
        prop_assert!(next >= last + SignedDuration::from_mins(15) + SignedDuration::from_secs(30));
        prop_assert!(next >= now);
        // And never later than the next day's call (a day without asking).
        prop_assert!(next <= now.max(last) + SignedDuration::from_hours(25));
    }
}

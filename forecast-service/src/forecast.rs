//! The forecast as the rest of delestage sees it: hours and days on a real
//! (UTC) timeline, built from Ecowatt signals by the time rule.

use jiff::Timestamp;
use jiff::civil::Date;

use crate::ecowatt::Signals;
use crate::timeline;
use delestage_proto::vocabulary::SignalLevel;

/// Every known hour and day, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub generated_at: Timestamp,
    pub days: Vec<Day>,
    /// Sorted, non-overlapping. An hour that covers no time (the skipped
    /// hour of the spring-forward day) is left out, its level folded into
    /// the next hour (the higher of the two).
    pub hours: Vec<Hour>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub date: Date,
    /// Local midnight.
    pub start: Timestamp,
    pub level: SignalLevel,
    pub message: String,
}

/// One Ecowatt hour: [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hour {
    pub start: Timestamp,
    pub end: Timestamp,
    pub level: SignalLevel,
}

impl Forecast {
    /// Applies the time rule to validated signals.
    pub fn from_signals(signals: &Signals) -> Self {
        let mut days = Vec::with_capacity(signals.days.len());
        let mut hours = Vec::with_capacity(signals.days.len() * 24);
        for day in &signals.days {
            // Dates were range-checked by the parser, so the rule applies.
            let Some(start) = timeline::hour_start(day.date, 0) else {
                continue;
            };
            days.push(Day {
                date: day.date,
                start,
                level: day.level,
                message: day.message.clone(),
            });
            // The level of an hour that covers no time, for the next one.
            let mut folded: Option<SignalLevel> = None;
            for (pas, level) in day.hours.iter().enumerate() {
                let (Some(start), Some(end)) = (
                    timeline::hour_start(day.date, pas as u8),
                    timeline::hour_start(day.date, pas as u8 + 1),
                ) else {
                    continue;
                };
                if start >= end {
                    // The spring-forward day's `pas` 2 has no time of its
                    // own: its level goes to 03:00 (the higher of the two),
                    // so that no tense hour is lost.
                    folded = folded.max(*level);
                    continue;
                }
                let level = match (*level, folded.take()) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if let Some(level) = level {
                    hours.push(Hour { start, end, level });
                }
            }
        }
        Self {
            generated_at: signals.generated_at,
            days,
            hours,
        }
    }

    /// The known hour containing `at`, if any.
    pub fn hour_at(&self, at: Timestamp) -> Option<&Hour> {
        // Hours are sorted and disjoint: the candidate is the last one that
        // starts at or before `at`.
        let after = self.hours.partition_point(|h| h.start <= at);
        let hour = self.hours.get(after.checked_sub(1)?)?;
        (at < hour.end).then_some(hour)
    }

    /// The end of the last known hour.
    pub fn horizon(&self) -> Option<Timestamp> {
        self.hours.last().map(|h| h.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecowatt;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn full_day(jour: &str, level_of: impl Fn(u8) -> u8) -> String {
        let values: Vec<String> = (0..24)
            .map(|p| format!(r#"{{"pas":{p},"hvalue":{}}}"#, level_of(p)))
            .collect();
        format!(
            r#"{{"GenerationFichier":"2026-03-28T12:00:00+01:00","jour":"{jour}","dvalue":2,"message":"","values":[{}]}}"#,
            values.join(",")
        )
    }

    fn forecast_of(days: &[String]) -> Forecast {
        let body = format!(r#"{{"signals":[{}]}}"#, days.join(","));
        Forecast::from_signals(&ecowatt::parse(body.as_bytes()).expect("valid"))
    }

    #[test]
    fn spring_forward_day_has_23_hours_no_gap_and_loses_no_tense_hour() {
        // pas 2 is orange, the others green: pas 2 does not exist on 29 March,
        // so its level goes to 03:00 CEST (01:00 UTC).
        let f = forecast_of(&[full_day("2026-03-29T00:00:00+01:00", |p| {
            if p == 2 { 2 } else { 1 }
        })]);
        assert_eq!(f.hours.len(), 23);
        for h in &f.hours {
            let expected = if h.start == ts("2026-03-29T01:00:00Z") {
                SignalLevel::Orange
            } else {
                SignalLevel::Green
            };
            assert_eq!(h.level, expected, "{h:?}");
        }
        assert!(f.hours.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(f.hours[0].start, ts("2026-03-28T23:00:00Z"));
        assert_eq!(f.horizon(), Some(ts("2026-03-29T22:00:00Z")));
        // 01:30 UTC is 03:30 CEST: pas 3.
        assert_eq!(
            f.hour_at(ts("2026-03-29T01:30:00Z")).map(|h| h.start),
            Some(ts("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn the_folded_hour_takes_the_higher_level_of_the_two() {
        let level_at_3 = |pas2: u8, pas3: u8| {
            let f = forecast_of(&[full_day("2026-03-29T00:00:00+01:00", |p| match p {
                2 => pas2,
                3 => pas3,
                _ => 1,
            })]);
            f.hour_at(ts("2026-03-29T01:30:00Z")).expect("03:00").level
        };
        assert_eq!(level_at_3(3, 1), SignalLevel::Red);
        assert_eq!(level_at_3(1, 3), SignalLevel::Red);
        assert_eq!(level_at_3(0, 1), SignalLevel::Green);
    }

    #[test]
    fn fall_back_day_has_a_two_hour_pas_2() {
        let f = forecast_of(&[full_day("2026-10-25T00:00:00+02:00", |p| {
            if p == 2 { 3 } else { 1 }
        })]);
        assert_eq!(f.hours.len(), 24);
        assert!(f.hours.windows(2).all(|w| w[0].end == w[1].start));
        let red = f.hour_at(ts("2026-10-25T01:59:59Z")).expect("known");
        assert_eq!(red.level, SignalLevel::Red);
        assert_eq!(
            (red.start, red.end),
            (ts("2026-10-25T00:00:00Z"), ts("2026-10-25T02:00:00Z"))
        );
        let total = f
            .horizon()
            .expect("hours")
            .duration_since(f.hours[0].start)
            .as_secs();
        assert_eq!(total, 25 * 3600);
    }

    #[test]
    fn hour_at_outside_the_known_hours_is_none() {
        let f = forecast_of(&[full_day("2026-12-08T00:00:00+01:00", |_| 1)]);
        assert!(f.hour_at(ts("2026-12-07T22:59:59Z")).is_none());
        assert!(f.hour_at(ts("2026-12-07T23:00:00Z")).is_some());
        assert!(f.hour_at(ts("2026-12-08T22:59:59Z")).is_some());
        assert!(f.hour_at(ts("2026-12-08T23:00:00Z")).is_none());
        assert_eq!(f.days[0].date, date(2026, 12, 8));
    }

    proptest! {
        /// Any set of (possibly partial) days, in any order: hours come out
        /// sorted and disjoint, each one is found by `hour_at` at its start
        /// and just before its end, and adjacent pas are contiguous.
        #[test]
        fn hours_are_sorted_disjoint_and_findable(
            days in proptest::collection::btree_map(0u32..400, proptest::collection::vec(proptest::option::of(0u8..4), 24), 1..6),
        ) {
            let base = date(2026, 1, 1);
            let mut json_days: Vec<String> = Vec::new();
            for (offset, hours) in &days {
                let d = base.checked_add(jiff::Span::new().days(*offset as i64)).expect("date");
                let jour = timeline::hour_start(d, 0).expect("midnight")
                    .to_zoned_datetime(timeline::PARIS.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string();
                let values: Vec<String> = hours.iter().enumerate()
                    .filter_map(|(p, v)| v.map(|v| format!(r#"{{"pas":{p},"hvalue":{v}}}"#)))
                    .collect();
                json_days.push(format!(
                    r#"{{"GenerationFichier":"2026-01-01T00:00:00+01:00","jour":"{jour}","dvalue":1,"message":"","values":[{}]}}"#,
                    values.join(",")
                ));
            }
            json_days.reverse();
            let f = forecast_of(&json_days);
            prop_assert!(f.hours.windows(2).all(|w| w[0].end <= w[1].start));
            for h in &f.hours {
                prop_assert!(h.start < h.end);
                prop_assert_eq!(f.hour_at(h.start), Some(h));
                let last = h.end.checked_sub(jiff::SignedDuration::from_nanos(1)).expect("ts");
                prop_assert_eq!(f.hour_at(last), Some(h));
            }
            prop_assert!(f.days.windows(2).all(|w| w[0].date < w[1].date));
        }
    }
}

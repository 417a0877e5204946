//! Ecowatt's wire format: the signals body, RTE's error bodies, and the
//! rebasing of a stored body onto today.
//!
//! [`parse`] is strict about what matters and lenient about the rest: days
//! in any order, partial days, a missing J+3, unknown fields and `\u2019`
//! escapes are fine; an out-of-range level, a duplicate day or hour, or no
//! days at all rejects the whole body, with the reason, so that a broken
//! answer never replaces a good forecast.

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;

use crate::timeline;
use delestage_proto::vocabulary::SignalLevel;

/// A validated Ecowatt body: days sorted by date, no duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    /// The latest `GenerationFichier` of the days.
    pub generated_at: Timestamp,
    pub days: Vec<DaySignals>,
}

/// One day of the body.
#[derive(Debug, Clone, PartialEq)]
pub struct DaySignals {
    /// The date in Europe/Paris (from `jour`).
    pub date: Date,
    /// From `dvalue`.
    pub level: SignalLevel,
    /// RTE's message, trimmed.
    pub message: String,
    /// From `values`, indexed by `pas`; `None` for hours the body left out.
    pub hours: [Option<SignalLevel>; 24],
}

/// Why a body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("not an Ecowatt signals body: {0}")]
    Json(String),
    #[error("no days in the body")]
    NoDays,
    #[error("day {index}: {field} {value:?} is not a date-time with an offset: {reason}")]
    BadTime {
        index: usize,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("day {date} appears twice")]
    DuplicateDay { date: Date },
    #[error("day {date}: dvalue {value} is out of range (1..=3)")]
    DayLevelOutOfRange { date: Date, value: i64 },
    #[error("day {date}: pas {pas} is out of range (0..=23)")]
    HourOutOfRange { date: Date, pas: i64 },
    #[error("day {date}: pas {pas} appears twice")]
    DuplicateHour { date: Date, pas: u8 },
    #[error("day {date}, pas {pas}: hvalue {value} is out of range (0..=3)")]
    HourLevelOutOfRange { date: Date, pas: u8, value: i64 },
    #[error("day {date} is outside the years this service handles (2000..=2200)")]
    DateOutOfRange { date: Date },
}

#[derive(Deserialize)]
struct Body {
    signals: Vec<RawDay>,
}

#[derive(Deserialize)]
struct RawDay {
    #[serde(rename = "GenerationFichier")]
    generation: String,
    jour: String,
    dvalue: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    values: Vec<RawHour>,
}

#[derive(Deserialize)]
struct RawHour {
    pas: i64,
    hvalue: i64,
}

/// Parses and validates a signals body.
pub fn parse(body: &[u8]) -> Result<Signals, BodyError> {
    let raw: Body = serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
    if raw.signals.is_empty() {
        return Err(BodyError::NoDays);
    }
    let mut generated_at: Option<Timestamp> = None;
    let mut days: Vec<DaySignals> = Vec::with_capacity(raw.signals.len());
    for (index, day) in raw.signals.into_iter().enumerate() {
        let parse_time = |field: &'static str, value: &str| {
            value.parse::<Timestamp>().map_err(|e| BodyError::BadTime {
                index,
                field,
                value: value.to_owned(),
                reason: e.to_string(),
            })
        };
        let generation = parse_time("GenerationFichier", &day.generation)?;
        generated_at = Some(generated_at.map_or(generation, |g| g.max(generation)));
        // `jour` is local midnight with its offset; its date in Paris is the day.
        let date = timeline::paris_date(parse_time("jour", &day.jour)?);
        if !(2000..=2200).contains(&date.year()) {
            return Err(BodyError::DateOutOfRange { date });
        }
        if days.iter().any(|d| d.date == date) {
            return Err(BodyError::DuplicateDay { date });
        }
        let level = SignalLevel::from_dvalue(day.dvalue).ok_or(BodyError::DayLevelOutOfRange {
            date,
            value: day.dvalue,
        })?;
        let mut hours = [None; 24];
        for value in day.values {
            let pas = u8::try_from(value.pas).ok().filter(|p| *p < 24).ok_or(
                BodyError::HourOutOfRange {
                    date,
                    pas: value.pas,
                },
            )?;
            let level =
                SignalLevel::from_hvalue(value.hvalue).ok_or(BodyError::HourLevelOutOfRange {
                    date,
                    pas,
                    value: value.hvalue,
                })?;
            let slot = &mut hours[pas as usize];
            if slot.is_some() {
                return Err(BodyError::DuplicateHour { date, pas });
            }
            *slot = Some(level);
        }
        days.push(DaySignals {
            date,
            level,
            message: day.message.trim().to_owned(),
            hours,
        });
    }
    days.sort_by_key(|d| d.date);
    Ok(Signals {
        // Not empty, so set.
        generated_at: generated_at.unwrap_or(Timestamp::UNIX_EPOCH),
        days,
    })
}

impl Signals {
    /// Shifts every day (and the generation time) by whole days so that the
    /// earliest complete day (all 24 hours) is `today`, keeping each day's
    /// hours and levels: a fixed file (the 2022 sandbox data, say) becomes a
    /// forecast for this week that covers every hour of today. Days before
    /// it land on yesterday and earlier. The sandbox's first day starts at
    /// `pas` 7: made today, it left today's night uncovered. With no
    /// complete day, the earliest day is made today.
    pub fn rebased(mut self, today: Date) -> Self {
        let Some(first) = self
            .days
            .iter()
            .find(|d| d.hours.iter().all(Option::is_some))
            .or(self.days.first())
            .map(|d| d.date)
        else {
            return self;
        };
        let Ok(span) = first.until(today) else {
            return self;
        };
        let days = span.get_days();
        for day in &mut self.days {
            if let Ok(d) = day.date.checked_add(days.days()) {
                day.date = d;
            }
        }
        if let Ok(g) = self
            .generated_at
            .to_zoned_datetime(timeline::PARIS.clone())
            .checked_add(days.days())
        {
            self.generated_at = g.timestamp();
        }
        self
    }
}

/// What RTE said when it answered with an error status, for logs and for
/// the UNAVAILABLE message: `error: error_description` from a JSON body, the
/// title of an HTML page (a 503 from the gateway), or the start of the text.
pub fn describe_error_body(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<String>,
        error_description: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body)
        && (e.error.is_some() || e.error_description.is_some())
    {
        return match (e.error, e.error_description) {
            (Some(code), Some(desc)) => format!("{code}: {desc}"),
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => String::new(),
        };
    }
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if let (Some(open), Some(close)) = (lower.find("<title>"), lower.find("</title>"))
        && open + 7 <= close
    {
        return format!("HTML page: {}", text[open + 7..close].trim());
    }
    if lower.contains("<html") {
        return "an HTML page".to_owned();
    }
    let text: String = text.trim().chars().take(200).collect();
    if text.is_empty() {
        "an empty body".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    const SANDBOX: &[u8] = include_bytes!("../payloads/signals-sandbox-v5.json");
    const PRODUCTION: &[u8] = include_bytes!("../payloads/signals-production-shape.json");

    #[test]
    fn the_sandbox_payload_has_days_out_of_order_and_a_partial_day() {
        let s = parse(SANDBOX).expect("sandbox parses");
        let dates: Vec<_> = s.days.iter().map(|d| d.date).collect();
        assert_eq!(
            dates,
            [
                date(2022, 6, 3),
                date(2022, 6, 4),
                date(2022, 6, 5),
                date(2022, 6, 6)
            ]
        );
        // 2022-06-03 starts at pas 7.
        assert_eq!(s.days[0].hours.iter().filter(|h| h.is_some()).count(), 17);
        assert_eq!(s.days[0].hours[6], None);
        assert!(s.days[0].hours[7].is_some());
        assert_eq!(s.days[3].message, "Pas d\u{2019}alerte");
        assert_eq!(s.generated_at, "2022-06-03T05:36:25Z".parse().expect("ts"));
    }

    #[test]
    fn the_production_shape_has_escapes_and_every_level() {
        let s = parse(PRODUCTION).expect("production parses");
        assert_eq!(s.days.len(), 4);
        assert_eq!(s.days[0].message, "Pas d\u{2019}alerte.");
        assert!(
            s.days[1]
                .message
                .starts_with("Le syst\u{e8}me \u{e9}lectrique")
        );
        assert_eq!(s.days[2].level, SignalLevel::Red);
        assert!(s.days[2].hours.contains(&Some(SignalLevel::Red)));
    }

    fn body(days: &str) -> Vec<u8> {
        format!(r#"{{"signals":[{days}]}}"#).into_bytes()
    }

    fn day(jour: &str, values: &str) -> String {
        format!(
            r#"{{"GenerationFichier":"2026-12-06T23:00:00+01:00","jour":"{jour}","dvalue":1,"message":"m","values":[{values}]}}"#
        )
    }

    #[test]
    fn unknown_fields_are_ignored_and_j3_may_be_missing() {
        let b = r#"{"signals":[{"GenerationFichier":"2026-12-06T23:00:00+01:00","jour":"2026-12-07T00:00:00+01:00","dvalue":1,"message":"m","extra":{"a":1},"values":[{"pas":0,"hvalue":0,"x":true}]}],"other":1}"#;
        let s = parse(b.as_bytes()).expect("parses");
        assert_eq!(s.days.len(), 1);
    }

    #[test]
    fn rejections_say_why() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{\"signals\":[]}".to_vec(), "no days"),
            (b"<html>oops</html>".to_vec(), "not an Ecowatt signals body"),
            (
                b"{\"signals\":[{\"jour\":1}]}".to_vec(),
                "not an Ecowatt signals body",
            ),
            (
                body(&day("2026-12-07T00:00:00+01:00", r#"{"pas":3,"hvalue":4}"#)),
                "hvalue 4",
            ),
            (
                body(&day(
                    "2026-12-07T00:00:00+01:00",
                    r#"{"pas":24,"hvalue":1}"#,
                )),
                "pas 24",
            ),
            (
                body(&day(
                    "2026-12-07T00:00:00+01:00",
                    r#"{"pas":3,"hvalue":1},{"pas":3,"hvalue":2}"#,
                )),
                "pas 3 appears twice",
            ),
            (
                body(&format!(
                    "{},{}",
                    day("2026-12-07T00:00:00+01:00", ""),
                    day("2026-12-07T00:00:00+01:00", "")
                )),
                "2026-12-07 appears twice",
            ),
            (body(&day("07/12/2026", "")), "jour"),
            (
                body(&day("2026-12-07T00:00:00+01:00", "").replace("\"dvalue\":1", "\"dvalue\":7")),
                "dvalue 7",
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
    fn rebasing_moves_the_first_complete_day_to_today_and_keeps_hours() {
        let s = parse(SANDBOX).expect("sandbox");
        // The sandbox's first day starts at pas 7: it becomes yesterday, and
        // today (its second day) covers every hour.
        assert!(s.days[0].hours[..7].iter().all(Option::is_none));
        let r = s.clone().rebased(date(2026, 11, 26));
        assert_eq!(r.days[0].date, date(2026, 11, 25));
        assert_eq!(r.days[1].date, date(2026, 11, 26));
        assert!(r.days[1].hours.iter().all(Option::is_some));
        assert_eq!(r.days[3].date, date(2026, 11, 28));
        for (a, b) in s.days.iter().zip(&r.days) {
            assert_eq!(a.hours, b.hours);
            assert_eq!(a.level, b.level);
        }
        assert_eq!(
            r.generated_at
                .to_zoned_datetime(timeline::PARIS.clone())
                .date(),
            date(2026, 11, 25),
            "the generation time moves with the days"
        );
    }

    #[test]
    fn error_bodies_are_described() {
        assert_eq!(
            describe_error_body(
                br#"{"error":"TOO_MANY_REQUESTS","error_description":"slow down"}"#
            ),
            "TOO_MANY_REQUESTS: slow down"
        );
        assert_eq!(
            describe_error_body(
                b"<html><head><title>503 Service Unavailable</title></head></html>"
            ),
            "HTML page: 503 Service Unavailable"
        );
        assert_eq!(describe_error_body(b""), "an empty body");
    }

    mod robustness {
        use super::super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("null".to_owned()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| format!("{f:?}")),
                "[a-zA-Z0-9:+\\-T ]{0,30}".prop_map(|s| format!("{s:?}")),
                Just("\"2026-12-08T00:00:00+01:00\"".to_owned()),
                Just("[]".to_owned()),
                Just("{}".to_owned()),
            ]
        }

        proptest! {
            /// Whatever bytes RTE (or a proxy) sends, parsing returns an
            /// answer: never a panic.
            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let _ = parse(&body);
            }

            /// Bodies of the right shape with wrong values: rejected with a
            /// reason, or accepted with every level in range.
            #[test]
            fn wrong_values_are_rejected_not_panicked_on(
                generation in json_value(),
                jour in json_value(),
                dvalue in json_value(),
                values in proptest::collection::vec((json_value(), json_value()), 0..30),
            ) {
                let values: Vec<String> = values
                    .iter()
                    .map(|(p, h)| format!(r#"{{"pas":{p},"hvalue":{h}}}"#))
                    .collect();
                let body = format!(
                    r#"{{"signals":[{{"GenerationFichier":{generation},"jour":{jour},"dvalue":{dvalue},"message":"m","values":[{}]}}]}}"#,
                    values.join(",")
                );
                if let Ok(signals) = parse(body.as_bytes()) {
                    prop_assert_eq!(signals.days.len(), 1);
                }
            }
        }
    }
}

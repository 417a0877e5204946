//! RTE's Tempo calendar: the wire format, what a tariff day is, and when to
//! ask RTE again. Pure: no I/O, and `now` is always passed in.
//!
//! - The body is `{"tempo_like_calendars": {"start_date", "end_date",
//!   "values": [{"start_date", "end_date", "value", "updated_date"}]}}`,
//!   newest day first; each value spans one calendar day, local midnight to
//!   midnight with offsets. An unknown colour, a value that is not one day,
//!   or the same day twice rejects the whole body (as for Ecowatt).
//! - A Tempo day is a tariff day: from 06:00 on its date to 06:00 the next
//!   day, Paris time. Its peak hours ("heures pleines") are 06:00-22:00.
//! - Tomorrow's colour is published about 10:30-11:00 Paris time. RTE is
//!   asked once after the day changes, then from 10:40 until tomorrow's
//!   colour is known, never twice within the spacing (15 minutes).

use std::time::Duration;

use delestage_proto::vocabulary::TempoColor;
use delestage_runtime::backoff::Backoff;
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::timeline;

/// One day's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempoDay {
    /// The date in Europe/Paris.
    pub date: Date,
    pub color: TempoColor,
}

impl TempoDay {
    /// 06:00 Paris time on the date: the tariff day starts.
    pub fn start(&self) -> Option<Timestamp> {
        timeline::hour_start(self.date, 6)
    }

    /// 06:00 Paris time the next day: the tariff day ends.
    pub fn end(&self) -> Option<Timestamp> {
        timeline::hour_start(self.date.tomorrow().ok()?, 6)
    }

    /// 22:00 Paris time on the date: the peak hours end.
    pub fn peak_end(&self) -> Option<Timestamp> {
        timeline::hour_start(self.date, 22)
    }
}

/// The known days, in date order, one entry per date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Calendar {
    pub days: Vec<TempoDay>,
}

impl Calendar {
    /// The colour of `date`, if known.
    pub fn color_of(&self, date: Date) -> Option<TempoColor> {
        self.days.iter().find(|d| d.date == date).map(|d| d.color)
    }

    /// Shifts every day by whole days so that the latest is the day after
    /// `today` (as in RTE's calendar once tomorrow is published): a fixed
    /// file becomes this week's calendar. For demos.
    pub fn rebased(mut self, today: Date) -> Self {
        let Some(last) = self.days.last().map(|d| d.date) else {
            return self;
        };
        let Ok(tomorrow) = today.tomorrow() else {
            return self;
        };
        let Ok(span) = last.until(tomorrow) else {
            return self;
        };
        let shift = span.get_days();
        for day in &mut self.days {
            if let Ok(d) = day.date.checked_add(jiff::Span::new().days(shift)) {
                day.date = d;
            }
        }
        self
    }
}

/// Why a Tempo body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TempoError {
    #[error("not a Tempo calendar body: {0}")]
    Json(String),
    #[error("value {index}: {field} {value:?} is not a date-time with an offset: {reason}")]
    BadTime {
        index: usize,
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("value {index}: {start} to {end} is not one calendar day")]
    NotOneDay {
        index: usize,
        start: String,
        end: String,
    },
    #[error("day {date}: unknown colour {value:?} (expected BLUE, WHITE or RED)")]
    UnknownColor { date: Date, value: String },
    #[error("day {date} appears twice")]
    DuplicateDay { date: Date },
    #[error("today ({date}) is missing")]
    MissingToday { date: Date },
}

#[derive(Deserialize)]
struct Body {
    tempo_like_calendars: RawCalendar,
}

#[derive(Deserialize)]
struct RawCalendar {
    #[serde(default)]
    values: Vec<RawValue>,
}

#[derive(Deserialize)]
struct RawValue {
    start_date: String,
    end_date: String,
    value: String,
}

/// Parses and validates a body. An empty `values` is a valid, empty
/// calendar; whether it must hold today is for the caller to say (see
/// [`require_today`]).
pub fn parse(body: &[u8]) -> Result<Calendar, TempoError> {
    let body: Body = serde_json::from_slice(body).map_err(|e| TempoError::Json(e.to_string()))?;
    let mut days: Vec<TempoDay> = Vec::with_capacity(body.tempo_like_calendars.values.len());
    for (index, raw) in body.tempo_like_calendars.values.iter().enumerate() {
        let time = |field: &'static str, value: &str| {
            value.parse::<Timestamp>().map_err(|e| TempoError::BadTime {
                index,
                field,
                value: value.to_owned(),
                reason: e.to_string(),
            })
        };
        let start = time("start_date", &raw.start_date)?;
        let end = time("end_date", &raw.end_date)?;
        let date = timeline::paris_date(start);
        let one_day = timeline::hour_start(date, 0) == Some(start)
            && timeline::hour_start(date, 24) == Some(end);
        if !one_day {
            return Err(TempoError::NotOneDay {
                index,
                start: raw.start_date.clone(),
                end: raw.end_date.clone(),
            });
        }
        let color =
            TempoColor::from_rte(raw.value.trim()).ok_or_else(|| TempoError::UnknownColor {
                date,
                value: raw.value.clone(),
            })?;
        if days.iter().any(|d| d.date == date) {
            return Err(TempoError::DuplicateDay { date });
        }
        days.push(TempoDay { date, color });
    }
    days.sort_by_key(|d| d.date);
    Ok(Calendar { days })
}

/// RTE's answer must give today's colour (it is published the day before):
/// one that does not is bad input, and the last good calendar stays.
pub fn require_today(calendar: &Calendar, today: Date) -> Result<(), TempoError> {
    match calendar.color_of(today) {
        Some(_) => Ok(()),
        None => Err(TempoError::MissingToday { date: today }),
    }
}

/// The dates to ask RTE for, as its query wants them (`start_date`,
/// `end_date`: local midnights with the Paris offset): yesterday (whose
/// tariff day lasts until 06:00 today) to the end of tomorrow.
pub fn query_range(today: Date) -> Option<(String, String)> {
    let from = timeline::hour_start(today.yesterday().ok()?, 0)?;
    let to = timeline::hour_start(today.tomorrow().ok()?.tomorrow().ok()?, 0)?;
    let fmt = |t: Timestamp| {
        t.to_zoned_datetime(timeline::PARIS.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    };
    Some((fmt(from), fmt(to)))
}

/// When tomorrow's colour may be out (RTE publishes it about 10:30-11:00).
pub const PUBLISHED_FROM: (i8, i8) = (10, 40);

/// When to call RTE's Tempo API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempoSchedule {
    /// Never two calls closer than this (RTE: 15 minutes).
    pub spacing: Duration,
    /// Added to every wait (clocks differ).
    pub margin: Duration,
}

impl TempoSchedule {
    /// The next call, given the last one (its end), the calendar known, and
    /// the failures in a row since the last good answer.
    ///
    /// - No call yet: now.
    /// - The last call was on an earlier Paris day: now (once after the day
    ///   changes: today's colour is confirmed).
    /// - Tomorrow known: at the next midnight.
    /// - Tomorrow not known: from 10:40, every `spacing`.
    ///
    /// Never sooner than `spacing` (backed off after failures: 15, 30, 60
    /// minutes) plus `margin` after the last call.
    pub fn next_call(
        &self,
        now: Timestamp,
        last_call: Option<Timestamp>,
        calendar: Option<&Calendar>,
        failures: u32,
    ) -> Timestamp {
        let Some(last) = last_call else {
            return now;
        };
        let gap = if failures == 0 {
            self.spacing
        } else {
            Backoff::new(
                self.spacing.max(Duration::from_millis(1)),
                Duration::from_secs(3600).max(self.spacing),
            )
            .delay(failures)
        } + self.margin;
        let earliest = add(last, gap);
        let today = timeline::paris_date(now);
        let want = if timeline::paris_date(last) < today || failures > 0 {
            now
        } else {
            let tomorrow = today.tomorrow().ok();
            let known = tomorrow.is_some_and(|d| calendar.is_some_and(|c| c.color_of(d).is_some()));
            if known {
                tomorrow
                    .and_then(|d| timeline::hour_start(d, 0))
                    .unwrap_or(Timestamp::MAX)
            } else {
                let (h, m) = PUBLISHED_FROM;
                let from = timeline::PARIS
                    .to_ambiguous_timestamp(today.at(h, m, 0, 0))
                    .compatible()
                    .unwrap_or(now);
                from.max(now)
            }
        };
        want.max(earliest)
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests;

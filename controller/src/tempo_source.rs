//! Tempo colours from two sources: RTE's calendar (through the
//! forecast-service) and the Linky meter on a relay box (`[meter] relay`).
//!
//! The meter knows the colour of the tariff day under way and, once
//! published, of the next one. It fills the days RTE's calendar does not
//! have: Tempo off at the forecast-service, not yet published, or the
//! forecast-service unreachable with no kept calendar for that day. When
//! both know a day and disagree, RTE wins (the caller warns once a day).
//! Pure: the times are passed in.

use jiff::Timestamp;
use jiff::civil::Date;

pub(crate) use crate::model::{MeterTempo, TempoSource};
use crate::model::{PARIS, TariffDay, TempoColor};

/// The tariff day under way at `at`: a Tempo day runs from 06:00 Paris
/// time on its date to 06:00 the next day.
pub(crate) fn tariff_date(at: Timestamp) -> Option<Date> {
    let shifted = at.checked_sub(jiff::SignedDuration::from_hours(6)).ok()?;
    Some(shifted.to_zoned_datetime(PARIS.clone()).date())
}

/// The tariff day of `date` with `color`: 06:00, peak hours until 22:00,
/// the end at 06:00 the next day (Paris time).
pub(crate) fn tariff_day(date: Date, color: TempoColor) -> Option<TariffDay> {
    let at = |d: Date, hour: i8| {
        d.at(hour, 0, 0, 0)
            .to_zoned_datetime(PARIS.clone())
            .ok()
            .map(|z| z.timestamp())
    };
    Some(TariffDay {
        date,
        start: at(date, 6)?,
        peak_end: at(date, 22)?,
        end: at(date.tomorrow().ok()?, 6)?,
        color,
    })
}

/// RTE's days, and the meter's for the dates RTE does not know.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Merged {
    /// In date order.
    pub days: Vec<TariffDay>,
    /// The dates whose colour came from the meter.
    pub from_meter: Vec<Date>,
    /// Dates both know, with different colours: (date, RTE's, the meter's).
    pub disagreements: Vec<(Date, TempoColor, TempoColor)>,
}

pub(crate) fn merge(rte: &[TariffDay], meter: Option<&MeterTempo>) -> Merged {
    let mut merged = Merged {
        days: rte.to_vec(),
        ..Merged::default()
    };
    let Some(meter) = meter else {
        return merged;
    };
    let Some(today) = tariff_date(meter.at) else {
        return merged;
    };
    let tomorrow = today.tomorrow().ok();
    for (date, color) in [(Some(today), meter.today), (tomorrow, meter.tomorrow)] {
        let (Some(date), Some(color)) = (date, color) else {
            continue;
        };
        match rte.iter().find(|d| d.date == date) {
            Some(known) if known.color != color => {
                merged.disagreements.push((date, known.color, color));
            }
            Some(_) => {}
            None => {
                if let Some(day) = tariff_day(date, color) {
                    merged.days.push(day);
                    merged.from_meter.push(date);
                }
            }
        }
    }
    merged.days.sort_by_key(|d| d.start);
    merged
}

/// Where the colours of `dates` come from: the meter if any of them did,
/// else RTE if any is known.
pub(crate) fn source_of(days: &[TariffDay], from_meter: &[Date], dates: &[Date]) -> TempoSource {
    let known: Vec<&Date> = dates
        .iter()
        .filter(|d| days.iter().any(|t| t.date == **d))
        .collect();
    if known.iter().any(|d| from_meter.contains(d)) {
        TempoSource::Meter
    } else if known.is_empty() {
        TempoSource::None
    } else {
        TempoSource::Rte
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn date(s: &str) -> Date {
        s.parse().expect("date")
    }

    #[test]
    fn the_tariff_day_turns_at_six_paris_time() {
        // 05:59 Paris (04:59 UTC in winter) is still yesterday's tariff day.
        assert_eq!(
            tariff_date(at("2026-12-02T04:59:00Z")),
            Some(date("2026-12-01"))
        );
        assert_eq!(
            tariff_date(at("2026-12-02T05:00:00Z")),
            Some(date("2026-12-02"))
        );
        let day = tariff_day(date("2026-12-02"), TempoColor::Red).expect("a day");
        assert_eq!(day.start, at("2026-12-02T05:00:00Z"));
        assert_eq!(day.peak_end, at("2026-12-02T21:00:00Z"));
        assert_eq!(day.end, at("2026-12-03T05:00:00Z"));
    }

    #[test]
    fn the_meter_fills_the_days_rte_does_not_know_and_rte_wins_otherwise() {
        let meter = MeterTempo {
            // 20:00 Paris on the 2nd: today is the 2nd, tomorrow the 3rd.
            at: at("2026-12-02T19:00:00Z"),
            today: Some(TempoColor::White),
            tomorrow: Some(TempoColor::Red),
        };
        let none = merge(&[], Some(&meter));
        assert_eq!(none.from_meter, [date("2026-12-02"), date("2026-12-03")]);
        assert_eq!(none.days.len(), 2);
        assert_eq!(none.days[1].color, TempoColor::Red);
        let both_days = [date("2026-12-02"), date("2026-12-03")];
        assert_eq!(
            source_of(&none.days, &none.from_meter, &both_days),
            TempoSource::Meter
        );

        let rte = vec![tariff_day(date("2026-12-02"), TempoColor::Blue).expect("day")];
        let both = merge(&rte, Some(&meter));
        assert_eq!(both.from_meter, [date("2026-12-03")]);
        assert_eq!(both.days[0].color, TempoColor::Blue, "RTE wins");
        assert_eq!(
            both.disagreements,
            [(date("2026-12-02"), TempoColor::Blue, TempoColor::White)]
        );

        let only_rte = merge(&rte, None);
        assert_eq!(only_rte.days, rte);
        assert_eq!(
            source_of(&only_rte.days, &only_rte.from_meter, &both_days),
            TempoSource::Rte
        );
        assert_eq!(source_of(&[], &[], &both_days), TempoSource::None);
    }
}

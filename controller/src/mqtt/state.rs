//! What the controller publishes as state (retained), and what a command
//! message asks. Pure: the status and `now` in, topics and payloads out.

use jiff::Timestamp;
use serde_json::json;

use delestage_proto::controller::v1 as cpb;
use delestage_proto::json::{level_name, load_json, tempo_name};
use delestage_proto::vocabulary::SignalLevel;

use super::discovery::Topics;
use crate::policy::Hour;

/// A state message: its topic and payload.
pub(crate) type Message = (String, String);

/// Every state topic's payload for this status. `hours` are the usable
/// forecast's (empty without one).
pub(crate) fn messages(
    topics: &Topics,
    status: &cpb::ControllerStatus,
    hours: &[Hour],
    now: Timestamp,
) -> Vec<Message> {
    let forecast = status.forecast.clone().unwrap_or_default();
    let tense = next_tense(hours, now);
    let mut messages = vec![
        (topics.level(), level_name(status.level()).to_owned()),
        (
            topics.next_tense(),
            json!({
                "start": tense.map(|t| t.start.to_string()),
                "end": tense.map(|t| t.end.to_string()),
                "level": tense.map(|t| t.level.name()),
            })
            .to_string(),
        ),
        (
            topics.tempo(),
            json!({
                "today": tempo_name(forecast.tempo_today()),
                "tomorrow": tempo_name(forecast.tempo_tomorrow()),
            })
            .to_string(),
        ),
    ];
    if status.meter.is_some() {
        messages.push((
            topics.power_saved(),
            json!({ "power_saved_w": status.power_saved_w.unwrap_or(0) }).to_string(),
        ));
    }
    if let Some(m) = &status.meter {
        messages.push((
            topics.meter(),
            json!({
                "apparent_power_va": m.reading.then_some(m.apparent_power_va),
                "subscribed_va": m.reading.then_some(m.subscribed_va),
                "tempo_today": tempo_name(m.tempo_today()),
                "tempo_tomorrow": tempo_name(m.tempo_tomorrow()),
            })
            .to_string(),
        ));
    }
    messages.extend(
        status
            .loads
            .iter()
            .map(|l| (topics.load_state(&l.name), load_json(l).to_string())),
    );
    messages
}

/// A run of tense hours (orange or red, back to back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TensePeriod {
    pub start: Timestamp,
    pub end: Timestamp,
    /// The worst level in it.
    pub level: SignalLevel,
}

/// The tense period under way at `now`, or the next one: its start stays
/// put while it lasts, so the sensor does not tick hour by hour.
pub(crate) fn next_tense(hours: &[Hour], now: Timestamp) -> Option<TensePeriod> {
    let mut hours: Vec<&Hour> = hours.iter().collect();
    hours.sort_by_key(|h| h.start);
    let tense = |h: &Hour| h.level >= SignalLevel::Orange;
    let mut first = hours.iter().position(|h| h.end > now && tense(h))?;
    // Under way: from the start of the run.
    while first > 0 && hours[first - 1].end == hours[first].start && tense(hours[first - 1]) {
        first -= 1;
    }
    let mut period = TensePeriod {
        start: hours[first].start,
        end: hours[first].end,
        level: hours[first].level,
    };
    for h in &hours[first + 1..] {
        if h.start != period.end || !tense(h) {
            break;
        }
        period.end = h.end;
        period.level = period.level.max(h.level);
    }
    Some(period)
}

/// What a message on a load's command topic asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Force the load powered (`ON`) or cut (`OFF`) for the override
    /// duration.
    Override { powered: bool },
    /// Back to the plan.
    Clear,
}

/// `ON`, `OFF` or `CLEAR` (any case, surrounding blanks ignored).
pub(crate) fn parse_command(payload: &[u8]) -> Result<Command, String> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| "the payload is not text; send ON, OFF or CLEAR".to_owned())?
        .trim();
    match text.to_ascii_uppercase().as_str() {
        "ON" => Ok(Command::Override { powered: true }),
        "OFF" => Ok(Command::Override { powered: false }),
        "CLEAR" => Ok(Command::Clear),
        _ => Err(format!("{text:?} is not a command; send ON, OFF or CLEAR")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(start: &str, level: SignalLevel) -> Hour {
        let start: Timestamp = start.parse().expect("ok");
        Hour {
            start,
            end: start + jiff::SignedDuration::from_hours(1),
            level,
        }
    }

    fn at(t: &str) -> Timestamp {
        t.parse().expect("ok")
    }

    #[test]
    fn the_next_tense_period_spans_back_to_back_tense_hours() {
        use SignalLevel::*;
        let hours = [
            hour("2026-12-01T06:00:00Z", Green),
            hour("2026-12-01T07:00:00Z", Orange),
            hour("2026-12-01T08:00:00Z", Red),
            hour("2026-12-01T09:00:00Z", Green),
            hour("2026-12-01T17:00:00Z", Orange),
        ];
        let morning = TensePeriod {
            start: at("2026-12-01T07:00:00Z"),
            end: at("2026-12-01T09:00:00Z"),
            level: Red,
        };
        assert_eq!(
            next_tense(&hours, at("2026-12-01T05:00:00Z")),
            Some(morning)
        );
        // Under way: the same period, its start unchanged.
        assert_eq!(
            next_tense(&hours, at("2026-12-01T08:30:00Z")),
            Some(morning)
        );
        let evening = next_tense(&hours, at("2026-12-01T09:00:00Z")).expect("ok");
        assert_eq!(evening.start, at("2026-12-01T17:00:00Z"));
        assert_eq!(evening.level, Orange);
        assert_eq!(next_tense(&hours, at("2026-12-01T18:00:00Z")), None);
        assert_eq!(next_tense(&[], at("2026-12-01T18:00:00Z")), None);
    }

    #[test]
    fn commands_are_on_off_or_clear() {
        assert_eq!(
            parse_command(b"ON"),
            Ok(Command::Override { powered: true })
        );
        assert_eq!(
            parse_command(b" off\n"),
            Ok(Command::Override { powered: false })
        );
        assert_eq!(parse_command(b"Clear"), Ok(Command::Clear));
        for bad in [
            &b""[..],
            b"1",
            b"true",
            b"{\"state\":\"ON\"}",
            &[0xff, 0xfe],
        ] {
            assert!(parse_command(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn states_are_the_level_tempo_and_each_load_as_the_cli_shows_it() {
        let topics = Topics::new("delestage", "homeassistant");
        let status = cpb::ControllerStatus {
            level: delestage_proto::forecast::v1::SignalLevel::Orange.into(),
            forecast: Some(cpb::ForecastState {
                tempo_today: delestage_proto::forecast::v1::TempoColor::Red.into(),
                ..Default::default()
            }),
            loads: vec![cpb::LoadStatus {
                name: "boiler".to_owned(),
                desired: true,
                powered: Some(false),
                ..Default::default()
            }],
            ..Default::default()
        };
        let messages = messages(&topics, &status, &[], at("2026-12-01T05:00:00Z"));
        let get = |topic: &str| {
            messages
                .iter()
                .find(|(t, _)| t == topic)
                .map(|(_, p)| p.clone())
                .expect("ok")
        };
        assert_eq!(get("delestage/level"), "orange");
        let tempo: serde_json::Value = serde_json::from_str(&get("delestage/tempo")).expect("ok");
        assert_eq!(tempo, json!({"today": "red", "tomorrow": "unknown"}));
        let tense: serde_json::Value =
            serde_json::from_str(&get("delestage/next_tense")).expect("ok");
        assert_eq!(tense, json!({"start": null, "end": null, "level": null}));
        let load: serde_json::Value =
            serde_json::from_str(&get("delestage/load/boiler/state")).expect("ok");
        assert_eq!(load, load_json(&status.loads[0]));
        assert_eq!(load["powered"], false);
    }
}

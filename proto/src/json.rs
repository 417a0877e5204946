//! The JSON form of the contracts' messages: one place for the shapes that
//! the CLI's `--json` prints and the controller's HTTP API serves, so that a
//! script written against one reads the other.
//!
//! Names are snake_case; times are RFC 3339 (UTC); levels, reasons and
//! colours are their [`crate::vocabulary`] names (`unknown` for
//! unspecified). Pure functions of the messages.

mod budget;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::controller::v1 as cpb;
use crate::forecast::v1 as fpb;
use crate::meter::v1 as mpb;
use crate::relay::v1 as rpb;
use crate::vocabulary;

pub use budget::{budget_json, budget_line};

/// A level's name (`unknown` for unspecified), from the one vocabulary.
pub fn level_name(level: fpb::SignalLevel) -> &'static str {
    vocabulary::SignalLevel::name_or_unknown(vocabulary::SignalLevel::from_pb(level as i32))
}

/// A Tempo colour's name (`unknown` for unspecified), from the one vocabulary.
pub fn tempo_name(color: fpb::TempoColor) -> &'static str {
    vocabulary::TempoColor::name_or_unknown(vocabulary::TempoColor::from_pb(color as i32))
}

/// A reason's name (`unknown` for unspecified), from the one vocabulary.
pub fn reason_name(reason: cpb::Reason) -> &'static str {
    vocabulary::ReasonKind::name_or_unknown(vocabulary::ReasonKind::from_pb(reason as i32))
}

/// Why, in words: the one wording of the reasons, for the CLI's text and
/// (as `reason_text`) for the JSON the dashboard shows.
pub fn reason_text(reason: cpb::Reason, level: fpb::SignalLevel, color: fpb::TempoColor) -> String {
    let (level, color) = (level_name(level), tempo_name(color));
    match reason {
        cpb::Reason::Normal => "normal".to_owned(),
        cpb::Reason::ShedForLevel => format!("shed: {level} hour"),
        cpb::Reason::ShedForTempo => {
            format!("shed: {color} Tempo day, peak hours")
        }
        cpb::Reason::Anticipation if color != "unknown" => {
            format!("shed ahead of a {color} Tempo day")
        }
        cpb::Reason::Anticipation => format!("shed ahead of a {level} hour"),
        cpb::Reason::Override => "override".to_owned(),
        cpb::Reason::ForecastUnknown => "no forecast: fallback".to_owned(),
        cpb::Reason::MinOnHold => "held on (min_on)".to_owned(),
        cpb::Reason::MinOffHold => "held off (min_off)".to_owned(),
        cpb::Reason::RestoreStagger => "waiting its turn (stagger)".to_owned(),
        cpb::Reason::ComfortLimit => "comfort run (max_off reached)".to_owned(),
        cpb::Reason::ScheduledRun => "scheduled run (run_daily)".to_owned(),
        cpb::Reason::WaitingForBestHours => "waiting for its best hours".to_owned(),
        cpb::Reason::BudgetMet => "daily runtime done".to_owned(),
        cpb::Reason::RestoreJitter => "restore jitter".to_owned(),
        cpb::Reason::PowerLimit => "cut: power limit".to_owned(),
        cpb::Reason::Unspecified => "?".to_owned(),
    }
}

/// A switch's reason in words, naming the Linky meter when its colour came
/// from there.
pub fn record_reason_text(r: &cpb::SwitchRecord) -> String {
    let text = reason_text(r.reason(), r.level(), r.tempo_color());
    if r.tempo_source() == cpb::TempoSource::Meter {
        format!("{text} (colour from the Linky meter)")
    } else {
        text
    }
}

/// Where the Tempo colours come from: `rte`, `meter` or `none`.
pub fn tempo_source_name(source: cpb::TempoSource) -> &'static str {
    match source {
        cpb::TempoSource::Rte => "rte",
        cpb::TempoSource::Meter => "meter",
        cpb::TempoSource::None | cpb::TempoSource::Unspecified => "none",
    }
}

/// A message's time; `None` when absent or out of range.
pub fn time(t: Option<&prost_types::Timestamp>) -> Option<Timestamp> {
    crate::time::from_pb(t?)
}

/// RFC 3339, or null.
pub fn rfc3339(t: Option<&prost_types::Timestamp>) -> Value {
    time(t).map_or(Value::Null, |t| Value::String(t.to_string()))
}

// ---- controller ----

pub fn status_json(s: &cpb::ControllerStatus) -> Value {
    let forecast = s.forecast.clone().unwrap_or_default();
    json!({
        "at": rfc3339(s.at.as_ref()),
        "level": level_name(s.level()),
        "forecast": {
            "usable": forecast.usable,
            "fetched_at": rfc3339(forecast.fetched_at.as_ref()),
            "reason": forecast.reason,
            "generated_at": rfc3339(forecast.generated_at.as_ref()),
            "stale": forecast.stale,
            "forecast_service_reachable": forecast.forecast_service_reachable,
            "note": forecast.note,
            "tempo_today": tempo_name(forecast.tempo_today()),
            "tempo_tomorrow": tempo_name(forecast.tempo_tomorrow()),
            "tempo_source": tempo_source_name(forecast.tempo_source()),
        },
        "loads": s.loads.iter().map(load_json).collect::<Vec<_>>(),
        "relay_services": s.relay_services.iter().map(|r| json!({
            "name": r.name,
            "endpoint": r.endpoint,
            "reachable": r.reachable,
            "board_attached": r.board_attached,
            "error": r.error,
        })).collect::<Vec<_>>(),
        "power_saved_w": s.power_saved_w,
        "kept_off_today_wh": s.kept_off_today_wh,
        "meter": s.meter.as_ref().map(|m| json!({
            "relay_service": m.relay_service,
            "reading": m.reading,
            "at": rfc3339(m.at.as_ref()),
            "apparent_power_va": m.reading.then_some(m.apparent_power_va),
            "subscribed_va": m.reading.then_some(m.subscribed_va),
            "tariff_period": m.tariff_period,
            "problem": m.problem,
            "tempo_today": tempo_name(m.tempo_today()),
            "tempo_tomorrow": tempo_name(m.tempo_tomorrow()),
        })),
    })
}

pub fn load_json(l: &cpb::LoadStatus) -> Value {
    json!({
        "name": l.name,
        "relay": l.relay.as_ref().map(|r| format!("{}:{}", r.relay_service, r.channel)),
        "wiring": match l.wiring() {
            cpb::Wiring::NormallyClosed => "normally-closed",
            _ => "normally-open",
        },
        "priority": l.priority,
        "shed_at": level_name(l.shed_at()),
        "desired": l.desired,
        "powered": l.powered,
        "reason": reason_name(l.reason()),
        "reason_text": reason_text(l.reason(), l.reason_level(), l.tempo_color()),
        "reason_level": level_name(l.reason_level()),
        "tempo_color": tempo_name(l.tempo_color()),
        "shed_on_tempo": tempo_name(l.shed_on_tempo()),
        "since": rfc3339(l.since.as_ref()),
        "next_change_at": rfc3339(l.next_change_at.as_ref()),
        "next_powered": l.next_change_at.as_ref().map(|_| l.next_powered),
        "override": l.r#override.as_ref().map(|o| json!({
            "powered": o.powered,
            "until": rfc3339(o.until.as_ref()),
            "set_at": rfc3339(o.set_at.as_ref()),
        })),
        "error": l.error,
        "max_off_seconds": l.max_off.as_ref().map(|d| d.seconds),
        "budget": l.budget.as_ref().map(|b| budget_json(&l.name, b)),
        "measured_va": l.measured_va,
        "measured_samples": l.measured_samples,
        "power_cut": l.power_cut,
    })
}

pub fn plan_json(plan: &cpb::GetPlanResponse, tempo: &[fpb::TempoDay]) -> Value {
    json!({
        "computed_at": rfc3339(plan.computed_at.as_ref()),
        "loads": plan.loads.iter().map(|l| json!({
            "load": l.load,
            "intervals": l.intervals.iter().map(|i| json!({
                "start": rfc3339(i.start.as_ref()),
                "end": rfc3339(i.end.as_ref()),
                "powered": i.powered,
                "reason": reason_name(i.reason()),
                "reason_text": reason_text(i.reason(), i.level(), i.tempo_color()),
                "level": level_name(i.level()),
                "tempo_color": tempo_name(i.tempo_color()),
            })).collect::<Vec<_>>(),
            "budget": l.budget.as_ref().map(|b| budget_json(&l.load, b)),
        })).collect::<Vec<_>>(),
        "tempo_peaks": tempo_peaks(tempo).map(tempo_json).collect::<Vec<_>>(),
    })
}

/// The Tempo days whose peak hours cost more (white and red).
pub fn tempo_peaks(tempo: &[fpb::TempoDay]) -> impl Iterator<Item = &fpb::TempoDay> {
    tempo
        .iter()
        .filter(|d| matches!(d.color(), fpb::TempoColor::White | fpb::TempoColor::Red))
}

pub fn record_json(r: &cpb::SwitchRecord) -> Value {
    json!({
        "at": rfc3339(r.at.as_ref()),
        "load": r.load,
        "relay": r.relay.as_ref().map(|a| format!("{}:{}", a.relay_service, a.channel)),
        "from_powered": r.from_powered,
        "to_powered": r.to_powered,
        "reason": reason_name(r.reason()),
        "reason_text": record_reason_text(r),
        "level": level_name(r.level()),
        "tempo_source": (r.tempo_source() != cpb::TempoSource::Unspecified)
            .then(|| tempo_source_name(r.tempo_source())),
        "delta_va": r.delta_va,
    })
}

pub fn override_json(o: &cpb::Override) -> Value {
    json!({
        "load": o.load,
        "powered": o.powered,
        "until": rfc3339(o.until.as_ref()),
        "set_at": rfc3339(o.set_at.as_ref()),
    })
}

// ---- forecast ----

pub fn tempo_json(d: &fpb::TempoDay) -> Value {
    json!({
        "date": d.date,
        "color": tempo_name(d.color()),
        "start": rfc3339(d.start.as_ref()),
        "peak_end": rfc3339(d.peak_end.as_ref()),
        "end": rfc3339(d.end.as_ref()),
    })
}

pub fn forecast_json(f: &fpb::Forecast, tempo: &Result<fpb::TempoCalendar, String>) -> Value {
    let tempo = match tempo {
        Ok(cal) => json!({
            "fetched_at": rfc3339(cal.fetched_at.as_ref()),
            "stale": cal.stale,
            "days": cal.days.iter().map(tempo_json).collect::<Vec<_>>(),
        }),
        Err(why) => json!({ "unavailable": why }),
    };
    json!({
        "tempo": tempo,
        "generated_at": rfc3339(f.generated_at.as_ref()),
        "fetched_at": rfc3339(f.fetched_at.as_ref()),
        "stale": f.stale,
        "source": match f.source() {
            fpb::ForecastSource::Rte => "rte",
            fpb::ForecastSource::RteSandbox => "rte-sandbox",
            fpb::ForecastSource::File => "file",
            fpb::ForecastSource::Upstream => "upstream",
            fpb::ForecastSource::Unspecified => "unknown",
        },
        "source_detail": f.source_detail,
        "days": f.days.iter().map(|d| json!({
            "start": rfc3339(d.start.as_ref()),
            "level": level_name(d.level()),
            "message": d.message,
        })).collect::<Vec<_>>(),
        "hours": f.hours.iter().map(|h| json!({
            "start": rfc3339(h.start.as_ref()),
            "end": rfc3339(h.end.as_ref()),
            "level": level_name(h.level()),
        })).collect::<Vec<_>>(),
    })
}

// ---- relays ----

pub fn relays_json(r: &rpb::GetRelaysResponse) -> Value {
    json!({
        "board": r.board.as_ref().map(|b| json!({
            "description": b.description,
            "attached": b.attached,
            "serial_number": b.serial_number,
            "channel_count": b.channel_count,
            // 0 when unknown.
            "version": b.version,
            "hardware_failsafe": hardware_failsafe_name(b.hardware_failsafe()),
        })),
        "relays": r.relays.iter().map(relay_json).collect::<Vec<_>>(),
    })
}

fn hardware_failsafe_name(f: rpb::HardwareFailsafe) -> Option<&'static str> {
    match f {
        rpb::HardwareFailsafe::Off => Some("off"),
        rpb::HardwareFailsafe::Armed => Some("armed"),
        rpb::HardwareFailsafe::Unsupported => Some("unsupported"),
        rpb::HardwareFailsafe::Tripped => Some("tripped"),
        // An older relay-service that does not say.
        rpb::HardwareFailsafe::Unspecified => None,
    }
}

pub fn relay_json(r: &rpb::Relay) -> Value {
    json!({
        "channel": r.channel,
        "energized": r.energized,
        "label": r.label,
        "changed_at": rfc3339(r.changed_at.as_ref()),
        "switches_last_minute": r.switches_last_minute,
        "max_switches_per_minute": r.max_switches_per_minute,
        // null from an older relay-service that does not say.
        "applied": r.applied,
    })
}

// ---- meter ----

/// A meter mode's name: `historic`, `standard`, or `unknown`.
pub fn meter_mode_name(mode: mpb::MeterMode) -> &'static str {
    match mode {
        mpb::MeterMode::Historic => "historic",
        mpb::MeterMode::Standard => "standard",
        mpb::MeterMode::Unspecified => "unknown",
    }
}

pub fn meter_json(r: &mpb::MeterReading) -> Value {
    json!({
        "at": rfc3339(r.at.as_ref()),
        "apparent_power_va": r.apparent_power_va,
        "subscribed_va": r.subscribed_va,
        "tariff_period": r.tariff_period,
        "tempo_today": tempo_name(r.tempo_today()),
        "tempo_tomorrow": tempo_name(r.tempo_tomorrow()),
        "meter_id": r.meter_id,
        "mode": meter_mode_name(r.mode()),
        "phase_power_va": r.phase_power_va,
        "injected_va": r.injected_va,
        "frames_ok": r.frames_ok,
        "frames_bad": r.frames_bad,
    })
}

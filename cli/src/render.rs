//! Turning the services' answers into text for people, and JSON for
//! scripts. Pure functions of the messages (and of `now`), so they can be
//! tested without a service.

use anstyle::{AnsiColor, Color, Style};
use delestage_proto::controller::v1 as cpb;
use delestage_proto::forecast::v1 as fpb;
use delestage_proto::relay::v1 as rpb;
use fpb::SignalLevel;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

/// Colours, or none (not a terminal, or NO_COLOR set).
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    pub enabled: bool,
}

impl Paint {
    /// Colour only on a terminal, and not when NO_COLOR is set.
    pub fn for_stdout() -> Self {
        use std::io::IsTerminal;
        Self {
            enabled: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub fn style(&self, style: Style, text: &str) -> String {
        if self.enabled {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_owned()
        }
    }

    fn level(&self, level: SignalLevel, text: &str) -> String {
        self.style(level_style(level), text)
    }
}

fn level_style(level: SignalLevel) -> Style {
    let color = match level {
        SignalLevel::CarbonFree => AnsiColor::Cyan,
        SignalLevel::Green => AnsiColor::Green,
        SignalLevel::Orange => AnsiColor::Yellow,
        SignalLevel::Red => AnsiColor::Red,
        SignalLevel::Unspecified => AnsiColor::BrightBlack,
    };
    Style::new().fg_color(Some(Color::Ansi(color))).bold()
}

pub fn level_name(level: SignalLevel) -> &'static str {
    match level {
        SignalLevel::Unspecified => "unknown",
        SignalLevel::CarbonFree => "carbon-free",
        SignalLevel::Green => "green",
        SignalLevel::Orange => "orange",
        SignalLevel::Red => "red",
    }
}

pub fn reason_name(reason: cpb::Reason) -> &'static str {
    match reason {
        cpb::Reason::Unspecified => "unknown",
        cpb::Reason::Normal => "normal",
        cpb::Reason::ShedForLevel => "shed_for_level",
        cpb::Reason::Anticipation => "anticipation",
        cpb::Reason::Override => "override",
        cpb::Reason::ForecastUnknown => "forecast_unknown",
        cpb::Reason::MinOnHold => "min_on_hold",
        cpb::Reason::MinOffHold => "min_off_hold",
        cpb::Reason::RestoreStagger => "restore_stagger",
    }
}

/// Why, in words.
fn reason_text(reason: cpb::Reason, level: SignalLevel) -> String {
    match reason {
        cpb::Reason::Normal => "normal".to_owned(),
        cpb::Reason::ShedForLevel => format!("shed: {} hour", level_name(level)),
        cpb::Reason::Anticipation => format!("shed ahead of a {} hour", level_name(level)),
        cpb::Reason::Override => "override".to_owned(),
        cpb::Reason::ForecastUnknown => "no forecast: fallback".to_owned(),
        cpb::Reason::MinOnHold => "held on (min_on)".to_owned(),
        cpb::Reason::MinOffHold => "held off (min_off)".to_owned(),
        cpb::Reason::RestoreStagger => "waiting its turn (stagger)".to_owned(),
        cpb::Reason::Unspecified => "?".to_owned(),
    }
}

pub fn time(t: Option<&prost_types::Timestamp>) -> Option<Timestamp> {
    let t = t?;
    Timestamp::new(t.seconds, t.nanos).ok()
}

fn rfc3339(t: Option<&prost_types::Timestamp>) -> Value {
    time(t).map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// A time for people: local, to the minute; with the date when not today.
pub fn local(t: Timestamp, now: Timestamp) -> String {
    let tz = TimeZone::system();
    let z = t.to_zoned_datetime(tz.clone());
    if z.date() == now.to_zoned_datetime(tz).date() {
        z.strftime("%H:%M").to_string()
    } else {
        z.strftime("%a %d %H:%M").to_string()
    }
}

fn on_off(powered: bool) -> &'static str {
    if powered { "on" } else { "cut" }
}

fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len >= width {
        text.to_owned()
    } else {
        format!("{text}{}", " ".repeat(width - len))
    }
}

// ---- status ----

pub fn status_text(s: &cpb::ControllerStatus, paint: Paint, now: Timestamp) -> String {
    let mut out = String::new();
    let level = s.level();
    let forecast = s.forecast.clone().unwrap_or_default();
    out.push_str(&format!(
        "Grid now: {}   forecast: {}\n\n",
        paint.level(level, &level_name(level).to_uppercase()),
        if forecast.usable {
            match time(forecast.fetched_at.as_ref()) {
                Some(t) => format!("ok (fetched {})", local(t, now)),
                None => "ok".to_owned(),
            }
        } else {
            paint.style(
                Style::new().fg_color(Some(Color::Ansi(AnsiColor::Yellow))),
                &format!("not usable: {}", forecast.reason),
            )
        }
    ));
    let rows: Vec<[String; 6]> = s
        .loads
        .iter()
        .map(|l| {
            let relay = l.relay.as_ref().map_or(String::new(), |r| {
                format!("{}:{}", r.relay_service, r.channel)
            });
            let powered = match l.powered {
                Some(p) => on_off(p).to_owned(),
                None => "?".to_owned(),
            };
            let next = match time(l.next_change_at.as_ref()) {
                Some(t) => format!("{} at {}", on_off(l.next_powered), local(t, now)),
                None => "-".to_owned(),
            };
            [
                l.name.clone(),
                relay,
                powered,
                on_off(l.desired).to_owned(),
                reason_text(l.reason(), l.reason_level()),
                next,
            ]
        })
        .collect();
    let header = ["LOAD", "RELAY", "NOW", "WANTED", "WHY", "NEXT"];
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 6]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| pad(c, *w))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    out.push_str(&paint.style(Style::new().bold(), &line(header)));
    out.push('\n');
    for (row, l) in rows.iter().zip(&s.loads) {
        let mut text = line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
        if l.powered == Some(false) {
            text = paint.style(Style::new().dimmed(), &text);
        }
        out.push_str(&text);
        out.push('\n');
        if !l.error.is_empty() {
            out.push_str(&format!(
                "  {} {}\n",
                paint.style(
                    Style::new().fg_color(Some(Color::Ansi(AnsiColor::Red))),
                    "!"
                ),
                l.error
            ));
        }
        if let Some(o) = &l.r#override
            && let Some(until) = time(o.until.as_ref())
        {
            out.push_str(&format!(
                "  override: {} until {}\n",
                on_off(o.powered),
                local(until, now)
            ));
        }
    }
    out.push('\n');
    for r in &s.relay_services {
        let state = if !r.reachable {
            format!("UNREACHABLE: {}", r.error)
        } else if !r.board_attached {
            "reachable, board NOT attached".to_owned()
        } else {
            "ok".to_owned()
        };
        out.push_str(&format!(
            "relay-service {} ({}): {state}\n",
            r.name, r.endpoint
        ));
    }
    out
}

pub fn status_json(s: &cpb::ControllerStatus) -> Value {
    let forecast = s.forecast.clone().unwrap_or_default();
    json!({
        "at": rfc3339(s.at.as_ref()),
        "level": level_name(s.level()),
        "forecast": {
            "usable": forecast.usable,
            "fetched_at": rfc3339(forecast.fetched_at.as_ref()),
            "reason": forecast.reason,
        },
        "loads": s.loads.iter().map(load_json).collect::<Vec<_>>(),
        "relay_services": s.relay_services.iter().map(|r| json!({
            "name": r.name,
            "endpoint": r.endpoint,
            "reachable": r.reachable,
            "board_attached": r.board_attached,
            "error": r.error,
        })).collect::<Vec<_>>(),
    })
}

fn load_json(l: &cpb::LoadStatus) -> Value {
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
        "reason_level": level_name(l.reason_level()),
        "since": rfc3339(l.since.as_ref()),
        "next_change_at": rfc3339(l.next_change_at.as_ref()),
        "next_powered": l.next_change_at.as_ref().map(|_| l.next_powered),
        "override": l.r#override.as_ref().map(|o| json!({
            "powered": o.powered,
            "until": rfc3339(o.until.as_ref()),
            "set_at": rfc3339(o.set_at.as_ref()),
        })),
        "error": l.error,
    })
}

// ---- plan ----

/// One row per load, one cell per hour from the current hour to the end of
/// the plan: the cell's colour is the hour's level (from the forecast, when
/// known), `█` powered all hour, `░` cut for some of it.
pub fn plan_text(
    plan: &cpb::GetPlanResponse,
    hours: &[fpb::HourSignal],
    paint: Paint,
    now: Timestamp,
) -> String {
    let mut out = String::new();
    let Some(start) = plan
        .loads
        .iter()
        .filter_map(|l| l.intervals.first())
        .filter_map(|i| time(i.start.as_ref()))
        .min()
    else {
        return "no plan yet\n".to_owned();
    };
    let end = plan
        .loads
        .iter()
        .filter_map(|l| l.intervals.last())
        .filter_map(|i| time(i.end.as_ref()))
        .max()
        .unwrap_or(start);
    // Whole hours, from the one containing `start`.
    let first = start
        .to_zoned_datetime(TimeZone::system())
        .with()
        .minute(0)
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .map(|z| z.timestamp())
        .unwrap_or(start);
    let mut cells = Vec::new();
    let mut t = first;
    while t < end && cells.len() < 24 * 5 {
        let next = t + jiff::SignedDuration::from_hours(1);
        cells.push((t, next));
        t = next;
    }
    let level_at = |t: Timestamp| {
        hours
            .iter()
            .find(|h| {
                time(h.start.as_ref()).is_some_and(|s| s <= t)
                    && time(h.end.as_ref()).is_some_and(|e| t < e)
            })
            .map_or(SignalLevel::Unspecified, |h| h.level())
    };
    let name_width = plan
        .loads
        .iter()
        .map(|l| l.load.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);

    // Header: the hour every 3 cells.
    let mut header = " ".repeat(name_width + 2);
    for (i, (t, _)) in cells.iter().enumerate() {
        if i % 3 == 0 {
            let label = t
                .to_zoned_datetime(TimeZone::system())
                .strftime("%H")
                .to_string();
            header.push_str(&pad(&label, 3));
        }
    }
    out.push_str(header.trim_end());
    out.push('\n');
    for lp in &plan.loads {
        out.push_str(&pad(&lp.load, name_width + 2));
        for (from, to) in &cells {
            let mid = *from + jiff::SignedDuration::from_mins(30);
            let cut = lp.intervals.iter().any(|i| {
                !i.powered
                    && time(i.start.as_ref()).is_some_and(|s| s < *to)
                    && time(i.end.as_ref()).is_some_and(|e| e > *from)
            });
            let glyph = if cut { "░" } else { "█" };
            out.push_str(&paint.level(level_at(mid), glyph));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "\n█ powered  ░ cut for some or all of the hour; colour: the hour's level ({}, {}, {}, {})\n",
        paint.level(SignalLevel::CarbonFree, "carbon-free"),
        paint.level(SignalLevel::Green, "green"),
        paint.level(SignalLevel::Orange, "orange"),
        paint.level(SignalLevel::Red, "red"),
    ));
    if plan.loads.len() == 1 {
        out.push('\n');
        for i in &plan.loads[0].intervals {
            let (Some(s), Some(e)) = (time(i.start.as_ref()), time(i.end.as_ref())) else {
                continue;
            };
            out.push_str(&format!(
                "  {} → {}  {}  {}\n",
                local(s, now),
                local(e, now),
                pad(on_off(i.powered), 3),
                reason_text(i.reason(), i.level())
            ));
        }
    }
    out
}

pub fn plan_json(plan: &cpb::GetPlanResponse) -> Value {
    json!({
        "computed_at": rfc3339(plan.computed_at.as_ref()),
        "loads": plan.loads.iter().map(|l| json!({
            "load": l.load,
            "intervals": l.intervals.iter().map(|i| json!({
                "start": rfc3339(i.start.as_ref()),
                "end": rfc3339(i.end.as_ref()),
                "powered": i.powered,
                "reason": reason_name(i.reason()),
                "level": level_name(i.level()),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

// ---- forecast ----

pub fn forecast_text(f: &fpb::Forecast, paint: Paint, now: Timestamp) -> String {
    let mut out = String::new();
    let source = match f.source() {
        fpb::ForecastSource::Rte => "RTE",
        fpb::ForecastSource::RteSandbox => "RTE sandbox",
        fpb::ForecastSource::File => "file",
        fpb::ForecastSource::Unspecified => "?",
    };
    out.push_str(&format!(
        "Ecowatt forecast from {source} ({}), generated {}, fetched {}{}\n\n",
        f.source_detail,
        time(f.generated_at.as_ref()).map_or("?".to_owned(), |t| local(t, now)),
        time(f.fetched_at.as_ref()).map_or("?".to_owned(), |t| local(t, now)),
        if f.stale { ", STALE" } else { "" },
    ));
    // Ecowatt days are days in Paris, whatever this machine's zone.
    static PARIS: TimeZone = jiff::tz::get!("Europe/Paris");
    for (i, day) in f.days.iter().enumerate() {
        let Some(start) = time(day.start.as_ref()) else {
            continue;
        };
        // The day ends where the next one starts (23 or 25 hours on the
        // days clocks change), or a day later if the next one is missing.
        let end = f
            .days
            .get(i + 1)
            .and_then(|d| time(d.start.as_ref()))
            .filter(|next| *next <= start + jiff::SignedDuration::from_hours(25))
            .unwrap_or(start + jiff::SignedDuration::from_hours(24));
        let date = start
            .to_zoned_datetime(PARIS.clone())
            .strftime("%a %d %b")
            .to_string();
        let mut row = String::new();
        let mut pas = start;
        while pas < end {
            let hour = f.hours.iter().find(|h| {
                time(h.start.as_ref()).is_some_and(|s| s <= pas)
                    && time(h.end.as_ref()).is_some_and(|e| pas < e)
            });
            row.push_str(&match hour {
                Some(h) => paint.level(h.level(), "█"),
                None => " ".to_owned(),
            });
            pas += jiff::SignedDuration::from_hours(1);
        }
        out.push_str(&format!(
            "{}  {}  {}\n     {}\n",
            date,
            paint.level(
                day.level(),
                &pad(&level_name(day.level()).to_uppercase(), 11)
            ),
            row.trim_end(),
            day.message
        ));
    }
    out
}

pub fn forecast_json(f: &fpb::Forecast) -> Value {
    json!({
        "generated_at": rfc3339(f.generated_at.as_ref()),
        "fetched_at": rfc3339(f.fetched_at.as_ref()),
        "stale": f.stale,
        "source": match f.source() {
            fpb::ForecastSource::Rte => "rte",
            fpb::ForecastSource::RteSandbox => "rte-sandbox",
            fpb::ForecastSource::File => "file",
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

pub fn relays_text(r: &rpb::GetRelaysResponse, paint: Paint, now: Timestamp) -> String {
    let mut out = String::new();
    if let Some(b) = &r.board {
        out.push_str(&format!(
            "{} — {}\n\n",
            b.description,
            if b.attached {
                "attached"
            } else {
                "NOT ATTACHED"
            }
        ));
    }
    out.push_str(&paint.style(
        Style::new().bold(),
        "CH  STATE  SWITCHES/MIN  CHANGED  LABEL",
    ));
    out.push('\n');
    for relay in &r.relays {
        out.push_str(&format!(
            "{:<2}  {}  {:>5}/{:<6}  {:<7}  {}\n",
            relay.channel,
            if relay.energized {
                paint.style(Style::new().bold(), "on   ")
            } else {
                "off  ".to_owned()
            },
            relay.switches_last_minute,
            relay.max_switches_per_minute,
            time(relay.changed_at.as_ref()).map_or("-".to_owned(), |t| local(t, now)),
            relay.label
        ));
    }
    out
}

pub fn relays_json(r: &rpb::GetRelaysResponse) -> Value {
    json!({
        "board": r.board.as_ref().map(|b| json!({
            "description": b.description,
            "attached": b.attached,
            "serial_number": b.serial_number,
            "channel_count": b.channel_count,
        })),
        "relays": r.relays.iter().map(relay_json).collect::<Vec<_>>(),
    })
}

pub fn relay_json(r: &rpb::Relay) -> Value {
    json!({
        "channel": r.channel,
        "energized": r.energized,
        "label": r.label,
        "changed_at": rfc3339(r.changed_at.as_ref()),
        "switches_last_minute": r.switches_last_minute,
        "max_switches_per_minute": r.max_switches_per_minute,
    })
}

// ---- history ----

pub fn history_text(records: &[cpb::SwitchRecord], paint: Paint, now: Timestamp) -> String {
    if records.is_empty() {
        return "no switches yet\n".to_owned();
    }
    let mut out = paint.style(
        Style::new().bold(),
        "WHEN          LOAD                RELAY        SWITCH     WHY",
    );
    out.push('\n');
    for r in records {
        let relay = r.relay.as_ref().map_or(String::new(), |a| {
            format!("{}:{}", a.relay_service, a.channel)
        });
        out.push_str(&format!(
            "{}  {}  {}  {}  {}\n",
            pad(
                &time(r.at.as_ref()).map_or("?".to_owned(), |t| local(t, now)),
                12
            ),
            pad(&r.load, 18),
            pad(&relay, 11),
            pad(
                &format!("{} → {}", on_off(r.from_powered), on_off(r.to_powered)),
                9
            ),
            reason_text(r.reason(), r.level()),
        ));
    }
    out
}

pub fn record_json(r: &cpb::SwitchRecord) -> Value {
    json!({
        "at": rfc3339(r.at.as_ref()),
        "load": r.load,
        "relay": r.relay.as_ref().map(|a| format!("{}:{}", a.relay_service, a.channel)),
        "from_powered": r.from_powered,
        "to_powered": r.to_powered,
        "reason": reason_name(r.reason()),
        "level": level_name(r.level()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> prost_types::Timestamp {
        let t: Timestamp = s.parse().expect("ts");
        prost_types::Timestamp {
            seconds: t.as_second(),
            nanos: 0,
        }
    }

    fn status() -> cpb::ControllerStatus {
        cpb::ControllerStatus {
            at: Some(ts("2026-12-08T17:00:00Z")),
            level: SignalLevel::Red.into(),
            forecast: Some(cpb::ForecastState {
                usable: true,
                fetched_at: Some(ts("2026-12-08T16:50:00Z")),
                reason: String::new(),
            }),
            loads: vec![cpb::LoadStatus {
                name: "water-heater".to_owned(),
                relay: Some(cpb::RelayAddress {
                    relay_service: "garage".to_owned(),
                    channel: 0,
                }),
                desired: false,
                powered: Some(false),
                reason: cpb::Reason::ShedForLevel.into(),
                reason_level: SignalLevel::Red.into(),
                next_change_at: Some(ts("2026-12-08T19:00:00Z")),
                next_powered: true,
                ..Default::default()
            }],
            relay_services: vec![cpb::RelayServiceStatus {
                name: "garage".to_owned(),
                endpoint: "http://127.0.0.1:50051".to_owned(),
                reachable: true,
                board_attached: true,
                error: String::new(),
            }],
        }
    }

    #[test]
    fn status_text_says_what_why_and_next_without_colour_codes() {
        let text = status_text(
            &status(),
            Paint { enabled: false },
            "2026-12-08T17:00:00Z".parse().expect("ts"),
        );
        assert!(text.contains("Grid now: RED"), "{text}");
        assert!(
            text.contains("water-heater") && text.contains("garage:0"),
            "{text}"
        );
        assert!(text.contains("shed: red hour"), "{text}");
        assert!(text.contains("on at"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no escape codes when colour is off"
        );
        let coloured = status_text(
            &status(),
            Paint { enabled: true },
            "2026-12-08T17:00:00Z".parse().expect("ts"),
        );
        assert!(coloured.contains('\u{1b}'));
    }

    #[test]
    fn status_json_has_stable_names() {
        let v = status_json(&status());
        assert_eq!(v["level"], "red");
        assert_eq!(v["loads"][0]["reason"], "shed_for_level");
        assert_eq!(v["loads"][0]["relay"], "garage:0");
        assert_eq!(v["loads"][0]["powered"], false);
        assert_eq!(v["loads"][0]["next_powered"], true);
        assert_eq!(v["relay_services"][0]["reachable"], true);
    }

    #[test]
    fn the_plan_timeline_marks_cut_hours() {
        let plan = cpb::GetPlanResponse {
            computed_at: Some(ts("2026-12-08T16:00:00Z")),
            loads: vec![cpb::LoadPlan {
                load: "heater".to_owned(),
                intervals: vec![
                    cpb::PlanInterval {
                        start: Some(ts("2026-12-08T16:00:00Z")),
                        end: Some(ts("2026-12-08T17:00:00Z")),
                        powered: true,
                        reason: cpb::Reason::Normal.into(),
                        level: 0,
                    },
                    cpb::PlanInterval {
                        start: Some(ts("2026-12-08T17:00:00Z")),
                        end: Some(ts("2026-12-08T19:00:00Z")),
                        powered: false,
                        reason: cpb::Reason::ShedForLevel.into(),
                        level: SignalLevel::Red.into(),
                    },
                ],
            }],
        };
        let text = plan_text(
            &plan,
            &[],
            Paint { enabled: false },
            "2026-12-08T16:00:00Z".parse().expect("ts"),
        );
        assert!(text.contains("heater  █░░"), "{text}");
        assert!(text.contains("shed: red hour"), "{text}");
    }
}

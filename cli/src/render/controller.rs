//! The controller's answers: status, plan, history, overrides.

use delestage_proto::controller::v1 as cpb;
use delestage_proto::forecast::v1::{self as fpb, SignalLevel};
use jiff::Timestamp;

use super::*;

pub(crate) fn status_text(s: &cpb::ControllerStatus, paint: Paint, clock: &Clock) -> String {
    let mut out = String::new();
    let level = s.level();
    let forecast = s.forecast.clone().unwrap_or_default();
    out.push_str(&grid_line(level, &forecast, paint, clock));
    // Above the loads' table: the grid line ends with a blank line, which
    // the lines about Tempo, energy and power take over.
    let more = signal_lines(s, &forecast, paint);
    if !more.is_empty() {
        out.pop();
        out.push_str(&more);
        out.push('\n');
    }
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
                Some(t) => format!("{} at {}", on_off(l.next_powered), clock.show(t)),
                None => "-".to_owned(),
            };
            [
                l.name.clone(),
                relay,
                powered,
                on_off(l.desired).to_owned(),
                reason_text(l.reason(), l.reason_level(), l.tempo_color()),
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
        out.push_str(&load_notes(l, paint, clock));
    }
    out.push_str(&budget::section(
        s.loads.iter().map(|l| (l.name.as_str(), l.budget.as_ref())),
    ));
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

/// The lines under a load's row: its error, its override, what it was
/// measured to draw.
fn load_notes(l: &cpb::LoadStatus, paint: Paint, clock: &Clock) -> String {
    let mut out = String::new();
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
            "  override: {}{} until {}\n",
            on_off(o.powered),
            override_waits(l, o.powered, clock),
            clock.show(until)
        ));
    }
    if let Some(va) = l.measured_va {
        out.push_str(&format!(
            "  measured: ~{va} W ({} sample{})\n",
            l.measured_samples,
            if l.measured_samples == 1 { "" } else { "s" }
        ));
    }
    out
}

/// "Grid now: LEVEL   forecast: ...", and a blank line.
fn grid_line(
    level: SignalLevel,
    forecast: &cpb::ForecastState,
    paint: Paint,
    clock: &Clock,
) -> String {
    format!(
        "Grid now: {}   forecast: {}\n\n",
        paint.level(level, &level_name(level).to_uppercase()),
        if forecast.usable && !forecast.note.is_empty() {
            // Acted on, but kept through an outage: say so.
            paint.style(
                Style::new().fg_color(Some(Color::Ansi(AnsiColor::Yellow))),
                &format!("ok, {}", forecast.note),
            )
        } else if forecast.usable {
            match time(forecast.fetched_at.as_ref()) {
                Some(t) => format!("ok (fetched {})", clock.show(t)),
                None => "ok".to_owned(),
            }
        } else {
            paint.style(
                Style::new().fg_color(Some(Color::Ansi(AnsiColor::Yellow))),
                &format!("not usable: {}", forecast.reason),
            )
        }
    )
}

/// The lines under the grid's: where Tempo comes from, the energy kept
/// off today, the meter's power; each ends with a newline.
fn signal_lines(s: &cpb::ControllerStatus, forecast: &cpb::ForecastState, paint: Paint) -> String {
    let mut out = String::new();
    let source = match forecast.tempo_source() {
        cpb::TempoSource::Rte => Some("RTE"),
        cpb::TempoSource::Meter => Some("the Linky meter"),
        cpb::TempoSource::None | cpb::TempoSource::Unspecified => None,
    };
    if let Some(source) = source {
        out.push_str(&format!(
            "Tempo: today {}, tomorrow {} (from {source})\n",
            paint.tempo(forecast.tempo_today(), tempo_name(forecast.tempo_today())),
            paint.tempo(
                forecast.tempo_tomorrow(),
                tempo_name(forecast.tempo_tomorrow())
            ),
        ));
    }
    if s.kept_off_today_wh > 0 {
        out.push_str(&format!(
            "Today: {:.1} kWh kept off the grid during tense hours\n",
            s.kept_off_today_wh as f64 / 1000.0
        ));
    }
    if let Some(m) = &s.meter {
        if m.reading {
            let saved = s
                .power_saved_w
                .map(|w| format!("; cut loads save ~{w} W"))
                .unwrap_or_default();
            out.push_str(&format!(
                "Power: {} VA of {} VA subscribed (Linky on {}){saved}\n",
                m.apparent_power_va, m.subscribed_va, m.relay_service
            ));
        } else {
            out.push_str(&format!(
                "Power: unknown (Linky on {}: {})\n",
                m.relay_service, m.problem
            ));
        }
    }
    out
}

/// " at 14:32 (min_off)" for an override that waits for the load's
/// minimum time; nothing for one in force.
fn override_waits(l: &cpb::LoadStatus, powered: bool, clock: &Clock) -> String {
    if l.desired == powered {
        return String::new();
    }
    let hold = match l.reason() {
        cpb::Reason::MinOffHold => " (min_off)",
        cpb::Reason::MinOnHold => " (min_on)",
        _ => "",
    };
    match time(l.next_change_at.as_ref()) {
        Some(at) if l.next_powered == powered => format!(" at {}{hold}", clock.show(at)),
        _ => format!(", waiting{hold}"),
    }
}

// ---- plan ----

/// One row per load, one cell per hour from the current hour to the end of
/// the plan: the cell's colour is the hour's level (from the forecast, when
/// known), `█` powered all hour, `░` cut for some of it.
pub(crate) fn plan_text(
    plan: &cpb::GetPlanResponse,
    hours: &[fpb::HourSignal],
    tempo: &[fpb::TempoDay],
    paint: Paint,
    clock: &Clock,
) -> String {
    let Some(cells) = hour_cells(plan, clock) else {
        return "no plan yet\n".to_owned();
    };
    let name_width = plan
        .loads
        .iter()
        .map(|l| l.load.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    out.push_str(&hours_header(&cells, name_width, clock));
    out.push_str(&load_rows(plan, &cells, hours, name_width, paint));
    out.push_str(&tempo_row(tempo, &cells, name_width, paint));
    out.push_str(&format!(
        "\n█ powered  ░ cut for some or all of the hour; colour: the hour's level ({}, {}, {}, {}); Tempo W/R: peak hours of a white/red day\n",
        paint.level(SignalLevel::CarbonFree, "carbon-free"),
        paint.level(SignalLevel::Green, "green"),
        paint.level(SignalLevel::Orange, "orange"),
        paint.level(SignalLevel::Red, "red"),
    ));
    out.push_str(&budget::section(
        plan.loads
            .iter()
            .map(|l| (l.load.as_str(), l.budget.as_ref())),
    ));
    if let [only] = plan.loads.as_slice() {
        out.push('\n');
        out.push_str(&intervals_text(only, clock));
    }
    out
}

/// The timeline's cells: whole hours (in the clock's zone) from the one
/// holding the plan's start to its end, five days at most; `None` without
/// a plan.
fn hour_cells(plan: &cpb::GetPlanResponse, clock: &Clock) -> Option<Vec<(Timestamp, Timestamp)>> {
    let start = plan
        .loads
        .iter()
        .filter_map(|l| l.intervals.first())
        .filter_map(|i| time(i.start.as_ref()))
        .min()?;
    let end = plan
        .loads
        .iter()
        .filter_map(|l| l.intervals.last())
        .filter_map(|i| time(i.end.as_ref()))
        .max()
        .unwrap_or(start);
    let first = start
        .to_zoned_datetime(clock.tz.clone())
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
    Some(cells)
}

/// The hour every 3 cells.
fn hours_header(cells: &[(Timestamp, Timestamp)], name_width: usize, clock: &Clock) -> String {
    let mut header = " ".repeat(name_width + 2);
    for (i, (t, _)) in cells.iter().enumerate() {
        if i % 3 == 0 {
            let label = t
                .to_zoned_datetime(clock.tz.clone())
                .strftime("%H")
                .to_string();
            header.push_str(&pad(&label, 3));
        }
    }
    format!("{}\n", header.trim_end())
}

/// One row per load: `█` powered all hour, `░` cut for some of it,
/// coloured by the hour's level.
fn load_rows(
    plan: &cpb::GetPlanResponse,
    cells: &[(Timestamp, Timestamp)],
    hours: &[fpb::HourSignal],
    name_width: usize,
    paint: Paint,
) -> String {
    let level_at = |t: Timestamp| {
        hours
            .iter()
            .find(|h| {
                time(h.start.as_ref()).is_some_and(|s| s <= t)
                    && time(h.end.as_ref()).is_some_and(|e| t < e)
            })
            .map_or(SignalLevel::Unspecified, |h| h.level())
    };
    let mut out = String::new();
    for lp in &plan.loads {
        out.push_str(&pad(&lp.load, name_width + 2));
        for (from, to) in cells {
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
    out
}

/// The Tempo peak hours of white and red days, under the loads (nothing
/// when there are none in view).
fn tempo_row(
    tempo: &[fpb::TempoDay],
    cells: &[(Timestamp, Timestamp)],
    name_width: usize,
    paint: Paint,
) -> String {
    let peak_at = |t: Timestamp| {
        delestage_proto::json::tempo_peaks(tempo)
            .find(|d| {
                time(d.start.as_ref()).is_some_and(|s| s <= t)
                    && time(d.peak_end.as_ref()).is_some_and(|e| t < e)
            })
            .map(|d| d.color())
    };
    let mid = |from: &Timestamp| *from + jiff::SignedDuration::from_mins(30);
    if !cells.iter().any(|(from, _)| peak_at(mid(from)).is_some()) {
        return String::new();
    }
    let mut out = pad("Tempo", name_width + 2);
    for (from, _) in cells {
        out.push_str(&match peak_at(mid(from)) {
            Some(fpb::TempoColor::Red) => paint.tempo(fpb::TempoColor::Red, "R"),
            Some(c) => paint.tempo(c, "W"),
            None => " ".to_owned(),
        });
    }
    out.push('\n');
    out
}

/// One load's intervals, with their reasons.
fn intervals_text(load: &cpb::LoadPlan, clock: &Clock) -> String {
    let mut out = String::new();
    for i in &load.intervals {
        let (Some(s), Some(e)) = (time(i.start.as_ref()), time(i.end.as_ref())) else {
            continue;
        };
        out.push_str(&format!(
            "  {} → {}  {}  {}\n",
            clock.show(s),
            clock.show(e),
            pad(on_off(i.powered), 3),
            reason_text(i.reason(), i.level(), i.tempo_color())
        ));
    }
    out
}

// ---- forecast ----

pub(crate) fn history_text(records: &[cpb::SwitchRecord], paint: Paint, clock: &Clock) -> String {
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
                &time(r.at.as_ref()).map_or("?".to_owned(), |t| clock.show(t)),
                12
            ),
            pad(&r.load, 18),
            pad(&relay, 11),
            pad(
                &format!("{} → {}", on_off(r.from_powered), on_off(r.to_powered)),
                9
            ),
            delestage_proto::json::record_reason_text(r),
        ));
    }
    out
}

//! Turning the services' answers into text for people, and JSON for
//! scripts. Pure functions of the messages (and of `now`), so they can be
//! tested without a service.

mod budget;
use anstyle::{AnsiColor, Color, Style};
use delestage_proto::forecast::v1 as fpb;
use fpb::SignalLevel;
use jiff::Timestamp;
use jiff::tz::TimeZone;

mod controller;
mod forecast;
mod relays;

pub(crate) use controller::{history_text, plan_text, status_text};
// The JSON shapes are shared with the controller's HTTP API.
pub(crate) use delestage_proto::json::{
    forecast_json, level_name, meter_json, override_json, plan_json, reason_text, record_json,
    relay_json, relays_json, status_json, tempo_name, time,
};
pub(crate) use forecast::forecast_text;
pub(crate) use relays::{meter_text, relays_text};

/// Colours, or none (not a terminal, or NO_COLOR set).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paint {
    pub enabled: bool,
}

impl Paint {
    /// Colour only on a terminal, and not when NO_COLOR is set.
    pub(crate) fn for_stdout() -> Self {
        use std::io::IsTerminal;
        Self {
            enabled: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub(crate) fn style(&self, style: Style, text: &str) -> String {
        if self.enabled {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_owned()
        }
    }

    fn level(&self, level: SignalLevel, text: &str) -> String {
        self.style(level_style(level), text)
    }

    fn tempo(&self, color: fpb::TempoColor, text: &str) -> String {
        let ansi = match color {
            fpb::TempoColor::Blue => AnsiColor::Blue,
            fpb::TempoColor::White => AnsiColor::BrightWhite,
            fpb::TempoColor::Red => AnsiColor::Red,
            fpb::TempoColor::Unspecified => AnsiColor::BrightBlack,
        };
        self.style(Style::new().fg_color(Some(Color::Ansi(ansi))).bold(), text)
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

/// When and where the reader is: the moment the output is made, and the
/// zone its times are shown in. Europe/Paris unless `--tz` says otherwise,
/// whatever the box's own zone: the dashboard, the forecast's days and the
/// Tempo peak hours are all Paris time, and a box set to UTC must not show
/// a restore at 12:31 Paris as "11:31".
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    pub now: Timestamp,
    pub tz: TimeZone,
}

/// Europe/Paris, compiled in: no tzdata needed on the box.
pub(crate) static PARIS: TimeZone = jiff::tz::get!("Europe/Paris");

/// The zone `--tz` names (an IANA name such as `Asia/Tokyo`).
pub(crate) fn zone(name: &str) -> Result<TimeZone, crate::connect::CliError> {
    if name == "Europe/Paris" {
        return Ok(PARIS.clone());
    }
    TimeZone::get(name).map_err(|e| {
        crate::connect::CliError::Usage(format!(
            "--tz {name}: {e} (write an IANA zone such as Europe/Paris or America/Martinique; this box needs tzdata for zones other than Paris)"
        ))
    })
}

impl Clock {
    pub(crate) fn new(now: Timestamp, tz: TimeZone) -> Self {
        Self { now, tz }
    }

    /// Now, in Paris.
    pub(crate) fn paris_now() -> Self {
        Self::new(Timestamp::now(), PARIS.clone())
    }

    /// A time for people, to the minute: the time today, the day this
    /// year, the date in another year (an override until next spring must
    /// not read as this week).
    pub(crate) fn show(&self, t: Timestamp) -> String {
        let z = t.to_zoned_datetime(self.tz.clone());
        let today = self.now.to_zoned_datetime(self.tz.clone()).date();
        if z.date() == today {
            z.strftime("%H:%M").to_string()
        } else if z.year() == today.year() {
            z.strftime("%a %d %H:%M").to_string()
        } else {
            z.strftime("%Y-%m-%d %H:%M").to_string()
        }
    }

    /// The zone's name, when it is not Paris (the output then says so).
    pub(crate) fn other_zone(&self) -> Option<String> {
        let name = self.tz.iana_name().unwrap_or("a fixed offset");
        (name != "Europe/Paris").then(|| name.to_owned())
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

#[cfg(test)]
mod tests;

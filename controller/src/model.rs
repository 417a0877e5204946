//! A load: an appliance on one relay, how it is wired, when it is shed, what
//! it does when the forecast is unknown (the words themselves are
//! `delestage_proto::vocabulary`'s).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

pub use delestage_proto::vocabulary::{Fallback, SignalLevel, TempoColor, Wiring};

/// Europe/Paris, compiled in: Tempo days and run windows are in Paris
/// wall-clock time, whatever the box's time zone.
pub(crate) static PARIS: jiff::tz::TimeZone = jiff::tz::get!("Europe/Paris");

/// Where a load's relay is: a relay-service (by its name in the config) and
/// a channel on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayAddress {
    pub relay_service: String,
    pub channel: u32,
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.relay_service, self.channel)
    }
}

/// One appliance the controller manages.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub name: String,
    pub relay: RelayAddress,
    pub wiring: Wiring,
    /// ORANGE or RED: cut for every hour at or above it. `None`: the load
    /// sheds on Tempo only.
    pub shed_at: Option<SignalLevel>,
    /// WHITE or RED: cut in the peak hours (06:00-22:00 Paris time) of
    /// Tempo days of this colour or dearer. `None`: not on Tempo.
    pub shed_on_tempo: Option<TempoColor>,
    /// The order within one pass: higher is cut after and restored before
    /// lower ones (restores are staggered, so it decides who waits). Which
    /// loads are cut at all is `shed_at` / `shed_on_tempo`'s business.
    pub priority: i32,
    pub min_on: Duration,
    pub min_off: Duration,
    /// Cut this long before a tense hour (or a Tempo peak) begins.
    pub anticipate: Duration,
    pub when_forecast_unknown: Fallback,
    /// Where its relay goes once a relay box that lost its controller has
    /// followed the plan it was handed to its end.
    pub when_controller_lost: Fallback,
    /// Never cut longer than this in a row: then a comfort run.
    pub max_off: Option<Duration>,
    /// A daily runtime, placed in the cleanest hours of its windows.
    pub run_daily: Option<DailyRun>,
    /// Its nominal power, when given (`power_w`): what the power rule
    /// counts until it has measured the load.
    pub power_w: Option<u32>,
    /// Cut for power when the house nears its subscribed power.
    pub shed_on_power: bool,
}

impl Load {
    /// A load with the defaults of a `[[load]]` table: cut at `shed_at`, not
    /// on Tempo, priority 0, no minimum on/off time, no anticipation, kept
    /// as it is without a forecast, powered when the controller is lost,
    /// no comfort limit, no daily runtime.
    pub fn new(name: &str, relay: RelayAddress, wiring: Wiring, shed_at: SignalLevel) -> Self {
        Self {
            name: name.to_owned(),
            relay,
            wiring,
            shed_at: Some(shed_at),
            shed_on_tempo: None,
            priority: 0,
            min_on: Duration::ZERO,
            min_off: Duration::ZERO,
            anticipate: Duration::ZERO,
            when_forecast_unknown: Fallback::Keep,
            when_controller_lost: Fallback::Restore,
            max_off: None,
            run_daily: None,
            power_w: None,
            shed_on_power: false,
        }
    }
}

/// `run_daily` and `run_window`: so much power per Paris day, in these
/// wall-clock windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRun {
    pub budget: Duration,
    /// Never empty: the whole day when `run_window` is not set.
    pub windows: Vec<RunWindow>,
}

/// A Paris wall-clock window, `start` to `end`; one that ends at or before
/// its start crosses midnight (`22:00-06:00`), and `00:00-00:00` is the
/// whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunWindow {
    pub start: jiff::civil::Time,
    pub end: jiff::civil::Time,
}

impl RunWindow {
    /// The whole day.
    pub const ALL_DAY: RunWindow = RunWindow {
        start: jiff::civil::Time::midnight(),
        end: jiff::civil::Time::midnight(),
    };

    /// The parts of `[day_start, day_end)` (a day's wall-clock times, as
    /// offsets from its midnight) it covers, as offsets from midnight:
    /// one piece, or two when it crosses midnight.
    pub fn pieces(self) -> Vec<(jiff::civil::Time, Option<jiff::civil::Time>)> {
        // `None` as an end means the end of the day.
        let midnight = jiff::civil::Time::midnight();
        if self.end > self.start {
            vec![(self.start, Some(self.end))]
        } else if self.end == midnight {
            vec![(self.start, None)]
        } else {
            vec![(midnight, Some(self.end)), (self.start, None)]
        }
    }

    /// Its length in a day without a clock change.
    pub fn nominal_length(self) -> Duration {
        let secs = |t: jiff::civil::Time| {
            i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second())
        };
        let len = (secs(self.end) - secs(self.start)).rem_euclid(86_400);
        Duration::from_secs(if len == 0 { 86_400 } else { len as u64 })
    }
}

impl fmt::Display for RunWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.strftime("%H:%M"),
            self.end.strftime("%H:%M")
        )
    }
}

impl std::str::FromStr for RunWindow {
    type Err = String;

    /// `"22:00-06:00"`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?}: write HH:MM-HH:MM in Paris time, e.g. \"22:00-06:00\"");
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let time = |t: &str| -> Result<jiff::civil::Time, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
            let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if h == 24 && m == 0 {
                return Ok(jiff::civil::Time::midnight());
            }
            jiff::civil::Time::new(h, m, 0, 0).map_err(|_| bad())
        };
        Ok(Self {
            start: time(start)?,
            end: time(end)?,
        })
    }
}

/// A level's name (`unknown` for unspecified), from the one vocabulary.
pub fn level_name(level: Option<SignalLevel>) -> &'static str {
    SignalLevel::name_or_unknown(level)
}

/// A name as a Home Assistant object id, which takes `[A-Za-z0-9_-]`:
/// anything else becomes `_`. Discovery uses it, and the config check
/// refuses two loads that it would make one entity.
pub(crate) fn object_id(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect()
}

/// One forecast hour, [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hour {
    pub start: Timestamp,
    pub end: Timestamp,
    pub level: SignalLevel,
}

/// One Tempo tariff day: [start, end) is 06:00 to 06:00 Paris time, and
/// its peak hours are [start, peak_end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TariffDay {
    /// Its date (Paris time).
    pub date: jiff::civil::Date,
    pub start: Timestamp,
    pub peak_end: Timestamp,
    pub end: Timestamp,
    pub color: TempoColor,
}

/// What the controller knows of the forecast.
#[derive(Debug, Clone, Default)]
pub(crate) struct ForecastSeen {
    /// The first answer (a forecast, or a failure) has come: until then the
    /// reconciler waits, so that a restart does not act on "no forecast".
    pub settled: bool,
    /// Connected to the forecast-service now.
    pub connected: bool,
    /// The last forecast received: kept across disconnections (and
    /// restarts), acted on until it is too old.
    pub hours: Arc<Vec<Hour>>,
    pub fetched_at: Option<Timestamp>,
    /// When RTE generated it: what its age counts from.
    pub generated_at: Option<Timestamp>,
    /// The forecast-service itself says the forecast is stale.
    pub stale: bool,
    /// Why there is no forecast, or why the connection broke.
    pub problem: Option<String>,
    /// The Tempo days the policy and the status use: RTE's, and the
    /// meter's for the dates RTE does not know
    /// (`tempo_source::merge`).
    pub tempo: Arc<Vec<TariffDay>>,
    /// The last Tempo calendar received from RTE (empty: none, or Tempo is
    /// off at the forecast-service); kept like the forecast. Tempo days
    /// are facts once published, so no age rule applies: a day absent is
    /// unknown.
    pub rte_tempo: Arc<Vec<TariffDay>>,
    /// What the Linky meter last said (`[meter] relay`).
    pub meter_tempo: Option<MeterTempo>,
    /// The dates of `tempo` whose colour came from the meter.
    pub tempo_from_meter: Arc<Vec<jiff::civil::Date>>,
    /// The last date a disagreement between RTE and the meter was logged.
    pub tempo_disagreement_said: Option<jiff::civil::Date>,
}

/// What the meter last said about the colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MeterTempo {
    /// When the reading was taken: its "today" is the tariff day under way
    /// then.
    pub at: Timestamp,
    pub today: Option<TempoColor>,
    pub tomorrow: Option<TempoColor>,
}

/// Where the colours shown come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum TempoSource {
    Rte,
    Meter,
    #[default]
    None,
}

/// What the controller knows of the Linky meter (`[meter] relay`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MeterSeen {
    pub relay_service: String,
    /// The last reading, and when it was taken.
    pub reading: Option<MeterPower>,
    /// Why the meter cannot be followed now, if it cannot.
    pub problem: Option<String>,
}

/// One reading's power figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MeterPower {
    pub at: Timestamp,
    pub apparent_power_va: u32,
    pub subscribed_va: u32,
    pub tariff_period: String,
    /// The colours the meter says.
    pub tempo_today: Option<TempoColor>,
    pub tempo_tomorrow: Option<TempoColor>,
}

/// What the controller knows of one relay-service.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelaySeen {
    pub settled: bool,
    pub connected: bool,
    pub attached: bool,
    /// Indexed by channel.
    pub energized: Vec<bool>,
    /// Indexed by channel: the board holds `energized` now (an older
    /// relay-service that does not say is taken at its word).
    pub applied: Vec<bool>,
    pub problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_windows_parse_and_cross_midnight() {
        let night: RunWindow = "22:00-06:00".parse().expect("parses");
        assert_eq!(night.to_string(), "22:00-06:00");
        assert_eq!(night.nominal_length(), Duration::from_secs(8 * 3600));
        assert_eq!(night.pieces().len(), 2);
        let noon: RunWindow = "12:00-14:30".parse().expect("parses");
        assert_eq!(noon.nominal_length(), Duration::from_secs(9000));
        assert_eq!(noon.pieces().len(), 1);
        let evening: RunWindow = "18:00-24:00".parse().expect("parses");
        assert_eq!(evening.pieces(), vec![(evening.start, None)]);
        assert_eq!(
            RunWindow::ALL_DAY.nominal_length(),
            Duration::from_secs(86_400)
        );
        for bad in ["22:00", "25:00-06:00", "aa:00-06:00", "22:00-06:61"] {
            let err = bad.parse::<RunWindow>().expect_err(bad);
            assert!(err.contains("HH:MM-HH:MM"), "{err}");
        }
    }

    #[test]
    fn levels_are_ordered_by_tension() {
        assert!(SignalLevel::Red > SignalLevel::Orange);
        assert!(SignalLevel::Orange > SignalLevel::Green);
        assert!(SignalLevel::Green > SignalLevel::CarbonFree);
    }
}

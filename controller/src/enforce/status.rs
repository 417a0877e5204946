//! What GetStatus and WatchStatus show, built with no I/O from one pass's
//! plan, what the relays are seen doing, the refusals and `now`; and the
//! events WatchEvents streams.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::diff::Refusal;
use super::observe::RelayView;
use crate::model::{ForecastSeen, MeterPower, MeterSeen};
use crate::model::{Load, SignalLevel, TempoColor};
use crate::policy::{DayBudget, Plan, Reason};
use crate::store::{StoredOverride, SwitchRecord};
use crate::tempo_source::{self, TempoSource};

/// What WatchEvents streams.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Switched(SwitchRecord),
    LoadChanged {
        at: Timestamp,
        status: Box<LoadStatus>,
    },
}

/// Tempo days are dated in Paris time.
static PARIS: jiff::tz::TimeZone = jiff::tz::get!("Europe/Paris");

/// Where the forecast stands, for status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ForecastStatus {
    pub usable: bool,
    pub fetched_at: Option<Timestamp>,
    pub generated_at: Option<Timestamp>,
    /// The forecast-service could not refresh it within its own max age.
    pub stale: bool,
    pub reachable: bool,
    /// Why it is not usable, when it is not.
    pub reason: String,
    /// What people should know about a usable one (kept through an outage).
    pub note: String,
    /// The colours of today's and tomorrow's Tempo days (Paris dates).
    pub tempo_today: Option<TempoColor>,
    pub tempo_tomorrow: Option<TempoColor>,
    /// Where those colours come from.
    pub tempo_source: TempoSource,
}

/// One load's status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadStatus {
    pub load: Load,
    pub desired: bool,
    pub reason: Reason,
    pub since: Timestamp,
    /// From the relay; `None` when unknown.
    pub powered: Option<bool>,
    pub next_change: Option<(Timestamp, bool)>,
    pub override_: Option<StoredOverride>,
    pub error: Option<String>,
    /// Today's daily runtime, for a `run_daily` load.
    pub budget: Option<DayBudget>,
    /// Its measured power and the samples behind it (`[power]`).
    pub measured: Option<(u32, usize)>,
}

impl LoadStatus {
    /// Equal but for what changes with every pass while a budgeted load
    /// runs (its runtime done and left): no event for that alone.
    pub(crate) fn same_but_time_passing(&self, other: &LoadStatus) -> bool {
        let runs = |s: &LoadStatus| s.budget.as_ref().map(|b| b.runs.clone());
        let rest = |s: &LoadStatus| LoadStatus {
            budget: None,
            ..s.clone()
        };
        runs(self) == runs(other) && rest(self) == rest(other)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RelayServiceStatus {
    pub name: String,
    pub endpoint: String,
    pub reachable: bool,
    pub attached: bool,
    pub error: Option<String>,
}

/// Everything GetStatus shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Status {
    pub at: Timestamp,
    /// The level of the hour now; `None` without a usable forecast.
    pub level: Option<SignalLevel>,
    pub forecast: ForecastStatus,
    pub loads: Vec<LoadStatus>,
    pub relay_services: Vec<RelayServiceStatus>,
    /// The Linky meter, when one is followed.
    pub meter: Option<MeterStatus>,
    /// What the loads cut now draw when powered (W), when known.
    pub power_saved_w: Option<u32>,
    /// Today's energy kept off the grid during tense hours (Wh).
    pub kept_off_today_wh: u64,
}

/// The power kept off now: each cut load's measured power (else its
/// `power_w`); `None` when no cut load has a known power.
fn power_saved(loads: &[LoadStatus]) -> Option<u32> {
    let known: Vec<u32> = loads
        .iter()
        .filter(|l| l.powered == Some(false))
        .filter_map(|l| l.measured.map(|(va, _)| va).or(l.load.power_w))
        .collect();
    (!known.is_empty()).then(|| known.iter().sum())
}

/// The Linky meter as the status shows it: its last reading while recent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MeterStatus {
    pub relay_service: String,
    /// `None` when no reading is recent enough to show.
    pub reading: Option<MeterPower>,
    pub problem: Option<String>,
}

/// A reading older than this is not shown as the power now.
const METER_STALE_AFTER: SignedDuration = SignedDuration::from_secs(10);

/// The meter's status from what was last seen of it.
fn meter_status(seen: MeterSeen, now: Timestamp) -> MeterStatus {
    let fresh = seen
        .reading
        .clone()
        .filter(|r| now.duration_since(r.at) <= METER_STALE_AFTER);
    let problem = match (&fresh, &seen.reading, seen.problem) {
        (Some(_), _, _) => None,
        (None, _, Some(problem)) => Some(problem),
        (None, Some(r), None) => Some(format!("no reading since {}", r.at)),
        (None, None, None) => Some("waiting for the meter's first reading".to_owned()),
    };
    MeterStatus {
        relay_service: seen.relay_service,
        reading: fresh,
        problem,
    }
}

impl Status {
    /// Before the first pass.
    pub(crate) fn starting(now: Timestamp) -> Self {
        Self {
            at: now,
            level: None,
            forecast: ForecastStatus {
                usable: false,
                fetched_at: None,
                generated_at: None,
                stale: false,
                reachable: false,
                reason: "starting".to_owned(),
                note: String::new(),
                tempo_today: None,
                tempo_tomorrow: None,
                tempo_source: TempoSource::None,
            },
            loads: Vec::new(),
            relay_services: Vec::new(),
            meter: None,
            power_saved_w: None,
            kept_off_today_wh: 0,
        }
    }

    /// Equal but for the time it was computed.
    pub(crate) fn same_as(&self, other: &Status) -> bool {
        self.level == other.level
            && self.forecast == other.forecast
            && self.loads == other.loads
            && self.relay_services == other.relay_services
            && self.meter == other.meter
            && self.power_saved_w == other.power_saved_w
            && self.kept_off_today_wh == other.kept_off_today_wh
    }
}

/// Whether the forecast can be acted on, and if not, why.
///
/// The rule: a forecast governs the hours it covers until RTE generated it
/// longer than `max_age` ago (fetched_at stands in for a forecast that does
/// not say when it was generated). Neither the forecast-service's `stale`
/// flag nor a lost connection makes it unknown: an outage of RTE's API or of
/// the forecast-service is most likely on exactly the days that matter, and
/// the last forecast is better knowledge than none. Hours it does not cover
/// get each load's fallback (the policy sees no level for them).
pub(crate) fn forecast_status(
    f: &ForecastSeen,
    max_age: Duration,
    now: Timestamp,
) -> ForecastStatus {
    let max_age_signed = SignedDuration::try_from(max_age).unwrap_or(SignedDuration::MAX);
    let born = f.generated_at.or(f.fetched_at);
    let reason = if !f.settled {
        Some("waiting for the forecast-service".to_owned())
    } else if f.hours.is_empty() {
        Some(
            f.problem
                .clone()
                .unwrap_or_else(|| "the forecast is empty".to_owned()),
        )
    } else if let Some(born) = born
        && now.duration_since(born) > max_age_signed
    {
        Some(format!(
            "the forecast was generated at {born}, longer ago than forecast_max_age ({})",
            humantime::format_duration(max_age)
        ))
    } else {
        None
    };
    let mut notes = Vec::new();
    if reason.is_none() {
        if !f.connected {
            notes.push(format!(
                "{}; acting on the last forecast received",
                f.problem
                    .as_deref()
                    .unwrap_or("forecast-service unreachable")
            ));
        }
        if f.stale {
            notes.push("the forecast-service could not refresh it (stale)".to_owned());
        }
    }
    let today = now.to_zoned_datetime(PARIS.clone()).date();
    let color_of = |date: Option<jiff::civil::Date>| {
        f.tempo
            .iter()
            .find(|d| Some(d.date) == date)
            .map(|d| d.color)
    };
    ForecastStatus {
        usable: reason.is_none(),
        fetched_at: f.fetched_at,
        generated_at: f.generated_at,
        stale: f.stale,
        reachable: f.connected,
        reason: reason.unwrap_or_default(),
        note: notes.join("; "),
        tempo_today: color_of(Some(today)),
        tempo_tomorrow: color_of(today.tomorrow().ok()),
        tempo_source: tempo_source::source_of(
            &f.tempo,
            &f.tempo_from_meter,
            &[Some(today), today.tomorrow().ok()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        ),
    }
}

/// When the forecast stops governing (see [`forecast_status`]):
/// `max_age` after it was generated (or fetched, when it does not say).
/// `None` when that cannot be said.
pub(crate) fn forecast_expiry(f: &ForecastSeen, max_age: Duration) -> Option<Timestamp> {
    let born = f.generated_at.or(f.fetched_at)?;
    born.checked_add(SignedDuration::try_from(max_age).ok()?)
        .ok()
}

/// Since when each load's (desired, reason) has held: carried from pass to
/// pass, so that `since` survives a status that did not change.
pub(crate) type Since = HashMap<String, (bool, Reason, Timestamp)>;

/// Everything one status is built from.
pub(crate) struct StatusInput<'a> {
    pub(crate) loads: &'a [Load],
    pub(crate) plan: &'a Plan,
    pub(crate) relays: RelayView<'a>,
    /// What was last seen of the meter, when one is followed.
    pub(crate) meter: Option<MeterSeen>,
    /// Each load's measured power and samples (`[power]`).
    pub(crate) measured: HashMap<String, (u32, usize)>,
    pub(crate) refusals: &'a HashMap<String, Refusal>,
    pub(crate) overrides: &'a HashMap<String, StoredOverride>,
    pub(crate) forecast: ForecastStatus,
    /// The level of the hour now (`None` without a usable forecast).
    pub(crate) level: Option<SignalLevel>,
    pub(crate) now: Timestamp,
}

/// Builds the status, and moves `since` on.
pub(crate) fn build(input: StatusInput<'_>, since: &mut Since) -> Status {
    let now = input.now;
    let mut loads = Vec::with_capacity(input.loads.len());
    for (load, lp) in input.loads.iter().zip(&input.plan.loads) {
        let Some(interval) = lp.at(now) else { continue };
        let held_since = match since.get(&load.name) {
            Some((d, r, t)) if *d == interval.powered && *r == interval.reason => *t,
            _ => now,
        };
        since.insert(
            load.name.clone(),
            (interval.powered, interval.reason, held_since),
        );
        let powered = input.relays.powered(load);
        let error = match (input.refusals.get(&load.name), powered) {
            (Some(r), _) => Some(r.message.clone()),
            (None, None) => input.relays.blocked(load),
            // A power cut overrides the override: say so where people look.
            (None, Some(_))
                if interval.reason == Reason::PowerLimit
                    && input.overrides.contains_key(&load.name) =>
            {
                Some("override suspended: power limit".to_owned())
            }
            (None, Some(_)) => None,
        };
        loads.push(LoadStatus {
            load: load.clone(),
            desired: interval.powered,
            reason: interval.reason,
            since: held_since,
            powered,
            next_change: lp.next_change(now).map(|i| (i.start, i.powered)),
            override_: input.overrides.get(&load.name).copied(),
            error,
            budget: lp.budget.clone(),
            measured: input.measured.get(&load.name).copied(),
        });
    }
    let relay_services = input
        .relays
        .relays
        .iter()
        .map(|r| RelayServiceStatus {
            name: r.name.to_owned(),
            endpoint: r.endpoint.to_owned(),
            reachable: r.seen.connected,
            attached: r.seen.attached,
            error: r.seen.problem.clone(),
        })
        .collect();
    let power_saved_w = power_saved(&loads);
    Status {
        at: now,
        level: input.level,
        forecast: input.forecast,
        loads,
        relay_services,
        meter: input.meter.map(|m| meter_status(m, now)),
        power_saved_w,
        kept_off_today_wh: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::Hour;

    const MAX_AGE: Duration = Duration::from_secs(72 * 3600);

    fn seen(generated_hours_ago: i64, now: Timestamp) -> ForecastSeen {
        let ago = |h: i64| now - SignedDuration::from_hours(h);
        ForecastSeen {
            settled: true,
            connected: true,
            hours: Arc::new(vec![Hour {
                start: ago(1),
                end: ago(-1),
                level: SignalLevel::Red,
            }]),
            fetched_at: Some(ago(generated_hours_ago - 1)),
            generated_at: Some(ago(generated_hours_ago)),
            stale: false,
            problem: None,
            ..ForecastSeen::default()
        }
    }

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().expect("ts")
    }

    #[test]
    fn a_stale_forecast_or_a_lost_service_still_governs_until_the_max_age() {
        let mut f = seen(10, now());
        f.stale = true;
        f.connected = false;
        f.problem = Some("forecast-service unreachable: connection refused".to_owned());
        let s = forecast_status(&f, MAX_AGE, now());
        assert!(s.usable, "{s:?}");
        assert!(s.stale && !s.reachable);
        assert!(
            s.note.contains("acting on the last forecast received"),
            "{}",
            s.note
        );
        assert!(s.note.contains("stale"), "{}", s.note);
    }

    #[test]
    fn the_age_counts_from_the_generation_not_the_fetch() {
        let mut f = seen(80, now());
        // Fetched just now, but generated 80 h ago.
        f.fetched_at = Some(now());
        let s = forecast_status(&f, MAX_AGE, now());
        assert!(!s.usable);
        assert!(
            s.reason.contains("generated at") && s.reason.contains("3days"),
            "{}",
            s.reason
        );
        // Without a generation time, the fetch stands in.
        f.generated_at = None;
        assert!(forecast_status(&f, MAX_AGE, now()).usable);
    }

    #[test]
    fn no_forecast_yet_is_not_usable() {
        let f = ForecastSeen {
            settled: true,
            ..ForecastSeen::default()
        };
        assert!(!forecast_status(&f, MAX_AGE, now()).usable);
        assert!(!forecast_status(&ForecastSeen::default(), MAX_AGE, now()).usable);
    }
}

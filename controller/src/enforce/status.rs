//! What GetStatus and WatchStatus show, built with no I/O from one pass's
//! plan, what the relays are seen doing, the refusals and `now`.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::diff::Refusal;
use super::observe::RelayView;
use crate::follow::ForecastSeen;
use crate::model::{Load, SignalLevel};
use crate::policy::{Plan, Reason};
use crate::store::StoredOverride;

/// Where the forecast stands, for status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ForecastStatus {
    pub usable: bool,
    pub fetched_at: Option<Timestamp>,
    pub reason: String,
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
                reason: "starting".to_owned(),
            },
            loads: Vec::new(),
            relay_services: Vec::new(),
        }
    }

    /// Equal but for the time it was computed.
    pub(crate) fn same_as(&self, other: &Status) -> bool {
        self.level == other.level
            && self.forecast == other.forecast
            && self.loads == other.loads
            && self.relay_services == other.relay_services
    }
}

/// Whether the forecast can be acted on, and if not, why.
pub(crate) fn forecast_status(
    f: &ForecastSeen,
    max_age: Duration,
    now: Timestamp,
) -> ForecastStatus {
    let max_age_signed = SignedDuration::try_from(max_age).unwrap_or(SignedDuration::MAX);
    let reason = if !f.settled {
        Some("waiting for the forecast-service".to_owned())
    } else if !f.connected {
        Some(
            f.problem
                .clone()
                .unwrap_or_else(|| "forecast-service unreachable".to_owned()),
        )
    } else if f.hours.is_empty() {
        Some(
            f.problem
                .clone()
                .unwrap_or_else(|| "the forecast is empty".to_owned()),
        )
    } else if let Some(fetched) = f.fetched_at
        && now.duration_since(fetched) > max_age_signed
    {
        Some(format!(
            "the forecast was fetched at {fetched}, longer ago than forecast_max_age ({})",
            humantime::format_duration(max_age)
        ))
    } else if f.stale {
        Some("the forecast-service says its forecast is stale".to_owned())
    } else {
        None
    };
    ForecastStatus {
        usable: reason.is_none(),
        fetched_at: f.fetched_at,
        reason: reason.unwrap_or_default(),
    }
}

/// Since when each load's (desired, reason) has held: carried from pass to
/// pass, so that `since` survives a status that did not change.
pub(crate) type Since = HashMap<String, (bool, Reason, Timestamp)>;

/// Everything one status is built from.
pub(crate) struct StatusInput<'a> {
    pub(crate) loads: &'a [Load],
    pub(crate) plan: &'a Plan,
    pub(crate) relays: RelayView<'a>,
    /// Each relay-service's endpoint, in the order of `relays.names`.
    pub(crate) endpoints: &'a [String],
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
        });
    }
    let relay_services = input
        .relays
        .names
        .iter()
        .zip(input.relays.seen)
        .zip(input.endpoints)
        .map(|((name, seen), endpoint)| RelayServiceStatus {
            name: name.clone(),
            endpoint: endpoint.clone(),
            reachable: seen.connected,
            attached: seen.attached,
            error: seen.problem.clone(),
        })
        .collect();
    Status {
        at: now,
        level: input.level,
        forecast: input.forecast,
        loads,
        relay_services,
    }
}

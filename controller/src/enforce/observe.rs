//! What the relays are seen doing, load by load: a pure view over the
//! latest state of each relay-service (from its WatchRelays follower).

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::model::Load;
use crate::model::RelaySeen;
use crate::policy::{self, LoadState};
use crate::store::Store;

/// A relay-service as one pass sees it: what was last seen of it, under
/// its configured name and endpoint.
#[derive(Debug, Clone)]
pub(crate) struct SeenRelay<'a> {
    pub(crate) name: &'a str,
    pub(crate) endpoint: &'a str,
    pub(crate) seen: RelaySeen,
}

/// The configured relay-services, in config order, with what was last seen
/// of each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelayView<'a> {
    pub(crate) relays: &'a [SeenRelay<'a>],
}

impl<'a> RelayView<'a> {
    fn of(&self, load: &Load) -> Option<&'a RelaySeen> {
        self.relays
            .iter()
            .find(|r| r.name == load.relay.relay_service)
            .map(|r| &r.seen)
    }

    /// Whether the load is powered, from its relay; `None` if unknown:
    /// the relay-service is unreachable, or its board does not hold the
    /// relay's state right now (unplugged, a failed write, a failsafe trip).
    pub(crate) fn powered(&self, load: &Load) -> Option<bool> {
        let seen = self.of(load)?;
        if !seen.connected {
            return None;
        }
        let channel = load.relay.channel as usize;
        if !seen.applied.get(channel).copied().unwrap_or(true) {
            return None;
        }
        let energized = *seen.energized.get(channel)?;
        Some(load.wiring.powered_when(energized))
    }

    /// Why a load's relay cannot be switched now, if it cannot.
    pub(crate) fn blocked(&self, load: &Load) -> Option<String> {
        let service = &load.relay.relay_service;
        let Some(seen) = self.of(load) else {
            return Some(format!("relay-service {service:?} is not configured"));
        };
        if !seen.settled {
            return Some(format!("waiting for relay-service {service:?}"));
        }
        if !seen.connected {
            return Some(format!(
                "relay-service {service:?} unreachable: {}",
                seen.problem.as_deref().unwrap_or("no connection")
            ));
        }
        if load.relay.channel as usize >= seen.energized.len() {
            return Some(format!(
                "relay-service {service:?} has no channel {} (it has 0..={}); fix the config",
                load.relay.channel,
                seen.energized.len().saturating_sub(1)
            ));
        }
        if !seen.attached {
            return Some(format!(
                "relay-service {service:?}: the board is not attached"
            ));
        }
        if !seen
            .applied
            .get(load.relay.channel as usize)
            .copied()
            .unwrap_or(true)
        {
            return Some(format!(
                "relay-service {service:?}: the board does not hold channel {}'s state right now (a failed write or a failsafe trip; it is being re-applied)",
                load.relay.channel
            ));
        }
        None
    }
}

/// What each load is doing now, as the policy needs it: the relay's actual
/// state when known (with the time of our last switch, if that switch is
/// what put it there), else what we last commanded.
pub(crate) fn load_states(
    loads: &[Load],
    store: &Store,
    relays: &RelayView<'_>,
) -> HashMap<String, LoadState> {
    let mut states = HashMap::new();
    for load in loads {
        let last = store.last_switch(&load.name);
        let state = match relays.powered(load) {
            Some(powered) => {
                let ours = last.filter(|r| r.to_powered == powered);
                LoadState {
                    powered,
                    since: ours.map(|r| r.at),
                    reason: ours.map(|r| r.reason),
                }
            }
            None => match last {
                Some(r) => LoadState {
                    powered: r.to_powered,
                    since: Some(r.at),
                    reason: Some(r.reason),
                },
                None => continue,
            },
        };
        states.insert(load.name.clone(), state);
    }
    states
}

/// How long each `run_daily` load has been powered today (Paris time)
/// before `now`, from the history: what counts toward its budget. A load
/// the history says nothing of counts from `watched_since` (when this
/// controller started), as it is now.
pub(crate) fn delivered_today(
    loads: &[Load],
    store: &Store,
    states: &HashMap<String, LoadState>,
    watched_since: Timestamp,
    now: Timestamp,
) -> HashMap<String, Duration> {
    let Some((midnight, _)) = policy::day_of(now) else {
        return HashMap::new();
    };
    loads
        .iter()
        .filter(|l| l.run_daily.is_some())
        .map(|l| {
            let delivered = store
                .powered_between(&l.name, midnight, now)
                .unwrap_or_else(|| {
                    let powered = states.get(&l.name).is_some_and(|s| s.powered);
                    let from = watched_since.clamp(midnight, now);
                    if powered {
                        now.duration_since(from).try_into().unwrap_or_default()
                    } else {
                        Duration::ZERO
                    }
                });
            (l.name.clone(), delivered)
        })
        .collect()
}

//! The decision of one reconcile pass, with no I/O: given the plan, what the
//! relays are seen doing, the switches refused earlier and `now`, which
//! relays to switch, in which order.
//!
//! The rules, each checked by the property tests below:
//! - a relay whose state is unknown (its relay-service is unreachable, or
//!   has no such channel) is never switched;
//! - cuts come before restores; cuts least important first, restores most
//!   important first;
//! - a load whose last switch was refused is not tried again before its
//!   retry time, and a load whose switch is still under way is not
//!   switched again;
//! - every other load whose relay differs from the plan is switched.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;

use super::observe::RelayView;
use crate::model::{Load, SignalLevel};
use crate::policy::{Plan, Reason};

/// A switch that failed (or could not be tried), and when to try again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    /// Shown as the load's `error`.
    pub(crate) message: String,
    /// Failed attempts in a row; 0 for "could not be tried" (blocked).
    pub(crate) attempts: u32,
    /// Not before this, when `attempts > 0`.
    pub(crate) retry_at: Timestamp,
}

/// One switch to make.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Switch {
    /// Index into the configured loads.
    pub(crate) load: usize,
    pub(crate) from: bool,
    pub(crate) to: bool,
    pub(crate) reason: Reason,
    /// The level the switch is for, for the record: the one it sheds for
    /// or anticipates, else the hour's; `None` when unknown.
    pub(crate) level: Option<SignalLevel>,
}

/// What one pass decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Diff {
    /// In the order to make them.
    pub(crate) switches: Vec<Switch>,
    /// Loads whose relay now agrees with the plan: forget their refusals.
    pub(crate) settled: Vec<usize>,
    /// Loads that differ from the plan but cannot be switched, and why.
    pub(crate) blocked: Vec<(usize, String)>,
}

/// Compares `plan` with what the relays are doing (`relays`), load by load.
/// `level` is the level of the hour now, for the switch records.
pub(crate) fn diff(
    loads: &[Load],
    plan: &Plan,
    relays: &RelayView<'_>,
    refusals: &HashMap<String, Refusal>,
    in_flight: &HashSet<String>,
    level: Option<SignalLevel>,
    now: Timestamp,
) -> Diff {
    let mut out = Diff::default();
    for (i, (load, lp)) in loads.iter().zip(&plan.loads).enumerate() {
        let Some(interval) = lp.at(now) else { continue };
        let Some(actual) = relays.powered(load) else {
            continue;
        };
        if actual == interval.powered {
            out.settled.push(i);
            continue;
        }
        if let Some(why) = relays.blocked(load) {
            out.blocked.push((i, why));
            continue;
        }
        let waiting = refusals
            .get(&load.name)
            .is_some_and(|r| r.attempts > 0 && r.retry_at > now);
        if waiting || in_flight.contains(&load.name) {
            continue;
        }
        out.switches.push(Switch {
            load: i,
            from: actual,
            to: interval.powered,
            reason: interval.reason,
            // A cut ahead of a red hour is recorded as for red, not for
            // the green hour it is made in.
            level: interval.reason.level().or(level),
        });
    }
    // Cuts before restores; cuts least important first, restores most
    // important first. Stable, so equal priorities keep the config's order.
    out.switches.sort_by(|a, b| {
        let (pa, pb) = (loads[a.load].priority, loads[b.load].priority);
        a.to.cmp(&b.to)
            .then_with(|| if a.to { pb.cmp(&pa) } else { pa.cmp(&pb) })
    });
    out
}

#[cfg(test)]
mod tests;

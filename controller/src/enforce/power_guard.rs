//! Enforcement's side of shedding by power: feeds the pure rule
//! ([`crate::power`]) with each new meter reading and what the relays
//! show, says what it decided, and measures each load's power from the
//! readings around its switches ([`crate::power::estimate`]).

use std::collections::{HashMap, VecDeque};

use jiff::{SignedDuration, Timestamp};

use super::observe::RelayView;
use crate::model::{Load, MeterSeen};
use crate::power::estimate::{self, Estimate, Switched};
use crate::power::{self, Decision, PowerLoad, PowerSettings, PowerState, Reading};
use crate::store::Store;

/// Readings and switches are kept this long: the estimator's window, and
/// the one before it.
const KEEP: SignedDuration = SignedDuration::from_secs(60);

/// The rule's state and the estimator's memory.
#[derive(Debug, Default)]
pub(crate) struct PowerGuard {
    pub(crate) state: PowerState,
    /// (time, VA), oldest first.
    readings: VecDeque<(Timestamp, u32)>,
    /// Every load's switches, oldest first; `measured` once sampled.
    switches: VecDeque<(Switched, bool)>,
    pub(crate) estimates: HashMap<String, Estimate>,
}

impl PowerGuard {
    /// One reconcile pass: a new reading is remembered, measured switches
    /// sampled, and the rule decides. Returns the loads cut for power now.
    pub(crate) fn pass(
        &mut self,
        settings: &PowerSettings,
        meter: Option<&MeterSeen>,
        loads: &[Load],
        relays: &RelayView<'_>,
        store: &Store,
        now: Timestamp,
    ) -> &[String] {
        let reading = meter.and_then(|m| m.reading.as_ref()).map(|r| Reading {
            at: r.at,
            apparent_power_va: r.apparent_power_va,
            subscribed_va: r.subscribed_va,
        });
        if let Some(r) = reading
            && self.readings.back().is_none_or(|(at, _)| *at < r.at)
        {
            self.readings.push_back((r.at, r.apparent_power_va));
        }
        self.sample(now);
        let limit = reading.map_or(0, |r| settings.limit(r.subscribed_va));
        let power_loads: Vec<PowerLoad> = loads
            .iter()
            .map(|l| PowerLoad {
                name: l.name.clone(),
                priority: l.priority,
                shed_on_power: l.shed_on_power,
                powered: relays.powered(l),
                power_va: self
                    .estimates
                    .get(&l.name)
                    .and_then(Estimate::measured_va)
                    .or(l.power_w)
                    .unwrap_or(limit / 5),
                off_since: store
                    .last_switch(&l.name)
                    .filter(|r| !r.to_powered)
                    .map(|r| r.at),
                min_off: l.min_off,
            })
            .collect();
        match power::step(&mut self.state, settings, reading, &power_loads, now) {
            Decision::Nothing => {}
            Decision::Cut {
                load,
                power_va,
                threshold_va,
            } => {
                tracing::warn!(%load, power_va, threshold_va, "the house nears its subscribed power: cutting a load");
            }
            Decision::NothingLeftToCut {
                power_va,
                threshold_va,
            } => {
                tracing::warn!(
                    power_va,
                    threshold_va,
                    "the house nears its subscribed power and no shed_on_power load is left to cut"
                );
            }
            Decision::Restore { load, power_va } => {
                tracing::info!(%load, power_va, "room under the subscribed power again: bringing a load back");
            }
            Decision::Frozen => {
                tracing::warn!(
                    "no valid reading from the Linky meter for 10 s: power decisions frozen (nothing is brought back for power, what is cut stays cut)"
                );
            }
        }
        metrics::gauge!("controller_power_cut_loads").set(self.state.cut.len() as f64);
        &self.state.cut
    }

    /// A switch made (any reason): sampled once its window has passed.
    pub(crate) fn switched(&mut self, load: &str, at: Timestamp, to_powered: bool) {
        self.switches.push_back((
            Switched {
                load: load.to_owned(),
                at,
                to_powered,
            },
            false,
        ));
    }

    /// Samples the switches whose window is over; forgets what is too old.
    fn sample(&mut self, now: Timestamp) {
        let all: Vec<Switched> = self.switches.iter().map(|(s, _)| s.clone()).collect();
        let readings: Vec<(Timestamp, u32)> = self.readings.iter().copied().collect();
        for (switch, measured) in self.switches.iter_mut() {
            if *measured || now < switch.at + estimate::AFTER_TO {
                continue;
            }
            *measured = true;
            if let Some(va) = estimate::sample(switch, &readings, &all) {
                let e = self.estimates.entry(switch.load.clone()).or_default();
                e.add(va);
                tracing::info!(
                    load = %switch.load,
                    sample_va = va,
                    measured_va = e.measured_va(),
                    samples = e.samples.len(),
                    "measured a load's power from its switch"
                );
            }
        }
        let horizon = now - KEEP;
        while self.readings.front().is_some_and(|(at, _)| *at < horizon) {
            self.readings.pop_front();
        }
        while self
            .switches
            .front()
            .is_some_and(|(s, measured)| *measured && s.at < horizon)
        {
            self.switches.pop_front();
        }
    }
}

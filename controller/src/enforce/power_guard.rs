//! Enforcement's side of shedding by power: feeds the pure rule
//! ([`crate::power`]) with each new meter reading and what the relays
//! show, says what it decided, and measures each load's power from the
//! readings around its switches ([`crate::power::estimate`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::observe::RelayView;
use crate::model::{Load, MeterSeen};
use crate::power::estimate::{self, Estimate, Switched};
use crate::power::{self, Decision, PowerLoad, PowerSettings, PowerState, Reading};
use crate::store::Store;

/// Readings and switches are kept this long: the estimator's window, and
/// the one before it.
const KEEP: SignedDuration = SignedDuration::from_secs(60);

/// The measured switches kept for the history (`delta_va`).
const DELTAS_KEPT: usize = 2000;

/// The rule's state and the estimator's memory.
#[derive(Debug, Default)]
pub(crate) struct PowerGuard {
    pub(crate) state: PowerState,
    /// (time, VA), oldest first.
    readings: VecDeque<(Timestamp, u32)>,
    /// Every load's switches, oldest first; `measured` once sampled.
    switches: VecDeque<(Switched, bool)>,
    pub(crate) estimates: HashMap<String, Estimate>,
    /// Each measured switch's sample, by load and switch time, oldest
    /// first.
    deltas: VecDeque<(String, Timestamp, u32)>,
    /// `power.json` in the state dir: the estimates and deltas survive a
    /// restart. `None`: not kept (tests).
    file: Option<PathBuf>,
    /// Today's energy kept off during tense hours: the Paris date, in
    /// W·s (Wh × 3600), and the last pass counted.
    kept_off: Option<(jiff::civil::Date, u64)>,
    last_counted: Option<Timestamp>,
}

/// `power.json`.
#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    estimates: BTreeMap<String, Vec<u32>>,
    deltas: Vec<DeltaOnDisk>,
    /// Today's energy kept off during tense hours: (Paris date, W·s).
    #[serde(default)]
    kept_off: Option<(String, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeltaOnDisk {
    load: String,
    at: String,
    delta_va: u32,
}

impl PowerGuard {
    /// With the estimates kept in `state_dir` (a file that cannot be read
    /// is said, and started afresh: only measurements are lost).
    pub(crate) fn in_dir(state_dir: &Path) -> Self {
        let file = state_dir.join("power.json");
        let mut guard = Self {
            file: Some(file.clone()),
            ..Self::default()
        };
        let text = match std::fs::read(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return guard,
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "cannot read the measured powers; measuring afresh");
                return guard;
            }
        };
        match serde_json::from_slice::<OnDisk>(&text) {
            Ok(on_disk) => {
                for (load, samples) in on_disk.estimates {
                    let e = guard.estimates.entry(load).or_default();
                    for va in samples {
                        e.add(va);
                    }
                }
                guard.deltas = on_disk
                    .deltas
                    .into_iter()
                    .filter_map(|d| Some((d.load, d.at.parse().ok()?, d.delta_va)))
                    .collect();
                guard.kept_off = on_disk
                    .kept_off
                    .and_then(|(date, ws)| Some((date.parse().ok()?, ws)));
            }
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "the measured powers cannot be read; measuring afresh");
            }
        }
        guard
    }

    /// What the rule counts for `load`: its measured power once three
    /// samples agree on it (one sample can be an appliance the meter saw
    /// switch at the same moment), else its `power_w`, else what was
    /// measured, else 20 % of the limit.
    fn power_of(&self, load: &Load, limit: u32) -> u32 {
        let measured = self.estimates.get(&load.name);
        let value = measured.and_then(Estimate::measured_va);
        match (value, measured.map_or(0, |e| e.samples.len())) {
            (Some(va), n) if n >= 3 => va,
            _ => load.power_w.or(value).unwrap_or(limit / 5),
        }
    }

    /// Counts the energy kept off since the last pass when the hour is
    /// tense (`saved_w`: what the cut loads draw when powered); returns
    /// today's total in Wh. Kept in `power.json` each time it grows by
    /// 60 kJ (about 17 Wh), not at every pass.
    pub(crate) fn keep_off(&mut self, saved_w: Option<u32>, tense: bool, now: Timestamp) -> u64 {
        let today = now.to_zoned_datetime(crate::model::PARIS.clone()).date();
        if self.kept_off.is_none_or(|(date, _)| date != today) {
            self.kept_off = Some((today, 0));
        }
        // A gap (a frozen process) is not counted past a few seconds.
        let dt = self
            .last_counted
            .map_or(0, |t| now.duration_since(t).as_secs().clamp(0, 5) as u64);
        self.last_counted = Some(now);
        let mut saved_minute = false;
        if let Some((_, ws)) = self.kept_off.as_mut()
            && tense
            && let Some(w) = saved_w
        {
            let before = *ws / 60_000;
            *ws = ws.saturating_add(u64::from(w) * dt);
            saved_minute = *ws / 60_000 != before;
        }
        if saved_minute {
            self.save();
        }
        self.kept_off.map_or(0, |(_, ws)| ws / 3600)
    }

    /// A load's measured power and the number of samples it rests on.
    pub(crate) fn measured(&self, load: &str) -> Option<(u32, usize)> {
        let e = self.estimates.get(load)?;
        Some((e.measured_va()?, e.samples.len()))
    }

    /// The power measured around `load`'s switch at `at`, if it was.
    pub(crate) fn delta_of(&self, load: &str, at: Timestamp) -> Option<u32> {
        self.deltas
            .iter()
            .rev()
            .find(|(l, t, _)| l == load && *t == at)
            .map(|(_, _, va)| *va)
    }

    /// Writes the estimates and deltas, off the async workers.
    fn save(&self) {
        let Some(file) = self.file.clone() else {
            return;
        };
        let on_disk = OnDisk {
            version: 1,
            estimates: self
                .estimates
                .iter()
                .map(|(l, e)| (l.clone(), e.samples.iter().copied().collect()))
                .collect(),
            deltas: self
                .deltas
                .iter()
                .map(|(load, at, va)| DeltaOnDisk {
                    load: load.clone(),
                    at: at.to_string(),
                    delta_va: *va,
                })
                .collect(),
            kept_off: self.kept_off.map(|(date, ws)| (date.to_string(), ws)),
        };
        tokio::task::spawn_blocking(move || {
            let written = serde_json::to_vec(&on_disk)
                .map_err(|e| e.to_string())
                .and_then(|json| {
                    delestage_runtime::files::write_atomic(&file, &json).map_err(|e| e.to_string())
                });
            if let Err(e) = written {
                tracing::error!(file = %file.display(), error = %e, "cannot keep the measured powers");
            }
        });
    }

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
                power_va: self.power_of(l, limit),
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
        let due = self
            .switches
            .iter()
            .any(|(s, measured)| !*measured && now >= s.at + estimate::AFTER_TO);
        if !due {
            self.forget_before(now - KEEP);
            return;
        }
        let all: Vec<Switched> = self.switches.iter().map(|(s, _)| s.clone()).collect();
        let readings: Vec<(Timestamp, u32)> = self.readings.iter().copied().collect();
        let mut new_samples = false;
        for (switch, measured) in self.switches.iter_mut() {
            if *measured || now < switch.at + estimate::AFTER_TO {
                continue;
            }
            *measured = true;
            if let Some(va) = estimate::sample(switch, &readings, &all) {
                let e = self.estimates.entry(switch.load.clone()).or_default();
                e.add(va);
                self.deltas.push_back((switch.load.clone(), switch.at, va));
                if self.deltas.len() > DELTAS_KEPT {
                    self.deltas.pop_front();
                }
                new_samples = true;
                tracing::info!(
                    load = %switch.load,
                    sample_va = va,
                    measured_va = e.measured_va(),
                    samples = e.samples.len(),
                    "measured a load's power from its switch"
                );
            }
        }
        if new_samples {
            self.save();
        }
        self.forget_before(now - KEEP);
    }

    /// Drops the readings, and the measured switches, older than `horizon`.
    fn forget_before(&mut self, horizon: Timestamp) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn energy_is_kept_off_only_in_tense_hours_and_counted_per_paris_day() {
        let mut guard = PowerGuard::default();
        let start = at("2026-12-02T17:00:00Z");
        // 3 kW cut for 20 minutes of tense hours, a pass a second: 1 kWh.
        let mut total = 0;
        for s in 0..=1200 {
            total = guard.keep_off(Some(3000), true, start + SignedDuration::from_secs(s));
        }
        assert_eq!(total, 1000);
        // Not tense: nothing more; nothing cut: nothing more.
        let later = start + SignedDuration::from_secs(1300);
        assert_eq!(guard.keep_off(Some(3000), false, later), 1000);
        assert_eq!(
            guard.keep_off(None, true, later + SignedDuration::from_secs(1)),
            1000
        );
        // A gap (the process frozen for an hour) counts 5 s at most.
        let after_gap = later + SignedDuration::from_hours(1);
        assert_eq!(guard.keep_off(Some(3600), true, after_gap), 1005);
        // Midnight in Paris (23:00 UTC in winter): a new day, which counts
        // from this pass (5 s at most since the last one: 4 Wh).
        assert_eq!(
            guard.keep_off(Some(3000), true, at("2026-12-02T23:00:01Z")),
            4
        );
    }
}

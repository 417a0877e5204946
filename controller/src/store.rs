//! What the controller must not forget across restarts: the overrides
//! people set, and the history of every switch it made.
//!
//! - `overrides.json`: the whole set, replaced atomically on each change.
//! - `history.jsonl`: one JSON record per line, appended and fsynced on each
//!   switch. A crash can at worst leave a torn last line; it is cut off at
//!   start (and reported), the lines before it are kept.
//! - `instance-id`: 128 random bits in hex, written once: this controller's
//!   identity, which seeds its restore jitter (the same delay every restart).
//! - `forecast.json`: the last forecast and Tempo calendar received
//!   ([`ForecastFile`]), so that a restart acts on them at once.
//!
//! Every file is read defensively at start (size limits, set aside when
//! unusable; the history streamed, see [`history_file`]).
//!
//! Plain files rather than a database: a few switches a day, read once at
//! start, and a person can read them with `jq`.

mod forecast_file;
mod history_file;

pub(crate) use forecast_file::ForecastFile;
mod instance_id;

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use delestage_proto::vocabulary::ReasonKind;

use crate::Error;
use crate::model::{RelayAddress, SignalLevel, TempoColor, level_name};
use crate::policy::Reason;
use crate::tempo_source::TempoSource;

/// At most this many records are kept in memory (the file keeps them all).
const HISTORY_IN_MEMORY: usize = 100_000;

/// An override as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredOverride {
    pub powered: bool,
    pub until: Timestamp,
    pub set_at: Timestamp,
    /// Acts at once, without waiting for the load's minimum on/off time.
    pub force: bool,
}

/// The longest an override may last. Longer is a typo (`until` in 2062), or
/// a load taken out of the plan for good, which the config says better.
pub(crate) const OVERRIDE_MAX_DAYS: i64 = 366;

/// Whether an override set at `now` may last until `until`: in the future,
/// and at most a year ahead. The error says which, for the person who asked.
pub(crate) fn check_override_until(until: Timestamp, now: Timestamp) -> Result<(), String> {
    if until <= now {
        return Err(format!("until: {until} is not in the future"));
    }
    let longest = jiff::SignedDuration::from_hours(24 * OVERRIDE_MAX_DAYS);
    if until.duration_since(now) > longest {
        return Err(format!(
            "until: {until} is more than a year ahead: an override lasts {OVERRIDE_MAX_DAYS} days at most"
        ));
    }
    Ok(())
}

/// One switch the controller made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SwitchRecord {
    pub at: Timestamp,
    pub load: String,
    pub relay: RelayAddress,
    pub from_powered: bool,
    pub to_powered: bool,
    pub reason: Reason,
    /// The level of the hour when it switched (`None`: unknown).
    pub level: Option<SignalLevel>,
    /// When the controller that made the switch started watching the
    /// relays: the load was in its `from` state at least since then, or
    /// since its previous switch (`None` in records from before this was
    /// kept). What today's runtime counts before a first switch.
    pub watched_since: Option<Timestamp>,
    /// Where the Tempo colour behind a Tempo shed came from (`None` for
    /// other switches, and in records from before the meter).
    pub tempo_source: Option<TempoSource>,
    /// The load's power measured around this switch, once measured (kept
    /// by the power estimator, `power.json`, not in this file).
    pub delta_va: Option<u32>,
}

/// The state dir's files, and what they hold.
pub(crate) struct Store {
    overrides_path: PathBuf,
    history_path: PathBuf,
    history_file: File,
    overrides: HashMap<String, StoredOverride>,
    /// The last records, oldest first.
    history: VecDeque<SwitchRecord>,
    instance_seed: u64,
}

/// What opening the store found worth telling.
#[derive(Debug, Default)]
pub(crate) struct OpenReport {
    pub problems: Vec<String>,
}

impl Store {
    /// The state dir.
    pub(crate) fn dir(&self) -> &Path {
        self.history_path.parent().unwrap_or(Path::new("."))
    }

    pub(crate) const OVERRIDES: &'static str = "overrides.json";
    pub(crate) const HISTORY: &'static str = "history.jsonl";
    pub(crate) const INSTANCE_ID: &'static str = "instance-id";

    /// Opens (or creates) the store in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<(Self, OpenReport), Error> {
        delestage_runtime::files::ensure_writable_dir(dir)?;
        let mut report = OpenReport::default();
        let overrides_path = dir.join(Self::OVERRIDES);
        let history_path = dir.join(Self::HISTORY);
        let overrides = load_overrides(&overrides_path, &mut report)?;
        let history = history_file::load(&history_path, &mut report)?;
        let instance_seed = instance_id::seed(&dir.join(Self::INSTANCE_ID), &mut report)?;
        let history_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&history_path)
            .map_err(|source| Error::StateFile {
                action: "open",
                path: history_path.clone(),
                source,
            })?;
        Ok((
            Self {
                overrides_path,
                history_path,
                history_file,
                overrides,
                history,
                instance_seed,
            },
            report,
        ))
    }

    pub(crate) fn overrides(&self) -> &HashMap<String, StoredOverride> {
        &self.overrides
    }

    pub(crate) fn set_override(&mut self, load: &str, o: StoredOverride) -> Result<(), Error> {
        let previous = self.overrides.insert(load.to_owned(), o);
        self.save_overrides().inspect_err(|_| {
            // Keep memory and disk in agreement.
            match previous {
                Some(p) => self.overrides.insert(load.to_owned(), p),
                None => self.overrides.remove(load),
            };
        })
    }

    /// Removes a load's override; false if it had none.
    pub(crate) fn clear_override(&mut self, load: &str) -> Result<bool, Error> {
        let Some(previous) = self.overrides.remove(load) else {
            return Ok(false);
        };
        self.save_overrides().inspect_err(|_| {
            self.overrides.insert(load.to_owned(), previous);
        })?;
        Ok(true)
    }

    /// Drops overrides that ended at or before `now`; returns their loads.
    pub(crate) fn expire_overrides(&mut self, now: Timestamp) -> Result<Vec<String>, Error> {
        let expired: Vec<String> = self
            .overrides
            .iter()
            .filter(|(_, o)| o.until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        if !expired.is_empty() {
            for name in &expired {
                self.overrides.remove(name);
            }
            self.save_overrides()?;
        }
        Ok(expired)
    }

    /// Drops overrides of loads that are no longer configured.
    pub(crate) fn retain_overrides(
        &mut self,
        known: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, Error> {
        let unknown: Vec<String> = self
            .overrides
            .keys()
            .filter(|name| !known(name))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            for name in &unknown {
                self.overrides.remove(name);
            }
            self.save_overrides()?;
        }
        Ok(unknown)
    }

    fn save_overrides(&self) -> Result<(), Error> {
        let mut on_disk: Vec<OverrideOnDisk> = self
            .overrides
            .iter()
            .map(|(load, o)| OverrideOnDisk {
                load: load.clone(),
                powered: o.powered,
                until: o.until.to_string(),
                set_at: o.set_at.to_string(),
                force: o.force,
            })
            .collect();
        on_disk.sort_by(|a, b| a.load.cmp(&b.load));
        let mut json = serde_json::to_vec_pretty(&OverridesOnDisk {
            version: 1,
            overrides: on_disk,
        })?;
        json.push(b'\n');
        Ok(delestage_runtime::files::write_atomic(
            &self.overrides_path,
            &json,
        )?)
    }

    /// Appends a switch to the history, durably.
    #[cfg(test)]
    pub(crate) fn record(&mut self, record: SwitchRecord) -> Result<(), Error> {
        self.record_all(vec![record])
    }

    /// Appends switches to the history, durably, with one fsync for them
    /// all: eight hundred loads cut at once cost a few fsyncs, not eight
    /// hundred in a row.
    pub(crate) fn record_all(&mut self, records: Vec<SwitchRecord>) -> Result<(), Error> {
        let mut lines = Vec::new();
        for record in &records {
            serde_json::to_writer(&mut lines, &RecordOnDisk::from(record))?;
            lines.push(b'\n');
        }
        let err = |source| Error::StateFile {
            action: "append to",
            path: self.history_path.clone(),
            source,
        };
        self.history_file.write_all(&lines).map_err(err)?;
        self.history_file.sync_data().map_err(err)?;
        for record in records {
            self.history.push_back(record);
        }
        while self.history.len() > HISTORY_IN_MEMORY {
            self.history.pop_front();
        }
        Ok(())
    }

    /// Newest first, filtered.
    pub(crate) fn history(
        &self,
        load: Option<&str>,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Vec<SwitchRecord> {
        self.history
            .iter()
            .rev()
            .filter(|r| load.is_none_or(|l| r.load == l))
            .take_while(|r| since.is_none_or(|s| r.at >= s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The last switch of `load`.
    pub(crate) fn last_switch(&self, load: &str) -> Option<&SwitchRecord> {
        self.history.iter().rev().find(|r| r.load == load)
    }

    /// This controller's seed (from `instance-id`), for its restore jitter.
    pub(crate) fn instance_seed(&self) -> u64 {
        self.instance_seed
    }

    /// How long `load` was powered within `[from, to)`, as the history
    /// tells: from each switch to the next, and after the last one, the
    /// state it switched to. Before the first switch, the state it left,
    /// from when the controller that made it started watching
    /// (`watched_since`). `None` when the history has no switch of the load
    /// before `to`.
    pub(crate) fn powered_between(
        &self,
        load: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Option<Duration> {
        // The switches within [from, to), and the last one before them.
        let mut switches: Vec<&SwitchRecord> = Vec::new();
        for r in self.history.iter().rev().filter(|r| r.load == load) {
            if r.at >= to {
                continue;
            }
            switches.push(r);
            if r.at <= from {
                break;
            }
        }
        switches.reverse();
        let first = switches.first()?;
        let (mut powered, mut cursor) = if first.at <= from {
            (first.to_powered, from)
        } else {
            let seen = first.watched_since.unwrap_or(first.at);
            (first.from_powered, seen.clamp(from, first.at))
        };
        let mut total = Duration::ZERO;
        let mut add = |start: Timestamp, end: Timestamp, on: bool| {
            if on && start < end {
                total += Duration::try_from(end.duration_since(start)).unwrap_or_default();
            }
        };
        for r in switches.iter().filter(|r| r.at > from) {
            add(cursor, r.at, powered);
            cursor = r.at;
            powered = r.to_powered;
        }
        add(cursor, to, powered);
        Some(total)
    }

    /// When the controller last powered a load back (not by override).
    pub(crate) fn last_restore_at(&self) -> Option<Timestamp> {
        self.history
            .iter()
            .rev()
            .find(|r| r.to_powered && !r.from_powered && r.reason != Reason::Override)
            .map(|r| r.at)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverridesOnDisk {
    version: u32,
    overrides: Vec<OverrideOnDisk>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideOnDisk {
    load: String,
    powered: bool,
    until: String,
    set_at: String,
    /// Absent in files written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    force: bool,
}

fn load_overrides(
    path: &Path,
    report: &mut OpenReport,
) -> Result<HashMap<String, StoredOverride>, Error> {
    use delestage_runtime::files::{self, Loaded};
    let parse = |bytes: &[u8]| {
        let on_disk: OverridesOnDisk = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        on_disk
            .overrides
            .into_iter()
            .map(|o| {
                let time = |v: &str| v.parse::<Timestamp>().map_err(|e| format!("{v:?}: {e}"));
                Ok((
                    o.load,
                    StoredOverride {
                        powered: o.powered,
                        until: time(&o.until)?,
                        set_at: time(&o.set_at)?,
                        force: o.force,
                    },
                ))
            })
            .collect::<Result<HashMap<_, _>, String>>()
    };
    Ok(
        match files::load_state_file(path, files::STATE_FILE_LIMIT, parse)? {
            Loaded::Found(overrides) => overrides,
            Loaded::Missing => HashMap::new(),
            Loaded::SetAside { set_aside, reason } => {
                report.problems.push(format!(
                    "{} cannot be used ({reason}); kept aside as {}, starting with no overrides",
                    path.display(),
                    set_aside.display()
                ));
                HashMap::new()
            }
        },
    )
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordOnDisk {
    at: String,
    load: String,
    relay: String,
    from: bool,
    to: bool,
    reason: String,
    level: String,
    /// The Tempo colour behind a Tempo shed; absent otherwise (and in
    /// records written before Tempo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tempo_color: Option<TempoColor>,
    /// See [`SwitchRecord::watched_since`]; absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watched_since: Option<String>,
    /// `rte` or `meter`, for a Tempo shed; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tempo_source: Option<String>,
}

impl From<&SwitchRecord> for RecordOnDisk {
    fn from(r: &SwitchRecord) -> Self {
        Self {
            at: r.at.to_string(),
            load: r.load.clone(),
            relay: r.relay.to_string(),
            from: r.from_powered,
            to: r.to_powered,
            reason: reason_name(r.reason).to_owned(),
            level: level_name(r.level).to_owned(),
            tempo_color: r.reason.tempo_color(),
            watched_since: r.watched_since.map(|t| t.to_string()),
            tempo_source: r.tempo_source.map(|s| {
                match s {
                    TempoSource::Rte => "rte",
                    TempoSource::Meter => "meter",
                    TempoSource::None => "none",
                }
                .to_owned()
            }),
        }
    }
}

impl RecordOnDisk {
    fn parse(self) -> Result<SwitchRecord, String> {
        let (service, channel) = self
            .relay
            .rsplit_once(':')
            .ok_or_else(|| format!("relay {:?}", self.relay))?;
        let level =
            level_from_name(&self.level).ok_or_else(|| format!("level {:?}", self.level))?;
        let reason = reason_from_name(&self.reason, level, self.tempo_color)
            .ok_or_else(|| format!("reason {:?}", self.reason))?;
        Ok(SwitchRecord {
            at: self
                .at
                .parse()
                .map_err(|e| format!("at {:?}: {e}", self.at))?,
            load: self.load,
            relay: RelayAddress {
                relay_service: service.to_owned(),
                channel: channel
                    .parse()
                    .map_err(|_| format!("relay {:?}", self.relay))?,
            },
            from_powered: self.from,
            to_powered: self.to,
            reason,
            level,
            watched_since: match self.watched_since {
                Some(t) => Some(t.parse().map_err(|e| format!("watched_since {t:?}: {e}"))?),
                None => None,
            },
            tempo_source: match self.tempo_source.as_deref() {
                None => None,
                Some("rte") => Some(TempoSource::Rte),
                Some("meter") => Some(TempoSource::Meter),
                Some("none") => Some(TempoSource::None),
                Some(other) => return Err(format!("tempo_source {other:?}")),
            },
            delta_va: None,
        })
    }
}

/// The stable name of a reason, in the history file and logs.
pub(crate) fn reason_name(reason: Reason) -> &'static str {
    reason.kind().name()
}

fn reason_from_name(
    name: &str,
    level: Option<SignalLevel>,
    color: Option<TempoColor>,
) -> Option<Reason> {
    let kind: ReasonKind = name.parse().ok()?;
    // An anticipation of a Tempo day names its colour; one of a tense
    // hour does not.
    let level = if color.is_some() { None } else { level };
    Reason::from_kind(kind, level, color)
}

/// `unknown` is a level too, on disk: `Some(None)`.
fn level_from_name(name: &str) -> Option<Option<SignalLevel>> {
    if name == "unknown" {
        return Some(None);
    }
    name.parse().ok().map(Some)
}

#[cfg(test)]
mod tests;

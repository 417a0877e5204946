//! What the controller must not forget across restarts: the overrides
//! people set, and the history of every switch it made.
//!
//! - `overrides.json`: the whole set, replaced atomically on each change.
//! - `history.jsonl`: one JSON record per line, appended and fsynced on each
//!   switch. A crash can at worst leave a torn last line; it is cut off at
//!   start (and reported), the lines before it are kept.
//! - `instance-id`: 128 random bits in hex, written once: this controller's
//!   identity, which seeds its restore jitter (the same delay every restart).
//!
//! Every file is read defensively at start (size limits, set aside when
//! unusable; the history streamed, see [`history_file`]).
//!
//! Plain files rather than a database: a few switches a day, read once at
//! start, and a person can read them with `jq`.

mod history_file;

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

/// At most this many records are kept in memory (the file keeps them all).
const HISTORY_IN_MEMORY: usize = 100_000;

/// An override as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredOverride {
    pub powered: bool,
    pub until: Timestamp,
    pub set_at: Timestamp,
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
        let instance_seed = instance_seed(&dir.join(Self::INSTANCE_ID), &mut report)?;
        let history_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&history_path)
            .map_err(|e| Error::Store(format!("cannot open {}: {e}", history_path.display())))?;
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
            })
            .collect();
        on_disk.sort_by(|a, b| a.load.cmp(&b.load));
        let mut json = serde_json::to_vec_pretty(&OverridesOnDisk {
            version: 1,
            overrides: on_disk,
        })
        .map_err(|e| Error::Store(e.to_string()))?;
        json.push(b'\n');
        delestage_runtime::files::write_atomic(&self.overrides_path, &json)
            .map_err(|e| Error::Store(e.to_string()))
    }

    /// Appends a switch to the history, durably.
    pub(crate) fn record(&mut self, record: SwitchRecord) -> Result<(), Error> {
        let mut line = serde_json::to_vec(&RecordOnDisk::from(&record))
            .map_err(|e| Error::Store(e.to_string()))?;
        line.push(b'\n');
        let err = |e: std::io::Error| {
            Error::Store(format!(
                "cannot append to {}: {e}",
                self.history_path.display()
            ))
        };
        self.history_file.write_all(&line).map_err(err)?;
        self.history_file.sync_data().map_err(err)?;
        self.history.push_back(record);
        if self.history.len() > HISTORY_IN_MEMORY {
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
                    },
                ))
            })
            .collect::<Result<HashMap<_, _>, String>>()
    };
    Ok(
        match files::load_state_file(path, files::STATE_FILE_LIMIT, parse)
            .map_err(|e| Error::Store(e.to_string()))?
        {
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
        })
    }
}

/// The seed in `path`, written there first if missing (a file that cannot
/// be read as one is set aside, reported, and replaced: the jitter's delay
/// changes then, nothing else does).
fn instance_seed(path: &Path, report: &mut OpenReport) -> Result<u64, Error> {
    let parse = |text: &str| -> Option<u64> {
        let text = text.trim();
        (text.len() == 32 && text.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(&text[..16], 16).ok())
            .flatten()
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Some(seed) = parse(&text) {
                return Ok(seed);
            }
            report.problems.push(format!(
                "{} is not 32 hex digits; a new instance id is written (the restore jitter's delay changes)",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Store(format!("cannot read {}: {e}", path.display())));
        }
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Store(format!("no randomness for the instance id: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    delestage_runtime::files::write_atomic(path, format!("{hex}\n").as_bytes())
        .map_err(|e| Error::Store(e.to_string()))?;
    parse(&hex).ok_or_else(|| Error::Store("instance id".to_owned()))
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
mod tests {
    use super::*;

    pub(super) fn record(load: &str, minute: i64, to: bool, reason: Reason) -> SwitchRecord {
        SwitchRecord {
            at: Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_mins(minute),
            load: load.to_owned(),
            relay: RelayAddress {
                relay_service: "garage".to_owned(),
                channel: 2,
            },
            from_powered: !to,
            to_powered: to,
            reason,
            level: Some(SignalLevel::Red),
            watched_since: None,
        }
    }

    #[test]
    fn powered_time_is_counted_from_the_switches() {
        let t = |m: i64| Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_mins(m);
        let h = |m: u64| Duration::from_secs(60 * m);
        let dir = tempfile::tempdir().expect("tempdir");
        // The same switches, made by a controller watching since 0, 5, 50,
        // or one from before `watched_since` was kept.
        let mut stores = Vec::new();
        for known in [Some(0), Some(5), Some(50), None] {
            let (mut store, _) = Store::open(&dir.path().join(format!("{known:?}"))).expect("open");
            assert_eq!(store.powered_between("pump", t(0), t(100)), None);
            // Cut at 10 (powered before), on at 30, cut at 50, on at 90.
            for (minute, to) in [(10, false), (30, true), (50, false), (90, true)] {
                let mut r = record("pump", minute, to, Reason::ScheduledRun);
                r.watched_since = known.map(t);
                store.record(r).expect("record");
            }
            store
                .record(record("other", 60, true, Reason::Normal))
                .expect("record");
            stores.push(store);
        }
        let between = |i: usize, from, to| stores[i].powered_between("pump", t(from), t(to));
        assert_eq!(between(0, 0, 100), Some(h(10 + 20 + 10)));
        // Watched from 5, or from 50 (a later run): what came before the
        // first switch is known from then on only.
        assert_eq!(between(1, 0, 100), Some(h(5 + 20 + 10)));
        assert_eq!(between(2, 0, 100), Some(h(20 + 10)));
        assert_eq!(between(3, 0, 100), Some(h(20 + 10)));
        assert_eq!(between(0, 40, 95), Some(h(10 + 5)));
        assert_eq!(between(0, 60, 80), Some(Duration::ZERO));
    }

    #[test]
    fn the_instance_id_is_written_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let seed = store.instance_seed();
        drop(store);
        let (again, report) = Store::open(dir.path()).expect("reopen");
        assert_eq!(again.instance_seed(), seed);
        assert!(report.problems.is_empty());
        let other = tempfile::tempdir().expect("tempdir");
        let (elsewhere, _) = Store::open(other.path()).expect("open");
        assert_ne!(elsewhere.instance_seed(), seed);
        drop(again);
        std::fs::write(dir.path().join(Store::INSTANCE_ID), "junk").expect("write");
        let (_, report) = Store::open(dir.path()).expect("reopen");
        assert!(
            report.problems[0].contains("instance-id"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn overrides_and_history_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, report) = Store::open(dir.path()).expect("open");
        assert!(report.problems.is_empty());
        let o = StoredOverride {
            powered: true,
            until: "2026-12-08T12:00:00Z".parse().expect("ts"),
            set_at: "2026-12-08T10:00:00Z".parse().expect("ts"),
        };
        store.set_override("heater", o).expect("set");
        store
            .record(record(
                "heater",
                1,
                false,
                Reason::ShedForLevel(SignalLevel::Red),
            ))
            .expect("record");
        store
            .record(record("ev", 2, true, Reason::Normal))
            .expect("record");
        drop(store);

        let (store, report) = Store::open(dir.path()).expect("reopen");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(store.overrides().get("heater"), Some(&o));
        let all = store.history(None, None, 10);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].load, "ev", "newest first");
        assert_eq!(all[1].reason, Reason::ShedForLevel(SignalLevel::Red));
        assert_eq!(store.history(Some("heater"), None, 10).len(), 1);
        assert_eq!(store.history(None, Some(all[0].at), 10).len(), 1);
        assert_eq!(store.last_restore_at(), Some(all[0].at));
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = Store::open(dir.path()).expect("open");
        store
            .record(record("heater", 1, false, Reason::Normal))
            .expect("record");
        drop(store);
        let path = dir.path().join(Store::HISTORY);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"at\":\"2026-12-0").expect("tear");
        drop(file);

        let (mut store, report) = Store::open(dir.path()).expect("reopen");
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(store.history(None, None, 10).len(), 1);
        store
            .record(record("heater", 2, true, Reason::Normal))
            .expect("record");
        drop(store);
        let (store, report) = Store::open(dir.path()).expect("reopen");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(store.history(None, None, 10).len(), 2);
    }

    #[test]
    fn corrupt_overrides_are_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(Store::OVERRIDES), b"{\"version\":1,").expect("write");
        let (store, report) = Store::open(dir.path()).expect("open");
        assert!(store.overrides().is_empty());
        assert!(
            report.problems[0].contains("kept aside"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn expired_overrides_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, _) = Store::open(dir.path()).expect("open");
        let now: Timestamp = "2026-12-08T12:00:00Z".parse().expect("ts");
        for (name, minutes) in [("a", -1), ("b", 0), ("c", 1)] {
            store
                .set_override(
                    name,
                    StoredOverride {
                        powered: false,
                        until: now + jiff::SignedDuration::from_mins(minutes),
                        set_at: now,
                    },
                )
                .expect("set");
        }
        let mut expired = store.expire_overrides(now).expect("expire");
        expired.sort();
        assert_eq!(expired, ["a", "b"]);
        assert!(store.overrides().contains_key("c"));
    }
}

//! The last forecast (and Tempo calendar) the controller received, kept in its state dir
//! (`forecast.json`), so that a controller restarted while the
//! forecast-service is down still acts on what it knew. The age rule
//! ([`crate::enforce`]'s forecast status) decides whether it is still
//! usable; this module only keeps it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use delestage_runtime::files::{self, Loaded};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::model::{ForecastSeen, Hour, SignalLevel, TariffDay, TempoColor};

const FORMAT_VERSION: u32 = 1;

/// `forecast.json` in the state dir.
#[derive(Debug, Clone)]
pub(crate) struct ForecastFile {
    path: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fetched_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generated_at: Option<String>,
    stale: bool,
    hours: Vec<HourOnDisk>,
    /// The Tempo days (absent in files written before Tempo).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tempo: Vec<TempoDayOnDisk>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TempoDayOnDisk {
    date: String,
    color: TempoColor,
    start: String,
    peak_end: String,
    end: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HourOnDisk {
    start: String,
    end: String,
    level: SignalLevel,
}

impl ForecastFile {
    pub(crate) const NAME: &'static str = "forecast.json";

    pub(crate) fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(Self::NAME),
        }
    }

    /// What was kept, as the controller starts: not settled (the
    /// forecast-service's first answer, or its failure, settles it), not
    /// connected. An unusable file is set aside and reported.
    pub(crate) fn load(&self) -> ForecastSeen {
        match files::load_state_file(&self.path, files::STATE_FILE_LIMIT, parse) {
            Ok(Loaded::Found(seen)) => {
                tracing::info!(
                    file = %self.path.display(),
                    hours = seen.hours.len(),
                    generated_at = ?seen.generated_at,
                    "the last forecast received is kept; it is acted on if the forecast-service is not there"
                );
                seen
            }
            Ok(Loaded::Missing) => ForecastSeen::default(),
            Ok(Loaded::SetAside { set_aside, reason }) => {
                tracing::error!(file = %self.path.display(), set_aside = %set_aside.display(), %reason, "the kept forecast cannot be used; set aside");
                ForecastSeen::default()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the kept forecast");
                ForecastSeen::default()
            }
        }
    }

    /// Keeps `seen`'s forecast, atomically.
    pub(crate) fn save(&self, seen: &ForecastSeen) -> Result<(), Error> {
        let on_disk = OnDisk {
            version: FORMAT_VERSION,
            fetched_at: seen.fetched_at.map(|t| t.to_string()),
            generated_at: seen.generated_at.map(|t| t.to_string()),
            stale: seen.stale,
            hours: seen
                .hours
                .iter()
                .map(|h| HourOnDisk {
                    start: h.start.to_string(),
                    end: h.end.to_string(),
                    level: h.level,
                })
                .collect(),
            // RTE's days only: the meter's are said again by the meter.
            tempo: seen
                .rte_tempo
                .iter()
                .map(|d| TempoDayOnDisk {
                    date: d.date.to_string(),
                    color: d.color,
                    start: d.start.to_string(),
                    peak_end: d.peak_end.to_string(),
                    end: d.end.to_string(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&on_disk)?;
        Ok(files::write_atomic(&self.path, &json)?)
    }
}

fn parse(bytes: &[u8]) -> Result<ForecastSeen, String> {
    let on_disk: OnDisk = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if on_disk.version != FORMAT_VERSION {
        return Err(format!(
            "unsupported version {} (expected {FORMAT_VERSION})",
            on_disk.version
        ));
    }
    let time = |v: &str| v.parse::<Timestamp>().map_err(|e| format!("{v:?}: {e}"));
    let optional = |v: &Option<String>| v.as_deref().map(time).transpose();
    let hours = on_disk
        .hours
        .iter()
        .map(|h| {
            Ok(Hour {
                start: time(&h.start)?,
                end: time(&h.end)?,
                level: h.level,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let tempo = on_disk
        .tempo
        .iter()
        .map(|d| {
            Ok(TariffDay {
                date: d
                    .date
                    .parse()
                    .map_err(|e| format!("date {:?}: {e}", d.date))?,
                color: d.color,
                start: time(&d.start)?,
                peak_end: time(&d.peak_end)?,
                end: time(&d.end)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(ForecastSeen {
        hours: Arc::new(hours),
        tempo: Arc::new(tempo.clone()),
        rte_tempo: Arc::new(tempo),
        fetched_at: optional(&on_disk.fetched_at)?,
        generated_at: optional(&on_disk.generated_at)?,
        stale: on_disk.stale,
        ..ForecastSeen::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_forecast_loads_back_unsettled_and_unconnected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = ForecastFile::in_dir(dir.path());
        let t = |s: &str| s.parse::<Timestamp>().expect("ts");
        let seen = ForecastSeen {
            settled: true,
            connected: true,
            hours: Arc::new(vec![Hour {
                start: t("2026-11-27T10:00:00Z"),
                end: t("2026-11-27T11:00:00Z"),
                level: SignalLevel::Red,
            }]),
            fetched_at: Some(t("2026-11-27T09:00:00Z")),
            generated_at: Some(t("2026-11-27T08:00:00Z")),
            stale: true,
            problem: None,
            rte_tempo: Arc::new(vec![TariffDay {
                date: jiff::civil::date(2026, 11, 27),
                color: TempoColor::Red,
                start: t("2026-11-27T05:00:00Z"),
                peak_end: t("2026-11-27T21:00:00Z"),
                end: t("2026-11-28T05:00:00Z"),
            }]),
            ..ForecastSeen::default()
        };
        file.save(&seen).expect("save");
        let back = file.load();
        assert_eq!(back.hours, seen.hours);
        assert_eq!(back.tempo, seen.rte_tempo);
        assert_eq!(back.rte_tempo, seen.rte_tempo);
        assert_eq!(
            (back.fetched_at, back.generated_at, back.stale),
            (seen.fetched_at, seen.generated_at, true)
        );
        assert!(!back.settled && !back.connected);
    }

    #[test]
    fn nothing_kept_and_garbage_are_no_forecast() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = ForecastFile::in_dir(dir.path());
        assert!(file.load().hours.is_empty());
        std::fs::write(dir.path().join(ForecastFile::NAME), b"{garbage").expect("write");
        assert!(file.load().hours.is_empty());
        assert!(!dir.path().join(ForecastFile::NAME).exists(), "set aside");
    }
}

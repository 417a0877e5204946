//! The last good RTE answer (Ecowatt's in `forecast-cache.json`, Tempo's in
//! `tempo-cache.json`), and when the next upstream call may be made,
//! persisted in the state dir so that a restart neither loses the forecast
//! nor calls RTE early.
//!
//! The raw body is stored, not our parsed form: a newer version of the
//! parser (or the time rule) applies to it on the next start.

use std::path::{Path, PathBuf};

use delestage_runtime::files;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Error;

/// What the cache holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cached {
    /// The signals URL the body came from; a cache for another URL (the
    /// sandbox, another server) is not used.
    pub source_detail: String,
    /// The last body that parsed and validated, and when it was fetched.
    pub last_good: Option<(String, Timestamp)>,
    /// No upstream call before this time (rate limit, back-off, or the
    /// forecast is still fresh).
    pub next_attempt_at: Option<Timestamp>,
}

/// What was found at start.
pub(crate) type Loaded = files::Loaded<Cached>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    source_detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fetched_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
}

const FORMAT_VERSION: u32 = 1;

/// `forecast-cache.json` in a state dir.
#[derive(Debug, Clone)]
pub(crate) struct CacheFile {
    path: PathBuf,
}

impl CacheFile {
    pub(crate) const FILE_NAME: &'static str = "forecast-cache.json";

    pub(crate) fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(Self::FILE_NAME),
        }
    }

    /// `tempo-cache.json` in a state dir: the same format, for the Tempo
    /// calendar.
    pub(crate) fn tempo_in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("tempo-cache.json"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the cache; a corrupt, oversized or misplaced one is set aside
    /// and reported, not fatal.
    pub(crate) fn load(&self) -> Result<Loaded, Error> {
        Ok(files::load_state_file(
            &self.path,
            files::STATE_FILE_LIMIT,
            parse,
        )?)
    }

    /// Replaces the cache atomically.
    pub(crate) fn save(&self, cached: &Cached) -> Result<(), Error> {
        let on_disk = OnDisk {
            version: FORMAT_VERSION,
            source_detail: cached.source_detail.clone(),
            fetched_at: cached.last_good.as_ref().map(|(_, t)| t.to_string()),
            body: cached.last_good.as_ref().map(|(b, _)| b.clone()),
            next_attempt_at: cached.next_attempt_at.map(|t| t.to_string()),
        };
        let mut json = serde_json::to_vec_pretty(&on_disk).map_err(|e| Error::CacheWrite {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        delestage_runtime::files::write_atomic(&self.path, &json).map_err(|e| Error::CacheWrite {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }
}

fn parse(bytes: &[u8]) -> Result<Cached, String> {
    let on_disk: OnDisk = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if on_disk.version != FORMAT_VERSION {
        return Err(format!(
            "unsupported version {} (expected {FORMAT_VERSION})",
            on_disk.version
        ));
    }
    let time = |field: &str, value: &str| {
        value
            .parse::<Timestamp>()
            .map_err(|e| format!("{field} {value:?}: {e}"))
    };
    let last_good = match (on_disk.body, on_disk.fetched_at) {
        (Some(body), Some(at)) => Some((body, time("fetched_at", &at)?)),
        (None, None) => None,
        _ => return Err("body and fetched_at must be both present or both absent".to_owned()),
    };
    let next_attempt_at = match on_disk.next_attempt_at {
        Some(at) => Some(time("next_attempt_at", &at)?),
        None => None,
    };
    Ok(Cached {
        source_detail: on_disk.source_detail,
        last_good,
        next_attempt_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = CacheFile::in_dir(dir.path());
        let cached = Cached {
            source_detail: "http://127.0.0.1:1/open_api/ecowatt/v5/signals".to_owned(),
            last_good: Some((
                "{\"signals\":[]}".to_owned(),
                "2026-11-26T08:00:00.5Z".parse().expect("ts"),
            )),
            next_attempt_at: Some("2026-11-26T08:15:00Z".parse().expect("ts")),
        };
        file.save(&cached).expect("save");
        match file.load().expect("load") {
            Loaded::Found(back) => assert_eq!(back, cached),
            other => panic!("expected Found, got {other:?}"),
        }
    }

    #[test]
    fn a_truncated_cache_is_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = CacheFile::in_dir(dir.path());
        std::fs::write(file.path(), b"{\"version\":1,\"source_deta").expect("write");
        match file.load().expect("load") {
            Loaded::SetAside { set_aside, reason } => {
                assert!(set_aside.exists());
                assert!(reason.contains("EOF"), "{reason}");
            }
            other => panic!("expected SetAside, got {other:?}"),
        }
        assert!(matches!(file.load().expect("load"), Loaded::Missing));
    }
}

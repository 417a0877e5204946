//! Keeping the Tempo calendar current: the task that asks RTE on the
//! schedule of [`TempoSchedule`] (or watches a file), and the
//! [`TempoCurrent`] state it publishes to the gRPC side.
//!
//! As for the forecast, clients never trigger an upstream call, the last
//! good calendar is served through outages, and it is kept in the state dir
//! (`tempo-cache.json`, the raw body) so that a restart serves it at once
//! and does not call RTE early.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use jiff::civil::Date;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::cache::{CacheFile, Cached};
use crate::rte::RteClient;
use crate::tempo::{self, Calendar, TempoSchedule};
use crate::timeline;

/// A calendar older than this is served with `stale` set: today's or
/// tomorrow's colour may be missing from it.
pub(crate) const TEMPO_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A calendar as served.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PublishedTempo {
    pub calendar: Calendar,
    /// When it was fetched, or the file's modification time (the time of
    /// rebasing, for a rebased file).
    pub fetched_at: Timestamp,
    /// False for a file rebased to today.
    pub ages: bool,
}

impl PublishedTempo {
    pub(crate) fn is_stale(&self, now: Timestamp) -> bool {
        self.ages
            && jiff::SignedDuration::try_from(TEMPO_MAX_AGE)
                .ok()
                .and_then(|age| self.fetched_at.checked_add(age).ok())
                .is_some_and(|at| now >= at)
    }
}

/// What the service knows of Tempo right now.
#[derive(Debug, Clone, Default)]
pub(crate) struct TempoCurrent {
    /// `--tempo` is not `off`.
    pub enabled: bool,
    pub published: Option<Arc<PublishedTempo>>,
    /// Why there is no calendar, or why it is not newer.
    pub problem: Option<String>,
}

/// Parses a body from `origin`; RTE's answers must hold `today`.
pub(crate) fn parse_tempo(
    body: &[u8],
    origin: &str,
    rebase_to: Option<Date>,
    must_hold: Option<Date>,
) -> Result<Calendar, Error> {
    let invalid = |reason| Error::InvalidTempo {
        origin: origin.to_owned(),
        reason,
    };
    let calendar = tempo::parse(body).map_err(invalid)?;
    let calendar = match rebase_to {
        Some(today) => calendar.rebased(today),
        None => calendar,
    };
    if let Some(today) = must_hold {
        tempo::require_today(&calendar, today).map_err(invalid)?;
    }
    Ok(calendar)
}

pub(crate) fn publish(current: &watch::Sender<TempoCurrent>, published: PublishedTempo) {
    current.send_modify(|c| {
        c.published = Some(Arc::new(published));
        c.problem = None;
    });
}

pub(crate) fn report_problem(current: &watch::Sender<TempoCurrent>, problem: String) {
    current.send_if_modified(|c| {
        if c.problem.as_deref() == Some(problem.as_str()) {
            return false;
        }
        tracing::warn!(%problem, kept = c.published.is_some(), "no new Tempo calendar");
        c.problem = Some(problem);
        true
    });
}

/// How the RTE Tempo task is set up.
pub(crate) struct TempoRefresh {
    /// Shared with the Ecowatt task when the credentials are the same (one
    /// token cache per credential pair).
    pub client: Arc<RteClient>,
    pub cache: CacheFile,
    pub schedule: TempoSchedule,
}

/// What the cache gave back at start.
#[derive(Debug, Default)]
pub(crate) struct RestoredTempo {
    pub last_good: Option<(String, Timestamp)>,
    pub next_attempt_at: Option<Timestamp>,
}

impl TempoRefresh {
    /// Loads the cache: publishes its calendar (if it is for this URL and
    /// still parses) and says when the first call may be made. A cache that
    /// does not is set aside, and RTE is asked at once.
    pub(crate) fn restore(
        &self,
        current: &watch::Sender<TempoCurrent>,
    ) -> Result<RestoredTempo, Error> {
        let url = self.client.tempo_url().to_string();
        let cached = match self.cache.load()? {
            crate::cache::Loaded::Missing => return Ok(RestoredTempo::default()),
            crate::cache::Loaded::SetAside { set_aside, reason } => {
                tracing::error!(set_aside = %set_aside.display(), %reason, "the cached Tempo calendar is corrupt; kept aside, asking RTE");
                return Ok(RestoredTempo::default());
            }
            crate::cache::Loaded::Found(cached) => cached,
        };
        if cached.source_detail != url {
            return Ok(RestoredTempo::default());
        }
        if let Some((body, fetched_at)) = &cached.last_good {
            match parse_tempo(body.as_bytes(), "the Tempo cache", None, None) {
                Ok(calendar) => {
                    tracing::info!(%fetched_at, days = calendar.days.len(), "serving the cached Tempo calendar");
                    publish(
                        current,
                        PublishedTempo {
                            calendar,
                            fetched_at: *fetched_at,
                            ages: true,
                        },
                    );
                }
                Err(e) => {
                    let set_aside = delestage_runtime::files::set_aside(self.cache.path());
                    tracing::error!(error = %e, set_aside = ?set_aside.ok(), "the cached Tempo calendar fails validation; kept aside, asking RTE now");
                    return Ok(RestoredTempo::default());
                }
            }
        }
        Ok(RestoredTempo {
            last_good: cached.last_good,
            next_attempt_at: cached.next_attempt_at,
        })
    }
}

/// Asks RTE for the calendar on schedule until `closing`.
pub(crate) async fn run_tempo_rte(
    refresh: TempoRefresh,
    restored: RestoredTempo,
    current: watch::Sender<TempoCurrent>,
    closing: CancellationToken,
) {
    let url = refresh.client.tempo_url().to_string();
    let mut last_good = restored.last_good;
    let mut failures: u32 = 0;
    // A persisted time far away (a clock that jumped) waits one day at most.
    let mut next_at = restored
        .next_attempt_at
        .map(|at| at.min(Timestamp::now() + jiff::SignedDuration::from_hours(24)))
        .unwrap_or_else(Timestamp::now);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(until(next_at)) => {}
            _ = closing.cancelled() => return,
        }
        let today = timeline::paris_date(Timestamp::now());
        let Some((start, end)) = tempo::query_range(today) else {
            tracing::error!(%today, "cannot build the Tempo query for this date");
            return;
        };
        let outcome = tokio::select! {
            r = refresh.client.fetch_tempo(&start, &end) => r,
            _ = closing.cancelled() => return,
        };
        let called_at = Timestamp::now();
        let outcome = outcome.and_then(|body| {
            let calendar = parse_tempo(&body, &url, None, Some(today))?;
            Ok((String::from_utf8_lossy(&body).into_owned(), calendar))
        });
        let retry_after = match outcome {
            Ok((text, calendar)) => {
                failures = 0;
                last_good = Some((text, called_at));
                tracing::info!(
                    days = ?calendar.days.iter().map(|d| format!("{} {}", d.date, d.color)).collect::<Vec<_>>(),
                    "new Tempo calendar from RTE"
                );
                publish(
                    &current,
                    PublishedTempo {
                        calendar,
                        fetched_at: called_at,
                        ages: true,
                    },
                );
                None
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                report_problem(&current, e.to_string());
                e.retry_after()
            }
        };
        let known = current.borrow().published.clone();
        next_at = refresh.schedule.next_call(
            called_at,
            Some(called_at),
            known.as_ref().map(|p| &p.calendar),
            failures,
        );
        if let Some(wait) = retry_after.and_then(|w| jiff::SignedDuration::try_from(w).ok()) {
            next_at = next_at.max(called_at.checked_add(wait).unwrap_or(next_at));
        }
        if failures > 0 {
            tracing::warn!(consecutive_failures = failures, retry_at = %next_at, "RTE Tempo call failed");
        } else {
            tracing::info!(next_call_at = %next_at, "next RTE Tempo call");
        }
        let cached = Cached {
            source_detail: url.clone(),
            last_good: last_good.clone(),
            next_attempt_at: Some(next_at),
        };
        let cache = refresh.cache.clone();
        let saved = tokio::task::spawn_blocking(move || cache.save(&cached)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::error!("cannot persist the Tempo cache; a restart would ask RTE again");
        }
    }
}

fn until(at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default()
}

/// The file source: RTE's body shape in a file, re-read when it changes
/// (and, with `rebase`, every hour, its days moved to this week).
pub(crate) struct TempoFileWatcher {
    path: PathBuf,
    rebase: bool,
    seen: Option<FileSeen>,
}

/// What the file looked like when last read: modification time, length,
/// and (when rebasing) the Paris date and hour.
type FileSeen = (Option<SystemTime>, u64, Option<(Date, i8)>);

impl TempoFileWatcher {
    pub(crate) fn new(path: PathBuf, rebase: bool) -> Self {
        Self {
            path,
            rebase,
            seen: None,
        }
    }

    pub(crate) fn check(&mut self, current: &watch::Sender<TempoCurrent>) {
        let origin = self.path.display().to_string();
        let read_err = |source| Error::ReadFile {
            path: self.path.clone(),
            source,
        };
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => return report_problem(current, read_err(e).to_string()),
        };
        let now = Timestamp::now();
        let today = timeline::paris_date(now);
        let hour = now.to_zoned_datetime(timeline::PARIS.clone()).hour();
        let mtime = meta.modified().ok();
        let seen = Some((mtime, meta.len(), self.rebase.then_some((today, hour))));
        if seen == self.seen {
            return;
        }
        let bytes = match delestage_runtime::files::read_limited(
            &self.path,
            delestage_runtime::files::STATE_FILE_LIMIT,
        ) {
            Ok(b) => b,
            Err(e) => return report_problem(current, read_err(e).to_string()),
        };
        self.seen = seen;
        match parse_tempo(&bytes, &origin, self.rebase.then_some(today), None) {
            Ok(calendar) => {
                tracing::info!(file = %origin, days = calendar.days.len(), "read the Tempo file");
                let fetched_at = match (self.rebase, mtime) {
                    (false, Some(t)) => Timestamp::try_from(t).unwrap_or(now),
                    _ => now,
                };
                publish(
                    current,
                    PublishedTempo {
                        calendar,
                        fetched_at,
                        ages: !self.rebase,
                    },
                );
            }
            Err(e) => report_problem(current, e.to_string()),
        }
    }
}

/// Checks the file every second until `closing`.
pub(crate) async fn run_tempo_file(
    mut watcher: TempoFileWatcher,
    current: watch::Sender<TempoCurrent>,
    closing: CancellationToken,
) {
    let mut ticks = tokio::time::interval(crate::refresh::FILE_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => watcher.check(&current),
            _ = closing.cancelled() => return,
        }
    }
}

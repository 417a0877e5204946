//! Keeping the forecast current: the task that calls RTE on a schedule (or
//! watches a file), and the [`Current`] state it publishes to the gRPC side.
//!
//! Clients never trigger an upstream call: they read [`Current`] from a
//! `watch` channel. Only [`run_rte`] calls RTE, and it waits between calls
//! as [`RefreshPolicy`] says, so a thousand clients cost one call per
//! refresh.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use jiff::civil::Date;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::cache::{CacheFile, Cached};
use crate::ecowatt;
use crate::forecast::Forecast;
use crate::rte::RteClient;
use crate::schedule::RefreshPolicy;
use crate::timeline;

/// Where a forecast came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Rte,
    RteSandbox,
    File,
    /// Another forecast-service (`--source upstream`).
    Upstream,
}

/// A forecast as served, with where and when it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Published {
    pub forecast: Forecast,
    /// When it was fetched from RTE, or the file's modification time (the
    /// time of rebasing, for a rebased file).
    pub fetched_at: Timestamp,
    pub source: Source,
    /// The URL or file path (never a credential).
    pub source_detail: String,
    /// False for a file rebased to today: it is regenerated every day and
    /// never goes stale.
    pub ages: bool,
}

impl Published {
    /// Older than `max_age` at `now`.
    pub(crate) fn is_stale(&self, now: Timestamp, max_age: Duration) -> bool {
        self.ages && stale_at(self.fetched_at, max_age).is_some_and(|t| now >= t)
    }

    /// When it turns stale, if it ages.
    pub(crate) fn stale_at(&self, max_age: Duration) -> Option<Timestamp> {
        if self.ages {
            stale_at(self.fetched_at, max_age)
        } else {
            None
        }
    }
}

fn stale_at(fetched_at: Timestamp, max_age: Duration) -> Option<Timestamp> {
    let age = jiff::SignedDuration::try_from(max_age).ok()?;
    fetched_at.checked_add(age).ok()
}

/// What the service knows right now.
#[derive(Debug, Clone, Default)]
pub(crate) struct Current {
    /// The last good forecast.
    pub published: Option<Arc<Published>>,
    /// The last failure, if the last attempt failed: why there is no
    /// forecast, or why it is not newer.
    pub problem: Option<String>,
}

/// Parses a body from `origin` into a forecast, or says why not.
pub(crate) fn parse_body(
    body: &[u8],
    origin: &str,
    rebase_to: Option<Date>,
) -> Result<Forecast, Error> {
    let signals = ecowatt::parse(body).map_err(|reason| Error::InvalidBody {
        origin: origin.to_owned(),
        reason,
    })?;
    let signals = match rebase_to {
        Some(today) => signals.rebased(today),
        None => signals,
    };
    Ok(Forecast::from_signals(&signals))
}

/// Sets the problem, logging it only when it changes (a file that stays
/// missing must not log every second).
pub(crate) fn report_problem(current: &watch::Sender<Current>, problem: String) {
    current.send_if_modified(|c| {
        if c.problem.as_deref() == Some(problem.as_str()) {
            return false;
        }
        tracing::warn!(%problem, kept = c.published.is_some(), "no new forecast");
        c.problem = Some(problem);
        true
    });
}

pub(crate) fn publish(current: &watch::Sender<Current>, published: Published) {
    current.send_modify(|c| {
        c.published = Some(Arc::new(published));
        c.problem = None;
    });
}

/// Keeps the forecast gauges current until `closing`: the age of the
/// forecast (`forecast_age_seconds`), whether it is stale, and the level of
/// the current hour (`forecast_level`: 0 unknown, 1 carbon-free .. 4 red).
pub(crate) async fn report_gauges(
    current: watch::Receiver<Current>,
    max_age: Duration,
    closing: CancellationToken,
) {
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = closing.cancelled() => return,
        }
        let Some(p) = current.borrow().published.clone() else {
            continue;
        };
        let now = Timestamp::now();
        let age = now.duration_since(p.fetched_at).as_secs_f64().max(0.0);
        metrics::gauge!("forecast_age_seconds").set(age);
        metrics::gauge!("forecast_stale").set(f64::from(u8::from(p.is_stale(now, max_age))));
        let level = p.forecast.hour_at(now).map_or(0, |h| {
            delestage_proto::forecast::v1::SignalLevel::from(h.level) as i32
        });
        metrics::gauge!("forecast_level").set(f64::from(level));
    }
}

/// How the RTE refresh task is set up.
pub(crate) struct RteRefresh {
    pub client: std::sync::Arc<RteClient>,
    pub source: Source,
    pub cache: CacheFile,
    pub policy: RefreshPolicy,
    /// Move the days to this week (the sandbox's fixed 2022 data).
    pub rebase_to_today: bool,
}

impl RteRefresh {
    /// The date bodies are rebased to, if they are.
    fn rebase_to(&self) -> Option<Date> {
        self.rebase_to_today
            .then(|| timeline::paris_date(Timestamp::now()))
    }

    /// Loads the cache: publishes its forecast (if it is for this URL and
    /// still parses) and says when the first call may be made.
    pub(crate) fn restore(&self, current: &watch::Sender<Current>) -> Result<Restored, Error> {
        let url = self.client.signals_url().to_string();
        let cached = match self.cache.load()? {
            crate::cache::Loaded::Missing => {
                tracing::info!(cache = %self.cache.path().display(), "no cached forecast; fetching from RTE");
                return Ok(Restored::default());
            }
            crate::cache::Loaded::SetAside { set_aside, reason } => {
                tracing::error!(
                    cache = %self.cache.path().display(),
                    set_aside = %set_aside.display(),
                    %reason,
                    "the cached forecast is corrupt; kept aside, fetching from RTE"
                );
                return Ok(Restored::default());
            }
            crate::cache::Loaded::Found(cached) => cached,
        };
        if cached.source_detail != url {
            tracing::info!(
                cached_for = %cached.source_detail,
                %url,
                "the cached forecast is for another URL; not used"
            );
            return Ok(Restored::default());
        }
        if let Some((body, fetched_at)) = &cached.last_good {
            match parse_body(body.as_bytes(), "the cache", self.rebase_to()) {
                Ok(forecast) => {
                    tracing::info!(%fetched_at, hours = forecast.hours.len(), "serving the cached forecast");
                    publish(
                        current,
                        Published {
                            forecast,
                            fetched_at: *fetched_at,
                            source: self.source,
                            source_detail: url.clone(),
                            ages: true,
                        },
                    );
                }
                Err(e) => {
                    // A cache that fails validation must not hold the first
                    // call back until its `next_attempt_at`: that left the
                    // service without a forecast for up to 15 minutes.
                    let set_aside = delestage_runtime::files::set_aside(self.cache.path());
                    tracing::error!(
                        cache = %self.cache.path().display(),
                        set_aside = %set_aside.as_ref().map_or_else(|e| format!("not moved: {e}"), |p| p.display().to_string()),
                        error = %e,
                        "the cached forecast fails validation; kept aside, fetching from RTE now"
                    );
                    return Ok(Restored::default());
                }
            }
        }
        Ok(Restored {
            last_good: cached.last_good,
            next_attempt_at: cached.next_attempt_at,
        })
    }
}

/// What the cache gave back at start.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// The last good body and when it was fetched.
    pub last_good: Option<(String, Timestamp)>,
    /// No call before this time.
    pub next_attempt_at: Option<Timestamp>,
}

/// Calls RTE on schedule until `closing` turns true.
///
/// `restored.next_attempt_at` (from the cache) delays the first call: a
/// restart does not call RTE while the cached forecast is fresh or a
/// back-off runs.
pub(crate) async fn run_rte(
    refresh: RteRefresh,
    restored: Restored,
    current: watch::Sender<Current>,
    closing: CancellationToken,
) {
    let url = refresh.client.signals_url().to_string();
    let mut failures: u32 = 0;
    let mut last_good = restored.last_good;
    let first_attempt_at = restored.next_attempt_at;
    // A persisted time far in the future (a clock that jumped) must not
    // stop refreshes: wait at most one back-off.
    let mut next = Instant::now()
        + first_attempt_at
            .map(|at| until(at).min(refresh.policy.after_failure(u32::MAX, None)))
            .unwrap_or_default();
    if next > Instant::now() {
        tracing::info!(
            wait = %humantime::format_duration(round_secs(next - Instant::now())),
            "next RTE call postponed (the cached forecast is fresh, or a back-off is running)"
        );
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = closing.cancelled() => return,
        }
        let started = Instant::now();
        let attempt_at = Timestamp::now();
        let outcome = tokio::select! {
            r = refresh.client.fetch_signals() => r,
            _ = closing.cancelled() => return,
        };
        let outcome = outcome.and_then(|body| {
            let text = String::from_utf8(body.to_vec()).map_err(|_| Error::InvalidBody {
                origin: url.clone(),
                reason: ecowatt::BodyError::Json("not UTF-8".to_owned()),
            })?;
            let forecast = parse_body(text.as_bytes(), &url, refresh.rebase_to())?;
            Ok((text, forecast))
        });
        // Persist first, publish second: a client that has seen a forecast
        // can count on a restart (even after kill -9) serving it.
        let (wait, fresh) = match outcome {
            Ok((text, forecast)) => {
                failures = 0;
                last_good = Some((text, attempt_at));
                (refresh.policy.after_success(), Some(forecast))
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = refresh.policy.after_failure(failures, e.retry_after());
                let kept = current.borrow().published.is_some();
                tracing::warn!(
                    error = %e,
                    consecutive_failures = failures,
                    retry_in = %humantime::format_duration(round_secs(wait)),
                    kept_last_good = kept,
                    "RTE refresh failed"
                );
                current.send_modify(|c| c.problem = Some(e.to_string()));
                (wait, None)
            }
        };
        // Waits count from the end of this attempt's last signals call (a
        // slow token call or a 401 retry came before it), or from the start
        // of the attempt if it made none.
        let call_ended = refresh
            .client
            .last_signals_call()
            .map_or(started, |ended| ended.max(started));
        let cached = Cached {
            source_detail: url.clone(),
            last_good: last_good.clone(),
            next_attempt_at: jiff::SignedDuration::try_from(
                wait + call_ended.saturating_duration_since(started),
            )
            .ok()
            .and_then(|w| attempt_at.checked_add(w).ok()),
        };
        // fsync blocks: off the async workers.
        let cache = refresh.cache.clone();
        let saved = tokio::task::spawn_blocking(move || cache.save(&cached)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::error!(
                error = %saved.map_or_else(|e| e.to_string(), |r| r.err().map(|e| e.to_string()).unwrap_or_default()),
                "cannot persist the forecast cache; a restart would refetch"
            );
        }
        if let Some(forecast) = fresh {
            tracing::info!(
                days = forecast.days.len(),
                hours = forecast.hours.len(),
                generated_at = %forecast.generated_at,
                next_in = %humantime::format_duration(wait),
                "new forecast from RTE"
            );
            publish(
                &current,
                Published {
                    forecast,
                    fetched_at: attempt_at,
                    source: refresh.source,
                    source_detail: url.clone(),
                    ages: true,
                },
            );
        }
        next = call_ended + wait;
    }
}

/// How long from now until `at` (zero if past).
fn until(at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default()
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// How often the file source looks at the file.
pub(crate) const FILE_POLL: Duration = Duration::from_secs(1);

/// Checks the file every [`FILE_POLL`] (see [`FileWatcher::check`]) until
/// `closing` turns true.
pub(crate) async fn run_file(
    mut watcher: FileWatcher,
    current: watch::Sender<Current>,
    closing: CancellationToken,
) {
    let mut ticks = tokio::time::interval(FILE_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => watcher.check(&current),
            _ = closing.cancelled() => return,
        }
    }
}

/// The file source: re-reads the file whenever it changes (and, with
/// `rebase`, every hour, rebased to the date in Paris). Remembers what it last
/// read, to tell when to read again.
pub(crate) struct FileWatcher {
    path: PathBuf,
    rebase: bool,
    seen: Option<(Option<SystemTime>, u64)>,
    bytes: Vec<u8>,
    /// With `rebase`: the Paris date and hour of the last rebase. It is
    /// redone every hour, so that `fetched_at` stays recent for clients
    /// that judge freshness themselves (the controller does).
    rebased_for: Option<(Date, i8)>,
}

impl FileWatcher {
    pub(crate) fn new(path: PathBuf, rebase: bool) -> Self {
        Self {
            path,
            rebase,
            seen: None,
            bytes: Vec::new(),
            rebased_for: None,
        }
    }

    /// Reads the file if it changed (or the day did, when rebasing) and
    /// publishes the result, or the reason it was rejected.
    pub(crate) fn check(&mut self, current: &watch::Sender<Current>) {
        let origin = self.path.display().to_string();
        let read_err = |source| Error::ReadFile {
            path: self.path.clone(),
            source,
        };
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => return report_problem(current, read_err(e).to_string()),
        };
        let mtime = meta.modified().ok();
        let seen = Some((mtime, meta.len()));
        let now = Timestamp::now();
        let today = timeline::paris_date(now);
        let this_hour = (today, now.to_zoned_datetime(timeline::PARIS.clone()).hour());
        let new_period = self.rebase && self.rebased_for != Some(this_hour);
        if seen == self.seen && !new_period {
            return;
        }
        // A forecast body weighs a few KiB: a huge file is a mistake, and
        // must not be read into memory.
        let bytes = match delestage_runtime::files::read_limited(
            &self.path,
            delestage_runtime::files::STATE_FILE_LIMIT,
        ) {
            Ok(b) => b,
            Err(e) => return report_problem(current, read_err(e).to_string()),
        };
        self.seen = seen;
        if bytes == self.bytes && !new_period && current.borrow().published.is_some() {
            return;
        }
        match parse_body(&bytes, &origin, self.rebase.then_some(today)) {
            Ok(forecast) => {
                let fetched_at = if self.rebase {
                    now
                } else {
                    mtime
                        .and_then(|t| Timestamp::try_from(t).ok())
                        .unwrap_or(now)
                };
                tracing::info!(
                    file = %origin,
                    days = forecast.days.len(),
                    hours = forecast.hours.len(),
                    rebased_to = ?self.rebase.then_some(today),
                    "read the forecast file"
                );
                publish(
                    current,
                    Published {
                        forecast,
                        fetched_at,
                        source: Source::File,
                        source_detail: origin,
                        ages: !self.rebase,
                    },
                );
                self.rebased_for = self.rebase.then_some(this_hour);
            }
            Err(e) => report_problem(current, e.to_string()),
        }
        self.bytes = bytes;
    }
}

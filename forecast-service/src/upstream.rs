//! Following another forecast-service (`--source upstream`): a replica.
//!
//! RTE allows one call per 15 minutes per application, so replicas must not
//! each call RTE. A replica follows its upstream's WatchForecast and
//! WatchTempo streams instead, and publishes what arrives into the same
//! [`Current`] and [`TempoCurrent`] the gRPC side serves: clients of a
//! replica see the same API. Replicas can follow replicas (a tree); only the
//! root holds RTE credentials.
//!
//! The last message of each stream is kept in the state dir (the same cache
//! files as the RTE source, holding the upstream's message as received,
//! protobuf in base64), so a replica serves through an upstream outage and
//! across its own restarts. Streams that break are opened again with
//! back-off; the first message of a new stream is the whole forecast, so
//! nothing missed while away matters.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use delestage_proto::forecast::v1 as pb;
use delestage_proto::vocabulary::{SignalLevel, TempoColor};
use delestage_runtime::backoff::Backoff;
use delestage_runtime::client::{AuthedChannel, ClientSecurity};
use jiff::Timestamp;
use pb::forecast_service_client::ForecastServiceClient;
use prost::Message;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::cache::{CacheFile, Cached, Loaded};
use crate::forecast::{Day, Forecast, Hour};
use crate::refresh::{self, Current, Published, Source};
use crate::tempo::{Calendar, TempoDay};
use crate::tempo_source::{self, PublishedTempo, TempoCurrent};

/// Reconnect back-off: quick after a blip, at most every 10 s during an
/// outage (a stream costs the upstream nothing until it answers).
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// How long to wait before asking again an upstream that runs with Tempo
/// off (it may be restarted with it on).
const TEMPO_OFF_RETRY: Duration = Duration::from_secs(60);

/// Time limit for connecting to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The forecast-service to follow, and how to reach it.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub url: String,
    /// TLS (CA, client certificate) and the bearer token (a `read` token).
    pub security: ClientSecurity,
}

/// A replica's link to its upstream.
pub(crate) struct Upstream {
    url: String,
    client: ForecastServiceClient<AuthedChannel>,
    forecast_cache: CacheFile,
    tempo_cache: CacheFile,
}

impl Upstream {
    /// Prepares the client (the connection is made lazily, and again after
    /// every failure) and the caches in `state_dir`.
    pub(crate) fn new(
        settings: &UpstreamSettings,
        state_dir: &std::path::Path,
    ) -> Result<Self, Error> {
        let (channel, token) =
            delestage_runtime::client::channel(&settings.url, &settings.security, CONNECT_TIMEOUT)?;
        let client = ForecastServiceClient::with_interceptor(channel, token);
        Ok(Self {
            url: settings.url.clone(),
            client,
            forecast_cache: CacheFile::in_dir(state_dir),
            tempo_cache: CacheFile::tempo_in_dir(state_dir),
        })
    }

    /// The upstream's URL (what `source_detail` says).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Publishes what the caches hold from this upstream, so that the
    /// replica serves at once, even while its upstream is down.
    pub(crate) fn restore(
        &self,
        current: &watch::Sender<Current>,
        tempo: &watch::Sender<TempoCurrent>,
    ) -> Result<(), Error> {
        if let Some(message) = self.load::<pb::Forecast>(&self.forecast_cache, "forecast")? {
            match forecast_from_pb(&message, &self.url) {
                Ok(published) => {
                    tracing::info!(fetched_at = %published.fetched_at, hours = published.forecast.hours.len(), "serving the cached forecast from the upstream");
                    refresh::publish(current, published);
                }
                Err(reason) => {
                    tracing::error!(%reason, "the cached upstream forecast is not usable; waiting for the upstream")
                }
            }
        }
        if let Some(message) = self.load::<pb::TempoCalendar>(&self.tempo_cache, "Tempo")? {
            match tempo_from_pb(&message) {
                Ok(published) => tempo_source::publish(tempo, published),
                Err(reason) => {
                    tracing::error!(%reason, "the cached upstream Tempo calendar is not usable")
                }
            }
        }
        Ok(())
    }

    /// The message a cache holds, if it is from this upstream and decodes.
    fn load<M: Message + Default>(
        &self,
        cache: &CacheFile,
        what: &str,
    ) -> Result<Option<M>, Error> {
        let cached = match cache.load()? {
            Loaded::Missing => return Ok(None),
            Loaded::SetAside { set_aside, reason } => {
                tracing::error!(set_aside = %set_aside.display(), %reason, "the cached {what} is corrupt; kept aside");
                return Ok(None);
            }
            Loaded::Found(cached) => cached,
        };
        if cached.source_detail != self.url {
            tracing::info!(cached_for = %cached.source_detail, url = %self.url, "the cached {what} is from another source; not used");
            return Ok(None);
        }
        let Some((body, _)) = cached.last_good else {
            return Ok(None);
        };
        match BASE64
            .decode(body.trim())
            .map_err(|e| e.to_string())
            .and_then(|bytes| M::decode(bytes.as_slice()).map_err(|e| e.to_string()))
        {
            Ok(message) => Ok(Some(message)),
            Err(reason) => {
                tracing::error!(cache = %cache.path().display(), %reason, "the cached {what} does not decode; ignored");
                Ok(None)
            }
        }
    }

    /// Keeps `message` as the last good one (failures are logged: the
    /// replica goes on serving from memory).
    fn save(&self, cache: &CacheFile, message: &impl Message, fetched_at: Timestamp) {
        let cached = Cached {
            source_detail: self.url.clone(),
            last_good: Some((BASE64.encode(message.encode_to_vec()), fetched_at)),
            next_attempt_at: None,
        };
        if let Err(e) = cache.save(&cached) {
            tracing::error!(error = %e, "cannot keep the upstream's message; a restart will wait for the upstream");
        }
    }
}

/// Follows the upstream's forecast and Tempo calendar until `closing`.
pub(crate) async fn run(
    upstream: Upstream,
    current: watch::Sender<Current>,
    tempo: watch::Sender<TempoCurrent>,
    closing: CancellationToken,
) {
    tracing::info!(url = %upstream.url, "following the upstream forecast-service");
    let upstream = Arc::new(upstream);
    tokio::join!(
        follow_forecast(Arc::clone(&upstream), current, closing.clone()),
        follow_tempo(upstream, tempo, closing),
    );
}

/// WatchForecast, again and again: every message is published and kept.
async fn follow_forecast(
    upstream: Arc<Upstream>,
    current: watch::Sender<Current>,
    closing: CancellationToken,
) {
    let mut retry = RECONNECT.start();
    loop {
        let mut client = upstream.client.clone();
        let session = async {
            let mut stream = client
                .watch_forecast(pb::WatchForecastRequest {})
                .await?
                .into_inner();
            while let Some(message) = stream.next().await {
                let message = message?;
                match forecast_from_pb(&message, &upstream.url) {
                    Ok(published) => {
                        retry.succeeded();
                        let fetched_at = published.fetched_at;
                        let is_new = current.borrow().published.as_deref().is_none_or(|p| {
                            p.fetched_at != fetched_at || p.forecast != published.forecast
                        });
                        if is_new {
                            tracing::info!(%fetched_at, hours = published.forecast.hours.len(), "new forecast from the upstream");
                            upstream.save(&upstream.forecast_cache, &message, fetched_at);
                            refresh::publish(&current, published);
                        }
                    }
                    Err(reason) => refresh::report_problem(
                        &current,
                        format!(
                            "upstream {}: a forecast this replica cannot use: {reason}",
                            upstream.url
                        ),
                    ),
                }
            }
            Err::<Infallible, _>(tonic::Status::unavailable("the upstream closed the stream"))
        };
        let status: tonic::Status = tokio::select! {
            Err(status) = session => status,
            () = closing.cancelled() => return,
        };
        refresh::report_problem(
            &current,
            format!(
                "upstream {}: {} ({}); serving the last forecast received",
                upstream.url,
                status.message(),
                status.code()
            ),
        );
        let wait = retry.failed();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = closing.cancelled() => return,
        }
    }
}

/// WatchTempo, again and again. An upstream with Tempo off turns it off
/// here too (GetTempo says so), and is asked again every minute.
async fn follow_tempo(
    upstream: Arc<Upstream>,
    tempo: watch::Sender<TempoCurrent>,
    closing: CancellationToken,
) {
    let mut retry = RECONNECT.start();
    loop {
        let mut client = upstream.client.clone();
        let session = async {
            let mut stream = client
                .watch_tempo(pb::WatchTempoRequest {})
                .await?
                .into_inner();
            while let Some(message) = stream.next().await {
                let message = message?;
                retry.succeeded();
                match tempo_from_pb(&message) {
                    Ok(published) => {
                        let is_new = tempo.borrow().published.as_deref().is_none_or(|p| {
                            p.fetched_at != published.fetched_at || p.calendar != published.calendar
                        });
                        if is_new {
                            upstream.save(&upstream.tempo_cache, &message, published.fetched_at);
                            tempo.send_modify(|t| t.enabled = true);
                            tempo_source::publish(&tempo, published);
                        }
                    }
                    Err(reason) => tempo_source::report_problem(
                        &tempo,
                        format!(
                            "upstream {}: a calendar this replica cannot use: {reason}",
                            upstream.url
                        ),
                    ),
                }
            }
            Err::<Infallible, _>(tonic::Status::unavailable("the upstream closed the stream"))
        };
        let status: tonic::Status = tokio::select! {
            Err(status) = session => status,
            () = closing.cancelled() => return,
        };
        let off = pb::has_reason(&status, pb::TEMPO_NOT_ENABLED);
        let wait = if off {
            tempo.send_if_modified(|t| {
                let was = t.enabled;
                if was {
                    tracing::info!(url = %upstream.url, "the upstream runs with Tempo off; so does this replica");
                }
                t.enabled = false;
                t.published = None;
                was
            });
            TEMPO_OFF_RETRY
        } else {
            tempo_source::report_problem(
                &tempo,
                format!(
                    "upstream {}: {} ({}); serving the last calendar received",
                    upstream.url,
                    status.message(),
                    status.code()
                ),
            );
            retry.failed()
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = closing.cancelled() => return,
        }
    }
}

fn time(t: Option<&prost_types::Timestamp>, what: &str) -> Result<Timestamp, String> {
    let t = t.ok_or_else(|| format!("{what} is missing"))?;
    delestage_proto::time::try_from_pb(t).map_err(|e| format!("{what}: {e}"))
}

/// A forecast message as this replica serves it: the same hours and days,
/// fetched when the root fetched them, with the upstream as its source.
pub(crate) fn forecast_from_pb(message: &pb::Forecast, url: &str) -> Result<Published, String> {
    let mut hours = Vec::with_capacity(message.hours.len());
    for h in &message.hours {
        let start = time(h.start.as_ref(), "an hour's start")?;
        let end = time(h.end.as_ref(), "an hour's end")?;
        if start >= end {
            return Err(format!(
                "the hour at {start} ends at {end}, not after it starts"
            ));
        }
        // An hour of a level this build does not know is an unknown hour.
        if let Some(level) = SignalLevel::from_pb(h.level) {
            hours.push(Hour { start, end, level });
        }
    }
    hours.sort_by_key(|h| h.start);
    if let Some(pair) = hours.windows(2).find(|p| p[0].end > p[1].start) {
        return Err(format!("hours overlap at {}", pair[1].start));
    }
    let mut days = Vec::with_capacity(message.days.len());
    for d in &message.days {
        let start = time(d.start.as_ref(), "a day's start")?;
        let Some(level) = SignalLevel::from_pb(d.level) else {
            continue;
        };
        days.push(Day {
            date: crate::timeline::paris_date(start),
            start,
            level,
            message: d.message.clone(),
        });
    }
    days.sort_by_key(|d| d.start);
    Ok(Published {
        forecast: Forecast {
            generated_at: time(message.generated_at.as_ref(), "generated_at")?,
            days,
            hours,
        },
        fetched_at: time(message.fetched_at.as_ref(), "fetched_at")?,
        source: Source::Upstream,
        source_detail: url.to_owned(),
        ages: true,
    })
}

/// A Tempo message as this replica serves it.
pub(crate) fn tempo_from_pb(message: &pb::TempoCalendar) -> Result<PublishedTempo, String> {
    let mut days = Vec::with_capacity(message.days.len());
    for d in &message.days {
        let date = d
            .date
            .parse()
            .map_err(|e| format!("date {:?}: {e}", d.date))?;
        if let Some(color) = TempoColor::from_pb(d.color) {
            days.push(TempoDay { date, color });
        }
    }
    days.sort_by_key(|d| d.date);
    days.dedup_by_key(|d| d.date);
    Ok(PublishedTempo {
        calendar: Calendar { days },
        fetched_at: time(message.fetched_at.as_ref(), "fetched_at")?,
        ages: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{forecast_to_pb, tempo_to_pb};

    fn published() -> Published {
        let body = include_str!("../payloads/signals-sandbox-v5.json");
        Published {
            forecast: refresh::parse_body(body.as_bytes(), "test", None).expect("parses"),
            fetched_at: "2026-11-27T08:00:00Z".parse().expect("ts"),
            source: Source::Rte,
            source_detail: "https://rte.example/open_api/ecowatt/v5/signals".to_owned(),
            ages: true,
        }
    }

    #[test]
    fn a_forecast_crosses_a_replica_unchanged_but_for_its_source() {
        let root = published();
        let message = forecast_to_pb(&root, false);
        let replica = forecast_from_pb(&message, "http://root:50052").expect("usable");
        assert_eq!(replica.forecast, root.forecast);
        assert_eq!(replica.fetched_at, root.fetched_at);
        assert_eq!(replica.source, Source::Upstream);
        assert_eq!(replica.source_detail, "http://root:50052");
        // And through the cache's encoding.
        let bytes = BASE64
            .decode(BASE64.encode(message.encode_to_vec()))
            .expect("b64");
        let back = pb::Forecast::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(back, message);
    }

    #[test]
    fn overlapping_or_backward_hours_are_refused() {
        let mut message = forecast_to_pb(&published(), false);
        message.hours[1].start = message.hours[0].start;
        let err = forecast_from_pb(&message, "u").expect_err("overlap");
        assert!(err.contains("overlap"), "{err}");
        let mut message = forecast_to_pb(&published(), false);
        message.hours[0].end = message.hours[0].start;
        assert!(forecast_from_pb(&message, "u").is_err());
        let mut message = forecast_to_pb(&published(), false);
        message.fetched_at = None;
        let err = forecast_from_pb(&message, "u").expect_err("no fetched_at");
        assert!(err.contains("fetched_at"), "{err}");
    }

    #[test]
    fn a_tempo_calendar_crosses_a_replica_unchanged() {
        let root = PublishedTempo {
            calendar: Calendar {
                days: vec![
                    TempoDay {
                        date: jiff::civil::date(2026, 11, 27),
                        color: TempoColor::White,
                    },
                    TempoDay {
                        date: jiff::civil::date(2026, 11, 28),
                        color: TempoColor::Red,
                    },
                ],
            },
            fetched_at: "2026-11-27T10:00:00Z".parse().expect("ts"),
            ages: true,
        };
        let message = tempo_to_pb(&root, root.fetched_at);
        assert_eq!(tempo_from_pb(&message).expect("usable"), root);
    }
}

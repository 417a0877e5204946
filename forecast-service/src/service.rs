//! The gRPC face of the forecast: `delestage.forecast.v1.ForecastService`.
//!
//! Reads [`Current`] (Ecowatt) and [`TempoCurrent`] from the refresh tasks'
//! `watch` channels; nothing here ever calls RTE.

use std::sync::Arc;
use std::time::Duration;

use delestage_proto::forecast::v1 as pb;
use delestage_proto::time::to_pb;
use delestage_runtime::stream::{Sink, StreamSlots, WatchStream};
use jiff::Timestamp;
use pb::forecast_service_server::ForecastService;
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::refresh::{Current, Published, Source};
use crate::tempo_source::{PublishedTempo, TEMPO_MAX_AGE, TempoCurrent};
use crate::timeline;

pub(crate) struct ForecastApi {
    current: watch::Receiver<Current>,
    tempo: watch::Receiver<TempoCurrent>,
    max_age: Duration,
    streams: StreamSlots,
}

impl ForecastApi {
    /// `max_age`: older forecasts are served with `stale` set. `streams`
    /// caps the Watch* streams; its token turns true at shutdown, which
    /// ends them all.
    pub(crate) fn new(
        current: watch::Receiver<Current>,
        tempo: watch::Receiver<TempoCurrent>,
        max_age: Duration,
        streams: StreamSlots,
    ) -> Self {
        Self {
            current,
            tempo,
            max_age,
            streams,
        }
    }

    pub(crate) fn into_server(self) -> pb::forecast_service_server::ForecastServiceServer<Self> {
        pb::forecast_service_server::ForecastServiceServer::new(self)
            .max_decoding_message_size(delestage_runtime::grpc::MAX_REQUEST_BYTES)
    }

    /// The current forecast, or UNAVAILABLE saying why there is none.
    fn published(&self) -> Result<Arc<Published>, Status> {
        let current = self.current.borrow();
        match &current.published {
            Some(p) => Ok(Arc::clone(p)),
            None => Err(Status::with_error_details(
                tonic::Code::Unavailable,
                match &current.problem {
                    Some(problem) => format!("no forecast yet: {problem}"),
                    None => {
                        "no forecast yet: the first fetch is in progress; retry in a few seconds"
                            .to_owned()
                    }
                },
                ErrorDetails::with_error_info(
                    pb::NO_FORECAST_YET,
                    pb::ERROR_DOMAIN,
                    std::collections::HashMap::new(),
                ),
            )),
        }
    }
}

/// Tempo is off: the one answer to every Tempo call, with its typed reason.
fn tempo_not_enabled() -> Status {
    Status::with_error_details(
        tonic::Code::Unavailable,
        "tempo is not enabled (start forecast-service with --tempo rte or --tempo file)",
        ErrorDetails::with_error_info(
            pb::TEMPO_NOT_ENABLED,
            pb::ERROR_DOMAIN,
            std::collections::HashMap::new(),
        ),
    )
}

/// The current Tempo calendar, or UNAVAILABLE saying why there is none.
fn tempo_published(current: &TempoCurrent) -> Result<Arc<PublishedTempo>, Status> {
    if !current.enabled {
        return Err(tempo_not_enabled());
    }
    match &current.published {
        Some(p) => Ok(Arc::clone(p)),
        None => Err(Status::unavailable(match &current.problem {
            Some(problem) => format!("no Tempo calendar yet: {problem}"),
            None => "no Tempo calendar yet: the first call is in progress; retry in a few seconds"
                .to_owned(),
        })),
    }
}

#[tonic::async_trait]
impl ForecastService for ForecastApi {
    async fn get_tempo(
        &self,
        _request: Request<pb::GetTempoRequest>,
    ) -> Result<Response<pb::TempoCalendar>, Status> {
        let published = tempo_published(&self.tempo.borrow())?;
        Ok(Response::new(tempo_to_pb(&published, Timestamp::now())))
    }

    type WatchTempoStream = WatchStream<pb::TempoCalendar>;

    async fn watch_tempo(
        &self,
        _request: Request<pb::WatchTempoRequest>,
    ) -> Result<Response<Self::WatchTempoStream>, Status> {
        if !self.tempo.borrow().enabled {
            return Err(tempo_not_enabled());
        }
        let (sink, stream) = self.streams.open()?;
        tokio::spawn(forward_tempo(self.tempo.clone(), sink));
        Ok(Response::new(stream))
    }

    async fn get_forecast(
        &self,
        _request: Request<pb::GetForecastRequest>,
    ) -> Result<Response<pb::Forecast>, Status> {
        let published = self.published()?;
        Ok(Response::new(forecast_to_pb(
            &published,
            published.is_stale(Timestamp::now(), self.max_age),
        )))
    }

    async fn get_level(
        &self,
        request: Request<pb::GetLevelRequest>,
    ) -> Result<Response<pb::GetLevelResponse>, Status> {
        let at = match request.into_inner().at {
            Some(at) => delestage_proto::time::try_from_pb(&at).map_err(|e| {
                Status::invalid_argument(format!(
                    "at: {}s {}ns is not a valid time: {e}",
                    at.seconds, at.nanos
                ))
            })?,
            None => Timestamp::now(),
        };
        let published = self.published()?;
        let (start, end) = match timeline::hour_containing(at) {
            Some((_, _, start, end)) => (Some(to_pb(start)), Some(to_pb(end))),
            None => (None, None),
        };
        let level = published
            .forecast
            .hour_at(at)
            .map_or(pb::SignalLevel::Unspecified, |h| h.level.into());
        Ok(Response::new(pb::GetLevelResponse {
            level: level.into(),
            start,
            end,
            stale: published.is_stale(Timestamp::now(), self.max_age),
        }))
    }

    type WatchForecastStream = WatchStream<pb::Forecast>;

    async fn watch_forecast(
        &self,
        _request: Request<pb::WatchForecastRequest>,
    ) -> Result<Response<Self::WatchForecastStream>, Status> {
        let (sink, stream) = self.streams.open()?;
        tokio::spawn(forward_forecasts(self.current.clone(), self.max_age, sink));
        Ok(Response::new(stream))
    }
}

/// Feeds one WatchForecast stream: the current forecast (as soon as there
/// is one), every new one, and the same one again when it turns stale.
/// Ends when the client goes away or the service shuts down.
async fn forward_forecasts(
    mut current: watch::Receiver<Current>,
    max_age: Duration,
    sink: Sink<pb::Forecast>,
) {
    let mut sent: Option<(Arc<Published>, bool)> = None;
    loop {
        let published = current.borrow_and_update().published.clone();
        let mut stale_deadline = None;
        if let Some(p) = published {
            let stale = p.is_stale(Timestamp::now(), max_age);
            let is_new = sent
                .as_ref()
                .is_none_or(|(last, was_stale)| !Arc::ptr_eq(last, &p) || *was_stale != stale);
            if is_new && !sink.send(forecast_to_pb(&p, stale)).await {
                return;
            }
            if !stale {
                stale_deadline = p.stale_at(max_age).map(|at| {
                    let wait =
                        Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default();
                    tokio::time::Instant::now() + wait
                });
            }
            sent = Some((p, stale));
        }
        let next = async {
            tokio::select! {
                changed = current.changed() => changed.is_ok(),
                () = sleep_until_opt(stale_deadline) => true,
            }
        };
        if sink.until(next).await != Some(true) {
            return;
        }
    }
}

/// Feeds one WatchTempo stream: the current calendar (as soon as there is
/// one), every new one, and the same one again when it turns stale.
async fn forward_tempo(mut current: watch::Receiver<TempoCurrent>, sink: Sink<pb::TempoCalendar>) {
    let mut sent: Option<(Arc<PublishedTempo>, bool)> = None;
    loop {
        let published = current.borrow_and_update().published.clone();
        let mut stale_deadline = None;
        if let Some(p) = published {
            let now = Timestamp::now();
            let stale = p.is_stale(now);
            let is_new = sent
                .as_ref()
                .is_none_or(|(last, was_stale)| !Arc::ptr_eq(last, &p) || *was_stale != stale);
            if is_new && !sink.send(tempo_to_pb(&p, now)).await {
                return;
            }
            if !stale && p.ages {
                let stale_at = p.fetched_at
                    + jiff::SignedDuration::try_from(TEMPO_MAX_AGE).unwrap_or_default();
                let wait = Duration::try_from(stale_at.duration_since(now)).unwrap_or_default();
                stale_deadline = Some(tokio::time::Instant::now() + wait);
            }
            sent = Some((p, stale));
        }
        let next = async {
            tokio::select! {
                changed = current.changed() => changed.is_ok(),
                () = sleep_until_opt(stale_deadline) => true,
            }
        };
        if sink.until(next).await != Some(true) {
            return;
        }
    }
}

pub(crate) fn tempo_to_pb(p: &PublishedTempo, now: Timestamp) -> pb::TempoCalendar {
    pb::TempoCalendar {
        days: p
            .calendar
            .days
            .iter()
            .map(|d| pb::TempoDay {
                date: d.date.to_string(),
                color: pb::TempoColor::from(d.color).into(),
                start: d.start().map(to_pb),
                end: d.end().map(to_pb),
                peak_end: d.peak_end().map(to_pb),
            })
            .collect(),
        fetched_at: Some(to_pb(p.fetched_at)),
        stale: p.is_stale(now),
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn forecast_to_pb(p: &Published, stale: bool) -> pb::Forecast {
    pb::Forecast {
        hours: p
            .forecast
            .hours
            .iter()
            .map(|h| pb::HourSignal {
                start: Some(to_pb(h.start)),
                end: Some(to_pb(h.end)),
                level: pb::SignalLevel::from(h.level).into(),
            })
            .collect(),
        days: p
            .forecast
            .days
            .iter()
            .map(|d| pb::DaySignal {
                start: Some(to_pb(d.start)),
                level: pb::SignalLevel::from(d.level).into(),
                message: d.message.clone(),
            })
            .collect(),
        generated_at: Some(to_pb(p.forecast.generated_at)),
        fetched_at: Some(to_pb(p.fetched_at)),
        stale,
        source: match p.source {
            Source::Rte => pb::ForecastSource::Rte,
            Source::RteSandbox => pb::ForecastSource::RteSandbox,
            Source::File => pb::ForecastSource::File,
            Source::Upstream => pb::ForecastSource::Upstream,
        }
        .into(),
        source_detail: p.source_detail.clone(),
    }
}

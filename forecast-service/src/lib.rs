//! forecast-service: wraps RTE's Ecowatt and Tempo APIs (or files) and
//! serves `delestage.forecast.v1.ForecastService` (GetForecast / GetLevel /
//! WatchForecast, GetTempo / WatchTempo).
//!
//! - [`ecowatt`]: RTE's wire format (parse, validate, rebase).
//! - [`timeline`] and [`forecast`]: the time rule, and hours on a real
//!   timeline.
//! - [`rte`]: the HTTP client (OAuth2 token, signals call).
//! - [`schedule`]: when the next upstream call may be made.
//! - [`refresh`]: the one task that fetches, and what it publishes.
//! - [`tempo`]: RTE's Tempo calendar (parse, the tariff day, when to ask);
//!   [`tempo_source`]: the task that keeps it current.
//! - [`upstream`]: a replica, following another forecast-service instead
//!   of RTE.
//! - [`cache`]: the last good answer, across restarts.
//! - [`service`]: the gRPC mapping. [`config`]: flags and config file.
//!
//! `main.rs` only parses flags and calls [`run`]; tests call [`serve`] with
//! a listener of their own.

mod cache;
pub mod config;
pub mod ecowatt;
mod error;
pub mod forecast;
mod refresh;
pub mod rte;
pub mod schedule;
mod service;
pub mod tempo;
mod tempo_source;
pub mod timeline;
mod upstream;

use std::future::Future;
use std::path::Path;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use delestage_runtime::stream::StreamSlots;

use crate::cache::CacheFile;
use crate::config::{Settings, SourceSettings, TempoSettings};
pub use crate::error::Error;
use crate::refresh::{Current, FileWatcher, RteRefresh, Source};
use crate::rte::RteClient;
use crate::service::ForecastApi;
use crate::tempo_source::{TempoCurrent, TempoFileWatcher, TempoRefresh};
use crate::upstream::Upstream;
pub use crate::upstream::UpstreamSettings;

/// The fully-qualified gRPC service name, as health reports it.
pub const SERVICE_NAME: &str = "delestage.forecast.v1.ForecastService";

/// Binds and serves until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let listener = delestage_runtime::grpc::bind(&settings.listen).await?;
    serve(settings, listener, shutdown).await
}

/// Serves on `listener` until `shutdown` resolves: restores the cache (RTE)
/// or reads the file, starts the refresh task, answers requests, then ends
/// every stream and the refresh task, and returns.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let (current_tx, current_rx) = watch::channel(Current::default());
    let (tempo_tx, tempo_rx) = watch::channel(TempoCurrent {
        // A replica serves Tempo when its upstream does (it finds out).
        enabled: !matches!(settings.tempo, TempoSettings::Off)
            || matches!(settings.source, SourceSettings::Upstream(_)),
        ..TempoCurrent::default()
    });
    let closing = CancellationToken::new();
    let Started {
        source_task,
        tempo_task,
        source_detail,
    } = start_sources(
        settings.source,
        settings.tempo,
        &settings.state_dir,
        current_tx,
        tempo_tx,
        &closing,
    )?;

    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| settings.listen.clone());
    tracing::info!(
        %addr,
        source = %source_detail,
        have_forecast = current_rx.borrow().published.is_some(),
        "forecast-service listening"
    );

    let gauges = tokio::spawn(refresh::report_gauges(
        current_rx.clone(),
        settings.max_age,
        closing.clone(),
    ));
    let routes = tonic::service::Routes::new(
        ForecastApi::new(
            current_rx,
            tempo_rx,
            settings.max_age,
            StreamSlots::new(settings.max_streams, closing.clone()),
        )
        .into_server(),
    );
    let shutdown = async move {
        shutdown.await;
        // Ends WatchForecast streams (which would otherwise hold the
        // graceful shutdown forever) and the refresh task.
        closing.cancel();
    };
    let served = delestage_runtime::grpc::serve(
        listener,
        routes,
        &[SERVICE_NAME],
        settings.security.clone(),
        settings.max_connections,
        shutdown,
    )
    .await;
    if served.is_err() {
        // The shutdown future never ran: stop the tasks here.
        source_task.abort();
        if let Some(t) = &tempo_task {
            t.abort();
        }
        gauges.abort();
    }
    let _ = source_task.await;
    if let Some(t) = tempo_task {
        let _ = t.await;
    }
    let _ = gauges.await;
    served?;
    tracing::info!("forecast-service stopped");
    Ok(())
}

/// The tasks that keep the forecast and the Tempo calendar current.
struct Started {
    source_task: JoinHandle<()>,
    /// `None`: Tempo is off, or the source task follows it (a replica).
    tempo_task: Option<JoinHandle<()>>,
    /// Where the forecast comes from, for the log.
    source_detail: String,
}

/// Restores the caches (or reads the files) and starts the tasks: from RTE,
/// from a file, or from an upstream forecast-service (which brings its
/// Tempo calendar along).
fn start_sources(
    source: SourceSettings,
    tempo: TempoSettings,
    state_dir: &Path,
    current_tx: watch::Sender<Current>,
    tempo_tx: watch::Sender<TempoCurrent>,
    closing: &CancellationToken,
) -> Result<Started, Error> {
    let mut ecowatt_client = None;
    let (source_task, source_detail) = match source {
        SourceSettings::Upstream(upstream) => {
            delestage_runtime::files::ensure_writable_dir(state_dir)?;
            let upstream = Upstream::new(&upstream, state_dir)?;
            upstream.restore(&current_tx, &tempo_tx)?;
            let detail = upstream.url().to_owned();
            let task = tokio::spawn(upstream::run(
                upstream,
                current_tx,
                tempo_tx,
                closing.clone(),
            ));
            // Validation refuses --tempo with an upstream source.
            return Ok(Started {
                source_task: task,
                tempo_task: None,
                source_detail: detail,
            });
        }
        SourceSettings::Rte(rte) => {
            delestage_runtime::files::ensure_writable_dir(state_dir)?;
            let client = Arc::new(RteClient::new(
                &rte.base,
                rte.sandbox,
                rte.credentials,
                rte.request_timeout,
            )?);
            ecowatt_client = Some(Arc::clone(&client));
            let detail = client.signals_url().to_string();
            let refresh = RteRefresh {
                client,
                source: if rte.sandbox {
                    Source::RteSandbox
                } else {
                    Source::Rte
                },
                cache: CacheFile::in_dir(state_dir),
                policy: rte.policy,
                rebase_to_today: rte.rebase_to_today,
            };
            let restored = refresh.restore(&current_tx)?;
            let task = tokio::spawn(refresh::run_rte(
                refresh,
                restored,
                current_tx,
                closing.clone(),
            ));
            (task, detail)
        }
        SourceSettings::File {
            path,
            rebase_to_today,
        } => {
            let detail = path.display().to_string();
            let mut watcher = FileWatcher::new(path, rebase_to_today);
            // Read once before listening, so the first client finds it.
            watcher.check(&current_tx);
            let task = tokio::spawn(refresh::run_file(watcher, current_tx, closing.clone()));
            (task, detail)
        }
    };

    let tempo_task = start_tempo(tempo, state_dir, ecowatt_client, tempo_tx, closing)?;
    Ok(Started {
        source_task,
        tempo_task,
        source_detail,
    })
}

/// The Tempo source's task, if Tempo is on: from RTE (its own credentials,
/// else the Ecowatt client's) or from a file.
fn start_tempo(
    tempo: TempoSettings,
    state_dir: &Path,
    ecowatt_client: Option<Arc<RteClient>>,
    tempo_tx: watch::Sender<TempoCurrent>,
    closing: &CancellationToken,
) -> Result<Option<JoinHandle<()>>, Error> {
    Ok(match tempo {
        TempoSettings::Off => None,
        TempoSettings::Rte(tempo) => {
            delestage_runtime::files::ensure_writable_dir(state_dir)?;
            let client = match (tempo.credentials, ecowatt_client) {
                (Some(credentials), _) => Arc::new(RteClient::new(
                    &tempo.base,
                    tempo.sandbox,
                    credentials,
                    tempo.request_timeout,
                )?),
                (None, Some(shared)) => shared,
                (None, None) => {
                    return Err(Error::Config(
                        "--tempo rte needs RTE credentials (TEMPO_CLIENT_ID / TEMPO_CLIENT_SECRET, or the Ecowatt ones)"
                            .to_owned(),
                    ));
                }
            };
            tracing::info!(url = %client.tempo_url(), "Tempo from RTE");
            let refresh = TempoRefresh {
                client,
                cache: CacheFile::tempo_in_dir(state_dir),
                schedule: tempo.schedule,
            };
            let restored = refresh.restore(&tempo_tx)?;
            Some(tokio::spawn(tempo_source::run_tempo_rte(
                refresh,
                restored,
                tempo_tx,
                closing.clone(),
            )))
        }
        TempoSettings::File {
            path,
            rebase_to_today,
        } => {
            tracing::info!(file = %path.display(), "Tempo from a file");
            let mut watcher = TempoFileWatcher::new(path, rebase_to_today);
            watcher.check(&tempo_tx);
            Some(tokio::spawn(tempo_source::run_tempo_file(
                watcher,
                tempo_tx,
                closing.clone(),
            )))
        }
    })
}

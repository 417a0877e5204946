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

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;
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
    let closing = CancellationToken::new();

    let mut ecowatt_client = None;
    let (refresh_task, source_detail) = match settings.source {
        SourceSettings::Rte(rte) => {
            delestage_runtime::files::ensure_writable_dir(&settings.state_dir)?;
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
                cache: CacheFile::in_dir(&settings.state_dir),
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

    let (tempo_tx, tempo_rx) = watch::channel(TempoCurrent {
        enabled: !matches!(settings.tempo, TempoSettings::Off),
        ..TempoCurrent::default()
    });
    let tempo_task = match settings.tempo {
        TempoSettings::Off => None,
        TempoSettings::Rte(tempo) => {
            delestage_runtime::files::ensure_writable_dir(&settings.state_dir)?;
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
                cache: CacheFile::tempo_in_dir(&settings.state_dir),
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
    };

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
        shutdown,
    )
    .await;
    if served.is_err() {
        // The shutdown future never ran: stop the tasks here.
        refresh_task.abort();
        if let Some(t) = &tempo_task {
            t.abort();
        }
    }
    let _ = refresh_task.await;
    if let Some(t) = tempo_task {
        let _ = t.await;
    }
    gauges.abort();
    served?;
    tracing::info!("forecast-service stopped");
    Ok(())
}

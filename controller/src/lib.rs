//! controller: turns the Ecowatt forecast and a list of loads into a plan,
//! and makes the relays agree with it. Serves
//! `delestage.controller.v1.ControllerService`.
//!
//! - [`model`]: loads, wiring, fallbacks; forecast hours, Tempo days, and
//!   what has been seen of the other services.
//! - [`policy`]: the pure plan (forecast + loads + overrides + now).
//! - [`follow`]: following the forecast-service and the relay-services.
//! - [`enforce`]: comparing plan and relays, switching what differs.
//! - [`store`]: overrides, switch history and the last forecast, across
//!   restarts.
//! - [`wire`]: the domain as protobuf messages, for every door.
//! - [`service`]: the gRPC API. [`http`]: the web dashboard and its JSON
//!   API (`--http`). [`mqtt`]: Home Assistant (`--mqtt`). [`config`]: the
//!   TOML file and flags.

pub mod config;
mod enforce;
mod error;
mod follow;
mod http;
pub mod model;
mod mqtt;
mod policy;
pub mod power;
mod service;
mod store;
mod tempo_source;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use delestage_proto::forecast::v1::forecast_service_client::ForecastServiceClient;
use delestage_proto::relay::v1 as rpb;
use delestage_runtime::client::{AuthedChannel, ClientSecurity};
use delestage_runtime::stream::StreamSlots;
use rpb::relay_service_client::RelayServiceClient;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::enforce::{Controller, Enforcement, RelayLink};
pub use crate::error::Error;
use crate::model::{ForecastSeen, RelaySeen};
use crate::service::ControllerApi;
use crate::store::Store;

/// The fully-qualified gRPC service name, as health reports it.
pub const SERVICE_NAME: &str = "delestage.controller.v1.ControllerService";

/// How long the start-up check of each relay-service may take.
const STARTUP_CHECK: Duration = Duration::from_secs(2);

/// Binds and serves until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let listener = delestage_runtime::grpc::bind(&settings.listen).await?;
    serve(settings, listener, shutdown).await
}

/// A lazily connected, authenticated channel (TLS and token as configured).
fn channel(endpoint: &str, security: &ClientSecurity) -> Result<AuthedChannel, Error> {
    let (channel, token) = delestage_runtime::client::channel(endpoint, security, STARTUP_CHECK)
        .map_err(|e| Error::Config(e.to_string()))?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel, token,
    ))
}

/// Serves gRPC on `listener` (and the dashboard on `settings.http`, bound
/// here) until `shutdown` resolves; see [`serve_on`].
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    // Before anything starts: a busy port stops the controller at once.
    let http = match &settings.http {
        Some(http) => Some(http::bind(http).await?),
        None => None,
    };
    serve_on(settings, listener, http, shutdown).await
}

/// Serves gRPC on `listener`, and the dashboard on `http` when given (with
/// `settings.http`'s protection), until `shutdown` resolves: opens the
/// state, checks the relay-services it can reach, follows the forecast and
/// the relays, reconciles, answers requests; then stops every task and
/// stream.
pub async fn serve_on(
    settings: Settings,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let store = open_store(&settings)?;
    // Read now (password, CA): a missing file stops the start.
    let mqtt = match &settings.mqtt {
        Some(mqtt) => Some((mqtt.clone(), mqtt::client_options(mqtt)?)),
        None => None,
    };
    let links = connect_relays(&settings).await?;

    let closing = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    // Every task of the controller, joined at shutdown.
    let tasks = TaskTracker::new();
    let forecast_client =
        ForecastServiceClient::new(channel(&settings.forecast, &settings.forecast_security)?);
    let forecast_seen = follow_everything(
        &settings,
        &tasks,
        forecast_client.clone(),
        &links,
        &wake,
        &closing,
    );
    let meter_seen = follow_the_meter(&settings, &tasks, &forecast_seen, &wake, &closing)?;

    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| settings.listen.clone());
    let loads = settings.loads.len();
    let relay_services = settings.relay_services.len();
    let state_dir = settings.state_dir.display().to_string();
    let security = settings.security.clone();
    let controller = Arc::new(Controller::new(
        Enforcement {
            loads: settings.loads,
            restore_stagger: settings.restore_stagger,
            restore_jitter: settings.restore_jitter,
            forecast_max_age: settings.forecast_max_age,
            power: settings.power.clone(),
        },
        store,
        forecast_seen.subscribe(),
        meter_seen,
        links,
        wake,
    ));
    tasks.spawn(enforce::run(Arc::clone(&controller), closing.clone()));
    if let Some((mqtt, options)) = mqtt {
        tasks.spawn(mqtt::run(
            mqtt,
            options,
            Arc::clone(&controller),
            closing.clone(),
        ));
    }
    tracing::info!(%addr, loads, relay_services, %state_dir, "controller listening");

    // One cap for the gRPC Watch* streams and the dashboard's event streams.
    let streams = StreamSlots::new(settings.max_streams, closing.clone());
    let mut dashboard = None;
    if let (Some(listener), Some(http)) = (http_listener, settings.http) {
        let pages = http::Dashboard {
            controller: Arc::clone(&controller),
            forecast: forecast_client,
            tokens: http.security.tokens.clone(),
            streams: streams.clone(),
            closing: closing.clone(),
        };
        let serving = http::serve(listener, http, pages);
        dashboard = Some(tokio::spawn(serving));
    }
    let routes = tonic::service::Routes::new(
        ControllerApi::new(Arc::clone(&controller), streams).into_server(),
    );
    let shutdown = {
        let closing = closing.clone();
        async move {
            shutdown.await;
            closing.cancel();
        }
    };
    let served = delestage_runtime::grpc::serve(
        listener,
        routes,
        &[SERVICE_NAME],
        security,
        settings.max_connections,
        shutdown,
    )
    .await;
    closing.cancel();
    // The last switches finish and their history records are written; the
    // last forecast received is kept.
    tasks.close();
    tasks.wait().await;
    if let Some(dashboard) = dashboard {
        match dashboard.await {
            Ok(result) => result?,
            Err(e) => tracing::error!(error = %e, "the dashboard's task failed"),
        }
    }
    served?;
    tracing::info!("controller stopped");
    Ok(())
}

/// The state dir: its problems said, the overrides of loads no longer
/// configured dropped.
fn open_store(settings: &Settings) -> Result<Store, Error> {
    let (mut store, report) = Store::open(&settings.state_dir)?;
    for problem in &report.problems {
        tracing::error!(%problem, "state");
    }
    let dropped = store.retain_overrides(|name| settings.loads.iter().any(|l| l.name == name))?;
    for load in dropped {
        tracing::warn!(%load, "dropped the override of a load that is no longer configured");
    }
    Ok(store)
}

/// A client per relay-service, its channels checked if it answers now.
async fn connect_relays(settings: &Settings) -> Result<Vec<RelayLink>, Error> {
    let mut links = Vec::new();
    for rs in &settings.relay_services {
        let client = RelayServiceClient::new(channel(&rs.endpoint, &rs.security)?);
        check_channels(settings, &rs.name, &rs.endpoint, client.clone()).await?;
        links.push(RelayLink {
            name: rs.name.clone(),
            endpoint: rs.endpoint.clone(),
            client,
            seen: Arc::new(watch::channel(RelaySeen::default()).0),
        });
    }
    Ok(links)
}

/// Starts following the forecast, Tempo and every relay box (and keeping
/// the forecast in the state dir), on `tasks`; returns what the forecast
/// followers publish.
fn follow_everything(
    settings: &Settings,
    tasks: &TaskTracker,
    forecast_client: ForecastServiceClient<AuthedChannel>,
    links: &[RelayLink],
    wake: &Arc<Notify>,
    closing: &CancellationToken,
) -> Arc<watch::Sender<ForecastSeen>> {
    let forecast_file = store::ForecastFile::in_dir(&settings.state_dir);
    let forecast_seen = Arc::new(watch::channel(forecast_file.load()).0);
    tasks.spawn(follow::keep_forecast(
        forecast_file,
        forecast_seen.subscribe(),
        closing.clone(),
    ));
    tasks.spawn(follow::follow_tempo(
        forecast_client.clone(),
        Arc::clone(&forecast_seen),
        Arc::clone(wake),
        settings.loads.iter().any(|l| l.shed_on_tempo.is_some()),
        closing.clone(),
    ));
    tasks.spawn(follow::follow_forecast(
        forecast_client,
        Arc::clone(&forecast_seen),
        Arc::clone(wake),
        closing.clone(),
    ));
    for link in links {
        tasks.spawn(follow::follow_relays(
            link.name.clone(),
            link.client.clone(),
            Arc::clone(&link.seen),
            Arc::clone(wake),
            closing.clone(),
        ));
    }
    forecast_seen
}

/// Follows the Linky meter (`[meter] relay` or `[power] meter`), if one is
/// named, on `tasks`; returns what the follower publishes.
fn follow_the_meter(
    settings: &Settings,
    tasks: &TaskTracker,
    forecast_seen: &Arc<watch::Sender<ForecastSeen>>,
    wake: &Arc<Notify>,
    closing: &CancellationToken,
) -> Result<Option<watch::Receiver<model::MeterSeen>>, Error> {
    let Some((relay, meter)) = meter_client(settings)? else {
        return Ok(None);
    };
    let power = Arc::new(
        watch::channel(model::MeterSeen {
            relay_service: relay.clone(),
            ..model::MeterSeen::default()
        })
        .0,
    );
    let seen = power.subscribe();
    tasks.spawn(follow::follow_meter(
        relay,
        meter,
        Arc::clone(forecast_seen),
        power,
        Arc::clone(wake),
        closing.clone(),
    ));
    Ok(Some(seen))
}

/// A client of the meter of the relay box `[meter] relay` names, if any.
fn meter_client(
    settings: &Settings,
) -> Result<
    Option<(
        String,
        delestage_proto::meter::v1::meter_service_client::MeterServiceClient<AuthedChannel>,
    )>,
    Error,
> {
    let Some(rs) = settings
        .meter_relay
        .as_ref()
        .and_then(|name| settings.relay_services.iter().find(|r| &r.name == name))
    else {
        return Ok(None);
    };
    tracing::info!(relay_service = %rs.name, "following the Linky meter of this relay box for Tempo");
    Ok(Some((
        rs.name.clone(),
        delestage_proto::meter::v1::meter_service_client::MeterServiceClient::new(channel(
            &rs.endpoint,
            &rs.security,
        )?),
    )))
}

/// If the relay-service answers, every load on it must name a channel it
/// has: a typo there would otherwise drive nothing, silently.
async fn check_channels(
    settings: &Settings,
    name: &str,
    endpoint: &str,
    mut client: RelayServiceClient<AuthedChannel>,
) -> Result<(), Error> {
    let answer =
        tokio::time::timeout(STARTUP_CHECK, client.get_relays(rpb::GetRelaysRequest {})).await;
    let relays = match answer {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(e)) => {
            tracing::warn!(relay_service = name, endpoint, error = %e.message(), "relay-service not reachable at start; its channels will be checked when it is");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(
                relay_service = name,
                endpoint,
                "relay-service did not answer at start; its channels will be checked when it is"
            );
            return Ok(());
        }
    };
    let count = relays
        .board
        .map_or(relays.relays.len() as u32, |b| b.channel_count);
    for (i, load) in settings.loads.iter().enumerate() {
        if load.relay.relay_service == name && load.relay.channel >= count {
            return Err(Error::Config(format!(
                "{}: load[{i}] ({:?}).relay: relay-service {name:?} at {endpoint} has channels 0..={}, not {}",
                settings.config_path.display(),
                load.name,
                count.saturating_sub(1),
                load.relay.channel
            )));
        }
    }
    Ok(())
}

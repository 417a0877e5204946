//! The web dashboard and its JSON API (`--http ADDR`): one page at `/`
//! whose assets are compiled into the binary, `/api/...` for the same
//! answers as the gRPC API in the CLI's `--json` shapes, and
//! `/api/events`, a server-sent event stream that keeps the page live.
//!
//! - [`guard`]: who may do what (tokens, and the checks that keep other
//!   web sites out).
//! - [`api`]: the JSON routes. [`events`]: the live stream.
//! - [`page`]: the embedded page.

mod api;
mod events;
mod guard;
mod page;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use delestage_proto::forecast::v1::forecast_service_client::ForecastServiceClient;
use delestage_runtime::client::AuthedChannel;
use delestage_runtime::connections::Connections;
use delestage_runtime::stream::StreamSlots;
use delestage_runtime::tokens::Tokens;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::HttpSettings;
use crate::enforce::Controller;

/// What every handler sees.
#[derive(Clone)]
pub(crate) struct Dashboard {
    pub controller: Arc<Controller>,
    /// For `/api/forecast`: the forecast-service's own answer, as
    /// `delestage forecast --json` shows it.
    pub forecast: ForecastServiceClient<AuthedChannel>,
    pub tokens: Option<Arc<Tokens>>,
    /// Caps the event streams (with the gRPC Watch* streams' limit).
    pub streams: StreamSlots,
    /// Ends the event streams at shutdown.
    pub closing: CancellationToken,
}

/// The routes. Every `/api` route goes through [`guard::check`].
pub(crate) fn router(dashboard: Dashboard) -> Router {
    let api = Router::new()
        .route("/status", get(api::status))
        .route("/plan", get(api::plan))
        .route("/forecast", get(api::forecast))
        .route("/history", get(api::history))
        .route(
            "/overrides/{load}",
            post(api::set_override).delete(api::clear_override),
        )
        .route("/events", get(events::stream))
        .fallback(api::not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            dashboard.clone(),
            guard::check,
        ))
        .layer(axum::middleware::map_response(api::json_errors))
        .with_state(dashboard);
    Router::new().nest("/api", api).merge(page::routes())
}

/// Binds `settings.listen`: done before anything else starts, so that a
/// busy port stops the controller at once.
pub(crate) async fn bind(settings: &HttpSettings) -> Result<TcpListener, Error> {
    Ok(delestage_runtime::grpc::bind(&settings.listen).await?)
}

/// Serves the dashboard until `closing` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    settings: HttpSettings,
    dashboard: Dashboard,
) -> Result<(), Error> {
    let closing = dashboard.closing.clone();
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| settings.listen.clone());
    let scheme = if settings.security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        %addr,
        url = %format!("{scheme}://{addr}/"),
        tokens = settings.security.tokens.is_some(),
        client_certificates = settings.security.client_certificates,
        "serving the dashboard"
    );
    delestage_runtime::http::serve(
        Connections::limit(listener, settings.max_connections),
        router(dashboard),
        settings.security.tls,
        closing.cancelled_owned(),
    )
    .await?;
    Ok(())
}

//! The forecast-service in-process, with a real gRPC client, and its
//! settings against the Ecowatt stand-in.

use std::path::Path;
use std::time::Duration;

use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin};
use delestage_forecast_service::config::{RteSettings, Settings, SourceSettings};
use delestage_forecast_service::rte::Credentials;
use delestage_forecast_service::schedule::RefreshPolicy;
use delestage_proto::forecast::v1 as pb;
use pb::forecast_service_client::ForecastServiceClient;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::{InProcess, any_port};
use crate::BOUND;

/// Serves a forecast-service until stopped.
pub fn serve(
    settings: Settings,
    listener: TcpListener,
) -> InProcess<delestage_forecast_service::Error> {
    InProcess::spawn(listener, |listener, shutdown| {
        delestage_forecast_service::serve(settings, listener, shutdown)
    })
}

/// A running forecast-service, in-process, with a client.
pub struct Running {
    pub client: ForecastServiceClient<Channel>,
    server: InProcess<delestage_forecast_service::Error>,
}

impl Running {
    /// Starts it on `127.0.0.1:0`.
    pub async fn start(settings: Settings) -> Self {
        Self::start_on(settings, any_port().await).await
    }

    /// Serves on a listener of the test's own (the same port again, for a
    /// restart).
    pub async fn start_on(settings: Settings, listener: TcpListener) -> Self {
        let server = serve(settings, listener);
        // The listener is bound: connecting cannot race the server.
        let channel = Channel::from_shared(server.url())
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        Self {
            client: ForecastServiceClient::new(channel),
            server,
        }
    }

    /// Where it listens, for a replica to follow it.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr
    }

    /// Stops it (checked: in time, without error).
    pub async fn stop(self) {
        self.server.stop().await;
    }

    /// GetForecast.
    pub async fn forecast(&mut self) -> Result<pb::Forecast, tonic::Status> {
        self.client
            .get_forecast(pb::GetForecastRequest {})
            .await
            .map(|r| r.into_inner())
    }

    /// Polls GetForecast until `done` holds (the refresh task works on its
    /// own schedule; there is nothing else to wait on).
    pub async fn forecast_until(
        &mut self,
        what: &str,
        done: impl Fn(&Result<pb::Forecast, tonic::Status>) -> bool,
    ) -> Result<pb::Forecast, tonic::Status> {
        let client = self.client.clone();
        let probe = || {
            let mut client = client.clone();
            async move {
                client
                    .get_forecast(pb::GetForecastRequest {})
                    .await
                    .map(tonic::Response::into_inner)
            }
        };
        crate::poll(what, probe, done).await
    }

    /// GetTempo.
    pub async fn tempo(&mut self) -> Result<pb::TempoCalendar, tonic::Status> {
        self.client
            .get_tempo(pb::GetTempoRequest {})
            .await
            .map(|r| r.into_inner())
    }

    /// Polls GetTempo until `done` holds.
    pub async fn tempo_until(
        &mut self,
        what: &str,
        done: impl Fn(&Result<pb::TempoCalendar, tonic::Status>) -> bool,
    ) -> Result<pb::TempoCalendar, tonic::Status> {
        let client = self.client.clone();
        let probe = || {
            let mut client = client.clone();
            async move {
                client
                    .get_tempo(pb::GetTempoRequest {})
                    .await
                    .map(tonic::Response::into_inner)
            }
        };
        crate::poll(what, probe, done).await
    }

    /// GetLevel at `at` (RFC 3339).
    pub async fn level_at(&mut self, at: &str) -> pb::GetLevelResponse {
        let t: jiff::Timestamp = at.parse().expect("timestamp");
        self.client
            .get_level(pb::GetLevelRequest {
                at: Some(delestage_proto::time::to_pb(t)),
            })
            .await
            .expect("GetLevel")
            .into_inner()
    }

    pub async fn watch(&self) -> tonic::Streaming<pb::Forecast> {
        self.client
            .clone()
            .watch_forecast(pb::WatchForecastRequest {})
            .await
            .expect("watch")
            .into_inner()
    }
}

pub async fn next_forecast(stream: &mut tonic::Streaming<pb::Forecast>) -> pb::Forecast {
    tokio::time::timeout(BOUND, stream.next())
        .await
        .expect("a forecast in time")
        .expect("the stream is open")
        .expect("a forecast, not an error")
}

/// A stand-in without the 15-minute limit, for tests that refresh fast.
pub fn unlimited() -> StandinConfig {
    StandinConfig::unlimited()
}

pub fn rte_settings(standin: &EcowattStandin, state_dir: &Path, interval: Duration) -> Settings {
    let mut settings = Settings::with_file("unused", state_dir);
    settings.source = SourceSettings::Rte(RteSettings {
        base: standin.base_url().parse().expect("url"),
        sandbox: false,
        rebase_to_today: false,
        credentials: Credentials {
            client_id: SecretString::from("test-client-id"),
            client_secret: SecretString::from("test-client-secret"),
        },
        policy: RefreshPolicy {
            interval,
            floor: Duration::ZERO,
            margin: Duration::ZERO,
        },
        request_timeout: Duration::from_secs(5),
    });
    settings
}

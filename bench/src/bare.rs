//! The baseline: the same gRPC contracts served by plain tonic handlers
//! that answer fixed messages at once. Whatever our services cost above
//! this is ours.
//!
//! It runs as a process of its own (`loadgen serve-bare`), like the
//! services it is compared with, and with TCP_NODELAY like them (without
//! it every unary call would wait on Nagle's algorithm, and the comparison
//! would flatter us).

use delestage_proto::forecast::v1 as fpb;
use delestage_proto::relay::v1 as rpb;
use fpb::forecast_service_server::{ForecastService, ForecastServiceServer};
use rpb::relay_service_server::{RelayService, RelayServiceServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

fn relay(channel: u32) -> rpb::Relay {
    rpb::Relay {
        channel,
        energized: channel.is_multiple_of(2),
        changed_at: Some(prost_types::Timestamp {
            seconds: 1_790_000_000,
            nanos: 0,
        }),
        label: String::new(),
        switches_last_minute: 0,
        max_switches_per_minute: 20,
        applied: Some(true),
    }
}

pub(crate) struct BareRelays;

#[tonic::async_trait]
impl RelayService for BareRelays {
    async fn set_relay(
        &self,
        request: Request<rpb::SetRelayRequest>,
    ) -> Result<Response<rpb::SetRelayResponse>, Status> {
        let req = request.into_inner();
        let mut r = relay(req.channel);
        r.energized = req.energized;
        Ok(Response::new(rpb::SetRelayResponse {
            relay: Some(r),
            switched: true,
        }))
    }

    async fn get_relays(
        &self,
        _request: Request<rpb::GetRelaysRequest>,
    ) -> Result<Response<rpb::GetRelaysResponse>, Status> {
        Ok(Response::new(rpb::GetRelaysResponse {
            relays: (0..8).map(relay).collect(),
            board: Some(rpb::Board {
                kind: rpb::BoardKind::Simulated.into(),
                serial_number: 0,
                attached: true,
                channel_count: 8,
                description: "simulated board, 8 channels".to_owned(),
                version: 0,
                hardware_failsafe: rpb::HardwareFailsafe::Off.into(),
            }),
        }))
    }

    async fn renew_hold(
        &self,
        _request: Request<rpb::RenewHoldRequest>,
    ) -> Result<Response<rpb::RenewHoldResponse>, Status> {
        Err(Status::unimplemented("not measured"))
    }

    type WatchRelaysStream = ReceiverStream<Result<rpb::RelayEvent, Status>>;

    async fn watch_relays(
        &self,
        _request: Request<rpb::WatchRelaysRequest>,
    ) -> Result<Response<Self::WatchRelaysStream>, Status> {
        Err(Status::unimplemented("not measured"))
    }
}

pub(crate) struct BareForecast;

#[tonic::async_trait]
impl ForecastService for BareForecast {
    async fn get_forecast(
        &self,
        _request: Request<fpb::GetForecastRequest>,
    ) -> Result<Response<fpb::Forecast>, Status> {
        Err(Status::unimplemented("not measured"))
    }

    async fn get_level(
        &self,
        _request: Request<fpb::GetLevelRequest>,
    ) -> Result<Response<fpb::GetLevelResponse>, Status> {
        Ok(Response::new(fpb::GetLevelResponse {
            level: fpb::SignalLevel::Green.into(),
            start: Some(prost_types::Timestamp {
                seconds: 1_790_000_000,
                nanos: 0,
            }),
            end: Some(prost_types::Timestamp {
                seconds: 1_790_003_600,
                nanos: 0,
            }),
            stale: false,
        }))
    }

    type WatchForecastStream = ReceiverStream<Result<fpb::Forecast, Status>>;

    async fn watch_forecast(
        &self,
        _request: Request<fpb::WatchForecastRequest>,
    ) -> Result<Response<Self::WatchForecastStream>, Status> {
        Err(Status::unimplemented("not measured"))
    }

    async fn get_tempo(
        &self,
        _request: Request<fpb::GetTempoRequest>,
    ) -> Result<Response<fpb::TempoCalendar>, Status> {
        Err(Status::unimplemented("not measured"))
    }

    type WatchTempoStream = ReceiverStream<Result<fpb::TempoCalendar, Status>>;

    async fn watch_tempo(
        &self,
        _request: Request<fpb::WatchTempoRequest>,
    ) -> Result<Response<Self::WatchTempoStream>, Status> {
        Err(Status::unimplemented("not measured"))
    }
}

/// Serves both bare services, and health, on `listen` until killed. Prints
/// the same kind of JSON "listening" line as our services, so the load
/// generator starts it the same way.
pub(crate) async fn serve(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    eprintln!(r#"{{"fields":{{"message":"bare tonic listening","addr":"{addr}"}}}}"#);
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(RelayServiceServer::new(BareRelays))
        .add_service(ForecastServiceServer::new(BareForecast))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await?;
    Ok(())
}

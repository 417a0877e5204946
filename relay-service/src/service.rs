//! The gRPC face of the relay bank: `delestage.relay.v1.RelayService`.
//!
//! Thin on purpose: validate, call [`RelayBank`], convert. Errors become
//! statuses through `From<Error> for Status`.

use std::sync::Arc;

use delestage_proto::relay::v1 as pb;
use delestage_runtime::stream::{StreamSlots, WatchStream, forward_broadcast};
use pb::relay_service_server::RelayService;
use tonic::{Request, Response, Status};

use crate::bank::{BoardInfo, Change, Relay, RelayBank, Snapshot};
use crate::board::{BoardKind, FailsafeState};
use crate::hold::Hold;
use crate::plan::{ChannelPlan, HeldPlan};

pub(crate) struct RelayApi {
    bank: Arc<RelayBank>,
    hold: Option<Arc<Hold>>,
    /// Caps the WatchRelays streams, and ends them when the bank closes.
    streams: StreamSlots,
}

impl RelayApi {
    /// `hold`: the relay hold, when the service runs with one;
    /// `max_streams`: the most WatchRelays streams open at once.
    pub(crate) fn new(bank: Arc<RelayBank>, hold: Option<Arc<Hold>>, max_streams: usize) -> Self {
        let streams = StreamSlots::new(max_streams, bank.closing());
        Self {
            bank,
            hold,
            streams,
        }
    }

    pub(crate) fn into_server(self) -> pb::relay_service_server::RelayServiceServer<Self> {
        pb::relay_service_server::RelayServiceServer::new(self)
            .max_decoding_message_size(delestage_runtime::grpc::MAX_REQUEST_BYTES)
    }
}

#[tonic::async_trait]
impl RelayService for RelayApi {
    async fn set_relay(
        &self,
        request: Request<pb::SetRelayRequest>,
    ) -> Result<Response<pb::SetRelayResponse>, Status> {
        // A request read after the caller gave up (this box was frozen) is
        // not carried out: the caller has no record of it.
        delestage_runtime::deadline::check_now(request.metadata())?;
        let req = request.into_inner();
        let outcome = self.bank.set(req.channel, req.energized).await?;
        Ok(Response::new(pb::SetRelayResponse {
            relay: Some(relay_to_pb(outcome.relay)),
            switched: outcome.switched,
        }))
    }

    async fn get_relays(
        &self,
        _request: Request<pb::GetRelaysRequest>,
    ) -> Result<Response<pb::GetRelaysResponse>, Status> {
        let snapshot = self.bank.snapshot().await;
        Ok(Response::new(pb::GetRelaysResponse {
            relays: snapshot.relays.into_iter().map(relay_to_pb).collect(),
            board: Some(board_to_pb(snapshot.board)),
        }))
    }

    async fn renew_hold(
        &self,
        request: Request<pb::RenewHoldRequest>,
    ) -> Result<Response<pb::RenewHoldResponse>, Status> {
        let Some(hold) = &self.hold else {
            return Ok(Response::new(pb::RenewHoldResponse {
                enabled: false,
                timeout: None,
                expires_at: None,
                had_expired: false,
            }));
        };
        let request = request.into_inner();
        let plan = held_plan(request.channels, self.bank.channel_count())?;
        let renewal = hold.renew(&request.holder, plan);
        Ok(Response::new(pb::RenewHoldResponse {
            enabled: true,
            timeout: prost_types::Duration::try_from(renewal.timeout).ok(),
            expires_at: Some(renewal.expires_at.into()),
            had_expired: renewal.had_expired,
        }))
    }

    type WatchRelaysStream = WatchStream<pb::RelayEvent>;

    async fn watch_relays(
        &self,
        _request: Request<pb::WatchRelaysRequest>,
    ) -> Result<Response<Self::WatchRelaysStream>, Status> {
        let (sink, stream) = self.streams.open()?;
        let (snapshot, changes) = self.bank.subscribe().await;
        let bank = Arc::clone(&self.bank);
        forward_broadcast(
            sink,
            snapshot_to_pb(snapshot),
            changes,
            change_to_pb,
            move || {
                let bank = Arc::clone(&bank);
                async move { snapshot_to_pb(bank.snapshot().await) }
            },
        );
        Ok(Response::new(stream))
    }
}

/// The plan of a RenewHold, checked: channels that exist, once each, and
/// steps with a time (sorted).
fn held_plan(channels: Vec<pb::HeldChannel>, count: u32) -> Result<HeldPlan, Status> {
    let mut plan = HeldPlan::default();
    for held in channels {
        if held.channel >= count {
            return Err(Status::invalid_argument(format!(
                "channels: channel {} does not exist (0..={})",
                held.channel,
                count.saturating_sub(1)
            )));
        }
        if plan.is_planned(held.channel) {
            return Err(Status::invalid_argument(format!(
                "channels: channel {} is listed twice",
                held.channel
            )));
        }
        let mut schedule = Vec::with_capacity(held.schedule.len());
        for step in held.schedule {
            let from = step
                .from
                .and_then(|t| std::time::SystemTime::try_from(t).ok())
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "channels: channel {}: a scheduled state without a valid `from`",
                        held.channel
                    ))
                })?;
            schedule.push((from, step.energized));
        }
        schedule.sort_by_key(|s| s.0);
        plan.channels.push(ChannelPlan {
            channel: held.channel,
            schedule,
            safe_energized: held.safe_energized,
        });
    }
    Ok(plan)
}

fn relay_to_pb(relay: Relay) -> pb::Relay {
    pb::Relay {
        channel: relay.channel,
        energized: relay.energized,
        changed_at: relay.changed_at.map(Into::into),
        label: relay.label,
        switches_last_minute: relay.switches_last_minute,
        max_switches_per_minute: relay.max_switches_per_minute,
        applied: Some(relay.applied),
    }
}

fn board_to_pb(board: BoardInfo) -> pb::Board {
    pb::Board {
        kind: match board.kind {
            BoardKind::Simulated => pb::BoardKind::Simulated,
            BoardKind::Phidget1017 => pb::BoardKind::Phidget1017,
        }
        .into(),
        serial_number: board.serial_number.unwrap_or(0),
        attached: board.attached,
        channel_count: board.channel_count,
        description: board.description,
        version: board.version.unwrap_or(0),
        hardware_failsafe: match board.hardware_failsafe {
            FailsafeState::Off => pb::HardwareFailsafe::Off,
            FailsafeState::Armed => pb::HardwareFailsafe::Armed,
            FailsafeState::Unsupported => pb::HardwareFailsafe::Unsupported,
            FailsafeState::Tripped => pb::HardwareFailsafe::Tripped,
        }
        .into(),
    }
}

fn snapshot_to_pb(snapshot: Snapshot) -> pb::RelayEvent {
    pb::RelayEvent {
        at: Some(snapshot.at.into()),
        event: Some(pb::relay_event::Event::Snapshot(pb::RelaySnapshot {
            relays: snapshot.relays.into_iter().map(relay_to_pb).collect(),
            board: Some(board_to_pb(snapshot.board)),
        })),
    }
}

fn change_to_pb(change: Change) -> pb::RelayEvent {
    match change {
        Change::Relay { at, relay } => pb::RelayEvent {
            at: Some(at.into()),
            event: Some(pb::relay_event::Event::RelayChanged(relay_to_pb(relay))),
        },
        Change::Board { at, board } => pb::RelayEvent {
            at: Some(at.into()),
            event: Some(pb::relay_event::Event::BoardChanged(board_to_pb(board))),
        },
    }
}

//! The gRPC face of the relay bank: `delestage.relay.v1.RelayService`.
//!
//! Thin on purpose: validate, call [`RelayBank`], convert. Errors become
//! statuses through `From<Error> for Status`.

use std::sync::Arc;

use delestage_proto::relay::v1 as pb;
use pb::relay_service_server::RelayService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::bank::{BoardInfo, Change, Relay, RelayBank, Snapshot};
use crate::board::BoardKind;
use crate::hold::Hold;

/// How many events a WatchRelays stream buffers for a slow reader before
/// the stream waits (and, past the bank's backlog, gets a snapshot).
const STREAM_BUFFER: usize = 16;

pub struct RelayApi {
    bank: Arc<RelayBank>,
    hold: Option<Arc<Hold>>,
}

impl RelayApi {
    /// `hold`: the relay hold, when the service runs with one.
    pub fn new(bank: Arc<RelayBank>, hold: Option<Arc<Hold>>) -> Self {
        Self { bank, hold }
    }

    pub fn into_server(self) -> pb::relay_service_server::RelayServiceServer<Self> {
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
        let holder = request.into_inner().holder;
        let renewal = hold.renew(&holder);
        Ok(Response::new(pb::RenewHoldResponse {
            enabled: true,
            timeout: prost_types::Duration::try_from(renewal.timeout).ok(),
            expires_at: Some(renewal.expires_at.into()),
            had_expired: renewal.had_expired,
        }))
    }

    type WatchRelaysStream = ReceiverStream<Result<pb::RelayEvent, Status>>;

    async fn watch_relays(
        &self,
        _request: Request<pb::WatchRelaysRequest>,
    ) -> Result<Response<Self::WatchRelaysStream>, Status> {
        let (snapshot, changes) = self.bank.subscribe().await;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(forward_changes(
            Arc::clone(&self.bank),
            snapshot,
            changes,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Feeds one WatchRelays stream until the client goes away or the service
/// shuts down. A client that falls behind the bank's backlog gets a fresh
/// snapshot: it cannot hold memory, and it still ends up with the truth.
async fn forward_changes(
    bank: Arc<RelayBank>,
    snapshot: Snapshot,
    mut changes: broadcast::Receiver<Change>,
    tx: mpsc::Sender<Result<pb::RelayEvent, Status>>,
) {
    let mut next = Some(snapshot_to_pb(snapshot));
    loop {
        if let Some(event) = next.take() {
            tokio::select! {
                sent = tx.send(Ok(event)) => if sent.is_err() { return },
                () = bank.closed() => return,
            }
        }
        next = tokio::select! {
            change = changes.recv() => match change {
                Ok(change) => Some(change_to_pb(change)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "WatchRelays subscriber fell behind; sending a snapshot");
                    Some(snapshot_to_pb(bank.snapshot().await))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = tx.closed() => return,
            () = bank.closed() => return,
        };
    }
}

fn relay_to_pb(relay: Relay) -> pb::Relay {
    pb::Relay {
        channel: relay.channel,
        energized: relay.energized,
        changed_at: relay.changed_at.map(Into::into),
        label: relay.label,
        switches_last_minute: relay.switches_last_minute,
        max_switches_per_minute: relay.max_switches_per_minute,
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

//! relay-service: owns the relay board and serves
//! `delestage.relay.v1.RelayService` (SetRelay / GetRelays / WatchRelays).
//!
//! - [`board`]: the hardware, simulated or a Phidget 1017.
//! - [`bank`]: intended states, wear guard, persistence, change events.
//! - [`meter`]: the Linky meter's TIC on a serial port, and
//!   `delestage.meter.v1.MeterService`.
//! - [`service`]: the gRPC mapping.
//! - [`config`]: flags and config file.
//!
//! `main.rs` only parses flags and calls [`run`]; tests call [`serve`] with a
//! board and a listener of their own.

mod bank;
pub mod board;
pub mod config;
mod error;
mod hold;
pub mod meter;
mod persist;
mod plan;
mod service;
mod state;
mod wear;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bank::RelayBank;
use crate::board::{Board, SimulatedBoard};
use crate::config::{BoardChoice, OnStart, Settings};
pub use crate::error::Error;
use crate::hold::Hold;
use crate::service::RelayApi;
use crate::state::{ChannelState, Loaded, StateFile};

/// The fully-qualified gRPC service name, as health reports it.
pub const SERVICE_NAME: &str = "delestage.relay.v1.RelayService";

/// The meter's gRPC service, on the same port (UNAVAILABLE without
/// `--meter`).
pub const METER_SERVICE_NAME: &str = "delestage.meter.v1.MeterService";

/// Opens the board the settings ask for. [`serve`] checks it before it
/// serves.
pub fn open_board(settings: &Settings) -> Result<Board, Error> {
    Ok(match settings.board {
        BoardChoice::Sim => Board::Simulated(SimulatedBoard::new(settings.channels)),
        #[cfg(feature = "phidget")]
        BoardChoice::Phidget => Board::Phidget(
            board::phidget::PhidgetBoard::open(settings.serial, settings.hardware_failsafe)
                .map_err(|e| Error::Config(format!("cannot open the Phidget 1017: {e}")))?,
        ),
        #[cfg(not(feature = "phidget"))]
        BoardChoice::Phidget => {
            return Err(Error::Config(
                "--board phidget: this relay-service was built without Phidget support; \
                 rebuild it with `cargo build --release -p delestage-relay-service --features phidget` \
                 (needs libphidget22, see docs/relay-service.md, \"On real hardware\")"
                    .to_owned(),
            ));
        }
    })
}

/// Binds, opens the board, and serves until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let listener = delestage_runtime::grpc::bind(&settings.listen).await?;
    let board = open_board(&settings)?;
    serve(settings, board, listener, shutdown).await
}

/// Serves `board` on `listener` until `shutdown` resolves: loads the saved
/// states, applies them, answers requests, then closes every stream and
/// returns once the calls in flight are done.
pub async fn serve(
    settings: Settings,
    board: Board,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    // A --hardware-failsafe the board does not take stops the start here.
    board
        .settle()
        .await
        .map_err(|e| Error::Config(format!("cannot use the Phidget 1017: {e}")))?;
    delestage_runtime::files::ensure_writable_dir(&settings.state_dir)?;
    let state_file = StateFile::in_dir(&settings.state_dir);
    let initial = initial_states(&settings, &state_file)?;

    let closing = CancellationToken::new();
    let (healthy, follow_health) = board_health(&board, closing.clone());
    let bank = RelayBank::new(
        board,
        settings.labels.clone(),
        state_file,
        initial,
        settings.max_switches_per_minute,
    );
    bank.spawn(follow_health);
    bank.start().await?;

    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| settings.listen.clone());
    let board = bank.snapshot().await.board;
    tracing::info!(
        %addr,
        board = %board.description,
        attached = board.attached,
        state_dir = %settings.state_dir.display(),
        "relay-service listening"
    );

    let hold = settings.hold.clone().map(|h| {
        tracing::info!(
            timeout = %humantime::format_duration(h.timeout),
            "relay hold armed: without a renewal, every channel returns to its safe state"
        );
        let hold = Hold::new(h, plan::PlanFile::new(&settings.state_dir));
        bank.spawn(Arc::clone(&hold).run(Arc::clone(&bank)));
        hold
    });
    let meter_view = settings.meter.clone().map(|meter| {
        tracing::info!(meter = %meter.path.display(), mode = ?meter.mode, "reading the Linky meter's TIC");
        let (tx, rx) = tokio::sync::watch::channel(meter::MeterView::default());
        let stop = bank.closing();
        bank.spawn(async move {
            let reader = tokio::task::spawn_blocking(move || meter::reader::run(meter, tx, stop));
            if let Err(e) = reader.await {
                tracing::error!(error = %e, "the meter reader failed");
            }
        });
        rx
    });
    let meter_streams =
        delestage_runtime::stream::StreamSlots::new(settings.max_streams, bank.closing());
    let routes = tonic::service::Routes::new(
        RelayApi::new(Arc::clone(&bank), hold, settings.max_streams).into_server(),
    )
    .add_service(meter::service::MeterApi::new(meter_view, meter_streams).into_server());
    let closing_bank = Arc::clone(&bank);
    let shutdown = async move {
        shutdown.await;
        // Open WatchRelays streams would otherwise hold the graceful
        // shutdown forever.
        closing_bank.close();
        closing.cancel();
    };
    delestage_runtime::grpc::serve_with_health(
        listener,
        routes,
        &[SERVICE_NAME, METER_SERVICE_NAME],
        settings.security.clone(),
        settings.max_connections,
        healthy,
        shutdown,
    )
    .await?;
    bank.finish().await;
    tracing::info!("relay-service stopped");
    Ok(())
}

/// True while the board can be driven as configured: a board that attached
/// after the start and does not take the `--hardware-failsafe` time turns
/// the service NOT_SERVING (it still switches, without the failsafe). The
/// future keeps it so until `closing`.
fn board_health(
    board: &Board,
    closing: CancellationToken,
) -> (
    tokio::sync::watch::Receiver<bool>,
    impl Future<Output = ()> + Send + 'static,
) {
    let mut status = board.status();
    let (tx, rx) = tokio::sync::watch::channel(status.borrow().misconfigured.is_none());
    let follow = async move {
        loop {
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                () = closing.cancelled() => return,
            }
            let ok = status.borrow_and_update().misconfigured.is_none();
            tx.send_if_modified(|healthy| std::mem::replace(healthy, ok) != ok);
        }
    };
    (rx, follow)
}

fn initial_states(settings: &Settings, file: &StateFile) -> Result<Vec<ChannelState>, Error> {
    let channels = settings.channels as usize;
    let all_off = vec![ChannelState::default(); channels];
    if settings.on_start == OnStart::Off {
        tracing::info!("--on-start off: every relay starts off");
        return Ok(all_off);
    }
    Ok(match file.load(channels)? {
        Loaded::Found(states) => {
            let on: Vec<usize> = (0..states.len()).filter(|&c| states[c].energized).collect();
            tracing::info!(file = %file.path().display(), energized = ?on, "restoring saved relay states");
            states
        }
        Loaded::Missing => {
            tracing::info!(file = %file.path().display(), "no saved relay states; every relay starts off");
            all_off
        }
        Loaded::SetAside { set_aside, reason } => {
            tracing::error!(
                file = %file.path().display(),
                set_aside = %set_aside.display(),
                %reason,
                "the saved relay states cannot be used (corrupt, oversized or not a file); kept aside, every relay starts off"
            );
            all_off
        }
    })
}

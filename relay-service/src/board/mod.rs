//! The relay board: the hardware (or its simulation) behind the service.
//!
//! A board switches one channel at a time and reports whether it is attached.
//! It knows nothing of intended states, wear or persistence: that is
//! [`crate::bank::RelayBank`]'s job, which also re-applies the intended
//! states whenever a board (re)attaches.

use tokio::sync::watch;

#[cfg(feature = "phidget")]
pub mod phidget;
pub mod sim;

pub use sim::SimulatedBoard;

/// Which kind of board is behind the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardKind {
    Simulated,
    Phidget1017,
}

/// Whether the board is there, and which one it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoardStatus {
    pub attached: bool,
    /// The device's serial number, once known.
    pub serial_number: Option<i32>,
    /// The device's version (e.g. 200 for a 1017_2), once known.
    pub version: Option<u32>,
    /// How many times the board has attached. A detach and re-attach that
    /// happen faster than anyone looks still change this count, so the
    /// intended states are re-applied even when `attached` looks unchanged.
    pub attachments: u64,
    pub hardware_failsafe: FailsafeState,
    /// Why the board cannot be driven as configured (a `--hardware-failsafe`
    /// the attached board does not take): the service reports NOT_SERVING
    /// until the setting is fixed.
    pub misconfigured: Option<String>,
}

/// The board's own watchdog, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailsafeState {
    /// Not asked for, or no board attached yet.
    #[default]
    Off,
    /// Armed on every channel, and fed.
    Armed,
    /// Asked for, and this board has none or does not take the time.
    Unsupported,
    /// Tripped: the relays were forced off, until re-armed.
    Tripped,
}

/// Why a switch did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    #[error("the relay board is not attached")]
    NotAttached,
    /// The board is there but did not answer, or the line failed: the
    /// relay may not hold the state asked for; a retry may well work.
    #[error("the relay board did not answer: {0}")]
    Unresponsive(String),
    #[error("the relay board failed: {0}")]
    Failed(String),
}

/// The board behind the service. An enum rather than a trait object: there
/// are two kinds, and `set` is async on one and instant on the other.
pub enum Board {
    Simulated(SimulatedBoard),
    #[cfg(feature = "phidget")]
    Phidget(phidget::PhidgetBoard),
}

impl Board {
    pub fn kind(&self) -> BoardKind {
        match self {
            Board::Simulated(_) => BoardKind::Simulated,
            #[cfg(feature = "phidget")]
            Board::Phidget(_) => BoardKind::Phidget1017,
        }
    }

    pub fn channel_count(&self) -> u32 {
        match self {
            Board::Simulated(b) => b.channel_count(),
            #[cfg(feature = "phidget")]
            Board::Phidget(_) => phidget::CHANNELS,
        }
    }

    /// Follows attach and detach.
    pub fn status(&self) -> watch::Receiver<BoardStatus> {
        match self {
            Board::Simulated(b) => b.status(),
            #[cfg(feature = "phidget")]
            Board::Phidget(b) => b.status(),
        }
    }

    /// Energises or de-energises one relay. `channel` is in range (the
    /// caller checked).
    pub async fn set(&self, channel: u32, energized: bool) -> Result<(), BoardError> {
        match self {
            Board::Simulated(b) => b.set(channel, energized),
            #[cfg(feature = "phidget")]
            Board::Phidget(b) => b.set(channel, energized).await,
        }
    }

    /// Waits, at start, for what the board must be checked for before the
    /// service serves (see [`phidget::PhidgetBoard::settle`]).
    pub async fn settle(&self) -> Result<(), BoardError> {
        match self {
            Board::Simulated(_) => Ok(()),
            #[cfg(feature = "phidget")]
            Board::Phidget(b) => b.settle().await,
        }
    }

    /// A one-line description for logs and GetRelays.
    pub fn describe(&self, status: &BoardStatus) -> String {
        match (self.kind(), status.serial_number) {
            (BoardKind::Simulated, _) => {
                format!("simulated board, {} channels", self.channel_count())
            }
            (BoardKind::Phidget1017, Some(serial)) => {
                format!("Phidget InterfaceKit 0/0/8 (1017), serial {serial}")
            }
            (BoardKind::Phidget1017, None) => "Phidget InterfaceKit 0/0/8 (1017)".to_owned(),
        }
    }
}

//! relay-service's one error type, and how each error maps to a gRPC status.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tonic::{Code, Status};

use crate::board::BoardError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad flag or config value; the message names the flag or the file and key.
    #[error("{0}")]
    Config(String),

    #[error("channel {channel} does not exist: this board has channels 0..={last}", last = count.saturating_sub(1))]
    ChannelOutOfRange { channel: u32, count: u32 },

    #[error(
        "channel {channel} has switched {recent} times in the last minute (limit {limit} per minute, to spare the relay); next switch allowed in {wait}, at {at}",
        wait = humantime::format_duration(round_up_to_secs(*retry_after)),
        at = humantime::format_rfc3339_seconds(*allowed_at),
    )]
    WearLimit {
        channel: u32,
        recent: u32,
        limit: u32,
        retry_after: Duration,
        allowed_at: SystemTime,
    },

    #[error("channel {channel} not switched: {source}")]
    Board {
        channel: u32,
        #[source]
        source: BoardError,
    },

    #[error("cannot save the relay states to {path}: {reason}")]
    StateWrite { path: PathBuf, reason: String },

    /// Durable first: a switch whose new state cannot be saved is not made.
    #[error(
        "channel {channel} not switched: its new state cannot be saved to {path} ({reason}); the relay stays as it was, and the service keeps trying to save (free some space, or make the state dir writable)"
    )]
    NotSaved {
        channel: u32,
        path: PathBuf,
        reason: String,
    },

    #[error(transparent)]
    Runtime(#[from] delestage_runtime::Error),
}

/// Whole seconds for people ("in 56s", not "in 55s 836ms").
fn round_up_to_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_nanos().div_ceil(1_000_000_000) as u64)
}

fn round_up_to_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_nanos().div_ceil(1_000_000) as u64)
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::ChannelOutOfRange { .. } | Error::Config(_) => Code::InvalidArgument,
            Error::WearLimit { .. } => Code::ResourceExhausted,
            // Nothing happened, and a retry may well work later.
            Error::Board {
                source: BoardError::NotAttached | BoardError::Unresponsive(_),
                ..
            }
            | Error::NotSaved { .. } => Code::Unavailable,
            Error::Board { .. } | Error::StateWrite { .. } | Error::Runtime(_) => Code::Internal,
        };
        let mut status = Status::new(code, err.to_string());
        if let Error::WearLimit { retry_after, .. } = &err {
            // Standard gRPC retry hint, for clients that honour it.
            if let Ok(value) = round_up_to_ms(*retry_after).as_millis().to_string().parse() {
                status
                    .metadata_mut()
                    .insert("grpc-retry-pushback-ms", value);
            }
        }
        status
    }
}

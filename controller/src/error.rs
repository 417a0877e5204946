//! The controller's one error type, and how it maps to gRPC statuses.

use std::path::PathBuf;

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad flag or config value; the message names the flag, or the file
    /// and the key.
    #[error("{0}")]
    Config(String),

    #[error("no load named {0:?}")]
    UnknownLoad(String),

    #[error("{0}")]
    InvalidArgument(String),

    /// Asked too often (a load's override changed within the last 10 s).
    #[error("{0}")]
    TooSoon(String),

    /// A state file (overrides, history, instance id) could not be read or
    /// written.
    #[error("cannot {action} {path}: {source}")]
    StateFile {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// A state record could not be written as JSON.
    #[error("cannot encode the state as JSON: {0}")]
    Encode(#[from] serde_json::Error),

    /// The blocking task that writes the state failed (it panicked).
    #[error("the state writer failed: {0}")]
    StateWriter(#[from] tokio::task::JoinError),

    /// The system gave no randomness for the instance id.
    #[error("no randomness for the instance id: {0}")]
    Randomness(#[from] getrandom::Error),

    #[error(transparent)]
    Runtime(#[from] delestage_runtime::Error),
}

impl Error {
    /// The gRPC code for it (HTTP maps the same classes).
    pub fn code(&self) -> Code {
        match self {
            Error::UnknownLoad(_) => Code::NotFound,
            Error::InvalidArgument(_) | Error::Config(_) => Code::InvalidArgument,
            Error::TooSoon(_) => Code::ResourceExhausted,
            Error::StateFile { .. }
            | Error::Encode(_)
            | Error::StateWriter(_)
            | Error::Randomness(_)
            | Error::Runtime(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Status::new(err.code(), err.to_string())
    }
}

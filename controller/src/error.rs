//! The controller's one error type, and how it maps to gRPC statuses.

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

    /// Overrides or history could not be read or written.
    #[error("state: {0}")]
    Store(String),

    #[error(transparent)]
    Runtime(#[from] delestage_runtime::Error),
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::UnknownLoad(_) => Code::NotFound,
            Error::InvalidArgument(_) | Error::Config(_) => Code::InvalidArgument,
            Error::TooSoon(_) => Code::ResourceExhausted,
            Error::Store(_) | Error::Runtime(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}

//! forecast-service's one error type, and how it maps to gRPC statuses.
//!
//! No variant ever holds a credential or a token: messages name the flag,
//! the file or the URL, never a secret's value.

use std::path::PathBuf;
use std::time::Duration;

use tonic::{Code, Status};

use crate::ecowatt::BodyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad flag or config value; the message names the flag or the file and key.
    #[error("{0}")]
    Config(String),

    /// RTE (or the network in between) could not be reached or timed out.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },

    /// RTE answered the signals call with an error status.
    #[error("RTE answered {status} to {url}: {detail}")]
    Upstream {
        url: String,
        status: u16,
        detail: String,
        /// From `Retry-After`, on a 429.
        retry_after: Option<Duration>,
    },

    /// The token endpoint refused or answered something unusable.
    #[error("cannot get an RTE access token from {url}: {detail}")]
    Token { url: String, detail: String },

    /// The answer was bigger than any real Ecowatt body.
    #[error("the answer from {url} is larger than {limit} bytes; ignored")]
    TooLarge { url: String, limit: usize },

    /// The body did not parse or failed validation.
    #[error("rejected the forecast from {origin}: {reason}")]
    InvalidBody { origin: String, reason: BodyError },

    /// A Tempo calendar body did not parse or failed validation.
    #[error("rejected the Tempo calendar from {origin}: {reason}")]
    InvalidTempo {
        origin: String,
        reason: crate::tempo::TempoError,
    },

    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot read the cached forecast {path}: {source}")]
    CacheRead {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot save the forecast cache to {path}: {reason}")]
    CacheWrite { path: PathBuf, reason: String },

    #[error("cannot set up the HTTP client: {0}")]
    HttpClient(String),

    #[error(transparent)]
    Runtime(#[from] delestage_runtime::Error),
}

impl Error {
    /// The 429's `Retry-After`, if this is one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Upstream {
                status: 429,
                retry_after,
                ..
            } => *retry_after,
            _ => None,
        }
    }

    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Error::Upstream { status: 429, .. })
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::Config(_) => Code::InvalidArgument,
            Error::Unreachable { .. }
            | Error::Upstream { .. }
            | Error::Token { .. }
            | Error::TooLarge { .. }
            | Error::InvalidBody { .. }
            | Error::InvalidTempo { .. }
            | Error::ReadFile { .. } => Code::Unavailable,
            Error::CacheRead { .. }
            | Error::CacheWrite { .. }
            | Error::HttpClient(_)
            | Error::Runtime(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}

pub(crate) use delestage_runtime::errors::with_causes;

//! What delestage's three services share, written once: options from flags
//! and a TOML file ([`options`]), telemetry, serving gRPC with health,
//! reflection, security and metrics ([`grpc`]), server streams
//! ([`stream`]), back-off, the shutdown signal, clients, and state files
//! written atomically.
//!
//! Every error's message carries its cause, so callers print it with `{}`
//! (not anyhow's `{:#}`, which would repeat the cause).
//!
//! Each service's `main` stays thin: its `Settings::from_env()`, then
//! [`process::start`] (logging, metrics, the signal), then the service's
//! `run`, which binds with [`grpc::bind`] and hands its routes to
//! [`grpc::serve`].

pub mod backoff;
pub mod client;
pub mod connections;
pub mod deadline;
pub mod errors;
pub mod files;
pub mod grpc;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod open_files;
pub mod options;
pub mod process;
pub mod security;
pub mod shutdown;
pub mod stream;
pub mod telemetry;
pub mod tokens;

/// Everything that can go wrong in the shared runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The TOML error already names the key, line and column.
    #[error("invalid config file {path}: {message}")]
    ConfigInvalid {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot use {path} as the state directory (check that it can be created and written, or give another --state-dir): {source}"
    )]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A state file could not be used and could not be moved out of the
    /// way either: the service cannot start afresh without losing it.
    #[error("{path} cannot be used ({reason}) and cannot be set aside: {source}")]
    SetAside {
        path: std::path::PathBuf,
        reason: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("gRPC reflection set-up failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// clap's own error (its message names the flag); `--help` and
    /// `--version` come this way too.
    #[error("{0}")]
    Flags(#[from] clap::Error),
    /// A value the options could not take; the message names where it came
    /// from.
    #[error("{0}")]
    Options(String),
    #[error("cannot set up logging: {0}")]
    Telemetry(String),
    #[error("metrics: {0}")]
    Metrics(String),
    /// TLS, tokens, or an unprotected network address.
    #[error("{0}")]
    Security(String),
}

//! What every service's `main` does around serving, written once: set up
//! logging, log the warnings its settings produced, serve metrics, install
//! the shutdown signal; and at the end, turn the outcome into an exit code.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::Error;
use crate::telemetry::LogFormat;

/// Everything before serving. Returns the shutdown signal to serve until.
pub async fn start(
    log_format: LogFormat,
    metrics: Option<&str>,
    warnings: &[String],
) -> Result<impl Future<Output = ()> + Send + use<>, Error> {
    crate::telemetry::init(log_format)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    match crate::open_files::raise_limit() {
        Ok((from, to)) if to > from => {
            tracing::debug!(from, to, "raised the open files limit to the hard limit");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    if let Some(addr) = metrics {
        crate::metrics::serve(addr).await?;
    }
    crate::shutdown::signal()
        .map_err(|e| Error::Telemetry(format!("cannot install the signal handlers: {e}")))
}

/// `{name}: {error}` on stderr and a failure code, or success. Our errors
/// carry their causes in their message, so `{}` says it all.
pub fn exit_code(name: &str, outcome: Result<(), impl Display>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

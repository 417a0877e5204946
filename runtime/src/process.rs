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
    match raise_open_files_limit() {
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

/// Raises the soft limit on open files to the hard one: the soft default
/// (1024 on most systems) is what many clients can exhaust, and a service
/// must still open its own files (state saves, history, the board) then.
/// Returns (before, after).
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = nofile()?;
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

/// The soft limit on open files: what the process can hold now.
pub fn open_files_limit() -> std::io::Result<u64> {
    Ok(nofile()?.rlim_cur)
}

fn nofile() -> std::io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let (before, after) = raise_open_files_limit().expect("getrlimit and setrlimit");
        assert!(after >= before);
        let limit = nofile().expect("getrlimit");
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(limit.rlim_cur, after);
    }
}

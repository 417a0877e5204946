//! Waiting for the signal to stop.

use std::future::Future;

/// Installs the SIGINT (Ctrl-C) and SIGTERM (systemd, `kill`, Kubernetes)
/// handlers now, and returns a future that resolves on the first of them.
///
/// Installing them up front matters: a signal that arrives after the service
/// said it is listening but before anything polled the future would
/// otherwise kill the process with the default action, skipping the clean
/// shutdown. Call it from within the runtime, before serving.
#[cfg(unix)]
pub fn signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received, shutting down");
        }
    })
}

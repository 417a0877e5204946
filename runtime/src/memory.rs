//! Giving freed memory back to the system.
//!
//! glibc's malloc keeps what a burst of work freed: 2000 WatchRelays
//! streams opened and dropped left relay-service at its peak RSS, and each
//! later round added a little (fragmentation across its per-thread arenas).
//! Nothing leaked: the memory was free inside malloc, not in use. On a
//! small box that runs for months, free memory that the kernel cannot have
//! back is as good as lost, so after streams close the services ask malloc
//! to return its free pages ([`release_freed`], `malloc_trim(0)`, which
//! walks every arena). It costs a few milliseconds, so it is debounced:
//! once after a wave of departures, never per stream.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long departures must pause before the free memory is returned: a
/// thousand clients leaving at once cost one trim.
const SETTLE: Duration = Duration::from_millis(500);

/// Returns malloc's free pages to the kernel (glibc only; elsewhere the
/// allocator is left to its own policy).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only rearranges malloc's own
    // free lists; it is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Debounced [`release_freed`]: [`Trimmer::freed`] after something large
/// was dropped; the trim runs once things have been quiet for a moment.
#[derive(Debug, Clone)]
pub struct Trimmer {
    freed: Arc<Notify>,
}

impl Trimmer {
    /// Starts the task that trims, until `closing`. Needs a Tokio runtime.
    pub fn start(closing: CancellationToken) -> Self {
        let freed = Arc::new(Notify::new());
        let wake = Arc::clone(&freed);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = wake.notified() => {}
                    () = closing.cancelled() => return,
                }
                // Wait for a pause in the departures.
                loop {
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(SETTLE) => break,
                        () = closing.cancelled() => return,
                    }
                }
                let _ = tokio::task::spawn_blocking(release_freed).await;
                tracing::debug!("returned freed memory to the system");
            }
        });
        Self { freed }
    }

    /// Something large was freed (a stream ended).
    pub fn freed(&self) {
        self.freed.notify_one();
    }
}

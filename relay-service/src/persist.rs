//! Group commit of the intended states.
//!
//! Every SetRelay must answer only once its state is on disk (an atomic
//! write with two fsyncs, about half a millisecond here, more on an SD
//! card). Writing once per switch under the bank's lock serialised every
//! switch behind the disk: 64 clients waited on 64 fsyncs in a row. Here the
//! bank hands each new version of the states to one writer task and waits
//! for it; the writer always writes the newest version it has, so one write
//! covers every switch made while the previous one was in flight.
//!
//! A write that fails (a full disk, a read-only state dir) is tried again
//! every [`RETRY_EVERY`] until it succeeds or a newer version replaces it,
//! so that what is saved catches up as soon as the disk allows.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::{ChannelState, StateFile};

/// How often a failed write is tried again.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How far the writes have got.
#[derive(Debug, Clone, Default)]
struct Written {
    /// Every version up to this one is on disk.
    ok_up_to: u64,
    /// The last failed write: its version and why.
    failed: Option<(u64, String)>,
}

struct Shared {
    /// The newest version not written yet.
    pending: Mutex<Option<(u64, Vec<ChannelState>)>>,
    kick: Notify,
}

/// The bank's side: submit versions, wait for them.
pub(crate) struct StateWriter {
    shared: Arc<Shared>,
    written: watch::Receiver<Written>,
}

impl StateWriter {
    /// Starts the writer task for `file`. It ends when `closing` turns true,
    /// after writing what is pending.
    pub(crate) fn start(file: StateFile, closing: CancellationToken, tasks: &TaskTracker) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(None),
            kick: Notify::new(),
        });
        let (written_tx, written) = watch::channel(Written::default());
        tasks.spawn(write_loop(file, Arc::clone(&shared), written_tx, closing));
        Self { shared, written }
    }

    /// Hands over `version` of the states (newer versions replace older
    /// ones not yet written).
    pub(crate) fn submit(&self, version: u64, states: Vec<ChannelState>) {
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if pending.as_ref().is_none_or(|(v, _)| *v < version) {
                *pending = Some((version, states));
            }
        }
        self.shared.kick.notify_one();
    }

    /// Waits until `version` (or a later one) is on disk.
    pub(crate) async fn wait(&self, version: u64) -> Result<(), String> {
        let mut written = self.written.clone();
        let outcome = written
            .wait_for(|w| {
                w.ok_up_to >= version || w.failed.as_ref().is_some_and(|(v, _)| *v >= version)
            })
            .await;
        match outcome {
            Ok(w) if w.ok_up_to >= version => Ok(()),
            Ok(w) => Err(w
                .failed
                .as_ref()
                .map_or_else(|| "write failed".to_owned(), |(_, why)| why.clone())),
            Err(_) => Err("the service is stopping".to_owned()),
        }
    }
}

async fn write_loop(
    file: StateFile,
    shared: Arc<Shared>,
    written: watch::Sender<Written>,
    closing: CancellationToken,
) {
    // The last version that failed, to try again unless a newer one comes.
    let mut failed: Option<(u64, Vec<ChannelState>)> = None;
    loop {
        let stopping = tokio::select! {
            () = shared.kick.notified() => false,
            () = tokio::time::sleep(RETRY_EVERY), if failed.is_some() => false,
            _ = closing.cancelled() => true,
        };
        let newest = shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // A newer version replaces the failed one (never write back an
        // older one over it).
        let job = match newest {
            Some(job) => {
                failed = None;
                Some(job)
            }
            None => failed.take(),
        };
        if let Some((version, states)) = job {
            let file = file.clone();
            let kept = states.clone();
            // fsync blocks: keep it off the async workers.
            let result = tokio::task::spawn_blocking(move || file.save(&states)).await;
            let outcome = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the writer failed: {e}")),
            };
            let retrying = written.borrow().failed.is_some();
            written.send_modify(|w| match outcome {
                Ok(()) => {
                    if retrying {
                        tracing::info!(version, "the relay states are saved again");
                    }
                    w.ok_up_to = w.ok_up_to.max(version);
                    w.failed = None;
                }
                Err(why) => {
                    if !retrying {
                        tracing::error!(error = %why, "cannot save the relay states; trying again every {}s", RETRY_EVERY.as_secs());
                    }
                    w.failed = Some((version, why));
                    failed = Some((version, kept));
                }
            });
        }
        if stopping
            && shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_are_written_and_a_later_write_covers_earlier_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::in_dir(dir.path());
        let closing = CancellationToken::new();
        let writer = StateWriter::start(file.clone(), closing, &TaskTracker::new());
        let state = |on: bool| {
            vec![ChannelState {
                energized: on,
                changed_at: None,
            }]
        };
        for version in 1..=50u64 {
            writer.submit(version, state(version % 2 == 0));
        }
        writer.wait(1).await.expect("version 1 covered");
        writer.wait(50).await.expect("version 50 written");
        match file.load(1).expect("load") {
            crate::state::Loaded::Found(states) => assert!(states[0].energized),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_to_its_waiters() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A state "file" inside a directory that does not exist.
        let file = StateFile::in_dir(&dir.path().join("gone"));
        let closing = CancellationToken::new();
        let writer = StateWriter::start(file, closing, &TaskTracker::new());
        writer.submit(1, Vec::new());
        let err = writer.wait(1).await.expect_err("cannot write");
        assert!(err.contains("gone"), "{err}");
    }

    /// Real time (a paused clock would race the blocking write): takes one
    /// retry period.
    #[tokio::test]
    async fn a_failed_write_is_tried_again_until_the_disk_is_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        let file = StateFile::in_dir(&state_dir);
        let writer =
            StateWriter::start(file.clone(), CancellationToken::new(), &TaskTracker::new());
        writer.submit(1, vec![ChannelState::default()]);
        writer.wait(1).await.expect_err("no state dir yet");
        std::fs::create_dir(&state_dir).expect("the disk is back");
        let mut written = writer.written.clone();
        tokio::time::timeout(10 * RETRY_EVERY, written.wait_for(|w| w.ok_up_to >= 1))
            .await
            .expect("written by a retry")
            .expect("writer alive");
        assert!(file.path().exists());
    }

    #[tokio::test]
    async fn pending_writes_are_done_before_the_writer_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::in_dir(dir.path());
        let closing = CancellationToken::new();
        let writer = StateWriter::start(file.clone(), closing.clone(), &TaskTracker::new());
        writer.submit(7, vec![ChannelState::default()]);
        closing.cancel();
        writer.wait(7).await.expect("written before stopping");
    }
}

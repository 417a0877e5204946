//! A simulated relay board, for machines without hardware and for tests.
//!
//! It behaves like the 1017 where that matters to the service: it can be
//! unplugged (switching fails with [`BoardError::NotAttached`]) and plugged
//! back, and plugging in finds every relay off, as after a USB power loss.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::{BoardError, BoardStatus};

/// A simulated board. Clones share the same board, so a test can keep one to
/// unplug it or read the relays while the service owns another.
#[derive(Clone)]
pub struct SimulatedBoard {
    inner: Arc<Inner>,
}

struct Inner {
    /// The physical relays: what the "hardware" is doing right now.
    relays: Mutex<Vec<bool>>,
    status: watch::Sender<BoardStatus>,
}

impl SimulatedBoard {
    /// A plugged-in board of `channels` relays, all off.
    pub fn new(channels: u32) -> Self {
        let (status, _) = watch::channel(BoardStatus {
            attached: true,
            attachments: 1,
            ..BoardStatus::default()
        });
        Self {
            inner: Arc::new(Inner {
                relays: Mutex::new(vec![false; channels as usize]),
                status,
            }),
        }
    }

    pub fn channel_count(&self) -> u32 {
        self.relays().len() as u32
    }

    pub fn status(&self) -> watch::Receiver<BoardStatus> {
        self.inner.status.subscribe()
    }

    pub fn set(&self, channel: u32, energized: bool) -> Result<(), BoardError> {
        if !self.inner.status.borrow().attached {
            return Err(BoardError::NotAttached);
        }
        let mut relays = self.relays();
        let slot = relays
            .get_mut(channel as usize)
            .ok_or_else(|| BoardError::Failed(format!("no channel {channel}")))?;
        *slot = energized;
        Ok(())
    }

    /// Whether relay `channel` is physically energised now.
    pub fn energized(&self, channel: u32) -> Option<bool> {
        self.relays().get(channel as usize).copied()
    }

    /// Simulates pulling the USB cable: every relay drops out.
    pub fn unplug(&self) {
        self.relays().iter_mut().for_each(|r| *r = false);
        self.inner.status.send_modify(|s| s.attached = false);
    }

    /// Simulates plugging the board back in: relays start off.
    pub fn plug(&self) {
        self.relays().iter_mut().for_each(|r| *r = false);
        self.inner.status.send_modify(|s| {
            s.attached = true;
            s.attachments += 1;
        });
    }

    fn relays(&self) -> MutexGuard<'_, Vec<bool>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.inner
            .relays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

//! Completed transfers and the thread that hands them back.
//!
//! As in libusb, a transfer's callback never runs inside the call that
//! completes it: completions are queued, and run in whichever thread calls
//! `libusb_handle_events_timeout_completed` (libphidget22's "USB Handle
//! Events Thread"). `libusb_wait_for_event` wakes when a round of callbacks
//! has run.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::types::libusb_transfer;

/// The longest any event wait blocks before it returns to its caller (who
/// loops): libphidget22 asks for 60 s and stops its thread by a flag that
/// only a return lets it see.
pub(super) const MAX_WAIT: Duration = Duration::from_millis(100);

pub(super) struct Events {
    completed: Mutex<VecDeque<usize>>,
    arrived: Condvar,
    /// Bumped after each round of callbacks.
    rounds: Mutex<u64>,
    round_done: Condvar,
    /// libusb_lock_event_waiters / unlock: a lock held across C calls.
    waiters_locked: Mutex<bool>,
    waiters_free: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn events() -> &'static Events {
    static EVENTS: OnceLock<Events> = OnceLock::new();
    EVENTS.get_or_init(|| Events {
        completed: Mutex::new(VecDeque::new()),
        arrived: Condvar::new(),
        rounds: Mutex::new(0),
        round_done: Condvar::new(),
        waiters_locked: Mutex::new(false),
        waiters_free: Condvar::new(),
    })
}

impl Events {
    /// Marks `transfer` done with `status` and queues its callback.
    ///
    /// # Safety
    /// `transfer` is a live transfer that was submitted and is no longer
    /// pending anywhere.
    pub(super) unsafe fn complete(&self, transfer: *mut libusb_transfer, status: i32, actual: i32) {
        // SAFETY: the caller's contract.
        unsafe {
            (*transfer).status = status;
            (*transfer).actual_length = actual;
        }
        lock(&self.completed).push_back(transfer as usize);
        self.arrived.notify_all();
    }

    /// Runs the callbacks of completed transfers, waiting up to `limit` for
    /// one. Returns without waiting when `completed` says so.
    ///
    /// # Safety
    /// `completed` is null or a valid int.
    pub(super) unsafe fn handle(&self, limit: Duration, completed: *const i32) {
        // SAFETY: the caller's contract.
        let done = || !completed.is_null() && unsafe { completed.read_volatile() } != 0;
        let mut queue = lock(&self.completed);
        if queue.is_empty() && !done() {
            queue = self
                .arrived
                .wait_timeout(queue, limit.min(MAX_WAIT))
                .map(|(q, _)| q)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let batch: Vec<usize> = queue.drain(..).collect();
        drop(queue);
        if batch.is_empty() {
            return;
        }
        for transfer in batch {
            let transfer = transfer as *mut libusb_transfer;
            // SAFETY: a completed transfer stays valid until its callback
            // frees it; the callback is the library's.
            unsafe {
                if let Some(callback) = (*transfer).callback {
                    callback(transfer);
                }
            }
        }
        *lock(&self.rounds) += 1;
        self.round_done.notify_all();
    }

    /// Waits for the next round of callbacks, up to `limit`. True if one ran.
    pub(super) fn wait_round(&self, limit: Duration) -> bool {
        let rounds = lock(&self.rounds);
        let seen = *rounds;
        let (rounds, _) = self
            .round_done
            .wait_timeout_while(rounds, limit.min(MAX_WAIT), |r| *r == seen)
            .unwrap_or_else(|p| p.into_inner());
        *rounds != seen
    }

    pub(super) fn lock_waiters(&self) {
        let mut locked = lock(&self.waiters_locked);
        while *locked {
            locked = self
                .waiters_free
                .wait(locked)
                .unwrap_or_else(|p| p.into_inner());
        }
        *locked = true;
    }

    pub(super) fn unlock_waiters(&self) {
        *lock(&self.waiters_locked) = false;
        self.waiters_free.notify_one();
    }
}

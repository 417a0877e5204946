//! What sits behind the controller's (async) lock: the store, and the
//! bookkeeping of the switches (refusals, those in flight, shedding by
//! power) that a pass and the relay drivers share.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};

use jiff::Timestamp;

use super::diff::Refusal;
use super::power_guard::PowerGuard;
use super::status::Since;
use crate::Error;
use crate::store::Store;

/// Behind the controller's (async) lock. Every access to the store goes
/// through that lock, so the store's own (blocking) mutex is never
/// contended: it only lets a write move to a blocking thread.
pub(super) struct Inner {
    /// Locked only under the controller's lock (see [`Inner::store`]).
    pub(super) store: Arc<std::sync::Mutex<Store>>,
    pub(super) refusals: HashMap<String, Refusal>,
    pub(super) since: Since,
    /// Loads whose switch is queued or under way: not decided again until
    /// it is done.
    pub(super) in_flight: HashSet<String>,
    /// When the last restore was handed out: the stagger counts from it,
    /// since its record exists only once the relay-service has answered.
    pub(super) last_restore_decided: Option<Timestamp>,
    /// Shedding by power, with `[power]`.
    pub(super) power: PowerGuard,
}

impl Inner {
    /// Nothing refused nor in flight yet; shedding by power picks up what
    /// it measured from the state dir.
    pub(super) fn new(store: Store) -> Self {
        let power = PowerGuard::in_dir(store.dir());
        Self {
            store: Arc::new(std::sync::Mutex::new(store)),
            refusals: HashMap::new(),
            since: Since::new(),
            in_flight: HashSet::new(),
            last_restore_decided: None,
            power,
        }
    }

    /// The store, to read (or to write at start-up).
    pub(super) fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a write (an fsync) on a blocking thread, not on an async
    /// worker. The caller holds the controller's lock throughout, so writes
    /// stay in order and readers wait without blocking a thread.
    pub(super) async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            f(&mut store.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await?
    }
}

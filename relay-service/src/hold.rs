//! The relay hold: a lease that whoever is in charge (the controller's
//! reconcile loop) renews. If nobody renews it for `timeout` (the
//! controller hung, crashed or lost the network), every channel returns to
//! its configured safe state, so no load stays in a state nobody chose.
//!
//! The hold is armed at start: a relay-service that nobody ever renews ends
//! in the safe states too. After it has run out, switching still works; the
//! next renewal re-arms it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::bank::RelayBank;

/// How the hold is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldSettings {
    pub timeout: Duration,
    /// Indexed by channel: energised in the safe state?
    pub safe_energized: Vec<bool>,
}

/// What a renewal answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renewal {
    pub timeout: Duration,
    pub expires_at: SystemTime,
    /// The hold had run out before this renewal.
    pub had_expired: bool,
}

struct State {
    deadline: Instant,
    expired: bool,
}

/// The hold of one relay bank.
pub(crate) struct Hold {
    settings: HoldSettings,
    state: Mutex<State>,
    renewed: Notify,
}

impl Hold {
    pub(crate) fn new(settings: HoldSettings) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                deadline: Instant::now() + settings.timeout,
                expired: false,
            }),
            settings,
            renewed: Notify::new(),
        })
    }

    /// Pushes the deadline to `timeout` from now.
    pub(crate) fn renew(&self, holder: &str) -> Renewal {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let had_expired = state.expired;
        state.deadline = Instant::now() + self.settings.timeout;
        state.expired = false;
        drop(state);
        if had_expired {
            tracing::info!(holder, "relay hold renewed after it had run out");
        }
        self.renewed.notify_one();
        Renewal {
            timeout: self.settings.timeout,
            expires_at: SystemTime::now() + self.settings.timeout,
            had_expired,
        }
    }

    /// Watches the deadline until the bank closes: when it passes, puts
    /// every channel in its safe state, once, until the next renewal.
    pub(crate) async fn run(self: Arc<Self>, bank: Arc<RelayBank>) {
        loop {
            let deadline = {
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                (!state.expired).then_some(state.deadline)
            };
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = self.renewed.notified() => continue,
                        () = bank.closed() => return,
                    }
                    let due = {
                        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        let due = !state.expired && Instant::now() >= state.deadline;
                        if due {
                            state.expired = true;
                        }
                        due
                    };
                    if due {
                        tracing::warn!(
                            timeout = %humantime::format_duration(self.settings.timeout),
                            "relay hold ran out: nobody renewed it; returning every channel to its safe state"
                        );
                        match bank.apply_safe_states(&self.settings.safe_energized).await {
                            Ok(switched) => {
                                tracing::warn!(?switched, "channels returned to their safe state")
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "could not put every channel in its safe state")
                            }
                        }
                    }
                }
                None => {
                    tokio::select! {
                        _ = self.renewed.notified() => {}
                        () = bank.closed() => return,
                    }
                }
            }
        }
    }
}

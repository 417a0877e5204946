//! The 1017_2's hardware failsafe, as Phidgets document it and as the real
//! libphidget22 enforces it: armed per channel with a time from the
//! device's own range, reset at least every third of that time (a
//! `setState` resets it too), and once tripped, deaf to every command
//! (`EPHIDGET_FAILSAFE`, 59) until the channel is closed and reopened. And
//! the heartbeat that ties its feeding to the async side being alive.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use phidget::ReturnCode;

use super::tracker::{AttachTracker, DeviceFacts};
use super::{CHANNELS, Channel};
use crate::board::FailsafeState;

/// The async side's sign of life, read by the board's thread before it
/// feeds the failsafe: milliseconds since `start` at the last beat.
pub(super) struct Heartbeat {
    start: Instant,
    last_ms: AtomicU64,
    /// The async side has beaten once: until then nothing is armed (the
    /// service is still starting, and a stale heartbeat means nothing).
    started: AtomicBool,
    /// Test builds only: stop beating, as a wedged runtime would.
    pub(super) stalled: AtomicBool,
}

impl Heartbeat {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            started: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
        }
    }

    pub(super) fn beat(&self) {
        if !self.stalled.load(Ordering::Relaxed) {
            let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last_ms.store(ms, Ordering::Relaxed);
            self.started.store(true, Ordering::Release);
        }
    }

    pub(super) fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn age(&self) -> Duration {
        let now = self.start.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Phidgets' rule: never let more than a third of the failsafe time pass
/// between two resets. A quarter leaves room for a slow command.
pub(super) fn feed_period(failsafe: Duration) -> Duration {
    failsafe / 4
}

/// Whether the board takes `time` as its failsafe time. `Err` says why not,
/// naming the board's range when it has one.
pub(super) fn check_range(facts: &DeviceFacts, time: Duration) -> Result<(), Refusal> {
    let Some((min, max)) = facts.failsafe_range else {
        return Err(Refusal::Unsupported);
    };
    let ms = u32::try_from(time.as_millis()).unwrap_or(u32::MAX);
    if (min..=max).contains(&ms) {
        Ok(())
    } else {
        Err(Refusal::OutOfRange(format!(
            "--hardware-failsafe {}: this board (Phidget {} serial {}) takes {min}ms to {max}ms",
            humantime::format_duration(time),
            facts.model(),
            facts.serial.map_or("unknown".to_owned(), |s| s.to_string()),
        )))
    }
}

/// Why the failsafe is not armed on the attached board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A 1017_0 / 1017_1: no failsafe.
    Unsupported,
    /// The configured time is outside what this board takes.
    OutOfRange(String),
}

/// The 1017_2's hardware failsafe: armed on every attached channel, fed
/// from the board's own thread while the async side lives. If the service
/// hangs, the feeding stops and the board turns the relays off by itself.
pub(super) struct HardwareFailsafe {
    time: Duration,
    ms: u32,
    armed: [bool; CHANNELS as usize],
    /// Why the attached board is not armed, as last said (said once).
    refused: Option<Refusal>,
    /// A channel tripped and has not been re-armed yet.
    tripped: [bool; CHANNELS as usize],
    /// The heartbeat was stale at the last feed (said once per stall).
    starving: bool,
    /// Per channel: the last feed failed (said once per streak).
    feed_failing: [bool; CHANNELS as usize],
}

impl HardwareFailsafe {
    pub(super) fn new(time: Duration) -> Self {
        Self {
            time,
            ms: u32::try_from(time.as_millis()).unwrap_or(u32::MAX),
            armed: [false; CHANNELS as usize],
            refused: None,
            tripped: [false; CHANNELS as usize],
            starving: false,
            feed_failing: [false; CHANNELS as usize],
        }
    }

    pub(super) fn is_armed(&self, ch: usize) -> bool {
        self.armed[ch]
    }

    /// What clients see, and whether the board can be driven as configured.
    pub(super) fn report(&self, tracker: &AttachTracker) {
        let state = if self.tripped.iter().any(|t| *t) {
            FailsafeState::Tripped
        } else if self.refused.is_some() {
            FailsafeState::Unsupported
        } else if self.armed.iter().all(|a| *a) {
            FailsafeState::Armed
        } else {
            FailsafeState::Off
        };
        let misconfigured = match &self.refused {
            Some(Refusal::OutOfRange(why)) => Some(why.clone()),
            _ => None,
        };
        tracker.set_failsafe(state, misconfigured);
    }

    /// Arms channels that are not armed yet and feeds the armed ones, as
    /// long as the async side's heartbeat is fresh (younger than half the
    /// failsafe time); recovers a tripped channel.
    pub(super) fn maintain(
        &mut self,
        channels: &mut [Channel],
        tracker: &AttachTracker,
        heartbeat: &Heartbeat,
    ) {
        if !heartbeat.started() {
            return;
        }
        let age = heartbeat.age();
        if age > Duration::from_millis(u64::from(self.ms) / 2) {
            if !self.starving {
                tracing::error!(
                    heartbeat_age_ms = age.as_millis() as u64,
                    "the service is not running its tasks: no longer feeding the hardware failsafe, the board will turn the relays off"
                );
                self.starving = true;
            }
            return;
        }
        self.starving = false;
        let attached = tracker.attached_channels();
        for ch in 0..channels.len() {
            if !attached[ch] {
                // A re-attach resets the failsafe: arm it again then.
                self.armed[ch] = false;
                continue;
            }
            if !self.armed[ch] {
                self.arm(channels, ch, tracker);
                continue;
            }
            match channels[ch].out.set_reset_failsafe() {
                Ok(()) => {
                    if std::mem::take(&mut self.feed_failing[ch]) {
                        tracing::info!(channel = ch, "feeding the hardware failsafe again");
                    }
                }
                Err(ReturnCode::Failsafe) => self.recover(channels, ch, tracker),
                Err(ReturnCode::NotAttached) => self.armed[ch] = false,
                Err(e) => {
                    // Said once per failing streak: a board that stops
                    // answering would say it eight times a feed.
                    if !std::mem::replace(&mut self.feed_failing[ch], true) {
                        tracing::warn!(channel = ch, error = %e, "cannot feed the hardware failsafe: if the board does not hear from us, it turns the relay off")
                    }
                }
            }
        }
        self.report(tracker);
    }

    /// Arms one attached channel, if the board takes the time.
    pub(super) fn arm(&mut self, channels: &[Channel], ch: usize, tracker: &AttachTracker) {
        let Some(facts) = tracker.facts() else { return };
        if let Err(refusal) = check_range(&facts, self.time) {
            if self.refused.as_ref() != Some(&refusal) {
                match &refusal {
                    Refusal::Unsupported => tracing::warn!(
                        "this 1017 has no hardware failsafe (only the 1017_2 has); --hardware-failsafe is ignored, the relay hold still applies"
                    ),
                    Refusal::OutOfRange(why) => tracing::error!(
                        "{why}: the hardware failsafe is NOT armed and the service reports NOT_SERVING; fix --hardware-failsafe and restart"
                    ),
                }
                self.refused = Some(refusal);
                self.report(tracker);
            }
            return;
        }
        self.refused = None;
        match channels[ch].out.set_enable_failsafe(self.ms) {
            Ok(()) => {
                self.armed[ch] = true;
                self.tripped[ch] = false;
            }
            Err(ReturnCode::Unsupported) => {
                self.refused = Some(Refusal::Unsupported);
                tracing::warn!(
                    "this 1017 has no hardware failsafe (only the 1017_2 has); --hardware-failsafe is ignored, the relay hold still applies"
                );
            }
            Err(e) => {
                tracing::warn!(channel = ch, error = %e, "cannot arm the hardware failsafe; will retry")
            }
        }
    }

    /// A tripped channel (forced off) rejects every command until it is
    /// closed and reopened: do that. Every channel is fed in the same
    /// round, so a trip on one means the feeding stopped for all: every
    /// channel is taken as off at once (the bank stops claiming any relay
    /// is held, even one whose trip report the library has not read yet),
    /// then reopened one by one (the device stays open through it, so each
    /// reopen attaches at once). They are armed again as they re-attach,
    /// and the bank re-applies the intended states when all are back.
    pub(super) fn recover(&mut self, channels: &mut [Channel], ch: usize, tracker: &AttachTracker) {
        tracing::error!(
            channel = ch,
            failsafe_ms = self.ms,
            "the hardware failsafe tripped (this service did not feed it in time): the relays are off; reopening the channels"
        );
        metrics::counter!("relay_failsafe_trips_total").increment(1);
        self.armed = [false; CHANNELS as usize];
        self.tripped = [true; CHANNELS as usize];
        self.report(tracker);
        for i in 0..channels.len() {
            tracker.detached(i as u32);
        }
        for (i, channel) in channels.iter_mut().enumerate() {
            if let Err(e) = phidget::Phidget::close(&mut *channel.out) {
                tracing::error!(channel = i, error = %e, "cannot close a tripped channel");
            }
            if let Err(e) = phidget::Phidget::open(&mut *channel.out) {
                tracing::error!(channel = i, error = %e, "cannot reopen a tripped channel");
            }
        }
    }
}

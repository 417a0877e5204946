//! The 1017_2's hardware failsafe, as Phidgets document it: armed per
//! channel with a time from the device's own range, reset at least every
//! third of that time, and once tripped, deaf to every command until the
//! channel is closed and reopened. And the heartbeat that ties its feeding
//! to the async side being alive.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use phidget::{DigitalOutput, Phidget, ReturnCode};

use super::{AttachTracker, BoardError, CHANNELS};

/// The async side's sign of life, read by the board's thread before it
/// feeds the failsafe: milliseconds since `start` at the last beat.
pub(super) struct Heartbeat {
    start: Instant,
    last_ms: AtomicU64,
    /// Test builds only: stop beating, as a wedged runtime would.
    pub(super) stalled: AtomicBool,
}

impl Heartbeat {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
        }
    }

    pub(super) fn beat(&self) {
        if !self.stalled.load(Ordering::Relaxed) {
            let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last_ms.store(ms, Ordering::Relaxed);
        }
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

/// The failsafe time must be within what the device says it takes.
pub(super) fn check_failsafe_range(
    outputs: &[DigitalOutput],
    tracker: &AttachTracker,
    time: Duration,
) -> Result<(), BoardError> {
    // Only an attached channel can say; a board plugged in later is
    // checked when the failsafe is armed.
    let Some(out) = outputs
        .iter()
        .zip(tracker.attached_channels())
        .find_map(|(out, attached)| attached.then_some(out))
    else {
        return Ok(());
    };
    let (min, max) = match (out.min_failsafe_time(), out.max_failsafe_time()) {
        (Ok(min), Ok(max)) => (min, max),
        // An older 1017: no failsafe; said once when arming.
        _ => return Ok(()),
    };
    let ms = u32::try_from(time.as_millis()).unwrap_or(u32::MAX);
    if !(min..=max).contains(&ms) {
        return Err(BoardError::Failed(format!(
            "--hardware-failsafe {}: this board takes {min}ms to {max}ms",
            humantime::format_duration(time)
        )));
    }
    Ok(())
}

/// The 1017_2's hardware failsafe: armed on every attached channel, fed
/// from the board's own thread while the async side lives. If the service
/// hangs, the feeding stops and the board turns the relays off by itself.
pub(super) struct HardwareFailsafe {
    ms: u32,
    armed: [bool; CHANNELS as usize],
    unsupported: bool,
    /// The heartbeat was stale at the last feed (said once per stall).
    starving: bool,
}

impl HardwareFailsafe {
    pub(super) fn new(time: Duration) -> Self {
        Self {
            ms: u32::try_from(time.as_millis()).unwrap_or(u32::MAX),
            armed: [false; CHANNELS as usize],
            unsupported: false,
            starving: false,
        }
    }

    /// Arms channels that are not armed yet and feeds the armed ones, as
    /// long as the async side's heartbeat is fresh (younger than half the
    /// failsafe time); recovers a tripped channel.
    pub(super) fn maintain(
        &mut self,
        outputs: &mut [DigitalOutput],
        tracker: &AttachTracker,
        heartbeat: &Heartbeat,
    ) {
        if self.unsupported {
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
        for ch in 0..outputs.len() {
            if !attached[ch] {
                // A re-attach resets the failsafe: arm it again then.
                self.armed[ch] = false;
                continue;
            }
            if !self.armed[ch] {
                self.arm(outputs, ch);
                if self.unsupported {
                    return;
                }
                continue;
            }
            match outputs[ch].set_reset_failsafe() {
                Ok(()) => {}
                Err(ReturnCode::Failsafe) => self.recover(outputs, ch, tracker),
                Err(ReturnCode::NotAttached) => self.armed[ch] = false,
                Err(e) => {
                    tracing::warn!(channel = ch, error = %e, "cannot feed the hardware failsafe")
                }
            }
        }
    }

    fn arm(&mut self, outputs: &[DigitalOutput], ch: usize) {
        match outputs[ch].set_enable_failsafe(self.ms) {
            Ok(()) => {
                self.armed[ch] = true;
                if ch == 0 {
                    tracing::info!(
                        failsafe_ms = self.ms,
                        "hardware failsafe armed: if this service stops feeding it, the board turns the relays off"
                    );
                }
            }
            Err(ReturnCode::Unsupported) => {
                tracing::warn!(
                    "this 1017 has no hardware failsafe (only the 1017_2 has); --hardware-failsafe is ignored, the relay hold still applies"
                );
                self.unsupported = true;
            }
            Err(ReturnCode::InvalidArg) => {
                let range = match (
                    outputs[ch].min_failsafe_time(),
                    outputs[ch].max_failsafe_time(),
                ) {
                    (Ok(min), Ok(max)) => format!("{min}ms to {max}ms"),
                    _ => "another range".to_owned(),
                };
                tracing::error!(
                    failsafe_ms = self.ms,
                    "this board takes {range} for --hardware-failsafe; running without the hardware failsafe"
                );
                self.unsupported = true;
            }
            Err(e) => {
                tracing::warn!(channel = ch, error = %e, "cannot arm the hardware failsafe; will retry")
            }
        }
    }

    /// A tripped channel (forced off) rejects every command until it is
    /// closed and reopened: do that, arm it again, and let the bank
    /// re-apply the intended states (the reopen is an attach).
    pub(super) fn recover(
        &mut self,
        outputs: &mut [DigitalOutput],
        ch: usize,
        tracker: &AttachTracker,
    ) {
        tracing::error!(
            channel = ch,
            failsafe_ms = self.ms,
            "the hardware failsafe tripped (this service did not feed it in time): the relay is off; reopening the channel"
        );
        self.armed[ch] = false;
        let out = &mut outputs[ch];
        if let Err(e) = out.close() {
            tracing::error!(channel = ch, error = %e, "cannot close the tripped channel");
        }
        if let Err(e) = out.open() {
            tracing::error!(channel = ch, error = %e, "cannot reopen the tripped channel");
            return;
        }
        if tracker.attached_channels()[ch] {
            self.arm(outputs, ch);
        }
        // Like a re-attach: the bank puts the intended states back.
        tracker.bump();
    }
}

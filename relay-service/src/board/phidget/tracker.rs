//! Turns the library's per-channel attach and detach events into one board
//! status: the board is attached when all eight channels are, on one 1017.
//! What the device says about itself (serial, version, failsafe range) is
//! read in the attach event, on the library's thread, at every attach.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use phidget::{DeviceId, DigitalOutput, Phidget};
use tokio::sync::watch;

use super::CHANNELS;
use crate::board::{BoardStatus, FailsafeState};

/// What an attached channel's device says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DeviceFacts {
    pub serial: Option<i32>,
    pub device: Option<DeviceId>,
    pub version: Option<u32>,
    /// The failsafe times the device takes, in ms; `None` on a board
    /// without a failsafe (1017_0 / 1017_1: "unsupported").
    pub failsafe_range: Option<(u32, u32)>,
}

impl DeviceFacts {
    /// Read from an attached channel (in its attach handler).
    pub(super) fn read(out: &DigitalOutput) -> Self {
        let mut version: std::ffi::c_int = 0;
        // SAFETY: a valid, attached channel handle and an int to fill.
        let rc = unsafe { phidget::ffi::Phidget_getDeviceVersion(out.as_handle(), &mut version) };
        Self {
            serial: out.serial_number().ok(),
            device: out.device_id().ok(),
            version: (rc == 0)
                .then_some(version)
                .and_then(|v| u32::try_from(v).ok()),
            failsafe_range: match (out.min_failsafe_time(), out.max_failsafe_time()) {
                (Ok(min), Ok(max)) => Some((min, max)),
                _ => None,
            },
        }
    }

    /// The hardware revision, by what it can do.
    pub(super) fn model(&self) -> &'static str {
        if self.failsafe_range.is_some() {
            "1017_2"
        } else {
            "1017_0/1017_1"
        }
    }
}

pub(super) struct AttachTracker {
    state: Mutex<Attachments>,
    status: watch::Sender<BoardStatus>,
}

struct Attachments {
    channels: [bool; CHANNELS as usize],
    /// The board the service drives: `--serial`, or the first 1017 that
    /// attached. Channels of any other board are not counted.
    pinned: Option<i32>,
    /// The facts of the board, from its last attach.
    facts: Option<DeviceFacts>,
    /// When the library last told us of an attach or a detach.
    last_event: Option<Instant>,
}

impl AttachTracker {
    pub(super) fn new(status: watch::Sender<BoardStatus>, serial: Option<i32>) -> Self {
        Self {
            state: Mutex::new(Attachments {
                channels: [false; CHANNELS as usize],
                pinned: serial,
                facts: None,
                last_event: None,
            }),
            status,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Attachments> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A channel attached. Returns whether it counts (a channel of the
    /// 1017 this service drives).
    pub(super) fn attached(&self, channel: u32, facts: DeviceFacts) -> bool {
        if facts.device != Some(DeviceId::Phidget1017) {
            tracing::error!(
                channel,
                serial = ?facts.serial,
                device = ?facts.device,
                "a device that is not a Phidget 1017 answered: refused (give --serial of the 1017)"
            );
            return false;
        }
        {
            let mut state = self.lock();
            match (state.pinned, facts.serial) {
                (None, Some(s)) => {
                    tracing::info!(
                        serial = s,
                        "driving the Phidget 1017 with this serial number"
                    );
                    state.pinned = Some(s);
                }
                (Some(pinned), Some(s)) if pinned != s => {
                    tracing::error!(
                        channel,
                        serial = s,
                        driving = pinned,
                        "a second 1017 answered: its channels are not used (channels of two boards are never mixed; give --serial)"
                    );
                    return false;
                }
                _ => {}
            }
            state.facts = Some(facts);
        }
        self.update(channel, true, Some(facts));
        true
    }

    pub(super) fn detached(&self, channel: u32) {
        self.update(channel, false, None);
    }

    pub(super) fn attached_channels(&self) -> [bool; CHANNELS as usize] {
        self.lock().channels
    }

    /// The facts of the board, once it has attached.
    pub(super) fn facts(&self) -> Option<DeviceFacts> {
        self.lock().facts
    }

    pub(super) fn is_attached(&self) -> bool {
        self.lock().channels.iter().all(|a| *a)
    }

    pub(super) fn failsafe(&self) -> FailsafeState {
        self.status.borrow().hardware_failsafe
    }

    /// Says how the hardware failsafe is doing, and whether the board can
    /// be driven as configured.
    pub(super) fn set_failsafe(&self, state: FailsafeState, misconfigured: Option<String>) {
        self.status.send_if_modified(|status| {
            let changed =
                status.hardware_failsafe != state || status.misconfigured != misconfigured;
            status.hardware_failsafe = state;
            status.misconfigured = misconfigured;
            changed
        });
    }

    /// Waits (on the calling thread) until the library has said nothing of
    /// attaches or detaches for `quiet`, for at most `at_most`.
    ///
    /// libphidget22 1.26 crashes (a NULL dereference on one of its own
    /// threads, seen under load) when a channel is closed while the
    /// library is still attaching the board's other channels: the service
    /// lets an attach finish before it closes the channels.
    pub(super) fn wait_quiet(&self, quiet: Duration, at_most: Duration) {
        let deadline = Instant::now() + at_most;
        loop {
            let since = self.lock().last_event.map_or(quiet, |at| at.elapsed());
            let now = Instant::now();
            if since >= quiet || now >= deadline {
                return;
            }
            std::thread::sleep((quiet - since).min(deadline - now));
        }
    }

    fn update(&self, channel: u32, attached: bool, facts: Option<DeviceFacts>) {
        let mut state = self.lock();
        state.last_event = Some(Instant::now());
        if let Some(slot) = state.channels.get_mut(channel as usize) {
            *slot = attached;
        }
        let all = state.channels.iter().all(|a| *a);
        self.status.send_if_modified(|status| {
            let before = status.clone();
            if all && !before.attached {
                status.attachments += 1;
            }
            status.attached = all;
            if let Some(facts) = facts {
                status.serial_number = facts.serial.or(status.serial_number);
                status.version = facts.version.or(status.version);
            }
            *status != before
        });
    }
}

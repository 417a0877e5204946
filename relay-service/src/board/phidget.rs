//! The Phidget Interface Kit 0/0/8 (P/N 1017), through libphidget22.
//!
//! What the library does, and what follows for us:
//! - A channel is addressed by device serial number + channel index (0..7).
//!   The 1017 is a plain USB device, not a VINT hub port device, so no hub
//!   port settings.
//! - Opening a channel turns its relay off, and so does closing it. So the
//!   eight channels are opened once and kept open for the life of the
//!   service; [`crate::bank::RelayBank`] re-applies the intended states on
//!   every attach.
//! - `DigitalOutput` is `Send` but not `Sync`: one worker thread owns the
//!   eight handles and switches relays on request. Attach and detach
//!   callbacks run on the library's dispatcher thread; they only update an
//!   [`AttachTracker`].
//! - The channels are opened with `Phidget_open`, which returns at once and
//!   attaches whenever the board is (or later becomes) present, so the
//!   service starts and serves even with the board unplugged.

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use phidget::{DigitalOutput, Phidget, ReturnCode};
use tokio::sync::{oneshot, watch};

use super::{BoardError, BoardStatus};

/// The 1017 has eight relays.
pub const CHANNELS: u32 = 8;

/// A Phidget 1017, its channels open for as long as this value lives.
pub struct PhidgetBoard {
    commands: Option<mpsc::Sender<Command>>,
    status: watch::Receiver<BoardStatus>,
    worker: Option<JoinHandle<()>>,
}

enum Command {
    Set {
        channel: u32,
        energized: bool,
        reply: oneshot::Sender<Result<(), BoardError>>,
    },
}

impl PhidgetBoard {
    /// Opens the eight channels of the 1017 with serial `serial` (any 1017
    /// when `None`). Returns once the channels are open; the board may
    /// attach later.
    /// `failsafe`: arm the 1017_2's hardware failsafe with this time on
    /// every channel (and keep feeding it); older boards say it is
    /// unsupported and run without.
    pub fn open(serial: Option<i32>, failsafe: Option<Duration>) -> Result<Self, BoardError> {
        let (status_tx, status_rx) = watch::channel(BoardStatus::default());
        let tracker = Arc::new(AttachTracker::new(status_tx));
        let (commands, command_rx) = mpsc::channel();
        let (opened_tx, opened_rx) = mpsc::channel();

        let worker = std::thread::Builder::new()
            .name("phidget-1017".into())
            .spawn(move || {
                let outputs = match open_channels(serial, &tracker) {
                    Ok(outputs) => {
                        let _ = opened_tx.send(Ok(()));
                        outputs
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                serve_commands(&outputs, command_rx, failsafe, &tracker);
                // Dropping the outputs closes the channels.
                drop(outputs);
            })
            .map_err(|e| BoardError::Failed(format!("cannot start the Phidget thread: {e}")))?;

        opened_rx
            .recv()
            .map_err(|_| BoardError::Failed("the Phidget thread stopped while opening".into()))??;

        Ok(Self {
            commands: Some(commands),
            status: status_rx,
            worker: Some(worker),
        })
    }

    pub fn status(&self) -> watch::Receiver<BoardStatus> {
        self.status.clone()
    }

    pub async fn set(&self, channel: u32, energized: bool) -> Result<(), BoardError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || BoardError::Failed("the Phidget thread has stopped".into());
        self.commands
            .as_ref()
            .ok_or_else(stopped)?
            .send(Command::Set {
                channel,
                energized,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for PhidgetBoard {
    fn drop(&mut self) {
        // Closing the command channel ends the worker, which closes the
        // Phidget channels (libphidget22 turns the relays off then).
        self.commands.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn open_channels(
    serial: Option<i32>,
    tracker: &Arc<AttachTracker>,
) -> Result<Vec<DigitalOutput>, BoardError> {
    let mut outputs = Vec::with_capacity(CHANNELS as usize);
    for channel in 0..CHANNELS {
        let mut out = DigitalOutput::new();
        let failed = |what: &str, e: ReturnCode| {
            BoardError::Failed(format!("channel {channel}: {what}: {e}"))
        };
        out.set_serial_number(serial.unwrap_or(phidget::PHIDGET_SERIALNUMBER_ANY))
            .map_err(|e| failed("set serial number", e))?;
        out.set_channel(channel as i32)
            .map_err(|e| failed("set channel", e))?;

        let on_attach = Arc::clone(tracker);
        out.set_on_attach_handler(move |out: &mut DigitalOutput| {
            on_attach.attached(channel, out.serial_number().ok());
        })
        .map_err(|e| failed("set attach handler", e))?;
        let on_detach = Arc::clone(tracker);
        out.set_on_detach_handler(move |_: &mut DigitalOutput| {
            on_detach.detached(channel);
        })
        .map_err(|e| failed("set detach handler", e))?;

        out.open().map_err(|e| failed("open", e))?;
        outputs.push(out);
    }
    Ok(outputs)
}

fn serve_commands(
    outputs: &[DigitalOutput],
    commands: mpsc::Receiver<Command>,
    failsafe: Option<Duration>,
    tracker: &AttachTracker,
) {
    let mut guard = failsafe.map(HardwareFailsafe::new);
    // Feed the watchdog four times per failsafe period.
    let period = failsafe.map_or(Duration::from_secs(3600), |f| f / 4);
    loop {
        let command = match commands.recv_timeout(period) {
            Ok(command) => Some(command),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        if let Some(guard) = &mut guard {
            guard.maintain(outputs, tracker, period);
        }
        let Some(command) = command else { continue };
        match command {
            Command::Set {
                channel,
                energized,
                reply,
            } => {
                let result = match outputs.get(channel as usize) {
                    Some(out) => out.set_state(u8::from(energized)).map_err(board_error),
                    None => Err(BoardError::Failed(format!("no channel {channel}"))),
                };
                let _ = reply.send(result);
            }
        }
    }
}

/// The 1017_2's hardware failsafe: armed on every attached channel, fed
/// from the board's own thread. If this process hangs, the feeding stops
/// and the board turns the relays off by itself.
struct HardwareFailsafe {
    ms: u32,
    armed: [bool; CHANNELS as usize],
    unsupported: bool,
    last_fed: Option<Instant>,
}

impl HardwareFailsafe {
    fn new(time: Duration) -> Self {
        Self {
            ms: time.as_millis().clamp(500, 30_000) as u32,
            armed: [false; CHANNELS as usize],
            unsupported: false,
            last_fed: None,
        }
    }

    /// Arms channels that are not armed yet, feeds the armed ones (at most
    /// once per `period`), and recovers a tripped channel: re-arms it and
    /// asks the bank to re-apply the intended states.
    fn maintain(&mut self, outputs: &[DigitalOutput], tracker: &AttachTracker, period: Duration) {
        if self.unsupported || self.last_fed.is_some_and(|t| t.elapsed() < period) {
            return;
        }
        self.last_fed = Some(Instant::now());
        let attached = tracker.attached_channels();
        let mut recovered = false;
        for (ch, out) in outputs.iter().enumerate() {
            if !attached[ch] {
                // A re-attach resets the failsafe: arm it again then.
                self.armed[ch] = false;
                continue;
            }
            if !self.armed[ch] {
                match out.set_enable_failsafe(self.ms) {
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
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(channel = ch, error = %e, "cannot arm the hardware failsafe; will retry")
                    }
                }
                continue;
            }
            match out.set_reset_failsafe() {
                Ok(()) => {}
                Err(ReturnCode::Failsafe) => {
                    tracing::error!(
                        channel = ch,
                        failsafe_ms = self.ms,
                        "the hardware failsafe tripped (this service did not feed it in time): the relay is off; re-arming"
                    );
                    self.armed[ch] = out.set_enable_failsafe(self.ms).is_ok();
                    recovered = true;
                }
                Err(ReturnCode::NotAttached) => self.armed[ch] = false,
                Err(e) => {
                    tracing::warn!(channel = ch, error = %e, "cannot feed the hardware failsafe")
                }
            }
        }
        if recovered {
            // Like a re-attach: the bank puts the intended states back.
            tracker.bump();
        }
    }
}

fn board_error(code: ReturnCode) -> BoardError {
    match code {
        ReturnCode::NotAttached => BoardError::NotAttached,
        other => BoardError::Failed(other.to_string()),
    }
}

/// Turns per-channel attach/detach callbacks into one board status: the
/// board is attached when all eight channels are.
struct AttachTracker {
    channels: Mutex<[bool; CHANNELS as usize]>,
    status: watch::Sender<BoardStatus>,
}

impl AttachTracker {
    fn new(status: watch::Sender<BoardStatus>) -> Self {
        Self {
            channels: Mutex::new([false; CHANNELS as usize]),
            status,
        }
    }

    fn attached(&self, channel: u32, serial: Option<i32>) {
        self.update(channel, true, serial);
    }

    fn detached(&self, channel: u32) {
        self.update(channel, false, None);
    }

    fn attached_channels(&self) -> [bool; CHANNELS as usize] {
        *self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the bank re-apply the intended states, as after a re-attach.
    fn bump(&self) {
        self.status.send_modify(|status| status.attachments += 1);
    }

    fn update(&self, channel: u32, attached: bool, serial: Option<i32>) {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = channels.get_mut(channel as usize) {
            *slot = attached;
        }
        let all = channels.iter().all(|a| *a);
        self.status.send_if_modified(|status| {
            let before = *status;
            if all && !before.attached {
                status.attachments += 1;
            }
            status.attached = all;
            if serial.is_some() {
                status.serial_number = serial;
            }
            *status != before
        });
    }
}

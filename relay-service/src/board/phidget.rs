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
//! - Other DigitalOutput devices (a 1018, a VINT REL1000) also answer a
//!   channel open with serial "any": an attach is checked for the 1017's
//!   device id, and without `--serial` the service pins itself to the first
//!   1017 that attaches, so channels from two boards are never mixed.
//! - The 1017_2's failsafe ([`HardwareFailsafe`]): its range is read from
//!   the device; it is fed at least every third of its time, and only while
//!   the async side's heartbeat is fresh (a wedged runtime lets the board
//!   fail safe, not only a frozen process); a tripped channel takes no
//!   command until it is closed and reopened, so recovery does exactly that.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use phidget::{DeviceId, DigitalOutput, Phidget, ReturnCode};
use tokio::sync::{oneshot, watch};

use super::{BoardError, BoardStatus};

mod failsafe;

use failsafe::{HardwareFailsafe, Heartbeat, check_failsafe_range, feed_period};

/// The 1017 has eight relays.
pub const CHANNELS: u32 = 8;

/// A Phidget 1017, its channels open for as long as this value lives.
pub struct PhidgetBoard {
    commands: Option<mpsc::Sender<Command>>,
    status: watch::Receiver<BoardStatus>,
    worker: Option<JoinHandle<()>>,
    /// Kept alive here: the beating task holds only a weak reference, and
    /// stops when the board goes.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    heartbeat: Arc<Heartbeat>,
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
        let tracker = Arc::new(AttachTracker::new(status_tx, serial));
        let (commands, command_rx) = mpsc::channel();
        let (opened_tx, opened_rx) = mpsc::channel();
        let heartbeat = Arc::new(Heartbeat::new());

        let beats = Arc::clone(&heartbeat);
        let worker = std::thread::Builder::new()
            .name("phidget-1017".into())
            .spawn(move || {
                let opened = pick_board(serial)
                    .and_then(|serial| open_channels(serial, &tracker))
                    .and_then(|outputs| {
                        match failsafe {
                            Some(time) => check_failsafe_range(&outputs, &tracker, time),
                            None => Ok(()),
                        }
                        .map(|()| outputs)
                    });
                let mut outputs = match opened {
                    Ok(outputs) => {
                        let _ = opened_tx.send(Ok(()));
                        outputs
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                serve_commands(&mut outputs, command_rx, failsafe, &tracker, &beats);
                // Dropping the outputs closes the channels.
                drop(outputs);
            })
            .map_err(|e| BoardError::Failed(format!("cannot start the Phidget thread: {e}")))?;

        opened_rx
            .recv()
            .map_err(|_| BoardError::Failed("the Phidget thread stopped while opening".into()))??;

        // The async side's heartbeat: beats while the runtime runs tasks.
        if let (Some(time), Ok(runtime)) = (failsafe, tokio::runtime::Handle::try_current()) {
            let beats = Arc::downgrade(&heartbeat);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(feed_period(time));
                while let Some(heartbeat) = beats.upgrade() {
                    heartbeat.beat();
                    drop(heartbeat);
                    tick.tick().await;
                }
            });
        }
        heartbeat.beat();

        Ok(Self {
            commands: Some(commands),
            status: status_rx,
            worker: Some(worker),
            heartbeat,
        })
    }

    /// Test builds only: what makes the async side stop beating, as if its
    /// runtime were wedged; the board's thread then stops feeding the
    /// failsafe. (A hook, so that a test can keep it once the service owns
    /// the board.)
    #[cfg(feature = "fault-injection")]
    pub fn stall_heartbeat_hook(&self) -> impl Fn() + Send + Sync + 'static {
        let heartbeat = Arc::clone(&self.heartbeat);
        move || heartbeat.stalled.store(true, Ordering::Relaxed)
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

/// How long a probe waits for a board's channel 0 to attach.
const PROBE_WAIT: Duration = Duration::from_millis(300);

/// The board to drive: `--serial`, or, without it, the one 1017 plugged in
/// (found by opening channel 0 with serial "any" until no other board
/// answers; each open attaches a board not yet taken). Two or more 1017s
/// without `--serial` is an error listing them; none: the first that
/// attaches later.
fn pick_board(serial: Option<i32>) -> Result<Option<i32>, BoardError> {
    if serial.is_some() {
        return Ok(serial);
    }
    let mut probes = Vec::new();
    let mut found = Vec::new();
    // At most a handful of boards; the bound keeps a broken library from
    // looping forever.
    while probes.len() < 8 {
        let mut probe = DigitalOutput::new();
        if probe
            .set_serial_number(phidget::PHIDGET_SERIALNUMBER_ANY)
            .is_err()
            || probe.set_channel(0).is_err()
            || probe.open_wait(PROBE_WAIT).is_err()
        {
            break;
        }
        match (probe.device_id(), probe.serial_number()) {
            (Ok(DeviceId::Phidget1017), Ok(s)) => found.push(s),
            (device, s) => tracing::warn!(
                device = ?device.ok(),
                serial = ?s.ok(),
                "a device that is not a Phidget 1017 is plugged in: not used"
            ),
        }
        probes.push(probe);
    }
    // Dropping the probes closes them.
    drop(probes);
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(BoardError::Failed(format!(
            "{} Phidget 1017s are plugged in (serial numbers {}): give --serial to say which one this service drives",
            many.len(),
            many.iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
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
            on_attach.attached(channel, out.serial_number().ok(), out.device_id().ok());
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
    outputs: &mut [DigitalOutput],
    commands: mpsc::Receiver<Command>,
    failsafe: Option<Duration>,
    tracker: &AttachTracker,
    heartbeat: &Heartbeat,
) {
    let mut guard = failsafe.map(HardwareFailsafe::new);
    let period = failsafe.map_or(Duration::from_secs(3600), feed_period);
    let mut next_feed = Instant::now();
    loop {
        let wait = next_feed.saturating_duration_since(Instant::now());
        let command = match commands.recv_timeout(wait) {
            Ok(command) => Some(command),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // Fed on a schedule of its own, whatever the commands do: the gap
        // between two feeds stays within `period` (plus one command).
        if Instant::now() >= next_feed {
            next_feed = Instant::now() + period;
            if let Some(guard) = &mut guard {
                guard.maintain(outputs, tracker, heartbeat);
            }
        }
        let Some(command) = command else { continue };
        match command {
            Command::Set {
                channel,
                energized,
                reply,
            } => {
                let mut result = set_state(outputs, channel, energized);
                if result == Err(ReturnCode::Failsafe)
                    && let Some(guard) = &mut guard
                {
                    // Tripped: nothing gets through until it is reopened.
                    guard.recover(outputs, channel as usize, tracker);
                    result = set_state(outputs, channel, energized);
                }
                let _ = reply.send(result.map_err(board_error));
            }
        }
    }
}

fn set_state(outputs: &[DigitalOutput], channel: u32, energized: bool) -> Result<(), ReturnCode> {
    match outputs.get(channel as usize) {
        Some(out) => out.set_state(u8::from(energized)),
        None => Err(ReturnCode::InvalidArg),
    }
}

fn board_error(code: ReturnCode) -> BoardError {
    match code {
        ReturnCode::NotAttached => BoardError::NotAttached,
        other => BoardError::Failed(other.to_string()),
    }
}

/// Turns per-channel attach/detach callbacks into one board status: the
/// board is attached when all eight channels are, on one 1017.
struct AttachTracker {
    state: Mutex<Attachments>,
    status: watch::Sender<BoardStatus>,
}

struct Attachments {
    channels: [bool; CHANNELS as usize],
    /// The board the service drives: `--serial`, or the first 1017 that
    /// attached. Channels of any other board are not counted.
    pinned: Option<i32>,
}

impl AttachTracker {
    fn new(status: watch::Sender<BoardStatus>, serial: Option<i32>) -> Self {
        Self {
            state: Mutex::new(Attachments {
                channels: [false; CHANNELS as usize],
                pinned: serial,
            }),
            status,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Attachments> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn attached(&self, channel: u32, serial: Option<i32>, device: Option<DeviceId>) {
        if device != Some(DeviceId::Phidget1017) {
            tracing::error!(
                channel,
                ?serial,
                device = ?device,
                "a device that is not a Phidget 1017 answered: refused (give --serial of the 1017)"
            );
            return;
        }
        {
            let mut state = self.lock();
            match (state.pinned, serial) {
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
                    return;
                }
                _ => {}
            }
        }
        self.update(channel, true, serial);
    }

    fn detached(&self, channel: u32) {
        self.update(channel, false, None);
    }

    fn attached_channels(&self) -> [bool; CHANNELS as usize] {
        self.lock().channels
    }

    /// Makes the bank re-apply the intended states, as after a re-attach.
    fn bump(&self) {
        self.status.send_modify(|status| status.attachments += 1);
    }

    fn update(&self, channel: u32, attached: bool, serial: Option<i32>) {
        let mut state = self.lock();
        if let Some(slot) = state.channels.get_mut(channel as usize) {
            *slot = attached;
        }
        let all = state.channels.iter().all(|a| *a);
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

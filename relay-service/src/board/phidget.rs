//! The Phidget Interface Kit 0/0/8 (P/N 1017), through the vendor's
//! libphidget22.
//!
//! What the library does, and what follows for us:
//! - A channel is addressed by device serial number + channel index (0..7).
//!   The 1017 is a plain USB device, not a VINT hub port device, so no hub
//!   port settings.
//! - `Phidget_open` returns at once; the board attaches later, on the
//!   library's own thread, which polls USB every 250 ms. So the service
//!   starts and serves with the board unplugged, and reads the device (id,
//!   serial, version, failsafe range) in the attach event, at every attach
//!   ([`tracker`]).
//! - Opening a channel turns its relay off, and so does closing it. So the
//!   eight channels are opened once and kept open for the life of the
//!   service; [`crate::bank::RelayBank`] re-applies the intended states on
//!   every attach.
//! - `DigitalOutput` is `Send` but not `Sync`: one worker thread owns the
//!   eight handles, switches relays on request and arms and feeds the
//!   failsafe. The library's attach, detach and error events only update
//!   the [`tracker::AttachTracker`] and post to that thread.
//! - Other DigitalOutput devices (a 1018, a VINT REL1000) also answer a
//!   channel open with serial "any": an attach is checked for the 1017's
//!   device id, and without `--serial` the service pins itself to the first
//!   1017 that attaches, so channels from two boards are never mixed.
//! - An `openWaitForAttachment` that times out leaves the channel closed
//!   (the board probe opens anew each time).
//! - On an unattached channel the library answers 52 (not attached):
//!   UNAVAILABLE to clients.
//! - The 1017_2's failsafe ([`failsafe`]): its range is read from the
//!   device; it is fed at least every third of its time, and only while the
//!   async side's heartbeat is fresh (a wedged runtime lets the board fail
//!   safe, not only a frozen process). A trip reaches us as error event 4108
//!   (and then 59 on every command): the channel is closed and reopened at
//!   once, re-armed, and the intended state re-applied.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::Ordering;

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use phidget::{DeviceId, ReturnCode};
use tokio::sync::{oneshot, watch};

use super::{BoardError, BoardStatus};

mod channels;
mod failsafe;
mod tracker;

use channels::{Channel, open_channels, pick_board, set_state};
use failsafe::{HardwareFailsafe, Heartbeat, Refusal, check_range, feed_period};
use tracker::{AttachTracker, DeviceFacts};

/// The 1017 has eight relays.
pub const CHANNELS: u32 = 8;

/// How long the start waits for a board to attach, to check that it takes
/// the `--hardware-failsafe` time before serving.
const SETTLE_WAIT: Duration = Duration::from_secs(5);
/// With no board for this long, say so (and how to look for it)...
const ABSENT_WARN_AFTER: Duration = Duration::from_secs(2);
/// ...and again at most this often while it stays away.
const ABSENT_WARN_EVERY: Duration = Duration::from_secs(300);

/// The failsafe times the 1017_2 takes (Phidgets' documentation, and what
/// libphidget22 reports for it), in ms: the check when no board is there.
const DOCUMENTED_FAILSAFE_RANGE: (u32, u32) = (500, 30_000);

/// libphidget22's error event for a failsafe trip ("Failsafe procedure
/// initiated.").
const EEPHIDGET_FAILSAFE: u32 = 4108;

/// A Phidget 1017, its channels open for as long as this value lives.
pub struct PhidgetBoard {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<BoardStatus>,
    worker: Option<JoinHandle<()>>,
    tracker: Arc<AttachTracker>,
    serial: Option<i32>,
    failsafe: Option<Duration>,
    /// Kept alive here: the beating task holds only a weak reference, and
    /// stops when the board goes.
    heartbeat: Arc<Heartbeat>,
    beating: std::sync::atomic::AtomicBool,
}

enum Command {
    Set {
        channel: u32,
        energized: bool,
        reply: oneshot::Sender<Result<(), BoardError>>,
    },
    /// A channel attached (posted by its attach event): arm its failsafe.
    Attached(u32),
    /// The board reported a failsafe trip on a channel (error event 4108).
    Tripped(u32),
    Stop,
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
        let posts = commands.clone();
        let tracking = Arc::clone(&tracker);
        let worker = std::thread::Builder::new()
            .name("phidget-1017".into())
            .spawn(move || {
                let opened =
                    pick_board(serial).and_then(|serial| open_channels(serial, &tracking, &posts));
                let mut channels = match opened {
                    Ok(channels) => {
                        let _ = opened_tx.send(Ok(()));
                        channels
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let mut worker = Worker::new(serial, failsafe, Arc::clone(&tracking), beats);
                worker.serve(&mut channels, command_rx);
                // An attach under way finishes first (see `wait_quiet`);
                // then closing turns the relays off.
                tracking.wait_quiet(CLOSE_QUIET, CLOSE_QUIET_AT_MOST);
                drop(channels);
            })
            .map_err(|e| BoardError::Failed(format!("cannot start the Phidget thread: {e}")))?;

        opened_rx
            .recv()
            .map_err(|_| BoardError::Failed("the Phidget thread stopped while opening".into()))??;

        Ok(Self {
            commands,
            status: status_rx,
            worker: Some(worker),
            tracker,
            serial,
            failsafe,
            heartbeat,
            beating: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// At start, with `--hardware-failsafe`: waits up to 5 s for the board
    /// to attach, and refuses a time it does not take (the start stops,
    /// naming the board's range). A 1017 without a failsafe, or no board
    /// within 5 s, is not an error here: a board that attaches later with a
    /// range that does not fit is not armed, and the service reports
    /// NOT_SERVING.
    ///
    /// Then the failsafe is armed: the async side starts beating, and the
    /// board's thread arms and feeds the failsafe while it beats.
    pub async fn settle(&self) -> Result<(), BoardError> {
        let Some(time) = self.failsafe else {
            return Ok(());
        };
        let mut status = self.status.clone();
        let attached = tokio::time::timeout(SETTLE_WAIT, status.wait_for(|s| s.attached)).await;
        let facts = match attached {
            Ok(Ok(_)) => self.tracker.facts(),
            _ => None,
        };
        match facts {
            Some(facts) => {
                if let Err(Refusal::OutOfRange(why)) = check_range(&facts, time) {
                    return Err(BoardError::Failed(why));
                }
            }
            None => {
                // No board to ask: what the 1017_2 takes.
                let documented = DeviceFacts {
                    serial: self.serial,
                    device: Some(DeviceId::Phidget1017),
                    version: None,
                    failsafe_range: Some(DOCUMENTED_FAILSAFE_RANGE),
                };
                if let Err(Refusal::OutOfRange(why)) = check_range(&documented, time) {
                    return Err(BoardError::Failed(format!(
                        "{why} (no board attached to ask)"
                    )));
                }
                tracing::info!(
                    wait = %humantime::format_duration(SETTLE_WAIT),
                    "no Phidget 1017 attached yet: the hardware failsafe is armed when it attaches"
                );
            }
        }
        self.start_heartbeat(time);
        Ok(())
    }

    /// The async side's heartbeat: beats while the runtime runs tasks.
    /// Nothing is armed before its first beat.
    fn start_heartbeat(&self, time: Duration) {
        if self.beating.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let beats = Arc::downgrade(&self.heartbeat);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(feed_period(time));
            while let Some(heartbeat) = beats.upgrade() {
                heartbeat.beat();
                drop(heartbeat);
                tick.tick().await;
            }
        });
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
        // Ends the worker, which closes the Phidget channels (libphidget22
        // turns the relays off then).
        let _ = self.commands.send(Command::Stop);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Before closing the channels: how long the library must have been
/// quiet (no attach or detach), and the longest the service waits for it.
const CLOSE_QUIET: Duration = Duration::from_millis(300);
const CLOSE_QUIET_AT_MOST: Duration = Duration::from_secs(2);

/// The thread that owns the channels.
struct Worker {
    serial: Option<i32>,
    tracker: Arc<AttachTracker>,
    heartbeat: Arc<Heartbeat>,
    guard: Option<HardwareFailsafe>,
    /// Feeds of the failsafe (and, without one, a wake-up now and then).
    period: Duration,
    next_feed: Instant,
    /// Since when no board has been attached, and when that was last said.
    absent_since: Option<Instant>,
    absent_said: Option<Instant>,
    /// Since when the board has been attached, and whether that was said
    /// (one info line per attach).
    attached_since: Option<Instant>,
    announced: bool,
}

impl Worker {
    fn new(
        serial: Option<i32>,
        failsafe: Option<Duration>,
        tracker: Arc<AttachTracker>,
        heartbeat: Arc<Heartbeat>,
    ) -> Self {
        Self {
            serial,
            tracker,
            heartbeat,
            guard: failsafe.map(HardwareFailsafe::new),
            period: failsafe.map_or(Duration::from_millis(500), |t| {
                feed_period(t).min(Duration::from_millis(500))
            }),
            next_feed: Instant::now(),
            absent_since: Some(Instant::now()),
            absent_said: None,
            attached_since: None,
            announced: false,
        }
    }

    fn serve(&mut self, channels: &mut [Channel], commands: mpsc::Receiver<Command>) {
        loop {
            let wait = self.next_feed.saturating_duration_since(Instant::now());
            let command = match commands.recv_timeout(wait) {
                Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Ok(command) => Some(command),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
            };
            // Fed on a schedule of its own, whatever the commands do: the
            // gap between two feeds stays within `period` (plus one command).
            if Instant::now() >= self.next_feed {
                self.next_feed = Instant::now() + self.period;
                if let Some(guard) = &mut self.guard {
                    guard.maintain(channels, &self.tracker, &self.heartbeat);
                }
                self.watch_presence();
            }
            match command {
                None | Some(Command::Stop) => {}
                Some(Command::Set {
                    channel,
                    energized,
                    reply,
                }) => {
                    let result = self.set(channels, channel, energized);
                    let _ = reply.send(result.map_err(board_error));
                }
                Some(Command::Attached(channel)) => self.on_attached(channels, channel),
                Some(Command::Tripped(channel)) => {
                    if let Some(guard) = &mut self.guard
                        && guard.is_armed(channel as usize)
                    {
                        guard.recover(channels, channel as usize, &self.tracker);
                    }
                }
            }
        }
    }

    fn set(
        &mut self,
        channels: &mut [Channel],
        channel: u32,
        energized: bool,
    ) -> Result<(), ReturnCode> {
        let result = set_state(channels, channel, energized);
        if result == Err(ReturnCode::Failsafe)
            && let Some(guard) = &mut self.guard
        {
            // Tripped: nothing gets through until it is reopened; the bank
            // re-applies this state once the channel is back.
            guard.recover(channels, channel as usize, &self.tracker);
        }
        result
    }

    /// A channel attached: arm it now (not at the next feed), and once the
    /// whole board is there, say what it is.
    fn on_attached(&mut self, channels: &mut [Channel], channel: u32) {
        if let Some(guard) = &mut self.guard
            && self.heartbeat.started()
        {
            guard.arm(channels, channel as usize, &self.tracker);
            guard.report(&self.tracker);
        }
        self.watch_presence();
    }

    /// One info line at attach; with no board, one warning after 2 s, then
    /// at most every 5 minutes.
    fn watch_presence(&mut self) {
        let now = Instant::now();
        if self.tracker.is_attached() {
            self.absent_since = None;
            self.absent_said = None;
            let since = *self.attached_since.get_or_insert(now);
            let state = self.tracker.failsafe();
            // Once the failsafe is settled (armed, or not possible), or
            // after 2 s whatever it is doing.
            let settled = self.guard.is_none()
                || state != super::FailsafeState::Off
                || now.duration_since(since) >= ABSENT_WARN_AFTER;
            if !self.announced
                && settled
                && let Some(facts) = self.tracker.facts()
            {
                self.announced = true;
                let failsafe = match state {
                    super::FailsafeState::Armed => "armed",
                    super::FailsafeState::Unsupported => "not supported by this board",
                    super::FailsafeState::Tripped => "tripped",
                    super::FailsafeState::Off if self.guard.is_some() => "arming",
                    super::FailsafeState::Off => "off (no --hardware-failsafe)",
                };
                tracing::info!(
                    model = facts.model(),
                    serial = ?facts.serial,
                    version = ?facts.version,
                    hardware_failsafe = failsafe,
                    "Phidget 1017 attached"
                );
            }
            return;
        }
        self.announced = false;
        self.attached_since = None;
        let since = *self.absent_since.get_or_insert(now);
        let due = match self.absent_said {
            None => now.duration_since(since) >= ABSENT_WARN_AFTER,
            Some(said) => now.duration_since(said) >= ABSENT_WARN_EVERY,
        };
        if due {
            self.absent_said = Some(now);
            let serial = self.serial.map_or("any".to_owned(), |s| s.to_string());
            tracing::warn!(
                "no Phidget 1017 found (serial {serial}): check the USB cable, `lsusb -d 06c2:`, the udev rule in deploy/udev, and that no other program holds the board; waiting for it"
            );
        }
    }
}

fn board_error(code: ReturnCode) -> BoardError {
    match code {
        ReturnCode::NotAttached => BoardError::NotAttached,
        ReturnCode::Timeout | ReturnCode::Io | ReturnCode::Again => {
            BoardError::Unresponsive(code.to_string())
        }
        other => BoardError::Failed(other.to_string()),
    }
}

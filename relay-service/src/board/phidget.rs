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

use std::ffi::{CStr, c_char, c_void};
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use phidget::{DeviceId, DigitalOutput, Phidget, ReturnCode};
use tokio::sync::{oneshot, watch};

use super::{BoardError, BoardStatus};

mod failsafe;
mod tracker;

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

/// One open channel, with its error handler's context.
///
/// Neither is ever freed. libphidget22 calls the handlers on threads of its
/// own, and an event it queued before `Phidget_close` may still be
/// delivered after it: freeing the handlers' closures (or deleting the
/// channel) then makes the library call freed memory. Seen under load as
/// SIGSEGVs in `DigitalOutput::on_attach` and inside the library's own
/// threads. So a channel that goes is closed with its handlers cleared,
/// and its few hundred bytes are left allocated: a board is opened once
/// per process.
pub(super) struct Channel {
    out: ManuallyDrop<DigitalOutput>,
    _on_error: ManuallyDrop<Box<ErrorContext>>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        retire(&mut self.out);
    }
}

/// Stops the library from calling into `out`'s handlers and closes it
/// (which turns its relay off); leaves it allocated (see [`Channel`]).
fn retire(out: &mut DigitalOutput) {
    let handle = out.as_mut_handle();
    // SAFETY: `handle` is a live channel handle (never deleted); clearing
    // a handler takes no pointer of ours.
    unsafe {
        phidget::ffi::Phidget_setOnAttachHandler(handle, None, std::ptr::null_mut());
        phidget::ffi::Phidget_setOnDetachHandler(handle, None, std::ptr::null_mut());
        phidget::ffi::Phidget_setOnErrorHandler(handle, None, std::ptr::null_mut());
    }
    let _ = phidget::Phidget::close(out);
}

struct ErrorContext {
    channel: u32,
    commands: Mutex<mpsc::Sender<Command>>,
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
        // A probe that times out is left closed by the library: nothing
        // more is plugged in.
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
    // Closed, and left allocated like every channel (see `Channel`).
    for mut probe in probes {
        retire(&mut probe);
        std::mem::forget(probe);
    }
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
    posts: &mpsc::Sender<Command>,
) -> Result<Vec<Channel>, BoardError> {
    let mut channels = Vec::with_capacity(CHANNELS as usize);
    for channel in 0..CHANNELS {
        // Never dropped, even on an error below (see `Channel`).
        let mut out = ManuallyDrop::new(DigitalOutput::new());
        let failed = |what: &str, e: ReturnCode| {
            BoardError::Failed(format!("channel {channel}: {what}: {e}"))
        };
        out.set_serial_number(serial.unwrap_or(phidget::PHIDGET_SERIALNUMBER_ANY))
            .map_err(|e| failed("set serial number", e))?;
        out.set_channel(channel as i32)
            .map_err(|e| failed("set channel", e))?;

        let on_attach = Arc::clone(tracker);
        let attach_posts = Mutex::new(posts.clone());
        out.set_on_attach_handler(move |out: &mut DigitalOutput| {
            if on_attach.attached(channel, DeviceFacts::read(out)) {
                let posts = attach_posts.lock().unwrap_or_else(|p| p.into_inner());
                let _ = posts.send(Command::Attached(channel));
            }
        })
        .map_err(|e| failed("set attach handler", e))?;
        let on_detach = Arc::clone(tracker);
        out.set_on_detach_handler(move |_: &mut DigitalOutput| {
            on_detach.detached(channel);
        })
        .map_err(|e| failed("set detach handler", e))?;
        let on_error = Box::new(ErrorContext {
            channel,
            commands: Mutex::new(posts.clone()),
        });
        // SAFETY: the context is never freed (see `Channel`), and the
        // handler only reads it.
        let rc = unsafe {
            phidget::ffi::Phidget_setOnErrorHandler(
                out.as_mut_handle(),
                Some(on_error_event),
                (&raw const *on_error).cast_mut().cast(),
            )
        };
        ReturnCode::result(rc).map_err(|e| failed("set error handler", e))?;

        let on_error = ManuallyDrop::new(on_error);
        out.open().map_err(|e| failed("open", e))?;
        channels.push(Channel {
            out,
            _on_error: on_error,
        });
    }
    Ok(channels)
}

/// The library's error events, on its own thread: a failsafe trip is
/// posted to the worker, anything else is logged.
unsafe extern "C" fn on_error_event(
    _handle: phidget::ffi::PhidgetHandle,
    ctx: *mut c_void,
    code: phidget::ffi::Phidget_ErrorEventCode,
    description: *const c_char,
) {
    // SAFETY: ctx is the ErrorContext registered with this handler, alive
    // while the channel is.
    let Some(ctx) = (unsafe { ctx.cast::<ErrorContext>().as_ref() }) else {
        return;
    };
    if code == EEPHIDGET_FAILSAFE {
        let posts = ctx.commands.lock().unwrap_or_else(|p| p.into_inner());
        let _ = posts.send(Command::Tripped(ctx.channel));
        return;
    }
    let text = if description.is_null() {
        String::new()
    } else {
        // SAFETY: the library passes a NUL-terminated string.
        unsafe { CStr::from_ptr(description) }
            .to_string_lossy()
            .into_owned()
    };
    tracing::warn!(
        channel = ctx.channel,
        code,
        "the Phidget library reports: {text}"
    );
}

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

fn set_state(channels: &[Channel], channel: u32, energized: bool) -> Result<(), ReturnCode> {
    match channels.get(channel as usize) {
        Some(c) => c.out.set_state(u8::from(energized)),
        None => Err(ReturnCode::InvalidArg),
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

//! A stand-in `libphidget22.so` for tests: no hardware, no vendor library.
//!
//! It implements the C functions that the `phidget` crate's `DigitalOutput`
//! path calls, with the real library's documented behaviour, against one
//! simulated Phidget Interface Kit 0/0/8 (1017):
//!
//! - A channel is matched by device serial number (or any) and index 0..7.
//! - Opening a channel attaches it when the board is plugged in; the attach
//!   handler runs on a dispatcher thread (not the caller's), and, for
//!   `Phidget_openWaitForAttachment`, before the call returns.
//! - Attaching (open, or replug) and closing turn the channel's relay off.
//! - Unplugging detaches every open channel (detach handlers run) and makes
//!   `setState` / `getState` fail with `EPHIDGET_NOTATTACHED` (52); plugging
//!   back re-attaches them (attach handlers run), relays off.
//! - Failsafe is answered `EPHIDGET_UNSUPPORTED` (20), as on a 1017 before
//!   the 1017_2 revision, unless the board is made a 1017_2
//!   (`PHIDGET_STANDIN_FAILSAFE=1`, or `phidget_standin_set_failsafe`). Then
//!   `enableFailsafe(ms)` (500..=30000) arms a watchdog per channel that
//!   `resetFailsafe` feeds; if it starves, the relay turns off and the
//!   channel rejects every further command (`setState`, `resetFailsafe`,
//!   `enableFailsafe`) with `EPHIDGET_FAILSAFE` (59) until it is closed and
//!   opened again, as Phidgets document. The failsafe range is read with
//!   `getMinFailsafeTime` / `getMaxFailsafeTime` (500 / 30000 ms). The
//!   longest gap between two feeds of each channel is recorded, for tests of
//!   Phidgets' rule (feed at least every third of the failsafe time).
//!   `phidget_standin_freeze_resets` drops every reset, as if the host had
//!   stopped talking to the board.
//! - `Phidget_getDeviceID` answers the 1017's id (12), or another device's
//!   (`PHIDGET_STANDIN_DEVICE_ID`, or `phidget_standin_set_device_id`): a
//!   1018 also answers a DigitalOutput open, and must be refused.
//!
//! Tests drive the simulated board through the `phidget_standin_*` functions
//! (in-process), and configure it through the environment:
//! `PHIDGET_STANDIN_SERIAL` (default 300123) and `PHIDGET_STANDIN_PLUGGED`
//! (`0` to start unplugged).

#![allow(non_snake_case)]
// Every exported function checks its pointers before use; the safety
// contract is libphidget22's own.
#![allow(clippy::missing_safety_doc)]

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, mpsc};
use std::time::{Duration, Instant};

type ReturnCode = c_uint;
type Handle = *mut c_void;
type Callback = Option<unsafe extern "C" fn(Handle, *mut c_void)>;

const EPHIDGET_OK: ReturnCode = 0;
const EPHIDGET_TIMEOUT: ReturnCode = 3;
const EPHIDGET_UNSUPPORTED: ReturnCode = 20;
const EPHIDGET_INVALIDARG: ReturnCode = 21;
const EPHIDGET_NOTATTACHED: ReturnCode = 52;
const EPHIDGET_CLOSED: ReturnCode = 56;
const EPHIDGET_FAILSAFE: ReturnCode = 59;

const ANY: i32 = -1;
const CHANNELS: usize = 8;
const DEFAULT_SERIAL: i32 = 300_123;
/// libphidget22's `PHIDID_1017`.
const PHIDID_1017: i32 = 12;
/// The 1017_2's failsafe range, in ms.
const MIN_FAILSAFE_MS: u32 = 500;
const MAX_FAILSAFE_MS: u32 = 30_000;

/// The simulated board and every channel handle.
struct World {
    plugged: bool,
    serial: i32,
    relays: [bool; CHANNELS],
    handles: HashMap<usize, Channel>,
    /// A 1017_2: failsafe supported.
    failsafe_supported: bool,
    /// Resets are dropped (the host "hung").
    resets_frozen: bool,
    /// Per board index: the armed watchdog (period, deadline), and whether
    /// it tripped.
    failsafe: [Option<(Duration, Instant)>; CHANNELS],
    tripped: [bool; CHANNELS],
    /// Per board index: the last feed (or arming), and the longest gap
    /// between two feeds since the channel was armed.
    last_feed: [Option<Instant>; CHANNELS],
    longest_gap: [Duration; CHANNELS],
    /// What `Phidget_getDeviceID` answers.
    device_id: i32,
    /// A second 1017 plugged in too (its serial), for the "which board?"
    /// tests: its channels attach and say who they are, nothing more.
    second_serial: Option<i32>,
}

/// One `PhidgetDigitalOutputHandle`.
#[derive(Default)]
struct Channel {
    serial: i32,
    index: i32,
    open: bool,
    /// The board index it is attached to, when attached.
    attached_to: Option<usize>,
    /// Or the index on the second board.
    on_second: Option<usize>,
    on_attach: Option<(unsafe extern "C" fn(Handle, *mut c_void), usize)>,
    on_detach: Option<(unsafe extern "C" fn(Handle, *mut c_void), usize)>,
}

/// A handler to run on the dispatcher thread: (function, handle, context).
type Pending = (unsafe extern "C" fn(Handle, *mut c_void), usize, usize);

fn world() -> MutexGuard<'static, World> {
    static WORLD: OnceLock<Mutex<World>> = OnceLock::new();
    WORLD
        .get_or_init(|| {
            let serial = std::env::var("PHIDGET_STANDIN_SERIAL")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(DEFAULT_SERIAL);
            let plugged = std::env::var("PHIDGET_STANDIN_PLUGGED").as_deref() != Ok("0");
            let failsafe_supported =
                std::env::var("PHIDGET_STANDIN_FAILSAFE").as_deref() == Ok("1");
            let device_id = std::env::var("PHIDGET_STANDIN_DEVICE_ID")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(PHIDID_1017);
            Mutex::new(World {
                plugged,
                serial,
                relays: [false; CHANNELS],
                handles: HashMap::new(),
                failsafe_supported,
                resets_frozen: false,
                failsafe: [None; CHANNELS],
                tripped: [false; CHANNELS],
                last_feed: [None; CHANNELS],
                longest_gap: [Duration::ZERO; CHANNELS],
                device_id,
                second_serial: None,
            })
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Signalled whenever a channel attaches, for `openWaitForAttachment`.
fn attach_signal() -> &'static Condvar {
    static SIGNAL: Condvar = Condvar::new();
    &SIGNAL
}

/// Runs handlers on the dispatcher thread, one at a time, in order, and
/// waits until they have run (so a handle is never freed under a running
/// handler). Must be called without the world lock held: handlers call back
/// into the library.
fn dispatch(pending: Vec<Pending>) {
    type Job = (Vec<Pending>, mpsc::Sender<()>);
    static DISPATCHER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    if pending.is_empty() {
        return;
    }
    let sender = DISPATCHER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("phidget22-dispatch".into())
                .spawn(move || {
                    for (jobs, done) in rx {
                        for (f, handle, ctx) in jobs {
                            // SAFETY: registered by the caller with this context.
                            unsafe { f(handle as Handle, ctx as *mut c_void) };
                        }
                        let _ = done.send(());
                    }
                })
                .expect("spawn the dispatcher thread");
            Mutex::new(tx)
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (done_tx, done_rx) = mpsc::channel();
    if sender.send((pending, done_tx)).is_ok() {
        let _ = done_rx.recv();
    }
}

impl World {
    /// Attaches `handle` if it is open, unattached, matches the plugged
    /// board and its index is free. Returns the attach handler to run.
    fn try_attach(&mut self, handle: usize) -> Option<Pending> {
        if !self.plugged {
            return None;
        }
        self.try_attach_main(handle)
            .or_else(|| self.try_attach_second(handle))
    }

    /// The second board takes a channel the first could not (its serial,
    /// or "any" with the first board's channel taken).
    fn try_attach_second(&mut self, handle: usize) -> Option<Pending> {
        let second = self.second_serial?;
        let taken: Vec<usize> = self
            .handles
            .iter()
            .filter(|(h, _)| **h != handle)
            .filter_map(|(_, c)| c.on_second)
            .collect();
        let channel = self.handles.get_mut(&handle)?;
        if !channel.open || channel.attached_to.is_some() || channel.on_second.is_some() {
            return None;
        }
        if channel.serial != ANY && channel.serial != second {
            return None;
        }
        let index = usize::try_from(channel.index)
            .ok()
            .filter(|i| *i < CHANNELS && !taken.contains(i))?;
        channel.on_second = Some(index);
        let on_attach = channel.on_attach;
        attach_signal().notify_all();
        on_attach.map(|(f, ctx)| (f, handle, ctx))
    }

    fn try_attach_main(&mut self, handle: usize) -> Option<Pending> {
        let taken: Vec<usize> = self
            .handles
            .iter()
            .filter(|(h, _)| **h != handle)
            .filter_map(|(_, c)| c.attached_to)
            .collect();
        let serial = self.serial;
        let channel = self.handles.get_mut(&handle)?;
        if !channel.open || channel.attached_to.is_some() || channel.on_second.is_some() {
            return None;
        }
        if channel.serial != ANY && channel.serial != serial {
            return None;
        }
        let index = if channel.index == ANY {
            (0..CHANNELS).find(|i| !taken.contains(i))?
        } else {
            usize::try_from(channel.index)
                .ok()
                .filter(|i| *i < CHANNELS && !taken.contains(i))?
        };
        channel.attached_to = Some(index);
        let on_attach = channel.on_attach;
        // Attaching resets the output, and the failsafe with it.
        self.relays[index] = false;
        self.failsafe[index] = None;
        self.tripped[index] = false;
        attach_signal().notify_all();
        on_attach.map(|(f, ctx)| (f, handle, ctx))
    }

    /// Detaches `handle`. Returns the detach handler to run.
    fn detach(&mut self, handle: usize) -> Option<Pending> {
        let channel = self.handles.get_mut(&handle)?;
        if channel.on_second.take().is_some() {
            return channel.on_detach.map(|(f, ctx)| (f, handle, ctx));
        }
        let index = channel.attached_to.take()?;
        self.relays[index] = false;
        self.failsafe[index] = None;
        self.tripped[index] = false;
        self.last_feed[index] = None;
        channel.on_detach.map(|(f, ctx)| (f, handle, ctx))
    }

    fn attached_index(&self, handle: Handle) -> Result<usize, ReturnCode> {
        match self.handles.get(&(handle as usize)) {
            None => Err(EPHIDGET_INVALIDARG),
            Some(c) if !c.open => Err(EPHIDGET_CLOSED),
            Some(c) => c.attached_to.ok_or(EPHIDGET_NOTATTACHED),
        }
    }
}

fn with_channel(handle: Handle, f: impl FnOnce(&mut Channel)) -> ReturnCode {
    match world().handles.get_mut(&(handle as usize)) {
        Some(channel) => {
            f(channel);
            EPHIDGET_OK
        }
        None => EPHIDGET_INVALIDARG,
    }
}

// ----- The libphidget22 API -----

#[unsafe(no_mangle)]
pub unsafe extern "C" fn PhidgetDigitalOutput_create(out: *mut Handle) -> ReturnCode {
    if out.is_null() {
        return EPHIDGET_INVALIDARG;
    }
    // A real allocation, so every handle is a distinct non-null address.
    let handle = Box::into_raw(Box::new(0u64)) as Handle;
    world().handles.insert(
        handle as usize,
        Channel {
            serial: ANY,
            index: ANY,
            ..Channel::default()
        },
    );
    // SAFETY: checked non-null above.
    unsafe { *out = handle };
    EPHIDGET_OK
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn PhidgetDigitalOutput_delete(handle: *mut Handle) -> ReturnCode {
    if handle.is_null() {
        return EPHIDGET_INVALIDARG;
    }
    // SAFETY: checked non-null above.
    let h = unsafe { *handle };
    Phidget_close(h);
    if world().handles.remove(&(h as usize)).is_some() {
        // SAFETY: allocated by PhidgetDigitalOutput_create.
        drop(unsafe { Box::from_raw(h as *mut u64) });
    }
    // SAFETY: checked non-null above.
    unsafe { *handle = std::ptr::null_mut() };
    EPHIDGET_OK
}

#[unsafe(no_mangle)]
pub extern "C" fn Phidget_setDeviceSerialNumber(handle: Handle, serial: i32) -> ReturnCode {
    with_channel(handle, |c| c.serial = serial)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn Phidget_getDeviceSerialNumber(
    handle: Handle,
    serial: *mut i32,
) -> ReturnCode {
    if serial.is_null() {
        return EPHIDGET_INVALIDARG;
    }
    let w = world();
    let Some(channel) = w.handles.get(&(handle as usize)) else {
        return EPHIDGET_INVALIDARG;
    };
    let value = match (channel.attached_to, channel.on_second, w.second_serial) {
        (Some(_), _, _) => w.serial,
        (None, Some(_), Some(second)) => second,
        _ => channel.serial,
    };
    // SAFETY: checked non-null above.
    unsafe { *serial = value };
    EPHIDGET_OK
}

#[unsafe(no_mangle)]
pub extern "C" fn Phidget_setChannel(handle: Handle, index: c_int) -> ReturnCode {
    with_channel(handle, |c| c.index = index)
}

#[unsafe(no_mangle)]
pub extern "C" fn Phidget_setOnAttachHandler(
    handle: Handle,
    f: Callback,
    ctx: *mut c_void,
) -> ReturnCode {
    with_channel(handle, |c| c.on_attach = f.map(|f| (f, ctx as usize)))
}

#[unsafe(no_mangle)]
pub extern "C" fn Phidget_setOnDetachHandler(
    handle: Handle,
    f: Callback,
    ctx: *mut c_void,
) -> ReturnCode {
    with_channel(handle, |c| c.on_detach = f.map(|f| (f, ctx as usize)))
}

/// Opens the channel and returns at once; it attaches now if the board is
/// there, or whenever it is plugged in.
#[unsafe(no_mangle)]
pub extern "C" fn Phidget_open(handle: Handle) -> ReturnCode {
    let pending = {
        let mut w = world();
        let Some(channel) = w.handles.get_mut(&(handle as usize)) else {
            return EPHIDGET_INVALIDARG;
        };
        channel.open = true;
        w.try_attach(handle as usize)
    };
    dispatch(pending.into_iter().collect());
    EPHIDGET_OK
}

/// Opens the channel and waits for it to attach; `timeout_ms` 0 waits
/// forever. On time-out the channel stays open (it attaches if the board
/// comes) and the call answers `EPHIDGET_TIMEOUT`.
#[unsafe(no_mangle)]
pub extern "C" fn Phidget_openWaitForAttachment(handle: Handle, timeout_ms: u32) -> ReturnCode {
    let rc = Phidget_open(handle);
    if rc != EPHIDGET_OK {
        return rc;
    }
    let deadline =
        (timeout_ms != 0).then(|| Instant::now() + Duration::from_millis(u64::from(timeout_ms)));
    let mut w = world();
    loop {
        match w.handles.get(&(handle as usize)) {
            Some(c) if c.attached_to.is_some() || c.on_second.is_some() => return EPHIDGET_OK,
            Some(_) => {}
            None => return EPHIDGET_INVALIDARG,
        }
        w = match deadline {
            None => attach_signal().wait(w).unwrap_or_else(|p| p.into_inner()),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return EPHIDGET_TIMEOUT;
                }
                attach_signal()
                    .wait_timeout(w, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
    }
}

/// Closes the channel: its relay turns off and, if it was attached, the
/// detach handler runs before this returns.
#[unsafe(no_mangle)]
pub extern "C" fn Phidget_close(handle: Handle) -> ReturnCode {
    let pending = {
        let mut w = world();
        let Some(channel) = w.handles.get_mut(&(handle as usize)) else {
            return EPHIDGET_INVALIDARG;
        };
        channel.open = false;
        w.detach(handle as usize)
    };
    dispatch(pending.into_iter().collect());
    EPHIDGET_OK
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn Phidget_getIsOpen(handle: Handle, open: *mut c_int) -> ReturnCode {
    if open.is_null() {
        return EPHIDGET_INVALIDARG;
    }
    let Some(value) = world().handles.get(&(handle as usize)).map(|c| c.open) else {
        return EPHIDGET_INVALIDARG;
    };
    // SAFETY: checked non-null above.
    unsafe { *open = c_int::from(value) };
    EPHIDGET_OK
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn Phidget_getAttached(handle: Handle, attached: *mut c_int) -> ReturnCode {
    if attached.is_null() {
        return EPHIDGET_INVALIDARG;
    }
    let Some(value) = world()
        .handles
        .get(&(handle as usize))
        .map(|c| c.attached_to.is_some() || c.on_second.is_some())
    else {
        return EPHIDGET_INVALIDARG;
    };
    // SAFETY: checked non-null above.
    unsafe { *attached = c_int::from(value) };
    EPHIDGET_OK
}

#[unsafe(no_mangle)]
pub extern "C" fn PhidgetDigitalOutput_setState(handle: Handle, state: c_int) -> ReturnCode {
    let mut w = world();
    match w.attached_index(handle) {
        Ok(index) if w.tripped[index] => EPHIDGET_FAILSAFE,
        Ok(index) => {
            w.relays[index] = state != 0;
            EPHIDGET_OK
        }
        Err(rc) => rc,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn PhidgetDigitalOutput_getState(
    handle: Handle,
    state: *mut c_int,
) -> ReturnCode {
    if state.is_null() {
        return EPHIDGET_INVALIDARG;
    }
    let w = world();
    match w.attached_index(handle) {
        Ok(index) => {
            // SAFETY: checked non-null above.
            unsafe { *state = c_int::from(w.relays[index]) };
            EPHIDGET_OK
        }
        Err(rc) => rc,
    }
}

/// Which device the attached channel belongs to.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn Phidget_getDeviceID(handle: Handle, id_ptr: *mut c_uint) -> ReturnCode {
    if id_ptr.is_null() {
        return EPHIDGET_INVALIDARG;
    }
    let w = world();
    let on_second = w
        .handles
        .get(&(handle as usize))
        .is_some_and(|c| c.on_second.is_some());
    if !on_second && let Err(rc) = w.attached_index(handle) {
        return rc;
    }
    // The second board is a 1017.
    let id = if on_second { PHIDID_1017 } else { w.device_id };
    // SAFETY: checked non-null above.
    unsafe { *id_ptr = id as c_uint };
    EPHIDGET_OK
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn Phidget_getErrorDescription(
    code: ReturnCode,
    description: *mut *const c_char,
) -> ReturnCode {
    if description.is_null() {
        return EPHIDGET_INVALIDARG;
    }
    let text: &'static [u8] = match code {
        0 => b"Success\0",
        3 => b"Timed Out\0",
        20 => b"Not Supported\0",
        21 => b"Invalid Argument\0",
        52 => b"Device not Attached\0",
        56 => b"Closed\0",
        59 => b"Failsafe Triggered\0",
        _ => b"Unknown Error\0",
    };
    // SAFETY: checked non-null above; the text is 'static and NUL-terminated.
    unsafe { *description = text.as_ptr().cast() };
    EPHIDGET_OK
}

mod controls;
mod failsafe;
pub use controls::*;
pub use failsafe::*;

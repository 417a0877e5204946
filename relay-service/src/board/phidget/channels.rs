//! The 1017's eight channels as libphidget22 objects: finding the board,
//! opening its channels with their handlers, and closing them in the one
//! way the library survives (handlers cleared, never freed).

use std::ffi::{CStr, c_char, c_void};
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use phidget::{DeviceId, DigitalOutput, Phidget, ReturnCode};

use super::tracker::{AttachTracker, DeviceFacts};
use super::{CHANNELS, Command, EEPHIDGET_FAILSAFE};
use crate::board::BoardError;

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
pub(crate) struct Channel {
    pub(super) out: ManuallyDrop<DigitalOutput>,
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

/// How long a probe waits for a board's channel 0 to attach.
const PROBE_WAIT: Duration = Duration::from_millis(300);

/// The board to drive: `--serial`, or, without it, the one 1017 plugged in
/// (found by opening channel 0 with serial "any" until no other board
/// answers; each open attaches a board not yet taken). Two or more 1017s
/// without `--serial` is an error listing them; none: the first that
/// attaches later.
pub(super) fn pick_board(serial: Option<i32>) -> Result<Option<i32>, BoardError> {
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

pub(super) fn open_channels(
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

pub(super) fn set_state(
    channels: &[Channel],
    channel: u32,
    energized: bool,
) -> Result<(), ReturnCode> {
    match channels.get(channel as usize) {
        Some(c) => c.out.set_state(u8::from(energized)),
        None => Err(ReturnCode::InvalidArg),
    }
}

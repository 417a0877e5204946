//! The libusb-1.0 API that libphidget22 calls (32 functions), over virtual
//! boards.
//!
//! - Enumeration reads `DIR/devices` each time (the library polls every
//!   250 ms), starts the board process of each listed board if it is not
//!   running, and presents the board with its descriptors. A board gets a
//!   new bus address at every plug, as a re-enumerated device does.
//! - Descriptors are answered here, as the host's USB stack caches them;
//!   everything else is a transfer to the board process.
//! - Asynchronous IN transfers wait for the board's input packets; their
//!   callbacks run in `libusb_handle_events_timeout_completed`.

mod connection;
pub mod device;
mod events;
pub mod live;
mod types;

use std::ffi::{CStr, c_char, c_int, c_uchar, c_uint};
use std::sync::Arc;
use std::time::Duration;

use connection::Connection;
pub use device::Device;
use device::{libusb_ref_device, libusb_unref_device};
use events::events;
pub use types::*;

use crate::firmware::Setup;
use crate::seqpacket;
use crate::wire::{self, ToBoard};

/// `libusb_context`: nothing in it; the state is process-wide, as one
/// context is all libphidget22 makes.
pub struct Context;

/// `libusb_device_handle`.
pub struct Handle {
    device: *mut Device,
    connection: Arc<Connection>,
}

// ----- The API -----

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_init(ctx: *mut *mut Context) -> c_int {
    if !ctx.is_null() {
        live::up(&live::CONTEXTS);
        // SAFETY: checked non-null.
        unsafe { *ctx = Box::into_raw(Box::new(Context)) };
    }
    wire::LIBUSB_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_exit(ctx: *mut Context) {
    if !ctx.is_null() {
        // SAFETY: made by libusb_init.
        drop(unsafe { Box::from_raw(ctx) });
        live::down(&live::CONTEXTS);
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_open(device: *mut Device, handle: *mut *mut Handle) -> c_int {
    // SAFETY: a live device.
    let (Some(d), false) = (unsafe { device.as_ref() }, handle.is_null()) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    let Ok(fd) = seqpacket::connect(&d.dir.socket(d.board.serial)) else {
        return wire::LIBUSB_ERROR_NO_DEVICE;
    };
    let Ok(connection) = Connection::open(fd) else {
        return wire::LIBUSB_ERROR_OTHER;
    };
    // SAFETY: a live device; the handle keeps a reference.
    unsafe { libusb_ref_device(device) };
    live::up(&live::HANDLES);
    // SAFETY: checked non-null.
    unsafe { *handle = Box::into_raw(Box::new(Handle { device, connection })) };
    wire::LIBUSB_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_close(handle: *mut Handle) {
    if handle.is_null() {
        return;
    }
    // SAFETY: made by libusb_open; closed once.
    let handle = unsafe { Box::from_raw(handle) };
    handle.connection.close();
    // SAFETY: the reference taken at open.
    unsafe { libusb_unref_device(handle.device) };
    live::down(&live::HANDLES);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_get_device(handle: *mut Handle) -> *mut Device {
    // SAFETY: a live handle.
    unsafe { handle.as_ref() }.map_or(std::ptr::null_mut(), |h| h.device)
}

fn connection(handle: *mut Handle) -> Option<&'static Connection> {
    // SAFETY: a live handle, valid until libusb_close (which the library
    // calls only once it is done with it).
    unsafe { handle.as_ref() }.map(|h| &*h.connection)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_kernel_driver_active(_handle: *mut Handle, _iface: c_int) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_detach_kernel_driver(_handle: *mut Handle, _iface: c_int) -> c_int {
    wire::LIBUSB_ERROR_NOT_FOUND
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_claim_interface(handle: *mut Handle, _iface: c_int) -> c_int {
    let Some(c) = connection(handle) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    c.request(|seq| ToBoard::Claim { seq }, 1000).0
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_release_interface(handle: *mut Handle, _iface: c_int) -> c_int {
    let Some(c) = connection(handle) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    c.request(|seq| ToBoard::Release { seq }, 1000).0
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_control_transfer(
    handle: *mut Handle,
    request_type: u8,
    request: u8,
    value: u16,
    index: u16,
    data: *mut c_uchar,
    length: u16,
    timeout: c_uint,
) -> c_int {
    let Some(c) = connection(handle) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    if data.is_null() && length > 0 {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    }
    let setup = Setup {
        request_type,
        request,
        value,
        index,
        length,
    };
    let inbound = request_type & 0x80 != 0;
    let out_data = if inbound || length == 0 {
        Vec::new()
    } else {
        // SAFETY: the caller's buffer of `length` bytes.
        unsafe { std::slice::from_raw_parts(data, usize::from(length)) }.to_vec()
    };
    let (status, answer) = c.request(
        |seq| ToBoard::Control {
            seq,
            setup,
            data: out_data,
        },
        timeout,
    );
    if status < 0 || !inbound {
        return status;
    }
    let n = answer.len().min(usize::from(length));
    // SAFETY: the caller's buffer of `length` bytes.
    unsafe { std::ptr::copy_nonoverlapping(answer.as_ptr(), data, n) };
    n as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_interrupt_transfer(
    handle: *mut Handle,
    endpoint: c_uchar,
    data: *mut c_uchar,
    length: c_int,
    transferred: *mut c_int,
    timeout: c_uint,
) -> c_int {
    let Some(c) = connection(handle) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    if endpoint & 0x80 != 0 || data.is_null() || length < 0 {
        // libphidget22 reads with asynchronous transfers only.
        return wire::LIBUSB_ERROR_NOT_SUPPORTED;
    }
    // SAFETY: the caller's buffer of `length` bytes.
    let out = unsafe { std::slice::from_raw_parts(data, length as usize) }.to_vec();
    let (status, _) = c.request(
        |seq| ToBoard::InterruptOut {
            seq,
            endpoint,
            data: out,
        },
        timeout,
    );
    if !transferred.is_null() {
        // SAFETY: checked non-null.
        unsafe { *transferred = status.max(0) };
    }
    status.min(0)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_bulk_transfer(
    _handle: *mut Handle,
    _endpoint: c_uchar,
    _data: *mut c_uchar,
    _length: c_int,
    transferred: *mut c_int,
    _timeout: c_uint,
) -> c_int {
    if !transferred.is_null() {
        // SAFETY: checked non-null.
        unsafe { *transferred = 0 };
    }
    // A 1017 has no bulk endpoint.
    wire::LIBUSB_ERROR_PIPE
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_get_string_descriptor_ascii(
    handle: *mut Handle,
    index: u8,
    data: *mut c_uchar,
    length: c_int,
) -> c_int {
    let Some(c) = connection(handle) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    if data.is_null() || length <= 0 {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    }
    let setup = Setup {
        request_type: 0x80,
        request: 0x06,
        value: 0x0300 | u16::from(index),
        index: 0x0409,
        length: 255,
    };
    let (status, d) = c.request(
        |seq| ToBoard::Control {
            seq,
            setup,
            data: Vec::new(),
        },
        1000,
    );
    if status < 0 {
        return status;
    }
    if d.len() < 2 || d[1] != 3 {
        return wire::LIBUSB_ERROR_IO;
    }
    let text: Vec<u8> = d[2..]
        .chunks_exact(2)
        .map(|u| match u16::from_le_bytes([u[0], u[1]]) {
            unit @ 0..=0x7f => unit as u8,
            _ => b'?',
        })
        .take(length as usize - 1)
        .collect();
    // SAFETY: the caller's buffer of `length` bytes; text.len() < length.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), data, text.len());
        *data.add(text.len()) = 0;
    }
    text.len() as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_alloc_transfer(iso_packets: c_int) -> *mut libusb_transfer {
    let size = std::mem::size_of::<libusb_transfer>()
        + usize::try_from(iso_packets).unwrap_or(0)
            * std::mem::size_of::<libusb_iso_packet_descriptor>();
    // SAFETY: zeroed memory is a valid libusb_transfer.
    let t = unsafe { libc::calloc(1, size) } as *mut libusb_transfer;
    if !t.is_null() {
        live::up(&live::TRANSFERS);
        // SAFETY: just allocated.
        unsafe { (*t).num_iso_packets = iso_packets };
    }
    t
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_free_transfer(transfer: *mut libusb_transfer) {
    if transfer.is_null() {
        return;
    }
    // SAFETY: made by libusb_alloc_transfer.
    unsafe {
        if (*transfer).flags & LIBUSB_TRANSFER_FREE_BUFFER != 0 {
            libc::free((*transfer).buffer.cast());
        }
        libc::free(transfer.cast());
    }
    live::down(&live::TRANSFERS);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_submit_transfer(transfer: *mut libusb_transfer) -> c_int {
    // SAFETY: a live transfer.
    let Some(t) = (unsafe { transfer.as_ref() }) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    let Some(c) = connection(t.dev_handle.cast()) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    if t.endpoint & 0x80 == 0 {
        // libphidget22 writes synchronously.
        return wire::LIBUSB_ERROR_NOT_SUPPORTED;
    }
    c.submit_in(transfer)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_cancel_transfer(transfer: *mut libusb_transfer) -> c_int {
    // SAFETY: a live transfer.
    let Some(t) = (unsafe { transfer.as_ref() }) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    let Some(c) = connection(t.dev_handle.cast()) else {
        return wire::LIBUSB_ERROR_NOT_FOUND;
    };
    c.cancel(transfer)
}

fn timeval_duration(tv: *const libc::timeval) -> Duration {
    // SAFETY: null or a valid timeval.
    match unsafe { tv.as_ref() } {
        Some(tv) => {
            Duration::from_secs(tv.tv_sec.max(0) as u64)
                + Duration::from_micros(tv.tv_usec.max(0) as u64)
        }
        None => events::MAX_WAIT,
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_handle_events_timeout_completed(
    _ctx: *mut Context,
    tv: *const libc::timeval,
    completed: *const c_int,
) -> c_int {
    // SAFETY: the caller's pointers.
    unsafe { events().handle(timeval_duration(tv), completed) };
    wire::LIBUSB_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_lock_event_waiters(_ctx: *mut Context) {
    events().lock_waiters();
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_unlock_event_waiters(_ctx: *mut Context) {
    events().unlock_waiters();
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_wait_for_event(
    _ctx: *mut Context,
    tv: *const libc::timeval,
) -> c_int {
    let ran = events().wait_round(timeval_duration(tv));
    // 1: the time ran out; with no time given, a bounded wait counts as a
    // wake-up (the library loops).
    c_int::from(!ran && !tv.is_null())
}

fn error_text(code: c_int) -> (&'static CStr, &'static CStr) {
    match code {
        0 => (c"LIBUSB_SUCCESS", c"Success"),
        -1 => (c"LIBUSB_ERROR_IO", c"Input/Output Error"),
        -2 => (c"LIBUSB_ERROR_INVALID_PARAM", c"Invalid parameter"),
        -3 => (
            c"LIBUSB_ERROR_ACCESS",
            c"Access denied (insufficient permissions)",
        ),
        -4 => (
            c"LIBUSB_ERROR_NO_DEVICE",
            c"No such device (it may have been disconnected)",
        ),
        -5 => (c"LIBUSB_ERROR_NOT_FOUND", c"Entity not found"),
        -6 => (c"LIBUSB_ERROR_BUSY", c"Resource busy"),
        -7 => (c"LIBUSB_ERROR_TIMEOUT", c"Operation timed out"),
        -8 => (c"LIBUSB_ERROR_OVERFLOW", c"Overflow"),
        -9 => (c"LIBUSB_ERROR_PIPE", c"Pipe error"),
        -10 => (
            c"LIBUSB_ERROR_INTERRUPTED",
            c"System call interrupted (perhaps due to signal)",
        ),
        -11 => (c"LIBUSB_ERROR_NO_MEM", c"Insufficient memory"),
        -12 => (
            c"LIBUSB_ERROR_NOT_SUPPORTED",
            c"Operation not supported or unimplemented on this platform",
        ),
        _ => (c"LIBUSB_ERROR_OTHER", c"Other error"),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn libusb_error_name(code: c_int) -> *const c_char {
    error_text(code).0.as_ptr()
}

#[unsafe(no_mangle)]
pub extern "C" fn libusb_strerror(code: c_int) -> *const c_char {
    error_text(code).1.as_ptr()
}

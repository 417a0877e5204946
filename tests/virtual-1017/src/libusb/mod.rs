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
mod events;
mod types;

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_uchar, c_uint, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use connection::Connection;
use events::events;
pub use types::*;

use crate::control::{ControlDir, Plugged};
use crate::descriptors;
use crate::firmware::Setup;
use crate::seqpacket;
use crate::wire::{self, ToBoard, ToHost};

/// `libusb_context`: nothing in it; the state is process-wide, as one
/// context is all libphidget22 makes.
pub struct Context;

/// `libusb_device`: a plugged board, reference counted.
pub struct Device {
    refs: AtomicUsize,
    dir: ControlDir,
    board: Plugged,
    address: u8,
}

/// `libusb_device_handle`.
pub struct Handle {
    device: *mut Device,
    connection: Arc<Connection>,
}

// ----- What is alive -----

/// Counts of what this library has allocated and not freed yet, for the
/// leak test: contexts, devices, handles (each with a connection and its
/// reader thread), transfers, configuration descriptors.
mod live {
    use std::sync::atomic::{AtomicI64, Ordering};

    pub(super) static CONTEXTS: AtomicI64 = AtomicI64::new(0);
    pub(super) static DEVICES: AtomicI64 = AtomicI64::new(0);
    pub(super) static HANDLES: AtomicI64 = AtomicI64::new(0);
    pub(super) static TRANSFERS: AtomicI64 = AtomicI64::new(0);
    pub(super) static CONFIGS: AtomicI64 = AtomicI64::new(0);

    pub(super) fn up(counter: &AtomicI64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn down(counter: &AtomicI64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn all() -> [i64; 5] {
        [&CONTEXTS, &DEVICES, &HANDLES, &TRANSFERS, &CONFIGS].map(|c| c.load(Ordering::Relaxed))
    }
}

/// Not libusb: what this library holds now, for tests (found with
/// `dlsym`): writes up to `n` counts to `out` (contexts, devices, handles,
/// transfers, configuration descriptors) and returns how many it wrote.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn delestage_virtual_usb_live(out: *mut i64, n: usize) -> usize {
    if out.is_null() {
        return 0;
    }
    let all = live::all();
    let n = n.min(all.len());
    // SAFETY: the caller's buffer of `n` counts.
    unsafe { std::ptr::copy_nonoverlapping(all.as_ptr(), out, n) };
    n
}

// ----- Boards and their processes -----

/// The board process's program: `DELESTAGE_VIRTUAL_1017_BOARD`, or
/// `virtual-1017-board` next to this library's real file (cargo builds both
/// into one directory; the libusb-1.0.so.0 on the loader's path links here).
fn board_program() -> Option<PathBuf> {
    static PROGRAM: OnceLock<Option<PathBuf>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("DELESTAGE_VIRTUAL_1017_BOARD") {
                return Some(PathBuf::from(path));
            }
            // SAFETY: dladdr on one of our own functions; info is plain data.
            let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
            let here = board_program as *const c_void;
            // SAFETY: as above.
            if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
                return None;
            }
            // SAFETY: dladdr gives a NUL-terminated path.
            let file = unsafe { CStr::from_ptr(info.dli_fname) }
                .to_string_lossy()
                .into_owned();
            let real = std::fs::canonicalize(file).ok()?;
            Some(real.parent()?.join("virtual-1017-board"))
        })
        .clone()
}

/// Connects to `board`'s process, starting it if it is not running.
fn connect(dir: &ControlDir, board: &Plugged) -> Option<std::os::fd::OwnedFd> {
    let socket = dir.socket(board.serial);
    if let Ok(fd) = seqpacket::connect(&socket) {
        return Some(fd);
    }
    let Some(program) = board_program() else {
        warn_once("cannot find the virtual-1017-board program (set DELESTAGE_VIRTUAL_1017_BOARD)");
        return None;
    };
    let started = std::process::Command::new(&program)
        .arg(dir.path())
        .arg(board.model.name())
        .arg(board.serial.to_string())
        .arg(board.version.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    match started {
        Ok(status) if status.success() => seqpacket::connect(&socket).ok(),
        Ok(status) => {
            warn_once(&format!("{} exited with {status}", program.display()));
            None
        }
        Err(e) => {
            warn_once(&format!("cannot run {}: {e}", program.display()));
            None
        }
    }
}

fn warn_once(message: &str) {
    static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if !said.iter().any(|m| m == message) {
        eprintln!("virtual-1017 libusb: {message}");
        said.push(message.to_owned());
    }
}

/// The board process's instance (new at every plug), asked on a short
/// connection.
fn instance(dir: &ControlDir, board: &Plugged) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let fd = connect(dir, board)?;
    seqpacket::send(fd.as_raw_fd(), &ToBoard::Hello.encode()).ok()?;
    match ToHost::decode(&seqpacket::recv(fd.as_raw_fd()).ok()??)? {
        ToHost::Hello { instance } => Some(instance),
        _ => None,
    }
}

/// A bus address per plug: the same while the board stays plugged, a new
/// one when it comes back, so the library sees a new device.
fn address(serial: u32, instance: u64) -> u8 {
    #[derive(Default)]
    struct Addresses {
        last: u8,
        /// Per serial: the board process instance, and its address.
        given: HashMap<u32, (u64, u8)>,
    }
    static ADDRESSES: OnceLock<Mutex<Addresses>> = OnceLock::new();
    let mut a = ADDRESSES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((seen, address)) = a.given.get(&serial)
        && *seen == instance
    {
        return *address;
    }
    // 1..=127, as USB addresses go.
    a.last = a.last % 127 + 1;
    let address = a.last;
    a.given.insert(serial, (instance, address));
    address
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
pub unsafe extern "C" fn libusb_get_device_list(
    _ctx: *mut Context,
    list: *mut *mut *mut Device,
) -> isize {
    if list.is_null() {
        return wire::LIBUSB_ERROR_INVALID_PARAM as isize;
    }
    let mut devices: Vec<*mut Device> = Vec::new();
    if let Some(dir) = ControlDir::from_env() {
        for board in dir.plugged() {
            let Some(instance) = instance(&dir, &board) else {
                continue;
            };
            live::up(&live::DEVICES);
            let device = Box::into_raw(Box::new(Device {
                refs: AtomicUsize::new(1),
                dir: dir.clone(),
                board,
                address: address(board.serial, instance),
            }));
            trace("new", device);
            devices.push(device);
        }
    }
    let size = std::mem::size_of::<*mut Device>();
    // SAFETY: calloc of (n + 1) pointers: the list is NULL-terminated.
    let array = unsafe { libc::calloc(devices.len() + 1, size) } as *mut *mut Device;
    if array.is_null() {
        return wire::LIBUSB_ERROR_OTHER as isize;
    }
    for (i, d) in devices.iter().enumerate() {
        // SAFETY: within the n + 1 slots.
        unsafe { *array.add(i) = *d };
    }
    // SAFETY: checked non-null.
    unsafe { *list = array };
    devices.len() as isize
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_free_device_list(list: *mut *mut Device, unref: c_int) {
    if list.is_null() {
        return;
    }
    if unref != 0 {
        let mut i = 0;
        // SAFETY: a NULL-terminated list from libusb_get_device_list.
        while let Some(d) = unsafe { (*list.add(i)).as_mut() } {
            // SAFETY: a device of the list.
            unsafe { libusb_unref_device(d) };
            i += 1;
        }
    }
    // SAFETY: allocated with calloc.
    unsafe { libc::free(list.cast()) };
}

/// `DELESTAGE_VIRTUAL_USB_TRACE=1`: every device's life on stderr (new,
/// ref, unref, drop), to follow the library's reference counting.
fn trace(what: &str, device: *mut Device) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("DELESTAGE_VIRTUAL_USB_TRACE").is_some()) {
        // SAFETY: tracing only; the device is live in every caller.
        let refs = unsafe { device.as_ref() }.map(|d| d.refs.load(Ordering::Relaxed));
        eprintln!("virtual-usb {what} {device:p} refs={refs:?}");
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_ref_device(device: *mut Device) -> *mut Device {
    trace("ref", device);
    // SAFETY: a live device.
    if let Some(d) = unsafe { device.as_ref() } {
        d.refs.fetch_add(1, Ordering::Relaxed);
    }
    device
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_unref_device(device: *mut Device) {
    trace("unref", device);
    // SAFETY: a live device.
    if let Some(d) = unsafe { device.as_ref() }
        && d.refs.fetch_sub(1, Ordering::AcqRel) == 1
    {
        trace("drop", device);
        // SAFETY: the last reference.
        drop(unsafe { Box::from_raw(device) });
        live::down(&live::DEVICES);
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_get_bus_number(_device: *mut Device) -> u8 {
    1
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_get_device_address(device: *mut Device) -> u8 {
    // SAFETY: a live device.
    unsafe { device.as_ref() }.map_or(0, |d| d.address)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_get_device_descriptor(
    device: *mut Device,
    desc: *mut libusb_device_descriptor,
) -> c_int {
    // SAFETY: a live device and a writable descriptor.
    let (Some(d), false) = (unsafe { device.as_ref() }, desc.is_null()) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    let fields = descriptors::device(&d.board);
    let out = libusb_device_descriptor {
        bLength: 18,
        bDescriptorType: 1,
        bcdUSB: 0x0200,
        bDeviceClass: 0,
        bDeviceSubClass: 0,
        bDeviceProtocol: 0,
        bMaxPacketSize0: fields.max_packet_size0,
        idVendor: fields.id_vendor,
        idProduct: fields.id_product,
        bcdDevice: fields.bcd_device,
        iManufacturer: descriptors::STRING_MANUFACTURER,
        iProduct: descriptors::STRING_PRODUCT,
        iSerialNumber: descriptors::STRING_SERIAL,
        bNumConfigurations: 1,
    };
    // SAFETY: checked non-null.
    unsafe { *desc = out };
    wire::LIBUSB_SUCCESS
}

/// A configuration descriptor and everything it points to, in one
/// allocation (the configuration first, so its address is the block's).
#[repr(C)]
struct ConfigBlock {
    config: libusb_config_descriptor,
    interface: libusb_interface,
    altsetting: libusb_interface_descriptor,
    endpoints: Vec<libusb_endpoint_descriptor>,
    extras: Vec<Vec<u8>>,
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_get_active_config_descriptor(
    device: *mut Device,
    config: *mut *mut libusb_config_descriptor,
) -> c_int {
    // SAFETY: a live device.
    let (Some(d), false) = (unsafe { device.as_ref() }, config.is_null()) else {
        return wire::LIBUSB_ERROR_INVALID_PARAM;
    };
    let c = descriptors::configuration(d.board.model);
    let mut extras: Vec<Vec<u8>> = vec![c.config_extra.clone(), c.interface_extra.clone()];
    extras.extend(c.endpoints.iter().map(|e| e.extra.clone()));
    let ptr = |v: &Vec<u8>| {
        if v.is_empty() {
            std::ptr::null()
        } else {
            v.as_ptr()
        }
    };
    let endpoints: Vec<libusb_endpoint_descriptor> = c
        .endpoints
        .iter()
        .zip(&extras[2..])
        .map(|(e, extra)| libusb_endpoint_descriptor {
            bLength: 7,
            bDescriptorType: 5,
            bEndpointAddress: e.address,
            bmAttributes: e.attributes,
            wMaxPacketSize: e.max_packet_size,
            bInterval: e.interval,
            bRefresh: 0,
            bSynchAddress: 0,
            extra: ptr(extra),
            extra_length: extra.len() as c_int,
        })
        .collect();
    let mut block = Box::new(ConfigBlock {
        config: libusb_config_descriptor {
            bLength: 9,
            bDescriptorType: 2,
            wTotalLength: 0,
            bNumInterfaces: 1,
            bConfigurationValue: 1,
            iConfiguration: 0,
            bmAttributes: 0x80,
            MaxPower: 50,
            interface: std::ptr::null(),
            extra: ptr(&extras[0]),
            extra_length: extras[0].len() as c_int,
        },
        interface: libusb_interface {
            altsetting: std::ptr::null(),
            num_altsetting: 1,
        },
        altsetting: libusb_interface_descriptor {
            bLength: 9,
            bDescriptorType: 4,
            bInterfaceNumber: 0,
            bAlternateSetting: 0,
            bNumEndpoints: endpoints.len() as u8,
            bInterfaceClass: c.interface_class,
            bInterfaceSubClass: 0,
            bInterfaceProtocol: 0,
            iInterface: 0,
            endpoint: endpoints.as_ptr(),
            extra: ptr(&extras[1]),
            extra_length: extras[1].len() as c_int,
        },
        endpoints,
        extras,
    });
    // The inner pointers, now that the block has its final address (the
    // vectors' buffers never move).
    block.interface.altsetting = &raw const block.altsetting;
    block.config.interface = &raw const block.interface;
    block.config.wTotalLength =
        (9 + 9 + 7 * block.endpoints.len() + block.extras.iter().map(Vec::len).sum::<usize>())
            as u16;
    live::up(&live::CONFIGS);
    // SAFETY: checked non-null.
    unsafe { *config = Box::into_raw(block).cast() };
    wire::LIBUSB_SUCCESS
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn libusb_free_config_descriptor(config: *mut libusb_config_descriptor) {
    if !config.is_null() {
        // SAFETY: made by libusb_get_active_config_descriptor.
        drop(unsafe { Box::from_raw(config.cast::<ConfigBlock>()) });
        live::down(&live::CONFIGS);
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

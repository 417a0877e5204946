//! Enumeration: the boards listed in `DIR/devices`, their board processes
//! (started when not running), the `libusb_device`s that stand for them,
//! and the descriptors the host's USB stack would have cached for them.

use std::collections::HashMap;
use std::ffi::{CStr, c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::Context;
use super::live;
use super::types::*;
use crate::control::{ControlDir, Plugged};
use crate::descriptors;
use crate::seqpacket;
use crate::wire::{self, ToBoard, ToHost};

/// `libusb_device`: a plugged board, reference counted.
pub struct Device {
    refs: AtomicUsize,
    pub(super) dir: ControlDir,
    pub(super) board: Plugged,
    address: u8,
}

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

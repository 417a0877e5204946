//! A virtual Phidget Interface Kit 0/0/8 (1017) at the USB boundary.
//!
//! libphidget22 links `libusb-1.0.so.0` dynamically and talks to a 1017
//! through 32 `libusb_*` functions, nothing else. This crate builds a
//! `libusb-1.0.so.0` that implements those functions and presents virtual
//! 1017s to the unmodified vendor library, so that the relay-service's tests
//! run on the real library, its threads, polling and failsafe rules.
//!
//! - [`control`]: the control directory (`DELESTAGE_VIRTUAL_USB=DIR`), an
//!   exact interface that scripts outside the tests use: `DIR/devices` plugs
//!   boards, `DIR/SERIAL.json` shows them, `DIR/SERIAL.fault` breaks them.
//! - [`descriptors`]: what each model says about itself on USB (device,
//!   configuration, HID report and string descriptors).
//! - [`firmware`]: the board's documented behaviour as a pure state machine
//!   (relays, the 1017_2's failsafe timers, trips), with `now` passed in.
//! - [`board`]: the board process. One per plugged board, so the board keeps
//!   its relays when the program that drove it dies, and keeps time (trips
//!   its failsafe) while that program is frozen, as real hardware does.
//! - [`wire`]: the messages between the library side and a board process
//!   (the "USB cable": a Unix seqpacket socket).
//! - [`libusb`]: the exported libusb API, in the calling process.

// The exported functions mirror libusb's C API; their safety contract is
// libusb's own, and every pointer is checked before use.
#![allow(clippy::missing_safety_doc)]

pub mod board;
pub mod control;
pub mod descriptors;
pub mod firmware;
pub mod libusb;
pub mod seqpacket;
pub mod wire;

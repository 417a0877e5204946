//! The Linky meter's customer output, the TIC ("téléinformation client",
//! Enedis-NOI-CPT_54E), as bytes: no serial port, no clock, no I/O.
//!
//! - [`group`]: one information group (`LF label SEP [horodate SEP] data SEP
//!   checksum CR`), its checksum, in either mode.
//! - [`frame`]: cutting a byte stream into frames (`STX groups ETX`, EOT
//!   interrupting), and a frame into groups.
//! - [`reading`]: what a valid frame says: the house's apparent power, the
//!   subscribed power, the tariff period, the Tempo colours, the meter id.
//! - [`build`]: frames for a given meter state, as a meter sends them (the
//!   stand-in meter of the tests and the demo writes these).
//!
//! The rule the reader builds on: a frame with a single bad group (wrong
//! checksum, a byte outside the TIC's character set, a broken separator)
//! never becomes a reading; the next frame comes 1–2 s later.

pub mod build;
pub mod frame;
pub mod group;
pub mod reading;

pub use build::{MeterState, frame_for};
pub use frame::{Frame, FrameSplitter, Split, parse_frame};
pub use group::{Group, GroupError, Mode, checksum};
pub use reading::{Reading, ReadingError, TempoColor};

#[cfg(test)]
mod tests;

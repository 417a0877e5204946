//! The control directory: how tests and scripts plug, watch and break
//! virtual boards. Its shape is a contract (scripts outside the tests use
//! it):
//!
//! - `DIR/devices`: the plugged boards, one per line, `MODEL SERIAL
//!   [VERSION]` with MODEL `1017_1` or `1017_2`. Read again at every USB
//!   enumeration: adding a line plugs a board, removing it unplugs it. No
//!   file: nothing is plugged. Blank lines and `#` comments are ignored.
//! - `DIR/SERIAL.json`: the board as it is, rewritten atomically at every
//!   change (see [`crate::firmware::Firmware::to_json`]).
//! - `DIR/SERIAL.fault`: `stall` (the board stops answering while plugged)
//!   or `io-error` (every transfer fails). Removing it ends the fault.
//!
//! Also there, for diagnosis: `DIR/SERIAL.log` (what the board process
//! says), `DIR/SERIAL.failsafe-gaps` (see [`ControlDir::gaps_file`]).

use std::path::{Path, PathBuf};

/// The environment variable naming the control directory.
pub const ENV: &str = "DELESTAGE_VIRTUAL_USB";

/// The two hardware revisions of the 1017 that speak different protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// 1017_0 / 1017_1: USB HID, product 0x0081, no failsafe.
    Hid1017_1,
    /// 1017_2: Phidgets' vendor protocol, product 0x0087, failsafe.
    Vendor1017_2,
}

impl Model {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1017_1" => Some(Model::Hid1017_1),
            "1017_2" => Some(Model::Vendor1017_2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Model::Hid1017_1 => "1017_1",
            Model::Vendor1017_2 => "1017_2",
        }
    }

    /// The version a board of this model has when `devices` names none.
    pub fn default_version(self) -> u32 {
        match self {
            Model::Hid1017_1 => 100,
            Model::Vendor1017_2 => 200,
        }
    }
}

/// One line of `DIR/devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plugged {
    pub model: Model,
    pub serial: u32,
    pub version: u32,
}

/// Parses `DIR/devices`. A line that does not parse, or repeats a serial,
/// is skipped: a typo must not unplug the other boards. (It is read every
/// 250 ms by the library's enumeration, so it is not reported each time.)
pub fn parse_devices(text: &str) -> Vec<Plugged> {
    let mut boards: Vec<Plugged> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(board) = parse_line(line)
            && boards.iter().all(|b| b.serial != board.serial)
        {
            boards.push(board);
        }
    }
    boards
}

fn parse_line(line: &str) -> Option<Plugged> {
    let mut words = line.split_whitespace();
    let model = Model::parse(words.next()?)?;
    let serial: u32 = words
        .next()?
        .parse()
        .ok()
        .filter(|s| *s > 0 && *s <= i32::MAX as u32)?;
    let version = match words.next() {
        Some(v) => v.parse().ok().filter(|v| *v <= 9999)?,
        None => model.default_version(),
    };
    if words.next().is_some() {
        return None;
    }
    Some(Plugged {
        model,
        serial,
        version,
    })
}

/// The control directory and the paths in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlDir(PathBuf);

impl ControlDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    /// From `DELESTAGE_VIRTUAL_USB`; `None` when unset (nothing plugged).
    pub fn from_env() -> Option<Self> {
        std::env::var_os(ENV)
            .filter(|d| !d.is_empty())
            .map(Self::new)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The boards plugged in now.
    pub fn plugged(&self) -> Vec<Plugged> {
        match std::fs::read_to_string(self.0.join("devices")) {
            Ok(text) => parse_devices(&text),
            Err(_) => Vec::new(),
        }
    }

    pub fn state_file(&self, serial: u32) -> PathBuf {
        self.0.join(format!("{serial}.json"))
    }

    pub fn fault_file(&self, serial: u32) -> PathBuf {
        self.0.join(format!("{serial}.fault"))
    }

    /// A diagnostic: per channel, the longest time in ms between two
    /// commands to that channel while its failsafe was armed (Phidgets ask
    /// for at most a third of the failsafe time), space-separated.
    pub fn gaps_file(&self, serial: u32) -> PathBuf {
        self.0.join(format!("{serial}.failsafe-gaps"))
    }

    /// The board process's socket (the "USB cable").
    pub fn socket(&self, serial: u32) -> PathBuf {
        self.0.join(format!(".{serial}.sock"))
    }

    /// Held by the board process for its whole life: one process per board.
    pub fn lock_file(&self, serial: u32) -> PathBuf {
        self.0.join(format!(".{serial}.lock"))
    }

    /// What the board process says about requests it does not know.
    pub fn log_file(&self, serial: u32) -> PathBuf {
        self.0.join(format!("{serial}.log"))
    }

    /// The fault in force for `serial`, read now.
    pub fn fault(&self, serial: u32) -> Fault {
        match std::fs::read_to_string(self.fault_file(serial)) {
            Ok(text) => match text.trim() {
                "stall" => Fault::Stall,
                "io-error" => Fault::IoError,
                _ => Fault::None,
            },
            Err(_) => Fault::None,
        }
    }
}

/// A fault played by a plugged board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// No answer at all: transfers time out, no input reports.
    Stall,
    /// Every transfer fails.
    IoError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_lines_parse_with_an_optional_version() {
        let boards = parse_devices("1017_2 424242\n# a comment\n\n1017_1 300123 704\n");
        assert_eq!(
            boards,
            vec![
                Plugged {
                    model: Model::Vendor1017_2,
                    serial: 424242,
                    version: 200
                },
                Plugged {
                    model: Model::Hid1017_1,
                    serial: 300123,
                    version: 704
                },
            ]
        );
    }

    #[test]
    fn bad_lines_are_skipped_not_fatal() {
        let boards =
            parse_devices("1018 1\n1017_2\n1017_2 x\n1017_2 5 1 extra\n1017_1 7\n1017_2 7\n");
        assert_eq!(
            boards,
            vec![Plugged {
                model: Model::Hid1017_1,
                serial: 7,
                version: 100
            }]
        );
    }
}

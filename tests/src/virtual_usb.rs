//! The virtual Phidget 1017 (tests/virtual-1017) from a test's side: plug,
//! unplug, break and read boards through its control directory, the same
//! files a person or a script would use (`DIR/devices`, `DIR/SERIAL.json`,
//! `DIR/SERIAL.fault`). The process under test finds the directory in
//! `DELESTAGE_VIRTUAL_USB`, and the real libphidget22 on `LD_LIBRARY_PATH`
//! (`scripts/phidget-env`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::BOUND;

/// The environment variable that names the control directory.
pub const VIRTUAL_USB_ENV: &str = "DELESTAGE_VIRTUAL_USB";

/// A board as `DIR/SERIAL.json` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualBoard {
    pub model: String,
    pub serial: u32,
    pub version: u32,
    pub plugged: bool,
    /// The coils, channel 0 first.
    pub relays: Vec<bool>,
    /// Per channel: "off", "armed" or "tripped".
    pub failsafe: Vec<String>,
    pub commands: u64,
}

impl VirtualBoard {
    fn parse(text: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        Some(Self {
            model: v["model"].as_str()?.to_owned(),
            serial: u32::try_from(v["serial"].as_u64()?).ok()?,
            version: u32::try_from(v["version"].as_u64()?).ok()?,
            plugged: v["plugged"].as_bool()?,
            relays: v["relays"]
                .as_array()?
                .iter()
                .map(|r| r.as_bool().unwrap_or(false))
                .collect(),
            failsafe: v["failsafe"]
                .as_array()?
                .iter()
                .map(|f| f.as_str().unwrap_or("").to_owned())
                .collect(),
            commands: v["commands"].as_u64()?,
        })
    }

    /// The channels whose coil is energised.
    pub fn energized(&self) -> Vec<u32> {
        (0..self.relays.len() as u32)
            .filter(|&c| self.relays[c as usize])
            .collect()
    }
}

/// A control directory of virtual boards. Its own temporary directory
/// (removed, and so every board unplugged, when dropped), or a given one.
pub struct VirtualUsb {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Default for VirtualUsb {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualUsb {
    pub fn new() -> Self {
        let temp = tempfile::tempdir().expect("a temporary directory for the virtual USB");
        Self {
            dir: temp.path().to_owned(),
            _temp: Some(temp),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The variable to give a process that should see these boards.
    pub fn env(&self) -> (&'static str, String) {
        (VIRTUAL_USB_ENV, self.dir.display().to_string())
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("devices"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(&self, lines: &[String]) {
        // Atomic: the library's enumeration reads it every 250 ms.
        let tmp = self.dir.join(".devices.tmp");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&tmp, text).expect("write devices");
        std::fs::rename(&tmp, self.dir.join("devices")).expect("rename devices");
    }

    /// Plugs a board (`model` "1017_1" or "1017_2") with its default version.
    pub fn plug(&self, model: &str, serial: u32) {
        self.plug_line(format!("{model} {serial}"), serial);
    }

    pub fn plug_version(&self, model: &str, serial: u32, version: u32) {
        self.plug_line(format!("{model} {serial} {version}"), serial);
    }

    fn plug_line(&self, line: String, serial: u32) {
        let mut lines: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|l| l.split_whitespace().nth(1) != Some(&serial.to_string()))
            .collect();
        lines.push(line);
        self.write_lines(&lines);
    }

    /// Unplugs a board: its relays lose power.
    pub fn unplug(&self, serial: u32) {
        let lines: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|l| l.split_whitespace().nth(1) != Some(&serial.to_string()))
            .collect();
        self.write_lines(&lines);
    }

    /// The board as it is now, once its board process has started.
    pub fn board(&self, serial: u32) -> Option<VirtualBoard> {
        VirtualBoard::parse(&std::fs::read_to_string(self.dir.join(format!("{serial}.json"))).ok()?)
    }

    /// The energised coils of a board (none if it never showed up).
    pub fn energized(&self, serial: u32) -> Vec<u32> {
        self.board(serial)
            .map(|b| b.energized())
            .unwrap_or_default()
    }

    /// `Some("stall")`, `Some("io-error")`, or `None` to end the fault.
    pub fn set_fault(&self, serial: u32, fault: Option<&str>) {
        let path = self.dir.join(format!("{serial}.fault"));
        match fault {
            Some(f) => std::fs::write(path, f).expect("write the fault file"),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Per channel, the longest gap in ms between two commands while its
    /// failsafe was armed.
    pub fn failsafe_gaps(&self, serial: u32) -> Vec<u64> {
        std::fs::read_to_string(self.dir.join(format!("{serial}.failsafe-gaps")))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    /// Polls the board's file until `done` holds (bounded): boards change
    /// on their own (a failsafe trips), so there is no signal to await.
    pub async fn wait_board(
        &self,
        serial: u32,
        what: &str,
        done: impl Fn(&VirtualBoard) -> bool,
    ) -> VirtualBoard {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            if let Some(board) = self.board(serial)
                && done(&board)
            {
                return board;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for board {serial}: {what} (now {:?})",
                self.board(serial)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The board's log (what its process said).
    pub fn log(&self, serial: u32) -> String {
        std::fs::read_to_string(self.dir.join(format!("{serial}.log"))).unwrap_or_default()
    }
}

impl Drop for VirtualUsb {
    fn drop(&mut self) {
        // Unplugged now, whatever else happens to the directory.
        let _ = std::fs::write(self.dir.join("devices"), "");
    }
}

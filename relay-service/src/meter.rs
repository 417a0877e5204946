//! The Linky meter on the relay box: its TIC read from a serial port (a
//! "TIC USB" adapter), the latest valid reading kept for
//! `delestage.meter.v1.MeterService`.
//!
//! - [`reader`]: the blocking read loop on the serial port: opening it at
//!   the mode's speed, finding the mode (`auto`), reopening with back-off
//!   when the device goes, saying why once per kind of failure.
//! - [`service`]: the gRPC mapping (GetMeter, WatchMeter).
//!
//! Parsing is `delestage_tic`'s (pure). What is shared between the reader
//! and the API is one [`MeterView`] in a watch channel: the newest reading
//! wins, as WatchForecast does for slow watchers.

pub(crate) mod reader;
pub(crate) mod service;

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use delestage_tic::{Mode, Reading};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A meter silent (no valid frame) this long is not answered for: GetMeter
/// says UNAVAILABLE, and why.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// `--meter-mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterModeChoice {
    /// 1200 baud, 7E1: older meters, and Linky by default.
    Historic,
    /// 9600 baud, 7E1: Linky, when the supplier switched it.
    Standard,
    /// One speed, then the other, until a frame's checksums pass.
    #[default]
    Auto,
}

impl MeterModeChoice {
    /// The modes to try, in order.
    pub(crate) fn candidates(self) -> &'static [Mode] {
        match self {
            MeterModeChoice::Historic => &[Mode::Historic],
            MeterModeChoice::Standard => &[Mode::Standard],
            // Historic first: every Linky leaves the factory in it.
            MeterModeChoice::Auto => &[Mode::Historic, Mode::Standard],
        }
    }
}

/// `--meter` and `--meter-mode`.
#[derive(Debug, Clone)]
pub struct MeterSettings {
    pub path: PathBuf,
    pub mode: MeterModeChoice,
}

/// What the API knows of the meter now.
#[derive(Debug, Clone, Default)]
pub(crate) struct MeterView {
    /// The latest valid reading, and when it was read.
    pub latest: Option<(Timestamp, Reading)>,
    pub frames_ok: u64,
    pub frames_bad: u64,
    /// Why nothing valid comes, when the reader knows (unplugged, wrong
    /// speed, silence).
    pub problem: Option<String>,
    /// When the reader started: how long a meter that never answered has
    /// been silent.
    pub since: Option<Timestamp>,
}

impl MeterView {
    /// The latest reading if it is recent enough to act on; else why not.
    pub(crate) fn fresh(&self, now: Timestamp) -> Result<&(Timestamp, Reading), String> {
        let silent_since = match &self.latest {
            Some(latest @ (at, _)) => {
                if now.duration_since(*at).unsigned_abs() <= STALE_AFTER {
                    return Ok(latest);
                }
                *at
            }
            None => self.since.unwrap_or(now),
        };
        let secs = now.duration_since(silent_since).as_secs().max(0);
        let why = self
            .problem
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        Err(format!("no valid frame from the meter for {secs} s{why}"))
    }
}

//! relay-service's settings: flags, an optional TOML file, and defaults.
//!
//! [`Options`] declares every setting once: as a flag (with its default and
//! help) and as a key of the `--config` file; the flag wins (see
//! `delestage_runtime::options`). [`Settings::validate`] checks them and
//! turns them into the [`Settings`] the service runs with. Errors name the
//! flag, or the file and the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use delestage_runtime::options::{CommonOptions, Loaded, Origins, ServiceOptions};
use delestage_runtime::security::Security;
use delestage_runtime::telemetry::LogFormat;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::hold::HoldSettings;
use crate::meter::{MeterModeChoice, MeterSettings};
use crate::wear::MAX_SWITCHES_PER_MINUTE;

/// A sane upper bound for a simulated board.
pub const MAX_SIM_CHANNELS: u32 = 256;

/// Owns the relay board and serves delestage.relay.v1.RelayService over gRPC
/// (with grpc.health.v1 and server reflection).
///
/// Every option can also be set in the --config file, under the same name
/// with underscores, plus a `[labels]` table (channel number = "label") and
/// a `[safe_states]` table (channel number = "on" or "off"). Flags win over
/// the file.
#[derive(Debug, Parser, Serialize, Deserialize)]
#[command(name = "relay-service", version, about, long_about)]
pub struct Options {
    #[command(flatten)]
    #[serde(skip)]
    pub common: CommonOptions,

    /// The relay board.
    #[arg(long, value_enum, value_name = "KIND", default_value = "sim")]
    pub board: BoardChoice,

    /// Serial number of the Phidget 1017 to open [default: any].
    #[arg(long, value_name = "N")]
    pub serial: Option<i32>,

    /// Number of relays of the simulated board (the 1017 has 8).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub channels: u32,

    /// Relay states at start: restore the saved intended states, or all off.
    #[arg(long, value_enum, value_name = "WHAT", default_value = "restore")]
    pub on_start: OnStart,

    /// Wear guard: most switches of one relay in any rolling minute; 1..=20,
    /// the 1017's rating.
    #[arg(long, value_name = "N", default_value_t = MAX_SWITCHES_PER_MINUTE)]
    pub max_switches_per_minute: u32,

    /// The relay hold: when nobody (the controller) renews it for this long,
    /// every channel returns to its safe state ([safe_states] in the config
    /// file; default: all off) [default: off].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub hold_timeout: Option<Duration>,

    /// Arm the 1017_2's hardware failsafe with this time (500ms..30s): if
    /// the service stops feeding it (hung), the board turns every relay off
    /// by itself. Older boards say unsupported; the service runs without
    /// [default: off].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub hardware_failsafe: Option<Duration>,

    /// The Linky meter's TIC: the serial device of a "TIC USB" adapter
    /// (/dev/ttyUSB0, /dev/ttyACM0, or a udev name such as /dev/linky)
    /// [default: no meter].
    #[arg(long, value_name = "PATH")]
    pub meter: Option<PathBuf>,

    /// The meter's TIC mode: historic (1200 baud), standard (9600 baud), or
    /// auto (one, then the other, until a frame's checksums pass).
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub meter_mode: MeterModeChoice,

    /// For the load generator only: no wear guard. Refused with a real board.
    #[arg(long, hide = true)]
    pub benchmark_without_wear_guard: bool,

    /// Channel number (as a TOML key) -> label. File only.
    #[arg(skip)]
    #[serde(default)]
    pub labels: BTreeMap<String, String>,

    /// Channel number (as a TOML key) -> "on" or "off", for the relay hold.
    /// File only.
    #[arg(skip)]
    #[serde(default)]
    pub safe_states: BTreeMap<String, SafeState>,
}

impl ServiceOptions for Options {
    const NAME: &'static str = "relay-service";
    const DEFAULT_LISTEN: &'static str = "127.0.0.1:50051";
    const DEFAULT_MAX_STREAMS: &'static str = "1000";
    fn common(&self) -> &CommonOptions {
        &self.common
    }
    fn common_mut(&mut self) -> &mut CommonOptions {
        &mut self.common
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoardChoice {
    /// A simulated board, in memory.
    #[default]
    Sim,
    /// A Phidget Interface Kit 0/0/8 (1017) on USB (needs the `phidget` build feature).
    Phidget,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStart {
    /// Re-apply the intended states saved in the state dir.
    #[default]
    Restore,
    /// Start with every relay off.
    Off,
}

/// A channel's safe state, for the relay hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SafeState {
    On,
    Off,
}

/// The resolved settings the service runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub board: BoardChoice,
    pub state_dir: PathBuf,
    pub serial: Option<i32>,
    pub channels: u32,
    pub on_start: OnStart,
    pub max_switches_per_minute: u32,
    pub log_format: LogFormat,
    /// Where to serve Prometheus metrics; `None`: not at all.
    pub metrics: Option<String>,
    /// Most Watch* streams open at once (`max_streams`).
    pub max_streams: usize,
    /// Most connections the gRPC port holds (`max_connections`).
    pub max_connections: usize,
    /// TLS and tokens.
    pub security: Security,
    /// The relay hold, if configured.
    pub hold: Option<HoldSettings>,
    /// The 1017_2 hardware failsafe time, if configured.
    pub hardware_failsafe: Option<Duration>,
    /// Indexed by channel; empty for none.
    pub labels: Vec<String>,
    /// The Linky meter, if `--meter` names one.
    pub meter: Option<MeterSettings>,
    /// Settings that were accepted but ignored, for `main` to log once
    /// logging is set up.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Defaults, with the given state dir: what tests and embedders start from.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let mut loaded =
            Loaded::<Options>::from_args([Options::NAME]).expect("the declared defaults are valid");
        loaded.options.common.state_dir = Some(state_dir.into());
        Self::validate(loaded).expect("the declared defaults are valid")
    }

    /// From this process's flags and config file. `--help` and flag errors
    /// exit, as clap does.
    pub fn from_env() -> Result<Self, Error> {
        Self::validate(Loaded::from_env()?)
    }

    /// From these arguments (the first is the program name).
    pub fn from_args(args: &[&str]) -> Result<Self, Error> {
        Self::validate(Loaded::from_args(args)?)
    }

    /// Checks the merged options and turns them into settings. Pure: an
    /// error names the flag, or the file and key, of the bad value.
    pub fn validate(loaded: Loaded<Options>) -> Result<Self, Error> {
        let Loaded {
            options: o,
            origins,
        } = loaded;
        let bad = |key: &str, message: String| Error::Config(origins.error(key, message));
        if o.common.max_streams == 0 {
            return Err(bad("max_streams", "must be at least 1".to_owned()));
        }
        if o.common.max_connections == 0 {
            return Err(bad("max_connections", "must be at least 1".to_owned()));
        }
        let mut warnings = Vec::new();
        let channels = channel_count(&o, &origins)?;
        check_serial(&o, &origins, &mut warnings)?;
        let max_switches_per_minute = wear_limit(&o, &origins, &mut warnings)?;
        let labels = labels(&o.labels, channels, &origins)?;
        let security = Security::resolve(&o.common.security, &o.common.listen)?;
        check_hardware_failsafe(&o, &origins)?;
        let hold = hold(&o, channels, &origins, &mut warnings)?;
        let meter = meter(&o, &origins, &mut warnings)?;

        Ok(Self {
            state_dir: o.common.state_dir_or_default(Options::NAME),
            listen: o.common.listen,
            board: o.board,
            serial: o.serial,
            channels,
            on_start: o.on_start,
            max_switches_per_minute,
            log_format: o.common.log_format,
            metrics: o.common.metrics,
            max_streams: o.common.max_streams as usize,
            max_connections: o.common.max_connections as usize,
            security,
            hold,
            hardware_failsafe: o.hardware_failsafe,
            labels,
            meter,
            warnings,
        })
    }
}

/// `--meter` and `--meter-mode`.
fn meter(
    o: &Options,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<Option<MeterSettings>, Error> {
    let Some(path) = &o.meter else {
        if o.meter_mode != MeterModeChoice::Auto {
            warnings.push(origins.error(
                "meter_mode",
                "applies with --meter only; ignored".to_owned(),
            ));
        }
        return Ok(None);
    };
    if path.as_os_str().is_empty() {
        return Err(bad(
            origins,
            "meter",
            "empty: the serial device of the TIC adapter, e.g. /dev/ttyUSB0".to_owned(),
        ));
    }
    // A missing device is not an error: the adapter may be plugged in
    // later; the reader says so and waits for it.
    Ok(Some(MeterSettings {
        path: path.clone(),
        mode: o.meter_mode,
    }))
}

/// An error about `key`, naming where its value came from.
fn bad(origins: &Origins, key: &str, message: String) -> Error {
    Error::Config(origins.error(key, message))
}

/// The board's channel count: the simulated board's `channels`, or the
/// 1017's 8.
fn channel_count(o: &Options, origins: &Origins) -> Result<u32, Error> {
    match o.board {
        BoardChoice::Sim if o.channels == 0 || o.channels > MAX_SIM_CHANNELS => Err(bad(
            origins,
            "channels",
            format!(
                "{} channels: the simulated board has 1 to {MAX_SIM_CHANNELS}",
                o.channels
            ),
        )),
        BoardChoice::Sim => Ok(o.channels),
        BoardChoice::Phidget if o.channels != 8 => Err(bad(
            origins,
            "channels",
            format!(
                "{} channels: only the simulated board takes a channel count (the Phidget 1017 has 8)",
                o.channels
            ),
        )),
        BoardChoice::Phidget => Ok(8),
    }
}

fn check_serial(o: &Options, origins: &Origins, warnings: &mut Vec<String>) -> Result<(), Error> {
    let Some(n) = o.serial else { return Ok(()) };
    if n <= 0 {
        return Err(bad(
            origins,
            "serial",
            format!(
                "{n}: a Phidget serial number is a positive number (leave it out for any board)"
            ),
        ));
    }
    if o.board == BoardChoice::Sim {
        warnings.push(origins.error(
            "serial",
            format!("{n}: applies to the Phidget board only; ignored with the simulated board"),
        ));
    }
    Ok(())
}

/// The wear guard's limit (0: off, for benchmarks on the simulated board).
fn wear_limit(o: &Options, origins: &Origins, warnings: &mut Vec<String>) -> Result<u32, Error> {
    if !(1..=MAX_SWITCHES_PER_MINUTE).contains(&o.max_switches_per_minute) {
        return Err(bad(
            origins,
            "max_switches_per_minute",
            format!(
                "{}: must be 1 to {MAX_SWITCHES_PER_MINUTE} (the relays are rated for {MAX_SWITCHES_PER_MINUTE} switching cycles per minute)",
                o.max_switches_per_minute
            ),
        ));
    }
    if !o.benchmark_without_wear_guard {
        return Ok(o.max_switches_per_minute);
    }
    if o.board != BoardChoice::Sim {
        return Err(Error::Config(
            "--benchmark-without-wear-guard: only with the simulated board; real relays keep their wear guard"
                .to_owned(),
        ));
    }
    warnings.push(
        "--benchmark-without-wear-guard: the wear guard is OFF (simulated board, for benchmarks)"
            .to_owned(),
    );
    Ok(0)
}

/// `[labels]`: one per channel, empty when not given.
fn labels(
    given: &BTreeMap<String, String>,
    channels: u32,
    origins: &Origins,
) -> Result<Vec<String>, Error> {
    let mut labels = vec![String::new(); channels as usize];
    for (key, label) in given {
        let where_ = format!("labels.{key}");
        let channel: u32 = key.parse().map_err(|_| {
            bad(
                origins,
                &where_,
                format!("{key:?} is not a channel number (write `0 = \"water heater\"`)"),
            )
        })?;
        let slot = labels.get_mut(channel as usize).ok_or_else(|| {
            bad(
                origins,
                &where_,
                format!(
                    "channel {channel} does not exist: this board has channels 0..={}",
                    channels - 1
                ),
            )
        })?;
        slot.clone_from(label);
    }
    Ok(labels)
}

fn check_hardware_failsafe(o: &Options, origins: &Origins) -> Result<(), Error> {
    let Some(d) = o.hardware_failsafe else {
        return Ok(());
    };
    if o.board != BoardChoice::Phidget {
        return Err(bad(
            origins,
            "hardware_failsafe",
            "the hardware failsafe is the Phidget 1017_2's; use --board phidget".to_owned(),
        ));
    }
    // The range is the device's (read when the board opens); here only
    // what no board takes.
    if d.is_zero() {
        return Err(bad(
            origins,
            "hardware_failsafe",
            "must be more than zero (the 1017_2 takes 500ms to 30s)".to_owned(),
        ));
    }
    Ok(())
}

/// The relay hold (`hold_timeout`) with its `[safe_states]`.
fn hold(
    o: &Options,
    channels: u32,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<Option<HoldSettings>, Error> {
    let mut safe_energized = vec![false; channels as usize];
    for (key, state) in &o.safe_states {
        let slot = key
            .parse::<usize>()
            .ok()
            .and_then(|c| safe_energized.get_mut(c))
            .ok_or_else(|| {
                bad(
                    origins,
                    &format!("safe_states.{key}"),
                    format!("not a channel of this board (0..={})", channels - 1),
                )
            })?;
        *slot = *state == SafeState::On;
    }
    match o.hold_timeout {
        Some(timeout) if timeout < Duration::from_secs(1) => Err(bad(
            origins,
            "hold_timeout",
            format!(
                "{}: at least 1s (the controller renews about once a second; 30s is a good value)",
                humantime::format_duration(timeout)
            ),
        )),
        Some(timeout) => Ok(Some(HoldSettings {
            timeout,
            safe_energized,
        })),
        None => {
            if !o.safe_states.is_empty() {
                warnings.push(
                    "[safe_states] is ignored without hold_timeout (the relay hold is off)"
                        .to_owned(),
                );
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests;

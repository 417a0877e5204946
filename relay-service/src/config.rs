//! relay-service's settings: flags, an optional TOML file, and defaults.
//!
//! Every setting can be given as a flag or as a key of the `--config` file;
//! the flag wins. Errors name the flag, or the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use delestage_runtime::security::{Security, SecurityArgs, SecurityFile};
use delestage_runtime::telemetry::LogFormat;
use serde::Deserialize;

use crate::Error;
use crate::hold::HoldSettings;
use crate::wear::MAX_SWITCHES_PER_MINUTE;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub const DEFAULT_SIM_CHANNELS: u32 = 8;
/// A sane upper bound for a simulated board.
pub const MAX_SIM_CHANNELS: u32 = 256;

/// Owns the relay board and serves delestage.relay.v1.RelayService over gRPC
/// (with grpc.health.v1 and server reflection).
///
/// Every option can also be set in the --config file, under the same name
/// with underscores (listen, board, state_dir, serial, channels, on_start,
/// max_switches_per_minute, log_format, metrics) plus a `[labels]` table
/// (channel number = "label"). Flags win over the file.
#[derive(Debug, Default, Parser)]
#[command(name = "relay-service", version, about, long_about)]
pub struct Cli {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to serve gRPC on [default: 127.0.0.1:50051]. Use port 0 for
    /// any free port (the log says which).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// The relay board [default: sim].
    #[arg(long, value_enum, value_name = "KIND")]
    pub board: Option<BoardChoice>,

    /// Where the intended relay states are kept across restarts
    /// [default: $STATE_DIRECTORY, else $XDG_STATE_HOME/delestage/relay-service,
    /// else ~/.local/state/delestage/relay-service].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Serial number of the Phidget 1017 to open [default: any].
    #[arg(long, value_name = "N")]
    pub serial: Option<i32>,

    /// Number of relays of the simulated board [default: 8].
    #[arg(long, value_name = "N")]
    pub channels: Option<u32>,

    /// Relay states at start: restore the saved intended states, or all off
    /// [default: restore].
    #[arg(long, value_enum, value_name = "WHAT")]
    pub on_start: Option<OnStart>,

    /// Wear guard: most switches of one relay in any rolling minute; 1..=20,
    /// the 1017's rating [default: 20].
    #[arg(long, value_name = "N")]
    pub max_switches_per_minute: Option<u32>,

    /// Log format [default: text]. RUST_LOG filters (default: info).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Serve Prometheus metrics (GET /metrics) on this address [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    /// The relay hold: when nobody (the controller) renews it for this long,
    /// every channel returns to its safe state ([safe_states] in the config
    /// file; default: all off) [default: off].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub hold_timeout: Option<std::time::Duration>,

    /// Arm the 1017_2's hardware failsafe with this time (500ms..30s): if
    /// the service stops feeding it (hung), the board turns every relay off
    /// by itself. Older boards say unsupported; the service runs without
    /// [default: off].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub hardware_failsafe: Option<std::time::Duration>,

    #[command(flatten)]
    pub security: SecurityArgs,

    /// For the load generator only: no wear guard. Refused with a real board.
    #[arg(long, hide = true)]
    pub benchmark_without_wear_guard: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoardChoice {
    /// A simulated board, in memory.
    #[default]
    Sim,
    /// A Phidget Interface Kit 0/0/8 (1017) on USB (needs the `phidget` build feature).
    Phidget,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStart {
    /// Re-apply the intended states saved in the state dir.
    #[default]
    Restore,
    /// Start with every relay off.
    Off,
}

/// The `--config` file. Same names as the flags, with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub board: Option<BoardChoice>,
    pub state_dir: Option<PathBuf>,
    pub serial: Option<i32>,
    pub channels: Option<u32>,
    pub on_start: Option<OnStart>,
    pub max_switches_per_minute: Option<u32>,
    pub log_format: Option<LogFormat>,
    pub metrics: Option<String>,
    /// Channel number (as a TOML key) -> label.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// TLS, tokens, --insecure.
    #[serde(default)]
    pub security: SecurityFile,
    pub hold_timeout: Option<String>,
    pub hardware_failsafe: Option<String>,
    /// Channel number (as a TOML key) -> "on" or "off", for the relay hold.
    #[serde(default)]
    pub safe_states: BTreeMap<String, SafeState>,
}

/// A channel's safe state, for the relay hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
    /// TLS and tokens.
    pub security: Security,
    /// The relay hold, if configured.
    pub hold: Option<HoldSettings>,
    /// The 1017_2 hardware failsafe time, if configured.
    pub hardware_failsafe: Option<std::time::Duration>,
    /// Indexed by channel; empty for none.
    pub labels: Vec<String>,
    /// Settings that were accepted but ignored, for `main` to log once
    /// logging is set up.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Defaults, with the given state dir: what tests and embedders start from.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            board: BoardChoice::Sim,
            state_dir: state_dir.into(),
            serial: None,
            channels: DEFAULT_SIM_CHANNELS,
            on_start: OnStart::Restore,
            max_switches_per_minute: MAX_SWITCHES_PER_MINUTE,
            log_format: LogFormat::Text,
            metrics: None,
            security: Security::default(),
            hold: None,
            hardware_failsafe: None,
            labels: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Flags over file over defaults, then validated.
    pub fn resolve(cli: Cli) -> Result<Self, Error> {
        let path = cli.config.clone();
        let file = match &path {
            Some(path) => delestage_runtime::config::load_toml::<FileConfig>(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file, path.as_deref())
    }

    fn merge(cli: Cli, file: FileConfig, path: Option<&Path>) -> Result<Self, Error> {
        // Where a value came from, for error messages.
        let origin = |flag: &str, key: &str, from_flag: bool| -> String {
            match (from_flag, path) {
                (true, _) | (false, None) => format!("--{flag}"),
                (false, Some(p)) => format!("{}: {key}", p.display()),
            }
        };

        let board = cli.board.or(file.board).unwrap_or_default();

        let channels_from_flag = cli.channels.is_some();
        let channels_given = cli.channels.or(file.channels);
        let channels = match (board, channels_given) {
            (BoardChoice::Sim, Some(n)) if n == 0 || n > MAX_SIM_CHANNELS => {
                return Err(Error::Config(format!(
                    "{}: {n} channels: the simulated board has 1 to {MAX_SIM_CHANNELS}",
                    origin("channels", "channels", channels_from_flag)
                )));
            }
            (BoardChoice::Sim, n) => n.unwrap_or(DEFAULT_SIM_CHANNELS),
            (BoardChoice::Phidget, Some(n)) if n != 8 => {
                return Err(Error::Config(format!(
                    "{}: {n} channels: only the simulated board takes a channel count (the Phidget 1017 has 8)",
                    origin("channels", "channels", channels_from_flag)
                )));
            }
            (BoardChoice::Phidget, _) => 8,
        };

        let mut warnings = Vec::new();
        let serial_from_flag = cli.serial.is_some();
        let serial = cli.serial.or(file.serial);
        if let Some(n) = serial {
            if n <= 0 {
                return Err(Error::Config(format!(
                    "{}: {n}: a Phidget serial number is a positive number (leave it out for any board)",
                    origin("serial", "serial", serial_from_flag)
                )));
            }
            if board == BoardChoice::Sim {
                warnings.push(format!(
                    "{}: {n}: applies to the Phidget board only; ignored with the simulated board",
                    origin("serial", "serial", serial_from_flag)
                ));
            }
        }

        let max_from_flag = cli.max_switches_per_minute.is_some();
        let max_switches_per_minute = cli
            .max_switches_per_minute
            .or(file.max_switches_per_minute)
            .unwrap_or(MAX_SWITCHES_PER_MINUTE);
        if !(1..=MAX_SWITCHES_PER_MINUTE).contains(&max_switches_per_minute) {
            return Err(Error::Config(format!(
                "{}: {max_switches_per_minute}: must be 1 to {MAX_SWITCHES_PER_MINUTE} (the relays are rated for {MAX_SWITCHES_PER_MINUTE} switching cycles per minute)",
                origin(
                    "max-switches-per-minute",
                    "max_switches_per_minute",
                    max_from_flag
                )
            )));
        }

        let max_switches_per_minute = if cli.benchmark_without_wear_guard {
            if board != BoardChoice::Sim {
                return Err(Error::Config(
                    "--benchmark-without-wear-guard: only with the simulated board; real relays keep their wear guard"
                        .to_owned(),
                ));
            }
            warnings.push(
                "--benchmark-without-wear-guard: the wear guard is OFF (simulated board, for benchmarks)".to_owned(),
            );
            0
        } else {
            max_switches_per_minute
        };

        let mut labels = vec![String::new(); channels as usize];
        for (key, label) in file.labels {
            let where_ = origin("config", &format!("labels.{key}"), false);
            let channel: u32 = key.parse().map_err(|_| {
                Error::Config(format!(
                    "{where_}: {key:?} is not a channel number (write `0 = \"water heater\"`)"
                ))
            })?;
            let slot = labels.get_mut(channel as usize).ok_or_else(|| {
                Error::Config(format!(
                    "{where_}: channel {channel} does not exist: this board has channels 0..={}",
                    channels - 1
                ))
            })?;
            *slot = label;
        }

        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let security = Security::resolve(&cli.security, &file.security, &listen)?;

        let hold_from_flag = cli.hold_timeout.is_some();
        let hold_timeout = match (cli.hold_timeout, &file.hold_timeout) {
            (Some(d), _) => Some(d),
            (None, Some(text)) => Some(humantime::parse_duration(text).map_err(|e| {
                Error::Config(format!(
                    "{}: {text:?} is not a duration ({e}); write e.g. \"30s\"",
                    origin("hold-timeout", "hold_timeout", false)
                ))
            })?),
            (None, None) => None,
        };
        let mut safe_energized = vec![false; channels as usize];
        for (key, state) in &file.safe_states {
            let where_ = origin("config", &format!("safe_states.{key}"), false);
            let slot = key
                .parse::<usize>()
                .ok()
                .and_then(|c| safe_energized.get_mut(c))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{where_}: not a channel of this board (0..={})",
                        channels - 1
                    ))
                })?;
            *slot = *state == SafeState::On;
        }
        let failsafe_from_flag = cli.hardware_failsafe.is_some();
        let hardware_failsafe = match (cli.hardware_failsafe, &file.hardware_failsafe) {
            (Some(d), _) => Some(d),
            (None, Some(text)) => Some(humantime::parse_duration(text).map_err(|e| {
                Error::Config(format!(
                    "{}: {text:?} is not a duration ({e}); write e.g. \"2s\"",
                    origin("hardware-failsafe", "hardware_failsafe", false)
                ))
            })?),
            (None, None) => None,
        };
        if let Some(d) = hardware_failsafe {
            let where_ = origin("hardware-failsafe", "hardware_failsafe", failsafe_from_flag);
            if board != BoardChoice::Phidget {
                return Err(Error::Config(format!(
                    "{where_}: the hardware failsafe is the Phidget 1017_2's; use --board phidget"
                )));
            }
            if !(std::time::Duration::from_millis(500)..=std::time::Duration::from_secs(30))
                .contains(&d)
            {
                return Err(Error::Config(format!(
                    "{where_}: {}: the 1017_2 takes 500ms to 30s",
                    humantime::format_duration(d)
                )));
            }
        }
        let hold = match hold_timeout {
            Some(timeout) if timeout < std::time::Duration::from_secs(1) => {
                return Err(Error::Config(format!(
                    "{}: {}: at least 1s (the controller renews about once a second; 30s is a good value)",
                    origin("hold-timeout", "hold_timeout", hold_from_flag),
                    humantime::format_duration(timeout)
                )));
            }
            Some(timeout) => Some(HoldSettings {
                timeout,
                safe_energized,
            }),
            None => {
                if !file.safe_states.is_empty() {
                    warnings.push(
                        "[safe_states] is ignored without hold_timeout (the relay hold is off)"
                            .to_owned(),
                    );
                }
                None
            }
        };
        let state_dir = cli
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| delestage_runtime::config::default_state_dir("relay-service"));

        Ok(Self {
            listen,
            board,
            state_dir,
            serial,
            channels,
            on_start: cli.on_start.or(file.on_start).unwrap_or_default(),
            max_switches_per_minute,
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            metrics: cli.metrics.or(file.metrics),
            security,
            hold,
            hardware_failsafe,
            labels,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    fn cli_with(path: &Path) -> Cli {
        Cli {
            config: Some(path.to_owned()),
            ..Cli::default()
        }
    }

    #[test]
    fn defaults() {
        let s = Settings::merge(Cli::default(), FileConfig::default(), None).expect("ok");
        assert_eq!(s.listen, "127.0.0.1:50051");
        assert_eq!(s.board, BoardChoice::Sim);
        assert_eq!(s.channels, 8);
        assert_eq!(s.on_start, OnStart::Restore);
        assert_eq!(s.max_switches_per_minute, 20);
        assert_eq!(s.labels, vec![String::new(); 8]);
    }

    #[test]
    fn the_file_sets_everything_and_flags_win() {
        let (_d, path) = file(
            r#"
listen = "127.0.0.1:6000"
board = "sim"
state_dir = "/tmp/x"
channels = 4
on_start = "off"
max_switches_per_minute = 10
log_format = "json"

[labels]
0 = "water heater"
3 = "EV charger"
"#,
        );
        let mut cli = cli_with(&path);
        cli.listen = Some("127.0.0.1:7000".into());
        let s = Settings::resolve(cli).expect("ok");
        assert_eq!(s.listen, "127.0.0.1:7000");
        assert_eq!(s.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.channels, 4);
        assert_eq!(s.on_start, OnStart::Off);
        assert_eq!(s.max_switches_per_minute, 10);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.labels, vec!["water heater", "", "", "EV charger"]);
    }

    #[test]
    fn a_typo_names_the_file_and_the_key() {
        let (_d, path) = file("lisen = \"127.0.0.1:1\"\n");
        let msg = Settings::resolve(cli_with(&path))
            .expect_err("typo")
            .to_string();
        assert!(msg.contains("relay.toml") && msg.contains("lisen"), "{msg}");
    }

    #[test]
    fn a_label_for_a_missing_channel_names_the_key_and_the_range() {
        let (_d, path) = file("[labels]\n8 = \"nope\"\n");
        let msg = Settings::resolve(cli_with(&path))
            .expect_err("out of range")
            .to_string();
        assert!(msg.contains("labels.8"), "{msg}");
        assert!(msg.contains("0..=7"), "{msg}");
    }

    #[test]
    fn the_wear_limit_cannot_be_raised_above_the_rating() {
        let cli = Cli {
            max_switches_per_minute: Some(21),
            ..Cli::default()
        };
        let msg = Settings::resolve(cli).expect_err("21").to_string();
        assert!(msg.contains("--max-switches-per-minute"), "{msg}");
    }

    #[test]
    fn a_serial_with_the_simulated_board_is_a_warning() {
        let cli = Cli {
            serial: Some(1234),
            ..Cli::default()
        };
        let s = Settings::resolve(cli).expect("ok");
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("--serial"), "{:?}", s.warnings);
    }

    #[test]
    fn the_phidget_board_has_eight_channels() {
        let cli = Cli {
            board: Some(BoardChoice::Phidget),
            channels: Some(4),
            ..Cli::default()
        };
        assert!(Settings::resolve(cli).is_err());
        let cli = Cli {
            board: Some(BoardChoice::Phidget),
            ..Cli::default()
        };
        assert_eq!(Settings::resolve(cli).expect("ok").channels, 8);
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/relay-service.toml");
        let s = Settings::resolve(cli_with(&path)).expect("deploy/relay-service.toml is valid");
        assert_eq!(s.board, BoardChoice::Phidget);
    }

    #[test]
    fn the_hardware_failsafe_is_for_the_phidget_within_its_range() {
        let sim = Cli {
            hardware_failsafe: Some(std::time::Duration::from_secs(2)),
            ..Cli::default()
        };
        let msg = Settings::resolve(sim).expect_err("sim").to_string();
        assert!(
            msg.contains("--hardware-failsafe") && msg.contains("--board phidget"),
            "{msg}"
        );
        let too_short = Cli {
            board: Some(BoardChoice::Phidget),
            hardware_failsafe: Some(std::time::Duration::from_millis(100)),
            ..Cli::default()
        };
        let msg = Settings::resolve(too_short).expect_err("range").to_string();
        assert!(msg.contains("500ms to 30s"), "{msg}");
        let ok = Cli {
            board: Some(BoardChoice::Phidget),
            hardware_failsafe: Some(std::time::Duration::from_secs(2)),
            ..Cli::default()
        };
        assert!(
            Settings::resolve(ok)
                .expect("ok")
                .hardware_failsafe
                .is_some()
        );
    }

    #[test]
    fn the_hold_takes_safe_states_by_channel() {
        let (_d, path) = file("hold_timeout = \"30s\"\n[safe_states]\n2 = \"on\"\n");
        let s = Settings::resolve(cli_with(&path)).expect("ok");
        let hold = s.hold.expect("hold");
        assert_eq!(hold.timeout, std::time::Duration::from_secs(30));
        assert_eq!(
            hold.safe_energized,
            [false, false, true, false, false, false, false, false]
        );
        let (_d, path) = file("hold_timeout = \"30s\"\n[safe_states]\n9 = \"on\"\n");
        let msg = Settings::resolve(cli_with(&path))
            .expect_err("channel 9")
            .to_string();
        assert!(msg.contains("safe_states.9"), "{msg}");
    }
}

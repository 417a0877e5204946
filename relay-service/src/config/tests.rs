use std::path::Path;

use super::*;

fn file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, text).expect("write");
    let path = path.to_str().expect("utf-8").to_owned();
    (dir, path)
}

fn with(args: &[&str]) -> Result<Settings, Error> {
    let mut all = vec!["relay-service"];
    all.extend_from_slice(args);
    Settings::from_args(&all)
}

#[test]
fn defaults() {
    let s = with(&[]).expect("ok");
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
    let s = with(&["--config", &path, "--listen", "127.0.0.1:7000"]).expect("ok");
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
    let msg = with(&["--config", &path]).expect_err("typo").to_string();
    assert!(msg.contains("relay.toml") && msg.contains("lisen"), "{msg}");
}

#[test]
fn a_label_for_a_missing_channel_names_the_key_and_the_range() {
    let (_d, path) = file("[labels]\n8 = \"nope\"\n");
    let msg = with(&["--config", &path])
        .expect_err("out of range")
        .to_string();
    assert!(msg.contains("relay.toml: labels.8"), "{msg}");
    assert!(msg.contains("0..=7"), "{msg}");
}

#[test]
fn the_wear_limit_cannot_be_raised_above_the_rating() {
    let msg = with(&["--max-switches-per-minute", "21"])
        .expect_err("21")
        .to_string();
    assert!(msg.contains("--max-switches-per-minute"), "{msg}");
    let (_d, path) = file("max_switches_per_minute = 30\n");
    let msg = with(&["--config", &path]).expect_err("30").to_string();
    assert!(msg.contains("relay.toml: max_switches_per_minute"), "{msg}");
}

#[test]
fn the_benchmark_switch_is_a_flag_only() {
    let s = with(&["--benchmark-without-wear-guard"]).expect("ok");
    assert_eq!(s.max_switches_per_minute, 0);
    let (_d, path) = file("benchmark_without_wear_guard = true\n");
    let msg = with(&["--config", &path])
        .expect_err("not in the file")
        .to_string();
    assert!(msg.contains("unknown key"), "{msg}");
    assert!(!msg.contains("expected one of `benchmark"), "{msg}");
}

#[test]
fn a_serial_with_the_simulated_board_is_a_warning() {
    let s = with(&["--serial", "1234"]).expect("ok");
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0].contains("--serial"), "{:?}", s.warnings);
}

#[test]
fn the_phidget_board_has_eight_channels() {
    assert!(with(&["--board", "phidget", "--channels", "4"]).is_err());
    assert_eq!(with(&["--board", "phidget"]).expect("ok").channels, 8);
}

#[test]
fn the_example_config_in_deploy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/relay-service.toml");
    let s = with(&["--config", path.to_str().expect("utf-8")])
        .expect("deploy/relay-service.toml is valid");
    assert_eq!(s.board, BoardChoice::Phidget);
}

#[test]
fn the_hardware_failsafe_is_for_the_phidget_within_its_range() {
    let msg = with(&["--hardware-failsafe", "2s"])
        .expect_err("sim")
        .to_string();
    assert!(
        msg.contains("--hardware-failsafe") && msg.contains("--board phidget"),
        "{msg}"
    );
    let msg = with(&["--board", "phidget", "--hardware-failsafe", "0s"])
        .expect_err("zero")
        .to_string();
    assert!(msg.contains("--hardware-failsafe"), "{msg}");
    // The range itself is the device's, checked when the board opens.
    assert!(with(&["--board", "phidget", "--hardware-failsafe", "100ms"]).is_ok());
    let ok = with(&["--board", "phidget", "--hardware-failsafe", "2s"]).expect("ok");
    assert!(ok.hardware_failsafe.is_some());
}

#[test]
fn the_hold_takes_safe_states_by_channel() {
    let (_d, path) = file("hold_timeout = \"30s\"\n[safe_states]\n2 = \"on\"\n");
    let s = with(&["--config", &path]).expect("ok");
    let hold = s.hold.expect("hold");
    assert_eq!(hold.timeout, Duration::from_secs(30));
    assert_eq!(
        hold.safe_energized,
        [false, false, true, false, false, false, false, false]
    );
    let (_d, path) = file("hold_timeout = \"30s\"\n[safe_states]\n9 = \"on\"\n");
    let msg = with(&["--config", &path])
        .expect_err("channel 9")
        .to_string();
    assert!(msg.contains("safe_states.9"), "{msg}");
    let (_d, path) = file("hold_timeout = \"soon\"\n");
    let msg = with(&["--config", &path])
        .expect_err("duration")
        .to_string();
    assert!(msg.contains("relay.toml: hold_timeout"), "{msg}");
}

#[test]
fn the_meter_from_a_flag_or_the_file() {
    assert!(with(&[]).expect("ok").meter.is_none());
    let s = with(&["--meter", "/dev/ttyUSB0", "--meter-mode", "standard"]).expect("ok");
    let meter = s.meter.expect("a meter");
    assert_eq!(meter.path, Path::new("/dev/ttyUSB0"));
    assert_eq!(meter.mode, MeterModeChoice::Standard);
    let (_d, path) = file("meter = \"/dev/linky\"\n");
    let s = with(&["--config", &path]).expect("ok");
    let meter = s.meter.expect("a meter");
    assert_eq!(meter.path, Path::new("/dev/linky"));
    assert_eq!(meter.mode, MeterModeChoice::Auto);
}

#[test]
fn a_meter_mode_without_a_meter_is_a_warning_and_a_bad_mode_names_the_key() {
    let s = with(&["--meter-mode", "historic"]).expect("ok");
    assert!(
        s.warnings.iter().any(|w| w.contains("meter-mode")),
        "{:?}",
        s.warnings
    );
    let (_d, path) = file("meter = \"/dev/linky\"\nmeter_mode = \"fast\"\n");
    let err = with(&["--config", &path]).expect_err("refused").to_string();
    assert!(err.contains("meter_mode"), "{err}");
}

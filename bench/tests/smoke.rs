//! A small run of the load generator, so that it cannot rot: it must start
//! every service, measure every figure, and end with the line scripts read.
//! (Figures from a debug build mean nothing; only the shape is checked.)

use std::process::Command;

#[test]
fn a_smoke_run_prints_every_figure_and_the_ratio_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--smoke", "--requests", "300"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "GetRelays",
        "GetLevel",
        "SetRelay",
        "controller reaction",
        "forecast-service fleet",
        "relay-service",
        "forecast-service",
        "controller ",
    ] {
        assert!(stdout.contains(needle), "no {needle} in:\n{stdout}");
    }
    let last = stdout.lines().last().unwrap_or_default();
    let fields: Vec<&str> = last.split(' ').collect();
    assert_eq!(fields.len(), 3, "{last}");
    assert_eq!(fields[0], "ratio");
    for (field, name) in fields[1..].iter().zip(["GetRelays", "GetLevel"]) {
        let value = field
            .strip_prefix(&format!("{name}="))
            .unwrap_or_else(|| panic!("{last}"));
        let ratio: f64 = value.parse().unwrap_or_else(|_| panic!("{last}"));
        assert!(ratio > 0.0 && value.len() == 4, "{last}");
    }
    // Nothing failed along the way.
    assert!(!stdout.contains("first error"), "{stdout}");
}

/// Runs loadgen with `args`; its stdout, or a panic with both streams.
fn loadgen(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "loadgen {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `key=value` pairs of a figures line, checked for names and numbers.
fn figures<'a>(line: &'a str, head: &str, keys: &[&str]) -> Vec<(&'a str, f64)> {
    let mut fields = line.split(' ');
    assert_eq!(fields.next(), Some(head), "{line}");
    let pairs: Vec<(&str, f64)> = fields
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("{line}"));
            (k, v.parse().unwrap_or_else(|_| panic!("{line}")))
        })
        .collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    assert_eq!(names, keys, "{line}");
    pairs
}

#[test]
fn a_small_scale_run_prints_exactly_its_line() {
    let stdout = loadgen(&["--scale-boxes", "2"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line:\n{stdout}");
    let f = figures(
        lines[0],
        "scale",
        &[
            "boxes",
            "loads",
            "cut_p99_ms",
            "plan_ms",
            "status_p99_ms",
            "controller_rss_mib",
        ],
    );
    assert_eq!(f[0].1, 2.0);
    assert_eq!(f[1].1, 16.0, "8 loads per box");
    for (k, v) in &f[2..] {
        assert!(*v > 0.0, "{k} = {v}");
    }
}

#[test]
fn a_small_fanout_run_ends_with_its_line() {
    let stdout = loadgen(&["--watchers", "50", "--watcher-rounds", "2"]);
    assert!(
        stdout.contains("WatchRelays memory: relay-service"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fanout memory: forecast-service"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    let f = figures(
        last,
        "fanout",
        &["watchers", "deliver_p99_ms", "rss_per_watcher_kib"],
    );
    assert_eq!(f[0].1, 50.0);
    assert!(f[1].1 > 0.0, "{last}");
}

/// `loadgen --power`: the closed loop with the stand-in Linky, two cycles,
/// and its one line.
#[test]
fn a_smoke_power_run_prints_its_line() {
    let stdout = loadgen(&["--power", "--smoke"]);
    let line = stdout.trim();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert_eq!(fields[0], "power");
    for (field, name) in fields[1..].iter().zip([
        "cross_to_cut_p99_ms",
        "cross_to_under_p99_ms",
        "overshoot_frames_max",
    ]) {
        let value = field
            .strip_prefix(&format!("{name}="))
            .unwrap_or_else(|| panic!("{line}"));
        let n: u64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(n >= 1, "{line}");
    }
}

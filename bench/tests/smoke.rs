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

//! The command line itself: help, and usage errors, without any service.
//! (Also what makes `cargo test` build the `delestage` binary that the
//! end-to-end tests in `tests/` run.)

use std::process::Command;

fn delestage(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_delestage"))
        .args(args)
        .env_remove("DELESTAGE_CONTROLLER")
        .output()
        .expect("run delestage")
}

#[test]
fn help_lists_every_command() {
    let out = delestage(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "demo", "status", "plan", "forecast", "relays", "relay", "override", "history", "health",
    ] {
        assert!(help.contains(command), "--help lacks {command}:\n{help}");
    }
    assert!(
        help.contains("--json") && help.contains("DELESTAGE_CONTROLLER"),
        "{help}"
    );
}

#[test]
fn usage_errors_say_what_is_missing() {
    let out = delestage(&["override", "heater", "on"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--for"), "{err}");

    let out = delestage(&["relay", "set", "3", "maybe"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("on") && err.contains("off"), "{err}");
}

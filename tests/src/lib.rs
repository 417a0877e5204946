//! The test harness shared by the service tests and the end-to-end tests
//! (all of them in this crate's `tests/`): serve a service in-process
//! ([`in_process`]: its library's `serve` on a listener, on the simulated
//! board or the real libphidget22 on a virtual 1017), or start a service
//! binary as a process on `127.0.0.1:0` and wait for its health check, write a forecast and serve it, start a controller on a
//! config, wait for a relay, a status or a history record (in-process
//! servers too: the waits take a channel or a client); and certificates and
//! tokens for the security tests; a headless browser for the dashboard; an
//! MQTT broker (mosquitto) and a client for the Home Assistant tests.
//!
//! Nothing here sleeps to wait for readiness: the address comes from the
//! service's own "listening" log line, readiness from its health check.
//! Every wait has an upper bound so a bug fails a test instead of hanging CI.

use std::time::Duration;

mod browser;
mod disk;
mod forecast;
mod home_assistant;
pub mod in_process;
mod meter;
mod mqtt;
mod pki;
mod process;
mod virtual_usb;
mod wait;

pub use browser::{BROWSER_TZ, Browser};
pub use disk::{SmallDisk, set_mode};
pub use forecast::{start_forecast_at, start_forecast_on_file, write_forecast};
pub use home_assistant::{HA_STATE_PREFIX, HOME_ASSISTANT_VERSIONS, HomeAssistant};
pub use meter::TicStandinProcess;
pub use mqtt::{Mosquitto, MqttWatcher, Received, free_port, mosquitto_passwords};
pub use pki::{TestPki, token_hash};
pub use process::{
    ServiceProcess, binary, cli_json, grpcurl, run_to_exit, run_to_exit_env, scrape_metrics,
    start_controller, start_controller_on, start_demo, start_relay, start_relay_env, wait_serving,
    write_heater_config,
};
pub use virtual_usb::{VIRTUAL_USB_ENV, VirtualBoard, VirtualUsb};
pub use wait::{
    energized, history, load_status, poll, status, wait_energized, wait_history, wait_status,
};

/// Upper bound for any single wait in a test.
pub const BOUND: Duration = Duration::from_secs(20);

/// An HTTP client for the dashboard's tests (reqwest with rustls on ring,
/// the provider the whole workspace uses), every request bounded.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(BOUND)
        .build()
        .expect("an HTTP client")
}

/// Taken in turn by the tests that load the whole machine (the connection
/// floods) and by the tests whose timing such a load would upset (a relay
/// box frozen for a moment): they never run at the same time.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

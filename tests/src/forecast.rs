//! Forecasts for tests: an Ecowatt file that says "the grid is at this
//! level now", and forecast-service serving it.

use std::path::Path;

use crate::process::{ServiceProcess, binary};

/// Writes an Ecowatt file covering yesterday, today and tomorrow at
/// `hvalue` (0 carbon-free .. 3 red), atomically, as a careful writer
/// would: a service watching it never reads half.
pub fn write_forecast(path: &Path, hvalue: u8) {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        delestage_ecowatt_standin::uniform_body_around_now(hvalue),
    )
    .expect("write the forecast");
    std::fs::rename(&tmp, path).expect("rename the forecast");
}

/// Starts forecast-service on the Ecowatt file `file` (state in
/// `state_dir`, created if needed) with `extra` flags, and waits until it
/// is SERVING.
pub async fn start_forecast_on_file(
    file: &Path,
    state_dir: &Path,
    extra: &[&str],
) -> ServiceProcess {
    std::fs::create_dir_all(state_dir).expect("create the state dir");
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state_dir.to_str().expect("utf-8 path"),
        "--file",
        file.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let svc = ServiceProcess::start(&binary("forecast-service"), &args, &[]).await;
    svc.wait_serving("delestage.forecast.v1.ForecastService")
        .await;
    svc
}

/// Writes `dir/forecast.json` at `hvalue` and serves it (state in
/// `dir/forecast`).
pub async fn start_forecast_at(dir: &Path, hvalue: u8) -> ServiceProcess {
    let file = dir.join("forecast.json");
    write_forecast(&file, hvalue);
    start_forecast_on_file(&file, &dir.join("forecast"), &[]).await
}

//! The services under test, as the processes users run: where their
//! binaries are, how long they take to start serving, how much memory they
//! hold.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use delestage_tests::ServiceProcess;
use nix::sys::signal::Signal;

/// The directory holding the workspace's binaries: the load generator's own
/// (they are built together, `scripts/bench` builds them all).
pub(crate) fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no directory for {}", exe.display()))?
        .to_owned();
    // A test executable lives in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

pub(crate) fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build the services first (scripts/bench does: cargo build --release --workspace --bins)",
        path.display()
    );
    Ok(path)
}

/// Starts `binary` and waits until `service` is SERVING; returns the
/// process and the time from spawn to SERVING.
pub(crate) async fn start(
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    service: &str,
) -> (ServiceProcess, Duration) {
    let t = Instant::now();
    let process = ServiceProcess::start(binary, args, env).await;
    process.wait_serving(service).await;
    (process, t.elapsed())
}

/// The gRPC service a workspace binary serves, for its health check.
fn service_of(binary: &str) -> &'static str {
    match binary {
        "relay-service" => "delestage.relay.v1.RelayService",
        "forecast-service" => "delestage.forecast.v1.ForecastService",
        "controller" => "delestage.controller.v1.ControllerService",
        _ => "",
    }
}

/// [`start`] for one of the workspace's services, by binary name.
pub(crate) async fn start_service(
    bin_dir: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(ServiceProcess, Duration)> {
    Ok(start(&binary(bin_dir, name)?, args, env, service_of(name)).await)
}

/// forecast-service on the Ecowatt stand-in at `standin_url` (its test
/// credentials), refreshing every `refresh` with no call margin, state in
/// `state`; `extra` flags after those.
pub(crate) async fn start_forecast_on_standin(
    bin_dir: &Path,
    state: &str,
    standin_url: &str,
    refresh: &str,
    extra: &[&str],
) -> anyhow::Result<ServiceProcess> {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state,
        "--ecowatt-url",
        standin_url,
        "--refresh-interval",
        refresh,
        "--call-margin",
        "0s",
    ];
    args.extend_from_slice(extra);
    let (forecast, _) = start_service(
        bin_dir,
        "forecast-service",
        &args,
        &[
            ("ECOWATT_CLIENT_ID", "test-client-id"),
            ("ECOWATT_CLIENT_SECRET", "test-client-secret"),
        ],
    )
    .await?;
    Ok(forecast)
}

/// `dir/name`, created, as a string for a `--state-dir` flag.
/// relay-service on a simulated board with its state in `dir/relay`, and
/// the wear guard lifted: a benchmark switches relays far more often than
/// the 1017's rating allows.
pub(crate) async fn start_relay_without_wear_guard(
    bin_dir: &Path,
    dir: &Path,
) -> anyhow::Result<ServiceProcess> {
    let state = subdir(dir, "relay")?;
    let (relay, _) = start_service(
        bin_dir,
        "relay-service",
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            &state,
            "--benchmark-without-wear-guard",
        ],
        &[],
    )
    .await?;
    Ok(relay)
}

/// The controller on `config` (TOML, written to `dir/controller.toml`),
/// state in `dir/controller`; with the time from spawn to SERVING.
pub(crate) async fn start_controller(
    bin_dir: &Path,
    dir: &Path,
    config: &str,
) -> anyhow::Result<(ServiceProcess, Duration)> {
    let path = dir.join("controller.toml");
    std::fs::write(&path, config)?;
    let state = subdir(dir, "controller")?;
    start_service(
        bin_dir,
        "controller",
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            &path.to_string_lossy(),
            "--state-dir",
            &state,
        ],
        &[],
    )
    .await
}

pub(crate) fn subdir(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::create_dir_all(&path)?;
    Ok(path.to_string_lossy().into_owned())
}

/// Resident memory now and at its peak, in KiB, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

pub(crate) fn memory(process: &ServiceProcess) -> Memory {
    let Some(pid) = process.pid() else {
        return Memory::default();
    };
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Memory::default();
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
    }
}

pub(crate) async fn stop(process: ServiceProcess) {
    let _ = process.stop_with(Signal::SIGTERM).await;
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

//! The soak: the three services together, many clients for a while, every
//! RPC kind at once (the controller reconciling all along); zero errors
//! expected, and memory that stays flat. Prints the RSS of each service
//! every few seconds.

use std::path::Path;
use std::time::{Duration, Instant};

use delestage_proto::controller::v1 as cpb;
use delestage_proto::forecast::v1 as fpb;
use delestage_proto::relay::v1 as rpb;
use tonic::transport::Channel;

use crate::load::{self, LoadSpec};
use crate::procs;

pub(crate) async fn run(bin_dir: &Path, clients: usize, duration: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = |name: &str| procs::subdir(dir.path(), name);
    let payload = format!(
        "{}/../forecast-service/payloads/signals-sandbox-v5.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let relay = procs::start_relay_without_wear_guard(bin_dir, dir.path()).await?;
    let forecast_state = state("forecast")?;
    let (forecast, _) = procs::start_service(
        bin_dir,
        "forecast-service",
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            &forecast_state,
            "--file",
            &payload,
            "--rebase-to-today",
        ],
        &[],
    )
    .await?;
    let example = std::fs::read_to_string(format!(
        "{}/../deploy/controller.toml",
        env!("CARGO_MANIFEST_DIR")
    ))?;
    let config = example
        .replace("http://127.0.0.1:50051", &format!("http://{}", relay.addr))
        .replace(
            "http://127.0.0.1:50052",
            &format!("http://{}", forecast.addr),
        );
    let (controller, _) = procs::start_controller(bin_dir, dir.path(), &config).await?;

    let channels = [
        relay.channel().await,
        forecast.channel().await,
        controller.channel().await,
    ];
    println!(
        "soak: {clients} clients for {}, every RPC kind, against the three services",
        humantime::format_duration(duration)
    );
    println!(
        "{:>6}  {:>14} {:>16} {:>12}",
        "t", "relay-service", "forecast-service", "controller"
    );
    let sample = |t: Duration| {
        println!(
            "{:>5.0}s  {:>14} {:>16} {:>12}",
            t.as_secs_f64(),
            procs::mib(procs::memory(&relay).rss_kib),
            procs::mib(procs::memory(&forecast).rss_kib),
            procs::mib(procs::memory(&controller).rss_kib),
        );
    };
    let started = Instant::now();
    sample(Duration::ZERO);
    let load = tokio::spawn(load::run(
        LoadSpec {
            concurrency: clients,
            requests: u64::MAX,
            max_time: duration,
        },
        move |task, n| one_call(channels.clone(), task, n),
    ));
    let step = (duration / 6).max(Duration::from_secs(1));
    while !load.is_finished() {
        tokio::time::sleep(
            step.min(duration.saturating_sub(started.elapsed()) + Duration::from_millis(50)),
        )
        .await;
        sample(started.elapsed());
    }
    let result = load.await?;
    println!(
        "soak: {} requests, {:.0} req/s, {} errors, p99 {:.1} ms",
        result.completed,
        result.rps(),
        result.errors,
        result.quantile_us(0.99) as f64 / 1000.0
    );
    if let Some(e) = &result.first_error {
        println!("  first error: {e}");
    }
    procs::stop(controller).await;
    procs::stop(forecast).await;
    procs::stop(relay).await;
    anyhow::ensure!(
        result.errors == 0,
        "{} errors during the soak",
        result.errors
    );
    Ok(())
}

/// One call of the soak's mix: task `task % 6` picks the RPC (relay-service
/// reads and switches, forecast-service reads, controller reads).
async fn one_call(channels: [Channel; 3], task: usize, n: u64) -> Result<(), String> {
    let result = match task % 6 {
        0 => rpb::relay_service_client::RelayServiceClient::new(channels[0].clone())
            .get_relays(rpb::GetRelaysRequest {})
            .await
            .map(drop),
        // Channels 4..7: no load of the controller's there.
        1 => rpb::relay_service_client::RelayServiceClient::new(channels[0].clone())
            .set_relay(rpb::SetRelayRequest {
                channel: 4 + (task as u32 / 6) % 4,
                energized: n.is_multiple_of(2),
            })
            .await
            .map(drop),
        2 => fpb::forecast_service_client::ForecastServiceClient::new(channels[1].clone())
            .get_level(fpb::GetLevelRequest { at: None })
            .await
            .map(drop),
        3 => fpb::forecast_service_client::ForecastServiceClient::new(channels[1].clone())
            .get_forecast(fpb::GetForecastRequest {})
            .await
            .map(drop),
        4 => cpb::controller_service_client::ControllerServiceClient::new(channels[2].clone())
            .get_status(cpb::GetStatusRequest {})
            .await
            .map(drop),
        _ => cpb::controller_service_client::ControllerServiceClient::new(channels[2].clone())
            .get_plan(cpb::GetPlanRequest { load: None })
            .await
            .map(drop),
    };
    result.map_err(|s| s.to_string())
}

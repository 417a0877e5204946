//! Controller scale (`loadgen --scale-boxes N`): N relay-services (simulated
//! boards, wear guard lifted), one forecast-service on the Ecowatt
//! stand-in, and one controller driving 8 loads per box (restore stagger
//! off). The forecast turns red, cutting every load, then green again.
//!
//! - `cut_p99_ms`: from the red forecast's `fetched_at` (stamped by the
//!   forecast-service) to each relay's WatchRelays event time (stamped by
//!   its relay-service when it switched): the whole chain, one sample per
//!   load.
//! - `plan_ms`: one policy computation over the whole horizon, as the
//!   controller times it (`controller_plan_seconds`), the largest of a few
//!   passes.
//! - `status_p99_ms`: GetStatus with 16 concurrent callers.
//! - `controller_rss_mib`: the controller's resident memory at the end.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin, uniform_body_around_now};
use delestage_proto::controller::v1 as cpb;
use delestage_proto::forecast::v1 as fpb;
use delestage_proto::relay::v1 as rpb;
use delestage_tests::ServiceProcess;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::load::{self, LoadSpec};
use crate::procs;
use crate::reaction::{pb_time, wait_forecast};

/// Loads per relay box: the Phidget 1017's eight relays.
const LOADS_PER_BOX: usize = 8;
const GREEN: u8 = 1;
const RED: u8 = 3;
/// Upper bound on each wait.
const BOUND: Duration = Duration::from_secs(60);

pub(crate) struct Scale {
    pub boxes: usize,
    pub loads: usize,
    pub cut_p99_ms: f64,
    pub plan_ms: f64,
    pub status_p99_ms: f64,
    pub controller_rss_mib: f64,
}

/// One relay switching, as its relay-service reported it.
struct Switched {
    relay_service: usize,
    channel: u32,
    energized: bool,
    at: SystemTime,
}

pub(crate) async fn measure(bin_dir: &Path, boxes: usize) -> anyhow::Result<Scale> {
    anyhow::ensure!(boxes > 0, "--scale-boxes needs at least one box");
    let dir = tempfile::tempdir()?;
    let standin =
        EcowattStandin::start(StandinConfig::unlimited(), uniform_body_around_now(GREEN)).await;
    let forecast_state = procs::subdir(dir.path(), "forecast")?;
    let forecast = procs::start_forecast_on_standin(
        bin_dir,
        &forecast_state,
        &standin.base_url(),
        "250ms",
        &[],
    )
    .await?;

    let relays = start_relays(bin_dir, dir.path(), boxes).await?;
    let controller = start_controller(bin_dir, dir.path(), &forecast, &relays).await?;
    let metrics = controller.metrics_addr().await;

    // Every relay's changes, with the relay-service's own time.
    let (mut switched, watchers) = watch_switches(&relays).await?;
    let mut forecasts =
        fpb::forecast_service_client::ForecastServiceClient::new(forecast.channel().await)
            .watch_forecast(fpb::WatchForecastRequest {})
            .await?
            .into_inner();

    let loads = boxes * LOADS_PER_BOX;
    eprintln!("scale: waiting for {loads} loads to be powered (green)");
    let mut state: HashMap<(usize, u32), (bool, SystemTime)> = HashMap::new();
    wait_all(&mut switched, &mut state, loads, true).await?;

    eprintln!("scale: red; every load is cut");
    standin.set_signals(uniform_body_around_now(RED));
    let fetched_at = wait_forecast(&mut forecasts, fpb::SignalLevel::Red).await?;
    wait_all(&mut switched, &mut state, loads, false).await?;
    let mut cut = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for (_, at) in state.values() {
        cut.record(
            at.duration_since(fetched_at)
                .unwrap_or_default()
                .as_micros()
                .max(1) as u64,
        )?;
    }

    let plan_ms = plan_seconds(&metrics).await * 1000.0;

    eprintln!("scale: GetStatus under 16 concurrent callers");
    let status_channel = controller.channel().await;
    let status = load::run(
        LoadSpec {
            concurrency: 16,
            requests: 2000,
            max_time: Duration::from_secs(30),
        },
        move |_task, _n| {
            let mut client = cpb::controller_service_client::ControllerServiceClient::new(
                status_channel.clone(),
            );
            async move {
                client
                    .get_status(cpb::GetStatusRequest {})
                    .await
                    .map(drop)
                    .map_err(|s| s.to_string())
            }
        },
    )
    .await;
    anyhow::ensure!(
        status.errors == 0,
        "GetStatus failed: {:?}",
        status.first_error
    );

    eprintln!("scale: green; every load is restored");
    standin.set_signals(uniform_body_around_now(GREEN));
    wait_forecast(&mut forecasts, fpb::SignalLevel::Green).await?;
    wait_all(&mut switched, &mut state, loads, true).await?;
    let controller_rss_mib = procs::memory(&controller).rss_kib as f64 / 1024.0;

    for watcher in watchers {
        watcher.abort();
    }
    procs::stop(controller).await;
    for relay in relays {
        procs::stop(relay).await;
    }
    procs::stop(forecast).await;
    Ok(Scale {
        boxes,
        loads,
        cut_p99_ms: cut.value_at_quantile(0.99) as f64 / 1000.0,
        plan_ms,
        status_p99_ms: status.quantile_us(0.99) as f64 / 1000.0,
        controller_rss_mib,
    })
}

/// `boxes` relay-services (simulated boards, no wear guard), twenty
/// started at a time: starting a process is mostly waiting.
async fn start_relays(
    bin_dir: &Path,
    dir: &Path,
    boxes: usize,
) -> anyhow::Result<Vec<ServiceProcess>> {
    eprintln!("scale: starting {boxes} relay-services");
    let mut relays = Vec::with_capacity(boxes);
    for first in (0..boxes).step_by(20) {
        let starting: Vec<_> = (first..boxes.min(first + 20))
            .map(|i| {
                let (bin, box_dir) = (bin_dir.to_owned(), dir.join(format!("box{i}")));
                tokio::spawn(
                    async move { procs::start_relay_without_wear_guard(&bin, &box_dir).await },
                )
            })
            .collect();
        for relay in starting {
            relays.push(relay.await??);
        }
    }

    Ok(relays)
}

/// The controller on every box, with metrics (for the plan's time).
async fn start_controller(
    bin_dir: &Path,
    dir: &Path,
    forecast: &ServiceProcess,
    relays: &[ServiceProcess],
) -> anyhow::Result<ServiceProcess> {
    let config = controller_config(forecast, relays);
    let config_path = dir.join("controller.toml");
    std::fs::write(&config_path, config)?;
    let controller_state = procs::subdir(dir, "controller")?;
    let max_streams = (relays.len() + 64).to_string();
    let (controller, _) = procs::start_service(
        bin_dir,
        "controller",
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config_path.to_string_lossy(),
            "--state-dir",
            &controller_state,
            "--metrics",
            "127.0.0.1:0",
            "--max-streams",
            &max_streams,
        ],
        &[],
    )
    .await?;
    Ok(controller)
}

/// Every relay's changes, as each relay-service reports them (its own
/// time), on one channel; and the tasks that forward them.
async fn watch_switches(
    relays: &[ServiceProcess],
) -> anyhow::Result<(
    mpsc::UnboundedReceiver<Switched>,
    Vec<tokio::task::JoinHandle<()>>,
)> {
    let (tx, switched) = mpsc::unbounded_channel();
    let mut watchers = Vec::new();
    for (i, relay) in relays.iter().enumerate() {
        let mut stream = rpb::relay_service_client::RelayServiceClient::new(relay.channel().await)
            .watch_relays(rpb::WatchRelaysRequest {})
            .await?
            .into_inner();
        let tx = tx.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                let at = event.at.as_ref().map_or_else(SystemTime::now, pb_time);
                let changed: Vec<(u32, bool)> = match event.event {
                    Some(rpb::relay_event::Event::RelayChanged(r)) => {
                        vec![(r.channel, r.energized)]
                    }
                    Some(rpb::relay_event::Event::Snapshot(s)) => {
                        s.relays.iter().map(|r| (r.channel, r.energized)).collect()
                    }
                    _ => Vec::new(),
                };
                for (channel, energized) in changed {
                    let _ = tx.send(Switched {
                        relay_service: i,
                        channel,
                        energized,
                        at,
                    });
                }
            }
        }));
    }
    Ok((switched, watchers))
}

/// `[relays.boxK]` per relay-service and 8 loads on each, shed at orange.
fn controller_config(forecast: &ServiceProcess, relays: &[ServiceProcess]) -> String {
    let mut config = format!(
        "forecast = \"http://{}\"\n\n[policy]\nrestore_stagger = \"0s\"\n",
        forecast.addr
    );
    for (i, relay) in relays.iter().enumerate() {
        config.push_str(&format!(
            "\n[relays.box{i}]\nendpoint = \"http://{}\"\n",
            relay.addr
        ));
    }
    for i in 0..relays.len() {
        for channel in 0..LOADS_PER_BOX {
            config.push_str(&format!(
                "\n[[load]]\nname = \"box{i}-load{channel}\"\nrelay = \"box{i}:{channel}\"\nwiring = \"normally-open\"\nshed_at = \"orange\"\n"
            ));
        }
    }
    config
}

/// Reads relay changes until every one of the `loads` relays is
/// `energized`; `state` keeps each relay's latest state and time.
async fn wait_all(
    switched: &mut mpsc::UnboundedReceiver<Switched>,
    state: &mut HashMap<(usize, u32), (bool, SystemTime)>,
    loads: usize,
    energized: bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + BOUND;
    while state.len() < loads || state.values().any(|(e, _)| *e != energized) {
        let s = tokio::time::timeout_at(deadline, switched.recv())
            .await
            .map_err(|_| {
                let done = state.values().filter(|(e, _)| *e == energized).count();
                anyhow::anyhow!(
                    "{done} of {loads} relays {} within {BOUND:?}",
                    if energized { "energised" } else { "released" }
                )
            })?
            .ok_or_else(|| anyhow::anyhow!("every WatchRelays stream ended"))?;
        if (s.channel as usize) < LOADS_PER_BOX {
            let entry = state
                .entry((s.relay_service, s.channel))
                .or_insert((!s.energized, s.at));
            if entry.0 != s.energized {
                *entry = (s.energized, s.at);
            }
        }
    }
    Ok(())
}

/// The controller's `controller_plan_seconds`, the largest of five reads
/// 200 ms apart (each pass sets it; the forecast refreshes every 250 ms).
async fn plan_seconds(metrics: &str) -> f64 {
    let mut largest: f64 = 0.0;
    for _ in 0..5 {
        let text = delestage_tests::scrape_metrics(metrics).await;
        if let Some(v) = text
            .lines()
            .find(|l| l.starts_with("controller_plan_seconds "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
        {
            largest = largest.max(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    largest
}

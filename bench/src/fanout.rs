//! Forecast fan-out (`loadgen --watchers N`): N WatchForecast streams on one
//! forecast-service, over a few connections. One new forecast is pushed (the
//! Ecowatt stand-in changes its answer; the service fetches it on its next
//! refresh) and each watcher's delay is timed from the forecast's
//! `fetched_at` to its arrival. Memory is read with the watchers open, and
//! again after they leave, over several rounds: memory that only grows from
//! round to round is a leak; memory that comes back is not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin, uniform_body_around_now};
use delestage_proto::forecast::v1 as fpb;
use delestage_tests::ServiceProcess;
use fpb::forecast_service_client::ForecastServiceClient;
use hdrhistogram::Histogram;
use tokio::sync::{Barrier, mpsc};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::procs;

/// Streams per HTTP/2 connection: "a few connections" for N watchers.
const STREAMS_PER_CONNECTION: usize = 1000;

pub(crate) struct Fanout {
    pub watchers: usize,
    /// Arrival - `fetched_at`, in µs, one sample per watcher.
    pub deliver: Histogram<u64>,
    /// The service's RSS before any watcher, with them all, and after each
    /// round of watchers that came and left.
    pub rss_idle_kib: u64,
    pub rss_watching_kib: u64,
    pub rss_after_rounds_kib: Vec<u64>,
    /// Once the clients' connections closed too.
    pub rss_disconnected_kib: u64,
}

impl Fanout {
    /// Memory each open watcher costs the service.
    pub(crate) fn rss_per_watcher_kib(&self) -> f64 {
        self.rss_watching_kib.saturating_sub(self.rss_idle_kib) as f64 / self.watchers.max(1) as f64
    }
}

pub(crate) async fn measure(
    bin_dir: &std::path::Path,
    watchers: usize,
    rounds: usize,
) -> anyhow::Result<Fanout> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().to_string_lossy().into_owned();
    let standin =
        EcowattStandin::start(StandinConfig::unlimited(), uniform_body_around_now(1)).await;
    let max_streams = (watchers + 16).to_string();
    let forecast = procs::start_forecast_on_standin(
        bin_dir,
        &state,
        &standin.base_url(),
        "1s",
        &["--max-streams", &max_streams, "--metrics", "127.0.0.1:0"],
    )
    .await?;
    let metrics = forecast.metrics_addr().await;
    let mut channels = Vec::new();
    for _ in 0..watchers.div_ceil(STREAMS_PER_CONNECTION).max(1) {
        channels.push(forecast.channel().await);
    }
    first_forecast(&channels[0]).await?;
    let rss_idle_kib = settle_rss(&forecast).await;

    // Round 0 is the measured one: open, push, time the deliveries.
    let open = open_watchers(&channels, watchers).await?;
    let rss_watching_kib = settle_rss(&forecast).await;
    standin.set_signals(uniform_body_around_now(2));
    let mut deliver = Histogram::<u64>::new(3)?;
    let mut arrivals = open.arrivals;
    for got in 0..watchers {
        let sample = tokio::time::timeout(Duration::from_secs(60), arrivals.recv())
            .await
            .map_err(|_| {
                let failed = open.failed.lock().map(|f| f.clone()).unwrap_or_default();
                let log = forecast.log();
                let warnings: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("new forecast"))
                    .collect();
                anyhow::anyhow!(
                    "the new forecast reached {got} of {watchers} watchers in 60 s; {} streams failed (first: {:?}); the service's last warnings and forecasts:\n{}",
                    failed.len(),
                    failed.first(),
                    warnings[warnings.len().saturating_sub(4)..].join("\n")
                )
            })?
            .ok_or_else(|| anyhow::anyhow!("a watcher ended early"))?;
        deliver.record(sample.max(1))?;
    }
    drop(open.streams);
    let mut rss_after_rounds_kib = vec![after_leaving(&forecast, &metrics).await?];
    for _ in 1..rounds {
        let open = open_watchers(&channels, watchers).await?;
        drop(open.streams);
        rss_after_rounds_kib.push(after_leaving(&forecast, &metrics).await?);
    }
    drop(channels);
    let rss_disconnected_kib = settle_rss(&forecast).await;
    procs::stop(forecast).await;
    Ok(Fanout {
        watchers,
        deliver,
        rss_idle_kib,
        rss_watching_kib,
        rss_after_rounds_kib,
        rss_disconnected_kib,
    })
}

/// Waits for the service's first forecast.
async fn first_forecast(channel: &Channel) -> anyhow::Result<()> {
    let mut client = ForecastServiceClient::new(channel.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.get_forecast(fpb::GetForecastRequest {}).await {
            Ok(_) => return Ok(()),
            Err(e) => anyhow::ensure!(
                Instant::now() < deadline,
                "the forecast-service never had a forecast: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Open watchers: the tasks holding their streams, and the delays of the
/// forecasts that arrive after the first.
struct Open {
    streams: Streams,
    /// Why watchers failed (none should).
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    arrivals: mpsc::UnboundedReceiver<u64>,
}

/// The watcher tasks; dropping this closes every stream.
struct Streams(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Streams {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Opens `n` WatchForecast streams spread over `channels` and returns once
/// each has its first message.
async fn open_watchers(channels: &[Channel], n: usize) -> anyhow::Result<Open> {
    let (tx, arrivals) = mpsc::unbounded_channel();
    let ready = Arc::new(Barrier::new(n + 1));
    let failed: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = ForecastServiceClient::new(channels[i % channels.len()].clone());
        let (tx, ready, failed) = (tx.clone(), Arc::clone(&ready), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let fail = |why: String| {
                if let Ok(mut f) = failed.lock() {
                    f.push(why);
                }
            };
            let stream = match client.watch_forecast(fpb::WatchForecastRequest {}).await {
                Ok(stream) => stream,
                Err(e) => {
                    fail(e.to_string());
                    ready.wait().await;
                    return;
                }
            };
            let mut stream = stream.into_inner();
            let first = stream.next().await;
            ready.wait().await;
            let first = match first {
                Some(Ok(first)) => first,
                other => return fail(format!("no first forecast: {other:?}")),
            };
            loop {
                let f = match stream.next().await {
                    Some(Ok(f)) => f,
                    other => return fail(format!("the stream ended: {other:?}")),
                };
                // The new forecast is orange where the first was green (its
                // generation time may fall in the same second).
                if f.hours != first.hours {
                    let fetched = f.fetched_at.unwrap_or_default();
                    let fetched = Duration::new(
                        u64::try_from(fetched.seconds).unwrap_or_default(),
                        u32::try_from(fetched.nanos).unwrap_or_default(),
                    );
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    let _ = tx.send(now.saturating_sub(fetched).as_micros() as u64);
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), ready.wait())
        .await
        .map_err(|_| {
            anyhow::anyhow!("{n} watchers did not all get their first forecast in 120 s")
        })?;
    Ok(Open {
        failed,
        streams: Streams(tasks),
        arrivals,
    })
}

/// The service's RSS once it has had a moment to settle (the figure is
/// read twice, 200 ms apart, until two reads agree within 1%).
pub(crate) async fn settle_rss(process: &ServiceProcess) -> u64 {
    let mut last = procs::memory(process).rss_kib;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = procs::memory(process).rss_kib;
        if now.abs_diff(last) * 100 <= last {
            return now;
        }
        last = now;
    }
    last
}

/// RSS after every watcher has left: waits until the service counts no open
/// stream (its `watch_streams_open` gauge), then for the figure to settle.
pub(crate) async fn after_leaving(process: &ServiceProcess, metrics: &str) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = delestage_tests::scrape_metrics(metrics).await;
        let open = text
            .lines()
            .find(|l| l.starts_with("watch_streams_open "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if open == 0.0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{open} streams still open 60 s after their watchers left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(settle_rss(process).await)
}

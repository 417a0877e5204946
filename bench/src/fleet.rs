//! A fleet of clients on one forecast-service: 1000 concurrent clients
//! asking for the forecast and the level as fast as they can, while the
//! forecast-service refreshes from a local Ecowatt stand-in on a short
//! interval. RTE must see one call per refresh, however many clients.

use std::path::Path;
use std::time::{Duration, Instant};

use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin, uniform_body_around_now};
use delestage_proto::forecast::v1 as fpb;
use fpb::forecast_service_client::ForecastServiceClient;

use crate::load::{self, LoadResult, LoadSpec};
use crate::procs;

pub(crate) struct Fleet {
    pub load: LoadResult,
    pub upstream_calls: usize,
    pub refresh: Duration,
    pub clients: usize,
}

pub(crate) async fn measure(
    bin_dir: &Path,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Fleet> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().to_string_lossy().into_owned();
    let standin =
        EcowattStandin::start(StandinConfig::unlimited(), uniform_body_around_now(1)).await;
    let url = standin.base_url();
    let refresh = Duration::from_millis(500);
    let forecast = procs::start_forecast_on_standin(bin_dir, &state, &url, "500ms", &[]).await?;
    // Ten connections, so no single HTTP/2 connection carries them all.
    let mut channels = Vec::new();
    for _ in 0..10 {
        channels.push(forecast.channel().await);
    }
    // Start once the first forecast is there (until then clients get
    // UNAVAILABLE, as they should, but that is not what is measured).
    let ready_by = Instant::now() + Duration::from_secs(20);
    let mut probe = ForecastServiceClient::new(channels[0].clone());
    while probe
        .get_forecast(fpb::GetForecastRequest {})
        .await
        .is_err()
    {
        anyhow::ensure!(
            Instant::now() < ready_by,
            "the forecast-service never had a forecast"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = standin.signals_calls();
    let started = Instant::now();
    let result = load::run(
        LoadSpec {
            concurrency: clients,
            requests: u64::MAX,
            max_time: duration,
        },
        move |task, n| {
            let mut client = ForecastServiceClient::new(channels[task % channels.len()].clone());
            async move {
                if n % 2 == 0 {
                    client
                        .get_forecast(fpb::GetForecastRequest {})
                        .await
                        .map(drop)
                        .map_err(|s| s.to_string())
                } else {
                    client
                        .get_level(fpb::GetLevelRequest { at: None })
                        .await
                        .map(drop)
                        .map_err(|s| s.to_string())
                }
            }
        },
    )
    .await;
    let elapsed = started.elapsed();
    let upstream_calls = standin.signals_calls() - before;
    procs::stop(forecast).await;
    // At most one call per refresh interval (plus the one in flight).
    anyhow::ensure!(
        upstream_calls as u128 <= elapsed.as_millis() / refresh.as_millis() + 1,
        "{upstream_calls} upstream calls in {elapsed:?} with a {refresh:?} refresh"
    );
    Ok(Fleet {
        load: result,
        upstream_calls,
        refresh,
        clients,
    })
}

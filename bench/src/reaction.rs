//! Controller reaction time: from the moment the forecast-service pushes a
//! new forecast to the moment the relay-service switched the relay, with
//! stagger and minimum times at zero.
//!
//! The forecast-service fetches from a local Ecowatt stand-in every 50 ms.
//! The start is the new forecast's `fetched_at` (stamped by the
//! forecast-service when it began the fetch, so the figure includes the
//! loopback HTTP call and the publication: an upper bound); the end is the
//! relay's WatchRelays event time, stamped by the relay-service when it
//! switched. Both are this machine's clock. (Timing from when the load
//! generator's own WatchForecast stream delivers does not work: the
//! controller gets the same push at the same moment and is often done
//! before this client is scheduled.)

use std::path::Path;
use std::time::{Duration, SystemTime};

use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin, uniform_body_around_now};
use delestage_proto::forecast::v1 as fpb;
use delestage_proto::relay::v1 as rpb;
use fpb::forecast_service_client::ForecastServiceClient;
use hdrhistogram::Histogram;
use rpb::relay_service_client::RelayServiceClient;
use tokio_stream::StreamExt;

use crate::procs::{self, Memory};

pub(crate) struct Reaction {
    /// Microseconds.
    pub latency: Histogram<u64>,
    pub controller_start: Duration,
    pub controller_idle: Memory,
}

const GREEN: u8 = 1;
const RED: u8 = 3;

pub(crate) async fn measure(bin_dir: &Path, samples: usize) -> anyhow::Result<Reaction> {
    let dir = tempfile::tempdir()?;
    let state = |name: &str| procs::subdir(dir.path(), name);
    let standin =
        EcowattStandin::start(StandinConfig::unlimited(), uniform_body_around_now(GREEN)).await;
    let url = standin.base_url();
    // Dozens of switches a minute: lift the wear guard, as for SetRelay.
    let relay = procs::start_relay_without_wear_guard(bin_dir, dir.path()).await?;
    let forecast_state = state("forecast")?;
    let forecast =
        procs::start_forecast_on_standin(bin_dir, &forecast_state, &url, "50ms", &[]).await?;
    let (controller, controller_start) = procs::start_controller(
        bin_dir,
        dir.path(),
        &format!(
            "forecast = \"http://{}\"\n\n[relays.box]\nendpoint = \"http://{}\"\n\n[[load]]\nname = \"heater\"\nrelay = \"box:0\"\nwiring = \"normally-open\"\nshed_at = \"orange\"\n\n[policy]\nrestore_stagger = \"0s\"\n",
            forecast.addr, relay.addr
        ),
    )
    .await?;

    let mut forecasts = ForecastServiceClient::new(forecast.channel().await)
        .watch_forecast(fpb::WatchForecastRequest {})
        .await?
        .into_inner();
    let mut relays = RelayServiceClient::new(relay.channel().await)
        .watch_relays(rpb::WatchRelaysRequest {})
        .await?
        .into_inner();

    // Settle: green, heater powered (relay 0 energised).
    wait_relay(&mut relays, true).await?;
    let controller_idle = procs::memory(&controller);

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for i in 0..samples {
        let red = i % 2 == 0;
        standin.set_signals(uniform_body_around_now(if red { RED } else { GREEN }));
        let pushed = wait_forecast(
            &mut forecasts,
            if red {
                fpb::SignalLevel::Red
            } else {
                fpb::SignalLevel::Green
            },
        )
        .await?;
        let switched = wait_relay(&mut relays, !red).await?;
        let us = switched
            .duration_since(pushed)
            .unwrap_or_default()
            .as_micros()
            .max(1) as u64;
        latency.record(us.min(60_000_000))?;
    }

    procs::stop(controller).await;
    procs::stop(forecast).await;
    procs::stop(relay).await;
    Ok(Reaction {
        latency,
        controller_start,
        controller_idle,
    })
}

const BOUND: Duration = Duration::from_secs(20);

/// Waits for a forecast whose hours all have `level`; returns its
/// `fetched_at`. (Also the scale benchmark's.)
pub(crate) async fn wait_forecast(
    stream: &mut tonic::Streaming<fpb::Forecast>,
    level: fpb::SignalLevel,
) -> anyhow::Result<SystemTime> {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let f = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| anyhow::anyhow!("no {level:?} forecast within {BOUND:?}"))?
            .ok_or_else(|| anyhow::anyhow!("WatchForecast ended"))??;
        if f.hours.iter().any(|h| h.level() == level) && f.hours.iter().all(|h| h.level() == level)
        {
            let fetched = f
                .fetched_at
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("a forecast without fetched_at"))?;
            return Ok(pb_time(fetched));
        }
    }
}

/// Waits until relay 0 is `energized`; returns the relay-service's own time
/// of the change.
async fn wait_relay(
    stream: &mut tonic::Streaming<rpb::RelayEvent>,
    energized: bool,
) -> anyhow::Result<SystemTime> {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| anyhow::anyhow!("relay 0 not switched within {BOUND:?}"))?
            .ok_or_else(|| anyhow::anyhow!("WatchRelays ended"))??;
        let at = event.at.as_ref().map_or_else(SystemTime::now, pb_time);
        let hit = match &event.event {
            Some(rpb::relay_event::Event::RelayChanged(r)) => {
                r.channel == 0 && r.energized == energized
            }
            Some(rpb::relay_event::Event::Snapshot(s)) => s
                .relays
                .iter()
                .any(|r| r.channel == 0 && r.energized == energized),
            _ => false,
        };
        if hit {
            return Ok(at);
        }
    }
}

/// A protobuf timestamp on this machine's clock.
pub(crate) fn pb_time(t: &prost_types::Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)
}

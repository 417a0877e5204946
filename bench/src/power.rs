//! Shedding by power, in a closed loop: the stand-in Linky (in this
//! process, on a pseudo-terminal, standard mode) follows a relay-service's
//! relays, the relay-service reads it (`--meter`), the controller follows
//! the meter (`[power]`). The house: 1 kVA of base load, a 3 kW water heater
//! on relay 0 (`shed_on_power`), a 3 kW oven on relay 1 that this tool
//! switches, under a 6 kVA subscription (cut at 5.7 kVA).
//!
//! Each cycle: the oven on (7 kVA), the controller cuts the heater (4 kVA),
//! the oven off, the heater back after `restore_hold`. Per cycle:
//! - cross → cut: from the first reading over 5.7 kVA to the heater's relay
//!   switching off (both stamped by the relay-service, on this machine's
//!   clock);
//! - cross → under: to the first reading under again;
//! - overshoot: the readings over, in a row.

use std::path::Path;
use std::time::{Duration, SystemTime};

use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin, uniform_body_around_now};
use delestage_proto::meter::v1 as mpb;
use delestage_proto::relay::v1 as rpb;
use delestage_tic::Mode;
use delestage_tic_standin::{Config as MeterConfig, TicStandin, Wire};
use hdrhistogram::Histogram;
use rpb::relay_service_client::RelayServiceClient;
use tokio_stream::StreamExt;

use crate::procs;
use crate::reaction::pb_time;
use delestage_tests::ServiceProcess;

const GREEN: u8 = 1;
/// 6 kVA − 5 %.
const THRESHOLD_VA: u32 = 5700;
const BOUND: Duration = Duration::from_secs(30);

pub(crate) struct PowerFigures {
    /// Milliseconds.
    pub cross_to_cut: Histogram<u64>,
    pub cross_to_under: Histogram<u64>,
    pub overshoot_frames_max: u32,
}

/// The three processes and the stand-in meter of the closed loop.
struct House {
    relay: ServiceProcess,
    forecast: ServiceProcess,
    controller: ServiceProcess,
    meter: TicStandin,
    _ecowatt: EcowattStandin,
    _dir: tempfile::TempDir,
}

impl House {
    async fn start(bin_dir: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let link = dir.path().join("linky");
        let relay_state = procs::subdir(dir.path(), "relay")?;
        let (relay, _) = procs::start_service(
            bin_dir,
            "relay-service",
            &[
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                &relay_state,
                "--meter",
                &link.to_string_lossy(),
                "--meter-mode",
                "standard",
            ],
            &[],
        )
        .await?;
        let mut meter_config = MeterConfig::new(&link);
        meter_config.mode = Mode::Standard;
        meter_config.base_va = 1000;
        meter_config.subscribed_va = 6000;
        meter_config.wiring = vec![
            Wire {
                channel: 0,
                watts: 3000,
                normally_closed: false,
            },
            Wire {
                channel: 1,
                watts: 3000,
                normally_closed: false,
            },
        ];
        let mut meter = TicStandin::start(meter_config)?;
        meter.follow(format!("http://{}", relay.addr));

        let ecowatt =
            EcowattStandin::start(StandinConfig::unlimited(), uniform_body_around_now(GREEN)).await;
        let forecast_state = procs::subdir(dir.path(), "forecast")?;
        let forecast = procs::start_forecast_on_standin(
            bin_dir,
            &forecast_state,
            &ecowatt.base_url(),
            "1h",
            &[],
        )
        .await?;
        let (controller, _) = procs::start_controller(
        bin_dir,
        dir.path(),
        &format!(
            "forecast = \"http://{}\"\n\n[relays.box]\nendpoint = \"http://{}\"\n\n\
             [policy]\nrestore_stagger = \"0s\"\n\n[power]\nmeter = \"box\"\nrestore_hold = \"1s\"\n\n\
             [[load]]\nname = \"water-heater\"\nrelay = \"box:0\"\nwiring = \"normally-open\"\n\
             shed_at = \"red\"\nshed_on_power = true\npower_w = 3000\n",
            forecast.addr, relay.addr
        ),
    )
    .await?;
        Ok(Self {
            relay,
            forecast,
            controller,
            meter,
            _ecowatt: ecowatt,
            _dir: dir,
        })
    }

    async fn stop(self) {
        drop(self.meter);
        procs::stop(self.controller).await;
        procs::stop(self.forecast).await;
        procs::stop(self.relay).await;
    }
}

pub(crate) async fn measure(bin_dir: &Path, cycles: usize) -> anyhow::Result<PowerFigures> {
    let house = House::start(bin_dir).await?;
    let relay = &house.relay;
    let channel = relay.channel().await;
    let mut relays = RelayServiceClient::new(channel.clone());
    let mut events = relays
        .watch_relays(rpb::WatchRelaysRequest {})
        .await?
        .into_inner();
    let mut readings = mpb::meter_service_client::MeterServiceClient::new(channel)
        .watch_meter(mpb::WatchMeterRequest {})
        .await?
        .into_inner();
    // Settled: the heater on, 4 kVA.
    next_reading(&mut readings, |va| va == 4000).await?;

    let mut cross_to_cut = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    let mut cross_to_under = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;
    let mut overshoot_frames_max = 0;
    for cycle in 0..cycles {
        set(&mut relays, 1, true).await?;
        let cross = next_reading(&mut readings, |va| va >= THRESHOLD_VA).await?;
        let mut over = 1;
        let (mut cut_at, mut under_at) = (None, None);
        let deadline = tokio::time::Instant::now() + BOUND;
        while cut_at.is_none() || under_at.is_none() {
            tokio::select! {
                event = events.next() => {
                    let event = event.ok_or_else(|| anyhow::anyhow!("WatchRelays ended"))??;
                    if let Some(rpb::relay_event::Event::RelayChanged(r)) = &event.event
                        && r.channel == 0
                        && !r.energized
                        && cut_at.is_none()
                    {
                        cut_at = Some(event.at.as_ref().map_or_else(SystemTime::now, pb_time));
                    }
                }
                reading = readings.next() => {
                    let r = reading.ok_or_else(|| anyhow::anyhow!("WatchMeter ended"))??;
                    if under_at.is_none() {
                        if r.apparent_power_va >= THRESHOLD_VA {
                            over += 1;
                        } else {
                            under_at = Some(r.at.as_ref().map_or_else(SystemTime::now, pb_time));
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    anyhow::bail!("cycle {cycle}: no cut within {BOUND:?}");
                }
            }
        }
        let ms = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(cross).ok())
                .map_or(0, |d| d.as_millis() as u64)
                .max(1)
        };
        cross_to_cut.record(ms(cut_at))?;
        cross_to_under.record(ms(under_at))?;
        overshoot_frames_max = overshoot_frames_max.max(over);
        // The oven stays on until the cut has been measured (6 s of
        // readings after it), as a person would leave it: switched off at
        // once, its drop would be taken for the heater's.
        let measured = cut_at.unwrap_or(cross) + Duration::from_millis(6500);
        next_reading_at(&mut readings, measured).await?;
        // The oven off: 1 kVA; the heater back after restore_hold.
        set(&mut relays, 1, false).await?;
        next_reading(&mut readings, |va| va == 4000).await?;
        eprintln!(
            "power: cycle {}/{cycles}: cut {} ms, under {} ms after the crossing, {over} frame(s) over",
            cycle + 1,
            ms(cut_at),
            ms(under_at)
        );
    }
    house.stop().await;
    Ok(PowerFigures {
        cross_to_cut,
        cross_to_under,
        overshoot_frames_max,
    })
}

async fn set(
    relays: &mut RelayServiceClient<tonic::transport::Channel>,
    channel: u32,
    energized: bool,
) -> anyhow::Result<()> {
    relays
        .set_relay(rpb::SetRelayRequest { channel, energized })
        .await?;
    Ok(())
}

/// Reads on until a reading taken at or after `at`.
async fn next_reading_at(
    stream: &mut tonic::Streaming<mpb::MeterReading>,
    at: SystemTime,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let r = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| anyhow::anyhow!("no reading within {BOUND:?}"))?
            .ok_or_else(|| anyhow::anyhow!("WatchMeter ended"))??;
        if r.at.as_ref().map_or_else(SystemTime::now, pb_time) >= at {
            return Ok(());
        }
    }
}

/// The next reading whose power satisfies `done`; returns its time.
async fn next_reading(
    stream: &mut tonic::Streaming<mpb::MeterReading>,
    done: impl Fn(u32) -> bool,
) -> anyhow::Result<SystemTime> {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let r = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| anyhow::anyhow!("no such reading within {BOUND:?}"))?
            .ok_or_else(|| anyhow::anyhow!("WatchMeter ended"))??;
        if done(r.apparent_power_va) {
            return Ok(r.at.as_ref().map_or_else(SystemTime::now, pb_time));
        }
    }
}

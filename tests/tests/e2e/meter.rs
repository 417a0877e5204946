//! The Linky meter end to end: the stand-in meter (`tic-standin`) on a
//! pty, the relay-service reading it (`--meter`), and the controller
//! following it (`[meter] relay`), all real processes.

use delestage_proto::controller::v1 as cpb;
use delestage_proto::forecast::v1::TempoColor;
use delestage_tests::{
    Mosquitto, MqttWatcher, TicStandinProcess, cli_json, scrape_metrics, start_controller,
    start_forecast_at, start_relay, wait_status,
};

use cpb::controller_service_client::ControllerServiceClient;
use tokio_stream::StreamExt;

const GREEN: u8 = 1;

/// 06:00 and 22:00 Paris time on the day after the tariff day under way:
/// the peak hours of "tomorrow" as the meter says it; and whether that day
/// is today's date (between midnight and 06:00, the tariff day under way
/// is yesterday's).
fn tomorrows_peak_hours() -> (jiff::Timestamp, jiff::Timestamp, bool) {
    let paris = jiff::tz::TimeZone::get("Europe/Paris").expect("the Paris zone");
    let now = jiff::Timestamp::now();
    let tariff_day = (now - jiff::SignedDuration::from_hours(6))
        .to_zoned_datetime(paris.clone())
        .date();
    let tomorrow = tariff_day.tomorrow().expect("a date");
    let is_today = tomorrow == now.to_zoned_datetime(paris.clone()).date();
    let at = |hour: i8| {
        tomorrow
            .at(hour, 0, 0, 0)
            .to_zoned_datetime(paris.clone())
            .expect("a Paris time")
            .timestamp()
    };
    (at(6), at(22), is_today)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rte_tempo_off_the_meters_red_tomorrow_cuts_a_tempo_load_in_its_peak_hours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meter = TicStandinProcess::start(&dir.path().join("meter"), &["--tomorrow", "red"]).await;
    let (relay, _) = start_relay(
        &dir.path().join("relay"),
        &["--meter", meter.link_str(), "--metrics", "127.0.0.1:0"],
    )
    .await;
    // The forecast-service runs with Tempo off (its default).
    let forecast = start_forecast_at(dir.path(), GREEN).await;
    let broker = Mosquitto::start(&dir.path().join("broker"), "").await;
    let ha = MqttWatcher::connect(broker.port, &["homeassistant/#", "delestage/#"], None).await;
    let config = format!(
        "forecast = \"http://{}\"\nstate_dir = \"{}\"\n\n[relays.garage]\nendpoint = \"http://{}\"\n\n\
         [meter]\nrelay = \"garage\"\n\n[mqtt]\nurl = \"{}\"\n\n\
         [[load]]\nname = \"radiators\"\nrelay = \"garage:0\"\nwiring = \"normally-open\"\nshed_on_tempo = \"red\"\n",
        forecast.addr,
        dir.path().join("controller").display(),
        relay.addr,
        broker.url(),
    );
    let (controller, channel) = start_controller(dir.path(), &config).await;
    let mut client = ControllerServiceClient::new(channel);

    // The status shows calendar days: at night (before 06:00) the meter's
    // "tomorrow" is today's date, and its "today" yesterday's.
    let (start, end, red_is_today) = tomorrows_peak_hours();
    let status = wait_status(&mut client, "the meter's red day, from the meter", |s| {
        s.forecast.as_ref().is_some_and(|f| {
            f.tempo_source() == cpb::TempoSource::Meter
                && if red_is_today {
                    f.tempo_today() == TempoColor::Red
                } else {
                    f.tempo_tomorrow() == TempoColor::Red
                }
        })
    })
    .await;
    let forecast_state = status.forecast.expect("forecast state");
    if !red_is_today {
        assert_eq!(forecast_state.tempo_today(), TempoColor::Blue);
    }

    // The plan cuts the radiators in that day's peak hours, for Tempo red.
    let plan = client
        .get_plan(cpb::GetPlanRequest {
            load: Some("radiators".to_owned()),
        })
        .await
        .expect("GetPlan")
        .into_inner();
    let intervals = &plan.loads[0].intervals;
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
    };
    let cut = intervals
        .iter()
        .find(|i| !i.powered && i.reason() == cpb::Reason::ShedForTempo)
        .unwrap_or_else(|| panic!("no Tempo cut in {intervals:#?}"));
    assert_eq!(cut.tempo_color(), TempoColor::Red);
    assert_eq!((time(&cut.start), time(&cut.end)), (Some(start), Some(end)));

    // The CLI and the JSON say where the colour came from.
    let json = cli_json(&controller.addr, &["status"]).await;
    assert_eq!(json["forecast"]["tempo_source"], "meter", "{json}");
    let field = if red_is_today {
        "tempo_today"
    } else {
        "tempo_tomorrow"
    };
    assert_eq!(json["forecast"][field], "red", "{json}");

    // The house's power, as the meter says it (300 VA: the stand-in's base
    // load), in the status and for Home Assistant.
    let meter_state = wait_status(&mut client, "the meter's power", |s| {
        s.meter.as_ref().is_some_and(|m| m.reading)
    })
    .await
    .meter
    .expect("the meter");
    assert_eq!(meter_state.relay_service, "garage");
    assert_eq!(meter_state.apparent_power_va, 300);
    assert_eq!(meter_state.subscribed_va, 9000);
    let config = ha
        .wait_for(
            "homeassistant/sensor/delestage/apparent_power/config",
            |m| !m.payload.is_empty(),
        )
        .await
        .json();
    assert_eq!(config["device_class"], "apparent_power");
    assert_eq!(config["unit_of_measurement"], "VA");
    assert_eq!(config["state_class"], "measurement");
    let published = ha
        .wait_for("delestage/meter", |m| m.json()["apparent_power_va"] == 300)
        .await
        .json();
    assert_eq!(published["tempo_tomorrow"], "red", "{published}");

    // Prometheus, on the relay box.
    let metrics = scrape_metrics(&relay.metrics_addr().await).await;
    for line in ["meter_apparent_power_va 300", "meter_subscribed_va 9000"] {
        assert!(metrics.contains(line), "{line:?} in:\n{metrics}");
    }
    assert!(
        metrics.contains("meter_frames_total{result=\"ok\"}"),
        "{metrics}"
    );
}

/// Shedding by power, closed loop: a 1 kVA house with a 3 kW water heater
/// (`shed_on_power`) on relay 0 and a 3 kW oven on relay 1 (not the
/// controller's), under a 6 kVA subscription (cut at 5.7 kVA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_kw_oven_over_the_subscribed_power_cuts_the_water_heater_until_there_is_room() {
    use delestage_proto::relay::v1 as rpb;
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay, relay_channel) = start_relay(
        &dir.path().join("relay"),
        &[
            "--meter",
            dir.path().join("meter/linky").to_str().expect("utf-8"),
            "--meter-mode",
            "standard",
        ],
    )
    .await;
    let relay_url = format!("http://{}", relay.addr);
    let _meter = TicStandinProcess::start(
        &dir.path().join("meter"),
        &[
            "--mode",
            "standard",
            "--base",
            "1000",
            "--subscribed",
            "6000",
            "--wire",
            "0:3000",
            "--wire",
            "1:3000",
            "--relay",
            &relay_url,
        ],
    )
    .await;
    let forecast = start_forecast_at(dir.path(), GREEN).await;
    let config = format!(
        "forecast = \"http://{}\"\nstate_dir = \"{}\"\n\n[relays.garage]\nendpoint = \"http://{}\"\n\n\
         [policy]\nrestore_stagger = \"0s\"\n\n\
         [power]\nmeter = \"garage\"\nrestore_hold = \"8s\"\n\n\
         [[load]]\nname = \"water-heater\"\nrelay = \"garage:0\"\nwiring = \"normally-open\"\n\
         shed_at = \"red\"\nshed_on_power = true\npower_w = 3000\n",
        forecast.addr,
        dir.path().join("controller").display(),
        relay.addr,
    );
    let (_controller, channel) = start_controller(dir.path(), &config).await;
    let mut client = ControllerServiceClient::new(channel);
    let power = |s: &cpb::ControllerStatus| {
        s.meter
            .as_ref()
            .filter(|m| m.reading)
            .map(|m| m.apparent_power_va)
    };
    // Green: the water heater on, 4 kVA.
    wait_status(&mut client, "4 kVA with the water heater on", |s| {
        power(s) == Some(4000)
    })
    .await;

    // The oven: 7 kVA, over 5.7. The crossing reading cuts the water heater.
    let mut readings = delestage_proto::meter::v1::meter_service_client::MeterServiceClient::new(
        relay_channel.clone(),
    )
    .watch_meter(delestage_proto::meter::v1::WatchMeterRequest {})
    .await
    .expect("WatchMeter")
    .into_inner();
    let mut relays = rpb::relay_service_client::RelayServiceClient::new(relay_channel.clone());
    relays
        .set_relay(rpb::SetRelayRequest {
            channel: 1,
            energized: true,
        })
        .await
        .expect("the oven on");
    let cut_at = std::time::Instant::now();
    // Readings over the limit in a row: the crossing one, and at most one
    // more (a frame the stand-in began before the relay moved).
    let mut over = 0;
    loop {
        let r = tokio::time::timeout(delestage_tests::BOUND, readings.next())
            .await
            .expect("a reading in time")
            .expect("the stream is open")
            .expect("a reading");
        if r.apparent_power_va >= 5700 {
            over += 1;
        } else if over > 0 {
            assert_eq!(r.apparent_power_va, 4000, "{r:?}");
            break;
        }
    }
    assert!(
        over <= 2,
        "{over} readings over the limit before the cut showed"
    );
    let status = wait_status(&mut client, "the water heater cut for power", |s| {
        s.loads
            .first()
            .is_some_and(|l| l.powered == Some(false) && l.reason() == cpb::Reason::PowerLimit)
    })
    .await;
    assert!(!status.loads[0].desired);
    assert!(status.loads[0].power_cut);
    // What the cut keeps off: the heater's power_w until it is measured.
    assert_eq!(status.power_saved_w, Some(3000));
    // The power goes under: 4 kVA with the oven and without the heater.
    wait_status(&mut client, "4 kVA again", |s| power(s) == Some(4000)).await;
    // The oven stays on until the cut is measured (6 s): an appliance
    // switched in that window would be taken for the heater's power.
    // (The switch at start was not measured: no reading before it.)
    wait_status(&mut client, "the cut measured", |s| {
        s.loads.first().is_some_and(|l| l.measured_samples >= 1)
    })
    .await;

    // The oven off: 1 kVA. After restore_hold (8 s: longer than the 6 s a
    // switch is measured over, so the cut is measured too), the heater
    // comes back.
    relays
        .set_relay(rpb::SetRelayRequest {
            channel: 1,
            energized: false,
        })
        .await
        .expect("the oven off");
    wait_status(&mut client, "the water heater back", |s| {
        s.loads.first().is_some_and(|l| l.powered == Some(true))
    })
    .await;
    assert!(
        cut_at.elapsed() >= std::time::Duration::from_secs(8),
        "restored {:?} after the cut, within restore_hold",
        cut_at.elapsed()
    );
    wait_status(&mut client, "4 kVA with the heater back", |s| {
        power(s) == Some(4000)
    })
    .await;

    // The history says why, and what each switch measured: the heater's
    // 3 kW (the stand-in's house has no noise of its own).
    let history = delestage_tests::poll(
        "both switches measured",
        || {
            let mut client = client.clone();
            async move {
                client
                    .get_history(cpb::GetHistoryRequest {
                        load: "water-heater".to_owned(),
                        ..Default::default()
                    })
                    .await
                    .expect("GetHistory")
                    .into_inner()
            }
        },
        |h| h.records.len() >= 2 && h.records[..2].iter().all(|r| r.delta_va.is_some()),
    )
    .await;
    for r in &history.records[..2] {
        let delta = r.delta_va.expect("measured");
        assert!((2900..=3100).contains(&delta), "{r:?}");
    }
    let status = wait_status(&mut client, "the heater measured", |s| {
        s.loads.first().is_some_and(|l| l.measured_samples >= 2)
    })
    .await;
    let measured = status.loads[0].measured_va.expect("measured");
    assert!((2900..=3100).contains(&measured), "{measured}");
    let reasons: Vec<(bool, cpb::Reason)> = history
        .records
        .iter()
        .map(|r| (r.to_powered, r.reason()))
        .collect();
    assert!(
        reasons.contains(&(false, cpb::Reason::PowerLimit)),
        "{reasons:?}"
    );
    assert_eq!(reasons.first().map(|r| r.0), Some(true), "{reasons:?}");
}

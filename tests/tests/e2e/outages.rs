//! A forecast you can act on through outages (issue 14): the age of a
//! forecast counts from RTE's generation time, and neither a stale
//! forecast-service nor one that restarts makes the controller drop it.

use std::time::{Duration, SystemTime};

use cpb::controller_service_client::ControllerServiceClient;
use delestage_proto::controller::v1 as cpb;
use delestage_tests::{
    ServiceProcess, binary, load_status, start_controller, start_forecast_on_file, start_relay,
    wait_history, wait_status,
};
use nix::sys::signal::Signal;

fn controller_config(forecast: &str, state: &std::path::Path, relay: &str) -> String {
    format!(
        "forecast = \"http://{forecast}\"\nstate_dir = \"{}\"\n[relays.a]\nendpoint = \"http://{relay}\"\n[[load]]\nname = \"heater\"\nrelay = \"a:0\"\nwiring = \"normally-closed\"\nshed_at = \"orange\"\nwhen_forecast_unknown = \"restore\"\n",
        state.display()
    )
}

/// A red forecast file generated (and last written) `hours` ago, as a
/// forecast-service that lost RTE would still hold it.
fn old_red_forecast(path: &std::path::Path, hours: i64) {
    let generated = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(hours);
    std::fs::write(
        path,
        delestage_ecowatt_standin::uniform_body_generated_at(3, generated),
    )
    .expect("write the forecast");
    let ago = SystemTime::now() - Duration::from_secs(hours as u64 * 3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(ago))
        .expect("date the file");
}

#[tokio::test]
async fn a_stale_red_forecast_still_cuts_and_one_generated_80_hours_ago_does_not() {
    for (hours, cut) in [(10, true), (80, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("forecast.json");
        old_red_forecast(&file, hours);
        let forecast = start_forecast_on_file(&file, &dir.path().join("forecast"), &[]).await;
        let (relay, relay_channel) = start_relay(&dir.path().join("relay"), &[]).await;
        let (_controller, channel) = start_controller(
            dir.path(),
            &controller_config(&forecast.addr, &dir.path().join("ctl"), &relay.addr),
        )
        .await;
        let mut client = ControllerServiceClient::new(channel);
        let status = wait_status(&mut client, "a pass on the forecast", |s| {
            s.forecast
                .as_ref()
                .is_some_and(|f| f.forecast_service_reachable)
                && !s.loads.is_empty()
        })
        .await;
        let f = status.forecast.clone().expect("forecast");
        let heater = load_status(&status, "heater");
        if cut {
            assert!(f.usable && f.stale, "{hours} h: {f:?}");
            assert!(!heater.desired, "{hours} h: {heater:?}");
            assert_eq!(heater.reason(), cpb::Reason::ShedForLevel);
            wait_history(&mut client, "the cut", |r| r.len() == 1).await;
            assert_eq!(delestage_tests::energized(&relay_channel).await, vec![0]);
        } else {
            assert!(
                !f.usable && f.reason.contains("generated at"),
                "{hours} h: {f:?}"
            );
            assert!(heater.desired, "{hours} h: {heater:?}");
            assert_eq!(heater.reason(), cpb::Reason::ForecastUnknown);
            assert_eq!(
                delestage_tests::energized(&relay_channel).await,
                Vec::<u32>::new()
            );
        }
    }
}

/// The forecast-service restarts (kill -9, then up on the same address)
/// during a red hour: the controller keeps acting on the forecast it has,
/// and nothing switches.
#[tokio::test]
async fn a_forecast_service_restart_during_red_switches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("forecast.json");
    delestage_tests::write_forecast(&file, 3);
    let forecast_state = dir.path().join("forecast");
    let forecast = start_forecast_on_file(&file, &forecast_state, &[]).await;
    let addr = forecast.addr.clone();
    let (relay, relay_channel) = start_relay(&dir.path().join("relay"), &[]).await;
    let (_controller, channel) = start_controller(
        dir.path(),
        &controller_config(&addr, &dir.path().join("ctl"), &relay.addr),
    )
    .await;
    let mut client = ControllerServiceClient::new(channel);
    wait_history(&mut client, "the cut", |r| r.len() == 1).await;

    forecast.stop_with(Signal::SIGKILL).await;
    wait_status(&mut client, "the lost forecast-service", |s| {
        s.forecast
            .as_ref()
            .is_some_and(|f| f.usable && !f.forecast_service_reachable)
    })
    .await;
    let forecast = ServiceProcess::start(
        &binary("forecast-service"),
        &[
            "--listen",
            &addr,
            "--state-dir",
            forecast_state.to_str().expect("utf-8"),
            "--file",
            file.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    forecast
        .wait_serving("delestage.forecast.v1.ForecastService")
        .await;
    wait_status(&mut client, "the forecast-service back", |s| {
        s.forecast
            .as_ref()
            .is_some_and(|f| f.usable && f.forecast_service_reachable)
    })
    .await;
    assert_eq!(
        delestage_tests::history(&mut client).await.len(),
        1,
        "no switch"
    );
    assert_eq!(delestage_tests::energized(&relay_channel).await, vec![0]);
}

//! The relay box carries the plan: with its controller gone (and even
//! after a restart of its own), it follows the schedule it was handed, then
//! puts each load where the controller said.

use std::path::Path;

use delestage_proto::controller::v1 as cpb;
use delestage_proto::relay::v1 as rpb;
use delestage_tests::{
    ServiceProcess, poll, start_controller, start_forecast_at, start_relay, wait_energized,
};
use nix::sys::signal::Signal;
use tonic::transport::Channel;

async fn start_box(dir: &Path) -> (ServiceProcess, Channel) {
    start_relay(dir, &["--hold-timeout", "2s"]).await
}

/// The times at which the kept plan powers channel 0 again (energised).
fn planned_restores(dir: &Path) -> Vec<i64> {
    let Ok(bytes) = std::fs::read(dir.join("hold-plan.json")) else {
        return Vec::new();
    };
    let plan: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    plan["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["channel"] == 0)
        .flat_map(|c| c["schedule"].as_array().cloned().unwrap_or_default())
        .filter(|step| step[1] == true)
        .filter_map(|step| step[0]["secs_since_epoch"].as_i64())
        .collect()
}

#[tokio::test]
async fn the_relay_box_puts_an_overridden_load_back_on_time_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let box_dir = dir.path().join("box");
    std::fs::create_dir_all(&box_dir).expect("mkdir");
    let (relay, relays) = start_box(&box_dir).await;
    let forecast = start_forecast_at(dir.path(), 1).await;
    let (controller, channel) = start_controller(
        dir.path(),
        &format!(
            "forecast = \"http://{}\"\nstate_dir = \"{}\"\n[relays.a]\nendpoint = \"http://{}\"\n\
             [[load]]\nname = \"heater\"\nrelay = \"a:0\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n\
             [policy]\nrestore_stagger = \"0s\"\n",
            forecast.addr,
            dir.path().join("ctl").display(),
            relay.addr
        ),
    )
    .await;
    wait_energized(&relays, &[0], "green: the heater powered").await;

    // Off for 20 s, by hand.
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(20);
    cpb::controller_service_client::ControllerServiceClient::new(channel)
        .set_override(cpb::SetOverrideRequest {
            force: false,
            load: "heater".to_owned(),
            powered: false,
            until: Some(prost_types::Timestamp {
                seconds: until.as_second(),
                nanos: until.subsec_nanosecond(),
            }),
        })
        .await
        .expect("override");
    wait_energized(&relays, &[], "the override").await;
    // The box has been handed the plan: back on when the override ends.
    poll(
        "the plan on the relay box",
        || std::future::ready(planned_restores(&box_dir)),
        |restores| restores.contains(&until.as_second()),
    )
    .await;

    // The controller dies; the box runs out of hold, then restarts too.
    assert!(!controller.stop_with(Signal::SIGKILL).await.success());
    relay.wait_for_log("relay hold ran out").await;
    assert!(!relay.stop_with(Signal::SIGKILL).await.success());
    let (relay, relays) = start_box(&box_dir).await;
    relay.wait_for_log("a plan is kept from before").await;
    assert_eq!(
        delestage_tests::energized(&relays).await,
        Vec::<u32>::new(),
        "still off"
    );

    // By itself, on time: the load is powered again when the override ends.
    wait_energized(&relays, &[0], "the box putting the heater back").await;
    let changed = rpb::relay_service_client::RelayServiceClient::new(relays.clone())
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .expect("GetRelays")
        .into_inner()
        .relays[0]
        .changed_at
        .expect("changed");
    let late_ms = (changed.seconds - until.as_second()) * 1000
        + (i64::from(changed.nanos) - i64::from(until.subsec_nanosecond())) / 1_000_000;
    eprintln!("carried plan: the box powered the heater {late_ms} ms after the override ended");
    assert!(
        (0..3000).contains(&late_ms),
        "switched {late_ms} ms from the end of the override"
    );
    assert!(relay.stop_with(Signal::SIGTERM).await.success());
    assert!(forecast.stop_with(Signal::SIGTERM).await.success());
}

//! A controller stopped with SIGTERM finishes what it started: a switch
//! under way at that moment completes, and its history record is on disk
//! when the process has exited.

use std::time::{Duration, Instant, SystemTime};

use delestage_proto::controller::v1 as cpb;
use delestage_proto::controller::v1::controller_service_client::ControllerServiceClient;
use delestage_tests::{
    ServiceProcess, binary, start_forecast_at, start_relay, wait_energized, write_heater_config,
};
use nix::sys::signal::Signal;

/// The earliest the controller's keepalive can give up on a frozen box:
/// a ping sent as it froze, unanswered for `KEEPALIVE_TIMEOUT`.
const EARLIEST_GIVE_UP: Duration = delestage_runtime::client::KEEPALIVE_TIMEOUT;

#[tokio::test]
async fn a_switch_under_way_at_sigterm_is_made_and_recorded_before_exit() {
    // The box is frozen while the switch goes out: a flood beside it could
    // stretch that past the controller's keepalive.
    let _turn = delestage_tests::exclusive().await;
    // The test's premise is a box frozen for less than the keepalive allows.
    // On a machine so loaded that the freeze outlasted it, the attempt says
    // nothing either way: it is made again, and said.
    let mut frozen_for = Vec::new();
    for _ in 0..3 {
        match attempt().await {
            Ok(()) => return,
            Err(window) => {
                eprintln!(
                    "the box stayed frozen {window:?}, past the {EARLIEST_GIVE_UP:?} the keepalive allows: trying again"
                );
                frozen_for.push(window);
            }
        }
    }
    panic!(
        "the machine is too loaded for this test: the box stayed frozen {frozen_for:?}, \
         each time past the {EARLIEST_GIVE_UP:?} the controller's keepalive allows"
    );
}

/// The switch under way at SIGTERM, judged; or, if the box stayed frozen
/// longer than the keepalive allows, how long (nothing judged).
async fn attempt() -> Result<(), Duration> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay_process, relay) = start_relay(&dir.path().join("relay"), &[]).await;
    let forecast = start_forecast_at(dir.path(), 1).await;
    let state = dir.path().join("controller");
    let config = write_heater_config(dir.path(), &forecast.addr, &relay_process.addr, "");
    let controller = ServiceProcess::start(
        &binary("controller"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().expect("utf-8"),
        ],
        // The line that says a switch has gone out.
        &[("RUST_LOG", "info,delestage_controller::enforce=debug")],
    )
    .await;
    let channel = controller
        .wait_serving("delestage.controller.v1.ControllerService")
        .await;
    wait_energized(&relay, &[0], "the heater on (green)").await;

    // The relay box stops answering; the controller sends it a switch.
    relay_process.signal(Signal::SIGSTOP);
    let frozen = Instant::now();
    ControllerServiceClient::new(channel)
        .set_override(cpb::SetOverrideRequest {
            load: "heater".to_owned(),
            powered: false,
            until: Some(prost_types::Timestamp::from(
                SystemTime::now() + Duration::from_secs(3600),
            )),
            force: true,
        })
        .await
        .expect("override");
    controller.wait_for_log("\"message\":\"switching\"").await;

    // SIGTERM while the switch is under way, then the box answers.
    let stopped = controller.stop_with(Signal::SIGTERM);
    let thawed = async {
        relay_process.signal(Signal::SIGCONT);
        frozen.elapsed()
    };
    let (status, window) = tokio::join!(stopped, thawed);
    if window >= EARLIEST_GIVE_UP {
        return Err(window);
    }
    assert!(status.success(), "{status:?}");

    wait_energized(&relay, &[], "the heater cut on the box").await;
    let history = std::fs::read_to_string(state.join("history.jsonl")).expect("history");
    let last: serde_json::Value =
        serde_json::from_str(history.lines().last().expect("a record")).expect("JSON");
    assert_eq!(last["load"], "heater", "{history}");
    assert_eq!(last["to"], false, "{history}");
    assert_eq!(last["reason"], "override", "{history}");
    Ok(())
}

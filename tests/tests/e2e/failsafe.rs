//! The relay hold: without renewals (no controller, or a hung one), every
//! channel returns to its safe state; renewals keep the relays as they are;
//! a controller that comes back puts its plan back.

use std::time::{Duration, Instant};

use delestage_proto::relay::v1 as rpb;
use delestage_tests::{
    BOUND, ServiceProcess, binary, energized, start_controller, start_forecast_at, wait_energized,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rpb::relay_service_client::RelayServiceClient;
use tonic::transport::Channel;

const RELAY: &str = "delestage.relay.v1.RelayService";

async fn start_relay(dir: &std::path::Path, hold: &str) -> (ServiceProcess, Channel) {
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        "hold_timeout = \"1s\"\n\n[safe_states]\n0 = \"on\"\n",
    )
    .expect("write");
    let svc = ServiceProcess::start(
        &binary("relay-service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            dir.to_str().expect("utf-8"),
            "--config",
            config.to_str().expect("utf-8"),
            "--hold-timeout",
            hold,
        ],
        &[],
    )
    .await;
    let channel = svc.wait_serving(RELAY).await;
    (svc, channel)
}

#[tokio::test]
async fn without_renewals_the_channels_return_to_their_safe_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start_relay(dir.path(), "1s").await;
    let mut client = RelayServiceClient::new(channel.clone());
    for ch in [1, 2] {
        client
            .set_relay(rpb::SetRelayRequest {
                channel: ch,
                energized: true,
            })
            .await
            .expect("switch");
    }

    // Renewed for a while: nothing moves.
    let renewing_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < renewing_until {
        let answer = client
            .renew_hold(rpb::RenewHoldRequest {
                holder: "test".to_owned(),
                channels: Vec::new(),
            })
            .await
            .expect("renew")
            .into_inner();
        assert!(answer.enabled && !answer.had_expired, "{answer:?}");
        assert_eq!(answer.timeout.map(|d| d.seconds), Some(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(energized(&channel).await, [1, 2]);

    // No more renewals: safe states (channel 0 on, the rest off).
    let stopped_renewing = Instant::now();
    wait_energized(&channel, &[0], "hold ran out").await;
    assert!(
        stopped_renewing.elapsed() >= Duration::from_millis(700),
        "the hold ran out early"
    );
    svc.wait_for_log("relay hold ran out").await;

    // The next renewal says so, and switching works again.
    let answer = client
        .renew_hold(rpb::RenewHoldRequest {
            holder: "test".to_owned(),
            channels: Vec::new(),
        })
        .await
        .expect("renew")
        .into_inner();
    assert!(answer.had_expired);
    client
        .set_relay(rpb::SetRelayRequest {
            channel: 3,
            energized: true,
        })
        .await
        .expect("switch after");
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn a_hung_controller_ends_in_the_safe_state_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay_dir = dir.path().join("relay");
    std::fs::create_dir_all(&relay_dir).expect("mkdir");
    let (relay, relay_channel) = start_relay(&relay_dir, "2s").await;
    let fsvc = start_forecast_at(dir.path(), 1).await;
    let (controller, _) = start_controller(
        dir.path(),
        &format!(
            "forecast = \"http://{}\"\nstate_dir = \"{}\"\n[relays.a]\nendpoint = \"http://{}\"\n[[load]]\nname = \"heater\"\nrelay = \"a:1\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n[policy]\nrestore_stagger = \"0s\"\n",
            fsvc.addr,
            dir.path().join("ctl").display(),
            relay.addr
        ),
    )
    .await;

    // Green: the controller powers the heater (relay 1) and keeps the hold
    // renewed. Channel 0's safe state is "on", but the hold never runs out.
    wait_energized(&relay_channel, &[1], "the controller's plan").await;

    // The controller hangs (SIGSTOP): the hold runs out, safe states.
    let pid = Pid::from_raw(controller.pid().expect("running") as i32);
    kill(pid, Signal::SIGSTOP).expect("stop");
    wait_energized(&relay_channel, &[0], "safe states with a hung controller").await;
    // It comes back (SIGCONT): its plan is put back.
    kill(pid, Signal::SIGCONT).expect("continue");
    // Channel 0 has no load: it stays as the safe state left it.
    let deadline = Instant::now() + BOUND;
    while energized(&relay_channel).await != [0, 1] {
        if Instant::now() >= deadline {
            let status = delestage_proto::controller::v1::controller_service_client::ControllerServiceClient::new(
                controller.channel().await,
            )
            .get_status(delestage_proto::controller::v1::GetStatusRequest {})
            .await;
            panic!(
                "the plan was not put back: {:?}\nstatus: {status:#?}\ncontroller:\n{}\nrelay:\n{}",
                energized(&relay_channel).await,
                controller.log(),
                relay.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.wait_for_log("relay hold had run out").await;

    for svc in [controller, fsvc, relay] {
        assert!(svc.stop_with(Signal::SIGTERM).await.success());
    }
}

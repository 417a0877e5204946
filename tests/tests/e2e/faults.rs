//! Faults and bad input against the real binaries: oversized requests, a
//! flood of subscribers that never read, and `kill -9` in the middle of
//! work. Every wait is bounded; everything is on loopback.

use std::time::{Duration, Instant};

use delestage_proto::controller::v1 as cpb;
use delestage_proto::relay::v1 as rpb;
use delestage_tests::{
    BOUND, ServiceProcess, binary, load_status, start_controller, start_controller_on,
    start_forecast_at, wait_history, wait_status,
};
use nix::sys::signal::Signal;
use rpb::relay_service_client::RelayServiceClient;
use tonic::Code;
use tonic::transport::Channel;

const RELAY: &str = "delestage.relay.v1.RelayService";

async fn start_relay(state: &std::path::Path) -> (ServiceProcess, Channel) {
    let svc = ServiceProcess::start(
        &binary("relay-service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--benchmark-without-wear-guard",
        ],
        &[],
    )
    .await;
    let channel = svc.wait_serving(RELAY).await;
    (svc, channel)
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_the_service_goes_on() {
    let state = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let forecast = dir.path().join("f.json");
    std::fs::write(
        &forecast,
        delestage_ecowatt_standin::uniform_body_around_now(1),
    )
    .expect("write");
    let (relay, relay_channel) = start_relay(state.path()).await;
    let (controller, channel) = start_controller(
        dir.path(),
        &format!(
            "forecast = \"http://127.0.0.1:1\"\nstate_dir = \"{}\"\n[relays.a]\nendpoint = \"http://{}\"\n[[load]]\nname = \"x\"\nrelay = \"a:0\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n",
            dir.path().join("ctl").display(),
            relay.addr
        ),
    )
    .await;
    let mut client = cpb::controller_service_client::ControllerServiceClient::new(channel);
    let err = client
        .set_override(cpb::SetOverrideRequest {
            force: false,
            load: "x".repeat(200 * 1024),
            powered: true,
            until: None,
        })
        .await
        .expect_err("200 KiB request");
    assert!(
        matches!(
            err.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{err:?}"
    );
    // The same connection and the service are fine.
    client
        .get_status(cpb::GetStatusRequest {})
        .await
        .expect("still answering");
    RelayServiceClient::new(relay_channel)
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .expect("relay fine");
    assert!(controller.stop_with(Signal::SIGTERM).await.success());
    assert!(relay.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn subscribers_that_never_read_cannot_hold_memory_or_slow_others() {
    // 2000 switches, each written to disk: a load on the machine that would
    // upset the tests that time a frozen box.
    let _turn = delestage_tests::exclusive().await;
    let state = tempfile::tempdir().expect("tempdir");
    let (relay, channel) = start_relay(state.path()).await;
    let before = relay.memory_kib("VmRSS");

    // 300 streams opened on a connection of their own, never read.
    let flood_channel = relay.channel().await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        let stream = RelayServiceClient::new(flood_channel.clone())
            .watch_relays(rpb::WatchRelaysRequest {})
            .await
            .expect("watch")
            .into_inner();
        idle.push(stream);
    }
    // A reader of our own on another connection.
    let mut reader = RelayServiceClient::new(relay.channel().await)
        .watch_relays(rpb::WatchRelaysRequest {})
        .await
        .expect("watch")
        .into_inner();

    // Lots of changes (the wear guard is lifted for this). A sender held up
    // by the stuck subscribers would never answer: each switch is bounded.
    // How long they take is a figure, not a rule (a busy CI machine is
    // slow), so it is printed, not asserted.
    let mut client = RelayServiceClient::new(channel);
    let started = Instant::now();
    for i in 0..2000u32 {
        let request = rpb::SetRelayRequest {
            channel: i % 8,
            energized: (i / 8) % 2 == 0,
        };
        tokio::time::timeout(BOUND, client.set_relay(request))
            .await
            .unwrap_or_else(|_| panic!("switch {i} held up for {BOUND:?} by the stuck subscribers"))
            .expect("switch while flooded");
    }
    eprintln!(
        "2000 switches with 300 stuck subscribers took {:?}",
        started.elapsed()
    );
    // Our reader still gets the truth (events, or a snapshot if it lagged).
    use tokio_stream::StreamExt;
    let first = tokio::time::timeout(BOUND, reader.next())
        .await
        .expect("the reader gets something")
        .expect("open")
        .expect("event");
    assert!(first.event.is_some());
    let after = relay.memory_kib("VmRSS");
    assert!(
        after < before + 64 * 1024,
        "RSS went from {before} KiB to {after} KiB with 300 stuck subscribers"
    );
    drop(idle);
    assert!(relay.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn kill_9_of_the_controller_loses_no_override_and_no_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay_state = dir.path().join("relay");
    std::fs::create_dir_all(&relay_state).expect("mkdir");
    let (relay, relay_channel) = start_relay(&relay_state).await;
    let fsvc = start_forecast_at(dir.path(), 3).await;
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "forecast = \"http://{}\"\nstate_dir = \"{}\"\n[relays.a]\nendpoint = \"http://{}\"\n[[load]]\nname = \"heater\"\nrelay = \"a:0\"\nwiring = \"normally-open\"\nshed_at = \"orange\"\n[[load]]\nname = \"ev\"\nrelay = \"a:1\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n[policy]\nrestore_stagger = \"0s\"\n",
            fsvc.addr,
            dir.path().join("ctl").display(),
            relay.addr
        ),
    )
    .expect("write");
    let start_controller = || async {
        let (svc, channel) = start_controller_on(&config).await;
        (
            svc,
            cpb::controller_service_client::ControllerServiceClient::new(channel),
        )
    };
    let (controller, mut client) = start_controller().await;
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    client
        .set_override(cpb::SetOverrideRequest {
            force: false,
            load: "heater".to_owned(),
            powered: true,
            until: Some(prost_types::Timestamp {
                seconds: until.as_second(),
                nanos: 0,
            }),
        })
        .await
        .expect("override");
    // Wait until the override's switch is recorded, then kill -9.
    let history = wait_history(&mut client, "the override's switch", |h| {
        h.iter().any(|r| r.load == "heater" && r.to_powered)
    })
    .await;
    let relays_before = RelayServiceClient::new(relay_channel.clone())
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .expect("relays")
        .into_inner()
        .relays;
    assert!(!controller.stop_with(Signal::SIGKILL).await.success());

    let (controller, mut client) = start_controller().await;
    let status = wait_status(
        &mut client,
        "the restarted controller to settle",
        |status| {
            status.forecast.as_ref().is_some_and(|f| f.usable)
                && status.loads.iter().all(|l| l.powered == Some(l.desired))
        },
    )
    .await;
    let heater = load_status(&status, "heater");
    assert!(heater.r#override.is_some(), "the override was lost");
    assert!(heater.desired, "{heater:?}");
    let again = client
        .get_history(cpb::GetHistoryRequest {
            load: String::new(),
            since: None,
            limit: 0,
        })
        .await
        .expect("history")
        .into_inner()
        .records;
    assert_eq!(
        again, history,
        "history lost or a switch made by the restart"
    );
    let relays_after = RelayServiceClient::new(relay_channel)
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .expect("relays")
        .into_inner()
        .relays;
    assert_eq!(
        relays_after, relays_before,
        "the restart switched something"
    );
    for svc in [controller, fsvc, relay] {
        assert!(svc.stop_with(Signal::SIGTERM).await.success());
    }
}

#[tokio::test]
async fn kill_9_of_the_forecast_service_keeps_its_cache() {
    let standin = delestage_ecowatt_standin::EcowattStandin::start(
        delestage_ecowatt_standin::Config {
            rate_limit: None,
            ..delestage_ecowatt_standin::Config::default()
        },
        delestage_ecowatt_standin::uniform_body_around_now(2),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = standin.base_url();
    let start = || async {
        let svc = ServiceProcess::start(
            &binary("forecast-service"),
            &[
                "--listen",
                "127.0.0.1:0",
                "--state-dir",
                dir.path().to_str().expect("utf-8"),
                "--ecowatt-url",
                &url,
                "--refresh-interval",
                "1h",
            ],
            &[
                ("ECOWATT_CLIENT_ID", "test-client-id"),
                ("ECOWATT_CLIENT_SECRET", "test-client-secret"),
            ],
        )
        .await;
        let channel = svc
            .wait_serving("delestage.forecast.v1.ForecastService")
            .await;
        (svc, channel)
    };
    let (svc, channel) = start().await;
    let deadline = Instant::now() + BOUND;
    let first = loop {
        match delestage_proto::forecast::v1::forecast_service_client::ForecastServiceClient::new(
            channel.clone(),
        )
        .get_forecast(delestage_proto::forecast::v1::GetForecastRequest {})
        .await
        {
            Ok(f) => break f.into_inner(),
            Err(_) => {
                assert!(Instant::now() < deadline, "no forecast");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(!svc.stop_with(Signal::SIGKILL).await.success());
    let (svc, channel) = start().await;
    let again =
        delestage_proto::forecast::v1::forecast_service_client::ForecastServiceClient::new(channel)
            .get_forecast(delestage_proto::forecast::v1::GetForecastRequest {})
            .await
            .expect("served from the cache at once")
            .into_inner();
    assert_eq!(again.fetched_at, first.fetched_at);
    assert_eq!(again.hours, first.hours);
    assert_eq!(standin.signals_calls(), 1, "the restart called RTE again");
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn an_unwritable_state_dir_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file where the state dir should be.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").expect("write");
    let state = blocker.join("state");
    let state = state.to_str().expect("utf-8");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[relays.a]\nendpoint = \"http://127.0.0.1:1\"\n[[load]]\nname = \"x\"\nrelay = \"a:0\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n",
    )
    .expect("write");
    for (bin, extra) in [
        ("relay-service", vec![]),
        (
            "controller",
            vec!["--config", config.to_str().expect("utf-8")],
        ),
    ] {
        let mut args = vec!["--listen", "127.0.0.1:0", "--state-dir", state];
        args.extend(extra);
        let (status, stderr) = delestage_tests::run_to_exit(&binary(bin), &args).await;
        assert!(!status.success(), "{bin} started");
        assert!(stderr.contains(state), "{bin}: {stderr}");
    }
}

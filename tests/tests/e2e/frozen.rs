//! A frozen relay box (SIGSTOP: its TCP connections stay open, it answers
//! nothing) must not hold up the controller's other boxes: their switches
//! land at once and their holds never run out; the frozen box shows as
//! unreachable, and catches up when it wakes.

use std::path::Path;
use std::time::{Duration, Instant};

use delestage_proto::controller::v1 as cpb;
use delestage_proto::forecast::v1 as fpb;
use delestage_proto::relay::v1 as rpb;
use delestage_tests::{
    BOUND, ServiceProcess, start_controller, start_forecast_at, start_relay, wait_energized,
    wait_status, write_forecast,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// How long the box stays frozen: five hold timeouts of the healthy box
/// (its renewals held up behind the frozen box would let it run out in the
/// first one).
const FROZEN_FOR: Duration = Duration::from_secs(15);

async fn start_box(dir: &Path) -> (ServiceProcess, Channel) {
    std::fs::create_dir_all(dir).expect("mkdir");
    start_relay(dir, &["--hold-timeout", "3s"]).await
}

fn millis(t: Option<&prost_types::Timestamp>) -> i64 {
    let t = t.expect("a time");
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

#[tokio::test]
async fn a_frozen_box_holds_up_neither_the_other_box_nor_its_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (healthy, healthy_relays) = start_box(&dir.path().join("healthy")).await;
    let (frozen, frozen_relays) = start_box(&dir.path().join("frozen")).await;
    let forecast = start_forecast_at(dir.path(), 1).await;
    let (controller, controller_channel) = start_controller(
        dir.path(),
        &format!(
            "forecast = \"http://{}\"\nstate_dir = \"{}\"\n\
             [relays.healthy]\nendpoint = \"http://{}\"\n\
             [relays.frozen]\nendpoint = \"http://{}\"\n\
             [[load]]\nname = \"pump\"\nrelay = \"frozen:0\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n\
             [[load]]\nname = \"boiler\"\nrelay = \"frozen:1\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n\
             [[load]]\nname = \"heater\"\nrelay = \"healthy:0\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n\
             [[load]]\nname = \"charger\"\nrelay = \"healthy:1\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n\
             [policy]\nrestore_stagger = \"0s\"\n",
            forecast.addr,
            dir.path().join("ctl").display(),
            healthy.addr,
            frozen.addr
        ),
    )
    .await;
    // Green: every load powered.
    wait_energized(&healthy_relays, &[0, 1], "green, healthy box").await;
    wait_energized(&frozen_relays, &[0, 1], "green, frozen box").await;

    // Freeze one box, then make switches due on both. (The frozen box's
    // loads come first in the config, and so in the order of the cuts.)
    let mut forecasts =
        fpb::forecast_service_client::ForecastServiceClient::new(forecast.channel().await)
            .watch_forecast(fpb::WatchForecastRequest {})
            .await
            .expect("WatchForecast")
            .into_inner();
    let first = forecasts
        .message()
        .await
        .expect("stream")
        .expect("a forecast");
    let frozen_pid = Pid::from_raw(frozen.pid().expect("running") as i32);
    kill(frozen_pid, Signal::SIGSTOP).expect("SIGSTOP");
    let frozen_at = Instant::now();
    write_forecast(&dir.path().join("forecast.json"), 3);
    // When the new forecast is out (the service re-reads its file every
    // second): the clock starts here, not at the file's write.
    loop {
        let next = tokio::time::timeout(BOUND, forecasts.message())
            .await
            .expect("a new forecast in time")
            .expect("stream")
            .expect("a forecast");
        if next.fetched_at != first.fetched_at {
            break;
        }
    }
    let published_ms = jiff::Timestamp::now().as_millisecond();

    // The healthy box is switched at once, whatever the frozen one does.
    wait_energized(&healthy_relays, &[], "red, healthy box").await;
    let relays = rpb::relay_service_client::RelayServiceClient::new(healthy_relays.clone())
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .expect("GetRelays")
        .into_inner()
        .relays;
    let switched_ms = relays
        .iter()
        .filter(|r| r.channel < 2)
        .map(|r| millis(r.changed_at.as_ref()) - published_ms)
        .max()
        .expect("relays");
    eprintln!(
        "frozen box: the healthy box's relays switched at most {switched_ms} ms after the new forecast was out"
    );
    assert!(
        switched_ms <= 1000,
        "the healthy box was switched {switched_ms} ms after the forecast"
    );

    // The frozen box is found out (HTTP/2 keepalive) and shown unreachable.
    let mut client =
        cpb::controller_service_client::ControllerServiceClient::new(controller_channel);
    let status = wait_status(&mut client, "the frozen box to show unreachable", |s| {
        s.relay_services
            .iter()
            .any(|r| r.name == "frozen" && !r.reachable)
            && s.relay_services
                .iter()
                .any(|r| r.name == "healthy" && r.reachable)
    })
    .await;
    // In words that say what happened: it answered nothing.
    let frozen_error = &status
        .relay_services
        .iter()
        .find(|r| r.name == "frozen")
        .expect("the frozen box")
        .error;
    assert!(
        frozen_error.contains("no answer from the relay box for 3 s (frozen or cut off)"),
        "{frozen_error}"
    );

    // Five hold timeouts later, the healthy box's hold never ran out: its
    // loads stayed shed through the red hours.
    tokio::time::sleep(FROZEN_FOR.saturating_sub(frozen_at.elapsed())).await;
    let expiries = healthy.log().matches("relay hold ran out").count();
    eprintln!(
        "frozen box: {expiries} hold expiries on the healthy box in {} s",
        FROZEN_FOR.as_secs()
    );
    assert_eq!(expiries, 0, "{}", healthy.log());
    wait_energized(&healthy_relays, &[], "still shed, healthy box").await;

    // The frozen box wakes up and catches up with the plan.
    kill(frozen_pid, Signal::SIGCONT).expect("SIGCONT");
    wait_energized(&frozen_relays, &[], "red, the box that was frozen").await;
    wait_status(&mut client, "the woken box to show reachable", |s| {
        s.relay_services.iter().all(|r| r.reachable)
    })
    .await;

    assert!(controller.stop_with(Signal::SIGTERM).await.success());
    assert!(frozen.stop_with(Signal::SIGTERM).await.success());
    assert!(healthy.stop_with(Signal::SIGTERM).await.success());
    assert!(forecast.stop_with(Signal::SIGTERM).await.success());
}

/// A frozen peer, seen from a client: an open stream and a new call both
/// end as "no answer" (not as something the peer said), and `delestage
/// relays` says it could not reach the box, not that the box answered.
#[tokio::test]
async fn a_frozen_peer_is_said_to_have_stopped_answering() {
    use tokio_stream::StreamExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (svc, _) = start_relay(dir.path(), &[]).await;
    let url = format!("http://{}", svc.addr);
    let (channel, _) =
        delestage_runtime::client::channel(&url, &Default::default(), Duration::from_secs(3))
            .expect("a channel");
    let mut client = rpb::relay_service_client::RelayServiceClient::new(channel);
    let mut stream = client
        .watch_relays(rpb::WatchRelaysRequest {})
        .await
        .expect("watch")
        .into_inner();
    stream.next().await.expect("a snapshot").expect("ok");
    let pid = Pid::from_raw(svc.pid().expect("running") as i32);
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");

    let ended = tokio::time::timeout(BOUND, stream.next())
        .await
        .expect("the stream ends within the bound")
        .expect("an item")
        .expect_err("an error");
    assert!(
        delestage_runtime::client::peer_went_silent(&ended),
        "{ended:?}"
    );
    let call = client
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .expect_err("no answer");
    assert!(
        delestage_runtime::client::peer_went_silent(&call),
        "{call:?}"
    );

    let (status, stderr) = delestage_tests::run_to_exit(
        &delestage_tests::binary("delestage"),
        &["relays", "--relay", &url],
    )
    .await;
    assert!(!status.success(), "{stderr}");
    assert!(!stderr.contains("answered"), "{stderr}");
    assert!(
        stderr.contains("cannot reach the relay-service"),
        "{stderr}"
    );
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

//! relay-service as a user runs it: the real binary, as a separate process.

use delestage_proto::relay::v1 as pb;
use delestage_tests::{BOUND, ServiceProcess, binary, energized, run_to_exit};
use nix::sys::signal::Signal;
use pb::relay_service_client::RelayServiceClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const RELAY: &str = "delestage.relay.v1.RelayService";

async fn start(state_dir: &std::path::Path, extra: &[&str]) -> (ServiceProcess, Channel) {
    let state = state_dir.to_str().expect("utf-8 path");
    let mut args = vec!["--listen", "127.0.0.1:0", "--state-dir", state];
    args.extend_from_slice(extra);
    let svc = ServiceProcess::start(&binary("relay-service"), &args, &[]).await;
    let channel = svc.wait_serving(RELAY).await;
    (svc, channel)
}

async fn set(channel: &Channel, ch: u32, on: bool) {
    RelayServiceClient::new(channel.clone())
        .set_relay(pb::SetRelayRequest {
            channel: ch,
            energized: on,
        })
        .await
        .unwrap_or_else(|e| panic!("SetRelay {ch} {on}: {e}"));
}

/// The services a reflection client sees. v1 and v1alpha are the same
/// protocol under two generated modules.
macro_rules! list_services {
    ($pb:path, $channel:expr) => {{
        use reflection::server_reflection_request::MessageRequest;
        use reflection::server_reflection_response::MessageResponse;
        use $pb as reflection;
        let request = reflection::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers =
            reflection::server_reflection_client::ServerReflectionClient::new($channel.clone())
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .expect("reflection call")
                .into_inner();
        let answer = answers.next().await.expect("an answer").expect("ok");
        match answer.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list
                .service
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<String>>(),
            other => panic!("unexpected {other:?}"),
        }
    }};
}

#[tokio::test]
async fn serves_health_and_reflection_and_stops_cleanly_on_sigterm() {
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start(state.path(), &[]).await;

    let v1 = list_services!(tonic_reflection::pb::v1, channel);
    let v1alpha = list_services!(tonic_reflection::pb::v1alpha, channel);
    for (version, names) in [("v1", v1), ("v1alpha", v1alpha)] {
        // Only what this process serves.
        assert!(
            !names
                .iter()
                .any(|n| n.contains("Controller") || n.contains("Forecast")),
            "reflection {version} lists services served elsewhere: {names:?}"
        );
        for expected in [RELAY, "grpc.health.v1.Health"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from reflection {version}: {names:?}"
            );
        }
    }

    // An open WatchRelays stream must not hold the shutdown.
    let mut watch = RelayServiceClient::new(channel.clone())
        .watch_relays(pb::WatchRelaysRequest {})
        .await
        .expect("watch")
        .into_inner();
    tokio::time::timeout(BOUND, watch.next())
        .await
        .expect("snapshot");

    let status = svc.stop_with(Signal::SIGTERM).await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn sigint_stops_it_too() {
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, _channel) = start(state.path(), &[]).await;
    let status = svc.stop_with(Signal::SIGINT).await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn states_survive_a_restart_and_a_kill_9() {
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start(state.path(), &[]).await;
    set(&channel, 1, true).await;
    set(&channel, 4, true).await;
    assert!(svc.stop_with(Signal::SIGTERM).await.success());

    let (svc, channel) = start(state.path(), &[]).await;
    assert_eq!(energized(&channel).await, vec![1, 4]);
    set(&channel, 6, true).await;
    // No chance to clean up: the state file must already be right.
    svc.stop_with(Signal::SIGKILL).await;

    let (svc, channel) = start(state.path(), &[]).await;
    assert_eq!(energized(&channel).await, vec![1, 4, 6]);
    assert!(svc.stop_with(Signal::SIGTERM).await.success());

    let (svc, channel) = start(state.path(), &["--on-start", "off"]).await;
    assert_eq!(energized(&channel).await, Vec::<u32>::new());
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn the_config_file_sets_labels_and_channels_and_flags_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:1\"\nchannels = 4\n\n[labels]\n2 = \"water heater\"\n",
    )
    .expect("write config");
    let (svc, channel) = start(
        &dir.path().join("state"),
        &["--config", config.to_str().expect("utf-8")],
    )
    .await;
    let relays = RelayServiceClient::new(channel.clone())
        .get_relays(pb::GetRelaysRequest {})
        .await
        .expect("GetRelays")
        .into_inner();
    assert_eq!(relays.relays.len(), 4);
    assert_eq!(relays.relays[2].label, "water heater");
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn a_config_typo_stops_it_with_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "lisen = \"127.0.0.1:0\"\n").expect("write config");
    let (status, stderr) = run_to_exit(
        &binary("relay-service"),
        &["--config", config.to_str().expect("utf-8")],
    )
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("relay.toml") && stderr.contains("lisen"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_flag_value_says_what_is_allowed() {
    let (status, stderr) = run_to_exit(
        &binary("relay-service"),
        &["--max-switches-per-minute", "50"],
    )
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("--max-switches-per-minute") && stderr.contains("1 to 20"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let state = tempfile::tempdir().expect("tempdir");
    let (status, stderr) = run_to_exit(
        &binary("relay-service"),
        &[
            "--listen",
            &addr,
            "--state-dir",
            state.path().to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

/// grpcurl, as the README tells users to call the service: with no .proto at
/// hand, through reflection (grpcurl 1.8 speaks v1alpha only).
mod grpcurl {
    use super::*;
    use delestage_tests::grpcurl;

    #[tokio::test]
    async fn lists_describes_and_calls_the_service() {
        let state = tempfile::tempdir().expect("tempdir");
        let (svc, channel) = start(state.path(), &[]).await;
        let addr = svc.addr.clone();

        let list = grpcurl(&["-plaintext", &addr, "list"]).await;
        assert!(
            list.contains(RELAY) && list.contains("grpc.health.v1.Health"),
            "{list}"
        );

        let described = grpcurl(&[
            "-plaintext",
            &addr,
            "describe",
            "delestage.relay.v1.SetRelayRequest",
        ])
        .await;
        assert!(
            described.contains("uint32 channel = 1") && described.contains("bool energized = 2"),
            "{described}"
        );

        let set = grpcurl(&[
            "-plaintext",
            "-d",
            r#"{"channel": 6, "energized": true}"#,
            &addr,
            "delestage.relay.v1.RelayService/SetRelay",
        ])
        .await;
        assert!(set.contains("\"switched\": true"), "{set}");
        assert_eq!(energized(&channel).await, vec![6]);

        let health = grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]).await;
        assert!(health.contains("SERVING"), "{health}");
        assert!(svc.stop_with(Signal::SIGTERM).await.success());
    }
}

#[tokio::test]
async fn serves_prometheus_metrics_when_asked() {
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start(state.path(), &["--metrics", "127.0.0.1:0"]).await;
    let metrics_addr = svc.metrics_addr().await;

    set(&channel, 2, true).await;
    let err = RelayServiceClient::new(channel.clone())
        .set_relay(pb::SetRelayRequest {
            channel: 99,
            energized: true,
        })
        .await
        .expect_err("out of range");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let text = delestage_tests::scrape_metrics(&metrics_addr).await;
    for needle in [
        r#"grpc_server_handled_total{method="/delestage.relay.v1.RelayService/SetRelay",code="OK"} 1"#,
        r#"grpc_server_handled_total{method="/delestage.relay.v1.RelayService/SetRelay",code="INVALID_ARGUMENT"} 1"#,
        "grpc_server_handling_seconds_bucket{method=\"/delestage.relay.v1.RelayService/SetRelay\"",
        r#"relay_switches_total{channel="2"} 1"#,
        "relay_board_attached 1",
    ] {
        assert!(text.contains(needle), "no {needle} in:\n{text}");
    }
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

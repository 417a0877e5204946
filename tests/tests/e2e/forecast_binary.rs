//! forecast-service as a user runs it: the real binary, as a separate
//! process, against a local server that speaks RTE's Ecowatt API.

use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin};
use delestage_proto::forecast::v1 as pb;
use delestage_tests::{BOUND, ServiceProcess, binary, grpcurl, run_to_exit, run_to_exit_env};
use nix::sys::signal::Signal;
use pb::forecast_service_client::ForecastServiceClient;
use tonic::transport::Channel;

const FORECAST: &str = "delestage.forecast.v1.ForecastService";
const PRODUCTION: &[u8] =
    include_bytes!("../../../forecast-service/payloads/signals-production-shape.json");
const SANDBOX_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../forecast-service/payloads/signals-sandbox-v5.json"
);

const ID: &str = "e2e-client-id-7f3a";
const SECRET: &str = "e2e-client-secret-91bd22";

async fn start_rte(
    standin: &EcowattStandin,
    state: &std::path::Path,
    extra: &[&str],
) -> (ServiceProcess, Channel) {
    let url = standin.base_url();
    let state = state.to_str().expect("utf-8 path");
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state,
        "--ecowatt-url",
        &url,
        "--refresh-interval",
        "1h",
    ];
    args.extend_from_slice(extra);
    let svc = ServiceProcess::start(
        &binary("forecast-service"),
        &args,
        &[("ECOWATT_CLIENT_ID", ID), ("ECOWATT_CLIENT_SECRET", SECRET)],
    )
    .await;
    let channel = svc.wait_serving(FORECAST).await;
    (svc, channel)
}

async fn forecast_when_ready(channel: &Channel) -> pb::Forecast {
    let mut client = ForecastServiceClient::new(channel.clone());
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        match client.get_forecast(pb::GetForecastRequest {}).await {
            Ok(f) => return f.into_inner(),
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                assert!(std::time::Instant::now() < deadline, "no forecast: {s:?}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

#[tokio::test]
async fn fetches_logs_each_call_keeps_secrets_and_restarts_from_its_cache() {
    let standin = EcowattStandin::start(
        StandinConfig {
            client_id: ID.to_owned(),
            client_secret: SECRET.to_owned(),
            ..StandinConfig::default()
        },
        PRODUCTION,
    )
    .await;
    let state = tempfile::tempdir().expect("tempdir");
    let (svc, channel) = start_rte(&standin, state.path(), &["--metrics", "127.0.0.1:0"]).await;
    let f = forecast_when_ready(&channel).await;
    assert_eq!(f.hours.len(), 96);
    let metrics = delestage_tests::scrape_metrics(&svc.metrics_addr().await).await;
    for needle in [
        r#"ecowatt_requests_total{endpoint="token",status="200"} 1"#,
        r#"ecowatt_requests_total{endpoint="signals",status="200"} 1"#,
        "ecowatt_request_seconds_bucket{endpoint=\"signals\"",
    ] {
        assert!(metrics.contains(needle), "no {needle} in:\n{metrics}");
    }

    // One line per RTE call, with its status and duration.
    let call = svc.wait_for_log("RTE signals call").await;
    assert!(
        call.contains("\"status\":200") && call.contains("duration_ms"),
        "{call}"
    );
    svc.wait_for_log("got an RTE access token").await;
    assert!(svc.stop_with(Signal::SIGTERM).await.success());

    // A restart serves the cache and postpones the next call.
    let (svc, channel) = start_rte(&standin, state.path(), &[]).await;
    svc.wait_for_log("serving the cached forecast").await;
    svc.wait_for_log("next RTE call postponed").await;
    let again = forecast_when_ready(&channel).await;
    assert_eq!(again.fetched_at, f.fetched_at);
    assert_eq!(standin.signals_calls(), 1);

    let log = svc.log();
    assert!(svc.stop_with(Signal::SIGINT).await.success());
    for secret in [ID, SECRET, "standin-token-1"] {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
    }
}

#[tokio::test]
async fn serves_a_rebased_file_to_grpcurl() {
    let state = tempfile::tempdir().expect("tempdir");
    let svc = ServiceProcess::start(
        &binary("forecast-service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.path().to_str().expect("utf-8"),
            "--file",
            SANDBOX_FILE,
            "--rebase-to-today",
        ],
        &[],
    )
    .await;
    svc.wait_serving(FORECAST).await;
    let addr = svc.addr.clone();

    let list = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(list.contains(FORECAST), "{list}");
    // Now, whatever the hour: the first complete day of the sandbox is made
    // today, so its night is covered too.
    let level = grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &addr,
        "delestage.forecast.v1.ForecastService/GetLevel",
    ])
    .await;
    assert!(level.contains("\"level\": \"SIGNAL_LEVEL_"), "{level}");
    assert!(
        !level.contains("UNSPECIFIED"),
        "today is in a rebased forecast: {level}"
    );
    let at = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"at": "2030-01-01T12:30:00Z"}"#,
        &addr,
        "delestage.forecast.v1.ForecastService/GetLevel",
    ])
    .await;
    // Unknown hour: the level is left at its default (grpcurl omits it), the
    // hour is named.
    assert!(at.contains("\"start\": \"2030-01-01T12:00:00Z\""), "{at}");
    assert!(!at.contains("\"level\""), "{at}");
    let forecast = grpcurl(&[
        "-plaintext",
        &addr,
        "delestage.forecast.v1.ForecastService/GetForecast",
    ])
    .await;
    assert!(forecast.contains("FORECAST_SOURCE_FILE"), "{forecast}");
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn config_errors_stop_it_with_a_clear_message() {
    let bin = binary("forecast-service");

    let (status, stderr) = run_to_exit(&bin, &["--listen", "127.0.0.1:0"]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("ECOWATT_CLIENT_ID") && stderr.contains("--source file"),
        "{stderr}"
    );

    let (status, stderr) = run_to_exit_env(
        &bin,
        &["--listen", "127.0.0.1:0", "--refresh-interval", "5m"],
        &[("ECOWATT_CLIENT_ID", ID), ("ECOWATT_CLIENT_SECRET", SECRET)],
    )
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("--refresh-interval") && stderr.contains("15 minutes"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET));

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("forecast.toml");
    std::fs::write(&config, "sorce = \"file\"\n").expect("write");
    let (status, stderr) = run_to_exit(&bin, &["--config", config.to_str().expect("utf-8")]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("forecast.toml") && stderr.contains("sorce"),
        "{stderr}"
    );

    let (status, help) = {
        let out = tokio::process::Command::new(&bin)
            .arg("--help")
            .output()
            .await
            .expect("run");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(status.success());
    for needle in [
        "--source",
        "--rebase-to-today",
        "ECOWATT_CLIENT_SECRET",
        "--refresh-interval",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

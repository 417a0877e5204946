//! Forecast replicas as an installer deploys them: a root forecast-service
//! that calls RTE (the stand-in), three replicas as separate processes (two
//! following the root, one following another replica), and a thousand
//! clients watching the forecast, spread over the replicas. RTE sees one
//! call per refresh whatever the number of clients, and the replicas keep
//! answering while the root restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin, uniform_body_around_now};
use delestage_proto::forecast::v1 as pb;
use delestage_tests::{BOUND, ServiceProcess, binary, poll};
use nix::sys::signal::Signal;
use pb::forecast_service_client::ForecastServiceClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const FORECAST: &str = "delestage.forecast.v1.ForecastService";
const CLIENTS: usize = 1000;
/// Connections per replica the clients share (as many services would).
const CONNECTIONS_PER_REPLICA: usize = 10;
/// The root's refresh interval (RTE's is 15 minutes; the stand-in has no
/// limit, so the test can see several refreshes).
const REFRESH: Duration = Duration::from_secs(2);

async fn start_root(
    standin: &EcowattStandin,
    state: &std::path::Path,
    listen: &str,
) -> ServiceProcess {
    let svc = ServiceProcess::start(
        &binary("forecast-service"),
        &[
            "--listen",
            listen,
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--ecowatt-url",
            &standin.base_url(),
            "--refresh-interval",
            "2s",
            "--call-margin",
            "0s",
        ],
        &[
            ("ECOWATT_CLIENT_ID", "test-client-id"),
            ("ECOWATT_CLIENT_SECRET", "test-client-secret"),
        ],
    )
    .await;
    svc.wait_serving(FORECAST).await;
    svc
}

async fn start_replica(upstream: &ServiceProcess, state: &std::path::Path) -> ServiceProcess {
    let svc = ServiceProcess::start(
        &binary("forecast-service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--upstream",
            &format!("http://{}", upstream.addr),
        ],
        &[],
    )
    .await;
    svc.wait_serving(FORECAST).await;
    svc
}

/// Every hour of `f` is at `level` (the stand-in's bodies are uniform).
fn all_at(f: &pb::Forecast, level: pb::SignalLevel) -> bool {
    !f.hours.is_empty() && f.hours.iter().all(|h| h.level() == level)
}

#[tokio::test]
async fn a_root_three_replicas_and_a_thousand_clients_cost_one_rte_call_per_refresh() {
    let standin =
        EcowattStandin::start(StandinConfig::unlimited(), uniform_body_around_now(1)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let root = start_root(&standin, &dir.path().join("root"), "127.0.0.1:0").await;
    let root_addr = root.addr.clone();
    let r1 = start_replica(&root, &dir.path().join("r1")).await;
    let r2 = start_replica(&root, &dir.path().join("r2")).await;
    let r3 = start_replica(&r1, &dir.path().join("r3")).await;
    let replicas = [&r1, &r2, &r3];

    let mut channels: Vec<Channel> = Vec::new();
    for replica in replicas {
        for _ in 0..CONNECTIONS_PER_REPLICA {
            channels.push(replica.channel().await);
        }
    }
    // Every client watches the forecast and counts what it sees.
    let saw_green = Arc::new(AtomicUsize::new(0));
    let saw_orange = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut client = ForecastServiceClient::new(channels[i % channels.len()].clone());
        let (green, orange) = (Arc::clone(&saw_green), Arc::clone(&saw_orange));
        clients.push(tokio::spawn(async move {
            let mut stream = client
                .watch_forecast(pb::WatchForecastRequest {})
                .await
                .expect("a replica accepts the stream")
                .into_inner();
            let mut seen_green = false;
            while let Some(message) = stream.next().await {
                let f = message.expect("a forecast");
                assert_eq!(
                    f.source(),
                    pb::ForecastSource::Upstream,
                    "{}",
                    f.source_detail
                );
                if !seen_green && all_at(&f, pb::SignalLevel::Green) {
                    seen_green = true;
                    green.fetch_add(1, Ordering::SeqCst);
                }
                if all_at(&f, pb::SignalLevel::Orange) {
                    orange.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }));
    }
    poll(
        "every client has the green forecast",
        || async { saw_green.load(Ordering::SeqCst) },
        |n| *n == CLIENTS,
    )
    .await;
    let calls_at = |elapsed: Duration| elapsed.as_millis() / REFRESH.as_millis() + 1;
    let calls = standin.signals_calls();
    assert!(
        calls as u128 <= calls_at(started.elapsed()),
        "{calls} RTE calls in {:?} with a {REFRESH:?} refresh",
        started.elapsed()
    );

    // The root stops: the replicas keep answering from what they hold.
    assert!(root.stop_with(Signal::SIGTERM).await.success());
    for replica in replicas {
        let mut client = ForecastServiceClient::new(replica.channel().await);
        for _ in 0..10 {
            let f = client
                .get_forecast(pb::GetForecastRequest {})
                .await
                .expect("served while the root is down")
                .into_inner();
            assert!(all_at(&f, pb::SignalLevel::Green));
        }
    }
    // RTE now says orange. The root comes back on its address, serves its
    // cache, calls RTE when its refresh is due, and every client hears of
    // it through the replicas, which reconnected by themselves.
    standin.set_signals(uniform_body_around_now(2));
    let root = start_root(&standin, &dir.path().join("root"), &root_addr).await;
    poll(
        "every client has the orange forecast",
        || async { saw_orange.load(Ordering::SeqCst) },
        |n| *n == CLIENTS,
    )
    .await;
    for client in clients {
        tokio::time::timeout(BOUND, client)
            .await
            .expect("the client ends")
            .expect("the client saw what it should");
    }
    let calls = standin.signals_calls();
    assert!(
        calls as u128 <= calls_at(started.elapsed()),
        "{calls} RTE calls in {:?} with a {REFRESH:?} refresh",
        started.elapsed()
    );
    // Only the root ever called.
    for replica in replicas {
        assert!(!replica.log().contains("RTE signals call"));
    }
    for svc in [root, r3, r2, r1] {
        assert!(svc.stop_with(Signal::SIGTERM).await.success());
    }
}

//! Replicas (`--source upstream`): a forecast-service following another one
//! through WatchForecast and WatchTempo, both real tonic servers on
//! 127.0.0.1, in-process. The replica serves what its upstream has, keeps
//! it through the upstream's restart and its own, and follows again.

use std::path::Path;
use std::time::Duration;

use delestage_ecowatt_standin::tempo::{paris_today, tempo_body_around_now};
use delestage_forecast_service::UpstreamSettings;
use delestage_forecast_service::config::{Settings, SourceSettings, TempoSettings};
use delestage_proto::forecast::v1 as pb;
use tokio::net::TcpListener;
use tonic::Code;

use delestage_tests::BOUND;
use delestage_tests::in_process::forecast::{Running, next_forecast};

const PRODUCTION: &[u8] =
    include_bytes!("../../../forecast-service/payloads/signals-production-shape.json");
const SANDBOX: &[u8] = include_bytes!("../../../forecast-service/payloads/signals-sandbox-v5.json");

/// A root serving `signals.json` (and `tempo.json` when `tempo`) from `dir`.
fn root_settings(dir: &Path, tempo: bool) -> Settings {
    let mut settings = Settings::with_file(dir.join("signals.json"), dir.join("root-state"));
    if tempo {
        settings.tempo = TempoSettings::File {
            path: dir.join("tempo.json"),
            rebase_to_today: false,
        };
    }
    settings
}

/// A replica of `upstream`, its state in `state`.
fn replica_settings(upstream: &str, state: &Path) -> Settings {
    let mut settings = Settings::with_file("unused", state);
    settings.source = SourceSettings::Upstream(UpstreamSettings {
        url: upstream.to_owned(),
        security: Default::default(),
    });
    settings
}

async fn tempo_of(svc: &mut Running) -> Result<pb::TempoCalendar, tonic::Status> {
    svc.client
        .get_tempo(pb::GetTempoRequest {})
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_replica_serves_its_upstreams_forecast_and_follows_every_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("signals.json"), PRODUCTION).expect("write");
    std::fs::write(
        dir.path().join("tempo.json"),
        tempo_body_around_now("BLUE", "WHITE", Some("RED")),
    )
    .expect("write");
    let mut root = Running::start(root_settings(dir.path(), true)).await;
    let root_url = format!("http://{}", root.addr());
    let mut replica = Running::start(replica_settings(&root_url, &dir.path().join("r1"))).await;
    // A replica of the replica: a tree.
    let replica_url = format!("http://{}", replica.addr());
    let mut leaf = Running::start(replica_settings(&replica_url, &dir.path().join("r2"))).await;

    let from_root = root.forecast().await.expect("root");
    for (svc, url) in [(&mut replica, &root_url), (&mut leaf, &replica_url)] {
        let f = svc
            .forecast_until("the upstream's forecast", |r| r.is_ok())
            .await;
        let f = f.expect("served");
        assert_eq!(f.hours, from_root.hours);
        assert_eq!(f.days, from_root.days);
        assert_eq!(
            f.fetched_at, from_root.fetched_at,
            "fetched when the root fetched it"
        );
        assert_eq!(f.source(), pb::ForecastSource::Upstream);
        assert_eq!(&f.source_detail, url);
    }
    // Tempo follows too.
    let root_tempo = tempo_of(&mut root).await.expect("root Tempo");
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match tempo_of(&mut leaf).await {
            Ok(t) => {
                assert_eq!(t.days, root_tempo.days);
                break;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "no Tempo on the leaf: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        root_tempo
            .days
            .iter()
            .any(|d| d.date == paris_today().to_string())
    );

    // A new forecast at the root reaches the leaf's watchers.
    let mut watch = leaf.watch().await;
    assert_eq!(next_forecast(&mut watch).await.hours.len(), 96);
    std::fs::write(dir.path().join("signals.json"), SANDBOX).expect("write");
    assert_eq!(next_forecast(&mut watch).await.hours.len(), 89);

    leaf.stop().await;
    replica.stop().await;
    root.stop().await;
}

#[tokio::test]
async fn a_replica_serves_through_its_upstreams_restart_and_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("signals.json"), PRODUCTION).expect("write");
    let root = Running::start(root_settings(dir.path(), false)).await;
    let root_addr = root.addr();
    let root_url = format!("http://{root_addr}");
    let replica_state = dir.path().join("replica");
    let mut replica = Running::start(replica_settings(&root_url, &replica_state)).await;
    replica
        .forecast_until("the first forecast", |r| r.is_ok())
        .await
        .expect("served");
    let mut watch = replica.watch().await;
    assert_eq!(next_forecast(&mut watch).await.hours.len(), 96);

    // The root goes away: the replica keeps answering.
    root.stop().await;
    for _ in 0..20 {
        let f = replica.forecast().await.expect("served through the outage");
        assert_eq!(f.hours.len(), 96);
    }
    // The replica restarts while the root is down: it serves its cache.
    replica.stop().await;
    drop(watch);
    let mut replica = Running::start(replica_settings(&root_url, &replica_state)).await;
    let f = replica.forecast().await.expect("the cache, at once");
    assert_eq!(f.hours.len(), 96);
    assert_eq!(f.source(), pb::ForecastSource::Upstream);
    // Tempo: the replica does not know yet whether its upstream has it.
    let err = tempo_of(&mut replica).await.expect_err("no calendar");
    assert_eq!(err.code(), Code::Unavailable);

    // The root comes back on its address with a new forecast: the replica
    // reconnects (with back-off) and follows it.
    std::fs::write(dir.path().join("signals.json"), SANDBOX).expect("write");
    let listener = TcpListener::bind(root_addr).await.expect("the same port");
    let root = Running::start_on(root_settings(dir.path(), false), listener).await;
    let mut watch = replica.watch().await;
    let deadline = tokio::time::Instant::now() + BOUND;
    while next_forecast(&mut watch).await.hours.len() != 89 {
        assert!(tokio::time::Instant::now() < deadline);
    }
    // The root has Tempo off: so does the replica, and it says so.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let err = tempo_of(&mut replica).await.expect_err("Tempo is off");
        if pb::has_reason(&err, pb::TEMPO_NOT_ENABLED) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{err:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replica.stop().await;
    root.stop().await;
}

#[tokio::test]
async fn a_replica_with_nothing_cached_and_no_upstream_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 1 on loopback: nothing listens there.
    let mut replica = Running::start(replica_settings(
        "http://127.0.0.1:1",
        &dir.path().join("r"),
    ))
    .await;
    let r = replica
        .forecast_until("the reason", |r| {
            r.as_ref()
                .err()
                .is_some_and(|e| e.message().contains("upstream http://127.0.0.1:1"))
        })
        .await;
    assert_eq!(r.expect_err("no forecast").code(), Code::Unavailable);
    replica.stop().await;
}

//! forecast-service against a local HTTP server that speaks RTE's Ecowatt
//! API (the stand-in, with scripted faults), served in-process by a real
//! tonic server on 127.0.0.1:0 (`delestage_tests::in_process::forecast`)
//! and called by a real gRPC client. Its Tempo calendar is in [`tempo`],
//! replicas in [`upstream`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin, Reply, signals_body};
use delestage_forecast_service::config::{Settings, SourceSettings};
use delestage_proto::forecast::v1 as pb;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::Code;

use delestage_tests::BOUND;
use delestage_tests::in_process::forecast::{Running, next_forecast, rte_settings, unlimited};

mod tempo;
mod upstream;

const HOUR: Duration = Duration::from_secs(3600);

const PRODUCTION: &[u8] =
    include_bytes!("../../../forecast-service/payloads/signals-production-shape.json");
const SANDBOX: &[u8] = include_bytes!("../../../forecast-service/payloads/signals-sandbox-v5.json");

fn with_timeout(mut settings: Settings, timeout: Duration) -> Settings {
    if let SourceSettings::Rte(rte) = &mut settings.source {
        rte.request_timeout = timeout;
    }
    settings
}

fn ts(t: &Option<prost_types::Timestamp>) -> jiff::Timestamp {
    let t = t.as_ref().expect("timestamp set");
    jiff::Timestamp::new(t.seconds, t.nanos).expect("valid")
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().expect("timestamp")
}

fn unavailable_message(r: &Result<pb::Forecast, tonic::Status>) -> Option<String> {
    match r {
        Err(s) if s.code() == Code::Unavailable => Some(s.message().to_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn fetches_with_a_token_and_serves_every_hour_and_day() {
    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;

    let f = svc
        .forecast_until("the first forecast", |r| r.is_ok())
        .await
        .expect("forecast");
    assert_eq!(f.days.len(), 4);
    assert_eq!(f.hours.len(), 96);
    assert_eq!(f.source(), pb::ForecastSource::Rte);
    assert!(
        f.source_detail.ends_with("/open_api/ecowatt/v5/signals"),
        "{}",
        f.source_detail
    );
    assert!(!f.stale);
    assert_eq!(ts(&f.generated_at), at("2026-12-06T22:00:00Z"));
    assert_eq!(ts(&f.days[0].start), at("2026-12-06T23:00:00Z"));
    assert_eq!(f.days[0].message, "Pas d\u{2019}alerte.");
    assert_eq!(f.days[2].level(), pb::SignalLevel::Red);
    assert!(f.hours.windows(2).all(|w| w[0].end == w[1].start));
    assert_eq!(ts(&f.hours[0].start), at("2026-12-06T23:00:00Z"));

    // 2026-12-08, pas 8 is orange (hvalue 2): 07:00 UTC.
    let level = svc.level_at("2026-12-08T07:30:00Z").await;
    assert_eq!(level.level(), pb::SignalLevel::Orange);
    assert_eq!(ts(&level.start), at("2026-12-08T07:00:00Z"));
    assert_eq!(ts(&level.end), at("2026-12-08T08:00:00Z"));
    // Beyond the forecast: unknown, but the hour is still named.
    let unknown = svc.level_at("2027-01-01T12:30:00Z").await;
    assert_eq!(unknown.level(), pb::SignalLevel::Unspecified);
    assert_eq!(ts(&unknown.start), at("2027-01-01T12:00:00Z"));

    // One token, one signals call, with the right headers.
    let calls = standin.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].path, delestage_ecowatt_standin::TOKEN_PATH);
    assert!(
        calls[0]
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
    );
    assert_eq!(
        calls[1].authorization.as_deref(),
        Some("Bearer standin-token-1")
    );
    svc.stop().await;
}

#[tokio::test]
async fn the_sandbox_path_is_used_with_sandbox() {
    let standin = EcowattStandin::start(StandinConfig::default(), b"not used".to_vec()).await;
    standin.set_sandbox_signals(SANDBOX);
    let state = tempfile::tempdir().expect("tempdir");
    let mut settings = rte_settings(&standin, state.path(), HOUR);
    if let SourceSettings::Rte(rte) = &mut settings.source {
        rte.sandbox = true;
    }
    let mut svc = Running::start(settings).await;
    let f = svc
        .forecast_until("the sandbox forecast", |r| r.is_ok())
        .await
        .expect("forecast");
    assert_eq!(f.source(), pb::ForecastSource::RteSandbox);
    assert!(
        f.source_detail
            .ends_with("/open_api/ecowatt/v5/sandbox/signals")
    );
    // Days in any order and a partial day: 17 + 3 * 24 hours.
    assert_eq!(f.days.len(), 4);
    assert_eq!(f.hours.len(), 17 + 72);
    assert_eq!(
        standin.calls()[1].path,
        delestage_ecowatt_standin::SANDBOX_PATH
    );
    svc.stop().await;
}

#[tokio::test]
async fn the_sandbox_rebased_to_today_covers_now_and_a_restart_rebases_the_cache() {
    let standin = EcowattStandin::start(StandinConfig::default(), b"not used".to_vec()).await;
    standin.set_sandbox_signals(SANDBOX);
    let state = tempfile::tempdir().expect("tempdir");
    let settings = || {
        let mut settings = rte_settings(&standin, state.path(), HOUR);
        if let SourceSettings::Rte(rte) = &mut settings.source {
            rte.sandbox = true;
            rte.rebase_to_today = true;
        }
        settings
    };
    let mut svc = Running::start(settings()).await;
    svc.forecast_until("the sandbox forecast", |r| r.is_ok())
        .await
        .expect("forecast");
    let now = jiff::Timestamp::now().to_string();
    let level = svc.level_at(&now).await;
    assert_ne!(level.level(), pb::SignalLevel::Unspecified, "{now}");
    svc.stop().await;

    // From the cache (raw 2022 body), rebased again.
    let mut svc = Running::start(settings()).await;
    let level = svc.level_at(&now).await;
    assert_ne!(level.level(), pb::SignalLevel::Unspecified, "{now}");
    svc.stop().await;
    assert_eq!(standin.signals_calls(), 1);
}

#[tokio::test]
async fn a_burst_of_concurrent_clients_makes_exactly_one_upstream_call() {
    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    // A slow first answer, so that clients arrive while it is in flight.
    standin.push_signals_reply(Reply::Slow {
        delay: Duration::from_millis(300),
        then: None,
    });
    let state = tempfile::tempdir().expect("tempdir");
    let svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;

    let mut clients = Vec::new();
    for i in 0..200 {
        let mut client = svc.client.clone();
        clients.push(tokio::spawn(async move {
            if i % 4 == 0 {
                // Watchers get the forecast as soon as it exists.
                let mut stream = client
                    .watch_forecast(pb::WatchForecastRequest {})
                    .await
                    .expect("watch")
                    .into_inner();
                return next_forecast(&mut stream).await.hours.len();
            }
            let deadline = Instant::now() + BOUND;
            loop {
                match client.get_forecast(pb::GetForecastRequest {}).await {
                    Ok(f) => return f.into_inner().hours.len(),
                    Err(s) => {
                        assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                        assert!(Instant::now() < deadline, "no forecast in time");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    for c in clients {
        assert_eq!(c.await.expect("client"), 96);
    }
    assert_eq!(standin.signals_calls(), 1);
    assert_eq!(standin.token_calls(), 1);
    svc.stop().await;
    assert_eq!(standin.signals_calls(), 1);
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after_and_reported_meanwhile() {
    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    standin.push_signals_reply(Reply::TooManyRequests {
        retry_after_secs: 1,
    });
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;

    let r = svc
        .forecast_until("the 429 to be reported", |r| {
            unavailable_message(r).is_some_and(|m| m.contains("429"))
        })
        .await;
    let msg = unavailable_message(&r).expect("unavailable");
    assert!(
        msg.starts_with("no forecast yet: RTE answered 429"),
        "{msg}"
    );
    assert!(msg.contains("TOO_MANY_REQUESTS"), "{msg}");

    svc.forecast_until("the retry to succeed", |r| r.is_ok())
        .await
        .expect("forecast");
    let calls: Vec<_> = standin
        .calls()
        .into_iter()
        .filter(|c| c.path != delestage_ecowatt_standin::TOKEN_PATH)
        .collect();
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let gap = calls[1].at - calls[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}, Retry-After said 1s"
    );
    svc.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_the_call_retried() {
    let standin = EcowattStandin::start(unlimited(), PRODUCTION).await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(rte_settings(
        &standin,
        state.path(),
        Duration::from_millis(200),
    ))
    .await;
    svc.forecast_until("the first forecast", |r| r.is_ok())
        .await
        .expect("forecast");

    standin.expire_tokens();
    standin.wait_for_signals_calls(3, BOUND).await;
    let calls = standin.calls();
    let summary: Vec<_> = calls
        .iter()
        .take(5)
        .map(|c| (c.path.as_str(), c.status))
        .collect();
    assert_eq!(
        summary,
        [
            (delestage_ecowatt_standin::TOKEN_PATH, 200),
            (delestage_ecowatt_standin::SIGNALS_PATH, 200),
            (delestage_ecowatt_standin::SIGNALS_PATH, 401),
            (delestage_ecowatt_standin::TOKEN_PATH, 200),
            (delestage_ecowatt_standin::SIGNALS_PATH, 200),
        ]
    );
    assert_eq!(
        calls[4].authorization.as_deref(),
        Some("Bearer standin-token-2")
    );
    svc.stop().await;
}

#[tokio::test]
async fn rte_errors_are_reported_with_their_status_not_as_parse_errors() {
    let cases = [
        (
            Reply::Error {
                status: 500,
                error: "INTERNAL_ERROR",
                description: "Le service est indisponible",
            },
            "RTE answered 500",
            "INTERNAL_ERROR: Le service est indisponible",
        ),
        (
            Reply::Html503,
            "RTE answered 503",
            "HTML page: 503 Service Unavailable",
        ),
        (
            Reply::Error {
                status: 403,
                error: "FORBIDDEN",
                description: "v4 key on v5",
            },
            "RTE answered 403",
            "FORBIDDEN: v4 key on v5",
        ),
    ];
    for (reply, status, detail) in cases {
        let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
        standin.push_signals_reply(reply);
        let state = tempfile::tempdir().expect("tempdir");
        let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;
        let r = svc
            .forecast_until(status, |r| {
                unavailable_message(r).is_some_and(|m| m.contains(status))
            })
            .await;
        let msg = unavailable_message(&r).expect("unavailable");
        assert!(msg.contains(detail), "{msg}");
        assert!(!msg.contains("rejected"), "{msg}");
        svc.stop().await;
    }
}

#[tokio::test]
async fn bad_credentials_and_a_token_answer_without_a_token_say_so() {
    let standin = EcowattStandin::start(
        StandinConfig {
            client_secret: "another-secret".to_owned(),
            ..StandinConfig::default()
        },
        PRODUCTION,
    )
    .await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;
    let r = svc
        .forecast_until("the refusal", |r| {
            unavailable_message(r).is_some_and(|m| m.contains("token"))
        })
        .await;
    let msg = unavailable_message(&r).expect("unavailable");
    assert!(
        msg.contains("401") && msg.contains("invalid_client"),
        "{msg}"
    );
    assert!(msg.contains("ECOWATT_CLIENT_ID"), "{msg}");
    assert!(
        !msg.contains("test-client-secret"),
        "the secret leaked: {msg}"
    );
    svc.stop().await;

    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    standin.push_token_reply(Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: br#"{"token_type":"Bearer","expires_in":7200}"#.to_vec(),
    });
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;
    let r = svc
        .forecast_until("the bad token answer", |r| {
            unavailable_message(r).is_some_and(|m| m.contains("token"))
        })
        .await;
    let msg = unavailable_message(&r).expect("unavailable");
    assert!(msg.contains("no access_token"), "{msg}");
    assert_eq!(standin.signals_calls(), 0);
    svc.stop().await;
}

#[tokio::test]
async fn slow_and_malformed_answers_keep_the_last_good_forecast() {
    let standin = EcowattStandin::start(unlimited(), PRODUCTION).await;
    let state = tempfile::tempdir().expect("tempdir");
    let settings = with_timeout(
        rte_settings(&standin, state.path(), Duration::from_millis(100)),
        Duration::from_millis(300),
    );
    let mut svc = Running::start(settings).await;
    let good = svc
        .forecast_until("the first forecast", |r| r.is_ok())
        .await
        .expect("forecast");

    // The following answers are bad, each in its own way.
    let bad = [
        Reply::Slow {
            delay: Duration::from_secs(2),
            then: None,
        },
        Reply::Raw {
            status: 200,
            content_type: "application/json",
            body: b"{\"signals\":[{\"GenerationFich".to_vec(),
        },
        Reply::Raw {
            status: 200,
            content_type: "application/json",
            body: signals_body(
                "2026-12-07T23:00:00+01:00",
                &[("2026-12-08T00:00:00+01:00", vec![Some(7); 24])],
            ),
        },
        Reply::Raw {
            status: 200,
            content_type: "application/json",
            body: b"{\"signals\":[]}".to_vec(),
        },
        Reply::Raw {
            status: 200,
            content_type: "text/html",
            body: b"<html>maintenance</html>".to_vec(),
        },
    ];
    // A different good body after them, to see that they changed nothing.
    standin.set_signals(signals_body(
        "2026-12-07T23:00:00+01:00",
        &[("2026-12-08T00:00:00+01:00", vec![Some(1); 24])],
    ));
    for reply in bad.iter().cloned() {
        standin.push_signals_reply(reply);
    }
    let deadline = Instant::now() + BOUND;
    loop {
        match svc.forecast().await {
            Ok(f) if f.hours.len() == 24 => break,
            Ok(f) => {
                // Still the first forecast, whatever happened since.
                assert_eq!(f.hours, good.hours);
                assert_eq!(f.generated_at, good.generated_at);
            }
            Err(s) => panic!("the last good forecast was dropped: {s:?}"),
        }
        assert!(Instant::now() < deadline, "no good answer in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every bad answer was used before the good one got through: the slow
    // one timed out (had it been waited for, it would have brought the new
    // forecast first).
    assert_eq!(standin.pending_signals_replies(), 0);
    svc.stop().await;
}

#[tokio::test]
async fn rte_down_at_first_start_is_unavailable_with_the_reason() {
    // A port with nothing behind it.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let state = tempfile::tempdir().expect("tempdir");
    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    let mut settings = rte_settings(&standin, state.path(), HOUR);
    if let SourceSettings::Rte(rte) = &mut settings.source {
        rte.base = format!("http://{addr}").parse().expect("url");
    }
    let mut svc = Running::start(settings).await;
    let r = svc
        .forecast_until("the failure", |r| {
            unavailable_message(r).is_some_and(|m| m.contains("cannot"))
        })
        .await;
    let msg = unavailable_message(&r).expect("unavailable");
    assert!(msg.contains(&addr.to_string()), "{msg}");
    let level = svc
        .client
        .get_level(pb::GetLevelRequest { at: None })
        .await
        .expect_err("no forecast");
    assert_eq!(level.code(), Code::Unavailable);
    svc.stop().await;
}

#[tokio::test]
async fn a_restart_serves_the_cache_without_calling_rte() {
    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;
    let first = svc
        .forecast_until("the first forecast", |r| r.is_ok())
        .await
        .expect("forecast");
    svc.stop().await;
    assert_eq!(standin.signals_calls(), 1);

    // Restart: the forecast is there at once, from the cache.
    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;
    let again = svc.forecast().await.expect("served from the cache at once");
    assert_eq!(again.hours, first.hours);
    assert_eq!(again.fetched_at, first.fetched_at);
    svc.stop().await;
    assert_eq!(
        standin.signals_calls(),
        1,
        "a restart with a fresh cache called RTE"
    );
}

#[tokio::test]
async fn a_corrupt_cache_is_set_aside_and_the_forecast_refetched() {
    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        state.path().join("forecast-cache.json"),
        b"{\"version\":1,\"sou",
    )
    .expect("write");
    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;
    svc.forecast_until("the forecast", |r| r.is_ok())
        .await
        .expect("forecast");
    svc.stop().await;
    let names: Vec<String> = std::fs::read_dir(state.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("forecast-cache.json.corrupt-")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "forecast-cache.json"),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_cache_that_fails_validation_is_set_aside_and_rte_called_at_once() {
    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    let state = tempfile::tempdir().expect("tempdir");
    // Well-formed, for this URL, with the next call an hour away: only the
    // body is wrong (an hvalue of 7). It used to keep the service without a
    // forecast until `next_attempt_at`.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let bad_body = String::from_utf8(signals_body(
        "2026-12-06T23:00:00+01:00",
        &[("2026-12-07T00:00:00+01:00", vec![Some(7); 24])],
    ))
    .expect("utf-8");
    let cache = serde_json::json!({
        "version": 1,
        "source_detail": format!("{}{}", standin.base_url(), delestage_ecowatt_standin::SIGNALS_PATH),
        "fetched_at": jiff::Timestamp::now().to_string(),
        "body": bad_body,
        "next_attempt_at": later.to_string(),
    });
    std::fs::write(
        state.path().join("forecast-cache.json"),
        serde_json::to_vec(&cache).expect("json"),
    )
    .expect("write");

    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;
    let forecast = svc
        .forecast_until("the forecast from RTE", |r| r.is_ok())
        .await
        .expect("forecast");
    assert_eq!(standin.signals_calls(), 1);
    assert!(!forecast.hours.is_empty());
    svc.stop().await;
    let names: Vec<String> = std::fs::read_dir(state.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("forecast-cache.json.corrupt-")),
        "the bad cache was not kept aside: {names:?}"
    );
}

#[tokio::test]
async fn signals_calls_are_spaced_from_each_other_whatever_the_token_calls_take() {
    // Tokens live 1 s and are renewed at half-life, and every renewal is
    // slow: a token call sits between most signals calls. Spacing counted
    // from the start of an attempt let a slow token call bring two signals
    // calls 100 ms apart.
    let standin = EcowattStandin::start(
        StandinConfig {
            token_lifetime: Duration::from_secs(1),
            ..unlimited()
        },
        PRODUCTION,
    )
    .await;
    for _ in 0..4 {
        standin.push_token_reply(Reply::Slow {
            delay: Duration::from_millis(300),
            then: None,
        });
    }
    let state = tempfile::tempdir().expect("tempdir");
    let interval = Duration::from_millis(300);
    let margin = Duration::from_millis(100);
    let mut settings = rte_settings(&standin, state.path(), interval);
    if let SourceSettings::Rte(rte) = &mut settings.source {
        rte.policy.margin = margin;
    }
    let svc = Running::start(settings).await;
    standin.wait_for_signals_calls(5, BOUND).await;
    svc.stop().await;

    let signals: Vec<Instant> = standin
        .calls()
        .iter()
        .filter(|c| c.path == delestage_ecowatt_standin::SIGNALS_PATH)
        .map(|c| c.at)
        .collect();
    assert!(
        standin.token_calls() >= 2,
        "no renewal happened between signals calls"
    );
    for pair in signals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= interval + margin,
            "two signals calls {gap:?} apart; the interval and margin are {:?}",
            interval + margin
        );
    }
}

/// A full day of green with one level at `pas`.
fn day_with(pas: usize, level: u8) -> Vec<Option<u8>> {
    let mut hours = vec![Some(1); 24];
    hours[pas] = Some(level);
    hours
}

#[tokio::test]
async fn dst_days_of_2026_are_contiguous_in_utc() {
    let body = signals_body(
        "2026-03-28T12:00:00+01:00",
        &[
            ("2026-10-25T00:00:00+02:00", day_with(2, 3)),
            ("2026-03-29T00:00:00+01:00", day_with(2, 2)),
        ],
    );
    let standin = EcowattStandin::start(StandinConfig::default(), body).await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;
    let f = svc
        .forecast_until("the forecast", |r| r.is_ok())
        .await
        .expect("forecast");

    let split = at("2026-06-01T00:00:00Z");
    let march: Vec<_> = f.hours.iter().filter(|h| ts(&h.start) < split).collect();
    let october: Vec<_> = f.hours.iter().filter(|h| ts(&h.start) > split).collect();
    // 29 March: 23 hours; pas 2 does not exist, so its orange goes to
    // 03:00 CEST (01:00 UTC), and no tense hour is lost.
    assert_eq!(march.len(), 23);
    for h in &march {
        let expected = if ts(&h.start) == at("2026-03-29T01:00:00Z") {
            pb::SignalLevel::Orange
        } else {
            pb::SignalLevel::Green
        };
        assert_eq!(h.level(), expected, "{h:?}");
    }
    assert!(march.windows(2).all(|w| w[0].end == w[1].start));
    assert_eq!(ts(&march[0].start), at("2026-03-28T23:00:00Z"));
    assert_eq!(ts(&march[22].end), at("2026-03-29T22:00:00Z"));
    // 25 October: 24 pas over 25 hours; pas 2 (red) lasts two.
    assert_eq!(october.len(), 24);
    assert!(october.windows(2).all(|w| w[0].end == w[1].start));
    assert_eq!(ts(&october[0].start), at("2026-10-24T22:00:00Z"));
    assert_eq!(ts(&october[23].end), at("2026-10-25T23:00:00Z"));
    for t in ["2026-10-25T00:00:00Z", "2026-10-25T01:59:59Z"] {
        let level = svc.level_at(t).await;
        assert_eq!(level.level(), pb::SignalLevel::Red, "{t}");
        assert_eq!(ts(&level.start), at("2026-10-25T00:00:00Z"));
        assert_eq!(ts(&level.end), at("2026-10-25T02:00:00Z"));
    }
    let after = svc.level_at("2026-10-25T02:00:00Z").await;
    assert_eq!(after.level(), pb::SignalLevel::Green);
    svc.stop().await;
}

#[tokio::test]
async fn get_level_rejects_an_invalid_time() {
    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(rte_settings(&standin, state.path(), HOUR)).await;
    svc.forecast_until("the forecast", |r| r.is_ok())
        .await
        .expect("forecast");
    let err = svc
        .client
        .get_level(pb::GetLevelRequest {
            at: Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
        })
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("at:"), "{}", err.message());
    svc.stop().await;
}

#[tokio::test]
async fn watch_forecast_sends_the_current_forecast_then_every_new_one() {
    let standin = EcowattStandin::start(
        unlimited(),
        signals_body(
            "2026-12-07T23:00:00+01:00",
            &[("2026-12-08T00:00:00+01:00", day_with(18, 2))],
        ),
    )
    .await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(rte_settings(
        &standin,
        state.path(),
        Duration::from_millis(200),
    ))
    .await;
    svc.forecast_until("the forecast", |r| r.is_ok())
        .await
        .expect("forecast");
    let mut watch = svc.watch().await;
    let first = next_forecast(&mut watch).await;
    assert_eq!(first.hours[18].level(), pb::SignalLevel::Orange);

    // RTE turns 18:00 red.
    standin.set_signals(signals_body(
        "2026-12-08T06:00:00+01:00",
        &[("2026-12-08T00:00:00+01:00", day_with(18, 3))],
    ));
    loop {
        let next = next_forecast(&mut watch).await;
        if next.hours[18].level() == pb::SignalLevel::Red {
            assert_eq!(ts(&next.generated_at), at("2026-12-08T05:00:00Z"));
            break;
        }
    }
    svc.stop().await;
}

fn set_mtime(path: &Path, ago: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(std::time::SystemTime::now() - ago)
        .expect("set mtime");
}

#[tokio::test]
async fn the_file_source_is_read_at_start_and_again_when_it_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("signals.json");
    std::fs::write(&path, PRODUCTION).expect("write");
    let mut svc = Running::start(Settings::with_file(&path, dir.path())).await;
    let f = svc.forecast().await.expect("read before listening");
    assert_eq!(f.source(), pb::ForecastSource::File);
    assert_eq!(f.source_detail, path.display().to_string());
    assert_eq!(f.hours.len(), 96);

    let mut watch = svc.watch().await;
    assert_eq!(next_forecast(&mut watch).await.hours.len(), 96);

    // A broken file is rejected; the last good forecast stays.
    std::fs::write(&path, b"{\"signals\": [").expect("write");
    let r = svc.forecast().await.expect("still served");
    assert_eq!(r.hours.len(), 96);

    // A good new file replaces it.
    std::fs::write(&path, SANDBOX).expect("write");
    assert_eq!(next_forecast(&mut watch).await.hours.len(), 89);
    svc.stop().await;
}

#[tokio::test]
async fn a_missing_file_is_unavailable_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.json");
    let mut svc = Running::start(Settings::with_file(&path, dir.path())).await;
    let err = svc.forecast().await.expect_err("no forecast");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("nope.json"), "{}", err.message());
    svc.stop().await;
}

#[tokio::test]
async fn rebase_to_today_moves_the_sandbox_to_this_week() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sandbox.json");
    std::fs::write(&path, SANDBOX).expect("write");
    set_mtime(&path, Duration::from_secs(30 * 24 * 3600));
    let mut settings = Settings::with_file(&path, dir.path());
    settings.source = SourceSettings::File {
        path: path.clone(),
        rebase_to_today: true,
    };
    let mut svc = Running::start(settings).await;
    let f = svc.forecast().await.expect("forecast");
    let paris = delestage_forecast_service::timeline::PARIS.clone();
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(paris.clone())
        .date();
    // The first complete day is today: every hour of it is covered, the
    // night too (the sandbox's first day, from 07:00, is yesterday).
    let today_start = ts(&f.days[1].start).to_zoned_datetime(paris.clone());
    assert_eq!(today_start.date(), today);
    assert_eq!((today_start.hour(), today_start.minute()), (0, 0));
    let midnight = today
        .at(0, 0, 0, 0)
        .to_zoned_datetime(paris.clone())
        .expect("midnight")
        .timestamp();
    for hour in 0..24 {
        let at = midnight + jiff::SignedDuration::from_hours(hour);
        assert!(
            f.hours
                .iter()
                .any(|h| ts(&h.start) <= at && at < ts(&h.end)),
            "{at} is not covered"
        );
    }
    // Rebased forecasts never go stale, whatever the file's age.
    assert!(!f.stale);
    svc.stop().await;
}

#[tokio::test]
async fn an_old_forecast_is_stale_and_watchers_are_told_when_it_turns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("signals.json");
    std::fs::write(&path, PRODUCTION).expect("write");
    let max_age = Duration::from_secs(3600);
    // Turns stale in about half a second.
    set_mtime(&path, max_age - Duration::from_millis(500));
    let mut settings = Settings::with_file(&path, dir.path());
    settings.max_age = max_age;
    let svc = Running::start(settings).await;
    let mut watch = svc.watch().await;
    let fresh = next_forecast(&mut watch).await;
    assert!(!fresh.stale);
    let stale = next_forecast(&mut watch).await;
    assert!(stale.stale);
    assert_eq!(stale.fetched_at, fresh.fetched_at);
    let level = svc
        .client
        .clone()
        .get_level(pb::GetLevelRequest { at: None })
        .await
        .expect("level")
        .into_inner();
    assert!(level.stale);
    svc.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_watch_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("signals.json");
    std::fs::write(&path, PRODUCTION).expect("write");
    let svc = Running::start(Settings::with_file(&path, dir.path())).await;
    let mut watch = svc.watch().await;
    next_forecast(&mut watch).await;
    svc.stop().await;
    let end = tokio::time::timeout(BOUND, watch.next())
        .await
        .expect("stream ends in time");
    assert!(end.is_none_or(|r| r.is_err()));
}

#[tokio::test]
async fn every_kind_of_rte_fault_keeps_the_forecast_and_the_call_budget() {
    let standin = EcowattStandin::start(unlimited(), PRODUCTION).await;
    let state = tempfile::tempdir().expect("tempdir");
    let interval = Duration::from_millis(100);
    let settings = with_timeout(
        rte_settings(&standin, state.path(), interval),
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let mut svc = Running::start(settings).await;
    let good = svc
        .forecast_until("the first forecast", |r| r.is_ok())
        .await
        .expect("forecast");

    let faults = vec![
        Reply::Error {
            status: 400,
            error: "INVALID_REQUEST",
            description: "bad request",
        },
        Reply::Error {
            status: 401,
            error: "invalid_token",
            description: "expired",
        },
        Reply::Error {
            status: 403,
            error: "FORBIDDEN",
            description: "v4 key",
        },
        Reply::TooManyRequests {
            retry_after_secs: 0,
        },
        Reply::Error {
            status: 500,
            error: "INTERNAL",
            description: "oops",
        },
        Reply::Html503,
        Reply::ResetMidBody,
        Reply::Raw {
            status: 200,
            content_type: "application/json",
            body: vec![b' '; 10 * 1024 * 1024],
        },
        Reply::Slow {
            delay: Duration::from_secs(2),
            then: None,
        },
    ];
    // A good answer after each fault, so the back-off starts over and the
    // test stays short; the last fault is the slow one.
    for fault in faults {
        standin.push_signals_reply(fault);
        standin.push_signals_reply(Reply::Slow {
            delay: Duration::ZERO,
            then: None,
        });
    }
    // Through all of it, the forecast is served, and it is RTE's.
    let deadline = Instant::now() + BOUND;
    while standin.pending_signals_replies() > 0 {
        let now = svc.forecast().await.expect("served throughout");
        assert_eq!(now.hours, good.hours);
        assert!(Instant::now() < deadline, "the faults were not all used");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = svc.forecast().await.expect("still served");
    assert_eq!(now.hours, good.hours);

    // Never faster than the schedule allows: back-off only lengthens the
    // gaps (the 401 renew-and-retry is the one extra call allowed).
    let elapsed = started.elapsed();
    let calls = standin.signals_calls();
    let budget = (elapsed.as_millis() / interval.as_millis()) as usize + 2;
    assert!(
        calls <= budget,
        "{calls} calls in {elapsed:?} (budget {budget})"
    );
    svc.stop().await;
}

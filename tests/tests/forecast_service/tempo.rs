//! forecast-service's Tempo calendar against the stand-in's Tempo API
//! (token, 401, 429, 500, malformed bodies, a missing tomorrow, a restart
//! from the cache), served by a real tonic server on 127.0.0.1:0.

use std::path::Path;
use std::time::Duration;

use delestage_ecowatt_standin::tempo::{
    SANDBOX_TEMPO_PATH, TEMPO_PATH, paris_today, tempo_body, tempo_body_around_now,
};
use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin, Reply};
use delestage_forecast_service::config::{Settings, TempoRteSettings, TempoSettings};
use delestage_forecast_service::rte::Credentials;
use delestage_forecast_service::tempo::TempoSchedule;
use delestage_proto::forecast::v1 as pb;
use secrecy::SecretString;
use tokio_stream::StreamExt;
use tonic::Code;

use delestage_tests::BOUND;
use delestage_tests::in_process::forecast::{Running, rte_settings, unlimited};

const PRODUCTION: &[u8] =
    include_bytes!("../../../forecast-service/payloads/signals-production-shape.json");

/// The Ecowatt source is a file (absent: it does not matter here); Tempo
/// comes from the stand-in with its own credentials, retried every
/// `spacing` after a failure.
fn tempo_settings(standin: &EcowattStandin, state_dir: &Path, spacing: Duration) -> Settings {
    let mut settings = Settings::with_file(state_dir.join("no-ecowatt.json"), state_dir);
    settings.tempo = TempoSettings::Rte(TempoRteSettings {
        base: standin.base_url().parse().expect("url"),
        sandbox: false,
        credentials: Some(Credentials {
            client_id: SecretString::from("test-client-id"),
            client_secret: SecretString::from("test-client-secret"),
        }),
        schedule: TempoSchedule {
            spacing,
            margin: Duration::ZERO,
        },
        request_timeout: Duration::from_secs(5),
    });
    settings
}

fn colors(c: &pb::TempoCalendar) -> Vec<(String, pb::TempoColor)> {
    c.days.iter().map(|d| (d.date.clone(), d.color())).collect()
}

fn ts(t: &Option<prost_types::Timestamp>) -> jiff::Timestamp {
    let t = t.as_ref().expect("timestamp set");
    delestage_proto::time::from_pb(t).expect("valid")
}

#[tokio::test]
async fn serves_the_calendar_with_tariff_days_and_asks_with_paris_dates() {
    let standin = EcowattStandin::start(unlimited(), PRODUCTION).await;
    standin.set_tempo(tempo_body_around_now("BLUE", "WHITE", Some("RED")));
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(tempo_settings(&standin, state.path(), BOUND)).await;
    let cal = svc
        .tempo_until("the calendar", |r| r.is_ok())
        .await
        .expect("calendar");
    let today = paris_today();
    let (y, t) = (
        today.yesterday().expect("y").to_string(),
        today.tomorrow().expect("t").to_string(),
    );
    assert_eq!(
        colors(&cal),
        [
            (y, pb::TempoColor::Blue),
            (today.to_string(), pb::TempoColor::White),
            (t, pb::TempoColor::Red),
        ]
    );
    // Today's tariff day: 06:00 to 06:00, peak hours to 22:00, Paris time.
    let paris = delestage_forecast_service::timeline::PARIS.clone();
    let day = &cal.days[1];
    let local = |t: &Option<prost_types::Timestamp>| {
        let z = ts(t).to_zoned_datetime(paris.clone());
        (z.date(), z.hour(), z.minute())
    };
    assert_eq!(local(&day.start), (today, 6, 0));
    assert_eq!(local(&day.peak_end), (today, 22, 0));
    assert_eq!(local(&day.end), (today.tomorrow().expect("t"), 6, 0));
    assert!(!cal.stale);

    // One token, one calendar call, yesterday to the end of tomorrow with
    // the Paris offset (its `+` encoded).
    let calls = standin.calls();
    let tempo: Vec<_> = calls.iter().filter(|c| c.path == TEMPO_PATH).collect();
    assert_eq!(tempo.len(), 1);
    assert_eq!(standin.token_calls(), 1);
    let query = tempo[0].query.clone().expect("a query");
    assert!(
        query.starts_with("start_date=") && query.contains("&end_date="),
        "{query}"
    );
    assert!(query.contains("T00%3A00%3A00%2B0"), "{query}");

    // WatchTempo: the current calendar first.
    let mut stream = svc
        .client
        .clone()
        .watch_tempo(pb::WatchTempoRequest {})
        .await
        .expect("watch")
        .into_inner();
    let first = tokio::time::timeout(BOUND, stream.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("a calendar");
    assert_eq!(colors(&first), colors(&cal));
    svc.stop().await;
}

#[tokio::test]
async fn with_tempo_off_the_tempo_calls_say_it_is_not_enabled() {
    let state = tempfile::tempdir().expect("tempdir");
    let settings = Settings::with_file(state.path().join("none.json"), state.path());
    let mut svc = Running::start(settings).await;
    let err = svc.tempo().await.expect_err("off");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        pb::has_reason(&err, pb::TEMPO_NOT_ENABLED)
            && err.message().contains("tempo is not enabled"),
        "{err:?}"
    );
    let err = svc
        .client
        .clone()
        .watch_tempo(pb::WatchTempoRequest {})
        .await
        .expect_err("off");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        pb::has_reason(&err, pb::TEMPO_NOT_ENABLED)
            && err.message().contains("tempo is not enabled"),
        "{err:?}"
    );
    svc.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_the_call_retried() {
    let standin = EcowattStandin::start(unlimited(), PRODUCTION).await;
    standin.set_tempo(tempo_body_around_now("BLUE", "BLUE", None));
    // The token is taken, then refused on the calendar call.
    standin.push_tempo_reply(Reply::Error {
        status: 401,
        error: "invalid_token",
        description: "expired",
    });
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(tempo_settings(&standin, state.path(), BOUND)).await;
    svc.tempo_until("the calendar", |r| r.is_ok())
        .await
        .expect("calendar");
    let summary: Vec<_> = standin
        .calls()
        .iter()
        .map(|c| (c.path.clone(), c.status))
        .collect();
    let token = delestage_ecowatt_standin::TOKEN_PATH.to_owned();
    let tempo = TEMPO_PATH.to_owned();
    assert_eq!(
        summary,
        [
            (token.clone(), 200),
            (tempo.clone(), 401),
            (token, 200),
            (tempo, 200)
        ]
    );
    svc.stop().await;
}

#[tokio::test]
async fn errors_and_bad_bodies_are_reported_and_retried_and_the_last_good_calendar_stays() {
    let standin = EcowattStandin::start(unlimited(), PRODUCTION).await;
    let good = tempo_body_around_now("BLUE", "RED", None);
    standin.set_tempo(good.clone());
    // First start: a 500 is the UNAVAILABLE reason until a retry works.
    standin.push_tempo_reply(Reply::Error {
        status: 500,
        error: "INTERNAL_ERROR",
        description: "boom",
    });
    standin.push_tempo_reply(Reply::Slow {
        delay: Duration::from_millis(300),
        then: None,
    });
    let state = tempfile::tempdir().expect("tempdir");
    let spacing = Duration::from_millis(100);
    let mut svc = Running::start(tempo_settings(&standin, state.path(), spacing)).await;
    let err = svc
        .tempo_until("the 500 as the reason", |r| {
            r.as_ref().is_err_and(|s| s.message().contains("500"))
        })
        .await
        .expect_err("no calendar yet");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("INTERNAL_ERROR"), "{err:?}");
    svc.tempo_until("the calendar after a retry", |r| r.is_ok())
        .await
        .expect("calendar");
    svc.stop().await;

    // Malformed answers, a 429 and one without today keep the cached one,
    // each reported; the service asks again after each.
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(tempo_settings(&standin, state.path(), spacing)).await;
    svc.tempo_until("the calendar", |r| r.is_ok())
        .await
        .expect("calendar");
    svc.stop().await;
    let before = standin.tempo_calls();
    // The cache says "next call at midnight or 10:40": drop that, keep the
    // body, so that the restart asks at once.
    let cache_path = state.path().join("tempo-cache.json");
    let mut cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache_path).expect("cache")).expect("json");
    cache
        .as_object_mut()
        .expect("object")
        .remove("next_attempt_at");
    std::fs::write(&cache_path, serde_json::to_vec(&cache).expect("json")).expect("write");
    let unknown_colour = String::from_utf8(good.clone())
        .expect("utf-8")
        .replace("\"RED\"", "\"PURPLE\"");
    let tomorrow_only = tempo_body(&[(paris_today().tomorrow().expect("t"), "RED")]);
    standin.push_tempo_reply(Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: unknown_colour.into_bytes(),
    });
    standin.push_tempo_reply(Reply::TooManyRequests {
        retry_after_secs: 1,
    });
    standin.push_tempo_reply(Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: tomorrow_only,
    });
    standin.push_tempo_reply(Reply::Html503);
    let mut svc = Running::start(tempo_settings(&standin, state.path(), spacing)).await;
    // Served from the cache at once, through every fault.
    let kept = svc.tempo().await.expect("the cached calendar");
    standin.wait_for_tempo_calls(before + 5, BOUND).await;
    let calls: Vec<_> = standin
        .calls()
        .into_iter()
        .filter(|c| c.path == TEMPO_PATH)
        .skip(before)
        .collect();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 429, 200, 503, 200]);
    // The 429's Retry-After was honoured.
    assert!(calls[2].at - calls[1].at >= Duration::from_millis(950));
    let after = svc.tempo().await.expect("calendar");
    assert_eq!(colors(&after), colors(&kept));
    svc.stop().await;
}

#[tokio::test]
async fn a_missing_tomorrow_is_normal_and_a_restart_serves_the_cache_without_asking() {
    let standin = EcowattStandin::start(unlimited(), PRODUCTION).await;
    standin.set_tempo(tempo_body_around_now("WHITE", "BLUE", None));
    let state = tempfile::tempdir().expect("tempdir");
    let mut svc = Running::start(tempo_settings(&standin, state.path(), BOUND)).await;
    let first = svc
        .tempo_until("the calendar", |r| r.is_ok())
        .await
        .expect("calendar");
    assert_eq!(first.days.len(), 2, "yesterday and today: {first:?}");
    svc.stop().await;
    let asked = standin.tempo_calls();
    assert_eq!(asked, 1);

    let mut svc = Running::start(tempo_settings(&standin, state.path(), BOUND)).await;
    let again = svc.tempo().await.expect("served from the cache at once");
    assert_eq!(colors(&again), colors(&first));
    assert_eq!(again.fetched_at, first.fetched_at);
    svc.stop().await;
    // No call on restart: the next one is at 10:40, or after the spacing
    // (10 s here) when it is later than that. Only a day change in between
    // (a test run across midnight) asks again.
    let same_day = paris_today().to_string() == first.days[1].date;
    if same_day {
        assert_eq!(standin.tempo_calls(), asked, "a restart asked RTE again");
    }
}

#[tokio::test]
async fn one_token_serves_ecowatt_and_tempo_when_the_credentials_are_shared() {
    let standin = EcowattStandin::start(StandinConfig::default(), PRODUCTION).await;
    standin.set_tempo(tempo_body_around_now("BLUE", "BLUE", Some("WHITE")));
    let state = tempfile::tempdir().expect("tempdir");
    let mut settings = rte_settings(&standin, state.path(), Duration::from_secs(3600));
    let TempoSettings::Rte(tempo) = tempo_settings(&standin, state.path(), BOUND).tempo else {
        unreachable!("built above");
    };
    settings.tempo = TempoSettings::Rte(TempoRteSettings {
        credentials: None,
        ..tempo
    });
    let mut svc = Running::start(settings).await;
    svc.tempo_until("the calendar", |r| r.is_ok())
        .await
        .expect("calendar");
    svc.forecast_until("the forecast", |r| r.is_ok())
        .await
        .expect("forecast");
    svc.stop().await;
    assert_eq!(standin.token_calls(), 1, "{:?}", standin.calls());
}

#[tokio::test]
async fn the_sandbox_path_is_used_with_sandbox() {
    let standin = EcowattStandin::start(unlimited(), PRODUCTION).await;
    standin.set_tempo(tempo_body_around_now("BLUE", "BLUE", None));
    let state = tempfile::tempdir().expect("tempdir");
    let mut settings = tempo_settings(&standin, state.path(), BOUND);
    if let TempoSettings::Rte(t) = &mut settings.tempo {
        t.sandbox = true;
    }
    let mut svc = Running::start(settings).await;
    svc.tempo_until("the calendar", |r| r.is_ok())
        .await
        .expect("calendar");
    svc.stop().await;
    assert!(
        standin.calls().iter().any(|c| c.path == SANDBOX_TEMPO_PATH),
        "{:?}",
        standin.calls()
    );
}

#[tokio::test]
async fn a_tempo_file_rebased_to_today_makes_its_last_day_tomorrow() {
    let state = tempfile::tempdir().expect("tempdir");
    let path = state.path().join("tempo.json");
    let old = jiff::civil::date(2023, 1, 18);
    std::fs::write(
        &path,
        tempo_body(&[
            (old, "BLUE"),
            (old.tomorrow().expect("d"), "WHITE"),
            (old.tomorrow().expect("d").tomorrow().expect("d"), "RED"),
        ]),
    )
    .expect("write");
    let mut settings = Settings::with_file(state.path().join("none.json"), state.path());
    settings.tempo = TempoSettings::File {
        path,
        rebase_to_today: true,
    };
    let mut svc = Running::start(settings).await;
    let cal = svc.tempo().await.expect("read at start");
    let today = paris_today();
    assert_eq!(
        colors(&cal),
        [
            (
                today.yesterday().expect("y").to_string(),
                pb::TempoColor::Blue
            ),
            (today.to_string(), pb::TempoColor::White),
            (
                today.tomorrow().expect("t").to_string(),
                pb::TempoColor::Red
            ),
        ]
    );
    svc.stop().await;
}

//! The discovery as a real Home Assistant reads it: the versions of
//! `scripts/home-assistant-env`, started by the test on the test's broker,
//! their entity states read back over MQTT (`mqtt_statestream`).
//!
//! Before 2024.10, Home Assistant shows a `None` state as the text "None"
//! and keeps the last value of a sensor whose template gives nothing: the
//! level, Tempo and next-tense sensors must say "unavailable" instead.

use delestage_tests::{HomeAssistant, Mosquitto, MqttWatcher};

use super::Site;

const LEVEL: &str = "sensor.delestage_ecowatt_level";
const TEMPO_TODAY: &str = "sensor.delestage_tempo_today";
const TEMPO_TOMORROW: &str = "sensor.delestage_tempo_tomorrow";
const NEXT_TENSE: &str = "sensor.delestage_next_tense_hour";
const HEATER_POWERED: &str = "binary_sensor.delestage_water_heater_powered";

/// What `entity` has been in Home Assistant so far, in order.
fn states(watcher: &MqttWatcher, entity: &str) -> Vec<String> {
    let topic = HomeAssistant::state_topic(entity);
    watcher
        .all()
        .into_iter()
        .filter(|m| m.topic == topic)
        .map(|m| m.payload)
        .collect()
}

async fn wait_state(watcher: &MqttWatcher, ha: &HomeAssistant, entity: &str, state: &str) {
    let topic = HomeAssistant::state_topic(entity);
    // Not `watcher.wait_for`, so that a failure shows Home Assistant's log.
    let seen = watcher
        .wait_for_within(delestage_tests::BOUND, &topic, |m| m.payload == state)
        .await;
    assert!(
        seen.is_some(),
        "Home Assistant {} never showed {entity} as {state:?} (it showed {:?}); its log:\n{}",
        ha.version,
        states(watcher, entity),
        ha.log()
    );
}

/// The level known, then unknown (the forecast older than
/// `forecast_max_age`); Tempo and the next tense hour unknown throughout.
async fn shows_unknown_as_unavailable(version: &'static str) {
    let hass = HomeAssistant::installed(version).unwrap_or_else(|| {
        panic!(
            "Home Assistant {version} is not installed here: run `eval \"$(scripts/home-assistant-env)\"` (scripts/test does)"
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("broker"), "").await;
    let watcher =
        MqttWatcher::connect(broker.port, &["homeassistant/status", "hastate/#"], None).await;
    let ha_dir = dir.path().join("home-assistant");
    let ha = HomeAssistant::start(version, &hass, &ha_dir, broker.port, &watcher).await;

    // The test's forecast is written as the site starts, "generated" then:
    // usable for 15 s, then too old, and the level unknown.
    let url = broker.url();
    let _site = Site::start_configured(
        dir,
        "forecast_max_age = \"15s\"",
        &format!("url = \"{url}\""),
        "",
    )
    .await;

    wait_state(&watcher, &ha, LEVEL, "green").await;
    wait_state(&watcher, &ha, HEATER_POWERED, "on").await;
    // No Tempo calendar (the forecast-service reads a file), no tense hour
    // in an all-green forecast.
    for entity in [TEMPO_TODAY, TEMPO_TOMORROW, NEXT_TENSE] {
        wait_state(&watcher, &ha, entity, "unavailable").await;
    }
    // Then the level becomes unknown: unavailable, not a stale green.
    wait_state(&watcher, &ha, LEVEL, "unavailable").await;
    for entity in [LEVEL, TEMPO_TODAY, TEMPO_TOMORROW, NEXT_TENSE] {
        let shown = states(&watcher, entity);
        assert!(
            !shown.iter().any(|s| s == "None" || s == "unknown"),
            "Home Assistant {version} showed {entity} as {shown:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_2024_3_shows_what_is_unknown_as_unavailable() {
    shows_unknown_as_unavailable("2024.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_2024_9_shows_what_is_unknown_as_unavailable() {
    shows_unknown_as_unavailable("2024.9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_2025_4_shows_what_is_unknown_as_unavailable() {
    shows_unknown_as_unavailable("2025.4").await;
}

//! Home Assistant over MQTT (`controller --mqtt`), end to end: a real
//! mosquitto broker started by the test, the relay-service (simulated
//! board), forecast-service and controller as processes, and an MQTT client
//! that looks at the broker as Home Assistant does and sends commands.

use std::path::Path;
use std::time::Duration;

use delestage_proto::controller::v1 as cpb;
use delestage_tests::{
    Mosquitto, MqttWatcher, ServiceProcess, TestPki, cli_json, energized, free_port, history,
    load_status, mosquitto_passwords, start_controller_on, start_forecast_at, start_relay,
    wait_energized, wait_history, wait_status,
};
use nix::sys::signal::Signal;
use serde_json::Value;
use tonic::transport::Channel;

use cpb::controller_service_client::ControllerServiceClient;

mod real;

const GREEN: u8 = 1;
/// Normally-open wiring: a powered load is an energised relay.
const LOADS: [&str; 2] = ["water-heater", "heat.pump"];
const EVERYTHING: [&str; 2] = ["homeassistant/#", "delestage/#"];

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The three services, the grid green: both loads powered.
struct Site {
    dir: tempfile::TempDir,
    relay: Channel,
    client: ControllerServiceClient<Channel>,
    controller: ServiceProcess,
    _processes: Vec<ServiceProcess>,
}

impl Site {
    /// `mqtt` is the `[mqtt]` table's body.
    async fn start(dir: tempfile::TempDir, mqtt: &str) -> Self {
        Self::start_with(dir, mqtt, "").await
    }

    /// As [`Site::start`], with `load_extra` added to every `[[load]]`.
    async fn start_with(dir: tempfile::TempDir, mqtt: &str, load_extra: &str) -> Self {
        Self::start_configured(dir, "", mqtt, load_extra).await
    }

    /// As [`Site::start_with`], with `policy` added to the `[policy]` table.
    async fn start_configured(
        dir: tempfile::TempDir,
        policy: &str,
        mqtt: &str,
        load_extra: &str,
    ) -> Self {
        let (relay_process, relay) = start_relay(&dir.path().join("relay"), &[]).await;
        let forecast = start_forecast_at(dir.path(), GREEN).await;
        let mut text = format!(
            "forecast = \"http://{}\"\nstate_dir = \"{}\"\n\n[relays.garage]\nendpoint = \"http://{}\"\n\n\
             [policy]\nrestore_stagger = \"0s\"\n{policy}\n\n[mqtt]\n{mqtt}\n\n",
            forecast.addr,
            path(&dir.path().join("controller")),
            relay_process.addr,
        );
        for (channel, name) in LOADS.iter().enumerate() {
            text.push_str(&format!(
                "[[load]]\nname = \"{name}\"\nrelay = \"garage:{channel}\"\nwiring = \"normally-open\"\nshed_at = \"orange\"\n{load_extra}\n\n"
            ));
        }
        let file = dir.path().join("controller.toml");
        std::fs::write(&file, text).expect("write config");
        let (controller, channel) = start_controller_on(&file).await;
        wait_energized(&relay, &[0, 1], "both loads powered (green)").await;
        Self {
            dir,
            relay,
            client: ControllerServiceClient::new(channel),
            controller,
            _processes: vec![relay_process, forecast],
        }
    }

    /// Stops the controller (SIGTERM) and starts it again on the same
    /// config file: what it reads at start is read again.
    async fn restart_controller(self) -> Self {
        let Site {
            dir,
            relay,
            controller,
            _processes,
            ..
        } = self;
        controller.stop_with(Signal::SIGTERM).await;
        let (controller, channel) = start_controller_on(&dir.path().join("controller.toml")).await;
        Self {
            dir,
            relay,
            client: ControllerServiceClient::new(channel),
            controller,
            _processes,
        }
    }
}

/// The discovery config topics the controller must publish.
fn config_topics() -> Vec<String> {
    let mut topics: Vec<String> = ["level", "next_tense", "tempo_today", "tempo_tomorrow"]
        .iter()
        .map(|o| format!("homeassistant/sensor/delestage/{o}/config"))
        .collect();
    for load in LOADS {
        let id = load.replace('.', "_");
        topics.extend([
            format!("homeassistant/binary_sensor/delestage/{id}_powered/config"),
            format!("homeassistant/sensor/delestage/{id}_reason/config"),
            format!("homeassistant/switch/delestage/{id}_override/config"),
            format!("homeassistant/button/delestage/{id}_clear_override/config"),
        ]);
    }
    topics
}

/// Waits for every config, the availability and every state topic, and
/// returns the configs by topic.
async fn wait_published(ha: &MqttWatcher) -> Vec<(String, Value)> {
    ha.wait_for("delestage/status", |m| m.payload == "online")
        .await;
    let mut configs = Vec::new();
    for topic in config_topics() {
        let m = ha.wait_for(&topic, |m| !m.payload.is_empty()).await;
        configs.push((topic, m.json()));
    }
    ha.wait_for("delestage/level", |m| m.payload == "green")
        .await;
    for load in LOADS {
        ha.wait_for(&format!("delestage/load/{load}/state"), |m| {
            m.json()["powered"] == true
        })
        .await;
    }
    configs
}

fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn home_assistant_discovers_the_loads_and_its_switch_overrides_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("broker"), "").await;

    // Left on the broker by an earlier configuration: a load since removed.
    let before = MqttWatcher::connect(broker.port, &[], None).await;
    let gone_config = "homeassistant/switch/delestage/boiler_override/config";
    before
        .publish(gone_config, "{\"name\":\"boiler override\"}", true)
        .await;
    before
        .publish("delestage/load/boiler/state", "{}", true)
        .await;
    // A command someone published retained: it would cut the heat pump at
    // every reconnection.
    before
        .publish("delestage/load/heat.pump/override/set", "OFF", true)
        .await;
    // Home Assistant's birth message, retained (a common setting): it is
    // delivered as the controller subscribes, and must not make the
    // configs go out twice.
    before.publish("homeassistant/status", "online", true).await;
    let ha = MqttWatcher::connect(broker.port, &EVERYTHING, None).await;
    ha.wait_for("delestage/load/boiler/state", |_| true).await;

    let url = broker.url();
    let mut site = Site::start(dir, &format!("url = \"{url}\"\noverride_duration = \"1h\"")).await;

    let configs = wait_published(&ha).await;
    site.controller
        .wait_for_log("ignored a retained MQTT command")
        .await;
    assert_eq!(
        energized(&site.relay).await,
        [0, 1],
        "the heat pump not cut"
    );
    before
        .publish("delestage/load/heat.pump/override/set", "", true)
        .await;
    // The retained birth message came with the subscriptions, before the
    // retained state of the removed load; once that state is cleared, the
    // birth message has been handled too.
    ha.wait_for("delestage/load/boiler/state", |m| m.payload.is_empty())
        .await;
    for topic in config_topics() {
        assert_eq!(ha.count(&topic), 1, "{topic} published once");
    }
    for (topic, c) in &configs {
        assert_eq!(c["device"]["name"], "delestage", "{topic}");
        let first = c["availability"][0]["topic"].as_str();
        assert_eq!(
            c["availability_topic"].as_str().or(first),
            Some("delestage/status"),
            "{topic}"
        );
        assert!(
            c["unique_id"].as_str().is_some_and(|u| !u.is_empty()),
            "{topic}"
        );
        assert!(c["name"].as_str().is_some(), "{topic}");
    }
    let config = |suffix: &str| {
        &configs
            .iter()
            .find(|(t, _)| t.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix}"))
            .1
    };
    let level = config("sensor/delestage/level/config");
    assert_eq!(level["state_topic"], "delestage/level");
    // Unavailable while unknown, on every Home Assistant version.
    assert_eq!(level["availability_mode"], "all");
    assert_eq!(level["availability"][1]["topic"], "delestage/level");
    assert_eq!(level["device_class"], "enum");
    assert_eq!(
        level["options"],
        serde_json::json!(["carbon-free", "green", "orange", "red"])
    );
    let switch = config("heat_pump_override/config");
    assert_eq!(
        switch["command_topic"],
        "delestage/load/heat.pump/override/set"
    );
    assert_eq!(switch["state_topic"], "delestage/load/heat.pump/state");
    assert_eq!(
        (&switch["payload_on"], &switch["payload_off"]),
        (&"ON".into(), &"OFF".into())
    );
    let button = config("water-heater_clear_override/config");
    assert_eq!(
        button["command_topic"],
        "delestage/load/water-heater/override/set"
    );
    assert_eq!(button["payload_press"], "CLEAR");
    assert_eq!(
        config("water-heater_powered/config")["state_topic"],
        "delestage/load/water-heater/state"
    );

    // Retained, so Home Assistant has them when it subscribes later.
    let late = MqttWatcher::connect(broker.port, &EVERYTHING, None).await;
    for topic in config_topics().iter().map(String::as_str).chain([
        "delestage/status",
        "delestage/level",
        "delestage/tempo",
        "delestage/next_tense",
    ]) {
        let m = late.wait_for(topic, |_| true).await;
        assert!(m.retain, "{topic} is retained");
    }
    // The entity of the removed load is removed; so is its state.
    ha.wait_for(gone_config, |m| m.payload.is_empty()).await;
    ha.wait_for("delestage/load/boiler/state", |m| m.payload.is_empty())
        .await;

    // The states: the level, Tempo, the next tense hour (none: all green),
    // and each load with the keys of `delestage status --json`.
    let tempo = ha.last("delestage/tempo").expect("tempo").json();
    assert_eq!(keys(&tempo), ["today", "tomorrow"]);
    let tense = ha.last("delestage/next_tense").expect("next tense").json();
    assert_eq!(tense["start"], Value::Null);
    let state = ha
        .last("delestage/load/water-heater/state")
        .expect("state")
        .json();
    let cli = cli_json(&site.controller.addr, &["status"]).await;
    let cli_load = cli["loads"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "water-heater"))
        .expect("water-heater in the CLI's status");
    assert_eq!(keys(&state), keys(cli_load));
    assert_eq!(state["reason"], "normal");
    assert_eq!(state["override"], Value::Null);

    // The switch off: an override through the same path as gRPC.
    ha.publish("delestage/load/water-heater/override/set", "OFF", false)
        .await;
    wait_energized(&site.relay, &[1], "the water heater cut by Home Assistant").await;
    let state = ha
        .wait_for("delestage/load/water-heater/state", |m| {
            m.json()["reason"] == "override"
        })
        .await
        .json();
    assert_eq!(state["powered"], false);
    assert_eq!(state["override"]["powered"], false);
    let until: jiff::Timestamp = state["override"]["until"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("until");
    let set_at: jiff::Timestamp = state["override"]["set_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("set_at");
    // override_duration = 1h, counted from the command (a moment before
    // set_at).
    let lasts = until.duration_since(set_at).as_secs_f64();
    assert!((3598.0..=3600.0).contains(&lasts), "{lasts}");
    let status = wait_status(&mut site.client, "the override in GetStatus", |s| {
        load_status(s, "water-heater").r#override.is_some()
    })
    .await;
    assert!(!load_status(&status, "water-heater").desired);
    wait_history(
        &mut site.client,
        "the override switch in the history",
        |r| {
            r.iter()
                .any(|r| r.load == "water-heater" && r.reason() == cpb::Reason::Override)
        },
    )
    .await;
    let line = site.controller.wait_for_log("override set").await;
    assert!(line.contains("\"source\":\"mqtt\""), "{line}");
    // Persisted: it is in the state dir's overrides file.
    let stored = std::fs::read_to_string(site.dir.path().join("controller/overrides.json"))
        .expect("overrides.json");
    assert!(stored.contains("water-heater"), "{stored}");

    // Clear override: back to the plan.
    ha.publish("delestage/load/water-heater/override/set", "CLEAR", false)
        .await;
    wait_energized(&site.relay, &[0, 1], "the water heater back").await;
    ha.wait_for("delestage/load/water-heater/state", |m| {
        m.json()["override"].is_null() && m.json()["powered"] == true
    })
    .await;

    // Bad commands are logged and change nothing.
    // The relay shows its state a moment before the switch is recorded
    // (newest first).
    let switches = wait_history(&mut site.client, "the water heater's restore", |r| {
        r.first()
            .is_some_and(|r| r.load == "water-heater" && r.to_powered)
    })
    .await
    .len();
    ha.publish("delestage/load/water-heater/override/set", "MAYBE", false)
        .await;
    let line = site
        .controller
        .wait_for_log("ignored an MQTT command")
        .await;
    assert!(line.contains("MAYBE"), "{line}");
    ha.publish("delestage/load/boiler/override/set", "OFF", false)
        .await;
    site.controller
        .wait_for_log("for a load that is not configured")
        .await;
    assert_eq!(energized(&site.relay).await, [0, 1]);
    assert_eq!(history(&mut site.client).await.len(), switches);
    let status = wait_status(&mut site.client, "the status", |_| true).await;
    assert!(status.loads.iter().all(|l| l.r#override.is_none()));

    // Home Assistant restarts: it says so, and gets the configs again.
    let topic = "homeassistant/sensor/delestage/level/config";
    let sent = ha.count(topic);
    ha.publish("homeassistant/status", "online", false).await;
    delestage_tests::poll(
        "the configs published again",
        || async { ha.count(topic) },
        |n| *n > sent,
    )
    .await;
    site.controller
        .wait_for_log("Home Assistant is online; publishing discovery again")
        .await;

    // The controller dies without a word: the broker says so for it (the
    // last will), and Home Assistant shows every entity unavailable.
    site.controller.stop_with(Signal::SIGKILL).await;
    ha.wait_for("delestage/status", |m| m.payload == "offline")
        .await;
}

#[tokio::test]
async fn the_controller_goes_on_without_the_broker_and_publishes_again_when_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Mosquitto::start(&dir.path().join("broker"), "").await;
    let url = broker.url();
    // Down at the controller's start: nothing else changes.
    broker.stop().await;
    let mut site = Site::start(dir, &format!("url = \"{url}\"")).await;
    site.controller
        .wait_for_log("cannot reach the MQTT broker")
        .await;
    let status = wait_status(&mut site.client, "both loads powered", |s| {
        s.loads.iter().all(|l| l.powered == Some(true))
    })
    .await;
    assert_eq!(status.loads.len(), 2);

    // Up: it connects and publishes everything.
    broker.restart().await;
    let ha = MqttWatcher::connect(broker.port, &EVERYTHING, None).await;
    wait_published(&ha).await;
    drop(ha);

    // Restarted: the broker forgot every retained message; the controller
    // reconnects and publishes them again.
    broker.restart().await;
    site.controller.wait_for_log("lost the MQTT broker").await;
    let ha = MqttWatcher::connect(broker.port, &EVERYTHING, None).await;
    wait_published(&ha).await;
    // And listens again.
    ha.publish("delestage/load/heat.pump/override/set", "OFF", false)
        .await;
    wait_energized(
        &site.relay,
        &[0],
        "the heat pump cut after the reconnection",
    )
    .await;
}

/// The broker's users and ACLs are the access control (the README's
/// advice): the controller logs in with its password file, Home Assistant
/// may command, a read-only user may look but not command.
#[tokio::test]
async fn the_brokers_users_and_acls_decide_who_may_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker_dir = dir.path().join("broker");
    std::fs::create_dir_all(&broker_dir).expect("broker dir");
    let passwords = broker_dir.join("passwords");
    mosquitto_passwords(
        &passwords,
        &[
            ("delestage", "controller-pw-81f2"),
            ("homeassistant", "ha-pw-3c9d"),
            ("guest", "guest-pw-07aa"),
        ],
    )
    .await;
    // The documented ACL (docs/home-assistant.md) as it is written, and a read-only guest who may
    // publish marks on a topic of its own.
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/home-assistant.md"
    ))
    .expect("docs/home-assistant.md");
    let start = readme
        .find("# /etc/mosquitto/acl\n")
        .expect("the documented ACL")
        + "# /etc/mosquitto/acl\n".len();
    let end = start + readme[start..].find("```").expect("the end of the ACL");
    let acl = broker_dir.join("acl");
    std::fs::write(
        &acl,
        format!(
            "{}\nuser guest\ntopic read delestage/#\ntopic readwrite guest/#\n",
            &readme[start..end]
        ),
    )
    .expect("write the ACL");
    let broker = Mosquitto::start(
        &broker_dir,
        &format!(
            "password_file {}\nacl_file {}",
            path(&passwords),
            path(&acl)
        ),
    )
    .await;

    // A wrong password: refused, said so, and the controller goes on.
    let password_file = dir.path().join("mqtt-password");
    std::fs::write(&password_file, "not-the-password\n").expect("write password");
    let mqtt = format!(
        "url = \"{}\"\nusername = \"delestage\"\npassword_file = \"{}\"",
        broker.url(),
        path(&password_file)
    );
    let site = Site::start(dir, &mqtt).await;
    let line = site
        .controller
        .wait_for_log("the broker refused the connection")
        .await;
    assert!(line.contains("password_file"), "{line}");
    assert!(!site.controller.log().contains("not-the-password"));

    // The right one: read at start.
    std::fs::write(&password_file, "controller-pw-81f2\n").expect("write password");
    let site = site.restart_controller().await;
    let ha = MqttWatcher::connect(
        broker.port,
        &EVERYTHING,
        Some(("homeassistant", "ha-pw-3c9d")),
    )
    .await;
    wait_published(&ha).await;
    assert!(!site.controller.log().contains("controller-pw-81f2"));

    // A user who may only read sees the states, but its command never
    // reaches the site.controller.
    let guest = MqttWatcher::connect(
        broker.port,
        &["delestage/#", "guest/#"],
        Some(("guest", "guest-pw-07aa")),
    )
    .await;
    guest
        .wait_for("delestage/load/water-heater/state", |_| true)
        .await;
    guest
        .publish("delestage/load/water-heater/override/set", "OFF", false)
        .await;
    // The broker handles one client's messages in order: once the mark is
    // back, the command was dropped or passed on...
    guest.publish("guest/mark", "1", false).await;
    guest.wait_for("guest/mark", |_| true).await;
    // ...and once the controller has dealt with a later message, it would
    // have dealt with that command.
    ha.publish("delestage/load/water-heater/override/set", "SYNC", false)
        .await;
    let line = site
        .controller
        .wait_for_log("\"SYNC\\\" is not a command")
        .await;
    assert!(line.contains("water-heater"), "{line}");
    assert_eq!(
        energized(&site.relay).await,
        [0, 1],
        "the guest cut nothing"
    );
    assert!(!site.controller.log().contains("override set"));

    // Home Assistant may.
    ha.publish("delestage/load/water-heater/override/set", "OFF", false)
        .await;
    wait_energized(&site.relay, &[1], "the water heater cut by Home Assistant").await;
}

/// mqtts: the broker's certificate checked against `tls_ca`; a broker
/// whose certificate another CA signed is refused, and said so.
#[tokio::test]
async fn mqtts_checks_the_brokers_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new();
    let other = TestPki::new();
    // A TLS listener for the controller, beside the plain one the test
    // watches from.
    let tls_port = free_port();
    let broker = Mosquitto::start(
        &dir.path().join("broker"),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}",
            path(&pki.ca),
            path(&pki.server_cert),
            path(&pki.server_key)
        ),
    )
    .await;
    let ca = dir.path().join("broker-ca.pem");
    std::fs::copy(&other.ca, &ca).expect("copy the wrong CA");
    let mqtt = format!(
        "url = \"mqtts://127.0.0.1:{tls_port}\"\ntls_ca = \"{}\"",
        path(&ca)
    );
    let site = Site::start(dir, &mqtt).await;
    let line = site
        .controller
        .wait_for_log("cannot reach the MQTT broker")
        .await;
    assert!(line.to_lowercase().contains("certificate"), "{line}");

    // The right CA, read at start.
    std::fs::copy(&pki.ca, &ca).expect("copy the CA");
    let site = site.restart_controller().await;
    let ha = MqttWatcher::connect(broker.port, &EVERYTHING, None).await;
    wait_published(&ha).await;
    site.controller
        .wait_for_log("connected to the MQTT broker")
        .await;
    ha.publish("delestage/load/water-heater/override/set", "OFF", false)
        .await;
    wait_energized(&site.relay, &[1], "the water heater cut over mqtts").await;
}

/// One retained message of 1 MB on a command topic and on Home Assistant's
/// status topic (both writable by Home Assistant): the controller drops
/// them with a warning and stays connected — one connection for a minute —
/// and a later command still switches.
#[tokio::test]
async fn a_huge_retained_message_is_dropped_and_the_connection_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("broker"), "").await;
    let site = Site::start(dir, &format!("url = \"{}\"", broker.url())).await;
    let ha = MqttWatcher::connect(broker.port, &["delestage/#"], None).await;
    ha.wait_for("delestage/status", |m| m.payload == "online")
        .await;

    let huge = "x".repeat(1_000_000);
    ha.publish("delestage/load/water-heater/override/set", &huge, true)
        .await;
    ha.publish("homeassistant/status", &huge, true).await;
    let deadline = std::time::Instant::now() + delestage_tests::BOUND;
    while site.controller.log().matches("over the size limit").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning; log:\n{}",
            site.controller.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Past a keep-alive (30 s: the ping that a connection broken by the
    // message would miss): still the one connection it made at start.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let log = site.controller.log();
    assert_eq!(
        log.matches("connected to the MQTT broker").count(),
        1,
        "reconnected; log:\n{log}"
    );
    assert_eq!(log.matches("over the size limit").count(), 2, "{log}");

    // And it still takes commands.
    ha.publish("delestage/load/heat.pump/override/set", "OFF", false)
        .await;
    wait_energized(&site.relay, &[0], "the heat pump cut by the command").await;
}

/// 1,000 ON/OFF commands for one load at once: the relay switches no more
/// than its minimum times allow (here: not at all, as the controller
/// powered it at start and min_on is an hour), the flood is said once, not
/// a thousand times.
#[tokio::test]
async fn a_flood_of_commands_cannot_short_cycle_a_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("broker"), "").await;
    let site = Site::start_with(
        dir,
        &format!("url = \"{}\"", broker.url()),
        "min_on = \"1h\"\nmin_off = \"1h\"",
    )
    .await;
    let ha = MqttWatcher::connect(broker.port, &["delestage/#"], None).await;
    ha.wait_for("delestage/status", |m| m.payload == "online")
        .await;

    let started = std::time::Instant::now();
    for i in 0..1000 {
        let command = if i % 2 == 0 { "OFF" } else { "ON" };
        ha.publish("delestage/load/heat.pump/override/set", command, false)
            .await;
    }
    // A premise, not a timing goal: the drops are said at most once a
    // minute, so "said once" below only holds for a flood inside a minute.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the flood took {:?}: too slow for the test's premise",
        started.elapsed()
    );
    // The last command is through once a mark sent after it is back.
    ha.publish("delestage/mark", "1", false).await;
    ha.wait_for("delestage/mark", |_| true).await;
    let deadline = std::time::Instant::now() + delestage_tests::BOUND;
    while !site.controller.log().contains("MQTT command dropped") {
        assert!(
            std::time::Instant::now() < deadline,
            "no word of the dropped commands; log:\n{}",
            site.controller.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The override was taken (the first command), and waits for min_on.
    let mut client = site.client.clone();
    let status = wait_status(&mut client, "the override waiting", |s| {
        load_status(s, "heat.pump").r#override.is_some()
    })
    .await;
    let pump = load_status(&status, "heat.pump");
    assert_eq!(pump.reason(), cpb::Reason::MinOnHold, "{pump:?}");
    assert_eq!(energized(&site.relay).await, vec![0, 1], "not switched");
    let log = site.controller.log();
    assert_eq!(
        log.matches("MQTT command dropped").count(),
        1,
        "said once: {log}"
    );
}

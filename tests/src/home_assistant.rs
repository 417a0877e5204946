//! A real Home Assistant, for the MQTT discovery tests: the `hass` of a
//! version installed by `scripts/home-assistant-env` (PyPI's
//! `homeassistant`, in a virtualenv of its own), started as a child process
//! on a configuration of its own, connected to the test's broker.
//!
//! What it shows is read back over MQTT, with its own `mqtt_statestream`
//! integration: every entity's state is published under
//! `hastate/<domain>/<object_id>/state`. No login, no token, no REST call:
//! the test sees exactly the state a person would see in the interface.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::{BOUND, MqttWatcher, free_port};

/// Where Home Assistant publishes the state of each entity.
pub const HA_STATE_PREFIX: &str = "hastate";

/// The Home Assistant versions the tests know, each with the variable
/// (printed by `scripts/home-assistant-env`) that names its `hass`.
pub const HOME_ASSISTANT_VERSIONS: [(&str, &str); 3] = [
    ("2024.3", "DELESTAGE_HASS_2024_3"),
    ("2024.9", "DELESTAGE_HASS_2024_9"),
    ("2025.4", "DELESTAGE_HASS_2025_4"),
];

/// A running Home Assistant. Stopped (SIGTERM, then killed) on drop.
pub struct HomeAssistant {
    pub version: &'static str,
    dir: PathBuf,
    child: Child,
}

impl HomeAssistant {
    /// The `hass` of `version`, if `scripts/home-assistant-env` installed
    /// it on this machine.
    pub fn installed(version: &str) -> Option<PathBuf> {
        let (_, var) = HOME_ASSISTANT_VERSIONS
            .iter()
            .find(|(v, _)| *v == version)?;
        let hass = PathBuf::from(std::env::var_os(var)?);
        hass.exists().then_some(hass)
    }

    /// Starts `hass` (version `version`) in `dir` with MQTT discovery on
    /// the broker at `127.0.0.1:broker_port`, and returns once it has
    /// connected and said so (its birth message, `homeassistant/status`
    /// `online`, seen by `watcher`, which must subscribe to
    /// `homeassistant/status`).
    pub async fn start(
        version: &'static str,
        hass: &Path,
        dir: &Path,
        broker_port: u16,
        watcher: &MqttWatcher,
    ) -> Self {
        let config = dir.join("config");
        write_config(&config, broker_port);
        let log = std::fs::File::create(dir.join("home-assistant.log")).expect("the log file");
        let child = Command::new(hass)
            .arg("--config")
            .arg(&config)
            // Everything it needs was installed with it; nothing from the
            // network at run time.
            .arg("--skip-pip")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", hass.display()));
        let ha = Self {
            version,
            dir: dir.to_owned(),
            child,
        };
        // A cold start reads and compiles every integration it loads: it
        // gets longer than one ordinary wait (a busy machine has taken more
        // than `BOUND`).
        let started = Instant::now();
        let online = watcher
            .wait_for_within(BOUND * 3, "homeassistant/status", |m| m.payload == "online")
            .await;
        if online.is_none() {
            panic!(
                "Home Assistant {version} did not come online within {:?}; its log:\n{}",
                BOUND * 3,
                ha.log()
            );
        }
        eprintln!(
            "Home Assistant {version} online after {:?}",
            started.elapsed()
        );
        ha
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("home-assistant.log")).unwrap_or_default()
    }

    /// The state topic of entity `entity_id` (`sensor.delestage_tempo_today`).
    pub fn state_topic(entity_id: &str) -> String {
        let (domain, object) = entity_id.split_once('.').expect("domain.object_id");
        format!("{HA_STATE_PREFIX}/{domain}/{object}/state")
    }
}

impl Drop for HomeAssistant {
    fn drop(&mut self) {
        // It saves its state on SIGTERM; the test's directory goes anyway,
        // and kill_on_drop ends it if it lingers.
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
}

/// A bare configuration: no onboarding, no default integrations beyond
/// what Home Assistant always loads, HTTP on a free loopback port (never
/// 8123, which a person's own Home Assistant may hold), the MQTT broker as
/// a config entry (the only way since 2022.12) with discovery on, and the
/// states published back over MQTT.
fn write_config(config: &Path, broker_port: u16) {
    std::fs::create_dir_all(config.join(".storage")).expect("the config dir");
    let http_port = free_port();
    std::fs::write(
        config.join("configuration.yaml"),
        format!(
            "homeassistant:\n  name: delestage-test\n  latitude: 48.85\n  longitude: 2.35\n  \
             elevation: 35\n  unit_system: metric\n  time_zone: Europe/Paris\n  country: FR\n\
             http:\n  server_host: 127.0.0.1\n  server_port: {http_port}\n\
             mqtt_statestream:\n  base_topic: {HA_STATE_PREFIX}\n  publish_attributes: false\n  \
             publish_timestamps: false\n\
             logger:\n  default: warning\n"
        ),
    )
    .expect("write configuration.yaml");
    let entries = serde_json::json!({
        "version": 1,
        "minor_version": 1,
        "key": "core.config_entries",
        "data": { "entries": [{
            "entry_id": "delestagetestmqtt",
            "version": 1,
            "minor_version": 1,
            "domain": "mqtt",
            "title": "127.0.0.1",
            "data": { "broker": "127.0.0.1", "port": broker_port, "discovery": true },
            "options": {},
            "pref_disable_new_entities": false,
            "pref_disable_polling": false,
            "source": "user",
            "unique_id": null,
            "disabled_by": null,
        }]},
    });
    std::fs::write(
        config.join(".storage/core.config_entries"),
        entries.to_string(),
    )
    .expect("write the MQTT config entry");
}

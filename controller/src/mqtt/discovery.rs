//! Home Assistant MQTT discovery: the topics delestage uses, and the
//! retained config messages that make its entities appear in Home
//! Assistant with no YAML, all under one device "delestage". Pure.
//!
//! Every entity reads a state topic that is useful on its own (a script
//! can subscribe to `delestage/load/NAME/state` without Home Assistant):
//! the templates pick the field each entity shows.

use delestage_proto::vocabulary::{SignalLevel, TempoColor};
use serde_json::{Value, json};

use crate::model::object_id;

/// The topics of one controller: `prefix` for states and commands, the
/// discovery prefix for Home Assistant's configs.
#[derive(Debug, Clone)]
pub(crate) struct Topics {
    prefix: String,
    discovery_prefix: String,
    /// The prefix as a discovery node id and unique-id stem (`[A-Za-z0-9_-]`).
    node: String,
}

/// A discovery config: its topic and its JSON.
pub(crate) type Config = (String, Value);

/// Payloads of the availability topic (also the last will).
pub(crate) const ONLINE: &str = "online";
pub(crate) const OFFLINE: &str = "offline";

impl Topics {
    pub(crate) fn new(prefix: &str, discovery_prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            discovery_prefix: discovery_prefix.to_owned(),
            node: object_id(prefix),
        }
    }

    /// `online` while connected; the broker publishes `offline`, our last
    /// will, if the controller goes away without a word.
    pub(crate) fn availability(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// The Ecowatt level now, as text.
    pub(crate) fn level(&self) -> String {
        format!("{}/level", self.prefix)
    }

    /// The Linky meter (JSON: apparent_power_va, subscribed_va,
    /// tempo_today, tempo_tomorrow), at most every 5 s.
    pub(crate) fn meter(&self) -> String {
        format!("{}/meter", self.prefix)
    }

    /// The power kept off now (JSON: power_saved_w).
    pub(crate) fn power_saved(&self) -> String {
        format!("{}/power_saved", self.prefix)
    }

    /// The next tense period (JSON: start, end, level).
    pub(crate) fn next_tense(&self) -> String {
        format!("{}/next_tense", self.prefix)
    }

    /// Today's and tomorrow's Tempo colours (JSON: today, tomorrow).
    pub(crate) fn tempo(&self) -> String {
        format!("{}/tempo", self.prefix)
    }

    /// A load's state: the JSON of `delestage status --json` for it.
    pub(crate) fn load_state(&self, load: &str) -> String {
        format!("{}/load/{load}/state", self.prefix)
    }

    /// Where people (and Home Assistant) send `ON`, `OFF` or `CLEAR`.
    pub(crate) fn override_set(&self, load: &str) -> String {
        format!("{}/load/{load}/override/set", self.prefix)
    }

    /// Every load's command topic, to subscribe to.
    pub(crate) fn override_set_filter(&self) -> String {
        self.override_set("+")
    }

    /// Every load's state topic: retained ones of loads that are gone are
    /// cleared.
    pub(crate) fn load_state_filter(&self) -> String {
        self.load_state("+")
    }

    /// The load a command topic is for, if it is one.
    pub(crate) fn load_of_command<'t>(&self, topic: &'t str) -> Option<&'t str> {
        self.load_in(topic, "/override/set")
    }

    /// The load a state topic is for, if it is one.
    pub(crate) fn load_of_state<'t>(&self, topic: &'t str) -> Option<&'t str> {
        self.load_in(topic, "/state")
    }

    fn load_in<'t>(&self, topic: &'t str, suffix: &str) -> Option<&'t str> {
        let load = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/load/")?
            .strip_suffix(suffix)?;
        (!load.is_empty() && !load.contains('/')).then_some(load)
    }

    /// Home Assistant says `online` here when it (re)starts.
    pub(crate) fn ha_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    /// Every discovery config of this controller, whatever the component.
    pub(crate) fn configs_filter(&self) -> String {
        format!("{}/+/{}/+/config", self.discovery_prefix, self.node)
    }

    fn config(&self, component: &str, object: &str) -> String {
        format!(
            "{}/{component}/{}/{object}/config",
            self.discovery_prefix, self.node
        )
    }
}

/// Every config, for these loads: the controller's sensors, then four
/// entities per load.
pub(crate) fn configs<'a>(
    topics: &Topics,
    loads: impl IntoIterator<Item = &'a str>,
    meter: bool,
    version: &str,
) -> Vec<Config> {
    let device = Device::new(topics, version);
    let mut configs = device.controller_entities();
    if meter {
        configs.extend(device.meter_entities());
    }
    for load in loads {
        configs.extend(device.load_entities(load));
    }
    configs
}

/// The one device every entity belongs to.
struct Device<'a> {
    topics: &'a Topics,
    version: &'a str,
    device: Value,
}

impl<'a> Device<'a> {
    fn new(topics: &'a Topics, version: &'a str) -> Self {
        let device = json!({
            "identifiers": [format!("delestage_{}", topics.node)],
            "name": "delestage",
            "manufacturer": "delestage",
            "model": "Grid-aware load shedding",
            "sw_version": version,
        });
        Self {
            topics,
            version,
            device,
        }
    }

    /// One entity's config: what every entity shares, and `fields`.
    fn entity(&self, component: &str, object: &str, fields: Value) -> Config {
        let mut config = json!({
            "unique_id": format!("delestage_{}_{object}", self.topics.node),
            "availability_topic": self.topics.availability(),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": self.device,
            "origin": { "name": "delestage", "sw_version": self.version },
        });
        if let (Some(config), Value::Object(fields)) = (config.as_object_mut(), fields) {
            config.extend(fields);
        }
        (self.topics.config(component, object), config)
    }

    /// An entity that is also unavailable while its value is unknown:
    /// available only when both the controller is online and `known`
    /// (a template over the state topic's message) says `online`. Home
    /// Assistant before 2024.10 shows a `None` state as the text "None", or
    /// keeps the last value (a stale red); "unavailable" reads the same on
    /// every version.
    fn entity_known_only(
        &self,
        object: &str,
        state_topic: &str,
        known: &str,
        fields: Value,
    ) -> Config {
        let (topic, mut config) = self.entity("sensor", object, fields);
        if let Some(config) = config.as_object_mut() {
            config.remove("availability_topic");
            config.remove("payload_available");
            config.remove("payload_not_available");
            config.insert("availability_mode".to_owned(), json!("all"));
            config.insert(
                "availability".to_owned(),
                json!([
                    {
                        "topic": self.topics.availability(),
                        "payload_available": ONLINE,
                        "payload_not_available": OFFLINE,
                    },
                    {
                        "topic": state_topic,
                        "value_template": format!("{{{{ '{ONLINE}' if {known} else '{OFFLINE}' }}}}"),
                        "payload_available": ONLINE,
                        "payload_not_available": OFFLINE,
                    },
                ]),
            );
        }
        (topic, config)
    }

    /// The controller's own sensors: the level, the next tense hour, the
    /// Tempo colours of today and tomorrow; each unavailable while unknown.
    fn controller_entities(&self) -> Vec<Config> {
        let topics = self.topics;
        let levels: Vec<&str> = SignalLevel::ALL.iter().map(|l| l.name()).collect();
        let colours: Vec<&str> = TempoColor::ALL.iter().map(|c| c.name()).collect();
        // `unknown` on the topic is Home Assistant's own unknown state.
        let known = |field: &str| {
            format!("{{{{ value_json.{field} if value_json.{field} != 'unknown' else None }}}}")
        };
        vec![
            self.entity_known_only(
                "level",
                &topics.level(),
                "value != 'unknown'",
                json!({
                    "name": "Ecowatt level",
                    "state_topic": topics.level(),
                    "value_template": "{{ value if value != 'unknown' else None }}",
                    "device_class": "enum",
                    "options": levels,
                    "icon": "mdi:transmission-tower",
                }),
            ),
            self.entity_known_only(
                "next_tense",
                &topics.next_tense(),
                "value_json.start",
                json!({
                    "name": "Next tense hour",
                    "state_topic": topics.next_tense(),
                    "value_template": "{{ value_json.start or None }}",
                    "json_attributes_topic": topics.next_tense(),
                    "device_class": "timestamp",
                    "icon": "mdi:clock-alert-outline",
                }),
            ),
            self.entity_known_only(
                "tempo_today",
                &topics.tempo(),
                "value_json.today != 'unknown'",
                json!({
                    "name": "Tempo today",
                    "state_topic": topics.tempo(),
                    "value_template": known("today"),
                    "device_class": "enum",
                    "options": colours,
                    "icon": "mdi:calendar-today",
                }),
            ),
            self.entity_known_only(
                "tempo_tomorrow",
                &topics.tempo(),
                "value_json.tomorrow != 'unknown'",
                json!({
                    "name": "Tempo tomorrow",
                    "state_topic": topics.tempo(),
                    "value_template": known("tomorrow"),
                    "device_class": "enum",
                    "options": colours,
                    "icon": "mdi:calendar-arrow-right",
                }),
            ),
        ]
    }

    /// The Linky meter's sensors (`[meter] relay`): the house's apparent
    /// power, and the colours the meter says; each unavailable while
    /// unknown.
    fn meter_entities(&self) -> Vec<Config> {
        let topics = self.topics;
        let colours: Vec<&str> = TempoColor::ALL.iter().map(|c| c.name()).collect();
        let meter = topics.meter();
        let colour = |object: &str, name: &str, field: &str| {
            self.entity_known_only(
                object,
                &meter,
                &format!("value_json.{field} != 'unknown'"),
                json!({
                    "name": name,
                    "state_topic": meter,
                    "value_template": format!("{{{{ value_json.{field} }}}}"),
                    "device_class": "enum",
                    "options": colours,
                    "icon": "mdi:meter-electric",
                }),
            )
        };
        vec![
            self.entity_known_only(
                "apparent_power",
                &meter,
                "value_json.apparent_power_va is not none",
                json!({
                    "name": "Apparent power",
                    "state_topic": meter,
                    "value_template": "{{ value_json.apparent_power_va }}",
                    "device_class": "apparent_power",
                    "unit_of_measurement": "VA",
                    "state_class": "measurement",
                }),
            ),
            self.entity(
                "sensor",
                "power_saved",
                json!({
                    "name": "Power saved now",
                    "state_topic": topics.power_saved(),
                    "value_template": "{{ value_json.power_saved_w }}",
                    "device_class": "power",
                    "unit_of_measurement": "W",
                    "state_class": "measurement",
                    "icon": "mdi:transmission-tower-off",
                }),
            ),
            colour("meter_tempo_today", "Meter Tempo today", "tempo_today"),
            colour(
                "meter_tempo_tomorrow",
                "Meter Tempo tomorrow",
                "tempo_tomorrow",
            ),
        ]
    }

    /// A load's four entities: powered, reason, the override switch and
    /// the button that clears it.
    fn load_entities(&self, load: &str) -> [Config; 4] {
        let id = object_id(load);
        let state = self.topics.load_state(load);
        let command = self.topics.override_set(load);
        [
            self.entity(
                "binary_sensor",
                &format!("{id}_powered"),
                json!({
                    "name": format!("{load} powered"),
                    "state_topic": state,
                    // `powered` is null while the relay is not seen.
                    "value_template": "{% if value_json.powered is none %}None{% elif value_json.powered %}ON{% else %}OFF{% endif %}",
                    "json_attributes_topic": state,
                    "device_class": "power",
                }),
            ),
            self.entity(
                "sensor",
                &format!("{id}_reason"),
                json!({
                    "name": format!("{load} reason"),
                    "state_topic": state,
                    "value_template": "{{ value_json.reason }}",
                    "icon": "mdi:information-outline",
                }),
            ),
            self.entity(
                "switch",
                &format!("{id}_override"),
                json!({
                    "name": format!("{load} override"),
                    // Shows what the controller wants for the load (the
                    // plan, or an override); flipping it overrides.
                    "state_topic": state,
                    "value_template": "{{ 'ON' if value_json.desired else 'OFF' }}",
                    "command_topic": command,
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "icon": "mdi:hand-back-right",
                }),
            ),
            self.entity(
                "button",
                &format!("{id}_clear_override"),
                json!({
                    "name": format!("{load} clear override"),
                    "command_topic": command,
                    "payload_press": "CLEAR",
                    "icon": "mdi:restore",
                }),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_prefixes() {
        let t = Topics::new("house/delestage", "ha");
        assert_eq!(t.level(), "house/delestage/level");
        assert_eq!(t.load_state("boiler"), "house/delestage/load/boiler/state");
        assert_eq!(
            t.override_set_filter(),
            "house/delestage/load/+/override/set"
        );
        assert_eq!(t.ha_status(), "ha/status");
        assert_eq!(t.configs_filter(), "ha/+/house_delestage/+/config");
        assert_eq!(
            t.load_of_command("house/delestage/load/boiler/override/set"),
            Some("boiler")
        );
        assert_eq!(
            t.load_of_command("house/delestage/load//override/set"),
            None
        );
        assert_eq!(
            t.load_of_command("house/delestage/load/a/b/override/set"),
            None
        );
        assert_eq!(t.load_of_command("other/load/boiler/override/set"), None);
        assert_eq!(
            t.load_of_state("house/delestage/load/boiler/state"),
            Some("boiler")
        );
    }

    #[test]
    fn every_load_gets_four_entities_on_one_device() {
        let t = Topics::new("delestage", "homeassistant");
        let configs = configs(&t, ["boiler", "heat.pump"], false, "1.2.3");
        assert_eq!(configs.len(), 4 + 2 * 4);
        let topics: Vec<&str> = configs.iter().map(|(t, _)| t.as_str()).collect();
        for expected in [
            "homeassistant/sensor/delestage/level/config",
            "homeassistant/sensor/delestage/next_tense/config",
            "homeassistant/sensor/delestage/tempo_today/config",
            "homeassistant/sensor/delestage/tempo_tomorrow/config",
            "homeassistant/binary_sensor/delestage/boiler_powered/config",
            "homeassistant/sensor/delestage/boiler_reason/config",
            "homeassistant/switch/delestage/boiler_override/config",
            "homeassistant/button/delestage/boiler_clear_override/config",
            "homeassistant/switch/delestage/heat_pump_override/config",
        ] {
            assert!(topics.contains(&expected), "{expected} in {topics:#?}");
        }
        let mut unique: Vec<&str> = configs
            .iter()
            .map(|(_, c)| c["unique_id"].as_str().expect("ok"))
            .collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), configs.len());
        for (_, c) in &configs {
            assert_eq!(c["device"]["name"], "delestage");
            assert_eq!(c["device"]["identifiers"][0], "delestage_delestage");
            let first = c["availability"][0]["topic"].as_str();
            let topic = c["availability_topic"].as_str().or(first);
            assert_eq!(topic, Some("delestage/status"), "{c}");
        }
        // The controller's sensors are unavailable while unknown, too.
        let level = &configs[0].1;
        assert_eq!(level["availability_mode"], "all");
        assert_eq!(level["availability"][1]["topic"], "delestage/level");
        assert_eq!(
            level["availability"][1]["value_template"],
            "{{ 'online' if value != 'unknown' else 'offline' }}"
        );
        let switch = &configs
            .iter()
            .find(|(t, _)| t.ends_with("heat_pump_override/config"))
            .expect("ok")
            .1;
        assert_eq!(
            switch["command_topic"],
            "delestage/load/heat.pump/override/set"
        );
        assert_eq!(switch["state_topic"], "delestage/load/heat.pump/state");
        assert_eq!(
            configs[0].1["options"],
            json!(["carbon-free", "green", "orange", "red"])
        );
    }
}

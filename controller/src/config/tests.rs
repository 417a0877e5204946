use super::*;
use crate::model::{RunWindow, SignalLevel, TempoColor};

const EXAMPLE: &str = r#"
listen = "127.0.0.1:50053"
state_dir = "/var/lib/delestage"
forecast = "http://127.0.0.1:50052"

[relays.garage]
endpoint = "http://127.0.0.1:50051"

[[load]]
name = "water-heater"
relay = "garage:0"
wiring = "normally-open"
shed_at = "orange"
priority = 10
min_on = "5m"
min_off = "10m"
anticipate = "0m"
when_forecast_unknown = "keep"

[[load]]
name = "ev"
relay = "garage:1"
wiring = "normally-closed"
shed_at = "red"

[policy]
restore_stagger = "30s"
forecast_max_age = "6h"
"#;

fn parse(text: &str) -> Result<Settings, Error> {
    Settings::from_toml(text, Path::new("ctl.toml"), &[])
}

fn err(text: &str) -> String {
    parse(text).expect_err("must be refused").to_string()
}

#[test]
fn the_issue_example_parses() {
    let s = parse(EXAMPLE).expect("valid");
    assert_eq!(s.listen, "127.0.0.1:50053");
    assert_eq!(s.relay_services.len(), 1);
    assert_eq!(s.loads.len(), 2);
    let heater = &s.loads[0];
    assert_eq!(heater.relay.to_string(), "garage:0");
    assert_eq!(heater.shed_at, Some(SignalLevel::Orange));
    assert_eq!(heater.min_on, Duration::from_secs(300));
    assert_eq!(heater.min_off, Duration::from_secs(600));
    let ev = &s.loads[1];
    assert_eq!(ev.wiring, Wiring::NormallyClosed);
    assert_eq!(ev.priority, 0);
    assert_eq!(ev.when_forecast_unknown, Fallback::Keep);
    assert_eq!(s.restore_stagger, Duration::from_secs(30));
}

#[test]
fn the_example_in_deploy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/controller.toml");
    let s = Settings::from_args(&["controller", "--config", path.to_str().expect("utf-8")])
        .expect("deploy/controller.toml is valid");
    assert!(s.loads.len() >= 4);
}

#[test]
fn the_compose_and_kubernetes_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let compose = root.join("deploy/docker/controller.compose.toml");
    let text = std::fs::read_to_string(&compose).expect("read");
    let s = Settings::from_toml(&text, &compose, &[]).expect("compose config is valid");
    assert_eq!(s.relay_services[0].endpoint, "http://relay:50051");

    // The ConfigMap's controller.toml, un-indented.
    let k8s = std::fs::read_to_string(root.join("deploy/k8s/delestage.yaml")).expect("read");
    let start =
        k8s.find("  controller.toml: |\n").expect("the ConfigMap") + "  controller.toml: |\n".len();
    let block: String = k8s[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    Settings::from_toml(&block, Path::new("k8s ConfigMap"), &[]).expect("k8s config is valid");
}

#[test]
fn errors_name_the_file_the_key_and_the_problem() {
    let cases = [
        (
            EXAMPLE.replace("shed_at = \"red\"", "shed_at = \"green\""),
            "shed_at",
        ),
        (
            EXAMPLE.replace("min_on = \"5m\"", "min_on = \"5 minuts\""),
            "ctl.toml: load[0].min_on",
        ),
        (
            EXAMPLE.replace("relay = \"garage:1\"", "relay = \"garage:0\""),
            "already the relay of load \"water-heater\"",
        ),
        (
            EXAMPLE.replace("relay = \"garage:1\"", "relay = \"cellar:1\""),
            "no relay-service named \"cellar\"",
        ),
        (
            EXAMPLE.replace("relay = \"garage:1\"", "relay = \"garage\""),
            "RELAY_SERVICE:CHANNEL",
        ),
        (
            EXAMPLE.replace("name = \"ev\"", "name = \"water-heater\""),
            "two loads have this name",
        ),
        (EXAMPLE.replace("priority = 10", "priorty = 10"), "priorty"),
        (
            EXAMPLE.replace("restore_stagger", "restore_staggger"),
            "restore_staggger",
        ),
        (
            EXAMPLE.replace(
                "endpoint = \"http://127.0.0.1:50051\"",
                "endpoint = \"127.0.0.1:50051\"",
            ),
            "relays.garage.endpoint",
        ),
        (
            EXAMPLE.replace("wiring = \"normally-open\"", "wiring = \"NO\""),
            "wiring",
        ),
    ];
    for (text, expected) in cases {
        let msg = err(&text);
        assert!(msg.contains("ctl.toml"), "{msg}");
        assert!(
            msg.contains(expected),
            "{msg:?} should contain {expected:?}"
        );
    }
}

#[test]
fn no_loads_and_no_config_are_errors() {
    assert!(err("[relays.a]\nendpoint = \"http://127.0.0.1:1\"\n").contains("nothing to control"));
    let msg = Settings::from_args(&["controller"])
        .expect_err("no --config")
        .to_string();
    assert!(msg.contains("--config"), "{msg}");
}

#[test]
fn flags_win_over_the_file() {
    let s = Settings::from_toml(
        EXAMPLE,
        Path::new("ctl.toml"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            "/tmp/elsewhere",
            "--restore-stagger",
            "5s",
        ],
    )
    .expect("valid");
    assert_eq!(s.restore_stagger, Duration::from_secs(5));
    assert_eq!(s.listen, "127.0.0.1:0");
    assert_eq!(s.state_dir, PathBuf::from("/tmp/elsewhere"));
}

mod robustness {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text as a config file: an error naming the file, or
        /// settings; never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Err(e) = Settings::from_toml(&text, Path::new("fuzz.toml"), &[]) {
                prop_assert!(e.to_string().contains("fuzz.toml"), "{}", e);
            }
        }

        /// The example with one value swapped for junk: still an error
        /// that names the file, never a panic.
        #[test]
        fn junk_values_are_named_errors(
            key in prop_oneof![
                Just("shed_at"), Just("relay"), Just("priority"), Just("min_on"),
                Just("wiring"), Just("when_forecast_unknown"), Just("restore_stagger"),
            ],
            junk in "[a-z0-9:\"\\[\\] ]{0,12}",
        ) {
            let text: String = super::EXAMPLE
                .lines()
                .map(|l| if l.starts_with(key) { format!("{key} = {junk}") } else { l.to_owned() })
                .collect::<Vec<_>>()
                .join("\n");
            if let Err(e) = Settings::from_toml(&text, Path::new("ctl.toml"), &[]) {
                prop_assert!(e.to_string().contains("ctl.toml"), "{}", e);
            }
        }
    }
}

#[test]
fn wiring_is_required_and_the_error_explains_both_choices() {
    let text = EXAMPLE.replace("wiring = \"normally-open\"\n", "");
    let msg = err(&text);
    assert!(msg.contains("load[0] (\"water-heater\").wiring"), "{msg}");
    assert!(
        msg.contains("normally-closed") && msg.contains("normally-open"),
        "{msg}"
    );
    assert!(msg.contains("recommended"), "{msg}");
}

#[test]
fn the_example_relay_box_and_controller_describe_the_same_installation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("deploy/controller.toml");
    let s = Settings::from_args(&["controller", "--config", path.to_str().expect("utf-8")])
        .expect("valid");
    let relay: toml::Table = std::fs::read_to_string(root.join("deploy/relay-service.toml"))
        .expect("read")
        .parse()
        .expect("toml");
    let labels = relay["labels"].as_table().expect("[labels]");
    for load in &s.loads {
        let label = labels
            .get(&load.relay.channel.to_string())
            .and_then(|l| l.as_str())
            .unwrap_or_default();
        assert_eq!(
            label.to_lowercase().replace(' ', "-"),
            load.name,
            "channel {} is {:?} on the relay box but load {:?} in the controller",
            load.relay.channel,
            label,
            load.name
        );
        // The examples show the recommended wiring.
        assert_eq!(load.wiring, Wiring::NormallyClosed, "{}", load.name);
    }
}

#[test]
fn shed_on_tempo_makes_shed_at_optional_and_one_of_the_two_is_needed() {
    let tempo_only = EXAMPLE.replace("shed_at = \"red\"", "shed_on_tempo = \"red\"");
    let s = parse(&tempo_only).expect("valid");
    assert_eq!(s.loads[1].shed_at, None);
    assert_eq!(s.loads[1].shed_on_tempo, Some(TempoColor::Red));
    let both = EXAMPLE.replace(
        "shed_at = \"red\"",
        "shed_at = \"red\"\nshed_on_tempo = \"white\"",
    );
    let s = parse(&both).expect("valid");
    assert_eq!(s.loads[1].shed_at, Some(SignalLevel::Red));
    assert_eq!(s.loads[1].shed_on_tempo, Some(TempoColor::White));

    let neither = err(&EXAMPLE.replace("shed_at = \"red\"\n", ""));
    assert!(
        neither.starts_with("ctl.toml: load[1] (\"ev\").shed_at")
            && neither.contains("shed_on_tempo"),
        "{neither}"
    );
    // Blue days are the cheap ones: nothing to shed on.
    let blue = err(&EXAMPLE.replace("shed_at = \"red\"", "shed_on_tempo = \"blue\""));
    assert!(
        blue.contains("shed_on_tempo") && blue.contains("white"),
        "{blue}"
    );
}

#[test]
fn comfort_and_schedule_keys_parse_and_their_errors_name_the_field() {
    let pump = EXAMPLE.replace(
        "shed_at = \"red\"\n",
        "run_daily = \"3h\"\nrun_window = [\"22:00-06:00\", \"12:00-14:00\"]\nmax_off = \"4h\"\n",
    ) + "restore_jitter = \"5m\"\n";
    let s = parse(&pump).expect("valid");
    let ev = &s.loads[1];
    assert_eq!(ev.shed_at, None);
    assert_eq!(ev.max_off, Some(Duration::from_secs(4 * 3600)));
    let daily = ev.run_daily.as_ref().expect("run_daily");
    assert_eq!(daily.budget, Duration::from_secs(3 * 3600));
    let windows: Vec<String> = daily.windows.iter().map(ToString::to_string).collect();
    assert_eq!(windows, ["22:00-06:00", "12:00-14:00"]);
    assert_eq!(s.restore_jitter, Duration::from_secs(300));
    // No run_window: the whole day; no restore_jitter: none.
    let all_day =
        parse(&EXAMPLE.replace("shed_at = \"red\"\n", "run_daily = \"3h\"\n")).expect("valid");
    assert_eq!(
        all_day.loads[1]
            .run_daily
            .as_ref()
            .map(|d| d.windows.clone()),
        Some(vec![RunWindow::ALL_DAY])
    );
    assert_eq!(all_day.restore_jitter, Duration::ZERO);

    let cases = [
        (
            "run_daily = \"3h\"\nrun_window = [\"22:00\"]\n",
            "load[1] (\"ev\").run_window",
            "HH:MM-HH:MM",
        ),
        (
            "run_daily = \"3h\"\nrun_window = [\"12:00-14:00\"]\n",
            "load[1] (\"ev\").run_daily",
            "gives 2h",
        ),
        (
            "run_daily = \"3h\"\nrun_window = []\n",
            "load[1] (\"ev\").run_window",
            "empty",
        ),
        (
            "run_daily = \"25h\"\n",
            "load[1] (\"ev\").run_daily",
            "at most 24h",
        ),
        (
            "shed_at = \"red\"\nrun_window = [\"12:00-14:00\"]\n",
            "load[1] (\"ev\").run_window",
            "run_daily",
        ),
        (
            "shed_at = \"red\"\nmax_off = \"5m\"\nmin_off = \"10m\"\n",
            "load[1] (\"ev\").max_off",
            "min_off",
        ),
        (
            "shed_at = \"red\"\nmax_off = \"0s\"\n",
            "load[1] (\"ev\").max_off",
            "more than zero",
        ),
    ];
    for (keys, field, what) in cases {
        let e = err(&EXAMPLE.replace("shed_at = \"red\"\n", keys));
        assert!(
            e.starts_with(&format!("ctl.toml: {field}")) && e.contains(what),
            "{keys}: {e}"
        );
    }
    let typo = err(&EXAMPLE.replace("shed_at = \"red\"\n", "run_dialy = \"3h\"\n"));
    assert!(typo.contains("run_dialy"), "{typo}");
}

#[test]
fn the_dashboard_is_off_unless_asked_and_a_network_address_needs_protection() {
    assert!(parse(EXAMPLE).expect("parses").http.is_none());

    let on_file = format!("http = \"127.0.0.1:8080\"\n{EXAMPLE}");
    let http = parse(&on_file).expect("parses").http.expect("served");
    assert_eq!(http.listen, "127.0.0.1:8080");
    assert!(http.security.tls.is_none() && http.security.tokens.is_none());

    let flag = Settings::from_toml(EXAMPLE, Path::new("ctl.toml"), &["--http", "[::1]:0"])
        .expect("parses");
    assert_eq!(flag.http.expect("served").listen, "[::1]:0");

    let open = Settings::from_toml(EXAMPLE, Path::new("ctl.toml"), &["--http", "0.0.0.0:8080"])
        .expect_err("refused")
        .to_string();
    assert!(open.contains("--http"), "{open}");
    assert!(
        open.contains("refusing to listen on 0.0.0.0:8080"),
        "{open}"
    );

    let trusted = Settings::from_toml(
        EXAMPLE,
        Path::new("ctl.toml"),
        &["--http", "0.0.0.0:8080", "--insecure"],
    )
    .expect("--insecure allows it");
    assert!(trusted.http.is_some());
}

#[test]
fn mqtt_is_off_unless_asked_and_its_errors_name_the_key() {
    assert!(parse(EXAMPLE).expect("parses").mqtt.is_none());

    let table = |body: &str| format!("{EXAMPLE}\n[mqtt]\n{body}\n");
    let on = parse(&table(
        "url = \"mqtt://192.168.1.5\"\nusername = \"delestage\"\npassword_file = \"/etc/delestage/mqtt\"\nprefix = \"house\"\noverride_duration = \"30m\"",
    ))
    .expect("parses")
    .mqtt
    .expect("on");
    assert_eq!(on.broker.url(), "mqtt://192.168.1.5:1883");
    assert_eq!(on.client_id, "delestage-house");
    assert_eq!(on.discovery_prefix, "homeassistant");
    assert_eq!(on.override_duration, Duration::from_secs(1800));

    let flag = Settings::from_toml(
        &table("url = \"mqtt://192.168.1.5\""),
        Path::new("ctl.toml"),
        &["--mqtt", "mqtts://broker.lan", "--mqtt-prefix", "garage"],
    )
    .expect("parses")
    .mqtt
    .expect("on");
    assert_eq!(flag.broker.url(), "mqtts://broker.lan:8883");
    assert_eq!(flag.prefix, "garage");

    let wrong = err(&table("url = \"http://192.168.1.5:1883\""));
    assert!(wrong.contains("ctl.toml: mqtt.url"), "{wrong}");
    assert!(wrong.contains("mqtt://HOST:1883"), "{wrong}");
    let typo = err(&table("url = \"mqtt://b\"\nprefx = \"x\""));
    assert!(typo.contains("unknown key `mqtt.prefx`"), "{typo}");
    let flag = Settings::from_toml(EXAMPLE, Path::new("ctl.toml"), &["--mqtt", "tcp://b"])
        .expect_err("refused")
        .to_string();
    assert!(flag.contains("--mqtt"), "{flag}");
    let twins = err(&format!(
        "{EXAMPLE}\n[[load]]\nname = \"a.b\"\nrelay = \"garage:2\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n\
         [[load]]\nname = \"a_b\"\nrelay = \"garage:3\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n\
         [mqtt]\nurl = \"mqtt://b\"\n"
    ));
    assert!(twins.contains("load[3].name"), "{twins}");
    assert!(twins.contains("one entity in Home Assistant"), "{twins}");
    let duration = err(&table("url = \"mqtt://b\"\noverride_duration = \"0s\""));
    assert!(duration.contains("mqtt.override_duration"), "{duration}");
    let duration = err(&table(
        "url = \"mqtt://b\"\noverride_duration = \"1000years\"",
    ));
    assert!(
        duration.contains("mqtt.override_duration") && duration.contains("366 days"),
        "{duration}"
    );
}

#[test]
fn the_meter_relay_names_a_relay_box() {
    assert_eq!(parse(EXAMPLE).expect("ok").meter_relay, None);
    let with_meter = format!("{EXAMPLE}\n[meter]\nrelay = \"garage\"\n");
    assert_eq!(
        parse(&with_meter).expect("ok").meter_relay.as_deref(),
        Some("garage")
    );
    let typo = err(&format!("{EXAMPLE}\n[meter]\nrelay = \"garrage\"\n"));
    assert!(
        typo.contains("meter.relay") && typo.contains("garrage") && typo.contains("garage"),
        "{typo}"
    );
    let unknown_key = err(&format!("{EXAMPLE}\n[meter]\nrelais = \"garage\"\n"));
    assert!(unknown_key.contains("meter.relais"), "{unknown_key}");
}

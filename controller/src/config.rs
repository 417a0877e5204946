//! The controller's configuration: a TOML file (the loads, the
//! relay-services, the policy) and a few flags that win over it.
//!
//! Every error names the file, the key and what is wrong, and the
//! controller does not start: a load switched by mistake is worse than a
//! controller that refuses a typo.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use delestage_runtime::client::ClientSecurity;
use delestage_runtime::security::{Security, SecurityArgs, SecurityFile};
use delestage_runtime::telemetry::LogFormat;
use serde::Deserialize;

use crate::Error;
use crate::model::{Fallback, Load, RelayAddress, SignalLevel, Wiring};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50053";
pub const DEFAULT_FORECAST: &str = "http://127.0.0.1:50052";
pub const DEFAULT_RESTORE_STAGGER: Duration = Duration::from_secs(30);
pub const DEFAULT_FORECAST_MAX_AGE: Duration = Duration::from_secs(6 * 3600);

/// Turns RTE's Ecowatt forecast and a list of loads into a plan, and makes
/// the relays of one or more relay-services agree with it. Serves
/// delestage.controller.v1.ControllerService over gRPC (status, plan,
/// overrides, history), with grpc.health.v1 and server reflection.
///
/// The loads, relay-services and policy are in the --config file (see the
/// README for every key); the flags below win over the file's keys of the
/// same name.
#[derive(Debug, Default, Parser)]
#[command(name = "controller", version, about, long_about)]
pub struct Cli {
    /// TOML config file (required): loads, relay-services, policy.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to serve gRPC on [default: 127.0.0.1:50053].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Where overrides and the switch history are kept [default:
    /// $STATE_DIRECTORY, else $XDG_STATE_HOME/delestage/controller, else
    /// ~/.local/state/delestage/controller].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Log format [default: text]. RUST_LOG filters (default: info).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Serve Prometheus metrics (GET /metrics) on this address [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    state_dir: Option<PathBuf>,
    forecast: Option<String>,
    forecast_tls_ca: Option<PathBuf>,
    forecast_tls_cert: Option<PathBuf>,
    forecast_tls_key: Option<PathBuf>,
    forecast_token_file: Option<PathBuf>,
    log_format: Option<LogFormat>,
    metrics: Option<String>,
    #[serde(default)]
    relays: BTreeMap<String, RelayServiceConfig>,
    #[serde(default)]
    load: Vec<LoadConfig>,
    #[serde(default)]
    policy: PolicyConfig,
    /// TLS, tokens, --insecure for the controller's own API.
    #[serde(default)]
    security: SecurityFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayServiceConfig {
    endpoint: String,
    /// With an https endpoint: the CA that signed its certificate.
    tls_ca: Option<PathBuf>,
    /// Our client certificate and key, when it requires one.
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// A file holding the bearer token to send it (role control).
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadConfig {
    name: String,
    relay: String,
    #[serde(default)]
    wiring: WiringChoice,
    shed_at: ShedAt,
    #[serde(default)]
    priority: i32,
    min_on: Option<String>,
    min_off: Option<String>,
    anticipate: Option<String>,
    #[serde(default)]
    when_forecast_unknown: FallbackChoice,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyConfig {
    restore_stagger: Option<String>,
    forecast_max_age: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum WiringChoice {
    #[default]
    NormallyOpen,
    NormallyClosed,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ShedAt {
    Orange,
    Red,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FallbackChoice {
    #[default]
    Keep,
    Shed,
    Restore,
}

/// A relay-service the controller drives.
#[derive(Debug, Clone)]
pub struct RelayService {
    /// Its name in the config (`[relays.NAME]`).
    pub name: String,
    pub endpoint: String,
    /// TLS and token to reach it.
    pub security: ClientSecurity,
}

/// The resolved settings the controller runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub state_dir: PathBuf,
    pub forecast: String,
    /// TLS and token to reach the forecast-service.
    pub forecast_security: ClientSecurity,
    pub relay_services: Vec<RelayService>,
    pub loads: Vec<Load>,
    pub restore_stagger: Duration,
    pub forecast_max_age: Duration,
    pub log_format: LogFormat,
    /// Where to serve Prometheus metrics; `None`: not at all.
    pub metrics: Option<String>,
    /// TLS and tokens of its own API.
    pub security: Security,
    /// The config file, for messages.
    pub config_path: PathBuf,
}

impl Settings {
    /// Reads the `--config` file, applies the flags, validates.
    pub fn resolve(cli: Cli) -> Result<Self, Error> {
        let Some(path) = cli.config.clone() else {
            return Err(Error::Config(
                "--config FILE is required: it lists the loads and relay-services (see the README, or deploy/controller.toml)"
                    .to_owned(),
            ));
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::from_toml(&text, &path, cli)
    }

    /// Parses and validates a config file's text (`path` is for messages).
    pub fn from_toml(text: &str, path: &Path, cli: Cli) -> Result<Self, Error> {
        let at =
            |key: &str, what: String| Error::Config(format!("{}: {key}: {what}", path.display()));
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            Error::Config(format!(
                "invalid config file {}: {}",
                path.display(),
                e.to_string().trim_end()
            ))
        })?;
        let duration = |key: &str, text: &Option<String>, default: Duration| match text {
            None => Ok(default),
            Some(t) => humantime::parse_duration(t).map_err(|e| {
                at(
                    key,
                    format!("{t:?} is not a duration ({e}); write e.g. \"30s\", \"5m\" or \"1h\""),
                )
            }),
        };

        let forecast = file.forecast.unwrap_or_else(|| DEFAULT_FORECAST.to_owned());
        check_endpoint(&forecast).map_err(|why| at("forecast", why))?;

        let mut relay_services = Vec::new();
        for (name, relay) in &file.relays {
            check_name(name).map_err(|why| at(&format!("relays.{name}"), why))?;
            check_endpoint(&relay.endpoint)
                .map_err(|why| at(&format!("relays.{name}.endpoint"), why))?;
            relay_services.push(RelayService {
                name: name.clone(),
                endpoint: relay.endpoint.clone(),
                security: ClientSecurity {
                    ca: relay.tls_ca.clone(),
                    cert: relay.tls_cert.clone(),
                    key: relay.tls_key.clone(),
                    token_file: relay.token_file.clone(),
                },
            });
        }

        if file.load.is_empty() {
            return Err(at(
                "load",
                "no [[load]] tables: there is nothing to control".to_owned(),
            ));
        }
        let mut loads: Vec<Load> = Vec::new();
        let mut by_relay: HashMap<RelayAddress, String> = HashMap::new();
        for (i, l) in file.load.iter().enumerate() {
            let key = |field: &str| format!("load[{i}] ({:?}).{field}", l.name);
            check_name(&l.name).map_err(|why| at(&format!("load[{i}].name"), why))?;
            if loads.iter().any(|other| other.name == l.name) {
                return Err(at(&key("name"), "two loads have this name".to_owned()));
            }
            let relay = parse_relay(&l.relay).map_err(|why| at(&key("relay"), why))?;
            if !file.relays.contains_key(&relay.relay_service) {
                let known: Vec<&str> = file.relays.keys().map(String::as_str).collect();
                return Err(at(
                    &key("relay"),
                    format!(
                        "no relay-service named {:?}; declare it as [relays.{}] (known: {})",
                        relay.relay_service,
                        relay.relay_service,
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            if let Some(other) = by_relay.insert(relay.clone(), l.name.clone()) {
                return Err(at(
                    &key("relay"),
                    format!("{relay} is already the relay of load {other:?}; one load per relay"),
                ));
            }
            loads.push(Load {
                name: l.name.clone(),
                relay,
                wiring: match l.wiring {
                    WiringChoice::NormallyOpen => Wiring::NormallyOpen,
                    WiringChoice::NormallyClosed => Wiring::NormallyClosed,
                },
                shed_at: match l.shed_at {
                    ShedAt::Orange => SignalLevel::Orange,
                    ShedAt::Red => SignalLevel::Red,
                },
                priority: l.priority,
                min_on: duration(&key("min_on"), &l.min_on, Duration::ZERO)?,
                min_off: duration(&key("min_off"), &l.min_off, Duration::ZERO)?,
                anticipate: duration(&key("anticipate"), &l.anticipate, Duration::ZERO)?,
                when_forecast_unknown: match l.when_forecast_unknown {
                    FallbackChoice::Keep => Fallback::Keep,
                    FallbackChoice::Shed => Fallback::Shed,
                    FallbackChoice::Restore => Fallback::Restore,
                },
            });
        }
        // A relay-service no load uses is harmless, but probably a mistake.
        let restore_stagger = duration(
            "policy.restore_stagger",
            &file.policy.restore_stagger,
            DEFAULT_RESTORE_STAGGER,
        )?;
        let forecast_max_age = duration(
            "policy.forecast_max_age",
            &file.policy.forecast_max_age,
            DEFAULT_FORECAST_MAX_AGE,
        )?;
        if forecast_max_age.is_zero() {
            return Err(at(
                "policy.forecast_max_age",
                "must be more than zero".to_owned(),
            ));
        }

        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let security = Security::resolve(&cli.security, &file.security, &listen)
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self {
            listen,
            state_dir: cli
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| delestage_runtime::config::default_state_dir("controller")),
            forecast,
            forecast_security: ClientSecurity {
                ca: file.forecast_tls_ca.clone(),
                cert: file.forecast_tls_cert.clone(),
                key: file.forecast_tls_key.clone(),
                token_file: file.forecast_token_file.clone(),
            },
            relay_services,
            loads,
            restore_stagger,
            forecast_max_age,
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            metrics: cli.metrics.or(file.metrics),
            security,
            config_path: path.to_owned(),
        })
    }
}

/// Names end up in CLI arguments and URLs: keep them plain.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{name:?}: {c:?} is not allowed (letters, digits, '-', '_' and '.')"
        ));
    }
    Ok(())
}

/// `"garage:0"` -> relay-service `garage`, channel 0.
fn parse_relay(text: &str) -> Result<RelayAddress, String> {
    let (name, channel) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: write RELAY_SERVICE:CHANNEL, e.g. \"garage:0\""))?;
    let channel = channel
        .parse::<u32>()
        .map_err(|_| format!("{text:?}: {channel:?} is not a channel number"))?;
    Ok(RelayAddress {
        relay_service: name.to_owned(),
        channel,
    })
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: tonic::transport::Uri = endpoint
        .parse()
        .map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(()),
        _ => Err(format!(
            "{endpoint:?}: write http://HOST:PORT (or https://)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        Settings::from_toml(text, Path::new("ctl.toml"), Cli::default())
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
        assert_eq!(heater.shed_at, SignalLevel::Orange);
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
        let cli = Cli {
            config: Some(path),
            ..Cli::default()
        };
        let s = Settings::resolve(cli).expect("deploy/controller.toml is valid");
        assert!(s.loads.len() >= 4);
    }

    #[test]
    fn the_compose_and_kubernetes_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let compose = root.join("deploy/docker/controller.compose.toml");
        let text = std::fs::read_to_string(&compose).expect("read");
        let s =
            Settings::from_toml(&text, &compose, Cli::default()).expect("compose config is valid");
        assert_eq!(s.relay_services[0].endpoint, "http://relay:50051");

        // The ConfigMap's controller.toml, un-indented.
        let k8s = std::fs::read_to_string(root.join("deploy/k8s/delestage.yaml")).expect("read");
        let start = k8s.find("  controller.toml: |\n").expect("the ConfigMap")
            + "  controller.toml: |\n".len();
        let block: String = k8s[start..]
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        Settings::from_toml(&block, Path::new("k8s ConfigMap"), Cli::default())
            .expect("k8s config is valid");
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
                "load[0] (\"water-heater\").min_on",
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
        assert!(
            err("[relays.a]\nendpoint = \"http://127.0.0.1:1\"\n").contains("nothing to control")
        );
        let msg = Settings::resolve(Cli::default())
            .expect_err("no --config")
            .to_string();
        assert!(msg.contains("--config"), "{msg}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let cli = Cli {
            listen: Some("127.0.0.1:0".to_owned()),
            state_dir: Some("/tmp/elsewhere".into()),
            ..Cli::default()
        };
        let s = Settings::from_toml(EXAMPLE, Path::new("ctl.toml"), cli).expect("valid");
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
                if let Err(e) = Settings::from_toml(&text, Path::new("fuzz.toml"), Cli::default()) {
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
                if let Err(e) = Settings::from_toml(&text, Path::new("ctl.toml"), Cli::default()) {
                    prop_assert!(e.to_string().contains("ctl.toml"), "{}", e);
                }
            }
        }
    }
}

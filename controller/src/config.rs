//! The controller's configuration: a TOML file (the loads, the
//! relay-services, the policy) and flags that win over it, both declared
//! once in [`Options`] (see `delestage_runtime::options`).
//!
//! Every error names the file, the key and what is wrong, and the
//! controller does not start: a load switched by mistake is worse than a
//! controller that refuses a typo.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use delestage_runtime::client::ClientSecurity;
use delestage_runtime::http::HttpSecurity;
use delestage_runtime::options::{CommonOptions, Loaded, Origins, ServiceOptions};
use delestage_runtime::security::Security;
use delestage_runtime::telemetry::LogFormat;
use serde::{Deserialize, Serialize};

pub use self::mqtt::{Broker, MqttOptions, MqttSettings};
use crate::Error;
use crate::model::{Fallback, Load, Wiring};

/// Turns RTE's Ecowatt forecast and a list of loads into a plan, and makes
/// the relays of one or more relay-services agree with it. Serves
/// delestage.controller.v1.ControllerService over gRPC (status, plan,
/// overrides, history), with grpc.health.v1 and server reflection.
///
/// The loads and relay-services are in the --config file (`[[load]]`,
/// `[relays.NAME]`; see docs/controller.md for every key). Every option below can
/// be set there too, under its name with underscores (the policy ones in a
/// `[policy]` table); flags win.
#[derive(Debug, Parser, Serialize, Deserialize)]
#[command(name = "controller", version, about, long_about)]
pub struct Options {
    #[command(flatten)]
    #[serde(skip)]
    pub common: CommonOptions,

    /// The forecast-service's URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50052")]
    pub forecast: String,

    /// With an https forecast URL: the CA that signed its certificate.
    #[arg(long, value_name = "FILE")]
    pub forecast_tls_ca: Option<PathBuf>,
    /// Our client certificate for the forecast-service, when it requires one.
    #[arg(long, value_name = "FILE")]
    pub forecast_tls_cert: Option<PathBuf>,
    /// The key of --forecast-tls-cert.
    #[arg(long, value_name = "FILE")]
    pub forecast_tls_key: Option<PathBuf>,
    /// A file holding the bearer token to send the forecast-service (role
    /// read).
    #[arg(long, value_name = "FILE")]
    pub forecast_token_file: Option<PathBuf>,

    /// Serve the web dashboard and its JSON API (/api/...) on this address,
    /// e.g. 127.0.0.1:8080 (port 0: any free port, logged). Off unless
    /// given. Protected like the gRPC API, with the same TLS files and
    /// tokens: an address other than loopback needs them, or --insecure.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,

    /// Most connections the dashboard's port holds at once; the same rules
    /// as --max-connections.
    #[arg(long, value_name = "N", default_value_t = delestage_runtime::connections::DEFAULT_HTTP_MAX_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,

    #[command(flatten)]
    pub policy: PolicyOptions,

    /// `[meter]`: the Linky meter.
    #[command(flatten, next_help_heading = "The Linky meter")]
    pub meter: MeterOptions,

    /// `[power]`: shedding by power.
    #[command(flatten, next_help_heading = "Shedding by power")]
    pub power: PowerOptions,

    /// `[mqtt]`: Home Assistant.
    #[command(flatten, next_help_heading = "Home Assistant (MQTT)")]
    pub mqtt: MqttOptions,

    /// `[relays.NAME]`: the relay-services. File only.
    #[arg(skip)]
    #[serde(default)]
    pub relays: BTreeMap<String, RelayServiceConfig>,

    /// `[[load]]`: the loads. File only.
    #[arg(skip)]
    #[serde(default)]
    pub load: Vec<LoadConfig>,
}

impl ServiceOptions for Options {
    const NAME: &'static str = "controller";
    const DEFAULT_LISTEN: &'static str = "127.0.0.1:50053";
    const DEFAULT_MAX_STREAMS: &'static str = "1000";
    fn common(&self) -> &CommonOptions {
        &self.common
    }
    fn common_mut(&mut self) -> &mut CommonOptions {
        &mut self.common
    }
}

/// The `[policy]` table.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct PolicyOptions {
    /// Time between two restores, most important load first, so that loads
    /// do not all come back at once.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    #[serde(with = "humantime_serde")]
    pub restore_stagger: Duration,

    /// A forecast governs the hours it covers until RTE generated it longer
    /// ago than this, even when stale or when the forecast-service is
    /// unreachable; then (and for hours it does not cover) each load follows
    /// its `when_forecast_unknown`. RTE's forecast covers four days at most.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "72h")]
    #[serde(with = "humantime_serde")]
    pub forecast_max_age: Duration,

    /// Delay each restore after a tense period by a random amount up to
    /// this, so that homes do not all come back at the same second. The
    /// amount is fixed per controller (an instance id kept in the state
    /// dir) and day, so the plan shows it and restarts keep it. 0: none.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "0s")]
    #[serde(with = "humantime_serde", default)]
    pub restore_jitter: Duration,
}

/// `[meter]`: the Linky meter, read by a relay box.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct MeterOptions {
    /// The relay box (a `[relays.NAME]`) whose relay-service reads the
    /// Linky meter (its --meter): the meter's Tempo colours are used for
    /// the days RTE's calendar does not have [default: none]. In the file:
    /// `relay` in `[meter]`.
    #[arg(long = "meter-relay", value_name = "NAME")]
    pub relay: Option<String>,
}

/// `[power]`: never trip the subscribed power.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct PowerOptions {
    /// The relay box whose Linky meter governs shedding by power (its
    /// relay-service runs with --meter) [default: off]. In the file:
    /// `meter` in `[power]`.
    #[arg(long = "power-meter", value_name = "NAME")]
    pub meter: Option<String>,

    /// The power never to reach, in VA [default: the meter's subscribed
    /// power].
    #[arg(long = "power-limit-va", value_name = "VA")]
    pub limit_va: Option<u32>,

    /// Cut at limit − margin, in VA [default: 5 % of the limit].
    #[arg(long = "power-margin-va", value_name = "VA")]
    pub margin_va: Option<u32>,

    /// After a power cut, bring nothing back for power for this long.
    #[arg(long = "power-restore-hold", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "2m")]
    #[serde(with = "humantime_serde")]
    pub restore_hold: Duration,
}

/// A `[relays.NAME]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayServiceConfig {
    endpoint: String,
    /// With an https endpoint: the CA that signed its certificate.
    tls_ca: Option<PathBuf>,
    /// Our client certificate and key, when it requires one.
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// A file holding the bearer token to send it (role control).
    token_file: Option<PathBuf>,
}

/// A `[[load]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    name: String,
    relay: String,
    /// Required: there is no safe guess (see [`WIRING_CHOICES`]).
    wiring: Option<Wiring>,
    /// Optional when `shed_on_tempo` is set; one of the two is needed.
    #[serde(default)]
    shed_at: Option<ShedAt>,
    #[serde(default)]
    shed_on_tempo: Option<ShedOnTempo>,
    #[serde(default)]
    priority: i32,
    #[serde(default, with = "humantime_serde")]
    min_on: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    min_off: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    anticipate: Option<Duration>,
    #[serde(default)]
    when_forecast_unknown: Fallback,
    /// Where the relay box puts the load once it has followed the plan to
    /// its end without a controller: powered by default.
    #[serde(default = "restore")]
    when_controller_lost: Fallback,
    /// Never cut longer than this in a row.
    #[serde(default, with = "humantime_serde")]
    max_off: Option<Duration>,
    /// So much power a day, in the cleanest hours of `run_window`.
    #[serde(default, with = "humantime_serde")]
    run_daily: Option<Duration>,
    /// Paris wall-clock windows for `run_daily`, `"22:00-06:00"`.
    #[serde(default)]
    run_window: Option<Vec<String>>,
    /// Its nominal power, in W.
    #[serde(default)]
    power_w: Option<u32>,
    /// Cut when the house nears its subscribed power (`[power]`).
    #[serde(default)]
    shed_on_power: bool,
}

/// Why `wiring` has no default, in the error that asks for it.
const WIRING_CHOICES: &str = "required: say how the load hangs on its relay. \
\"normally-closed\" (recommended): the relay is energised only to shed, so every failure that \
drops the relays (power cut, USB unplugged, service stopped, failsafe trip) leaves the load powered. \
\"normally-open\": the relay is energised to power the load, so any such failure cuts it";

fn restore() -> Fallback {
    Fallback::Restore
}

/// The levels a load can be shed at.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ShedAt {
    Orange,
    Red,
}

/// The Tempo colours a load can be shed on (`white` means white and red).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ShedOnTempo {
    White,
    Red,
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

/// Where and how the dashboard is served (`--http`).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: String,
    /// Most connections the port holds (`http_max_connections`).
    pub max_connections: usize,
    /// The same files as the gRPC API's, checked against this address.
    pub security: HttpSecurity,
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
    pub restore_jitter: Duration,
    pub forecast_max_age: Duration,
    pub log_format: LogFormat,
    /// Where to serve Prometheus metrics; `None`: not at all.
    pub metrics: Option<String>,
    /// Most Watch* streams open at once (`max_streams`).
    pub max_streams: usize,
    /// Most connections the gRPC port holds (`max_connections`).
    pub max_connections: usize,
    /// TLS and tokens of its own API.
    pub security: Security,
    /// The dashboard's address and protection; `None`: not served.
    pub http: Option<HttpSettings>,
    /// Home Assistant's broker; `None`: no MQTT.
    pub mqtt: Option<MqttSettings>,
    /// The relay-service whose Linky meter is followed (`[meter] relay`,
    /// or `[power] meter`).
    pub meter_relay: Option<String>,
    /// Shedding by power (`[power]`), when configured.
    pub power: Option<crate::power::PowerSettings>,
    /// The config file, for messages.
    pub config_path: PathBuf,
}

impl Settings {
    /// From this process's flags and config file. `--help` and flag errors
    /// exit, as clap does.
    pub fn from_env() -> Result<Self, Error> {
        Self::validate(Loaded::from_env()?)
    }

    /// From these arguments (the first is the program name).
    pub fn from_args(args: &[&str]) -> Result<Self, Error> {
        Self::validate(Loaded::from_args(args)?)
    }

    /// From a config file's text (`path` names it in messages) and flags
    /// (`args`, without the program name), which win over it.
    pub fn from_toml(text: &str, path: &Path, args: &[&str]) -> Result<Self, Error> {
        let all = std::iter::once(Options::NAME).chain(args.iter().copied());
        Self::validate(Loaded::from_args_and_text(all, path, text)?)
    }

    /// Checks the merged options and turns them into settings. Pure: an
    /// error names the file and the key (or the flag) of the bad value.
    pub fn validate(loaded: Loaded<Options>) -> Result<Self, Error> {
        let Loaded {
            options: o,
            origins,
        } = loaded;
        let Some(path) = origins.file().map(Path::to_owned) else {
            return Err(Error::Config(
                "--config FILE is required: it lists the loads and relay-services (see docs/controller.md, or deploy/controller.toml)"
                    .to_owned(),
            ));
        };
        let at = |key: &str, what: String| Error::Config(origins.error(key, what));
        if o.common.max_streams == 0 {
            return Err(at("max_streams", "must be at least 1".to_owned()));
        }
        if o.common.max_connections == 0 {
            return Err(at("max_connections", "must be at least 1".to_owned()));
        }

        check_endpoint(&o.forecast).map_err(|why| at("forecast", why))?;
        let relay_services = relay_services(&o, &origins)?;
        let loads = loads::loads(&o, &origins)?;
        if o.policy.forecast_max_age.is_zero() {
            return Err(at(
                "policy.forecast_max_age",
                "must be more than zero".to_owned(),
            ));
        }
        let security = Security::resolve(&o.common.security, &o.common.listen)
            .map_err(|e| Error::Config(e.to_string()))?;
        let http = http(&o, &origins)?;
        let mqtt = mqtt::resolve(&o.mqtt).map_err(|(key, why)| at(key, why))?;
        if mqtt.is_some() {
            loads::check_entities(&loads, &origins)?;
        }
        let (meter_relay, power) = meter_and_power(&o, &relay_services, &loads, &origins)?;
        Ok(Self {
            http,
            mqtt,
            meter_relay,
            power,
            state_dir: o.common.state_dir_or_default(Options::NAME),
            listen: o.common.listen,
            forecast: o.forecast,
            forecast_security: ClientSecurity {
                ca: o.forecast_tls_ca,
                cert: o.forecast_tls_cert,
                key: o.forecast_tls_key,
                token_file: o.forecast_token_file,
            },
            relay_services,
            loads,
            restore_stagger: o.policy.restore_stagger,
            restore_jitter: o.policy.restore_jitter,
            forecast_max_age: o.policy.forecast_max_age,
            log_format: o.common.log_format,
            metrics: o.common.metrics,
            max_streams: o.common.max_streams as usize,
            max_connections: o.common.max_connections as usize,
            security,
            config_path: path,
        })
    }
}

/// `[meter] relay` and `[power]`: one meter per house, on a declared relay
/// box; `shed_on_power` loads need `[power]`.
fn meter_and_power(
    o: &Options,
    relay_services: &[RelayService],
    loads: &[Load],
    origins: &Origins,
) -> Result<(Option<String>, Option<crate::power::PowerSettings>), Error> {
    let known = |key: &str, name: &str| {
        if relay_services.iter().any(|r| r.name == name) {
            return Ok(());
        }
        let names: Vec<&str> = relay_services.iter().map(|r| r.name.as_str()).collect();
        Err(at(
            origins,
            key,
            format!(
                "{name:?} is not one of the [relays.NAME] tables ({})",
                names.join(", ")
            ),
        ))
    };
    if let Some(name) = &o.meter.relay {
        known("meter.relay", name)?;
    }
    let Some(meter) = &o.power.meter else {
        if let Some(load) = loads.iter().find(|l| l.shed_on_power) {
            return Err(at(
                origins,
                "power.meter",
                format!(
                    "required: load {:?} has shed_on_power = true; name the relay box whose Linky meter governs ([power] meter = \"garage\")",
                    load.name
                ),
            ));
        }
        return Ok((o.meter.relay.clone(), None));
    };
    known("power.meter", meter)?;
    if o.meter.relay.as_ref().is_some_and(|r| r != meter) {
        return Err(at(
            origins,
            "power.meter",
            format!(
                "{meter:?}, but [meter] relay is {:?}: one meter measures the house; name the same box",
                o.meter.relay.as_deref().unwrap_or_default()
            ),
        ));
    }
    if o.power.limit_va == Some(0) {
        return Err(at(
            origins,
            "power.limit_va",
            "must be more than zero".to_owned(),
        ));
    }
    if let (Some(limit), Some(margin)) = (o.power.limit_va, o.power.margin_va)
        && margin >= limit
    {
        return Err(at(
            origins,
            "power.margin_va",
            format!("{margin} VA is not below the limit ({limit} VA)"),
        ));
    }
    Ok((
        Some(meter.clone()),
        Some(crate::power::PowerSettings {
            meter: meter.clone(),
            limit_va: o.power.limit_va,
            margin_va: o.power.margin_va,
            restore_hold: o.power.restore_hold,
        }),
    ))
}

/// An error about `key`, naming where its value came from.
fn at(origins: &Origins, key: &str, what: String) -> Error {
    Error::Config(origins.error(key, what))
}

/// `[relays.NAME]`: a name and an endpoint each.
fn relay_services(o: &Options, origins: &Origins) -> Result<Vec<RelayService>, Error> {
    let mut relay_services = Vec::new();
    for (name, relay) in &o.relays {
        check_name(name).map_err(|why| at(origins, &format!("relays.{name}"), why))?;
        check_endpoint(&relay.endpoint)
            .map_err(|why| at(origins, &format!("relays.{name}.endpoint"), why))?;
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
    Ok(relay_services)
}

/// `http` (the dashboard), with `http_max_connections`.
fn http(o: &Options, origins: &Origins) -> Result<Option<HttpSettings>, Error> {
    let Some(listen) = o.http.clone() else {
        return Ok(None);
    };
    if o.http_max_connections == 0 {
        return Err(at(
            origins,
            "http_max_connections",
            "must be at least 1".to_owned(),
        ));
    }
    Ok(Some(HttpSettings {
        max_connections: o.http_max_connections as usize,
        security: HttpSecurity::resolve(&o.common.security, &listen)
            .map_err(|e| at(origins, "http", e.to_string()))?,
        listen,
    }))
}

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

mod loads;
mod mqtt;
#[cfg(test)]
mod tests;

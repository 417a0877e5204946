//! forecast-service's settings: flags, an optional TOML file, the
//! environment (for the RTE credentials only), and defaults.
//!
//! [`Options`] declares every setting once: as a flag (with its default and
//! help) and as a key of the `--config` file; the flag wins (see
//! `delestage_runtime::options`). [`Settings::validate`] checks them and
//! turns them into the [`Settings`] the service runs with. Errors name the
//! flag, or the file and the key. Credentials
//! are never taken from the config file itself (it tends to be world-readable
//! and copied around): only from the environment or from files of their own.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use delestage_runtime::options::{CommonOptions, Loaded, Origin, Origins, ServiceOptions};
use delestage_runtime::security::Security;
use delestage_runtime::telemetry::LogFormat;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::Error;
pub use crate::UpstreamSettings;
use crate::rte::{Credentials, PRODUCTION_BASE};
use crate::schedule::{RTE_MIN_SPACING, RefreshPolicy};
use crate::tempo::TempoSchedule;

pub const CLIENT_ID_ENV: &str = "ECOWATT_CLIENT_ID";
pub const CLIENT_SECRET_ENV: &str = "ECOWATT_CLIENT_SECRET";
pub const TEMPO_CLIENT_ID_ENV: &str = "TEMPO_CLIENT_ID";
pub const TEMPO_CLIENT_SECRET_ENV: &str = "TEMPO_CLIENT_SECRET";

/// The host whose rate limit (one call per 15 minutes) cannot be lowered.
const PRODUCTION_HOST: &str = "digital.iservices.rte-france.com";

/// Serves RTE's Ecowatt forecast (grid tension, hour by hour, four days) as
/// delestage.forecast.v1.ForecastService over gRPC, with grpc.health.v1 and
/// server reflection. It holds the only RTE credentials, calls RTE at most
/// once per refresh interval whatever the number of clients, and keeps
/// serving the last good forecast through RTE outages and restarts.
///
/// RTE credentials: ECOWATT_CLIENT_ID and ECOWATT_CLIENT_SECRET, or
/// --client-id-file and --client-secret-file (never in the config file).
///
/// Every option can also be set in the --config file, under the same name
/// with underscores. Flags win.
#[derive(Debug, Parser, Serialize, Deserialize)]
#[command(name = "forecast-service", version, about, long_about)]
pub struct Options {
    #[command(flatten)]
    #[serde(skip)]
    pub common: CommonOptions,

    /// Where the forecast comes from [default: rte; file when --file is
    /// given; upstream when --upstream is].
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub source: Option<SourceChoice>,

    /// An Ecowatt-format JSON file (for --source file); re-read when it
    /// changes.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Shift the days of the file (or of --sandbox) so that the first
    /// complete day is today (Europe/Paris), keeping hours and levels; done
    /// again every hour. For demos.
    #[arg(long)]
    pub rebase_to_today: bool,

    /// The forecast-service to follow (for --source upstream):
    /// http://HOST:PORT or https://HOST:PORT. A replica serves the same API
    /// (its Tempo calendar too), keeps the last forecast through an outage
    /// of its upstream, and never calls RTE: only the root of a tree of
    /// replicas holds RTE credentials.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// A file holding the bearer token sent to the upstream (a `read`
    /// token), when it requires tokens.
    #[arg(long, value_name = "FILE")]
    pub upstream_token_file: Option<PathBuf>,

    /// The CA that signed the upstream's certificate (PEM), for an https://
    /// upstream.
    #[arg(long, value_name = "FILE")]
    pub upstream_tls_ca: Option<PathBuf>,

    /// Our client certificate (PEM), when the upstream requires one.
    #[arg(long, value_name = "FILE")]
    pub upstream_tls_cert: Option<PathBuf>,

    /// The key of --upstream-tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    pub upstream_tls_key: Option<PathBuf>,

    /// RTE's base URL.
    #[arg(long, value_name = "URL", default_value = PRODUCTION_BASE)]
    pub ecowatt_url: String,

    /// Use RTE's sandbox (fixed 2022 data) instead of the live signals.
    #[arg(long)]
    pub sandbox: bool,

    /// A file holding the RTE client id (instead of ECOWATT_CLIENT_ID).
    #[arg(long, value_name = "FILE")]
    pub client_id_file: Option<PathBuf>,

    /// A file holding the RTE client secret (instead of ECOWATT_CLIENT_SECRET).
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,

    /// How often to fetch the forecast from RTE (never less than 15m for
    /// RTE's production API, whose limit that is).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "15m")]
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,

    /// Added to every wait between two RTE calls, which are counted from
    /// the end of the previous call: clocks differ, and a call that lands
    /// inside RTE's 15-minute window costs a 429.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    #[serde(with = "humantime_serde")]
    pub call_margin: Duration,

    /// A forecast fetched longer ago than this is served with `stale` set.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "6h")]
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,

    /// Where RTE's Tempo calendar (blue, white and red days) comes from:
    /// off, RTE's Tempo API (same portal and base URL as Ecowatt), or a
    /// file in RTE's body shape.
    #[arg(long, value_enum, value_name = "SOURCE", default_value = "off")]
    pub tempo: TempoChoice,

    /// A Tempo calendar file in RTE's body shape (for --tempo file);
    /// re-read when it changes. --rebase-to-today moves its days so that
    /// the latest is tomorrow.
    #[arg(long, value_name = "PATH")]
    pub tempo_file: Option<PathBuf>,

    /// A file holding the client id for Tempo (instead of TEMPO_CLIENT_ID;
    /// without either, the Ecowatt credentials are used).
    #[arg(long, value_name = "FILE")]
    pub tempo_client_id_file: Option<PathBuf>,

    /// A file holding the client secret for Tempo (instead of
    /// TEMPO_CLIENT_SECRET).
    #[arg(long, value_name = "FILE")]
    pub tempo_client_secret_file: Option<PathBuf>,

    /// Time limit of each HTTP call to RTE.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl ServiceOptions for Options {
    const NAME: &'static str = "forecast-service";
    const DEFAULT_LISTEN: &'static str = "127.0.0.1:50052";
    const DEFAULT_MAX_STREAMS: &'static str = "20000";
    fn common(&self) -> &CommonOptions {
        &self.common
    }
    fn common_mut(&mut self) -> &mut CommonOptions {
        &mut self.common
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceChoice {
    /// RTE's Ecowatt API (OAuth2).
    Rte,
    /// An Ecowatt-format JSON file.
    File,
    /// Another forecast-service (--upstream URL): a replica.
    Upstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TempoChoice {
    /// No Tempo: GetTempo answers UNAVAILABLE "tempo is not enabled".
    Off,
    /// RTE's Tempo Like Supply Contract API (OAuth2).
    Rte,
    /// A file in RTE's body shape.
    File,
}

/// Where the Tempo calendar comes from.
#[derive(Debug)]
pub enum TempoSettings {
    Off,
    Rte(TempoRteSettings),
    File {
        path: PathBuf,
        rebase_to_today: bool,
    },
}

#[derive(Debug)]
pub struct TempoRteSettings {
    pub base: Url,
    pub sandbox: bool,
    /// `None`: the Ecowatt source's (one client, one token cache).
    pub credentials: Option<Credentials>,
    pub schedule: TempoSchedule,
    pub request_timeout: Duration,
}

/// The resolved settings the service runs with.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub state_dir: PathBuf,
    pub source: SourceSettings,
    pub tempo: TempoSettings,
    pub max_age: Duration,
    pub log_format: LogFormat,
    /// Where to serve Prometheus metrics; `None`: not at all.
    pub metrics: Option<String>,
    /// Most Watch* streams open at once (`max_streams`).
    pub max_streams: usize,
    /// Most connections the gRPC port holds (`max_connections`).
    pub max_connections: usize,
    /// TLS and tokens.
    pub security: Security,
    /// Settings that were accepted but ignored, for `main` to log.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub enum SourceSettings {
    Rte(RteSettings),
    File {
        path: PathBuf,
        rebase_to_today: bool,
    },
    /// Follow another forecast-service (a replica).
    Upstream(UpstreamSettings),
}

#[derive(Debug)]
pub struct RteSettings {
    pub base: Url,
    pub sandbox: bool,
    /// With `sandbox`: its fixed 2022 days are moved to this week, as for a
    /// file (see [`crate::ecowatt::Signals::rebased`]).
    pub rebase_to_today: bool,
    pub credentials: Credentials,
    pub policy: RefreshPolicy,
    pub request_timeout: Duration,
}

impl Settings {
    /// A file source with defaults: what tests and embedders (the demo)
    /// start from.
    pub fn with_file(path: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        let mut loaded =
            Loaded::<Options>::from_args([Options::NAME]).expect("the declared defaults are valid");
        loaded.options.file = Some(path.into());
        loaded.options.common.state_dir = Some(state_dir.into());
        Self::validate(loaded, |_| None).expect("the declared defaults are valid")
    }

    /// From this process's flags, config file and environment (for the RTE
    /// credentials). `--help` and flag errors exit, as clap does.
    pub fn from_env() -> Result<Self, Error> {
        Self::validate(Loaded::from_env()?, |name| std::env::var(name).ok())
    }

    /// From these arguments (the first is the program name), with the
    /// environment given.
    pub fn from_args(args: &[&str], env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::validate(Loaded::from_args(args)?, env)
    }

    /// Checks the merged options and turns them into settings. Pure but for
    /// reading the credential files: an error names the flag, or the file
    /// and key, of the bad value.
    pub fn validate(
        loaded: Loaded<Options>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let Loaded {
            options: o,
            origins,
        } = loaded;
        let bad = |key: &str, message: String| Error::Config(origins.error(key, message));
        if o.common.max_streams == 0 {
            return Err(bad("max_streams", "must be at least 1".to_owned()));
        }
        if o.common.max_connections == 0 {
            return Err(bad("max_connections", "must be at least 1".to_owned()));
        }
        let given = |key: &str| !matches!(origins.of(key), Origin::Default(_));

        let source = o.source.unwrap_or(if o.file.is_some() {
            SourceChoice::File
        } else if o.upstream.is_some() {
            SourceChoice::Upstream
        } else {
            SourceChoice::Rte
        });
        if source != SourceChoice::Upstream {
            for key in UPSTREAM_KEYS {
                if given(key) {
                    return Err(bad(
                        key,
                        "applies to --source upstream only (a replica)".to_owned(),
                    ));
                }
            }
        }
        if o.max_age.is_zero() {
            return Err(bad("max_age", "must be more than zero".to_owned()));
        }

        let mut warnings = Vec::new();
        let source = match source {
            SourceChoice::Upstream => {
                SourceSettings::Upstream(upstream_settings(&o, &origins, &mut warnings)?)
            }
            SourceChoice::File => file_source(&o, &origins, &mut warnings)?,
            SourceChoice::Rte => SourceSettings::Rte(rte_source(&o, &origins, &env)?),
        };

        let tempo = tempo_settings(&o, &origins, &source, &env)?;
        let security = Security::resolve(&o.common.security, &o.common.listen)?;
        Ok(Self {
            state_dir: o.common.state_dir_or_default(Options::NAME),
            listen: o.common.listen,
            source,
            tempo,
            max_age: o.max_age,
            log_format: o.common.log_format,
            metrics: o.common.metrics,
            max_streams: o.common.max_streams as usize,
            max_connections: o.common.max_connections as usize,
            security,
            warnings,
        })
    }
}

/// `--source file`: the file, and a warning for each RTE setting it makes
/// pointless.
fn file_source(
    o: &Options,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<SourceSettings, Error> {
    let Some(path) = o.file.clone() else {
        return Err(Error::Config(origins.error(
            "source",
            "file: the file source needs --file PATH (an Ecowatt-format JSON file)".to_owned(),
        )));
    };
    for key in [
        "ecowatt_url",
        "sandbox",
        "refresh_interval",
        "call_margin",
        "client_id_file",
        "client_secret_file",
    ] {
        // These serve Tempo from RTE too.
        let given = !matches!(origins.of(key), Origin::Default(_));
        if given && o.tempo != TempoChoice::Rte {
            warnings.push(origins.error(
                key,
                "applies to the RTE sources only; ignored with --source file and without --tempo rte",
            ));
        }
    }
    Ok(SourceSettings::File {
        path,
        rebase_to_today: o.rebase_to_today,
    })
}

/// `--source rte`: the URL, RTE's 15-minute rule on its production host,
/// the credentials.
fn rte_source(
    o: &Options,
    origins: &Origins,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<RteSettings, Error> {
    let bad = |key: &str, message: String| Error::Config(origins.error(key, message));
    if o.file.is_some() {
        return Err(bad(
            "file",
            "the RTE source does not read a file; use --source file to serve it".to_owned(),
        ));
    }
    if o.rebase_to_today && !o.sandbox {
        return Err(bad(
            "rebase_to_today",
            "applies to --source file and to --sandbox only: RTE's live forecast is for its own dates"
                .to_owned(),
        ));
    }
    let base = parse_base_url(&o.ecowatt_url)
        .map_err(|why| bad("ecowatt_url", format!("{:?}: {why}", o.ecowatt_url)))?;
    let production = !o.sandbox
        && base
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case(PRODUCTION_HOST));
    let interval = o.refresh_interval;
    if production && interval < RTE_MIN_SPACING {
        return Err(bad(
            "refresh_interval",
            format!(
                "{}: RTE's production API allows one call per 15 minutes; use 15m or more",
                humantime::format_duration(interval)
            ),
        ));
    }
    if interval.is_zero() {
        return Err(bad("refresh_interval", "must be more than zero".to_owned()));
    }
    if o.request_timeout.is_zero() {
        return Err(bad("request_timeout", "must be more than zero".to_owned()));
    }
    let credentials = credentials(o, &ECOWATT_CREDENTIALS, "", origins, env)?;
    Ok(RteSettings {
        base,
        sandbox: o.sandbox,
        rebase_to_today: o.rebase_to_today,
        credentials,
        policy: RefreshPolicy {
            interval,
            floor: if production {
                RTE_MIN_SPACING
            } else {
                Duration::ZERO
            },
            margin: o.call_margin,
        },
        request_timeout: o.request_timeout,
    })
}

/// The Tempo source. RTE's needs credentials: Tempo's own (TEMPO_* or
/// files), else the Ecowatt ones, since one RTE application may subscribe
/// to both APIs; it uses the same base URL, sandbox flag and time limit.
fn tempo_settings(
    o: &Options,
    origins: &delestage_runtime::options::Origins,
    source: &SourceSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TempoSettings, Error> {
    let bad = |key: &str, message: String| Error::Config(origins.error(key, message));
    let given = |key: &str| !matches!(origins.of(key), Origin::Default(_));
    if o.tempo != TempoChoice::File && o.tempo_file.is_some() {
        return Err(bad("tempo_file", "applies to --tempo file only".to_owned()));
    }
    if o.tempo != TempoChoice::Rte {
        for key in ["tempo_client_id_file", "tempo_client_secret_file"] {
            if given(key) {
                return Err(bad(key, "applies to --tempo rte only".to_owned()));
            }
        }
    }
    Ok(match o.tempo {
        TempoChoice::Off => TempoSettings::Off,
        TempoChoice::File => {
            let Some(path) = o.tempo_file.clone() else {
                return Err(bad(
                    "tempo",
                    "file: the Tempo file source needs --tempo-file PATH (RTE's tempo_like_calendars body)"
                        .to_owned(),
                ));
            };
            TempoSettings::File {
                path,
                rebase_to_today: o.rebase_to_today,
            }
        }
        TempoChoice::Rte => {
            let base = parse_base_url(&o.ecowatt_url)
                .map_err(|why| bad("ecowatt_url", format!("{:?}: {why}", o.ecowatt_url)))?;
            let production = !o.sandbox
                && base
                    .host_str()
                    .is_some_and(|h| h.eq_ignore_ascii_case(PRODUCTION_HOST));
            let own_id = o.tempo_client_id_file.is_some() || env(TEMPO_CLIENT_ID_ENV).is_some();
            let own_secret =
                o.tempo_client_secret_file.is_some() || env(TEMPO_CLIENT_SECRET_ENV).is_some();
            let credentials = if own_id || own_secret {
                Some(credentials(
                    o,
                    &TEMPO_CREDENTIALS,
                    " for Tempo",
                    origins,
                    env,
                )?)
            } else if matches!(source, SourceSettings::Rte(_)) {
                // The Ecowatt client's: shared, with its token.
                None
            } else {
                Some(credentials(
                    o,
                    &ECOWATT_CREDENTIALS,
                    " (for Tempo: TEMPO_* or ECOWATT_*)",
                    origins,
                    env,
                )?)
            };
            TempoSettings::Rte(TempoRteSettings {
                base,
                sandbox: o.sandbox,
                credentials,
                schedule: TempoSchedule {
                    // RTE: never twice in 15 minutes. A local server (tests)
                    // may be asked as often as the refresh interval.
                    spacing: if production {
                        RTE_MIN_SPACING
                    } else {
                        o.refresh_interval.min(RTE_MIN_SPACING)
                    },
                    margin: o.call_margin,
                },
                request_timeout: o.request_timeout,
            })
        }
    })
}

/// The base URL: https, or http to a loopback address only (credentials
/// must not cross a network in clear).
fn parse_base_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| e.to_string())?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err("has no host".to_owned()),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "plain http would send the RTE credentials in clear; use https (http is only accepted for a loopback address)"
                    .to_owned(),
            );
        }
        other => return Err(format!("scheme {other:?}: use https")),
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(format!(
            "give the base only (scheme and host, e.g. {PRODUCTION_BASE}); the API paths are added"
        ));
    }
    Ok(url)
}

mod credentials;
mod upstream;

use credentials::{ECOWATT_CREDENTIALS, TEMPO_CREDENTIALS, credentials};
use upstream::{UPSTREAM_KEYS, upstream_settings};

#[cfg(test)]
mod tests;

//! forecast-service's settings: flags, an optional TOML file, the
//! environment (for the RTE credentials only), and defaults.
//!
//! Every setting can be given as a flag or as a key of the `--config` file;
//! the flag wins. Errors name the flag, or the file and the key. Credentials
//! are never taken from the config file itself (it tends to be world-readable
//! and copied around): only from the environment or from files of their own.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use delestage_runtime::security::{Security, SecurityArgs, SecurityFile};
use delestage_runtime::telemetry::LogFormat;
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;

use crate::Error;
use crate::rte::{Credentials, PRODUCTION_BASE};
use crate::schedule::{RTE_MIN_SPACING, RefreshPolicy};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50052";
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(6 * 60 * 60);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const CLIENT_ID_ENV: &str = "ECOWATT_CLIENT_ID";
pub const CLIENT_SECRET_ENV: &str = "ECOWATT_CLIENT_SECRET";

/// The host whose rate limit (one call per 15 minutes) cannot be lowered.
const PRODUCTION_HOST: &str = "digital.iservices.rte-france.com";

/// Serves RTE's Ecowatt forecast (grid tension, hour by hour, four days) as
/// delestage.forecast.v1.ForecastService over gRPC, with grpc.health.v1 and
/// server reflection. It holds the only RTE credentials, calls RTE at most
/// once per refresh interval whatever the number of clients, and keeps
/// serving the last good forecast through RTE outages and restarts.
///
/// RTE credentials: ECOWATT_CLIENT_ID and ECOWATT_CLIENT_SECRET, or
/// --client-id-file and --client-secret-file.
///
/// Every option can also be set in the --config file, under the same name
/// with underscores (source, file, rebase_to_today, ecowatt_url, sandbox,
/// client_id_file, client_secret_file, refresh_interval, max_age,
/// request_timeout, listen, state_dir, log_format, metrics). Flags win.
#[derive(Debug, Default, Parser)]
#[command(name = "forecast-service", version, about, long_about)]
pub struct Cli {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to serve gRPC on [default: 127.0.0.1:50052]. Use port 0 for
    /// any free port (the log says which).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// Where the last good RTE answer is kept across restarts [default:
    /// $STATE_DIRECTORY, else $XDG_STATE_HOME/delestage/forecast-service,
    /// else ~/.local/state/delestage/forecast-service].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Where the forecast comes from [default: rte, or file when --file is
    /// given].
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub source: Option<SourceChoice>,

    /// An Ecowatt-format JSON file (for --source file); re-read when it
    /// changes.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Shift the file's days so that the earliest is today (Europe/Paris),
    /// keeping hours and levels; done again every hour. For demos.
    #[arg(long)]
    pub rebase_to_today: bool,

    /// RTE's base URL [default: https://digital.iservices.rte-france.com].
    #[arg(long, value_name = "URL")]
    pub ecowatt_url: Option<String>,

    /// Use RTE's sandbox (fixed 2022 data) instead of the live signals.
    #[arg(long)]
    pub sandbox: bool,

    /// A file holding the RTE client id (instead of ECOWATT_CLIENT_ID).
    #[arg(long, value_name = "FILE")]
    pub client_id_file: Option<PathBuf>,

    /// A file holding the RTE client secret (instead of ECOWATT_CLIENT_SECRET).
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,

    /// How often to fetch the forecast from RTE [default: 15m; never less
    /// than 15m for RTE's production API, whose limit that is].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub refresh_interval: Option<Duration>,

    /// A forecast fetched longer ago than this is served with `stale` set
    /// [default: 6h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_age: Option<Duration>,

    /// Time limit of each HTTP call to RTE [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,

    /// Log format [default: text]. RUST_LOG filters (default: info).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Serve Prometheus metrics (GET /metrics) on this address [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceChoice {
    /// RTE's Ecowatt API (OAuth2).
    Rte,
    /// An Ecowatt-format JSON file.
    File,
}

/// The `--config` file. Same names as the flags, with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub source: Option<SourceChoice>,
    pub file: Option<PathBuf>,
    pub rebase_to_today: Option<bool>,
    pub ecowatt_url: Option<String>,
    pub sandbox: Option<bool>,
    pub client_id_file: Option<PathBuf>,
    pub client_secret_file: Option<PathBuf>,
    pub refresh_interval: Option<String>,
    pub max_age: Option<String>,
    pub request_timeout: Option<String>,
    pub log_format: Option<LogFormat>,
    pub metrics: Option<String>,
    /// TLS, tokens, --insecure.
    #[serde(default)]
    pub security: SecurityFile,
}

/// The resolved settings the service runs with.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub state_dir: PathBuf,
    pub source: SourceSettings,
    pub max_age: Duration,
    pub log_format: LogFormat,
    /// Where to serve Prometheus metrics; `None`: not at all.
    pub metrics: Option<String>,
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
}

#[derive(Debug)]
pub struct RteSettings {
    pub base: Url,
    pub sandbox: bool,
    pub credentials: Credentials,
    pub policy: RefreshPolicy,
    pub request_timeout: Duration,
}

impl Settings {
    /// A file source with defaults: what tests and embedders (the demo)
    /// start from.
    pub fn with_file(path: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            state_dir: state_dir.into(),
            source: SourceSettings::File {
                path: path.into(),
                rebase_to_today: false,
            },
            max_age: DEFAULT_MAX_AGE,
            log_format: LogFormat::Text,
            metrics: None,
            security: Security::default(),
            warnings: Vec::new(),
        }
    }

    /// Flags over file over defaults, then validated. Credentials come from
    /// the process environment.
    pub fn resolve(cli: Cli) -> Result<Self, Error> {
        Self::resolve_with_env(cli, |name| std::env::var(name).ok())
    }

    /// As [`Settings::resolve`], with the environment given (for tests).
    pub fn resolve_with_env(cli: Cli, env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let path = cli.config.clone();
        let file = match &path {
            Some(path) => delestage_runtime::config::load_toml::<FileConfig>(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file, path.as_deref(), env)
    }

    fn merge(
        cli: Cli,
        file: FileConfig,
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        // Where a value came from, for error messages.
        let origin = |flag: &str, from_flag: bool| -> String {
            match (from_flag, path) {
                (true, _) | (false, None) => format!("--{flag}"),
                (false, Some(p)) => format!("{}: {}", p.display(), flag.replace('-', "_")),
            }
        };
        let duration = |flag: &str, from_cli: Option<Duration>, from_file: Option<String>| match (
            from_cli, from_file,
        ) {
            (Some(d), _) => Ok(Some(d)),
            (None, Some(text)) => humantime::parse_duration(&text).map(Some).map_err(|e| {
                Error::Config(format!(
                    "{}: {text:?} is not a duration ({e}); write e.g. \"15m\" or \"6h\"",
                    origin(flag, false)
                ))
            }),
            (None, None) => Ok(None),
        };

        let file_path_from_flag = cli.file.is_some();
        let file_path = cli.file.or(file.file);
        let source_from_flag = cli.source.is_some();
        let source = cli
            .source
            .or(file.source)
            .unwrap_or(if file_path.is_some() {
                SourceChoice::File
            } else {
                SourceChoice::Rte
            });
        let rebase_from_flag = cli.rebase_to_today;
        let rebase_to_today = cli.rebase_to_today || file.rebase_to_today.unwrap_or(false);
        let sandbox = cli.sandbox || file.sandbox.unwrap_or(false);

        let refresh_from_flag = cli.refresh_interval.is_some();
        let refresh_interval = duration(
            "refresh-interval",
            cli.refresh_interval,
            file.refresh_interval,
        )?;
        let max_age = duration("max-age", cli.max_age, file.max_age)?.unwrap_or(DEFAULT_MAX_AGE);
        let timeout_from_flag = cli.request_timeout.is_some();
        let request_timeout =
            duration("request-timeout", cli.request_timeout, file.request_timeout)?
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        if max_age.is_zero() {
            return Err(Error::Config(format!(
                "{}: must be more than zero",
                origin("max-age", false)
            )));
        }

        let mut warnings = Vec::new();
        let source = match source {
            SourceChoice::File => {
                let Some(path) = file_path else {
                    return Err(Error::Config(format!(
                        "{}: file: the file source needs --file PATH (an Ecowatt-format JSON file)",
                        origin("source", source_from_flag)
                    )));
                };
                for (given, flag) in [
                    (
                        cli.ecowatt_url.is_some() || file.ecowatt_url.is_some(),
                        "--ecowatt-url",
                    ),
                    (sandbox, "--sandbox"),
                    (refresh_interval.is_some(), "--refresh-interval"),
                    (
                        cli.client_id_file.is_some() || file.client_id_file.is_some(),
                        "--client-id-file",
                    ),
                    (
                        cli.client_secret_file.is_some() || file.client_secret_file.is_some(),
                        "--client-secret-file",
                    ),
                ] {
                    if given {
                        warnings.push(format!(
                            "{flag} applies to the RTE source only; ignored with --source file"
                        ));
                    }
                }
                SourceSettings::File {
                    path,
                    rebase_to_today,
                }
            }
            SourceChoice::Rte => {
                if file_path.is_some() {
                    return Err(Error::Config(format!(
                        "{}: the RTE source does not read a file; use --source file to serve it",
                        origin("file", file_path_from_flag)
                    )));
                }
                if rebase_to_today {
                    return Err(Error::Config(format!(
                        "{}: applies to --source file only",
                        origin("rebase-to-today", rebase_from_flag)
                    )));
                }
                let url_from_flag = cli.ecowatt_url.is_some();
                let url_text = cli
                    .ecowatt_url
                    .or(file.ecowatt_url)
                    .unwrap_or_else(|| PRODUCTION_BASE.to_owned());
                let base = parse_base_url(&url_text).map_err(|why| {
                    Error::Config(format!(
                        "{}: {url_text:?}: {why}",
                        origin("ecowatt-url", url_from_flag)
                    ))
                })?;
                let production = !sandbox
                    && base
                        .host_str()
                        .is_some_and(|h| h.eq_ignore_ascii_case(PRODUCTION_HOST));
                let interval = refresh_interval.unwrap_or(DEFAULT_REFRESH_INTERVAL);
                if production && interval < RTE_MIN_SPACING {
                    return Err(Error::Config(format!(
                        "{}: {}: RTE's production API allows one call per 15 minutes; use 15m or more",
                        origin("refresh-interval", refresh_from_flag),
                        humantime::format_duration(interval)
                    )));
                }
                if interval.is_zero() {
                    return Err(Error::Config(format!(
                        "{}: must be more than zero",
                        origin("refresh-interval", refresh_from_flag)
                    )));
                }
                if request_timeout.is_zero() {
                    return Err(Error::Config(format!(
                        "{}: must be more than zero",
                        origin("request-timeout", timeout_from_flag)
                    )));
                }
                let credentials = credentials(
                    (
                        cli.client_id_file.is_some(),
                        cli.client_id_file.or(file.client_id_file),
                    ),
                    (
                        cli.client_secret_file.is_some(),
                        cli.client_secret_file.or(file.client_secret_file),
                    ),
                    &origin,
                    &env,
                )?;
                SourceSettings::Rte(RteSettings {
                    base,
                    sandbox,
                    credentials,
                    policy: RefreshPolicy {
                        interval,
                        floor: if production {
                            RTE_MIN_SPACING
                        } else {
                            Duration::ZERO
                        },
                    },
                    request_timeout,
                })
            }
        };

        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let security = Security::resolve(&cli.security, &file.security, &listen)?;
        Ok(Self {
            listen,
            state_dir: cli.state_dir.or(file.state_dir).unwrap_or_else(|| {
                delestage_runtime::config::default_state_dir("forecast-service")
            }),
            source,
            max_age,
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            metrics: cli.metrics.or(file.metrics),
            security,
            warnings,
        })
    }
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

/// The credentials: each from its file when one is named, else from the
/// environment. Errors name the flag or variable, never the value.
fn credentials(
    id_file: (bool, Option<PathBuf>),
    secret_file: (bool, Option<PathBuf>),
    origin: &dyn Fn(&str, bool) -> String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, Error> {
    let one = |(from_flag, file): (bool, Option<PathBuf>),
               flag: &str,
               var: &str|
     -> Result<SecretString, Error> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::Config(format!(
                        "{}: cannot read {}: {e}",
                        origin(flag, from_flag),
                        path.display()
                    ))
                })?;
                let value = text.trim();
                if value.is_empty() {
                    return Err(Error::Config(format!(
                        "{}: {} is empty",
                        origin(flag, from_flag),
                        path.display()
                    )));
                }
                Ok(SecretString::from(value.to_owned()))
            }
            None => match env(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                Some(value) => Ok(SecretString::from(value)),
                None => Err(Error::Config(format!(
                    "no RTE {what}: set {var} or --{flag} (or serve a file with --source file --file PATH)",
                    what = if var == CLIENT_ID_ENV {
                        "client id"
                    } else {
                        "client secret"
                    },
                ))),
            },
        }
    };
    Ok(Credentials {
        client_id: one(id_file, "client-id-file", CLIENT_ID_ENV)?,
        client_secret: one(secret_file, "client-secret-file", CLIENT_SECRET_ENV)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "id-0123456789";
    const SECRET: &str = "secret-abcdefghij";

    fn env_with_credentials(name: &str) -> Option<String> {
        match name {
            CLIENT_ID_ENV => Some(ID.to_owned()),
            CLIENT_SECRET_ENV => Some(SECRET.to_owned()),
            _ => None,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn resolve(cli: Cli) -> Result<Settings, Error> {
        Settings::resolve_with_env(cli, env_with_credentials)
    }

    fn rte(settings: &Settings) -> &RteSettings {
        match &settings.source {
            SourceSettings::Rte(r) => r,
            other => panic!("expected the RTE source, got {other:?}"),
        }
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("forecast.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn defaults_are_rte_production_every_15_minutes() {
        let s = resolve(Cli::default()).expect("ok");
        assert_eq!(s.listen, "127.0.0.1:50052");
        assert_eq!(s.max_age, DEFAULT_MAX_AGE);
        let r = rte(&s);
        assert_eq!(r.base.as_str(), "https://digital.iservices.rte-france.com/");
        assert!(!r.sandbox);
        assert_eq!(r.policy.interval, RTE_MIN_SPACING);
        assert_eq!(r.policy.floor, RTE_MIN_SPACING);
    }

    #[test]
    fn no_credentials_is_an_error_saying_where_to_put_them() {
        let msg = Settings::resolve_with_env(Cli::default(), no_env)
            .expect_err("no credentials")
            .to_string();
        assert!(msg.contains("ECOWATT_CLIENT_ID"), "{msg}");
        assert!(msg.contains("--client-id-file"), "{msg}");
    }

    #[test]
    fn credentials_from_files_are_trimmed_and_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = dir.path().join("id");
        let secret = dir.path().join("secret");
        std::fs::write(&id, format!("{ID}\n")).expect("write");
        std::fs::write(&secret, format!("{SECRET}\n")).expect("write");
        let cli = Cli {
            client_id_file: Some(id),
            client_secret_file: Some(secret.clone()),
            ..Cli::default()
        };
        let s = Settings::resolve_with_env(cli, no_env).expect("ok");
        use secrecy::ExposeSecret;
        assert_eq!(rte(&s).credentials.client_secret.expose_secret(), SECRET);
        let debug = format!("{s:?}");
        assert!(!debug.contains(SECRET) && !debug.contains(ID), "{debug}");

        std::fs::write(&secret, "\n").expect("write");
        let cli = Cli {
            client_secret_file: Some(secret),
            ..Cli::default()
        };
        let msg = Settings::resolve_with_env(cli, env_with_credentials)
            .expect_err("empty")
            .to_string();
        assert!(
            msg.contains("--client-secret-file") && msg.contains("is empty"),
            "{msg}"
        );
    }

    #[test]
    fn production_cannot_be_polled_faster_than_15_minutes() {
        let cli = Cli {
            refresh_interval: Some(Duration::from_secs(60)),
            ..Cli::default()
        };
        let msg = resolve(cli).expect_err("too fast").to_string();
        assert!(
            msg.contains("--refresh-interval") && msg.contains("15 minutes"),
            "{msg}"
        );

        // The sandbox and other servers have no such limit.
        let cli = Cli {
            refresh_interval: Some(Duration::from_secs(60)),
            sandbox: true,
            ..Cli::default()
        };
        assert_eq!(rte(&resolve(cli).expect("ok")).policy.floor, Duration::ZERO);
        let cli = Cli {
            refresh_interval: Some(Duration::from_secs(1)),
            ecowatt_url: Some("http://127.0.0.1:8080".to_owned()),
            ..Cli::default()
        };
        assert_eq!(
            rte(&resolve(cli).expect("ok")).policy.interval,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn credentials_never_travel_in_clear_over_a_network() {
        for (url, ok) in [
            ("http://127.0.0.1:8080", true),
            ("http://localhost:8080", true),
            ("http://[::1]:8080", true),
            ("https://rte.example", true),
            ("http://rte.example", false),
            ("http://192.168.1.10", false),
            ("ftp://rte.example", false),
            ("https://rte.example/open_api/ecowatt/v5/signals", false),
            ("not a url", false),
        ] {
            let cli = Cli {
                ecowatt_url: Some(url.to_owned()),
                ..Cli::default()
            };
            match resolve(cli) {
                Ok(_) => assert!(ok, "{url} should be refused"),
                Err(e) => {
                    assert!(!ok, "{url}: {e}");
                    assert!(e.to_string().starts_with("--ecowatt-url"), "{e}");
                }
            }
        }
    }

    #[test]
    fn a_file_alone_means_the_file_source() {
        let cli = Cli {
            file: Some("/tmp/x.json".into()),
            rebase_to_today: true,
            ..Cli::default()
        };
        let s = Settings::resolve_with_env(cli, no_env).expect("ok");
        assert!(matches!(
            s.source,
            SourceSettings::File {
                rebase_to_today: true,
                ..
            }
        ));

        let cli = Cli {
            source: Some(SourceChoice::File),
            ..Cli::default()
        };
        let msg = resolve(cli).expect_err("no file").to_string();
        assert!(msg.contains("--file"), "{msg}");

        let cli = Cli {
            source: Some(SourceChoice::Rte),
            file: Some("/tmp/x.json".into()),
            ..Cli::default()
        };
        assert!(
            resolve(cli)
                .expect_err("conflict")
                .to_string()
                .starts_with("--file")
        );

        let cli = Cli {
            file: Some("/tmp/x.json".into()),
            sandbox: true,
            ..Cli::default()
        };
        let s = resolve(cli).expect("ok");
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    }

    #[test]
    fn the_config_file_sets_everything_and_errors_name_the_key() {
        let (_d, path) = file(
            r#"
listen = "127.0.0.1:6000"
ecowatt_url = "https://rte.example"
sandbox = true
refresh_interval = "30m"
max_age = "2h"
request_timeout = "10s"
log_format = "json"
"#,
        );
        let cli = Cli {
            config: Some(path),
            listen: Some("127.0.0.1:7000".into()),
            ..Cli::default()
        };
        let s = resolve(cli).expect("ok");
        assert_eq!(s.listen, "127.0.0.1:7000");
        assert_eq!(s.max_age, Duration::from_secs(7200));
        assert_eq!(s.log_format, LogFormat::Json);
        let r = rte(&s);
        assert!(r.sandbox);
        assert_eq!(r.policy.interval, Duration::from_secs(1800));
        assert_eq!(r.request_timeout, Duration::from_secs(10));

        let (_d, path) = file("refresh_intervall = \"30m\"\n");
        let msg = resolve(Cli {
            config: Some(path),
            ..Cli::default()
        })
        .expect_err("typo")
        .to_string();
        assert!(
            msg.contains("forecast.toml") && msg.contains("refresh_intervall"),
            "{msg}"
        );

        let (_d, path) = file("max_age = \"six hours\"\n");
        let msg = resolve(Cli {
            config: Some(path),
            ..Cli::default()
        })
        .expect_err("bad duration")
        .to_string();
        assert!(msg.contains("forecast.toml: max_age"), "{msg}");

        // Secrets do not belong in the config file.
        let (_d, path) = file("client_secret = \"x\"\n");
        let msg = resolve(Cli {
            config: Some(path),
            ..Cli::default()
        })
        .expect_err("no secrets in the file")
        .to_string();
        assert!(msg.contains("client_secret"), "{msg}");
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/forecast-service.toml");
        let s = resolve(Cli {
            config: Some(path),
            ..Cli::default()
        })
        .expect("deploy/forecast-service.toml is valid");
        assert_eq!(rte(&s).policy.interval, RTE_MIN_SPACING);
    }
}

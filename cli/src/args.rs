//! The command line: `delestage <COMMAND>`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// delestage: grid-aware load shedding. Talks to the controller, the
/// forecast-service and a relay-service; `delestage demo` runs all three
/// in this process.
#[derive(Debug, Parser)]
#[command(name = "delestage", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub endpoints: Endpoints,

    /// Print JSON (one document) instead of text, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    /// Show times in this zone (IANA name). Paris time by default, whatever
    /// this machine's zone, as the dashboard does; JSON is always RFC 3339
    /// with its offset.
    #[arg(
        long,
        global = true,
        env = "DELESTAGE_TZ",
        default_value = "Europe/Paris",
        value_name = "ZONE"
    )]
    pub tz: String,

    #[command(subcommand)]
    pub command: Command,
}

/// Where the services are.
#[derive(Debug, Clone, Args)]
pub struct Endpoints {
    /// The controller.
    #[arg(
        long,
        global = true,
        env = "DELESTAGE_CONTROLLER",
        default_value = "http://127.0.0.1:50053",
        value_name = "URL"
    )]
    pub controller: String,

    /// The forecast-service.
    #[arg(
        long,
        global = true,
        env = "DELESTAGE_FORECAST",
        default_value = "http://127.0.0.1:50052",
        value_name = "URL"
    )]
    pub forecast: String,

    /// A relay-service (for `relays` and `relay set`).
    #[arg(
        long,
        global = true,
        env = "DELESTAGE_RELAY",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL"
    )]
    pub relay: String,

    /// For https:// URLs: the CA that signed the services' certificates (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Our client certificate (PEM), for services that require one.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Our client key (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// A file holding the bearer token to send (instead of DELESTAGE_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system in this process (simulated board, the bundled
    /// RTE sandbox forecast moved to this week, four example loads) and show
    /// it live. Ctrl-C stops it.
    Demo(DemoArgs),
    /// Each load: powered or cut, why, and what comes next.
    Status,
    /// The plan: one row per load over the forecast horizon, hours coloured
    /// by level; with LOAD, that load's intervals.
    Plan {
        /// Only this load.
        load: Option<String>,
    },
    /// The Ecowatt forecast, day by day and hour by hour.
    Forecast,
    /// The relays of a relay-service (--relay).
    Relays,
    /// The Linky meter read by a relay-service (--relay): power against
    /// the subscribed power, tariff period, Tempo colours, meter id, mode,
    /// frame counts and age.
    Meter,
    /// Switch a relay by hand (the controller will put it back if its plan
    /// says otherwise; use `override` to make it stick).
    Relay {
        #[command(subcommand)]
        action: RelayAction,
    },
    /// Force a load on or off for a while: `override LOAD on --for 2h`;
    /// `override clear LOAD` ends it.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Override(OverrideArgs),
    /// Every switch the controller made, newest first.
    History(HistoryArgs),
    /// Make bearer tokens for the services' --tokens files.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Ask a service's grpc.health.v1 whether it is SERVING: exit 0 if so,
    /// 1 if not (for container health checks).
    Health {
        /// The service's URL, e.g. http://127.0.0.1:50051.
        url: String,
        /// The gRPC service to ask about [default: the whole server].
        #[arg(long, default_value = "")]
        service: String,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port of the relay-service (0: any free port; the same for the others).
    #[arg(long, default_value_t = 50051)]
    pub relay_port: u16,
    /// Port of the forecast-service.
    #[arg(long, default_value_t = 50052)]
    pub forecast_port: u16,
    /// Port of the controller.
    #[arg(long, default_value_t = 50053)]
    pub controller_port: u16,
    /// Port of the web dashboard (http://127.0.0.1:PORT/).
    #[arg(long, default_value_t = 50080)]
    pub http_port: u16,
    /// Also show the demo in Home Assistant, through this MQTT broker
    /// (mqtt://HOST:1883, anonymous; see docs/home-assistant.md for a
    /// broker with users).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// Keep the demo's state here (default: a temporary directory, removed
    /// at exit).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Do not show the live view; just run until Ctrl-C (logs on stderr).
    #[arg(long)]
    pub no_view: bool,
    /// Log format [default: text]. RUST_LOG filters (default: warn with the
    /// live view, info without).
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub log_format: delestage_runtime::telemetry::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Print a new random token (once: keep it for the client), then the
    /// line to add to the services' tokens file (its SHA-256, never the
    /// token). Scripts: the token is stdout's first line, the tokens-file
    /// line its second; `--json` gives both as fields.
    New {
        /// What the token may do: read (Get*, Watch*) or control (also
        /// SetRelay, RenewHold and overrides).
        #[arg(long, value_enum)]
        role: delestage_runtime::security::Role,
        /// A name for the token, shown in the services' logs when it is
        /// refused (e.g. "controller", "dashboard").
        #[arg(long, value_name = "N")]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RelayAction {
    /// `relay set CHANNEL on|off`
    Set {
        channel: u32,
        #[arg(value_enum)]
        state: OnOff,
    },
}

#[derive(Debug, Args)]
pub struct OverrideArgs {
    #[command(subcommand)]
    pub clear: Option<OverrideClear>,
    /// The load.
    #[arg(required = true)]
    pub load: Option<String>,
    /// on or off.
    #[arg(value_enum, required = true)]
    pub state: Option<OnOff>,
    /// For how long (e.g. 30m, 2h).
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration, required_unless_present = "until")]
    pub for_: Option<Duration>,
    /// Until when (RFC 3339, e.g. 2026-12-08T20:00:00+01:00), instead of --for.
    #[arg(long, value_name = "TIME", conflicts_with = "for_")]
    pub until: Option<String>,
    /// Act at once, without waiting for the load's minimum on/off time
    /// (needs a control token). Without it, the override acts as soon as
    /// the minimum allows, and `delestage status` says when.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum OverrideClear {
    /// End a load's override now.
    Clear { load: String },
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this load.
    #[arg(long)]
    pub load: Option<String>,
    /// Only switches in the last DURATION (e.g. 24h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

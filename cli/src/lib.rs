//! `delestage`, the command line: client commands against running services
//! (status, plan, forecast, relays, meter, overrides, history; `--json` on
//! each)
//! and `demo`, the whole system in one process.
//!
//! - [`args`]: the command line.
//! - [`connect`]: reaching a service, and errors that say which one.
//! - [`commands`]: one function per client command.
//! - [`render`]: text and JSON from the services' answers.
//! - [`demo`]: the three services in-process, with a live view.

pub mod args;
mod commands;
mod connect;
mod demo;
mod render;

use crate::args::{Cli, Command, RelayAction, TokenAction};
use crate::commands::Output;
use crate::connect::CliError;
use crate::render::Paint;

/// Runs one command. `stop` ends the demo (Ctrl-C).
pub async fn run(
    cli: Cli,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), CliError> {
    let out = Output {
        json: cli.json,
        paint: Paint::for_stdout(),
        tz: render::zone(&cli.tz)?,
    };
    let e = &cli.endpoints;
    match cli.command {
        Command::Demo(args) => demo::run(args, out.paint, stop).await,
        Command::Status => commands::status(e, out).await,
        Command::Plan { load } => commands::plan(e, load, out).await,
        Command::Forecast => commands::forecast(e, out).await,
        Command::Relays => commands::relays(e, out).await,
        Command::Meter => commands::meter(e, out).await,
        Command::Relay {
            action: RelayAction::Set { channel, state },
        } => commands::relay_set(e, channel, state, out).await,
        Command::Override(args) => commands::override_(e, args, out).await,
        Command::History(args) => commands::history(e, args, out).await,
        Command::Token {
            action: TokenAction::New { role, name },
        } => commands::token_new(role, name.as_deref(), out),
        Command::Health { url, service } => commands::health(&url, &service, out).await,
    }
}

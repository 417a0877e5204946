//! `delestage`: parse the command line, run one command.

use std::process::ExitCode;

use clap::Parser;
use delestage_cli::args::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse();
    // Only the demo runs services, and so logs; its live view wants only
    // warnings on the terminal (RUST_LOG overrides).
    if let Command::Demo(demo) = &args.command {
        let default = if demo.no_view { "info" } else { "warn" };
        if let Err(e) = delestage_runtime::telemetry::init_with_default(demo.log_format, default) {
            eprintln!("delestage: {e}");
            return ExitCode::FAILURE;
        }
    }
    let stop = match delestage_runtime::shutdown::signal() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("delestage: cannot handle Ctrl-C: {e}");
            return ExitCode::FAILURE;
        }
    };
    match delestage_cli::run(args, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("delestage: {e}");
            ExitCode::FAILURE
        }
    }
}

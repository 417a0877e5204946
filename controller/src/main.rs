//! `controller`: parse flags and config, set up logging, serve until
//! SIGINT/SIGTERM.

use std::process::ExitCode;

use delestage_controller::config::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    delestage_runtime::process::exit_code("controller", run().await)
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let shutdown =
        delestage_runtime::process::start(settings.log_format, settings.metrics.as_deref(), &[])
            .await?;
    delestage_controller::run(settings, shutdown).await?;
    Ok(())
}

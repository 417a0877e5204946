//! `forecast-service`: parse flags, set up logging, serve until SIGINT/SIGTERM.

use std::process::ExitCode;

use delestage_forecast_service::config::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    delestage_runtime::process::exit_code("forecast-service", run().await)
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let shutdown = delestage_runtime::process::start(
        settings.log_format,
        settings.metrics.as_deref(),
        settings.warnings.as_slice(),
    )
    .await?;
    delestage_forecast_service::run(settings, shutdown).await?;
    Ok(())
}

//! `forecast-service`: parse flags, set up logging, serve until SIGINT/SIGTERM.

use std::process::ExitCode;

use forecast_service::config::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Our errors carry their causes in their message.
            eprintln!("forecast-service: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    delestage_runtime::telemetry::init(settings.log_format)?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(addr) = &settings.metrics {
        delestage_runtime::metrics::serve(addr).await?;
    }
    let shutdown = delestage_runtime::shutdown::signal()?;
    forecast_service::run(settings, shutdown).await?;
    Ok(())
}

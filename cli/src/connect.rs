//! Reaching the services, and saying clearly which one could not be
//! reached and why.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Everything that can go wrong in the CLI.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the {service} at {url}: {reason} (is it running? set {hint})")]
    Unreachable {
        service: &'static str,
        url: String,
        reason: String,
        hint: &'static str,
    },
    #[error("the {service} answered: {code:?}: {message}")]
    Rpc {
        service: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("not serving: {0}")]
    NotServing(String),
    #[error("{0}")]
    Demo(String),
}

/// One of the services the CLI talks to.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Controller,
    Forecast,
    Relay,
    /// Whichever service is at a URL given on the command line.
    Any,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Controller => "controller",
            Service::Forecast => "forecast-service",
            Service::Relay => "relay-service",
            Service::Any => "service",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Service::Controller => "--controller or DELESTAGE_CONTROLLER",
            Service::Forecast => "--forecast or DELESTAGE_FORECAST",
            Service::Relay => "--relay or DELESTAGE_RELAY",
            Service::Any => "the URL",
        }
    }

    /// Turns a failed call into an error naming this service.
    pub fn error(self, url: &str, status: tonic::Status) -> CliError {
        // A connection failure surfaces as UNAVAILABLE from the transport.
        if status.code() == tonic::Code::Unavailable && status.message().contains("transport") {
            return CliError::Unreachable {
                service: self.name(),
                url: url.to_owned(),
                reason: with_causes(&status),
                hint: self.hint(),
            };
        }
        CliError::Rpc {
            service: self.name(),
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Connects to `service` at `url`.
pub async fn connect(service: Service, url: &str) -> Result<Channel, CliError> {
    let unreachable = |reason: String| CliError::Unreachable {
        service: service.name(),
        url: url.to_owned(),
        reason,
        hint: service.hint(),
    };
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| unreachable(format!("not a URL: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10));
    endpoint
        .connect()
        .await
        .map_err(|e| unreachable(with_causes(&e)))
}

fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

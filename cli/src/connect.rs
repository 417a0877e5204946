//! Reaching the services, and saying clearly which one could not be
//! reached and why.

use std::time::Duration;

use delestage_runtime::client::{AuthedChannel, BearerToken, ClientSecurity};
use delestage_runtime::errors::with_causes;
use tonic::service::interceptor::InterceptedService;

use crate::args::Endpoints;

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
pub(crate) enum Service {
    Controller,
    Forecast,
    Relay,
    /// Whichever service is at a URL given on the command line.
    Any,
}

impl Service {
    pub(crate) fn name(self) -> &'static str {
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
    pub(crate) fn error(self, url: &str, status: tonic::Status) -> CliError {
        // Raised here by the transport, not answered by the service: it
        // did not answer at all.
        if delestage_runtime::client::raised_locally(&status) {
            let reason = if delestage_runtime::client::peer_went_silent(&status) {
                format!(
                    "no answer for {} s (frozen or cut off)",
                    delestage_runtime::client::SILENCE.as_secs()
                )
            } else {
                with_causes(&status)
            };
            return CliError::Unreachable {
                service: self.name(),
                url: url.to_owned(),
                reason,
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

/// TLS and the token, from the command line and the environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    security: ClientSecurity,
    /// From DELESTAGE_TOKEN, when no --token-file.
    env_token: Option<String>,
}

impl Credentials {
    pub(crate) fn from_args(e: &Endpoints) -> Self {
        Self {
            security: ClientSecurity {
                ca: e.tls_ca.clone(),
                cert: e.tls_cert.clone(),
                key: e.tls_key.clone(),
                token_file: e.token_file.clone(),
            },
            env_token: std::env::var("DELESTAGE_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty()),
        }
    }

    /// Nothing: for the demo's own services.
    pub(crate) fn none() -> Self {
        Self::default()
    }
}

/// Connects to `service` at `url`, with TLS and the token as given.
pub(crate) async fn connect(
    service: Service,
    url: &str,
    credentials: &Credentials,
) -> Result<AuthedChannel, CliError> {
    let unreachable = |reason: String| CliError::Unreachable {
        service: service.name(),
        url: url.to_owned(),
        reason,
        hint: service.hint(),
    };
    let (endpoint, mut token) =
        delestage_runtime::client::endpoint(url, &credentials.security, Duration::from_secs(3))
            .map_err(|e| CliError::Usage(e.to_string()))?;
    if credentials.security.token_file.is_none()
        && let Some(t) = &credentials.env_token
    {
        token =
            BearerToken::new(t).map_err(|e| CliError::Usage(format!("DELESTAGE_TOKEN: {e}")))?;
    }
    let channel = endpoint
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| unreachable(with_causes(&e)))?;
    Ok(InterceptedService::new(channel, token))
}

//! The HTTP client for RTE's APIs: OAuth2 client credentials, a cached
//! token, the Ecowatt signals call and the Tempo calendar call. One client
//! per credential pair, so one token cache per pair.
//!
//! The client-credentials grant is one POST with Basic auth; it is written
//! here on reqwest rather than through the `oauth2` crate, which would bring
//! a second reqwest and still need RTE's quirks handled around it (the
//! error bodies, the HTML 503, renewing on a 401).
//!
//! This module makes a call whenever asked: the rate limit is enforced by
//! its only caller, [`crate::refresh`].

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{StatusCode, Url, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Error;
use crate::ecowatt;
use crate::error::with_causes;

/// RTE's production base URL.
pub const PRODUCTION_BASE: &str = "https://digital.iservices.rte-france.com";
pub const TOKEN_PATH: &str = "/token/oauth/";
pub const SIGNALS_PATH: &str = "/open_api/ecowatt/v5/signals";
pub const SANDBOX_SIGNALS_PATH: &str = "/open_api/ecowatt/v5/sandbox/signals";
pub const TEMPO_PATH: &str = "/open_api/tempo_like_supply_contract/v1/tempo_like_calendars";
pub const SANDBOX_TEMPO_PATH: &str =
    "/open_api/tempo_like_supply_contract/v1/sandbox/tempo_like_calendars";

/// Far more than a real body (about 3 kB); protects memory from a broken
/// or hostile answer.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A token is renewed this long before RTE says it expires (or at half its
/// life, for short-lived tokens), so it never expires in flight.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(5 * 60);

/// When RTE's answer leaves out `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The application's RTE credentials. `Debug` shows no secret.
pub struct Credentials {
    pub client_id: SecretString,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

struct CachedToken {
    value: SecretString,
    renew_at: Instant,
}

/// A client for one RTE base URL.
pub struct RteClient {
    http: reqwest::Client,
    token_url: Url,
    signals_url: Url,
    tempo_url: Url,
    credentials: Credentials,
    token: Mutex<Option<CachedToken>>,
    /// When the last signals call ended (its answer arrived, or it failed):
    /// the refresh task spaces calls from here, so that a slow token call
    /// or a renewal never brings two signals calls closer together.
    last_signals_call: std::sync::Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl RteClient {
    /// `base` is the scheme and host (`https://digital.iservices.rte-france.com`);
    /// `sandbox` picks the sandbox signals path.
    pub fn new(
        base: &Url,
        sandbox: bool,
        credentials: Credentials,
        timeout: Duration,
    ) -> Result<Self, Error> {
        // reqwest is built without a default crypto provider: use ring.
        // Installing twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!(
                "delestage-forecast-service/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| Error::HttpClient(with_causes(&e)))?;
        let join = |path: &str| {
            base.join(path)
                .map_err(|e| Error::Config(format!("--ecowatt-url {base}: {e}")))
        };
        Ok(Self {
            http,
            token_url: join(TOKEN_PATH)?,
            signals_url: join(if sandbox {
                SANDBOX_SIGNALS_PATH
            } else {
                SIGNALS_PATH
            })?,
            tempo_url: join(if sandbox {
                SANDBOX_TEMPO_PATH
            } else {
                TEMPO_PATH
            })?,
            credentials,
            token: Mutex::new(None),
            last_signals_call: std::sync::Mutex::new(None),
        })
    }

    /// The signals URL (no secret in it), for logs and `source_detail`.
    pub fn signals_url(&self) -> &Url {
        &self.signals_url
    }

    /// When the last signals call ended, if one was made.
    pub fn last_signals_call(&self) -> Option<Instant> {
        *self
            .last_signals_call
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn signals_call_ended(&self) {
        *self
            .last_signals_call
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// The Tempo calendar URL (no secret in it), for logs and the cache.
    pub fn tempo_url(&self) -> &Url {
        &self.tempo_url
    }

    /// One signals call: the raw body of a 200. A 401 renews the token once
    /// and retries once; any other error status is returned with what RTE
    /// said.
    pub async fn fetch_signals(&self) -> Result<Bytes, Error> {
        self.fetch(Endpoint::Signals, self.signals_url.clone())
            .await
    }

    /// One Tempo calendar call for `[start_date, end_date)` (local midnights
    /// with the Paris offset, as RTE wants them), with the same token and
    /// the same handling as [`Self::fetch_signals`].
    pub async fn fetch_tempo(&self, start_date: &str, end_date: &str) -> Result<Bytes, Error> {
        let mut url = self.tempo_url.clone();
        // `query_pairs_mut` encodes the `+` of the offset.
        url.query_pairs_mut()
            .append_pair("start_date", start_date)
            .append_pair("end_date", end_date);
        self.fetch(Endpoint::Tempo, url).await
    }

    async fn fetch(&self, endpoint: Endpoint, url: Url) -> Result<Bytes, Error> {
        let token = self.token(false).await?;
        match self.get(endpoint, &url, &token).await? {
            Answer::Ok(body) => Ok(body),
            Answer::Unauthorized(first) => {
                tracing::info!(
                    detail = %first,
                    "RTE refused the access token (401); renewing it and retrying once"
                );
                let token = self.token(true).await?;
                match self.get(endpoint, &url, &token).await? {
                    Answer::Ok(body) => Ok(body),
                    Answer::Unauthorized(detail) => Err(Error::Upstream {
                        url: without_query(&url),
                        status: 401,
                        detail: format!("{detail} (even with a new token)"),
                        retry_after: None,
                    }),
                }
            }
        }
    }

    async fn get(
        &self,
        endpoint: Endpoint,
        target: &Url,
        token: &SecretString,
    ) -> Result<Answer, Error> {
        let url = without_query(target);
        let ended = || {
            if endpoint == Endpoint::Signals {
                self.signals_call_ended();
            }
        };
        let started = Instant::now();
        let response = self
            .http
            .get(target.clone())
            .bearer_auth(token.expose_secret())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .inspect(|_| ended())
            .map_err(|e| {
                // It may have reached RTE: it counts.
                ended();
                record_call(endpoint.name(), "error", started);
                Error::Unreachable {
                    url: url.clone(),
                    reason: with_causes(&e),
                }
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(response, &url).await?;
        tracing::info!(
            url = %target,
            status = status.as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            bytes = body.len(),
            "RTE {} call",
            endpoint.name()
        );
        record_call(endpoint.name(), &status.as_u16().to_string(), started);
        if status == StatusCode::OK {
            return Ok(Answer::Ok(body));
        }
        let detail = ecowatt::describe_error_body(&body);
        if status == StatusCode::UNAUTHORIZED {
            self.token.lock().await.take();
            return Ok(Answer::Unauthorized(detail));
        }
        Err(Error::Upstream {
            url,
            status: status.as_u16(),
            detail,
            retry_after,
        })
    }

    /// The cached token, or a new one when it is about to expire, was
    /// refused, or `renew` is set.
    async fn token(&self, renew: bool) -> Result<SecretString, Error> {
        let mut cached = self.token.lock().await;
        if !renew
            && let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let fresh = self.request_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn request_token(&self) -> Result<CachedToken, Error> {
        let url = self.token_url.to_string();
        let token_error = |detail: String| Error::Token {
            url: url.clone(),
            detail,
        };
        let asked_at = Instant::now();
        let response = self
            .http
            .post(self.token_url.clone())
            .basic_auth(
                self.credentials.client_id.expose_secret(),
                Some(self.credentials.client_secret.expose_secret()),
            )
            .header(header::ACCEPT, "application/json")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| {
                record_call("token", "error", asked_at);
                token_error(with_causes(&e))
            })?;
        let status = response.status();
        let body = read_limited(response, &url).await?;
        tracing::info!(
            %url,
            status = status.as_u16(),
            duration_ms = asked_at.elapsed().as_millis() as u64,
            "RTE token call"
        );
        record_call("token", &status.as_u16().to_string(), asked_at);
        if !status.is_success() {
            let hint = if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST {
                " (check ECOWATT_CLIENT_ID / ECOWATT_CLIENT_SECRET, TEMPO_CLIENT_ID / TEMPO_CLIENT_SECRET for Tempo, or the credential files; and that the application is subscribed to the API: Ecowatt v5, or Tempo Like Supply Contract v1)"
            } else {
                ""
            };
            return Err(token_error(format!(
                "{status}: {}{hint}",
                ecowatt::describe_error_body(&body)
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| token_error(format!("the answer is not a token: {e}")))?;
        let value = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_error("the answer has no access_token".to_owned()))?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = TOKEN_RENEW_MARGIN.min(lifetime / 2);
        tracing::info!(
            expires_in = %humantime::format_duration(lifetime),
            "got an RTE access token"
        );
        Ok(CachedToken {
            value: SecretString::from(value),
            renew_at: asked_at + (lifetime - margin),
        })
    }
}

/// `ecowatt_requests_total{endpoint, status}` and its latency.
fn record_call(endpoint: &'static str, status: &str, started: Instant) {
    metrics::counter!("ecowatt_requests_total", "endpoint" => endpoint, "status" => status.to_owned())
        .increment(1);
    metrics::histogram!("ecowatt_request_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
}

enum Answer {
    Ok(Bytes),
    Unauthorized(String),
}

/// Which RTE API a call is for (the metrics' `endpoint` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Signals,
    Tempo,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Signals => "signals",
            Endpoint::Tempo => "tempo",
        }
    }
}

/// The URL for messages: without the query (dates, nothing secret, but
/// long and changing).
fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// Reads a body, refusing to hold more than [`MAX_BODY_BYTES`].
async fn read_limited(mut response: reqwest::Response, url: &str) -> Result<Bytes, Error> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(Error::TooLarge {
            url: url.to_owned(),
            limit: MAX_BODY_BYTES,
        });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| Error::Unreachable {
        url: url.to_owned(),
        reason: format!("the answer was cut short: {}", with_causes(&e)),
    })? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Error::TooLarge {
                url: url.to_owned(),
                limit: MAX_BODY_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

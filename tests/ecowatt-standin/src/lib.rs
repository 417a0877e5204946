//! A stand-in for RTE's Ecowatt API, on `127.0.0.1:0`, for tests.
//!
//! It speaks the API as RTE's public clients use it (the shapes are in
//! `forecast-service/payloads/`):
//! - `POST /token/oauth/` with `Authorization: Basic base64(id:secret)`
//!   answers `{"access_token", "token_type": "Bearer", "expires_in"}`, or 401
//!   `invalid_client`;
//! - `GET /open_api/ecowatt/v5/signals` (and `/sandbox/signals`) with a
//!   valid bearer token answers the configured body; an unknown or expired
//!   token gets 401; past the rate limit (one call per window, production
//!   path only) it answers 429 with `Retry-After` in seconds.
//!
//! - `GET /open_api/tempo_like_supply_contract/v1/tempo_like_calendars`
//!   (and `/sandbox/…`) answers the configured Tempo body the same way
//!   (see [`tempo`]).
//!
//! Tests script faults by queueing [`Reply`]s, which take precedence over
//! the normal behaviour, one call each. Every call is counted, and tests can
//! wait (without sleeping) until a number of calls has been made.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use tokio::sync::watch;

pub mod tempo;

pub const SIGNALS_PATH: &str = "/open_api/ecowatt/v5/signals";
pub const SANDBOX_PATH: &str = "/open_api/ecowatt/v5/sandbox/signals";
pub const TOKEN_PATH: &str = "/token/oauth/";

/// A scripted answer to one call.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Any status, content type and body.
    Raw {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// RTE's JSON error shape.
    Error {
        status: u16,
        error: &'static str,
        description: &'static str,
    },
    /// 429 with `Retry-After: secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// The gateway's HTML 503 page.
    Html503,
    /// A 200 that sends the start of a body, then drops the connection.
    ResetMidBody,
    /// Wait, then answer the next reply (or the normal answer if `None`).
    Slow {
        delay: Duration,
        then: Option<Box<Reply>>,
    },
}

/// How the stand-in is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of issued tokens.
    pub token_lifetime: Duration,
    /// At most one successful production signals call per this window
    /// (RTE: 15 minutes). `None`: no limit.
    pub rate_limit: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            client_id: "test-client-id".to_owned(),
            client_secret: "test-client-secret".to_owned(),
            token_lifetime: Duration::from_secs(7200),
            rate_limit: Some(Duration::from_secs(15 * 60)),
        }
    }
}

impl Config {
    /// The defaults without RTE's rate limit: for tests and benchmarks that
    /// refresh every second or faster.
    pub fn unlimited() -> Self {
        Self {
            rate_limit: None,
            ..Self::default()
        }
    }
}

/// One call the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    /// The query string, if any (Tempo's dates).
    pub query: Option<String>,
    pub status: u16,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// When the answer was ready.
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    signals_body: Vec<u8>,
    sandbox_body: Vec<u8>,
    tempo_body: Vec<u8>,
    tempo_replies: VecDeque<Reply>,
    tokens: HashSet<String>,
    issued: u64,
    last_ok_signals: Option<Instant>,
    token_replies: VecDeque<Reply>,
    signals_replies: VecDeque<Reply>,
    calls: Vec<Call>,
}

struct Shared {
    config: Config,
    inner: Mutex<Inner>,
    /// Number of signals calls (both paths), for tests to wait on.
    signals_calls: watch::Sender<usize>,
    /// Number of Tempo calls (both paths).
    tempo_calls: watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock poisons it; the data
        // is still fine for the other assertions.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running stand-in. Dropping it stops the server.
pub struct EcowattStandin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl EcowattStandin {
    /// Starts serving on `127.0.0.1:0`, with `body` as the signals answer
    /// for both the production and the sandbox paths.
    pub async fn start(config: Config, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(Inner {
                signals_body: body.clone(),
                sandbox_body: body,
                ..Inner::default()
            }),
            signals_calls: watch::channel(0).0,
            tempo_calls: watch::channel(0).0,
        });
        let app = Router::new()
            .route(TOKEN_PATH, post(token))
            .route(SIGNALS_PATH, get(signals))
            .route(SANDBOX_PATH, get(sandbox_signals))
            .route(tempo::TEMPO_PATH, get(tempo::calendars))
            .route(tempo::SANDBOX_TEMPO_PATH, get(tempo::calendars))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// The base URL, as given to `--ecowatt-url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the production path answers from now on.
    pub fn set_signals(&self, body: impl Into<Vec<u8>>) {
        self.shared.lock().signals_body = body.into();
    }

    /// What the sandbox path answers from now on.
    pub fn set_sandbox_signals(&self, body: impl Into<Vec<u8>>) {
        self.shared.lock().sandbox_body = body.into();
    }

    /// The next signals call (either path) answers `reply` instead.
    pub fn push_signals_reply(&self, reply: Reply) {
        self.shared.lock().signals_replies.push_back(reply);
    }

    /// The next token call answers `reply` instead.
    pub fn push_token_reply(&self, reply: Reply) {
        self.shared.lock().token_replies.push_back(reply);
    }

    /// Scripted signals replies not used yet.
    pub fn pending_signals_replies(&self) -> usize {
        self.shared.lock().signals_replies.len()
    }

    /// Every token issued so far stops being valid (as if it expired).
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Forgets the last successful signals call: the rate limit starts over.
    pub fn reset_rate_limit(&self) {
        self.shared.lock().last_ok_signals = None;
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// Signals calls (both paths) so far.
    pub fn signals_calls(&self) -> usize {
        *self.shared.signals_calls.borrow()
    }

    /// Signals calls that got a 200.
    pub fn successful_signals_calls(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| (c.path == SIGNALS_PATH || c.path == SANDBOX_PATH) && c.status == 200)
            .count()
    }

    /// Token calls so far.
    pub fn token_calls(&self) -> usize {
        self.calls().iter().filter(|c| c.path == TOKEN_PATH).count()
    }

    /// Waits until at least `n` signals calls were answered, or panics
    /// after `bound`.
    pub async fn wait_for_signals_calls(&self, n: usize, bound: Duration) {
        wait_for_count(&self.shared.signals_calls, n, bound, "signals").await;
    }
}

/// Waits until `counter` reaches `n`, or panics after `bound` saying how
/// many `what` calls came.
async fn wait_for_count(counter: &watch::Sender<usize>, n: usize, bound: Duration, what: &str) {
    let mut rx = counter.subscribe();
    let waited = tokio::time::timeout(bound, rx.wait_for(|c| *c >= n)).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "expected {n} {what} calls within {bound:?}, saw {}",
        *counter.borrow()
    );
}

impl Drop for EcowattStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = format!(r#"{{"error":"{error}","error_description":"{description}"}}"#);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An Ecowatt body with one day per `(jour, hvalues)`: `jour` as RTE writes
/// it (`2026-12-08T00:00:00+01:00`), `hvalues` indexed by `pas` (`None`
/// leaves the hour out). `dvalue` is the day's highest level (at least 1).
pub fn signals_body(generated: &str, days: &[(&str, Vec<Option<u8>>)]) -> Vec<u8> {
    let days: Vec<String> = days
        .iter()
        .map(|(jour, hours)| {
            let values: Vec<String> = hours
                .iter()
                .enumerate()
                .filter_map(|(pas, h)| h.map(|h| format!(r#"{{"pas":{pas},"hvalue":{h}}}"#)))
                .collect();
            let dvalue = hours.iter().flatten().copied().max().unwrap_or(1).max(1);
            format!(
                r#"{{"GenerationFichier":"{generated}","jour":"{jour}","dvalue":{dvalue},"message":"Pas d\u2019alerte.","values":[{}]}}"#,
                values.join(",")
            )
        })
        .collect();
    format!(r#"{{"signals":[{}]}}"#, days.join(",")).into_bytes()
}

/// A body covering yesterday, today and tomorrow (in Europe/Paris), every
/// hour at `hvalue`: "the grid is at this level now", for end-to-end tests.
pub fn uniform_body_around_now(hvalue: u8) -> Vec<u8> {
    uniform_body_generated_at(hvalue, jiff::Timestamp::now())
}

/// As [`uniform_body_around_now`], with RTE's generation time
/// (`GenerationFichier`) at `generated`: a forecast of that age.
pub fn uniform_body_generated_at(hvalue: u8, generated: jiff::Timestamp) -> Vec<u8> {
    body_by_hour(generated, |_| hvalue)
}

/// A body covering yesterday, today and tomorrow (in Europe/Paris), generated
/// now, each hour's `hvalue` given by `level` of the hour's start (`pas` h
/// taken as h hours after midnight).
pub fn body_around_now_by_hour(level: impl Fn(jiff::Timestamp) -> u8) -> Vec<u8> {
    body_by_hour(jiff::Timestamp::now(), level)
}

fn body_by_hour(generated: jiff::Timestamp, level: impl Fn(jiff::Timestamp) -> u8) -> Vec<u8> {
    static PARIS: jiff::tz::TimeZone = jiff::tz::get!("Europe/Paris");
    let paris = PARIS.clone();
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(paris.clone())
        .date();
    let days: Vec<(String, Vec<Option<u8>>)> = [-1i64, 0, 1]
        .iter()
        .filter_map(|offset| {
            let date = today.checked_add(jiff::Span::new().days(*offset)).ok()?;
            let midnight = date.at(0, 0, 0, 0).to_zoned_datetime(paris.clone()).ok()?;
            let jour = midnight.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
            let start = midnight.timestamp();
            let hours = (0..24)
                .map(|h| Some(level(start + jiff::SignedDuration::from_hours(h))))
                .collect();
            Some((jour, hours))
        })
        .collect();
    let days: Vec<(&str, Vec<Option<u8>>)> = days
        .iter()
        .map(|(jour, hours)| (jour.as_str(), hours.clone()))
        .collect();
    let generated = generated
        .to_zoned_datetime(paris)
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    signals_body(&generated, &days)
}

/// Turns a scripted reply into a response (after its delay, if any).
/// `None` means "answer normally".
async fn scripted(reply: Reply) -> Option<Response> {
    let mut reply = reply;
    loop {
        return Some(match reply {
            Reply::Raw {
                status,
                content_type,
                body,
            } => (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response(),
            Reply::Error {
                status,
                error,
                description,
            } => json_error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                error,
                description,
            ),
            Reply::TooManyRequests { retry_after_secs } => too_many(retry_after_secs),
            Reply::Html503 => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>",
            )
                .into_response(),
            Reply::ResetMidBody => {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
                    Ok(br#"{"signals":[{"GenerationFichier":"2026-12-06T23:00"#.to_vec()),
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "scripted reset",
                    )),
                ];
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    Body::from_stream(tokio_stream::iter(chunks)),
                )
                    .into_response()
            }
            Reply::Slow { delay, then } => {
                tokio::time::sleep(delay).await;
                match then {
                    Some(next) => {
                        reply = *next;
                        continue;
                    }
                    None => return None,
                }
            }
        });
    }
}

fn too_many(retry_after_secs: u64) -> Response {
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_REQUESTS",
        "Rate limit exceeded",
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn record(shared: &Shared, path: &str, response: &Response, auth: Option<String>) {
    record_with_query(shared, path, None, response, auth);
}

fn record_with_query(
    shared: &Shared,
    path: &str,
    query: Option<String>,
    response: &Response,
    auth: Option<String>,
) {
    shared.lock().calls.push(Call {
        path: path.to_owned(),
        query,
        status: response.status().as_u16(),
        authorization: auth,
        at: Instant::now(),
    });
    if path == SIGNALS_PATH || path == SANDBOX_PATH {
        shared.signals_calls.send_modify(|n| *n += 1);
    } else if path != TOKEN_PATH {
        shared.tempo_calls.send_modify(|n| *n += 1);
    }
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let auth = authorization(&headers);
    let reply = shared.lock().token_replies.pop_front();
    let scripted = match reply {
        Some(r) => scripted(r).await,
        None => None,
    };
    let response = scripted.unwrap_or_else(|| {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                shared.config.client_id, shared.config.client_secret
            ))
        );
        if auth.as_deref() != Some(expected.as_str()) {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Bad client credentials",
            );
        }
        let mut inner = shared.lock();
        inner.issued += 1;
        let token = format!("standin-token-{}", inner.issued);
        inner.tokens.insert(token.clone());
        let body = format!(
            r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{}}}"#,
            shared.config.token_lifetime.as_secs()
        );
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    });
    record(&shared, TOKEN_PATH, &response, auth);
    response
}

async fn signals(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    answer_signals(&shared, headers, SIGNALS_PATH).await
}

async fn sandbox_signals(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    answer_signals(&shared, headers, SANDBOX_PATH).await
}

async fn answer_signals(shared: &Shared, headers: HeaderMap, path: &str) -> Response {
    let auth = authorization(&headers);
    let reply = shared.lock().signals_replies.pop_front();
    let scripted = match reply {
        Some(r) => scripted(r).await,
        None => None,
    };
    let response = scripted.unwrap_or_else(|| {
        let mut inner = shared.lock();
        let token = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
        if !token.is_some_and(|t| inner.tokens.contains(t)) {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The access token is invalid or has expired",
            );
        }
        if path == SIGNALS_PATH
            && let (Some(window), Some(last)) = (shared.config.rate_limit, inner.last_ok_signals)
        {
            let elapsed = last.elapsed();
            if elapsed < window {
                return too_many((window - elapsed).as_secs().max(1));
            }
        }
        let body = if path == SIGNALS_PATH {
            inner.last_ok_signals = Some(Instant::now());
            inner.signals_body.clone()
        } else {
            inner.sandbox_body.clone()
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(body),
        )
            .into_response()
    });
    record(shared, path, &response, auth);
    response
}

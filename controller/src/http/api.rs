//! The JSON routes under `/api`. Each answers what its gRPC twin answers,
//! in the CLI's `--json` shape ([`delestage_proto::json`]); errors are
//! `{"error": "..."}` with the HTTP status that fits.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use delestage_proto::forecast::v1 as fpb;
use delestage_proto::json;
use http::{StatusCode, header};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Dashboard;
use crate::wire::{
    HISTORY_DEFAULT, HISTORY_MAX, override_to_pb, plan_to_pb, record_to_pb, status_to_pb,
    tempo_to_pb,
};

/// How long `/api/forecast` waits for the forecast-service.
const FORECAST_TIMEOUT: Duration = Duration::from_secs(5);

/// An error answer: `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"delestage\"")],
                body,
            )
                .into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(err: crate::Error) -> Self {
        let status = match err.code() {
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, err.to_string())
    }
}

/// `GET /api/status`: `delestage status --json`.
pub(crate) async fn status(State(d): State<Dashboard>) -> Json<Value> {
    Json(json::status_json(&status_to_pb(&d.controller.status())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanQuery {
    load: Option<String>,
}

/// `GET /api/plan[?load=NAME]`: `delestage plan --json`.
pub(crate) async fn plan(
    State(d): State<Dashboard>,
    Query(q): Query<PlanQuery>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(plan_value(&d, q.load.as_deref())?))
}

/// The plan, with the Tempo days the controller follows.
pub(crate) fn plan_value(d: &Dashboard, load: Option<&str>) -> Result<Value, ApiError> {
    let plan = d.controller.plan();
    if let Some(name) = load
        && plan.load(name).is_none()
    {
        return Err(crate::Error::UnknownLoad(name.to_owned()).into());
    }
    let pb = plan_to_pb(&plan, d.controller.loads(), load);
    Ok(json::plan_json(&pb, &tempo_to_pb(&d.controller.tempo())))
}

/// `GET /api/forecast`: `delestage forecast --json`, asked of the
/// forecast-service the controller follows.
pub(crate) async fn forecast(State(d): State<Dashboard>) -> Result<Json<Value>, ApiError> {
    let mut client = d.forecast.clone();
    let unavailable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("forecast-service: {why}"),
        )
    };
    let f = tokio::time::timeout(
        FORECAST_TIMEOUT,
        client.get_forecast(fpb::GetForecastRequest {}),
    )
    .await
    .map_err(|_| unavailable(format!("no answer within {FORECAST_TIMEOUT:?}")))?
    .map_err(|s| unavailable(s.message().to_owned()))?
    .into_inner();
    let tempo = tokio::time::timeout(FORECAST_TIMEOUT, client.get_tempo(fpb::GetTempoRequest {}))
        .await
        .map_err(|_| format!("no answer within {FORECAST_TIMEOUT:?}"))
        .and_then(|r| {
            r.map(|t| t.into_inner())
                .map_err(|s| s.message().to_owned())
        });
    Ok(Json(json::forecast_json(&f, &tempo)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    load: Option<String>,
    /// RFC 3339.
    since: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/history[?load=NAME&since=RFC3339&limit=N]`: `delestage
/// history --json`, newest first.
pub(crate) async fn history(
    State(d): State<Dashboard>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let since = match &q.since {
        Some(t) => Some(t.parse::<Timestamp>().map_err(|e| {
            ApiError::bad_request(format!(
                "since: {t:?} is not an RFC 3339 time (2026-12-08T20:00:00+01:00): {e}"
            ))
        })?),
        None => None,
    };
    let limit = match q.limit {
        None | Some(0) => HISTORY_DEFAULT,
        Some(n) => n.min(HISTORY_MAX),
    };
    let records = d
        .controller
        .history(q.load.as_deref().filter(|l| !l.is_empty()), since, limit)
        .await;
    Ok(Json(json!({
        "records": records.iter().map(|r| json::record_json(&record_to_pb(r))).collect::<Vec<_>>(),
    })))
}

/// `POST /api/overrides/{load}`'s body: `{"powered": true, "for": "2h"}`
/// or `{"powered": false, "until": "2026-12-08T20:00:00+01:00"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    powered: bool,
    #[serde(rename = "for")]
    for_: Option<String>,
    until: Option<String>,
    /// Act at once, without waiting for the load's minimum on/off time.
    #[serde(default)]
    force: bool,
}

/// `POST /api/overrides/{load}`: `delestage override LOAD on|off --for D
/// --json`.
pub(crate) async fn set_override(
    State(d): State<Dashboard>,
    Path(load): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: OverrideBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body: {e}; expected {{\"powered\": true|false, \"for\": \"2h\"}} or {{\"powered\": ..., \"until\": \"RFC 3339\"}}"
        ))
    })?;
    let now = Timestamp::now();
    let until = match (&body.for_, &body.until) {
        (Some(d), None) => {
            let d = humantime::parse_duration(d)
                .map_err(|e| ApiError::bad_request(format!("for: {d:?}: {e}")))?;
            jiff::SignedDuration::try_from(d)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .ok_or_else(|| ApiError::bad_request("for: too long"))?
        }
        // jiff's own words: a real RFC 3339 time past its range (year
        // 9999) is told so, not called malformed.
        (None, Some(t)) => t.parse::<Timestamp>().map_err(|e| {
            ApiError::bad_request(format!(
                "until: {t:?}: {e} (give an RFC 3339 time at most a year ahead, e.g. 2026-12-08T20:00:00+01:00)"
            ))
        })?,
        _ => {
            return Err(ApiError::bad_request(
                "give one of \"for\" (a duration, \"2h\") and \"until\" (an RFC 3339 time)",
            ));
        }
    };
    let o = d
        .controller
        .set_override(&load, body.powered, until, body.force, "http")
        .await?;
    Ok(Json(
        json!({ "override": json::override_json(&override_to_pb(&load, &o)) }),
    ))
}

/// `DELETE /api/overrides/{load}`: `delestage override clear LOAD --json`.
pub(crate) async fn clear_override(
    State(d): State<Dashboard>,
    Path(load): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cleared = d.controller.clear_override(&load, "http").await?;
    Ok(Json(json!({ "load": load, "cleared": cleared })))
}

/// Every error under `/api` is `{"error": …}`, the framework's own too (a
/// body over the limit, a query string that does not parse, a method a
/// route does not take), which come as plain text: a client never has to
/// parse two kinds of error. Their words are kept, and their headers
/// (`Allow`, `WWW-Authenticate`).
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The framework's errors are one line; a bound all the same.
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut json = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

/// Any other `/api` path.
pub(crate) async fn not_found(uri: http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no API route {}: see docs/dashboard.md (status, plan, forecast, history, overrides/LOAD, events)",
            uri.path()
        ),
    )
}

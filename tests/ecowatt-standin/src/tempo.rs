//! The Tempo side of the stand-in: RTE's "Tempo Like Supply Contract" v1
//! calendar, on the same server and with the same tokens as Ecowatt.
//!
//! `GET …/tempo_like_calendars?start_date=…&end_date=…` with a valid bearer
//! token answers the configured body (or the next scripted [`Reply`]); the
//! query is recorded with the call, so tests can check the dates sent.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use jiff::civil::Date;

use crate::{
    EcowattStandin, Reply, Shared, authorization, json_error, record_with_query, scripted,
};

pub const TEMPO_PATH: &str = "/open_api/tempo_like_supply_contract/v1/tempo_like_calendars";
pub const SANDBOX_TEMPO_PATH: &str =
    "/open_api/tempo_like_supply_contract/v1/sandbox/tempo_like_calendars";

static PARIS: jiff::tz::TimeZone = jiff::tz::get!("Europe/Paris");

impl EcowattStandin {
    /// What the Tempo paths answer from now on.
    pub fn set_tempo(&self, body: impl Into<Vec<u8>>) {
        self.shared.lock().tempo_body = body.into();
    }

    /// The next Tempo call answers `reply` instead.
    pub fn push_tempo_reply(&self, reply: Reply) {
        self.shared.lock().tempo_replies.push_back(reply);
    }

    /// Tempo calls (both paths) so far.
    pub fn tempo_calls(&self) -> usize {
        *self.shared.tempo_calls.borrow()
    }

    /// Waits until at least `n` Tempo calls were answered, or panics after
    /// `bound`.
    pub async fn wait_for_tempo_calls(&self, n: usize, bound: Duration) {
        crate::wait_for_count(&self.shared.tempo_calls, n, bound, "Tempo").await;
    }
}

pub(crate) async fn calendars(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let auth = authorization(&headers);
    let reply = shared.lock().tempo_replies.pop_front();
    let scripted = match reply {
        Some(r) => scripted(r).await,
        None => None,
    };
    let response = scripted.unwrap_or_else(|| {
        let inner = shared.lock();
        let token = auth.as_deref().and_then(|a| a.strip_prefix("Bearer "));
        if !token.is_some_and(|t| inner.tokens.contains(t)) {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The access token is invalid or has expired",
            );
        }
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            inner.tempo_body.clone(),
        )
            .into_response()
    });
    record_with_query(&shared, uri.path(), query, &response, auth);
    response
}

fn midnight(date: Date) -> String {
    date.at(0, 0, 0, 0)
        .to_zoned_datetime(PARIS.clone())
        .map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
        .unwrap_or_default()
}

/// RTE's Tempo body for these days (`value` as RTE spells it: `BLUE`,
/// `WHITE`, `RED`), newest first as RTE sends them.
pub fn tempo_body(days: &[(Date, &str)]) -> Vec<u8> {
    let mut days = days.to_vec();
    days.sort_by_key(|(d, _)| std::cmp::Reverse(*d));
    let values: Vec<String> = days
        .iter()
        .filter_map(|(date, value)| {
            let next = date.tomorrow().ok()?;
            Some(format!(
                r#"{{"start_date":"{}","end_date":"{}","value":"{value}","updated_date":"{}"}}"#,
                midnight(*date),
                midnight(next),
                midnight(*date)
            ))
        })
        .collect();
    let first = days.last().map_or_else(String::new, |(d, _)| midnight(*d));
    let end = days
        .first()
        .and_then(|(d, _)| d.tomorrow().ok())
        .map_or_else(String::new, midnight);
    format!(
        r#"{{"tempo_like_calendars":{{"start_date":"{first}","end_date":"{end}","values":[{}]}}}}"#,
        values.join(",")
    )
    .into_bytes()
}

/// Today's date in Paris.
pub fn paris_today() -> Date {
    Timestamp::now().to_zoned_datetime(PARIS.clone()).date()
}

/// Yesterday, today and (if given) tomorrow, in Paris, with these colours.
pub fn tempo_body_around_now(yesterday: &str, today: &str, tomorrow: Option<&str>) -> Vec<u8> {
    let d = paris_today();
    let mut days = Vec::new();
    if let Ok(y) = d.yesterday() {
        days.push((y, yesterday));
    }
    days.push((d, today));
    if let (Some(color), Ok(t)) = (tomorrow, d.tomorrow()) {
        days.push((t, color));
    }
    tempo_body(&days)
}

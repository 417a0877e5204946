//! Who may call `/api`: with `--tokens`, a `read` token to look and a
//! `control` token to act, sent as `Authorization: Bearer TOKEN`.
//!
//! The page keeps its token in the browser's session storage and sends it
//! in that header: never in a cookie, so another web site cannot make the
//! browser act with it (no CSRF). Without tokens (on loopback), what keeps
//! other sites out is below: browsers say where a request comes from
//! (`Sec-Fetch-Site`, `Origin`), a JSON body cannot be sent cross-site
//! without a CORS pre-flight that we never grant, and the `Host` must be an
//! address, not a name, so a site cannot re-point its own name at
//! 127.0.0.1 (DNS rebinding).

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use delestage_runtime::security::{Role, bearer_token};
use http::{HeaderMap, Method, StatusCode, header};

use super::Dashboard;
use super::api::ApiError;

/// The `/api` middleware: cross-site checks, then the token's role.
pub(crate) async fn check(State(d): State<Dashboard>, request: Request, next: Next) -> Response {
    let needed = if request.method() == Method::GET || request.method() == Method::HEAD {
        Role::Read
    } else {
        Role::Control
    };
    let refusal = same_site(request.headers(), d.tokens.is_none())
        .and_then(|()| json_body(request.method(), request.headers()))
        .and_then(|()| role(&d, request.headers(), needed));
    match refusal {
        Ok(()) => next.run(request).await,
        Err(e) => {
            tracing::warn!(method = %request.method(), path = %request.uri().path(), status = e.status.as_u16(), reason = %e.message, "http request refused");
            e.into_response()
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Refuses what another web site makes a browser send.
fn same_site(headers: &HeaderMap, open: bool) -> Result<(), ApiError> {
    let cross = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site request refused: use the dashboard's own page, or a client that is not a browser",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(cross());
    }
    let host = header(headers, &header::HOST).unwrap_or_default();
    if let Some(origin) = header(headers, &header::ORIGIN) {
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or(origin);
        if !authority.eq_ignore_ascii_case(host) {
            return Err(cross());
        }
    }
    if open && !is_address(host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?}: without --tokens the dashboard answers only to an address \
                 (127.0.0.1:PORT, [::1]:PORT) or localhost, so that no web site can re-point its \
                 own name at it; use the address, or turn tokens on"
            ),
        ));
    }
    Ok(())
}

/// `localhost`, or an IP address, with or without a port.
fn is_address(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:8080`, `127.0.0.1:8080`, `localhost:8080`
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// A POST carries JSON: a plain HTML form (which any site may submit)
/// cannot send that type.
fn json_body(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if method != Method::POST {
        return Ok(());
    }
    let kind = header(headers, &header::CONTENT_TYPE).unwrap_or_default();
    if kind
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON, with Content-Type: application/json",
        ))
    }
}

/// With tokens on: the bearer token, and its role.
fn role(d: &Dashboard, headers: &HeaderMap, needed: Role) -> Result<(), ApiError> {
    let Some(tokens) = &d.tokens else {
        return Ok(());
    };
    let presented = header(headers, &header::AUTHORIZATION).and_then(bearer_token);
    let Some(token) = presented else {
        return Err(ApiError::unauthenticated(
            "a token is required: send `Authorization: Bearer TOKEN` (role read to look, control to act)",
        ));
    };
    match tokens.check(token) {
        None => Err(ApiError::unauthenticated(tokens.refusal(token))),
        Some((role, name)) if role < needed => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("token {name:?} has the read role; this needs a control token"),
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn addresses_and_localhost_pass_names_do_not() {
        for host in [
            "127.0.0.1:50080",
            "[::1]:8080",
            "localhost:1",
            "LOCALHOST",
            "10.0.0.2",
        ] {
            assert!(is_address(host), "{host}");
        }
        for host in ["evil.example:50080", "delestage.local", ""] {
            assert!(!is_address(host), "{host}");
        }
    }

    #[test]
    fn other_sites_are_refused() {
        let same = headers(&[
            ("host", "127.0.0.1:50080"),
            ("origin", "http://127.0.0.1:50080"),
        ]);
        assert!(same_site(&same, true).is_ok());
        let other = headers(&[
            ("host", "127.0.0.1:50080"),
            ("origin", "https://evil.example"),
        ]);
        assert!(same_site(&other, true).is_err());
        let fetch = headers(&[
            ("host", "127.0.0.1:50080"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(same_site(&fetch, true).is_err());
        let rebound = headers(&[("host", "evil.example:50080")]);
        assert!(same_site(&rebound, true).is_err());
        // With tokens, a name is fine: a rebinding site has no token.
        assert!(same_site(&rebound, false).is_ok());
    }

    #[test]
    fn a_post_must_be_json() {
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert!(json_body(&Method::POST, &form).is_err());
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert!(json_body(&Method::POST, &json).is_ok());
        assert!(json_body(&Method::DELETE, &HeaderMap::new()).is_ok());
    }
}

//! A replica's settings (`--source upstream`): the forecast-service it
//! follows and how to reach it.

use delestage_runtime::client::ClientSecurity;
use delestage_runtime::options::{Origin, Origins};

use super::{Options, TempoChoice, UpstreamSettings};
use crate::Error;

/// The keys that only a replica takes.
pub(super) const UPSTREAM_KEYS: [&str; 5] = [
    "upstream",
    "upstream_token_file",
    "upstream_tls_ca",
    "upstream_tls_cert",
    "upstream_tls_key",
];

/// A replica's upstream: a gRPC URL, TLS only with https, a certificate
/// only with its key. RTE's settings do not apply (warned); a file or
/// Tempo source of its own is an error, since the replica serves its
/// upstream's.
pub(super) fn upstream_settings(
    o: &Options,
    origins: &Origins,
    warnings: &mut Vec<String>,
) -> Result<UpstreamSettings, Error> {
    let bad = |key: &str, message: String| Error::Config(origins.error(key, message));
    let given = |key: &str| !matches!(origins.of(key), Origin::Default(_));
    let Some(url) = o.upstream.clone() else {
        return Err(bad(
            "source",
            "upstream: a replica needs --upstream URL (the forecast-service to follow, http://HOST:PORT)"
                .to_owned(),
        ));
    };
    let uri: tonic::transport::Uri = url
        .parse()
        .map_err(|e| bad("upstream", format!("{url:?} is not a URL: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") if uri.host().is_some() => true,
        Some("http") if uri.host().is_some() => false,
        _ => {
            return Err(bad(
                "upstream",
                format!("{url:?}: write http://HOST:PORT (or https://)"),
            ));
        }
    };
    if https && o.upstream_tls_ca.is_none() {
        return Err(bad(
            "upstream",
            format!(
                "{url:?}: https needs --upstream-tls-ca, the CA that signed the upstream's certificate"
            ),
        ));
    }
    if !https {
        for key in ["upstream_tls_ca", "upstream_tls_cert", "upstream_tls_key"] {
            if given(key) {
                return Err(bad(
                    key,
                    format!("TLS settings for a plain http:// upstream ({url}); use https://"),
                ));
            }
        }
    }
    if o.upstream_tls_cert.is_some() != o.upstream_tls_key.is_some() {
        return Err(bad(
            if o.upstream_tls_cert.is_some() {
                "upstream_tls_cert"
            } else {
                "upstream_tls_key"
            },
            "--upstream-tls-cert and --upstream-tls-key go together: give both".to_owned(),
        ));
    }
    if o.file.is_some() {
        return Err(bad(
            "file",
            "a replica serves its upstream's forecast, not a file; drop --file or --source upstream"
                .to_owned(),
        ));
    }
    if o.tempo != TempoChoice::Off {
        return Err(bad(
            "tempo",
            "a replica serves its upstream's Tempo calendar; drop --tempo (set it on the root)"
                .to_owned(),
        ));
    }
    for key in [
        "ecowatt_url",
        "sandbox",
        "rebase_to_today",
        "refresh_interval",
        "call_margin",
        "client_id_file",
        "client_secret_file",
        "request_timeout",
    ] {
        if given(key) {
            warnings.push(origins.error(
                key,
                "applies to the RTE and file sources only; ignored by a replica (--source upstream)",
            ));
        }
    }
    Ok(UpstreamSettings {
        url,
        security: ClientSecurity {
            ca: o.upstream_tls_ca.clone(),
            cert: o.upstream_tls_cert.clone(),
            key: o.upstream_tls_key.clone(),
            token_file: o.upstream_token_file.clone(),
        },
    })
}

//! The client side of [`crate::security`]: TLS to a service (with a CA of
//! our own, and a client certificate when the service asks for one), and
//! the bearer token on every call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::Error;

/// How to reach one service.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    /// The CA that signed the service's certificate (PEM), for https URLs.
    pub ca: Option<PathBuf>,
    /// Our certificate and key (PEM), when the service requires one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
}

/// The bearer token sent on every call (none: nothing is added). Its value
/// is marked sensitive, so it never shows in debug output.
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(..)"
        } else {
            "BearerToken(none)"
        })
    }
}

impl BearerToken {
    pub fn none() -> Self {
        Self(None)
    }

    /// From the token itself (as read from a file or the environment).
    pub fn new(token: &str) -> Result<Self, Error> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| Error::Security("the token is not printable ASCII".to_owned()))?;
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }

    /// From a file (`flag` names it in errors; the content never appears).
    pub fn from_file(path: &Path, flag: &str) -> Result<Self, Error> {
        crate::files::check_private(path, flag)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Security(format!("{flag} {}: {e}", path.display())))?;
        if text.trim().is_empty() {
            return Err(Error::Security(format!(
                "{flag} {}: the file is empty",
                path.display()
            )));
        }
        Self::new(&text)
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel that adds the token to every call.
pub type AuthedChannel = InterceptedService<Channel, BearerToken>;

/// How often a client pings the service on an open connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may go unanswered before the connection is given up.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a peer has said nothing when the pings give up on it.
pub const SILENCE: Duration =
    Duration::from_secs(KEEPALIVE_INTERVAL.as_secs() + KEEPALIVE_TIMEOUT.as_secs());

/// Whether `status` was made here, by the transport, rather than sent by
/// the peer (a peer's status comes with no cause attached).
pub fn raised_locally(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// Whether `status` says the peer stopped answering: the HTTP/2 pings
/// timed out (a frozen process, a cut cable), which ends a new call with
/// "keep-alive timed out" and an open stream with a broken pipe. Not a
/// peer that answered with an error, nor one that closed the connection.
pub fn peer_went_silent(status: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(e) = cause {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("keep-alive timed out")
            || text.contains("stream closed because of a broken pipe")
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A lazily connected channel to `url` (http:// or https://) with `security`.
pub fn channel(
    url: &str,
    security: &ClientSecurity,
    connect_timeout: Duration,
) -> Result<(Channel, BearerToken), Error> {
    let (endpoint, token) = endpoint(url, security, connect_timeout)?;
    Ok((endpoint.connect_lazy(), token))
}

/// The endpoint for `url` with `security` applied, and the token to send;
/// for callers that want to connect eagerly.
pub fn endpoint(
    url: &str,
    security: &ClientSecurity,
    connect_timeout: Duration,
) -> Result<(Endpoint, BearerToken), Error> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::Security(format!("{url}: not a URL: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // A peer that is frozen (SIGSTOP, a wedged box) keeps its TCP
        // connection open and answers nothing: HTTP/2 pings find it within
        // a few seconds, close the connection, and every call and stream on
        // it fails, instead of waiting forever.
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let https = url.starts_with("https://");
    if https {
        let ca = security.ca.as_ref().ok_or_else(|| {
            Error::Security(format!("{url}: https needs the CA that signed the service's certificate (tls_ca / --tls-ca)"))
        })?;
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(|e| Error::Security(format!("{what} {}: {e}", p.display())))
        };
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "tls_ca")?));
        match (&security.cert, &security.key) {
            (Some(cert), Some(key)) => {
                crate::files::check_private(key, "tls_key")?;
                tls = tls.identity(Identity::from_pem(
                    read(cert, "tls_cert")?,
                    read(key, "tls_key")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(Error::Security(
                    "tls_cert and tls_key go together: give both".to_owned(),
                ));
            }
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::Security(format!("{url}: TLS: {e}")))?;
    } else if security.cert.is_some() || security.ca.is_some() {
        return Err(Error::Security(format!(
            "{url}: TLS settings given for a plain http:// URL; use https://"
        )));
    }
    let token = match &security.token_file {
        Some(path) => BearerToken::from_file(path, "token_file")?,
        None => BearerToken::none(),
    };
    Ok((endpoint, token))
}

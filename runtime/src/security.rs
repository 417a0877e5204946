//! Who may talk to a service: TLS (optionally with client certificates),
//! bearer tokens with roles, and the rule that a service does not listen on
//! a network unprotected unless told `--insecure`.
//!
//! Tokens come from a file of hashes ([`crate::tokens`]). `read` may call
//! Get* and Watch*; `control` may call everything. Health and reflection
//! stay open (probes and grpcurl `list` need them). A tokens file or TLS key
//! that others may write is refused, as ssh refuses such keys.

use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::Error;
pub use crate::tokens::Role;
use crate::tokens::Tokens;

/// TLS and tokens: the flags every service takes, and the `[security]`
/// table of its config file.
#[derive(Debug, Default, Clone, clap::Args, Serialize, Deserialize)]
pub struct SecurityOptions {
    /// Serve TLS with this certificate (PEM; with --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM; needs TLS).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Require bearer tokens: a file of `ROLE SHA256_HEX [NAME]` lines
    /// (roles: read, control).
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Allow listening on a non-loopback address with neither TLS nor
    /// tokens.
    #[arg(long)]
    pub insecure: bool,
}

/// Resolved: what `grpc::serve` enforces.
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<ServerTlsConfig>,
    pub tokens: Option<Arc<Tokens>>,
    /// For the log line.
    pub client_certificates: bool,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("client_certificates", &self.client_certificates)
            .field("tokens", &self.tokens.as_ref().map(|t| t.len()))
            .finish()
    }
}

impl Security {
    /// Flags over the file's `[security]` table; reads the certificates,
    /// key and tokens now, so a mistake stops the service at start. Refuses
    /// a non-loopback `listen` with neither TLS nor tokens, unless insecure.
    pub fn resolve(options: &SecurityOptions, listen: &str) -> Result<Self, Error> {
        let SecurityOptions {
            tls_cert,
            tls_key,
            client_ca,
            tokens: tokens_path,
            insecure,
        } = options;
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => {
                crate::files::check_private(key, "--tls-key")?;
                let identity =
                    Identity::from_pem(read(cert, "--tls-cert")?, read(key, "--tls-key")?);
                let mut config = ServerTlsConfig::new().identity(identity);
                if let Some(ca) = client_ca {
                    config = config.client_ca_root(Certificate::from_pem(read(ca, "--client-ca")?));
                }
                Some(config)
            }
            (None, None) if client_ca.is_some() => {
                return Err(Error::Security(
                    "--client-ca needs TLS: give --tls-cert and --tls-key too".to_owned(),
                ));
            }
            (None, None) => None,
            _ => {
                return Err(Error::Security(
                    "--tls-cert and --tls-key go together: give both".to_owned(),
                ));
            }
        };
        let tokens = match tokens_path {
            Some(path) => Some(Arc::new(Tokens::load(path)?)),
            None => None,
        };
        if tls.is_none() && tokens.is_none() && !*insecure && !is_loopback(listen) {
            return Err(Error::Security(format!(
                "refusing to listen on {listen} with neither TLS nor tokens: anyone on the network could \
                 use this service. Give --tls-cert/--tls-key and/or --tokens, listen on 127.0.0.1, or \
                 pass --insecure if the network is trusted (see the README's security section)"
            )));
        }
        Ok(Self {
            client_certificates: tls.is_some() && client_ca.is_some(),
            tls,
            tokens,
        })
    }
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Security(format!("{flag} {}: {e}", path.display())))
}

/// Whether `listen` only reaches this machine. A name that does not
/// resolve to loopback addresses only counts as a network.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    match listen.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            !addrs.is_empty() && addrs.iter().all(IpAddr::is_loopback)
        }
        Err(_) => false,
    }
}

/// What a method needs: `None` for the open ones (health, reflection).
pub fn required_role(path: &str) -> Option<Role> {
    let service = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
        return None;
    }
    let method = path.rsplit('/').next().unwrap_or_default();
    if method.starts_with("Get") || method.starts_with("Watch") {
        Some(Role::Read)
    } else {
        Some(Role::Control)
    }
}

/// The token of an `authorization` header value: the `Bearer` scheme, in
/// any case (RFC 9110 makes schemes case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The tower layer that checks `authorization: Bearer TOKEN`.
#[derive(Clone)]
pub struct AuthLayer {
    tokens: Option<Arc<Tokens>>,
}

impl AuthLayer {
    pub fn new(tokens: Option<Arc<Tokens>>) -> Self {
        Self { tokens }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    tokens: Option<Arc<Tokens>>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Auth<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let Some(tokens) = &self.tokens else {
            return Box::pin(self.inner.call(request));
        };
        let path = request.uri().path().to_owned();
        let Some(needed) = required_role(&path) else {
            return Box::pin(self.inner.call(request));
        };
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let refusal = match presented.map(|t| tokens.check(t)) {
            None => Some(tonic::Status::unauthenticated(
                "a bearer token is required: send `authorization: Bearer TOKEN`",
            )),
            Some(None) => Some(tonic::Status::unauthenticated(
                tokens.refusal(presented.unwrap_or_default()),
            )),
            Some(Some((role, name))) if role < needed => Some(tonic::Status::permission_denied(
                format!("token {name:?} has the read role; {path} needs control"),
            )),
            Some(Some(_)) => None,
        };
        match refusal {
            Some(status) => {
                tracing::warn!(method = %path, code = ?status.code(), reason = %status.message(), "request refused");
                Box::pin(async move { Ok(status.into_http()) })
            }
            None => Box::pin(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "  BeArEr   t0k "] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header:?}");
        }
        for header in ["Basic t0k", "Bearer", "Bearer ", "t0k", "Bearert0k"] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }

    #[test]
    fn methods_need_the_right_role() {
        assert_eq!(
            required_role("/delestage.relay.v1.RelayService/GetRelays"),
            Some(Role::Read)
        );
        assert_eq!(
            required_role("/delestage.relay.v1.RelayService/WatchRelays"),
            Some(Role::Read)
        );
        assert_eq!(
            required_role("/delestage.relay.v1.RelayService/SetRelay"),
            Some(Role::Control)
        );
        assert_eq!(
            required_role("/delestage.relay.v1.RelayService/RenewHold"),
            Some(Role::Control)
        );
        assert_eq!(
            required_role("/delestage.controller.v1.ControllerService/SetOverride"),
            Some(Role::Control)
        );
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            required_role("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            None
        );
    }

    #[test]
    fn only_loopback_counts_as_loopback() {
        assert!(is_loopback("127.0.0.1:50051"));
        assert!(is_loopback("[::1]:50051"));
        assert!(is_loopback("localhost:50051"));
        assert!(!is_loopback("0.0.0.0:50051"));
        assert!(!is_loopback("192.168.1.20:50051"));
        assert!(!is_loopback("no-such-host.invalid:1"));
    }

    #[test]
    fn a_network_address_needs_protection_or_insecure() {
        let none = SecurityOptions::default();
        let err = Security::resolve(&none, "0.0.0.0:50051")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("--insecure") && err.contains("0.0.0.0:50051"),
            "{err}"
        );
        let insecure = SecurityOptions {
            insecure: true,
            ..SecurityOptions::default()
        };
        assert!(Security::resolve(&insecure, "0.0.0.0:50051").is_ok());
        assert!(Security::resolve(&none, "127.0.0.1:50051").is_ok());
    }
}

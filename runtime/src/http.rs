//! Serving plain HTTP/1.1 (the controller's dashboard and JSON API) under
//! the same rules as gRPC: loopback unless TLS or tokens protect it (or
//! `--insecure`), and TLS from the same `--tls-cert`/`--tls-key` (and
//! `--client-ca`) files.
//!
//! Which request needs which token is the application's to say (it knows
//! its routes); this module resolves the tokens file and serves the
//! connections, with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt;

use crate::Error;
use crate::connections::{ConnectionService, Incoming, OPENING_TIMEOUT, RequestBody};
use crate::security::{Security, SecurityOptions};
use crate::tokens::Tokens;

/// At shutdown, how long requests in flight may take to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Resolved: TLS and tokens for an HTTP listener.
#[derive(Clone, Default)]
pub struct HttpSecurity {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub tokens: Option<Arc<Tokens>>,
    /// For the log line.
    pub client_certificates: bool,
}

impl std::fmt::Debug for HttpSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSecurity")
            .field("tls", &self.tls.is_some())
            .field("client_certificates", &self.client_certificates)
            .field("tokens", &self.tokens.as_ref().map(|t| t.len()))
            .finish()
    }
}

impl HttpSecurity {
    /// The same checks as [`Security::resolve`] (flags that go together,
    /// key permissions, and the refusal of an unprotected network address,
    /// here `listen`), then the TLS files read again for rustls.
    pub fn resolve(options: &SecurityOptions, listen: &str) -> Result<Self, Error> {
        let grpc = Security::resolve(options, listen)?;
        let tls = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(server_config(
                cert,
                key,
                options.client_ca.as_deref(),
            )?)),
            _ => None,
        };
        Ok(Self {
            tls,
            tokens: grpc.tokens,
            client_certificates: grpc.client_certificates,
        })
    }
}

fn tls_error(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::Security(format!("{what} {}: {e}", path.display()))
}

/// rustls' server config from PEM files: HTTP/1.1 only (ALPN), and client
/// certificates verified against `client_ca` when given.
fn server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Result<rustls::ServerConfig, Error> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error("--tls-cert", cert, e))?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error("--tls-key", key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Security(format!("TLS: {e}")))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for der in
                CertificateDer::pem_file_iter(ca).map_err(|e| tls_error("--client-ca", ca, e))?
            {
                roots
                    .add(der.map_err(|e| tls_error("--client-ca", ca, e))?)
                    .map_err(|e| tls_error("--client-ca", ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| tls_error("--client-ca", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, private)
        .map_err(|e| tls_error("--tls-cert", cert, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `service` on the connections `incoming` admits (see
/// [`crate::connections`]; TLS when `tls` is set) until `shutdown`
/// resolves; then stops accepting and lets the requests in flight finish
/// (for at most a few seconds: long-lived responses, such as event
/// streams, must end on shutdown by themselves).
pub async fn serve<S, B>(
    mut incoming: Incoming,
    service: S,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error>
where
    S: tower::Service<
            http::Request<RequestBody<hyper::body::Incoming>>,
            Response = http::Response<B>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(stream)) => stream,
                // Accept errors are waited out inside; the stream never ends.
                Some(Err(_)) | None => continue,
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(ConnectionService::for_connection(
            service.clone(),
            stream.info(),
        ));
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => watcher.watch(connection(stream, service)).await,
                Some(acceptor) => {
                    match tokio::time::timeout(OPENING_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => watcher.watch(connection(tls, service)).await,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "http: TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
            }
        });
    }
    drop(incoming);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http: some requests did not finish within {DRAIN:?} of shutdown");
    }
    Ok(())
}

/// One HTTP/1.1 connection. A request head must arrive whole within
/// [`OPENING_TIMEOUT`] of its first byte (the connection's limits close one
/// that sends nothing).
fn connection<I, S, B>(
    io: I,
    service: TowerToHyperService<S>,
) -> hyper::server::conn::http1::Connection<TokioIo<I>, TowerToHyperService<S>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(OPENING_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
}

//! Prometheus metrics, the same way in every service: `--metrics ADDR`
//! serves `GET /metrics` (text format) on a listener of its own, and every
//! gRPC call is counted by method and status, with its latency.
//!
//! Services record their own figures with the `metrics` macros
//! (`metrics::counter!` ...); without `--metrics` no recorder is installed
//! and those calls cost next to nothing.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body_util::Full;
use hyper::body::Bytes;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::Error;
use crate::connections::Connections;

/// Latency buckets, in seconds: a relay switches in 18 ms; an RTE call can
/// take seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the recorder and serves `/metrics` on `addr` until the process
/// ends. Returns the address actually bound (for port 0).
pub async fn serve(addr: &str) -> Result<SocketAddr, Error> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
        .map_err(|e| Error::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| Error::Metrics(e.to_string()))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Metrics(format!("cannot listen on {addr} for --metrics: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Metrics(e.to_string()))?;
    // The recorder's histograms and idle series need housekeeping.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            ticks.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(accept(listener, handle));
    tracing::info!(addr = %bound, "serving Prometheus metrics at /metrics");
    Ok(bound)
}

/// Prometheus scrapes one connection at a time; a few more for people.
const MAX_CONNECTIONS: usize = 16;

/// Serves `/metrics` for as long as the process runs, under the same
/// connection limits and timeouts as every other port.
async fn accept(listener: TcpListener, handle: PrometheusHandle) {
    let incoming = Connections::limit(listener, MAX_CONNECTIONS);
    let service = tower::service_fn(move |request: hyper::Request<_>| {
        let answer = answer(&request, &handle);
        async move { Ok::<_, Infallible>(answer) }
    });
    if let Err(e) = crate::http::serve(incoming, service, None, std::future::pending()).await {
        tracing::error!(error = %e, "metrics: no longer serving /metrics");
    }
}

fn answer<B>(
    request: &hyper::Request<B>,
    handle: &PrometheusHandle,
) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => (
            hyper::StatusCode::OK,
            "text/plain; version=0.0.4",
            handle.render(),
        ),
        _ => (
            hyper::StatusCode::NOT_FOUND,
            "text/plain",
            "not found: GET /metrics\n".to_owned(),
        ),
    };
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

/// The tower layer that counts every gRPC call:
/// `grpc_server_handled_total{method, code}` and
/// `grpc_server_handling_seconds{method}` (for a stream, the time to its
/// first answer).
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            // Errors travel as trailers-only responses: grpc-status in the
            // headers. No grpc-status there means the call went on (OK so
            // far, or a stream).
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or("OK", code_name),
                Err(_) => "TRANSPORT_ERROR",
            };
            metrics::counter!("grpc_server_handled_total", "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!("grpc_server_handling_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

fn code_name(code: i32) -> &'static str {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

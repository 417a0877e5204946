//! Serving gRPC the same way in every service: the service's own routes plus
//! `grpc.health.v1` and server reflection (v1 and v1alpha, because grpcurl
//! 1.8 and Python's grpcio-reflection only speak v1alpha), until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::Error;
use crate::connections::{ConnectionLayer, Connections, OPENING_TIMEOUT, RequestBody};
use crate::security::{AuthLayer, Security};

/// The largest request any delestage RPC accepts. Every request is a few
/// dozen bytes; tonic's default (4 MiB) would let a client make us buffer
/// far more than any real request for nothing.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How often the server pings a connection (HTTP/2 PING), and how long the
/// answer may take before the connection is closed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Binds the address a service listens on; the error names it.
pub async fn bind(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen {
            addr: addr.to_owned(),
            source,
        })
}

/// Serves `routes` on `listener` until `shutdown` resolves, then finishes the
/// calls in flight and returns.
///
/// `health_names` are the fully-qualified service names reported SERVING by
/// `grpc.health.v1` (the empty name, "the whole server", always is). They turn
/// NOT_SERVING as soon as shutdown starts, so load balancers stop sending.
///
/// `security` adds TLS (and client certificates) and the bearer-token check;
/// `max_connections` caps the connections the port holds (see
/// [`crate::connections`]).
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    health_names: &[&str],
    security: Security,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let (_always, healthy) = tokio::sync::watch::channel(true);
    serve_with_health(
        listener,
        routes,
        health_names,
        security,
        max_connections,
        healthy,
        shutdown,
    )
    .await
}

/// Reflection that lists what this process serves, and only that: its own
/// services, health and reflection (every delestage .proto is registered,
/// so that the messages of all of them resolve).
fn reflection<'b>(served: &[&str]) -> tonic_reflection::server::Builder<'b> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(delestage_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for name in served.iter().copied().chain([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]) {
        builder = builder.with_service_name(name);
    }
    builder
}

/// [`serve`], with the named services' health following `healthy`: SERVING
/// while it holds true, NOT_SERVING while false (a service that runs but
/// cannot do its job as configured).
pub async fn serve_with_health(
    listener: TcpListener,
    routes: Routes,
    health_names: &[&str],
    security: Security,
    max_connections: usize,
    mut healthy: tokio::sync::watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let status_of = |ok: bool| {
        if ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    };
    let now = status_of(*healthy.borrow_and_update());
    for name in health_names {
        health_reporter.set_service_status(*name, now).await;
    }
    let following = health_reporter.clone();
    let followed: Vec<String> = health_names.iter().map(|n| (*n).to_owned()).collect();
    let follow = tokio::spawn(async move {
        while healthy.changed().await.is_ok() {
            let now = status_of(*healthy.borrow_and_update());
            for name in &followed {
                following.set_service_status(name, now).await;
            }
        }
    });

    let reflection_v1 = reflection(health_names).build_v1()?;
    let reflection_v1alpha = reflection(health_names).build_v1alpha()?;

    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let names: Vec<String> = health_names.iter().map(|n| (*n).to_owned()).collect();
    let shutdown = async move {
        shutdown.await;
        // Health no longer follows anything: it is NOT_SERVING from here.
        follow.abort();
        health_reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in names {
            health_reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    };

    let incoming = Connections::limit(listener, max_connections);
    // A client that vanished (a box unplugged, a link cut) while it held a
    // stream would hold its connection forever: it is never idle, and was
    // answered, so never evicted. Pings find it.
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(tls) = security.tls {
        builder = builder.tls_config(tls.timeout(OPENING_TIMEOUT))?;
    }
    builder
        .layer(ConnectionLayer)
        .layer(tower::util::MapRequestLayer::new(
            |request: http::Request<RequestBody<tonic::body::Body>>| {
                request.map(tonic::body::Body::new)
            },
        ))
        .layer(crate::metrics::RpcMetricsLayer)
        .layer(AuthLayer::new(security.tokens))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_health::pb::health_check_response::ServingStatus as Status;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    use super::*;

    async fn status(client: &mut HealthClient<tonic::transport::Channel>) -> Status {
        let answer = client
            .check(HealthCheckRequest {
                service: "test.Service".into(),
            })
            .await
            .expect("health check");
        answer.into_inner().status()
    }

    async fn wait_for(client: &mut HealthClient<tonic::transport::Channel>, wanted: Status) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while status(client).await != wanted {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("health never became {wanted:?}"));
    }

    #[tokio::test]
    async fn health_follows_the_healthy_watch() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (healthy, watch) = tokio::sync::watch::channel(true);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with_health(
            listener,
            Routes::default(),
            &["test.Service"],
            Security::default(),
            16,
            watch,
            async {
                let _ = stopped.await;
            },
        ));
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let mut client = HealthClient::new(channel);
        wait_for(&mut client, Status::Serving).await;
        healthy.send(false).expect("send");
        wait_for(&mut client, Status::NotServing).await;
        healthy.send(true).expect("send");
        wait_for(&mut client, Status::Serving).await;
        let _ = stop.send(());
        server.await.expect("join").expect("served");
    }
}

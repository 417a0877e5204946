//! The limits on real sockets: an HTTP/1.1 server from [`crate::http`] and
//! a gRPC server from [`crate::grpc`] on 127.0.0.1:0, raw TCP clients.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::*;

type Answer = http::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

/// `/stream`: a body that never ends (a tick every 50 ms); anything else:
/// reads the whole body, then says how long it was (408 if it did not
/// come in time).
async fn answer(
    request: http::Request<RequestBody<hyper::body::Incoming>>,
) -> Result<Answer, Infallible> {
    if request.uri().path() == "/stream" {
        let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
            Duration::from_millis(50),
        ))
        .map(|_| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"tick\n"))));
        return Ok(http::Response::new(StreamBody::new(ticks).boxed()));
    }
    let (status, text) = match request.into_body().collect().await {
        Ok(body) => (200, format!("{} bytes", body.to_bytes().len())),
        Err(e) => (408, e.to_string()),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(text)).boxed());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    Ok(response)
}

struct Server {
    addr: std::net::SocketAddr,
    connections: Connections,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve_http(max: usize, timeouts: Timeouts) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Connections::with_timeouts("test", max, timeouts);
    let stop = CancellationToken::new();
    tokio::spawn(crate::http::serve(
        connections.incoming(listener),
        tower::service_fn(answer),
        None,
        stop.clone().cancelled_owned(),
    ));
    Server {
        addr,
        connections,
        stop,
    }
}

impl Server {
    /// A connection, once the server has admitted it (so that the order
    /// of admissions is the order of the calls).
    async fn connect(&self) -> TcpStream {
        let before = self.connections.admitted();
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        let admitted = tokio::time::timeout(Duration::from_secs(5), async {
            while self.connections.admitted() <= before {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(admitted.is_ok(), "the server never admitted the connection");
        stream
    }
}

/// Sends a request on `stream` and reads its response (Content-Length or
/// chunked bodies that end); `(status, body)`.
async fn request(stream: &mut TcpStream, head: &str, body: &[u8]) -> (u16, String) {
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    read_response(stream).await
}

async fn get(stream: &mut TcpStream) -> (u16, String) {
    request(stream, "GET / HTTP/1.1\r\nHost: test\r\n\r\n", b"").await
}

async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .and_then(|l| l.trim().parse::<usize>().ok());
                if length.is_some_and(|l| body.len() >= l) {
                    let status = head[9..12].parse().expect("status");
                    return (status, body.to_owned());
                }
            }
        }
    })
    .await;
    read.expect("no response within 5 s")
}

/// Whether the server closed `stream` (within 5 s).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Whether `stream` is still open: nothing to read, no end, for a moment.
async fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf))
        .await
        .is_err()
}

const LONG: Timeouts = Timeouts {
    opening: Duration::from_secs(60),
    body: Duration::from_secs(60),
    idle: Duration::from_secs(60),
};

#[tokio::test]
async fn at_the_cap_a_new_connection_evicts_the_oldest_one_never_answered() {
    let server = serve_http(3, LONG).await;
    let mut client = server.connect().await;
    assert_eq!(get(&mut client).await.0, 200);
    let mut idle_first = server.connect().await;
    let mut idle_second = server.connect().await;

    let mut newcomer = server.connect().await;
    assert_eq!(get(&mut newcomer).await.0, 200, "the newcomer is served");
    assert!(
        closed(&mut idle_first).await,
        "the oldest idle one is evicted"
    );
    assert!(still_open(&mut idle_second).await, "only one is evicted");
    assert_eq!(get(&mut client).await.0, 200, "the answered client is kept");
    assert_eq!(server.connections.open(), 3);
}

#[tokio::test]
async fn a_slow_request_is_evicted_like_an_idle_one() {
    let server = serve_http(2, LONG).await;
    let mut client = server.connect().await;
    assert_eq!(get(&mut client).await.0, 200);
    let mut slow = server.connect().await;
    slow.write_all(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .expect("write");

    let mut newcomer = server.connect().await;
    assert_eq!(get(&mut newcomer).await.0, 200);
    assert!(closed(&mut slow).await, "the slow request is evicted");
    assert_eq!(get(&mut client).await.0, 200);
}

#[tokio::test]
async fn when_every_connection_was_answered_a_new_one_is_closed_at_once() {
    let server = serve_http(2, LONG).await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    assert_eq!(get(&mut first).await.0, 200);
    assert_eq!(get(&mut second).await.0, 200);

    let mut refused = TcpStream::connect(server.addr).await.expect("connect");
    assert!(closed(&mut refused).await, "refused: closed at once");
    assert_eq!(get(&mut first).await.0, 200);
    assert_eq!(get(&mut second).await.0, 200);
    assert_eq!(server.connections.open(), 2);
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_after_the_opening_timeout() {
    let timeouts = Timeouts {
        opening: Duration::from_millis(300),
        ..LONG
    };
    let server = serve_http(10, timeouts).await;
    let started = Instant::now();
    let mut silent = server.connect().await;
    assert!(closed(&mut silent).await);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.connections.open(), 0);
}

#[tokio::test]
async fn a_body_that_does_not_come_in_time_gets_an_error() {
    let timeouts = Timeouts {
        body: Duration::from_millis(300),
        ..LONG
    };
    let server = serve_http(10, timeouts).await;
    let mut slow = server.connect().await;
    let (status, text) = request(
        &mut slow,
        "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n",
        b"ten bytes!",
    )
    .await;
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("did not arrive in time"), "{text}");

    // A body that comes whole is read.
    let mut quick = server.connect().await;
    let (status, text) = request(
        &mut quick,
        "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n",
        b"ten bytes!",
    )
    .await;
    assert_eq!((status, text.as_str()), (200, "10 bytes"));
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout_but_a_stream_is_not() {
    let timeouts = Timeouts {
        idle: Duration::from_millis(300),
        ..LONG
    };
    let server = serve_http(10, timeouts).await;
    let mut streaming = server.connect().await;
    streaming
        .write_all(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut client = server.connect().await;
    let answered = Instant::now();
    assert_eq!(get(&mut client).await.0, 200);
    assert!(closed(&mut client).await, "idle: closed");
    assert!(answered.elapsed() >= Duration::from_millis(300));

    // The stream went on all along, and goes on.
    let mut buf = [0u8; 4096];
    let mut ticks = 0;
    while ticks < 5 {
        let n = tokio::time::timeout(Duration::from_secs(5), streaming.read(&mut buf))
            .await
            .expect("the stream goes on")
            .expect("read");
        assert!(n > 0, "the stream was closed");
        ticks += String::from_utf8_lossy(&buf[..n]).matches("tick").count();
    }
}

/// With tonic, the connection comes through the request's extensions: a
/// client that was answered is kept at the cap, the idle socket goes.
#[tokio::test]
async fn grpc_keeps_an_answered_client_and_evicts_an_idle_socket() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(crate::grpc::serve(
        listener,
        tonic::service::Routes::default(),
        &[],
        crate::security::Security::default(),
        2,
        stop.clone().cancelled_owned(),
    ));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let check = || HealthCheckRequest {
        service: String::new(),
    };
    client.check(check()).await.expect("health");

    // The kernel hands out accepts in order: `idle` is admitted first.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let _newcomer = TcpStream::connect(addr).await.expect("connect");
    assert!(closed(&mut idle).await, "the idle socket is evicted");
    client
        .check(check())
        .await
        .expect("the answered client still works");
    stop.cancel();
}

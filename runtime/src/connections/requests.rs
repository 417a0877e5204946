//! Following the requests on an admitted connection: when one begins, when
//! it is answered, when its response ends; and the deadline on its body.
//!
//! What the limits learn here decides which connection is evicted at the
//! cap (one never answered) and when an idle one is closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::{BODY_TIMEOUT, Conn, ConnectionInfo};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The tower layer for a server whose connections are [`super::Tracked`]:
/// with tonic, the connection comes in each request's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionLayer;

impl<S> tower::Layer<S> for ConnectionLayer {
    type Service = ConnectionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnectionService { inner, conn: None }
    }
}

/// See [`ConnectionLayer`]. Requests reach `inner` with a
/// [`RequestBody`] (the body's deadline), responses leave with a
/// [`ResponseBody`] (which tells the connection when the response ended).
#[derive(Debug, Clone)]
pub struct ConnectionService<S> {
    inner: S,
    /// Set for a service made for one connection (the dashboard's); else
    /// read from the request's extensions.
    conn: Option<ConnectionInfo>,
}

impl<S> ConnectionService<S> {
    /// `inner`, serving the one connection `conn`.
    pub fn for_connection(inner: S, conn: ConnectionInfo) -> Self {
        Self {
            inner,
            conn: Some(conn),
        }
    }
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for ConnectionService<S>
where
    S: tower::Service<http::Request<RequestBody<B>>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let conn = self
            .conn
            .clone()
            .or_else(|| request.extensions().get::<ConnectionInfo>().cloned());
        let body_timeout = conn.as_ref().map_or(BODY_TIMEOUT, |c| c.0.body_timeout());
        let request_guard = conn.map(|c| InFlight::start(c.0));
        let request = request.map(|body| RequestBody::new(body, body_timeout));
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            if let Some(guard) = &request_guard {
                guard.conn.answered();
            }
            Ok(response.map(|body| ResponseBody {
                inner: Box::pin(body),
                in_flight: request_guard,
            }))
        })
    }
}

/// One request, from its head to the end of its response (or until it is
/// dropped: a client gone, a handler failed).
#[derive(Debug)]
struct InFlight {
    conn: Arc<Conn>,
}

impl InFlight {
    fn start(conn: Arc<Conn>) -> Self {
        conn.request_started();
        Self { conn }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.request_ended();
    }
}

/// A request's body, which must arrive whole within [`BODY_TIMEOUT`] (or
/// the port's own body timeout) of
/// the request's head: a client that sends headers and then a byte now and
/// then gets an error instead of a handler waiting on it forever.
pub struct RequestBody<B> {
    inner: Pin<Box<B>>,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    ended: bool,
}

impl<B> RequestBody<B> {
    fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner: Box::pin(inner),
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            ended: false,
        }
    }
}

/// The error a body gives past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time (within {0:?} of the request's head)")]
pub struct BodyTimeout(pub Duration);

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        match polled {
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if self.inner.is_end_stream() {
                    self.ended = true;
                }
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Pending if self.ended => Poll::Pending,
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.ended = true;
                    Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response's body; when it ends (or is dropped), so has the request.
pub struct ResponseBody<B> {
    inner: Pin<Box<B>>,
    in_flight: Option<InFlight>,
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            // Idle from now, not from when the client closes.
            self.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

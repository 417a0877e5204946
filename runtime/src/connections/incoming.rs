//! The accept loop, as a stream of admitted sockets: what tonic serves
//! (`serve_with_incoming_shutdown`) and what the dashboard's loop reads.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_stream::Stream;

use super::{Connections, Tracked};
use crate::backoff::{Backoff, Retry};

/// After a failed accept (out of descriptors, most often), wait before the
/// next: the failure would repeat at once and spin.
const ACCEPT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));

/// Accepted connections, admitted under their port's limits (the ones not
/// admitted are closed as they come and never show here). Sockets have
/// `TCP_NODELAY`: small request/response messages, and without it Nagle's
/// algorithm meets the peer's delayed ACK and answers wait ~40 ms.
pub struct Incoming {
    listener: TcpListener,
    connections: Connections,
    retry: Retry,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    pub(super) fn new(listener: TcpListener, connections: Connections) -> Self {
        Self {
            listener,
            connections,
            retry: ACCEPT_BACKOFF.start(),
            waiting: None,
        }
    }
}

impl Stream for Incoming {
    type Item = std::io::Result<Tracked<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(waiting) = self.waiting.as_mut() {
                ready!(waiting.as_mut().poll(cx));
                self.waiting = None;
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok((stream, _)) => {
                    self.retry.succeeded();
                    let _ = stream.set_nodelay(true);
                    if let Some(admitted) = self.connections.admit(stream) {
                        return Poll::Ready(Some(Ok(admitted)));
                    }
                }
                Err(e) => {
                    let wait = self.retry.failed();
                    tracing::warn!(port = %self.connections.table.port, error = %e, retry_in = ?wait, "cannot accept a connection");
                    self.waiting = Some(Box::pin(tokio::time::sleep(wait)));
                }
            }
        }
    }
}

//! An admitted socket: reads and writes go to the socket until the limits
//! close the connection (eviction, timeout); from then on they fail, so the
//! server drops the connection and the descriptor is freed at once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::transport::server::Connected;

use super::{Conn, Table};

/// A socket admitted by [`super::Connections`], closed from outside when
/// its connection is evicted or times out; leaves its port's table when
/// dropped.
pub struct Tracked<IO> {
    io: IO,
    conn: Arc<Conn>,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    table: Arc<Table>,
}

impl<IO> Tracked<IO> {
    pub(super) fn new(io: IO, conn: Arc<Conn>, table: Arc<Table>) -> Self {
        let closed = Box::pin(conn.close.clone().cancelled_owned());
        Self {
            io,
            conn,
            closed,
            table,
        }
    }

    /// What the requests on this connection report to (see
    /// [`super::ConnectionService`]).
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo(Arc::clone(&self.conn))
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Whether the limits closed the connection; the error to fail with.
    fn check(&mut self, cx: &mut Context<'_>) -> Result<(), std::io::Error> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "closed by the port's connection limits",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<IO> Drop for Tracked<IO> {
    fn drop(&mut self) {
        self.table.remove(self.conn.id);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connection a request came on, as tonic puts it in every request's
/// extensions (through [`Connected`]).
#[derive(Debug, Clone)]
pub struct ConnectionInfo(pub(crate) Arc<Conn>);

impl<IO> Connected for Tracked<IO> {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info()
    }
}

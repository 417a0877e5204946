//! Server streams (the Watch* RPCs), written once: a message goes out only
//! while the client is there and the service is not stopping, so that no
//! stream holds a graceful shutdown, and a client that reads slowly costs a
//! few buffered messages, not memory without end.

use std::future::Future;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// What every Watch* RPC returns.
pub type WatchStream<T> = ReceiverStream<Result<T, Status>>;

/// Messages buffered per stream: a slow reader holds at most this many.
const BUFFER: usize = 16;

/// The sending end of one stream.
#[derive(Debug)]
pub struct Sink<T> {
    tx: mpsc::Sender<Result<T, Status>>,
    closing: CancellationToken,
}

/// A new stream, ended when `closing` is cancelled.
pub fn channel<T>(closing: CancellationToken) -> (Sink<T>, WatchStream<T>) {
    let (tx, rx) = mpsc::channel(BUFFER);
    (Sink { tx, closing }, ReceiverStream::new(rx))
}

impl<T> Sink<T> {
    /// Sends one message (waiting for room); false when the client has gone
    /// or the service is stopping: the feeding task should end.
    pub async fn send(&self, message: T) -> bool {
        tokio::select! {
            sent = self.tx.send(Ok(message)) => sent.is_ok(),
            () = self.closing.cancelled() => false,
        }
    }

    /// Waits for `next`, unless the client goes away or the service stops
    /// first (`None`: end the stream).
    pub async fn until<F: Future>(&self, next: F) -> Option<F::Output> {
        tokio::select! {
            out = next => Some(out),
            () = self.tx.closed() => None,
            () = self.closing.cancelled() => None,
        }
    }
}

/// A broadcast of changes as a stream: `first` (a snapshot), then each
/// change as `message` makes it. A reader that falls behind the broadcast's
/// backlog gets `resync()` (a fresh snapshot) instead of what it missed: it
/// cannot hold memory, and it still ends up with the truth.
pub fn forward_broadcast<C, T, Fut>(
    first: T,
    mut changes: broadcast::Receiver<C>,
    closing: CancellationToken,
    message: impl Fn(C) -> T + Send + 'static,
    resync: impl Fn() -> Fut + Send + 'static,
) -> WatchStream<T>
where
    C: Clone + Send + 'static,
    T: Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let (sink, stream) = channel(closing);
    tokio::spawn(async move {
        let mut next = first;
        loop {
            if !sink.send(next).await {
                return;
            }
            next = match sink.until(changes.recv()).await {
                None | Some(Err(broadcast::error::RecvError::Closed)) => return,
                Some(Ok(change)) => message(change),
                Some(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, "a watcher fell behind; sending it a snapshot");
                    resync().await
                }
            };
        }
    });
    stream
}

/// A watched value as a stream: the value now, then the value after each
/// change (changes made while the reader was slow collapse into one).
pub fn forward_watch<V, T>(
    mut values: watch::Receiver<V>,
    closing: CancellationToken,
    message: impl Fn(&V) -> T + Send + 'static,
) -> WatchStream<T>
where
    V: Send + Sync + 'static,
    T: Send + 'static,
{
    let (sink, stream) = channel(closing);
    tokio::spawn(async move {
        loop {
            let next = message(&values.borrow_and_update());
            if !sink.send(next).await {
                return;
            }
            match sink.until(values.changed()).await {
                Some(Ok(())) => {}
                None | Some(Err(_)) => return,
            }
        }
    });
    stream
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    async fn next<T>(s: &mut WatchStream<T>) -> Option<T> {
        s.next().await.map(|m| m.expect("no error"))
    }

    #[tokio::test]
    async fn a_broadcast_sends_the_snapshot_then_changes_and_resyncs_a_laggard() {
        let (tx, rx) = broadcast::channel::<u32>(2);
        let closing = CancellationToken::new();
        let mut s = forward_broadcast(0, rx, closing.clone(), |c| c, || async { 100 });
        assert_eq!(next(&mut s).await, Some(0));
        tx.send(1).expect("send");
        assert_eq!(next(&mut s).await, Some(1));
        // Four changes into a backlog of two: the reader lags.
        for c in 2..6 {
            tx.send(c).expect("send");
        }
        assert_eq!(next(&mut s).await, Some(100), "a snapshot, not a gap");
        closing.cancel();
        // What is still buffered may come; then the stream ends.
        while next(&mut s).await.is_some() {}
    }

    #[tokio::test]
    async fn a_watch_sends_the_value_then_each_change_and_ends_on_shutdown() {
        let (tx, rx) = watch::channel(1u32);
        let closing = CancellationToken::new();
        let mut s = forward_watch(rx, closing.clone(), |v| *v * 10);
        assert_eq!(next(&mut s).await, Some(10));
        tx.send_replace(2);
        assert_eq!(next(&mut s).await, Some(20));
        closing.cancel();
        assert_eq!(next(&mut s).await, None);
    }

    #[tokio::test]
    async fn a_stream_ends_when_its_source_goes() {
        let (tx, rx) = broadcast::channel::<u32>(4);
        let mut s = forward_broadcast(7, rx, CancellationToken::new(), |c| c, || async { 0 });
        assert_eq!(next(&mut s).await, Some(7));
        drop(tx);
        assert_eq!(next(&mut s).await, None);
    }
}

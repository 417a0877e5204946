//! Server streams (the Watch* RPCs), written once: a message goes out only
//! while the client is there and the service is not stopping, so that no
//! stream holds a graceful shutdown, and a client that reads slowly costs a
//! few buffered messages, not memory without end. [`StreamSlots`] caps how
//! many streams a service holds open at once: past the cap a new stream is
//! refused with RESOURCE_EXHAUSTED, so that a crowd of watchers cannot take
//! a small box's memory.

use std::future::Future;
use std::sync::Arc;

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};

use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::memory::Trimmer;

/// What every Watch* RPC returns: one stream's messages.
///
/// They travel boxed: a channel allocates its first block of slots (16 or
/// 32) up front, and a `Result<Forecast, Status>` is 128 bytes, so unboxed
/// that block would cost each open stream about 2 KiB.
#[derive(Debug)]
pub struct WatchStream<T> {
    rx: mpsc::Receiver<Box<Result<T, Status>>>,
}

impl<T> Stream for WatchStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|message| message.map(|m| *m))
    }
}

/// Messages buffered per stream: a slow reader holds at most this many.
const BUFFER: usize = 16;

/// The sending end of one stream. It holds the stream's slot: the slot is
/// free again when the task feeding the stream ends (the client went away,
/// or the service is stopping) and drops it.
#[derive(Debug)]
pub struct Sink<T> {
    tx: mpsc::Sender<Box<Result<T, Status>>>,
    closing: CancellationToken,
    _slot: Option<OpenStream>,
}

/// A new stream, ended when `closing` is cancelled; outside any cap.
pub fn channel<T>(closing: CancellationToken) -> (Sink<T>, WatchStream<T>) {
    let (tx, rx) = mpsc::channel(BUFFER);
    (
        Sink {
            tx,
            closing,
            _slot: None,
        },
        WatchStream { rx },
    )
}

/// The streams a service may hold open at once (`max_streams`), shared by
/// all its Watch* RPCs, and the `closing` token that ends them all.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    slots: Arc<Semaphore>,
    max: usize,
    closing: CancellationToken,
    /// Gives the memory of ended streams back (see [`crate::memory`]).
    trimmer: Trimmer,
}

/// One open stream's slot, counted in the `watch_streams_open` gauge.
#[derive(Debug)]
struct OpenStream {
    _permit: OwnedSemaphorePermit,
    trimmer: Trimmer,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("watch_streams_open").decrement(1.0);
        self.trimmer.freed();
    }
}

impl StreamSlots {
    /// At most `max` streams at once (at least one). Needs a Tokio
    /// runtime (it starts the memory trimmer, which ends with `closing`).
    pub fn new(max: usize, closing: CancellationToken) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            trimmer: Trimmer::start(closing.clone()),
            closing,
        }
    }

    /// A new stream in a free slot, or RESOURCE_EXHAUSTED when all are
    /// taken (the client may try again later, or use another replica).
    pub fn open<T>(&self) -> Result<(Sink<T>, WatchStream<T>), Status> {
        let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            tracing::debug!(max = self.max, "a stream refused: every slot is taken");
            Status::resource_exhausted(format!(
                "this service already serves {} streams, its limit (max_streams); try again later",
                self.max
            ))
        })?;
        metrics::gauge!("watch_streams_open").increment(1.0);
        let (mut sink, stream) = channel(self.closing.clone());
        sink._slot = Some(OpenStream {
            _permit: permit,
            trimmer: self.trimmer.clone(),
        });
        Ok((sink, stream))
    }

    /// Streams open now.
    pub fn open_count(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

impl<T> Sink<T> {
    /// Sends one message (waiting for room); false when the client has gone
    /// or the service is stopping: the feeding task should end.
    pub async fn send(&self, message: T) -> bool {
        tokio::select! {
            sent = self.tx.send(Box::new(Ok(message))) => sent.is_ok(),
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
    sink: Sink<T>,
    first: T,
    mut changes: broadcast::Receiver<C>,
    message: impl Fn(C) -> T + Send + 'static,
    resync: impl Fn() -> Fut + Send + 'static,
) where
    C: Clone + Send + 'static,
    T: Send + 'static,
    Fut: Future<Output = T> + Send,
{
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
}

/// A watched value as a stream: the value now, then the value after each
/// change (changes made while the reader was slow collapse into one).
pub fn forward_watch<V, T>(
    sink: Sink<T>,
    mut values: watch::Receiver<V>,
    message: impl Fn(&V) -> T + Send + 'static,
) where
    V: Send + Sync + 'static,
    T: Send + 'static,
{
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
        let (sink, mut s) = channel(closing.clone());
        forward_broadcast(sink, 0, rx, |c| c, || async { 100 });
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
        let (sink, mut s) = channel(closing.clone());
        forward_watch(sink, rx, |v| *v * 10);
        assert_eq!(next(&mut s).await, Some(10));
        tx.send_replace(2);
        assert_eq!(next(&mut s).await, Some(20));
        closing.cancel();
        assert_eq!(next(&mut s).await, None);
    }

    #[tokio::test]
    async fn a_stream_ends_when_its_source_goes() {
        let (tx, rx) = broadcast::channel::<u32>(4);
        let (sink, mut s) = channel(CancellationToken::new());
        forward_broadcast(sink, 7, rx, |c| c, || async { 0 });
        assert_eq!(next(&mut s).await, Some(7));
        drop(tx);
        assert_eq!(next(&mut s).await, None);
    }

    #[tokio::test]
    async fn past_the_cap_a_stream_is_refused_until_one_ends() {
        let (tx, rx) = watch::channel(0u32);
        let slots = StreamSlots::new(2, CancellationToken::new());
        let mut open = Vec::new();
        for _ in 0..2 {
            let (sink, mut s) = slots.open().expect("a free slot");
            forward_watch(sink, rx.clone(), |v| *v);
            assert_eq!(next(&mut s).await, Some(0));
            open.push(s);
        }
        assert_eq!(slots.open_count(), 2);
        let refused = slots.open::<u32>().expect_err("no slot left");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("max_streams"), "{refused:?}");
        // A client goes away: its feeding task ends (it sees so at the next
        // change) and frees the slot.
        drop(open.pop());
        tx.send_replace(1);
        let mut waited = 0;
        while slots.open_count() == 2 {
            assert!(waited < 1000, "the slot was never freed");
            waited += 1;
            tokio::task::yield_now().await;
        }
        assert!(slots.open::<u32>().is_ok());
    }
}

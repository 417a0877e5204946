//! One open device handle's connection to its board process: requests
//! wait for their reply (or their timeout, as on a bus), and a reader
//! thread routes replies to their callers and input packets to the pending
//! IN transfers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::events::events;
use super::types::{
    LIBUSB_TRANSFER_CANCELLED, LIBUSB_TRANSFER_COMPLETED, LIBUSB_TRANSFER_ERROR,
    LIBUSB_TRANSFER_NO_DEVICE, libusb_transfer,
};
use crate::seqpacket;
use crate::wire::{self, ToBoard, ToHost};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A reply: a libusb status and the data of an IN transfer.
type Reply = (i32, Vec<u8>);

/// Requests being waited for, and the replies that came for them.
#[derive(Default)]
struct Awaited {
    waiting: HashSet<u32>,
    replies: HashMap<u32, Reply>,
}

pub(super) struct Connection {
    fd: OwnedFd,
    next_seq: AtomicU32,
    awaited: Mutex<Awaited>,
    replied: Condvar,
    /// The board was unplugged (or its process went away).
    gone: AtomicBool,
    /// Submitted IN transfers, oldest first.
    pending_in: Mutex<VecDeque<usize>>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Connection {
    pub(super) fn open(fd: OwnedFd) -> std::io::Result<Arc<Self>> {
        let connection = Arc::new(Self {
            fd,
            next_seq: AtomicU32::new(1),
            awaited: Mutex::new(Awaited::default()),
            replied: Condvar::new(),
            gone: AtomicBool::new(false),
            pending_in: Mutex::new(VecDeque::new()),
            reader: Mutex::new(None),
        });
        let reading = Arc::clone(&connection);
        let reader = std::thread::Builder::new()
            .name("virtual-1017-usb".into())
            .spawn(move || reading.read())?;
        *lock(&connection.reader) = Some(reader);
        Ok(connection)
    }

    /// Ends the connection and its reader. Pending IN transfers are
    /// completed as cancelled (the library cancels them before closing).
    pub(super) fn close(&self) {
        seqpacket::shutdown(self.fd.as_raw_fd());
        if let Some(reader) = lock(&self.reader).take() {
            let _ = reader.join();
        }
        self.drain(LIBUSB_TRANSFER_CANCELLED);
    }

    pub(super) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Sends a request built with a fresh sequence number and waits for its
    /// reply: (status, data). A stalled board never answers: the request
    /// times out after `timeout_ms` (0: waits as long as the board is
    /// there).
    pub(super) fn request(&self, build: impl FnOnce(u32) -> ToBoard, timeout_ms: u32) -> Reply {
        if self.is_gone() {
            return (wire::LIBUSB_ERROR_NO_DEVICE, Vec::new());
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.awaited).waiting.insert(seq);
        if seqpacket::send(self.fd.as_raw_fd(), &build(seq).encode()).is_err() {
            lock(&self.awaited).waiting.remove(&seq);
            return (wire::LIBUSB_ERROR_NO_DEVICE, Vec::new());
        }
        let deadline =
            (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(u64::from(timeout_ms)));
        let mut awaited = lock(&self.awaited);
        loop {
            if let Some(reply) = awaited.replies.remove(&seq) {
                awaited.waiting.remove(&seq);
                return reply;
            }
            if self.is_gone() {
                awaited.waiting.remove(&seq);
                return (wire::LIBUSB_ERROR_NO_DEVICE, Vec::new());
            }
            let wait = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        awaited.waiting.remove(&seq);
                        return (wire::LIBUSB_ERROR_TIMEOUT, Vec::new());
                    }
                    left
                }
                None => Duration::from_millis(100),
            };
            awaited = self
                .replied
                .wait_timeout(awaited, wait)
                .map(|(a, _)| a)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Queues an IN transfer for the next input packet.
    pub(super) fn submit_in(&self, transfer: *mut libusb_transfer) -> i32 {
        let mut pending = lock(&self.pending_in);
        // Checked under the lock: `drain` on unplug takes it too.
        if self.is_gone() {
            return wire::LIBUSB_ERROR_NO_DEVICE;
        }
        pending.push_back(transfer as usize);
        wire::LIBUSB_SUCCESS
    }

    /// Cancels a pending IN transfer; NOT_FOUND if it is not pending.
    pub(super) fn cancel(&self, transfer: *mut libusb_transfer) -> i32 {
        let mut pending = lock(&self.pending_in);
        let Some(at) = pending.iter().position(|t| *t == transfer as usize) else {
            return wire::LIBUSB_ERROR_NOT_FOUND;
        };
        pending.remove(at);
        drop(pending);
        // SAFETY: it was pending, so it is live and now owned by the queue.
        unsafe { events().complete(transfer, LIBUSB_TRANSFER_CANCELLED, 0) };
        wire::LIBUSB_SUCCESS
    }

    fn read(&self) {
        // Until the board process goes away, or close() shuts us down.
        while let Ok(Some(message)) = seqpacket::recv(self.fd.as_raw_fd()) {
            match ToHost::decode(&message) {
                Some(ToHost::Reply { seq, status, data }) => {
                    let mut awaited = lock(&self.awaited);
                    // A reply after its timeout is dropped, as a late
                    // packet would be.
                    if awaited.waiting.contains(&seq) {
                        awaited.replies.insert(seq, (status, data));
                        self.replied.notify_all();
                    }
                }
                Some(ToHost::In { data, .. }) => self.deliver(&data),
                Some(ToHost::InError) => {
                    if let Some(t) = lock(&self.pending_in).pop_front() {
                        // SAFETY: popped from pending: live, ours to complete.
                        unsafe {
                            events().complete(t as *mut libusb_transfer, LIBUSB_TRANSFER_ERROR, 0)
                        };
                    }
                }
                Some(ToHost::Gone) => break,
                Some(ToHost::Hello { .. }) | None => {}
            }
        }
        self.gone.store(true, Ordering::Release);
        self.drain(LIBUSB_TRANSFER_NO_DEVICE);
        let _guard = lock(&self.awaited);
        self.replied.notify_all();
    }

    /// An input packet completes the oldest pending IN transfer (dropped
    /// when none is pending, as a NAKed packet would wait on real hardware).
    fn deliver(&self, data: &[u8]) {
        let Some(t) = lock(&self.pending_in).pop_front() else {
            return;
        };
        let transfer = t as *mut libusb_transfer;
        // SAFETY: popped from pending: live, its buffer holds `length` bytes.
        unsafe {
            let n = data
                .len()
                .min(usize::try_from((*transfer).length).unwrap_or(0));
            std::ptr::copy_nonoverlapping(data.as_ptr(), (*transfer).buffer, n);
            events().complete(transfer, LIBUSB_TRANSFER_COMPLETED, n as i32);
        }
    }

    /// Completes every pending IN transfer with `status`.
    fn drain(&self, status: i32) {
        let mut pending = lock(&self.pending_in);
        let all: Vec<usize> = pending.drain(..).collect();
        if status == LIBUSB_TRANSFER_NO_DEVICE {
            // New submits now fail at once (checked under this lock).
            self.gone.store(true, Ordering::Release);
        }
        drop(pending);
        for t in all {
            // SAFETY: drained from pending: live, ours to complete.
            unsafe { events().complete(t as *mut libusb_transfer, status, 0) };
        }
    }
}

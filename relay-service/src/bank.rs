//! The relay bank: the service's one source of truth about its relays.
//!
//! It owns the intended state of every channel (what the relays should be
//! doing), applies it to the board, guards the relays against wear, persists
//! every change, and tells subscribers. Every operation takes one lock, so
//! switches, re-applies and subscriptions happen in a single order: a
//! subscriber's snapshot is followed by exactly the changes after it.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{Mutex, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::board::{Board, BoardKind, BoardStatus};
use crate::persist::StateWriter;
use crate::state::{ChannelState, StateFile};
use crate::wear::WearGuard;

/// How many changes a slow subscriber may fall behind before it is sent a
/// fresh snapshot instead. Bounds memory whatever the subscribers do.
const CHANGE_BACKLOG: usize = 64;

/// How often channels whose state the board does not hold (a write failed)
/// are tried again, while the board is attached.
const REAPPLY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One relay, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relay {
    pub channel: u32,
    pub energized: bool,
    pub changed_at: Option<SystemTime>,
    pub label: String,
    pub switches_last_minute: u32,
    pub max_switches_per_minute: u32,
    /// The board holds `energized` right now.
    pub applied: bool,
}

/// The board, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BoardInfo {
    pub kind: BoardKind,
    pub serial_number: Option<i32>,
    pub attached: bool,
    pub channel_count: u32,
    pub description: String,
}

/// Everything at one instant.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub at: SystemTime,
    pub relays: Vec<Relay>,
    pub board: BoardInfo,
}

/// One change, as broadcast to subscribers.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Relay { at: SystemTime, relay: Relay },
    Board { at: SystemTime, board: BoardInfo },
}

/// The result of a SetRelay.
#[derive(Debug, Clone)]
pub(crate) struct SetOutcome {
    pub relay: Relay,
    /// False when the relay already had the requested state.
    pub switched: bool,
}

pub(crate) struct RelayBank {
    board: Board,
    labels: Vec<String>,
    state_file: StateFile,
    /// Persists each switch; SetRelay waits for it (group commit).
    writer: StateWriter,
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Change>,
    closing: CancellationToken,
}

struct Inner {
    states: Vec<ChannelState>,
    wear: WearGuard,
    /// The board status as last handled (attach → re-apply).
    board: BoardStatus,
    /// Bumped on every switch; what the writer is asked to persist.
    version: u64,
    /// Per channel: whether the board holds the intended state now.
    applied: Vec<bool>,
}

impl RelayBank {
    /// A bank over `board`, starting from `initial` intended states (one per
    /// channel). Nothing is applied until [`RelayBank::start`].
    pub(crate) fn new(
        board: Board,
        labels: Vec<String>,
        state_file: StateFile,
        initial: Vec<ChannelState>,
        max_switches_per_minute: u32,
    ) -> Arc<Self> {
        let channels = board.channel_count() as usize;
        let mut states = initial;
        states.resize(channels, ChannelState::default());
        let mut labels = labels;
        labels.resize(channels, String::new());
        let closing = CancellationToken::new();
        Arc::new(Self {
            board,
            labels,
            writer: StateWriter::start(state_file.clone(), closing.clone()),
            state_file,
            inner: Mutex::new(Inner {
                states,
                wear: WearGuard::new(channels, max_switches_per_minute),
                board: BoardStatus::default(),
                version: 0,
                applied: vec![false; channels],
            }),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
            closing,
        })
    }

    /// Applies the intended states if the board is attached, then follows
    /// the board in the background: every (re)attach re-applies them, every
    /// attach and detach is broadcast. Returns once the first application is
    /// done, so no request is served before it.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<(), Error> {
        let mut status = self.board.status();
        let first = *status.borrow_and_update();
        self.on_board_status(first).await;
        metrics::gauge!("relay_board_attached").set(f64::from(u8::from(first.attached)));
        // Persist at once, so that a first start leaves a state file behind
        // and an unwritable state dir shows up now, not on the first switch.
        self.state_file.save(&self.inner.lock().await.states)?;

        let bank = Arc::clone(self);
        tokio::spawn(async move {
            let mut retry = tokio::time::interval(REAPPLY_EVERY);
            retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    changed = status.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let now = *status.borrow_and_update();
                        bank.on_board_status(now).await;
                    }
                    _ = retry.tick() => bank.reapply_unapplied().await,
                    () = bank.closed() => break,
                }
            }
        });
        Ok(())
    }

    /// Ends the background task and every WatchRelays stream, so the server
    /// can finish its graceful shutdown.
    pub(crate) fn close(&self) {
        self.closing.cancel();
    }

    /// Cancelled by [`RelayBank::close`]: what ends the streams.
    pub(crate) fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// Resolves once [`RelayBank::close`] has been called (at once if it
    /// already was).
    pub(crate) async fn closed(&self) {
        self.closing.cancelled().await;
    }

    pub(crate) fn channel_count(&self) -> u32 {
        self.board.channel_count()
    }

    /// Switches `channel` to `energized`. A no-op (no cycle, no event) when
    /// it is already in that state.
    pub(crate) async fn set(&self, channel: u32, energized: bool) -> Result<SetOutcome, Error> {
        let count = self.channel_count();
        if channel >= count {
            return Err(Error::ChannelOutOfRange { channel, count });
        }
        let ch = channel as usize;
        let mut inner = self.inner.lock().await;
        let now = Instant::now();

        if inner.states[ch].energized == energized {
            // Asked again for a state the board may not hold (a write
            // failed): try it now rather than at the next retry.
            if !inner.applied[ch] && inner.board.attached {
                self.reapply_channel(&mut inner, ch).await;
            }
            return Ok(SetOutcome {
                relay: self.relay(&mut inner, ch, now),
                switched: false,
            });
        }
        if !inner.board.attached {
            return Err(Error::Board {
                channel,
                source: crate::board::BoardError::NotAttached,
            });
        }
        if let Err(refusal) = inner.wear.check(ch, now) {
            let err = Error::WearLimit {
                channel,
                recent: refusal.recent,
                limit: refusal.limit,
                retry_after: refusal.retry_after,
                allowed_at: SystemTime::now() + refusal.retry_after,
            };
            tracing::warn!(channel, energized, reason = %err, "switch refused");
            metrics::counter!("relay_wear_refusals_total", "channel" => channel.to_string())
                .increment(1);
            return Err(err);
        }

        if let Err(source) = self.board.set(channel, energized).await {
            // What the relay holds now is not known: say so until a
            // re-apply succeeds.
            self.mark_applied(&mut inner, ch, false, now);
            return Err(Error::Board { channel, source });
        }
        inner.applied[ch] = true;
        inner.wear.record(ch, now);
        let at = SystemTime::now();
        inner.states[ch] = ChannelState {
            energized,
            changed_at: Some(at),
        };
        let relay = self.relay(&mut inner, ch, now);
        tracing::info!(channel, energized, label = %relay.label, "relay switched");
        metrics::counter!("relay_switches_total", "channel" => channel.to_string()).increment(1);
        metrics::gauge!("relay_energized", "channel" => channel.to_string())
            .set(f64::from(u8::from(energized)));
        // No subscriber is not an error.
        let _ = self.changes.send(Change::Relay {
            at,
            relay: relay.clone(),
        });

        // Answer once the state is on disk. The relay has switched either
        // way; if the file cannot follow, say so (the state would not
        // survive a restart) rather than pretend.
        self.persist(inner).await?;
        Ok(SetOutcome {
            relay,
            switched: true,
        })
    }

    /// Every relay and the board, now.
    pub(crate) async fn snapshot(&self) -> Snapshot {
        let mut inner = self.inner.lock().await;
        self.snapshot_locked(&mut inner)
    }

    /// A snapshot and the changes after it, with none missed or repeated.
    pub(crate) async fn subscribe(&self) -> (Snapshot, broadcast::Receiver<Change>) {
        let mut inner = self.inner.lock().await;
        // Under the lock: no change can slip between the two.
        let changes = self.changes.subscribe();
        (self.snapshot_locked(&mut inner), changes)
    }

    fn snapshot_locked(&self, inner: &mut Inner) -> Snapshot {
        let now = Instant::now();
        Snapshot {
            at: SystemTime::now(),
            relays: (0..inner.states.len())
                .map(|ch| self.relay(inner, ch, now))
                .collect(),
            board: self.board_info(&inner.board),
        }
    }

    async fn on_board_status(&self, status: BoardStatus) {
        let mut inner = self.inner.lock().await;
        let before = inner.board;
        if status == before {
            return;
        }
        let info = self.board_info(&status);
        inner.board = status;
        metrics::gauge!("relay_board_attached").set(f64::from(u8::from(status.attached)));
        // The board's news first, then what it means for each relay.
        let _ = self.changes.send(Change::Board {
            at: SystemTime::now(),
            board: info.clone(),
        });
        if status.attached && status.attachments != before.attachments {
            tracing::info!(board = %info.description, "board attached; re-applying intended states");
            self.reapply(&mut inner).await;
        } else if !status.attached && before.attached {
            tracing::warn!(board = %info.description, "board detached; relays cannot be switched until it is back");
            let now = Instant::now();
            for ch in 0..inner.applied.len() {
                self.mark_applied(&mut inner, ch, false, now);
            }
        }
    }

    /// Puts every relay in its intended state. The board has just (re)attached,
    /// so its relays are off: every energised one switches, and counts as a
    /// cycle for the wear guard, but is never refused: the state was chosen
    /// before, and leaving it wrong would be worse.
    /// Puts the channels where `which[channel]` in their safe state
    /// (`safe[channel]`: energised?), for the relay hold. A safety action:
    /// the wear guard counts these switches but never refuses them. Returns
    /// the channels that switched.
    pub(crate) async fn apply_safe_states(
        &self,
        safe: &[bool],
        which: &[bool],
    ) -> Result<Vec<u32>, Error> {
        let mut inner = self.inner.lock().await;
        let now = Instant::now();
        let mut switched = Vec::new();
        for ch in 0..inner.states.len() {
            if !which.get(ch).copied().unwrap_or(true) {
                continue;
            }
            let target = safe.get(ch).copied().unwrap_or(false);
            if inner.states[ch].energized == target {
                continue;
            }
            // Unattached: the new intended state is applied on re-attach.
            let mut applied = false;
            if inner.board.attached {
                if let Err(e) = self.board.set(ch as u32, target).await {
                    tracing::error!(channel = ch, error = %e, "cannot apply the safe state");
                    self.mark_applied(&mut inner, ch, false, now);
                    continue;
                }
                inner.wear.record(ch, now);
                applied = true;
            }
            inner.applied[ch] = applied;
            let at = SystemTime::now();
            inner.states[ch] = ChannelState {
                energized: target,
                changed_at: Some(at),
            };
            let relay = self.relay(&mut inner, ch, now);
            let _ = self.changes.send(Change::Relay { at, relay });
            switched.push(ch as u32);
        }
        if switched.is_empty() {
            return Ok(switched);
        }
        self.persist(inner).await?;
        Ok(switched)
    }

    /// Hands the new states to the writer, lets go of the lock, and waits
    /// until they are on disk (group commit, see [`crate::persist`]).
    async fn persist(&self, mut inner: tokio::sync::MutexGuard<'_, Inner>) -> Result<(), Error> {
        inner.version += 1;
        let version = inner.version;
        self.writer.submit(version, inner.states.clone());
        drop(inner);
        self.writer
            .wait(version)
            .await
            .map_err(|reason| Error::StateWrite {
                path: self.state_file.path().to_owned(),
                reason,
            })
    }

    async fn reapply(&self, inner: &mut Inner) {
        for ch in 0..inner.states.len() {
            self.reapply_channel(inner, ch).await;
        }
    }

    /// Tries again the channels whose state the board does not hold.
    async fn reapply_unapplied(&self) {
        let mut inner = self.inner.lock().await;
        if !inner.board.attached {
            return;
        }
        for ch in 0..inner.states.len() {
            if !inner.applied[ch] {
                self.reapply_channel(&mut inner, ch).await;
            }
        }
    }

    async fn reapply_channel(&self, inner: &mut Inner, ch: usize) {
        let now = Instant::now();
        let state = inner.states[ch];
        match self.board.set(ch as u32, state.energized).await {
            Ok(()) => {
                if state.energized {
                    inner.wear.record(ch, now);
                }
                self.mark_applied(inner, ch, true, now);
            }
            Err(e) => {
                tracing::error!(channel = ch, energized = state.energized, error = %e, "cannot re-apply intended state");
                self.mark_applied(inner, ch, false, now);
            }
        }
    }

    /// Records whether the board holds channel `ch`'s state, and tells the
    /// subscribers when that flips.
    fn mark_applied(&self, inner: &mut Inner, ch: usize, applied: bool, now: Instant) {
        if inner.applied[ch] == applied {
            return;
        }
        inner.applied[ch] = applied;
        let relay = self.relay(inner, ch, now);
        let _ = self.changes.send(Change::Relay {
            at: SystemTime::now(),
            relay,
        });
    }

    fn relay(&self, inner: &mut Inner, ch: usize, now: Instant) -> Relay {
        let state = inner.states[ch];
        Relay {
            channel: ch as u32,
            energized: state.energized,
            changed_at: state.changed_at,
            label: self.labels.get(ch).cloned().unwrap_or_default(),
            switches_last_minute: inner.wear.recent(ch, now),
            max_switches_per_minute: inner.wear.limit(),
            applied: inner.applied[ch],
        }
    }

    fn board_info(&self, status: &BoardStatus) -> BoardInfo {
        BoardInfo {
            kind: self.board.kind(),
            serial_number: status.serial_number,
            attached: status.attached,
            channel_count: self.board.channel_count(),
            description: self.board.describe(status),
        }
    }
}

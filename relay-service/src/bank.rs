//! The relay bank: the service's one source of truth about its relays.
//!
//! It owns the intended state of every channel (what the relays should be
//! doing), applies it to the board, guards the relays against wear, persists
//! every change, and tells subscribers. Every operation takes one lock, so
//! switches, re-applies and subscriptions happen in a single order: a
//! subscriber's snapshot is followed by exactly the changes after it.
//!
//! A switch is durable before it happens: its new state is saved first,
//! then the relay switches, then subscribers and metrics hear of it. A
//! switch that answers an error has not happened; one that answers OK
//! survives a restart. Requests, hold expiries and plan steps all take this
//! one path ([`RelayBank::switch`]).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{Mutex, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::board::{Board, BoardKind, BoardStatus, FailsafeState};
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
    pub version: Option<u32>,
    pub hardware_failsafe: FailsafeState,
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
    /// One per channel, held for a whole switch (save, then switch): two
    /// switches of one channel never interleave, while other channels'
    /// saves share a write (group commit).
    channel_turns: Vec<Mutex<()>>,
    changes: broadcast::Sender<Change>,
    closing: CancellationToken,
    /// The service's tasks (the state writer, the board follower, the
    /// hold...): they end after [`RelayBank::close`], joined by
    /// [`RelayBank::finish`].
    tasks: TaskTracker,
}

/// Who asks for a switch, which decides how the wear guard treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// A SetRelay or a plan step: refused past the wear limit, or when the
    /// board is away.
    Request,
    /// A safe state on hold expiry: counted by the wear guard but never
    /// refused; with the board away it becomes the intended state, applied
    /// when the board is back.
    Safety,
}

struct Inner {
    /// What the relays hold (or will, once the board is back): saved.
    states: Vec<ChannelState>,
    /// Per channel, a switch being saved: not made yet.
    saving: Vec<Option<ChannelState>>,
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
        let tasks = TaskTracker::new();
        Arc::new(Self {
            board,
            labels,
            writer: StateWriter::start(state_file.clone(), closing.clone(), &tasks),
            state_file,
            channel_turns: (0..channels).map(|_| Mutex::new(())).collect(),
            inner: Mutex::new(Inner {
                saving: vec![None; channels],
                states,
                wear: WearGuard::new(channels, max_switches_per_minute),
                board: BoardStatus::default(),
                version: 0,
                applied: vec![false; channels],
            }),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
            closing,
            tasks,
        })
    }

    /// Applies the intended states if the board is attached, then follows
    /// the board in the background: every (re)attach re-applies them, every
    /// attach and detach is broadcast. Returns once the first application is
    /// done, so no request is served before it.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<(), Error> {
        let mut status = self.board.status();
        let first = status.borrow_and_update().clone();
        let attached = first.attached;
        self.on_board_status(first).await;
        metrics::gauge!("relay_board_attached").set(f64::from(u8::from(attached)));
        // Persist at once, so that a first start leaves a state file behind.
        // A full disk is not fatal: the writer says so and keeps trying,
        // and switches are refused until it succeeds.
        let version = self.submit(&mut *self.inner.lock().await);
        if let Err(reason) = self.writer.wait(version).await {
            tracing::error!(file = %self.state_file.path().display(), %reason, "cannot save the relay states at start; switches are refused until they can be saved");
        }

        let bank = Arc::clone(self);
        self.tasks.spawn(async move {
            let mut retry = tokio::time::interval(REAPPLY_EVERY);
            retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    changed = status.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let now = status.borrow_and_update().clone();
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

    /// Runs `task` as one of the service's own (ended by
    /// [`RelayBank::close`], joined by [`RelayBank::finish`]).
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// After [`RelayBank::close`]: waits for the service's tasks to end (the
    /// state writer has written what was pending).
    pub(crate) async fn finish(&self) {
        self.tasks.close();
        self.tasks.wait().await;
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

    /// Switches `channel` to `energized` for a request (SetRelay, a plan
    /// step). A no-op (no cycle, no event) when it is already in that state.
    pub(crate) async fn set(&self, channel: u32, energized: bool) -> Result<SetOutcome, Error> {
        let count = self.channel_count();
        if channel >= count {
            return Err(Error::ChannelOutOfRange { channel, count });
        }
        self.switch(channel as usize, energized, Asked::Request)
            .await
    }

    /// The one way a relay switches: checks, saves the new state, switches
    /// the relay, then tells subscribers and metrics. An error at any step
    /// leaves the relay (and what is saved) as it was.
    async fn switch(&self, ch: usize, energized: bool, asked: Asked) -> Result<SetOutcome, Error> {
        let channel = ch as u32;
        let _turn = self.channel_turns[ch].lock().await;

        // 1. Check, and hand the new state to the writer.
        let (target, version) = {
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
            if asked == Asked::Request {
                self.check_request(&mut inner, ch, energized, now)?;
            }
            let target = ChannelState {
                energized,
                changed_at: Some(SystemTime::now()),
            };
            inner.saving[ch] = Some(target);
            (target, self.submit(&mut inner))
        };

        // 2. Durable first.
        if let Err(reason) = self.writer.wait(version).await {
            let mut inner = self.inner.lock().await;
            inner.saving[ch] = None;
            // What is saved must not keep a switch that did not happen:
            // save the states without it (when the disk lets us).
            self.submit(&mut inner);
            tracing::error!(channel, energized, %reason, "switch refused: its new state cannot be saved; the relay stays as it was");
            return Err(Error::NotSaved {
                channel,
                path: self.state_file.path().to_owned(),
                reason,
            });
        }

        // 3. Then the relay.
        let mut inner = self.inner.lock().await;
        inner.saving[ch] = None;
        let now = Instant::now();
        let mut applied = false;
        if inner.board.attached {
            if let Err(source) = self.board.set(channel, energized).await {
                // Not switched: what is saved goes back to the state before,
                // and what the relay holds is unknown until a re-apply.
                self.submit(&mut inner);
                self.mark_applied(&mut inner, ch, false, now);
                return Err(Error::Board { channel, source });
            }
            inner.wear.record(ch, now);
            applied = true;
        }
        inner.applied[ch] = applied;
        inner.states[ch] = target;

        // 4. Then the news.
        let relay = self.relay(&mut inner, ch, now);
        tracing::info!(channel, energized, label = %relay.label, applied, "relay switched");
        metrics::counter!("relay_switches_total", "channel" => channel.to_string()).increment(1);
        metrics::gauge!("relay_energized", "channel" => channel.to_string())
            .set(f64::from(u8::from(energized)));
        // No subscriber is not an error.
        let _ = self.changes.send(Change::Relay {
            at: target.changed_at.unwrap_or_else(SystemTime::now),
            relay: relay.clone(),
        });
        Ok(SetOutcome {
            relay,
            switched: true,
        })
    }

    /// Whether a request may switch `ch` now: the board is there, and the
    /// wear guard allows it.
    fn check_request(
        &self,
        inner: &mut Inner,
        ch: usize,
        energized: bool,
        now: Instant,
    ) -> Result<(), Error> {
        let channel = ch as u32;
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
        Ok(())
    }

    /// Hands the writer a new version: the states, with the switches being
    /// saved in place. Returns the version to wait for.
    fn submit(&self, inner: &mut Inner) -> u64 {
        inner.version += 1;
        let states = inner
            .states
            .iter()
            .zip(&inner.saving)
            .map(|(state, saving)| saving.unwrap_or(*state))
            .collect();
        self.writer.submit(inner.version, states);
        inner.version
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
        let before = inner.board.clone();
        if status == before {
            return;
        }
        let info = self.board_info(&status);
        inner.board = status.clone();
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
            self.mark_all_unapplied(&mut inner);
        } else if status.hardware_failsafe == FailsafeState::Tripped
            && before.hardware_failsafe != FailsafeState::Tripped
        {
            // The board turned every coil off by itself. The channels are
            // being reopened; until they re-attach (and the intended states
            // are re-applied), nothing is held. The trip can reach us
            // before the detach that follows it, or with it.
            self.mark_all_unapplied(&mut inner);
        }
    }

    /// Puts the channels where `which[channel]` in their safe state
    /// (`safe[channel]`: energised?), for the relay hold. A safety action:
    /// the wear guard counts these switches but never refuses them. Each
    /// goes through [`RelayBank::switch`], durable first. Returns the
    /// channels that switched, or the first error (after trying every
    /// channel).
    pub(crate) async fn apply_safe_states(
        &self,
        safe: &[bool],
        which: &[bool],
    ) -> Result<Vec<u32>, Error> {
        let mut switched = Vec::new();
        let mut first_error = None;
        for ch in 0..self.channel_turns.len() {
            if !which.get(ch).copied().unwrap_or(true) {
                continue;
            }
            let target = safe.get(ch).copied().unwrap_or(false);
            match self.switch(ch, target, Asked::Safety).await {
                Ok(outcome) if outcome.switched => switched.push(ch as u32),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(channel = ch, error = %e, "cannot apply the safe state");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(switched),
        }
    }

    /// Puts every relay in its intended state. The board has just
    /// (re)attached, so its relays are off: every energised one switches,
    /// and counts as a cycle for the wear guard, but is never refused: the
    /// state was chosen (and saved) before, and leaving it wrong would be
    /// worse.
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

    fn mark_all_unapplied(&self, inner: &mut Inner) {
        let now = Instant::now();
        for ch in 0..inner.applied.len() {
            self.mark_applied(inner, ch, false, now);
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
            version: status.version,
            hardware_failsafe: status.hardware_failsafe,
            attached: status.attached,
            channel_count: self.board.channel_count(),
            description: self.board.describe(status),
        }
    }
}

//! Carrying out what the reconcile loop decided, one relay-service at a
//! time: each box has a [`RelayDriver`], whose task makes its switches and
//! whose other task renews its relay hold on a schedule of its own. A
//! frozen box (whose calls time out) holds up only its own tasks, never the
//! loop nor the other boxes.

use std::sync::Arc;
use std::time::Duration;

use delestage_proto::relay::v1 as rpb;
use delestage_proto::time::to_pb;
use delestage_runtime::backoff::Backoff;
use delestage_runtime::deadline;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::diff::{Refusal, Switch};
use super::link::Job;
use super::reconcile::Controller;
use crate::model::{Fallback, level_name};
use crate::store::{SwitchRecord, reason_name};

/// How long one SetRelay may take, end to end.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry back-off after a refused or failed switch.
const SWITCH_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// How often each relay-service's hold is renewed.
const HOLD_RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long one RenewHold may take.
const HOLD_RENEW_TIMEOUT: Duration = Duration::from_millis(500);
/// The holds are renewed only while the reconcile loop has completed a pass
/// this recently: a wedged loop lets the relay boxes fail safe.
const LOOP_ALIVE_WITHIN: Duration = Duration::from_secs(10);

/// One relay-service's driver: the controller it works for, and which of
/// its relay-services it drives. Cheap to clone (one per task).
#[derive(Clone)]
pub(super) struct RelayDriver {
    controller: Arc<Controller>,
    link: usize,
}

impl RelayDriver {
    pub(super) fn new(controller: Arc<Controller>, link: usize) -> Self {
        Self { controller, link }
    }

    /// Makes the switches queued for this relay-service until `closing`
    /// (the switches under way then are finished, not abandoned).
    /// The switches handed out together (one pass, different channels) go
    /// out together: the relay-service saves them in one write (its group
    /// commit) instead of one fsync pair after another, which made the
    /// eighth relay of a box wait for seven.
    pub(super) async fn switch_loop(
        self,
        mut jobs: mpsc::UnboundedReceiver<Job>,
        closing: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
                () = closing.cancelled() => return,
            };
            let mut running = tokio::task::JoinSet::new();
            let mut next = Some(first);
            while let Some(job) = next {
                let this = self.clone();
                running.spawn(async move { this.switch_one(job).await });
                next = jobs.try_recv().ok();
            }
            // Even when closing: a switch under way may have been made on
            // the box; its outcome (and its history record) must be known.
            // Each carries its own deadline.
            while running.join_next().await.is_some() {}
        }
    }

    /// One switch, then: a switch made stays in flight until its record is
    /// durable (the history task frees it); otherwise it is done.
    async fn switch_one(&self, job: Job) {
        let controller = &self.controller;
        let name = controller.enforcement.loads[job.switch.load].name.clone();
        if !self.switch(job.switch, job.at).await {
            controller.inner.lock().await.in_flight.remove(&name);
            // Decide again with this outcome (a refusal, a retry time).
            controller.wake.notify_one();
        }
    }

    /// Renews this relay-service's hold every [`HOLD_RENEW_EVERY`] while
    /// the reconcile loop is alive and the box is reachable, until
    /// `closing`. If the controller hangs or loses the box, the renewals
    /// stop and the box returns its channels to their safe states.
    pub(super) async fn hold_loop(self, closing: CancellationToken) {
        let mut tick = tokio::time::interval(HOLD_RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = closing.cancelled() => return,
            }
            if self.controller.alive(LOOP_ALIVE_WITHIN) && self.controller.connected(self.link) {
                self.renew_hold().await;
            }
        }
    }

    async fn renew_hold(&self) {
        let relay = &self.controller.links[self.link].relay;
        let mut client = relay.client.clone();
        let mut request = tonic::Request::new(rpb::RenewHoldRequest {
            holder: "controller".to_owned(),
            channels: self.held_channels(),
        });
        request.set_timeout(HOLD_RENEW_TIMEOUT);
        match tokio::time::timeout(HOLD_RENEW_TIMEOUT, client.renew_hold(request)).await {
            Ok(Ok(answer)) if answer.get_ref().had_expired => {
                tracing::warn!(
                    relay_service = %relay.name,
                    "its relay hold had run out (channels went to their safe states); putting the plan back"
                );
                self.controller.wake.notify_one();
            }
            Ok(Ok(_)) => {}
            // An older relay-service without the hold.
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {}
            Ok(Err(s)) => {
                tracing::debug!(relay_service = %relay.name, error = %s.message(), "cannot renew the relay hold")
            }
            Err(_) => {
                tracing::debug!(relay_service = %relay.name, "renewing the relay hold timed out")
            }
        }
    }

    /// The plan for this relay-service's channels, as the box follows it
    /// if it loses us: each load's planned relay states, then the state
    /// its `when_controller_lost` asks for.
    fn held_channels(&self) -> Vec<rpb::HeldChannel> {
        let controller = &self.controller;
        let plan = controller.plan();
        let name = &controller.links[self.link].relay.name;
        controller
            .enforcement
            .loads
            .iter()
            .zip(&plan.loads)
            .filter(|(load, _)| load.relay.relay_service == *name)
            .filter_map(|(load, lp)| {
                let mut schedule: Vec<rpb::ScheduledState> = Vec::new();
                for interval in &lp.intervals {
                    let energized = load.wiring.energized_for(interval.powered);
                    // One step per change of the relay, not per reason.
                    if schedule.last().is_some_and(|s| s.energized == energized) {
                        continue;
                    }
                    schedule.push(rpb::ScheduledState {
                        from: Some(to_pb(interval.start)),
                        energized,
                    });
                }
                let last = schedule.last()?.energized;
                let safe_energized = match load.when_controller_lost {
                    Fallback::Restore => load.wiring.energized_for(true),
                    Fallback::Shed => load.wiring.energized_for(false),
                    Fallback::Keep => last,
                };
                // The horizon ends the schedule.
                schedule.push(rpb::ScheduledState {
                    from: Some(to_pb(plan.horizon)),
                    energized: safe_energized,
                });
                Some(rpb::HeldChannel {
                    channel: load.relay.channel,
                    schedule,
                    safe_energized,
                })
            })
            .collect()
    }

    /// Carries out one switch on this relay-service, and records its
    /// outcome: a refusal with its retry time, or a history record queued
    /// for the history task (true).
    async fn switch(&self, switch: Switch, now: Timestamp) -> bool {
        let controller = &self.controller;
        let load = &controller.enforcement.loads[switch.load];
        let mut client = controller.links[self.link].relay.client.clone();
        let mut request = tonic::Request::new(rpb::SetRelayRequest {
            channel: load.relay.channel,
            energized: load.wiring.energized_for(switch.to),
        });
        // Both deadlines: a box that reads this after waking from a freeze
        // refuses it rather than switching behind our back.
        deadline::set(&mut request, SWITCH_TIMEOUT, Timestamp::now());
        tracing::debug!(load = %load.name, relay = %load.relay, powered = switch.to, "switching");
        let result = tokio::time::timeout(SWITCH_TIMEOUT, client.set_relay(request)).await;
        let outcome = match result {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err((status.message().to_owned(), retry_hint(&status))),
            Err(_) => Err((format!("no answer within {SWITCH_TIMEOUT:?}"), None)),
        };
        let mut inner = controller.inner.lock().await;
        match outcome {
            // The relay's state itself comes from WatchRelays only: the
            // answer may be older than an event already seen (a switch
            // answered late, then a safe-state release), and must not
            // overwrite it.
            Ok(answer) if !answer.switched => {
                // Already in that state (the event had not reached us yet):
                // nothing switched, nothing to record.
                inner.refusals.remove(&load.name);
                false
            }
            Ok(_) => {
                inner.refusals.remove(&load.name);
                let record = SwitchRecord {
                    at: now,
                    load: load.name.clone(),
                    relay: load.relay.clone(),
                    from_powered: switch.from,
                    to_powered: switch.to,
                    reason: switch.reason,
                    level: switch.level,
                    watched_since: Some(controller.started_at),
                    tempo_source: controller.tempo_source_of(switch.reason, now),
                    delta_va: None,
                };
                tracing::info!(
                    load = %record.load,
                    relay = %record.relay,
                    powered = record.to_powered,
                    reason = reason_name(record.reason),
                    level = level_name(record.level),
                    "switched"
                );
                metrics::counter!(
                    "controller_switches_total",
                    "load" => record.load.clone(),
                    "to" => if record.to_powered { "on" } else { "off" }
                )
                .increment(1);
                inner
                    .power
                    .switched(&record.load, record.at, record.to_powered);
                controller.history.push(record);
                true
            }
            Err((message, hint)) => {
                let attempts = inner
                    .refusals
                    .get(&load.name)
                    .map_or(1, |r| r.attempts.saturating_add(1));
                let backoff = hint.unwrap_or_else(|| SWITCH_RETRY.delay(attempts));
                metrics::counter!("controller_reconcile_errors_total", "load" => load.name.clone())
                    .increment(1);
                tracing::warn!(
                    load = %load.name,
                    relay = %load.relay,
                    powered = switch.to,
                    error = %message,
                    attempts,
                    retry_in = ?backoff,
                    "switch refused"
                );
                // From the moment the answer came, not from the pass.
                let retry_at = Timestamp::now()
                    + SignedDuration::try_from(backoff).unwrap_or(SignedDuration::MAX);
                inner.refusals.insert(
                    load.name.clone(),
                    Refusal {
                        message: format!(
                            "switching {} failed: {message}",
                            if switch.to { "on" } else { "off" }
                        ),
                        attempts,
                        retry_at,
                    },
                );
                false
            }
        }
    }
}

/// The relay-service's `grpc-retry-pushback-ms` hint (the wear guard's).
fn retry_hint(status: &tonic::Status) -> Option<Duration> {
    status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
}

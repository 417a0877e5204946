//! Enforcement's I/O: the reconcile loop. On every change (forecast,
//! relays, overrides) and at least once a second, it computes the plan for
//! now ([`crate::policy`]), decides what to switch ([`super::diff`]),
//! carries the switches out on the relay-services, renews their holds, and
//! publishes the status ([`super::status`]) and the events.
//!
//! A refused switch (wear guard, unplugged board, unreachable box) is
//! retried with back-off and shown in the load's status; it never holds up
//! the other loads.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use delestage_proto::forecast::v1::SignalLevel as PbLevel;
use delestage_proto::relay::v1 as rpb;
use delestage_runtime::backoff::Backoff;
use delestage_runtime::client::AuthedChannel;
use jiff::{SignedDuration, Timestamp};
use rpb::relay_service_client::RelayServiceClient;
use tokio::sync::{Mutex, Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::diff::{self, Refusal, Switch};
use super::observe::{self, RelayView};
use super::status::{self, Since, Status, StatusInput};
use crate::Error;
use crate::follow::{ForecastSeen, RelaySeen};
use crate::model::{Load, SignalLevel, level_name};
use crate::policy::{self, Override, Plan, PlanInput};
use crate::store::{Store, StoredOverride, SwitchRecord, reason_name};

/// Reconcile at least this often (plan boundaries, expiring overrides,
/// retries), even when nothing pokes the loop.
const TICK: Duration = Duration::from_secs(1);
/// How long one SetRelay may take.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry back-off after a refused or failed switch.
const SWITCH_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
/// How long one RenewHold may take.
const HOLD_RENEW_TIMEOUT: Duration = Duration::from_millis(500);
/// Without a forecast, plan this far ahead.
const DEFAULT_HORIZON: Duration = Duration::from_secs(3600);

/// What enforcement needs of the settings, and nothing else.
#[derive(Debug, Clone)]
pub(crate) struct Enforcement {
    pub loads: Vec<Load>,
    pub restore_stagger: Duration,
    pub forecast_max_age: Duration,
}

/// A relay-service as the controller uses it.
pub(crate) struct RelayLink {
    pub name: String,
    pub endpoint: String,
    pub client: RelayServiceClient<AuthedChannel>,
    pub seen: Arc<watch::Sender<RelaySeen>>,
}

/// What WatchEvents streams.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Switched(SwitchRecord),
    LoadChanged {
        at: Timestamp,
        status: status::LoadStatus,
    },
}

/// Behind the controller's (async) lock. Every access to the store goes
/// through that lock, so the store's own (blocking) mutex is never
/// contended: it only lets a write move to a blocking thread.
struct Inner {
    store: Arc<std::sync::Mutex<Store>>,
    refusals: HashMap<String, Refusal>,
    since: Since,
}

impl Inner {
    /// The store, to read (or to write at start-up).
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a write (an fsync) on a blocking thread, not on an async
    /// worker. The caller holds the controller's lock throughout, so writes
    /// stay in order and readers wait without blocking a thread.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            f(&mut store.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await
        .map_err(|e| Error::Store(format!("the state writer failed: {e}")))?
    }
}

/// The controller's state, shared by the reconcile loop and the gRPC side.
pub(crate) struct Controller {
    enforcement: Enforcement,
    inner: Mutex<Inner>,
    forecast: watch::Receiver<ForecastSeen>,
    relays: Vec<RelayLink>,
    /// The relay-services' names and endpoints, in `relays`' order.
    names: Vec<String>,
    endpoints: Vec<String>,
    plan: watch::Sender<Arc<Plan>>,
    status: watch::Sender<Arc<Status>>,
    events: broadcast::Sender<Event>,
    /// Poked by the followers and by override changes.
    pub wake: Arc<Notify>,
}

impl Controller {
    pub(crate) fn new(
        enforcement: Enforcement,
        store: Store,
        forecast: watch::Receiver<ForecastSeen>,
        relays: Vec<RelayLink>,
        wake: Arc<Notify>,
    ) -> Self {
        let now = Timestamp::now();
        let empty_plan = Plan {
            computed_at: now,
            horizon: now,
            loads: Vec::new(),
        };
        Self {
            enforcement,
            inner: Mutex::new(Inner {
                store: Arc::new(std::sync::Mutex::new(store)),
                refusals: HashMap::new(),
                since: Since::new(),
            }),
            forecast,
            names: relays.iter().map(|r| r.name.clone()).collect(),
            endpoints: relays.iter().map(|r| r.endpoint.clone()).collect(),
            relays,
            plan: watch::channel(Arc::new(empty_plan)).0,
            status: watch::channel(Arc::new(Status::starting(now))).0,
            events: broadcast::channel(256).0,
            wake,
        }
    }

    pub(crate) fn plan(&self) -> Arc<Plan> {
        Arc::clone(&self.plan.borrow())
    }

    pub(crate) fn status(&self) -> Arc<Status> {
        Arc::clone(&self.status.borrow())
    }

    pub(crate) fn watch_status(&self) -> watch::Receiver<Arc<Status>> {
        self.status.subscribe()
    }

    pub(crate) fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn load(&self, name: &str) -> Result<&Load, Error> {
        self.enforcement
            .loads
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| Error::UnknownLoad(name.to_owned()))
    }

    /// Forces `load` on or off until `until`.
    pub(crate) async fn set_override(
        &self,
        load: &str,
        powered: bool,
        until: Timestamp,
    ) -> Result<StoredOverride, Error> {
        self.load(load)?;
        let now = Timestamp::now();
        if until <= now {
            return Err(Error::InvalidArgument(format!(
                "until: {until} is not in the future"
            )));
        }
        let o = StoredOverride {
            powered,
            until,
            set_at: now,
        };
        let name = load.to_owned();
        self.inner
            .lock()
            .await
            .write(move |store| store.set_override(&name, o))
            .await?;
        tracing::info!(load, powered, %until, "override set");
        self.wake.notify_one();
        Ok(o)
    }

    /// Removes `load`'s override; false if it had none.
    pub(crate) async fn clear_override(&self, load: &str) -> Result<bool, Error> {
        self.load(load)?;
        let name = load.to_owned();
        let cleared = self
            .inner
            .lock()
            .await
            .write(move |store| store.clear_override(&name))
            .await?;
        if cleared {
            tracing::info!(load, "override cleared");
            self.wake.notify_one();
        }
        Ok(cleared)
    }

    pub(crate) async fn history(
        &self,
        load: Option<&str>,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Vec<SwitchRecord> {
        self.inner.lock().await.store().history(load, since, limit)
    }

    /// Reconciles until `closing` turns true.
    pub(crate) async fn run(self: Arc<Self>, closing: CancellationToken) {
        // A restart must not act on "no forecast yet": wait for the first
        // answer from the forecast-service (or its failure).
        let mut forecast = self.forecast.clone();
        tokio::select! {
            _ = forecast.wait_for(|f| f.settled) => {}
            _ = closing.cancelled() => return,
        }
        loop {
            self.reconcile_once().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = closing.cancelled() => return,
            }
        }
    }

    /// One pass: plan, compare, switch what differs, publish status.
    pub(crate) async fn reconcile_once(&self) {
        let now = Timestamp::now();
        let forecast = self.forecast.borrow().clone();
        let seen = self.seen();
        let relays = RelayView {
            names: &self.names,
            seen: &seen,
        };
        let forecast_status =
            status::forecast_status(&forecast, self.enforcement.forecast_max_age, now);
        let usable_hours = forecast_status.usable.then(|| Arc::clone(&forecast.hours));
        let level = usable_hours
            .as_deref()
            .and_then(|h| policy::hour_at(h, now))
            .map(|h| h.level);

        let (plan, switches) = {
            let mut inner = self.inner.lock().await;
            let any_expired = inner.store().overrides().values().any(|o| o.until <= now);
            if any_expired {
                match inner.write(move |store| store.expire_overrides(now)).await {
                    Ok(expired) => {
                        for load in expired {
                            tracing::info!(%load, "override expired");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot save the overrides"),
                }
            }
            let store = inner.store();
            let overrides: HashMap<String, Override> = store
                .overrides()
                .iter()
                .map(|(k, o)| {
                    (
                        k.clone(),
                        Override {
                            powered: o.powered,
                            until: o.until,
                        },
                    )
                })
                .collect();
            let states = observe::load_states(&self.enforcement.loads, &store, &relays);
            let plan = policy::plan(&PlanInput {
                now,
                loads: &self.enforcement.loads,
                forecast: usable_hours.as_deref().map(Vec::as_slice),
                overrides: &overrides,
                states: &states,
                last_restore_at: store.last_restore_at(),
                restore_stagger: self.enforcement.restore_stagger,
                default_horizon: DEFAULT_HORIZON,
            });
            drop(store);
            let decided = diff::diff(
                &self.enforcement.loads,
                &plan,
                &relays,
                &inner.refusals,
                level,
                now,
            );
            for i in decided.settled {
                inner.refusals.remove(&self.enforcement.loads[i].name);
            }
            for (i, why) in decided.blocked {
                inner.refusals.insert(
                    self.enforcement.loads[i].name.clone(),
                    Refusal {
                        message: why,
                        attempts: 0,
                        retry_at: now,
                    },
                );
            }
            (plan, decided.switches)
        };

        for switch in switches {
            self.switch(switch, now).await;
        }
        self.renew_holds(&seen).await;

        let plan = Arc::new(plan);
        self.plan.send_replace(Arc::clone(&plan));
        self.publish_status(&plan, forecast_status, level, now)
            .await;
    }

    /// What each relay-service was last seen doing.
    fn seen(&self) -> Vec<RelaySeen> {
        self.relays
            .iter()
            .map(|r| r.seen.borrow().clone())
            .collect()
    }

    /// Renews the relay hold of every reachable relay-service: proof that
    /// this loop is alive. If the loop hangs, the renewals stop and the
    /// relay-services return their channels to their safe states.
    async fn renew_holds(&self, relays: &[RelaySeen]) {
        for (link, seen) in self.relays.iter().zip(relays) {
            if !seen.connected {
                continue;
            }
            let mut client = link.client.clone();
            let request = rpb::RenewHoldRequest {
                holder: "controller".to_owned(),
            };
            match tokio::time::timeout(HOLD_RENEW_TIMEOUT, client.renew_hold(request)).await {
                Ok(Ok(answer)) if answer.get_ref().had_expired => tracing::warn!(
                    relay_service = %link.name,
                    "its relay hold had run out (channels went to their safe states); putting the plan back"
                ),
                Ok(Ok(_)) => {}
                // An older relay-service without the hold.
                Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {}
                Ok(Err(s)) => {
                    tracing::debug!(relay_service = %link.name, error = %s.message(), "cannot renew the relay hold")
                }
                Err(_) => {
                    tracing::debug!(relay_service = %link.name, "renewing the relay hold timed out")
                }
            }
        }
    }

    /// Carries out one switch, and records its outcome: a history record
    /// and an event, or a refusal with its retry time.
    async fn switch(&self, switch: Switch, now: Timestamp) {
        let load = &self.enforcement.loads[switch.load];
        let Some(link) = self
            .relays
            .iter()
            .find(|r| r.name == load.relay.relay_service)
        else {
            return;
        };
        let mut client = link.client.clone();
        let request = rpb::SetRelayRequest {
            channel: load.relay.channel,
            energized: load.wiring.energized_for(switch.to),
        };
        let result = tokio::time::timeout(SWITCH_TIMEOUT, client.set_relay(request)).await;
        let outcome = match result {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err((status.message().to_owned(), retry_hint(&status))),
            Err(_) => Err((format!("no answer within {SWITCH_TIMEOUT:?}"), None)),
        };
        let mut inner = self.inner.lock().await;
        match outcome {
            // The relay's state itself comes from WatchRelays only: the
            // answer may be older than an event already seen (a switch
            // answered late, then a safe-state release), and must not
            // overwrite it.
            Ok(answer) if !answer.switched => {
                // Already in that state (the event had not reached us yet):
                // nothing switched, nothing to record.
                inner.refusals.remove(&load.name);
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
                let durable = record.clone();
                if let Err(e) = inner.write(move |store| store.record(durable)).await {
                    tracing::error!(error = %e, "cannot record the switch in the history");
                }
                let _ = self.events.send(Event::Switched(record));
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
            }
        }
    }

    async fn publish_status(
        &self,
        plan: &Plan,
        forecast: status::ForecastStatus,
        level: Option<SignalLevel>,
        now: Timestamp,
    ) {
        // Seen again: the switches just made have moved the relays on.
        let seen = self.seen();
        let status = {
            let mut guard = self.inner.lock().await;
            let inner = &mut *guard;
            let store = inner.store.lock().unwrap_or_else(PoisonError::into_inner);
            status::build(
                StatusInput {
                    loads: &self.enforcement.loads,
                    plan,
                    relays: RelayView {
                        names: &self.names,
                        seen: &seen,
                    },
                    endpoints: &self.endpoints,
                    refusals: &inner.refusals,
                    overrides: store.overrides(),
                    forecast,
                    level,
                    now,
                },
                &mut inner.since,
            )
        };
        record_gauges(&status);
        let previous = self.status();
        if previous.same_as(&status) {
            return;
        }
        for load in &status.loads {
            let before = previous
                .loads
                .iter()
                .find(|l| l.load.name == load.load.name);
            if before != Some(load) {
                let _ = self.events.send(Event::LoadChanged {
                    at: now,
                    status: load.clone(),
                });
            }
        }
        self.status.send_replace(Arc::new(status));
    }
}

/// The figures a dashboard wants at a glance.
fn record_gauges(status: &Status) {
    // The gRPC numbers: 0 unknown, 1 carbon-free ... 4 red.
    let level = status.level.map_or(PbLevel::Unspecified, PbLevel::from);
    metrics::gauge!("controller_level").set(f64::from(level as i32));
    metrics::gauge!("controller_forecast_usable").set(f64::from(u8::from(status.forecast.usable)));
    let cut = status
        .loads
        .iter()
        .filter(|l| l.powered == Some(false))
        .count();
    metrics::gauge!("controller_loads_cut").set(cut as f64);
    let mismatched = status
        .loads
        .iter()
        .filter(|l| l.powered.is_some_and(|p| p != l.desired))
        .count();
    metrics::gauge!("controller_loads_not_as_planned").set(mismatched as f64);
    for r in &status.relay_services {
        metrics::gauge!("controller_relay_service_reachable", "relay_service" => r.name.clone())
            .set(f64::from(u8::from(r.reachable)));
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

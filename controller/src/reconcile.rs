//! Enforcement: level-triggered reconciliation, like a Kubernetes
//! controller. On every change (forecast, relays, overrides) and at least
//! once a second, the controller computes the plan for now, compares each
//! load's planned state with its relay's actual state (through the wiring),
//! and switches only what differs: cuts first, least important first, then
//! restores, most important first. A refused switch (wear guard, unplugged
//! board, unreachable box) is retried with back-off and shown in the load's
//! status; it never holds up the other loads.
//!
//! The [`Controller`] also keeps what the gRPC side shows: the last plan,
//! the status, and a stream of events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use delestage_proto::relay::v1 as rpb;
use delestage_runtime::client::AuthedChannel;
use jiff::{SignedDuration, Timestamp};
use rpb::relay_service_client::RelayServiceClient;
use tokio::sync::{Mutex, Notify, broadcast, watch};
use tokio::time::Instant;

use crate::Error;
use crate::config::Settings;
use crate::follow::{ForecastSeen, RelaySeen};
use crate::model::{Load, SignalLevel, level_name};
use crate::policy::{self, LoadState, Override, Plan, PlanInput, Reason};
use crate::store::{Store, StoredOverride, SwitchRecord, reason_name};

/// Reconcile at least this often (plan boundaries, expiring overrides,
/// retries), even when nothing pokes the loop.
const TICK: Duration = Duration::from_secs(1);
/// How long one SetRelay may take.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry back-off after a refused or failed switch: from...
const RETRY_MIN: Duration = Duration::from_secs(1);
/// ...doubling up to.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How long one RenewHold may take.
const HOLD_RENEW_TIMEOUT: Duration = Duration::from_millis(500);
/// Without a forecast, plan this far ahead.
const DEFAULT_HORIZON: Duration = Duration::from_secs(3600);

/// A relay-service as the controller uses it.
pub struct RelayLink {
    pub name: String,
    pub endpoint: String,
    pub client: RelayServiceClient<AuthedChannel>,
    pub seen: Arc<watch::Sender<RelaySeen>>,
}

/// Where the forecast stands, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastStatus {
    pub usable: bool,
    pub fetched_at: Option<Timestamp>,
    pub reason: String,
}

/// One load's status.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadStatus {
    pub load: Load,
    pub desired: bool,
    pub reason: Reason,
    pub since: Timestamp,
    /// From the relay; `None` when unknown.
    pub powered: Option<bool>,
    pub next_change: Option<(Timestamp, bool)>,
    pub override_: Option<StoredOverride>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelayServiceStatus {
    pub name: String,
    pub endpoint: String,
    pub reachable: bool,
    pub attached: bool,
    pub error: Option<String>,
}

/// Everything GetStatus shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub at: Timestamp,
    pub level: SignalLevel,
    pub forecast: ForecastStatus,
    pub loads: Vec<LoadStatus>,
    pub relay_services: Vec<RelayServiceStatus>,
}

impl Status {
    /// Equal but for the time it was computed.
    fn same_as(&self, other: &Status) -> bool {
        self.level == other.level
            && self.forecast == other.forecast
            && self.loads == other.loads
            && self.relay_services == other.relay_services
    }
}

/// What WatchEvents streams.
#[derive(Debug, Clone)]
pub enum Event {
    Switched(SwitchRecord),
    LoadChanged { at: Timestamp, status: LoadStatus },
}

/// A switch that failed, and when to try again.
#[derive(Debug, Clone)]
struct Refusal {
    message: String,
    attempts: u32,
    retry_at: Instant,
}

struct Inner {
    store: Store,
    refusals: HashMap<String, Refusal>,
    /// Since when each load's (desired, reason) has held.
    since: HashMap<String, (bool, Reason, Timestamp)>,
}

/// The controller's state, shared by the reconcile loop and the gRPC side.
pub struct Controller {
    settings: Settings,
    inner: Mutex<Inner>,
    forecast: watch::Receiver<ForecastSeen>,
    relays: Vec<RelayLink>,
    plan: watch::Sender<Arc<Plan>>,
    status: watch::Sender<Arc<Status>>,
    events: broadcast::Sender<Event>,
    /// Poked by the followers and by override changes.
    pub wake: Arc<Notify>,
}

/// One switch to make.
struct Action {
    load: Load,
    link: usize,
    from: bool,
    to: bool,
    reason: Reason,
    level: SignalLevel,
}

impl Controller {
    pub fn new(
        settings: Settings,
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
        let empty_status = Status {
            at: now,
            level: SignalLevel::Unspecified,
            forecast: ForecastStatus {
                usable: false,
                fetched_at: None,
                reason: "starting".to_owned(),
            },
            loads: Vec::new(),
            relay_services: Vec::new(),
        };
        Self {
            settings,
            inner: Mutex::new(Inner {
                store,
                refusals: HashMap::new(),
                since: HashMap::new(),
            }),
            forecast,
            relays,
            plan: watch::channel(Arc::new(empty_plan)).0,
            status: watch::channel(Arc::new(empty_status)).0,
            events: broadcast::channel(256).0,
            wake,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn plan(&self) -> Arc<Plan> {
        Arc::clone(&self.plan.borrow())
    }

    pub fn status(&self) -> Arc<Status> {
        Arc::clone(&self.status.borrow())
    }

    pub fn watch_status(&self) -> watch::Receiver<Arc<Status>> {
        self.status.subscribe()
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn load(&self, name: &str) -> Result<&Load, Error> {
        self.settings
            .loads
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| Error::UnknownLoad(name.to_owned()))
    }

    /// Forces `load` on or off until `until`.
    pub async fn set_override(
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
        self.inner.lock().await.store.set_override(load, o)?;
        tracing::info!(load, powered, %until, "override set");
        self.wake.notify_one();
        Ok(o)
    }

    /// Removes `load`'s override; false if it had none.
    pub async fn clear_override(&self, load: &str) -> Result<bool, Error> {
        self.load(load)?;
        let cleared = self.inner.lock().await.store.clear_override(load)?;
        if cleared {
            tracing::info!(load, "override cleared");
            self.wake.notify_one();
        }
        Ok(cleared)
    }

    pub async fn history(
        &self,
        load: Option<&str>,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Vec<SwitchRecord> {
        self.inner.lock().await.store.history(load, since, limit)
    }

    /// Reconciles until `closing` turns true.
    pub async fn run(self: Arc<Self>, mut closing: watch::Receiver<bool>) {
        // A restart must not act on "no forecast yet": wait for the first
        // answer from the forecast-service (or its failure).
        let mut forecast = self.forecast.clone();
        tokio::select! {
            _ = forecast.wait_for(|f| f.settled) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        loop {
            self.reconcile_once().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
        }
    }

    /// One pass: plan, compare, switch what differs, publish status.
    pub async fn reconcile_once(&self) {
        let now = Timestamp::now();
        let forecast = self.forecast.borrow().clone();
        let relays: Vec<RelaySeen> = self
            .relays
            .iter()
            .map(|r| r.seen.borrow().clone())
            .collect();
        let forecast_status = self.forecast_status(&forecast, now);
        let usable_hours = forecast_status.usable.then(|| Arc::clone(&forecast.hours));

        let (plan, actions) = {
            let mut inner = self.inner.lock().await;
            match inner.store.expire_overrides(now) {
                Ok(expired) => {
                    for load in expired {
                        tracing::info!(%load, "override expired");
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot save the overrides"),
            }
            let overrides: HashMap<String, Override> = inner
                .store
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
            let states = self.load_states(&inner.store, &relays);
            let plan = policy::plan(&PlanInput {
                now,
                loads: &self.settings.loads,
                forecast: usable_hours.as_deref().map(Vec::as_slice),
                overrides: &overrides,
                states: &states,
                last_restore_at: inner.store.last_restore_at(),
                restore_stagger: self.settings.restore_stagger,
                default_horizon: DEFAULT_HORIZON,
            });
            let level = usable_hours
                .as_deref()
                .and_then(|h| policy::hour_at(h, now))
                .map_or(SignalLevel::Unspecified, |h| h.level);
            let actions = self.actions(&mut inner, &plan, &relays, now, level);
            (plan, actions)
        };

        for action in actions {
            self.switch(action, now).await;
        }
        self.renew_holds(&relays).await;

        let plan = Arc::new(plan);
        self.plan.send_replace(Arc::clone(&plan));
        self.publish_status(&plan, &forecast, forecast_status, now)
            .await;
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

    fn forecast_status(&self, f: &ForecastSeen, now: Timestamp) -> ForecastStatus {
        let max_age =
            SignedDuration::try_from(self.settings.forecast_max_age).unwrap_or(SignedDuration::MAX);
        let reason = if !f.settled {
            Some("waiting for the forecast-service".to_owned())
        } else if !f.connected {
            Some(
                f.problem
                    .clone()
                    .unwrap_or_else(|| "forecast-service unreachable".to_owned()),
            )
        } else if f.hours.is_empty() {
            Some(
                f.problem
                    .clone()
                    .unwrap_or_else(|| "the forecast is empty".to_owned()),
            )
        } else if let Some(fetched) = f.fetched_at
            && now.duration_since(fetched) > max_age
        {
            Some(format!(
                "the forecast was fetched at {fetched}, longer ago than forecast_max_age ({})",
                humantime::format_duration(self.settings.forecast_max_age)
            ))
        } else if f.stale {
            Some("the forecast-service says its forecast is stale".to_owned())
        } else {
            None
        };
        ForecastStatus {
            usable: reason.is_none(),
            fetched_at: f.fetched_at,
            reason: reason.unwrap_or_default(),
        }
    }

    /// What each load is doing now, as the policy needs it: the relay's
    /// actual state when known (with the time of our last switch, if that
    /// switch is what put it there), else what we last commanded.
    fn load_states(&self, store: &Store, relays: &[RelaySeen]) -> HashMap<String, LoadState> {
        let mut states = HashMap::new();
        for load in &self.settings.loads {
            let last = store.last_switch(&load.name);
            let state = match self.actual(load, relays) {
                Some(powered) => LoadState {
                    powered,
                    since: last.filter(|r| r.to_powered == powered).map(|r| r.at),
                },
                None => match last {
                    Some(r) => LoadState {
                        powered: r.to_powered,
                        since: Some(r.at),
                    },
                    None => continue,
                },
            };
            states.insert(load.name.clone(), state);
        }
        states
    }

    fn link_index(&self, load: &Load) -> Option<usize> {
        self.relays
            .iter()
            .position(|r| r.name == load.relay.relay_service)
    }

    /// Whether the load is powered, from its relay; `None` if unknown.
    fn actual(&self, load: &Load, relays: &[RelaySeen]) -> Option<bool> {
        let seen = &relays[self.link_index(load)?];
        if !seen.connected {
            return None;
        }
        let energized = *seen.energized.get(load.relay.channel as usize)?;
        Some(load.wiring.powered_when(energized))
    }

    /// Why a load's relay cannot be switched now, if it cannot.
    fn blocked(&self, load: &Load, relays: &[RelaySeen]) -> Option<String> {
        let Some(i) = self.link_index(load) else {
            return Some(format!(
                "relay-service {:?} is not configured",
                load.relay.relay_service
            ));
        };
        let seen = &relays[i];
        if !seen.settled {
            return Some(format!(
                "waiting for relay-service {:?}",
                load.relay.relay_service
            ));
        }
        if !seen.connected {
            return Some(format!(
                "relay-service {:?} unreachable: {}",
                load.relay.relay_service,
                seen.problem.as_deref().unwrap_or("no connection")
            ));
        }
        if load.relay.channel as usize >= seen.energized.len() {
            return Some(format!(
                "relay-service {:?} has no channel {} (it has 0..={}); fix the config",
                load.relay.relay_service,
                load.relay.channel,
                seen.energized.len().saturating_sub(1)
            ));
        }
        if !seen.attached {
            return Some(format!(
                "relay-service {:?}: the board is not attached",
                load.relay.relay_service
            ));
        }
        None
    }

    /// The switches to make now, in order: cuts (least important first),
    /// then restores (most important first).
    fn actions(
        &self,
        inner: &mut Inner,
        plan: &Plan,
        relays: &[RelaySeen],
        now: Timestamp,
        level: SignalLevel,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for (load, lp) in self.settings.loads.iter().zip(&plan.loads) {
            let Some(interval) = lp.at(now) else { continue };
            let Some(actual) = self.actual(load, relays) else {
                continue;
            };
            if actual == interval.powered {
                inner.refusals.remove(&load.name);
                continue;
            }
            if let Some(why) = self.blocked(load, relays) {
                inner.refusals.insert(
                    load.name.clone(),
                    Refusal {
                        message: why,
                        attempts: 0,
                        retry_at: Instant::now(),
                    },
                );
                continue;
            }
            if inner
                .refusals
                .get(&load.name)
                .is_some_and(|r| r.attempts > 0 && r.retry_at > Instant::now())
            {
                continue;
            }
            let Some(link) = self.link_index(load) else {
                continue;
            };
            actions.push(Action {
                load: load.clone(),
                link,
                from: actual,
                to: interval.powered,
                reason: interval.reason,
                level,
            });
        }
        actions.sort_by(|a, b| {
            // Cuts before restores; cuts least important first, restores
            // most important first.
            a.to.cmp(&b.to).then_with(|| {
                if a.to {
                    b.load.priority.cmp(&a.load.priority)
                } else {
                    a.load.priority.cmp(&b.load.priority)
                }
            })
        });
        actions
    }

    async fn switch(&self, action: Action, now: Timestamp) {
        let link = &self.relays[action.link];
        let energized = action.load.wiring.energized_for(action.to);
        let mut client = link.client.clone();
        let request = rpb::SetRelayRequest {
            channel: action.load.relay.channel,
            energized,
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
                inner.refusals.remove(&action.load.name);
            }
            Ok(_) => {
                inner.refusals.remove(&action.load.name);
                let record = SwitchRecord {
                    at: now,
                    load: action.load.name.clone(),
                    relay: action.load.relay.clone(),
                    from_powered: action.from,
                    to_powered: action.to,
                    reason: action.reason,
                    level: action.level,
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
                if let Err(e) = inner.store.record(record.clone()) {
                    tracing::error!(error = %e, "cannot record the switch in the history");
                }
                let _ = self.events.send(Event::Switched(record));
            }
            Err((message, hint)) => {
                let attempts = inner
                    .refusals
                    .get(&action.load.name)
                    .map_or(1, |r| r.attempts.saturating_add(1));
                let backoff = hint.unwrap_or_else(|| {
                    RETRY_MIN
                        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(10)))
                        .min(RETRY_MAX)
                });
                metrics::counter!("controller_reconcile_errors_total", "load" => action.load.name.clone())
                    .increment(1);
                tracing::warn!(
                    load = %action.load.name,
                    relay = %action.load.relay,
                    powered = action.to,
                    error = %message,
                    attempts,
                    retry_in = ?backoff,
                    "switch refused"
                );
                inner.refusals.insert(
                    action.load.name.clone(),
                    Refusal {
                        message: format!(
                            "switching {} failed: {message}",
                            if action.to { "on" } else { "off" }
                        ),
                        attempts,
                        retry_at: Instant::now() + backoff,
                    },
                );
            }
        }
    }

    async fn publish_status(
        &self,
        plan: &Plan,
        forecast: &ForecastSeen,
        forecast_status: ForecastStatus,
        now: Timestamp,
    ) {
        let relays: Vec<RelaySeen> = self
            .relays
            .iter()
            .map(|r| r.seen.borrow().clone())
            .collect();
        let mut inner = self.inner.lock().await;
        let mut loads = Vec::with_capacity(self.settings.loads.len());
        for (load, lp) in self.settings.loads.iter().zip(&plan.loads) {
            let Some(interval) = lp.at(now) else { continue };
            let since = match inner.since.get(&load.name) {
                Some((d, r, t)) if *d == interval.powered && *r == interval.reason => *t,
                _ => now,
            };
            inner.since.insert(
                load.name.clone(),
                (interval.powered, interval.reason, since),
            );
            let powered = self.actual(load, &relays);
            let error = match (inner.refusals.get(&load.name), powered) {
                (Some(r), _) => Some(r.message.clone()),
                (None, None) => self.blocked(load, &relays),
                (None, Some(_)) => None,
            };
            loads.push(LoadStatus {
                load: load.clone(),
                desired: interval.powered,
                reason: interval.reason,
                since,
                powered,
                next_change: lp.next_change(now).map(|i| (i.start, i.powered)),
                override_: inner.store.overrides().get(&load.name).copied(),
                error,
            });
        }
        drop(inner);
        let level = if forecast_status.usable {
            policy::hour_at(&forecast.hours, now).map_or(SignalLevel::Unspecified, |h| h.level)
        } else {
            SignalLevel::Unspecified
        };
        let relay_services: Vec<RelayServiceStatus> = self
            .relays
            .iter()
            .zip(&relays)
            .map(|(link, seen)| RelayServiceStatus {
                name: link.name.clone(),
                endpoint: link.endpoint.clone(),
                reachable: seen.connected,
                attached: seen.attached,
                error: seen.problem.clone(),
            })
            .collect();
        record_gauges(level, &forecast_status, &loads, &relay_services);
        let status = Status {
            at: now,
            level,
            forecast: forecast_status,
            loads,
            relay_services,
        };
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
fn record_gauges(
    level: SignalLevel,
    forecast: &ForecastStatus,
    loads: &[LoadStatus],
    relay_services: &[RelayServiceStatus],
) {
    metrics::gauge!("controller_level").set(f64::from(level as i32));
    metrics::gauge!("controller_forecast_usable").set(f64::from(u8::from(forecast.usable)));
    let cut = loads.iter().filter(|l| l.powered == Some(false)).count();
    metrics::gauge!("controller_loads_cut").set(cut as f64);
    let mismatched = loads
        .iter()
        .filter(|l| l.powered.is_some_and(|p| p != l.desired))
        .count();
    metrics::gauge!("controller_loads_not_as_planned").set(mismatched as f64);
    for r in relay_services {
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

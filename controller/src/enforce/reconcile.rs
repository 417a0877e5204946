//! The `Controller`: its state, what it answers (plan, status, history)
//! and does for people (overrides), and the reconcile loop, its I/O. On
//! every change (forecast, relays, overrides, a meter reading) and at
//! least once a second, the loop computes the plan for
//! now ([`crate::policy`]), decides what to switch ([`super::diff`]), hands
//! the switches to each relay-service's driver ([`super::act`]), and
//! publishes the status ([`super::status`]) and the events.
//!
//! The loop never waits on a relay-service: a frozen box holds up only its
//! own switches. A refused switch (wear guard, unplugged board, unreachable
//! box) is retried with back-off and shown in the load's status; it never
//! holds up the other loads.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Mutex, Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::diff::{self, Refusal, Switch};
use super::history::HistoryQueue;
use super::inner::Inner;
use super::link::{Job, Link, RelayLink};
use super::observe::{self, RelayView, SeenRelay};
use super::status::{self, Event, Status, StatusInput};
use crate::Error;
use crate::model::{ForecastSeen, MeterSeen};
use crate::model::{Load, SignalLevel};
use crate::policy::{self, Override, Plan, PlanInput, RestoreJitter};
use crate::store::{Store, StoredOverride, SwitchRecord};

/// Reconcile at least this often (plan boundaries, expiring overrides,
/// retries), even when nothing pokes the loop.
const TICK: Duration = Duration::from_secs(1);
/// Without a forecast, plan this far ahead.
const DEFAULT_HORIZON: Duration = Duration::from_secs(3600);

/// What enforcement needs of the settings, and nothing else.
#[derive(Debug, Clone)]
pub(crate) struct Enforcement {
    pub loads: Vec<Load>,
    pub restore_stagger: Duration,
    /// `[policy] restore_jitter`.
    pub restore_jitter: Duration,
    pub forecast_max_age: Duration,
    /// `[power]`: shedding by power, when configured.
    pub power: Option<crate::power::PowerSettings>,
}

/// The controller's state, shared by the reconcile loop and the gRPC side.
pub(crate) struct Controller {
    pub(super) enforcement: Enforcement,
    pub(super) inner: Mutex<Inner>,
    forecast: watch::Receiver<ForecastSeen>,
    /// The Linky meter, when `[meter] relay` names one.
    meter: Option<watch::Receiver<MeterSeen>>,
    /// The relay-services, in config order.
    pub(super) links: Vec<Link>,
    /// When the last pass ended: the relay holds are renewed only while
    /// passes keep coming (a wedged loop must let the boxes fail safe).
    last_pass: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// When this controller started watching the relays: what the history
    /// does not say before it is not known.
    pub(super) started_at: Timestamp,
    plan: watch::Sender<Arc<Plan>>,
    status: watch::Sender<Arc<Status>>,
    pub(super) events: broadcast::Sender<Event>,
    /// Switch records on their way to the history.
    pub(super) history: HistoryQueue,
    /// Poked by the followers and by override changes.
    pub wake: Arc<Notify>,
    /// One override per load per 10 s.
    pub(super) override_changes: super::pace::OverridePace,
}

impl Controller {
    pub(crate) fn new(
        enforcement: Enforcement,
        store: Store,
        forecast: watch::Receiver<ForecastSeen>,
        meter: Option<watch::Receiver<MeterSeen>>,
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
            inner: Mutex::new(Inner::new(store)),
            forecast,
            meter,
            links: relays.into_iter().map(Link::new).collect(),
            last_pass: std::sync::Mutex::new(None),
            started_at: Timestamp::now(),
            plan: watch::channel(Arc::new(empty_plan)).0,
            status: watch::channel(Arc::new(Status::starting(now))).0,
            events: broadcast::channel(256).0,
            history: HistoryQueue::default(),
            wake,
            override_changes: super::pace::OverridePace::default(),
        }
    }

    pub(crate) fn plan(&self) -> Arc<Plan> {
        Arc::clone(&self.plan.borrow())
    }

    pub(crate) fn status(&self) -> Arc<Status> {
        Arc::clone(&self.status.borrow())
    }

    pub(crate) fn watch_plan(&self) -> watch::Receiver<Arc<Plan>> {
        self.plan.subscribe()
    }

    pub(crate) fn watch_status(&self) -> watch::Receiver<Arc<Status>> {
        self.status.subscribe()
    }

    pub(crate) fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Where the Tempo colour behind `reason` came from, if it is about a
    /// Tempo day: the tariff day under way at `at` (a shed), or the next
    /// one (an anticipation).
    pub(super) fn tempo_source_of(
        &self,
        reason: policy::Reason,
        at: Timestamp,
    ) -> Option<crate::tempo_source::TempoSource> {
        use crate::tempo_source::{TempoSource, tariff_date};
        let day = match reason {
            policy::Reason::ShedForTempo(_) => tariff_date(at)?,
            policy::Reason::TempoAnticipation(_) => tariff_date(at)?.tomorrow().ok()?,
            _ => return None,
        };
        let forecast = self.forecast.borrow();
        Some(if forecast.tempo_from_meter.contains(&day) {
            TempoSource::Meter
        } else {
            TempoSource::Rte
        })
    }

    /// Whether a Linky meter is followed (`[meter] relay`).
    pub(crate) fn follows_meter(&self) -> bool {
        self.meter.is_some()
    }

    /// The configured loads.
    pub(crate) fn loads(&self) -> &[Load] {
        &self.enforcement.loads
    }

    pub(super) fn load(&self, name: &str) -> Result<&Load, Error> {
        self.enforcement
            .loads
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| Error::UnknownLoad(name.to_owned()))
    }

    /// The last forecast's hours, usable or not (the status says).
    pub(crate) fn forecast_hours(&self) -> Arc<Vec<policy::Hour>> {
        Arc::clone(&self.forecast.borrow().hours)
    }

    /// The last Tempo calendar received (empty: none).
    pub(crate) fn tempo(&self) -> Arc<Vec<policy::TariffDay>> {
        Arc::clone(&self.forecast.borrow().tempo)
    }

    pub(crate) async fn history(
        &self,
        load: Option<&str>,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Vec<SwitchRecord> {
        let inner = self.inner.lock().await;
        let mut records = inner.store().history(load, since, limit);
        for r in &mut records {
            r.delta_va = inner.power.delta_of(&r.load, r.at);
        }
        records
    }

    /// Forces `load` on or off until `until`: as soon as its minimum on
    /// or off time allows, or at once with `force` (control callers only;
    /// MQTT never forces). `source` (grpc, http, ...) says in the log where
    /// the person acted.
    pub(crate) async fn set_override(
        &self,
        load: &str,
        powered: bool,
        until: Timestamp,
        force: bool,
        source: &'static str,
    ) -> Result<StoredOverride, Error> {
        self.load(load)?;
        let now = Timestamp::now();
        crate::store::check_override_until(until, now).map_err(Error::InvalidArgument)?;
        self.override_changes
            .allow(load, tokio::time::Instant::now())?;
        let o = StoredOverride {
            powered,
            until,
            set_at: now,
            force,
        };
        let name = load.to_owned();
        self.inner
            .lock()
            .await
            .write(move |store| store.set_override(&name, o))
            .await?;
        tracing::info!(load, powered, %until, source, "override set");
        self.wake.notify_one();
        Ok(o)
    }

    /// Removes `load`'s override; false if it had none.
    pub(crate) async fn clear_override(
        &self,
        load: &str,
        source: &'static str,
    ) -> Result<bool, Error> {
        self.load(load)?;
        let name = load.to_owned();
        let cleared = self
            .inner
            .lock()
            .await
            .write(move |store| store.clear_override(&name))
            .await?;
        if cleared {
            tracing::info!(load, source, "override cleared");
            self.wake.notify_one();
        }
        Ok(cleared)
    }

    /// Reconciles until `closing` turns true (the loop of
    /// [`super::tasks::run`]).
    pub(super) async fn reconcile_until(&self, closing: &CancellationToken) {
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
        let relays = RelayView { relays: &seen };
        let forecast_status =
            status::forecast_status(&forecast, self.enforcement.forecast_max_age, now);
        let usable_hours = forecast_status.usable.then(|| Arc::clone(&forecast.hours));
        let level = usable_hours
            .as_deref()
            .and_then(|h| policy::hour_at(h, now))
            .map(|h| h.level);

        let (plan, switches) = {
            let mut inner = self.inner.lock().await;
            Self::expire_overrides(&mut inner, now).await;
            let mut plan = self.plan_now(&inner, &forecast, usable_hours.as_deref(), &relays, now);
            if let Some(settings) = &self.enforcement.power {
                let meter = self.meter.as_ref().map(|m| m.borrow().clone());
                let inner = &mut *inner;
                let store = inner.store.lock().unwrap_or_else(PoisonError::into_inner);
                let cut = inner.power.pass(
                    settings,
                    meter.as_ref(),
                    &self.enforcement.loads,
                    &relays,
                    &store,
                    now,
                );
                crate::power::apply(&mut plan, cut, now);
            }
            let switches = self.decide(&mut inner, &plan, &relays, level, now);
            (plan, switches)
        };
        self.dispatch(switches, now);

        let plan = Arc::new(plan);
        self.plan.send_replace(Arc::clone(&plan));
        self.publish_status(&plan, forecast_status, level, now)
            .await;
        *self
            .last_pass
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tokio::time::Instant::now());
    }

    /// Drops the overrides that have run out (saved first).
    async fn expire_overrides(inner: &mut Inner, now: Timestamp) {
        let any_expired = inner.store().overrides().values().any(|o| o.until <= now);
        if !any_expired {
            return;
        }
        match inner.write(move |store| store.expire_overrides(now)).await {
            Ok(expired) => {
                for load in expired {
                    tracing::info!(%load, "override expired");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot save the overrides"),
        }
    }

    /// The plan for `now` (pure, from what the store and the relays say).
    fn plan_now(
        &self,
        inner: &Inner,
        forecast: &ForecastSeen,
        usable_hours: Option<&Vec<policy::Hour>>,
        relays: &RelayView<'_>,
        now: Timestamp,
    ) -> Plan {
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
                        force: o.force,
                    },
                )
            })
            .collect();
        let states = observe::load_states(&self.enforcement.loads, &store, relays);
        let delivered_today = observe::delivered_today(
            &self.enforcement.loads,
            &store,
            &states,
            self.started_at,
            now,
        );
        // Timed for `controller_plan_seconds` (the scale benchmark reads
        // it): the policy is the one part whose cost grows with loads
        // times horizon.
        let planning = std::time::Instant::now();
        let plan = policy::plan(&PlanInput {
            now,
            loads: &self.enforcement.loads,
            forecast: usable_hours.map(Vec::as_slice),
            // Past it, the plan shows the fallbacks.
            forecast_expires: status::forecast_expiry(forecast, self.enforcement.forecast_max_age),
            tempo: &forecast.tempo,
            overrides: &overrides,
            states: &states,
            last_restore_at: store.last_restore_at().max(inner.last_restore_decided),
            restore_stagger: self.enforcement.restore_stagger,
            restore_jitter: RestoreJitter {
                max: self.enforcement.restore_jitter,
                seed: store.instance_seed(),
            },
            delivered_today: &delivered_today,
            watching_since: self.started_at,
            default_horizon: DEFAULT_HORIZON,
        });
        metrics::gauge!("controller_plan_seconds").set(planning.elapsed().as_secs_f64());
        plan
    }

    /// What to switch now (pure `diff`), and the bookkeeping of it: the
    /// switches handed out are in flight, the refusals it settles or makes.
    fn decide(
        &self,
        inner: &mut Inner,
        plan: &Plan,
        relays: &RelayView<'_>,
        level: Option<SignalLevel>,
        now: Timestamp,
    ) -> Vec<Switch> {
        let decided = diff::diff(
            &self.enforcement.loads,
            plan,
            relays,
            &inner.refusals,
            &inner.in_flight,
            level,
            now,
        );
        for i in decided.settled {
            inner.refusals.remove(&self.enforcement.loads[i].name);
        }
        for switch in &decided.switches {
            inner
                .in_flight
                .insert(self.enforcement.loads[switch.load].name.clone());
            if switch.to {
                inner.last_restore_decided = Some(now);
            }
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
        decided.switches
    }

    /// Hands each switch to its relay-service's queue.
    fn dispatch(&self, switches: Vec<Switch>, now: Timestamp) {
        for switch in switches {
            let load = &self.enforcement.loads[switch.load];
            let Some(link) = self.link_of(load) else {
                continue;
            };
            // Fails only at shutdown, when the tasks have ended.
            let _ = self.links[link].jobs.send(Job { switch, at: now });
        }
    }

    /// Whether the loop has completed a pass within `within`.
    pub(super) fn alive(&self, within: Duration) -> bool {
        self.last_pass
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() <= within)
    }

    /// Whether relay-service `link` is reachable now.
    pub(super) fn connected(&self, link: usize) -> bool {
        self.links[link].relay.seen.borrow().connected
    }

    /// The index of the load's relay-service.
    fn link_of(&self, load: &Load) -> Option<usize> {
        self.links
            .iter()
            .position(|l| l.relay.name == load.relay.relay_service)
    }

    /// What each relay-service was last seen doing.
    fn seen(&self) -> Vec<SeenRelay<'_>> {
        self.links.iter().map(Link::seen).collect()
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
        let tempo_red_peak = self.forecast.borrow().tempo.iter().any(|d| {
            d.color == crate::model::TempoColor::Red && d.start <= now && now < d.peak_end
        });
        let tense = tempo_red_peak || level.is_some_and(|l| l >= SignalLevel::Orange);
        let status = {
            let mut guard = self.inner.lock().await;
            let inner = &mut *guard;
            let store = inner.store.lock().unwrap_or_else(PoisonError::into_inner);
            let mut status = status::build(
                StatusInput {
                    loads: &self.enforcement.loads,
                    plan,
                    relays: RelayView { relays: &seen },
                    meter: self.meter.as_ref().map(|m| m.borrow().clone()),
                    measured: self
                        .enforcement
                        .loads
                        .iter()
                        .filter_map(|l| Some((l.name.clone(), inner.power.measured(&l.name)?)))
                        .collect(),
                    refusals: &inner.refusals,
                    overrides: store.overrides(),
                    forecast,
                    level,
                    now,
                },
                &mut inner.since,
            );
            drop(store);
            // Under the same lock: the energy kept off counts this pass.
            status.kept_off_today_wh = inner.power.keep_off(status.power_saved_w, tense, now);
            status
        };
        super::gauges::record(&status);
        let previous = self.status();
        if previous.same_as(&status) {
            return;
        }
        for load in &status.loads {
            let before = previous
                .loads
                .iter()
                .find(|l| l.load.name == load.load.name);
            if before.is_none_or(|b| !b.same_but_time_passing(load)) {
                let _ = self.events.send(Event::LoadChanged {
                    at: now,
                    status: Box::new(load.clone()),
                });
            }
        }
        self.status.send_replace(Arc::new(status));
    }
}

//! The relay hold: a lease that whoever is in charge (the controller)
//! renews, handing over with each renewal its plan for the channels it
//! drives ([`crate::plan`]). If nobody renews it for `timeout` (the
//! controller hung, crashed or lost the network), the box carries on by
//! itself: each planned channel follows its schedule, then goes to the
//! state the controller chose for after it; every other channel returns to
//! its configured safe state. No load stays in a state nobody chose.
//!
//! The hold is armed at start, with the last plan kept on disk: a box that
//! restarts while its controller is away goes on following it. After the
//! hold has run out, switching still works; the next renewal re-arms it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::bank::RelayBank;
use crate::plan::{HeldPlan, PlanFile};

/// While following the plan, look again at least this often (a step the
/// wear guard refused is retried then).
const FOLLOW_RETRY: Duration = Duration::from_secs(1);

/// How the hold is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldSettings {
    pub timeout: Duration,
    /// Indexed by channel: energised in the safe state?
    pub safe_energized: Vec<bool>,
}

/// What a renewal answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Renewal {
    pub timeout: Duration,
    pub expires_at: SystemTime,
    /// The hold had run out before this renewal.
    pub had_expired: bool,
}

struct State {
    deadline: Instant,
    expired: bool,
}

/// The hold of one relay bank.
pub(crate) struct Hold {
    settings: HoldSettings,
    state: Mutex<State>,
    renewed: Notify,
    /// The last plan handed over, and where it is kept.
    plan: Mutex<HeldPlan>,
    plan_file: PlanFile,
}

impl Hold {
    /// Armed now, with the last plan kept in `plan_file` (if any).
    pub(crate) fn new(settings: HoldSettings, plan_file: PlanFile) -> Arc<Self> {
        let plan = plan_file.load();
        if !plan.channels.is_empty() {
            tracing::info!(
                channels = plan.channels.len(),
                "relay hold: a plan is kept from before; it is followed if nobody renews the hold"
            );
        }
        Arc::new(Self {
            state: Mutex::new(State {
                deadline: Instant::now() + settings.timeout,
                expired: false,
            }),
            settings,
            renewed: Notify::new(),
            plan: Mutex::new(plan),
            plan_file,
        })
    }

    /// Pushes the deadline to `timeout` from now. A non-empty `plan`
    /// replaces the one kept (on disk too, when its steps changed).
    pub(crate) fn renew(&self, holder: &str, plan: HeldPlan) -> Renewal {
        if !plan.channels.is_empty() {
            let mut kept = self.plan.lock().unwrap_or_else(|e| e.into_inner());
            if !kept.same_steps(&plan)
                && let Err(e) = self.plan_file.save(&plan)
            {
                tracing::error!(error = %e, "cannot keep the held plan on disk (it is kept in memory)");
            }
            *kept = plan;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let had_expired = state.expired;
        state.deadline = Instant::now() + self.settings.timeout;
        state.expired = false;
        drop(state);
        if had_expired {
            tracing::info!(holder, "relay hold renewed after it had run out");
        }
        self.renewed.notify_one();
        Renewal {
            timeout: self.settings.timeout,
            expires_at: SystemTime::now() + self.settings.timeout,
            had_expired,
        }
    }

    /// Watches the deadline until the bank closes: when it passes, follows
    /// the plan (and the safe states) until the next renewal.
    pub(crate) async fn run(self: Arc<Self>, bank: Arc<RelayBank>) {
        loop {
            let deadline = {
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                (!state.expired).then_some(state.deadline)
            };
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = self.renewed.notified() => continue,
                        () = bank.closed() => return,
                    }
                    let due = {
                        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        let due = !state.expired && Instant::now() >= state.deadline;
                        if due {
                            state.expired = true;
                        }
                        due
                    };
                    if due {
                        let plan = self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        tracing::warn!(
                            timeout = %humantime::format_duration(self.settings.timeout),
                            planned_channels = plan.channels.len(),
                            "relay hold ran out: nobody renewed it; following the plan kept, other channels to their safe state"
                        );
                        let unplanned: Vec<bool> = (0..self.settings.safe_energized.len())
                            .map(|ch| !plan.is_planned(ch as u32))
                            .collect();
                        let carry_on = async {
                            tokio::join!(
                                to_safe_states(&bank, &self.settings.safe_energized, &unplanned),
                                async {
                                    if !plan.channels.is_empty() {
                                        follow(&plan, &bank).await;
                                    }
                                }
                            );
                            std::future::pending::<()>().await;
                        };
                        tokio::select! {
                            () = carry_on => {}
                            _ = self.renewed.notified() => {}
                            () = bank.closed() => return,
                        }
                    }
                }
                None => {
                    tokio::select! {
                        _ = self.renewed.notified() => {}
                        () = bank.closed() => return,
                    }
                }
            }
        }
    }
}

/// Puts the `which` channels in their safe states, trying again until every
/// one is (a full disk refuses a switch until it can be saved).
async fn to_safe_states(bank: &RelayBank, safe: &[bool], which: &[bool]) {
    loop {
        match bank.apply_safe_states(safe, which).await {
            Ok(switched) => {
                tracing::warn!(?switched, "channels returned to their safe state");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not put every channel in its safe state; trying again");
                tokio::time::sleep(FOLLOW_RETRY).await;
            }
        }
    }
}

/// Follows `plan` on `bank`, step by step, for as long as it is polled
/// (until the hold is renewed). Each step goes through the bank like any
/// switch: durable, wear-guarded (a refused step is tried again).
async fn follow(plan: &HeldPlan, bank: &RelayBank) {
    loop {
        let now = SystemTime::now();
        let mut all_done = true;
        for (channel, energized) in plan.states_at(now) {
            match bank.set(channel, energized).await {
                Ok(outcome) if outcome.switched => {
                    tracing::warn!(channel, energized, "relay hold: switched as the plan says");
                }
                Ok(_) => {}
                Err(e) => {
                    all_done = false;
                    tracing::warn!(channel, energized, error = %e, "relay hold: the planned switch failed; trying again");
                }
            }
        }
        let wait = match plan.until_next_step(SystemTime::now()) {
            Some(next) if all_done => next,
            Some(next) => next.min(FOLLOW_RETRY),
            None if all_done => {
                tracing::info!(
                    "relay hold: the plan has ended; every planned channel is in the state chosen for after it"
                );
                std::future::pending::<()>().await;
                return;
            }
            None => FOLLOW_RETRY,
        };
        // A little past the step, so that it has begun.
        tokio::time::sleep(wait + Duration::from_millis(5)).await;
    }
}

//! Enforcement: level-triggered reconciliation, like a Kubernetes
//! controller. Each pass compares the plan for now with what the relays are
//! seen doing and switches only what differs.
//!
//! - [`observe`]: what the relays are doing, load by load (pure).
//! - [`diff`]: what to switch, in which order (pure).
//! - [`status`]: what GetStatus shows, and the events (pure).
//! - [`reconcile`]: the `Controller` (its state, its API, overrides
//!   included) and the pass: plan, decide, hand out, publish. `impl
//!   Controller` is there and nowhere else.
//! - `tasks`: the loop, the drivers and the history writer, started and
//!   joined together (`run`).
//! - [`inner`]: what sits behind the controller's lock.
//! - [`act`]: each relay-service's `RelayDriver`: its switches (refusals)
//!   and its hold renewals, each a task of its own.
//! - [`history`]: the history writer (group commit), a type of its own
//!   that is handed the controller's lock, events and wake-up.
//! - [`power_guard`]: shedding by power's state across passes.
//! - [`gauges`]: the Prometheus gauges set from each status.

mod act;
pub(crate) mod diff;
mod gauges;
mod history;
mod inner;
mod link;
pub(crate) mod observe;
pub(crate) mod pace;
mod power_guard;
pub(crate) mod reconcile;
pub(crate) mod status;
mod tasks;

pub(crate) use link::RelayLink;
pub(crate) use reconcile::{Controller, Enforcement};
pub(crate) use status::{Event, LoadStatus, Status};
pub(crate) use tasks::run;

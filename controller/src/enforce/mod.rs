//! Enforcement: level-triggered reconciliation, like a Kubernetes
//! controller. Each pass compares the plan for now with what the relays are
//! seen doing and switches only what differs.
//!
//! - [`observe`]: what the relays are doing, load by load (pure).
//! - [`diff`]: what to switch, in which order (pure).
//! - [`status`]: what GetStatus shows (pure).
//! - [`reconcile`]: the loop: plan, decide, hand out, publish.
//! - `overrides`: setting and clearing an override.
//! - [`act`]: each relay-service's own tasks: its switches (refusals) and
//!   its hold renewals.
//! - [`history`]: the history writer (group commit), a type of its own
//!   that is handed the controller's lock, events and wake-up.
//!
//! `Controller` itself (its state, its API, the pass) is in [`reconcile`];
//! its per-box tasks are in [`act`] and the override API in `overrides`,
//! as further `impl Controller` blocks.

mod act;
pub(crate) mod diff;
mod history;
mod link;
pub(crate) mod observe;
mod overrides;
pub(crate) mod pace;
mod power_guard;
pub(crate) mod reconcile;
pub(crate) mod status;

pub(crate) use link::RelayLink;
pub(crate) use reconcile::{Controller, Enforcement, Event};
pub(crate) use status::{LoadStatus, Status};

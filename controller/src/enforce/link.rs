//! A relay-service as enforcement uses it: its client, what was last seen
//! of it, and the queue of switches its own task makes ([`super::act`]).

use std::sync::Arc;

use jiff::Timestamp;
use rpb::relay_service_client::RelayServiceClient;
use tokio::sync::{mpsc, watch};

use delestage_proto::relay::v1 as rpb;
use delestage_runtime::client::AuthedChannel;

use super::diff::Switch;
use super::observe::SeenRelay;
use crate::model::RelaySeen;

/// A relay-service as the controller uses it.
pub(crate) struct RelayLink {
    pub name: String,
    pub endpoint: String,
    pub client: RelayServiceClient<AuthedChannel>,
    pub seen: Arc<watch::Sender<RelaySeen>>,
}

/// A relay-service and the queue of switches for its task.
pub(crate) struct Link {
    pub(super) relay: RelayLink,
    pub(super) jobs: mpsc::UnboundedSender<Job>,
    /// The task's end of `jobs`, until [`super::tasks::run`] starts the task.
    pub(super) waiting: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
}

impl Link {
    pub(super) fn new(relay: RelayLink) -> Self {
        let (jobs, waiting) = mpsc::unbounded_channel();
        Self {
            relay,
            jobs,
            waiting: std::sync::Mutex::new(Some(waiting)),
        }
    }

    /// What it was last seen doing, for one pass.
    pub(super) fn seen(&self) -> SeenRelay<'_> {
        SeenRelay {
            name: &self.relay.name,
            endpoint: &self.relay.endpoint,
            seen: self.relay.seen.borrow().clone(),
        }
    }
}

/// A switch handed to a relay-service's task, and the pass that decided it.
pub(super) struct Job {
    pub(super) switch: Switch,
    pub(super) at: Timestamp,
}

//! The controller's tasks, started and joined together: the reconcile
//! loop ([`super::reconcile`]), each relay-service's driver
//! ([`super::act`]) and the history writer ([`super::history`]). At
//! shutdown the loop stops first, then the drivers finish the switches
//! under way, then the writer makes their records durable.

use std::sync::{Arc, PoisonError};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::act::RelayDriver;
use super::reconcile::Controller;

/// Reconciles until `closing` turns true; then lets the switches under way
/// finish and writes their history records before returning. Owns its
/// tasks: one [`RelayDriver`] per relay-service (its switch queue and its
/// hold renewals), and the history writer.
pub(crate) async fn run(controller: Arc<Controller>, closing: CancellationToken) {
    // The history writer stops after the switches: the last ones queue
    // records to write.
    let switches_done = CancellationToken::new();
    let history = tokio::spawn({
        let this = Arc::clone(&controller);
        let stop = switches_done.clone();
        async move {
            this.history
                .write_until(&this.inner, &this.events, &this.wake, stop)
                .await;
        }
    });
    let mut links = JoinSet::new();
    for (i, link) in controller.links.iter().enumerate() {
        let waiting = link
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let driver = RelayDriver::new(Arc::clone(&controller), i);
        if let Some(jobs) = waiting {
            links.spawn(driver.clone().switch_loop(jobs, closing.clone()));
        }
        links.spawn(driver.hold_loop(closing.clone()));
    }
    controller.reconcile_until(&closing).await;
    while links.join_next().await.is_some() {}
    switches_done.cancel();
    if let Err(e) = history.await {
        tracing::error!(error = %e, "the history writer failed");
    }
}

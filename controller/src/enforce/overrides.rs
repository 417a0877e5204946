//! What people ask of the controller's loads: an override set (at once,
//! or when the load's minimum on/off time allows) and cleared, from gRPC,
//! HTTP or MQTT alike.

use jiff::Timestamp;

use super::Controller;
use crate::Error;
use crate::store::StoredOverride;

impl Controller {
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
}

//! The controller's Prometheus gauges, set from each pass's status: the
//! figures a dashboard wants at a glance.

use delestage_proto::forecast::v1::SignalLevel as PbLevel;

use super::status::Status;

/// The figures a dashboard wants at a glance.
pub(super) fn record(status: &Status) {
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

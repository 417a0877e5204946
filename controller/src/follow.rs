//! Following the other services: a task per relay-service (WatchRelays) and
//! two for the forecast-service (WatchForecast, WatchTempo), each keeping the latest
//! state it saw in a `watch` channel, reconnecting with back-off, and poking
//! the reconciler on every change.
//!
//! A relay-service stream that breaks means "unknown" at once: a box that
//! cannot be reached is not switched. A forecast-service stream that breaks
//! does not: the last forecast received is kept (and persisted, see
//! [`crate::store::ForecastFile`]), and only its age makes it unusable. On
//! reconnect the first message is a full snapshot, so nothing missed while
//! away matters.

use std::sync::Arc;
use std::time::Duration;

use delestage_proto::forecast::v1 as fpb;
use delestage_proto::meter::v1 as mpb;
use delestage_proto::relay::v1 as rpb;
use delestage_proto::time::from_pb;
use delestage_runtime::backoff::{Backoff, Retry};
use delestage_runtime::client::AuthedChannel;
use fpb::forecast_service_client::ForecastServiceClient;
use rpb::relay_service_client::RelayServiceClient;
use tokio::sync::{Notify, watch};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::model::SignalLevel;
use crate::model::TempoColor;
use crate::model::{ForecastSeen, MeterPower, MeterSeen, RelaySeen};
use crate::policy::{Hour, TariffDay};
use crate::store::ForecastFile;
use crate::tempo_source::{self, MeterTempo};

/// Reconnect back-off.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// How long to wait before asking again a forecast-service that runs with
/// Tempo off (it may be restarted with it on).
const TEMPO_OFF_RETRY: Duration = Duration::from_secs(60);

/// Follows WatchTempo until `closing`, into the same [`ForecastSeen`].
pub(crate) async fn follow_tempo(
    mut client: ForecastServiceClient<AuthedChannel>,
    tx: Arc<watch::Sender<ForecastSeen>>,
    wake: Arc<Notify>,
    wanted: bool,
    closing: CancellationToken,
) {
    let mut retry = RECONNECT.start();
    let mut said_off = false;
    loop {
        let session = async {
            let mut stream = client
                .watch_tempo(fpb::WatchTempoRequest {})
                .await?
                .into_inner();
            while let Some(calendar) = stream.next().await {
                let calendar = calendar?;
                apply_tempo(&tx, &calendar);
                wake.notify_one();
                retry.succeeded();
            }
            Err(tonic::Status::unavailable(
                "forecast-service closed the stream",
            ))
        };
        let status: tonic::Status = tokio::select! {
            r = session => match r { Err(s) => s, Ok(()) => continue },
            _ = closing.cancelled() => return,
        };
        let off = fpb::has_reason(&status, fpb::TEMPO_NOT_ENABLED);
        let wait = if off {
            if !said_off {
                if wanted {
                    tracing::warn!(
                        "the forecast-service runs with Tempo off: loads with shed_on_tempo follow their fallback"
                    );
                } else {
                    tracing::info!("the forecast-service runs with Tempo off");
                }
                said_off = true;
            }
            TEMPO_OFF_RETRY
        } else {
            tracing::debug!(problem = %status.message(), "Tempo stream ended; the last calendar holds");
            retry.failed()
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = closing.cancelled() => return,
        }
    }
}

fn apply_tempo(tx: &watch::Sender<ForecastSeen>, calendar: &fpb::TempoCalendar) {
    let mut days: Vec<TariffDay> = calendar
        .days
        .iter()
        .filter_map(|d| {
            Some(TariffDay {
                date: d.date.parse().ok()?,
                start: from_pb(d.start.as_ref()?)?,
                peak_end: from_pb(d.peak_end.as_ref()?)?,
                end: from_pb(d.end.as_ref()?)?,
                // A colour this build does not know is no colour.
                color: TempoColor::from_pb(d.color)?,
            })
        })
        .filter(|d| d.start <= d.peak_end && d.peak_end <= d.end)
        .collect();
    days.sort_by_key(|d| d.start);
    tx.send_modify(|seen| {
        seen.rte_tempo = Arc::new(days);
        merge_tempo(seen);
    });
}

/// Recomputes the Tempo days from RTE's and the meter's; says once a day
/// when they disagree (RTE wins).
pub(crate) fn merge_tempo(seen: &mut ForecastSeen) {
    let merged = tempo_source::merge(&seen.rte_tempo, seen.meter_tempo.as_ref());
    for (date, rte, meter) in &merged.disagreements {
        if seen.tempo_disagreement_said != Some(*date) {
            tracing::warn!(
                %date,
                rte = rte.name(),
                meter = meter.name(),
                "RTE and the Linky meter disagree on the Tempo colour; RTE's is used"
            );
            seen.tempo_disagreement_said = Some(*date);
        }
    }
    seen.tempo = Arc::new(merged.days);
    seen.tempo_from_meter = Arc::new(merged.from_meter);
}

/// Follows the Linky meter of a relay box (WatchMeter) until `closing`:
/// its Tempo colours fill what RTE's calendar does not say. The meter's
/// readings come every 1–2 s; the days are recomputed only when its
/// colours or its tariff day change.
pub(crate) async fn follow_meter(
    relay: String,
    mut client: mpb::meter_service_client::MeterServiceClient<AuthedChannel>,
    tx: Arc<watch::Sender<ForecastSeen>>,
    power: Arc<watch::Sender<MeterSeen>>,
    wake: Arc<Notify>,
    closing: CancellationToken,
) {
    let mut retry = RECONNECT.start();
    let mut said: Option<String> = None;
    loop {
        let session = async {
            let mut stream = client
                .watch_meter(mpb::WatchMeterRequest {})
                .await?
                .into_inner();
            while let Some(reading) = stream.next().await {
                let reading = reading?;
                retry.succeeded();
                if said.take().is_some() {
                    tracing::info!(relay_service = %relay, "following the Linky meter again");
                }
                let Some(at) = reading.at.as_ref().and_then(from_pb) else {
                    continue;
                };
                power.send_modify(|m| {
                    m.problem = None;
                    m.reading = Some(MeterPower {
                        at,
                        apparent_power_va: reading.apparent_power_va,
                        subscribed_va: reading.subscribed_va,
                        tariff_period: reading.tariff_period.clone(),
                        tempo_today: TempoColor::from_pb(reading.tempo_today),
                        tempo_tomorrow: TempoColor::from_pb(reading.tempo_tomorrow),
                    });
                });
                // A reading may call for a power cut: a pass now (once the
                // reading is there to see), not at the next tick.
                wake.notify_one();
                let meter = MeterTempo {
                    at,
                    today: TempoColor::from_pb(reading.tempo_today),
                    tomorrow: TempoColor::from_pb(reading.tempo_tomorrow),
                };
                let changed = tx.send_if_modified(|seen| {
                    let before = seen.meter_tempo;
                    seen.meter_tempo = Some(meter);
                    let same = before.is_some_and(|b| {
                        (b.today, b.tomorrow) == (meter.today, meter.tomorrow)
                            && tempo_source::tariff_date(b.at) == tempo_source::tariff_date(at)
                    });
                    if !same {
                        merge_tempo(seen);
                    }
                    !same
                });
                if changed {
                    wake.notify_one();
                }
            }
            Err(tonic::Status::unavailable(
                "relay-service closed the stream",
            ))
        };
        let status: tonic::Status = tokio::select! {
            r = session => match r { Err(s) => s, Ok(()) => continue },
            _ = closing.cancelled() => return,
        };
        let problem = status.message().to_owned();
        power.send_modify(|m| m.problem = Some(problem.clone()));
        if said.as_deref() != Some(problem.as_str()) {
            tracing::warn!(relay_service = %relay, %problem, "cannot follow the Linky meter; its Tempo colours are kept for their days");
            said = Some(problem);
        }
        tokio::select! {
            _ = tokio::time::sleep(retry.failed()) => {}
            _ = closing.cancelled() => return,
        }
    }
}

/// Follows WatchForecast until `closing`.
pub(crate) async fn follow_forecast(
    mut client: ForecastServiceClient<AuthedChannel>,
    tx: Arc<watch::Sender<ForecastSeen>>,
    wake: Arc<Notify>,
    closing: CancellationToken,
) {
    let mut retry = RECONNECT.start();
    loop {
        let problem = tokio::select! {
            p = forecast_session(&mut client, &tx, &wake, &mut retry) => p,
            _ = closing.cancelled() => return,
        };
        let was_connected = tx.borrow().connected;
        tx.send_modify(|s| {
            s.settled = true;
            s.connected = false;
            s.problem = Some(problem.clone());
        });
        wake.notify_one();
        let wait = retry.failed();
        if was_connected {
            tracing::warn!(%problem, "lost the forecast-service; acting on the last forecast received until it is back or too old");
        } else {
            tracing::debug!(%problem, retry_in = ?wait, "forecast-service unreachable");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = closing.cancelled() => return,
        }
    }
}

/// Writes every new forecast received to `file` (off the async workers),
/// until `closing`; a forecast received just before is still written. Only
/// a new forecast is written, not each change of connection.
pub(crate) async fn keep_forecast(
    file: ForecastFile,
    mut seen: watch::Receiver<ForecastSeen>,
    closing: CancellationToken,
) {
    let (mut kept, mut kept_tempo) = {
        let s = seen.borrow_and_update();
        (s.hours.clone(), s.rte_tempo.clone())
    };
    loop {
        let last = tokio::select! {
            changed = seen.changed() => changed.is_err(),
            _ = closing.cancelled() => true,
        };
        let now = seen.borrow_and_update().clone();
        let new_hours = !Arc::ptr_eq(&now.hours, &kept) && !now.hours.is_empty();
        let new_tempo = !Arc::ptr_eq(&now.rte_tempo, &kept_tempo) && !now.rte_tempo.is_empty();
        if new_hours || new_tempo {
            kept = Arc::clone(&now.hours);
            kept_tempo = Arc::clone(&now.rte_tempo);
            let file = file.clone();
            match tokio::task::spawn_blocking(move || file.save(&now)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot keep the forecast in the state dir")
                }
                Err(e) => tracing::error!(error = %e, "the forecast writer failed"),
            }
        }
        if last {
            return;
        }
    }
}

/// One connection: GetForecast (to settle at once, even when the service
/// has no forecast yet), then WatchForecast until it breaks. Returns why.
async fn forecast_session(
    client: &mut ForecastServiceClient<AuthedChannel>,
    tx: &watch::Sender<ForecastSeen>,
    wake: &Notify,
    retry: &mut Retry,
) -> String {
    match client.get_forecast(fpb::GetForecastRequest {}).await {
        Ok(f) => apply_forecast(tx, f.into_inner()),
        Err(s) if s.code() == tonic::Code::Unavailable && is_from_service(&s) => {
            // The service has none (yet): the one kept, if any, still holds.
            tx.send_modify(|seen| {
                seen.settled = true;
                seen.connected = true;
                seen.problem = Some(format!("forecast-service: {}", s.message()));
            });
        }
        Err(s) => return lost("the forecast-service", "forecast-service unreachable", &s),
    }
    wake.notify_one();
    let mut stream = match client.watch_forecast(fpb::WatchForecastRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            return lost(
                "the forecast-service",
                "forecast-service: WatchForecast failed",
                &s,
            );
        }
    };
    tracing::info!("following the forecast-service");
    retry.succeeded();
    loop {
        match stream.next().await {
            Some(Ok(f)) => {
                apply_forecast(tx, f);
                wake.notify_one();
            }
            Some(Err(s)) => return lost("the forecast-service", "forecast-service", &s),
            None => return "forecast-service closed the stream".to_owned(),
        }
    }
}

/// A transport failure also comes back as UNAVAILABLE; the service's own
/// "no forecast yet" answer carries a typed reason in its details.
fn is_from_service(status: &tonic::Status) -> bool {
    fpb::has_reason(status, fpb::NO_FORECAST_YET)
}

fn apply_forecast(tx: &watch::Sender<ForecastSeen>, f: fpb::Forecast) {
    let hours: Vec<Hour> = f
        .hours
        .iter()
        .filter_map(|h| {
            Some(Hour {
                start: from_pb(h.start.as_ref()?)?,
                end: from_pb(h.end.as_ref()?)?,
                // A level this build does not know (a newer service) is
                // no level: the hour is dropped.
                level: SignalLevel::from_pb(h.level)?,
            })
        })
        .filter(|h| h.start < h.end)
        .collect();
    tx.send_modify(|seen| {
        seen.settled = true;
        seen.connected = true;
        seen.hours = Arc::new(hours);
        seen.fetched_at = f.fetched_at.as_ref().and_then(from_pb);
        seen.generated_at = f.generated_at.as_ref().and_then(from_pb);
        seen.stale = f.stale;
        seen.problem = None;
    });
}

/// Follows one relay-service's WatchRelays until `closing`.
pub(crate) async fn follow_relays(
    name: String,
    mut client: RelayServiceClient<AuthedChannel>,
    tx: Arc<watch::Sender<RelaySeen>>,
    wake: Arc<Notify>,
    closing: CancellationToken,
) {
    let mut retry = RECONNECT.start();
    loop {
        let problem = tokio::select! {
            p = relay_session(&name, &mut client, &tx, &wake, &mut retry) => p,
            _ = closing.cancelled() => return,
        };
        let was_connected = tx.borrow().connected;
        tx.send_modify(|s| {
            s.settled = true;
            s.connected = false;
            s.problem = Some(problem.clone());
        });
        wake.notify_one();
        let wait = retry.failed();
        if was_connected {
            tracing::warn!(relay_service = %name, %problem, "lost a relay-service; its loads are not switched until it is back");
        } else {
            tracing::debug!(relay_service = %name, %problem, retry_in = ?wait, "relay-service unreachable");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = closing.cancelled() => return,
        }
    }
}

/// Why a session with a peer ended, in words that say what happened: a peer
/// that stopped answering (its pings timed out) is not said to have
/// answered anything.
fn lost(peer: &str, what: &str, status: &tonic::Status) -> String {
    if delestage_runtime::client::peer_went_silent(status) {
        format!(
            "no answer from {peer} for {} s (frozen or cut off)",
            delestage_runtime::client::SILENCE.as_secs()
        )
    } else {
        format!("{what}: {}", status.message())
    }
}

async fn relay_session(
    name: &str,
    client: &mut RelayServiceClient<AuthedChannel>,
    tx: &watch::Sender<RelaySeen>,
    wake: &Notify,
    retry: &mut Retry,
) -> String {
    let mut stream = match client.watch_relays(rpb::WatchRelaysRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(s) => return lost("the relay box", "unreachable", &s),
    };
    let mut announced = false;
    loop {
        let event = match stream.next().await {
            Some(Ok(e)) => e,
            Some(Err(s)) => return lost("the relay box", "WatchRelays failed", &s),
            None => return "closed the stream (stopping?)".to_owned(),
        };
        let Some(event) = event.event else { continue };
        tracing::debug!(relay_service = %name, ?event, "relay event");
        tx.send_modify(|seen| {
            seen.settled = true;
            seen.connected = true;
            seen.problem = None;
            match event {
                rpb::relay_event::Event::Snapshot(snap) => {
                    let count = snap
                        .board
                        .as_ref()
                        .map_or(snap.relays.len() as u32, |b| b.channel_count);
                    seen.energized = vec![false; count as usize];
                    seen.applied = vec![false; count as usize];
                    for r in &snap.relays {
                        if let Some(slot) = seen.energized.get_mut(r.channel as usize) {
                            *slot = r.energized;
                        }
                        if let Some(slot) = seen.applied.get_mut(r.channel as usize) {
                            *slot = r.applied.unwrap_or(true);
                        }
                    }
                    seen.attached = snap.board.as_ref().is_some_and(|b| b.attached);
                }
                rpb::relay_event::Event::RelayChanged(r) => {
                    if let Some(slot) = seen.energized.get_mut(r.channel as usize) {
                        *slot = r.energized;
                    }
                    if let Some(slot) = seen.applied.get_mut(r.channel as usize) {
                        *slot = r.applied.unwrap_or(true);
                    }
                }
                rpb::relay_event::Event::BoardChanged(b) => seen.attached = b.attached,
            }
        });
        if !announced {
            tracing::info!(relay_service = %name, "following the relay-service");
            announced = true;
            retry.succeeded();
        }
        wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn unknown_levels_and_broken_hours_from_a_newer_service_are_dropped() {
        let tx = watch::channel(ForecastSeen::default()).0;
        apply_forecast(
            &tx,
            fpb::Forecast {
                hours: vec![
                    fpb::HourSignal {
                        start: ts(0),
                        end: ts(3600),
                        level: fpb::SignalLevel::Red.into(),
                    },
                    // A level this build does not know.
                    fpb::HourSignal {
                        start: ts(3600),
                        end: ts(7200),
                        level: 9,
                    },
                    // An hour that ends before it starts.
                    fpb::HourSignal {
                        start: ts(9000),
                        end: ts(8000),
                        level: fpb::SignalLevel::Green.into(),
                    },
                    // No times at all.
                    fpb::HourSignal {
                        start: None,
                        end: None,
                        level: fpb::SignalLevel::Green.into(),
                    },
                ],
                fetched_at: ts(10),
                ..Default::default()
            },
        );
        let seen = tx.borrow();
        assert_eq!(seen.hours.len(), 1);
        assert_eq!(seen.hours[0].level, SignalLevel::Red);
        assert!(seen.settled && seen.connected);
    }
}

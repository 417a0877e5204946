//! The controller's domain as the wire sees it: every conversion to the
//! protobuf messages, for gRPC, the dashboard's JSON (which renders the
//! same messages) and MQTT alike, and the limits the APIs share.

use delestage_proto::controller::v1 as pb;
use delestage_proto::forecast::v1::{SignalLevel as PbLevel, TempoColor as PbColor};
use delestage_proto::time::to_pb;

use crate::enforce;
use crate::model::{Fallback, Load, RunWindow, SignalLevel, TempoColor};
use crate::policy::{DayBudget, Plan, Reason, TariffDay};
use crate::store::{StoredOverride, SwitchRecord};
use crate::tempo_source::TempoSource;

/// GetHistory's default and largest `limit` (the HTTP API's too).
pub(crate) const HISTORY_DEFAULT: usize = 100;
pub(crate) const HISTORY_MAX: usize = 10_000;

fn reason_to_pb(reason: Reason) -> pb::Reason {
    reason.kind().into()
}

fn relay_to_pb(load: &Load) -> pb::RelayAddress {
    pb::RelayAddress {
        relay_service: load.relay.relay_service.clone(),
        channel: load.relay.channel,
    }
}

pub(crate) fn override_to_pb(load: &str, o: &StoredOverride) -> pb::Override {
    pb::Override {
        load: load.to_owned(),
        powered: o.powered,
        until: Some(to_pb(o.until)),
        set_at: Some(to_pb(o.set_at)),
    }
}

pub(crate) fn load_status_to_pb(s: &enforce::LoadStatus) -> pb::LoadStatus {
    pb::LoadStatus {
        name: s.load.name.clone(),
        relay: Some(relay_to_pb(&s.load)),
        wiring: pb::Wiring::from(s.load.wiring).into(),
        priority: s.load.priority,
        shed_at: level_to_pb(s.load.shed_at).into(),
        desired: s.desired,
        reason: reason_to_pb(s.reason).into(),
        reason_level: level_to_pb(s.reason.level()).into(),
        powered: s.powered,
        next_change_at: s.next_change.map(|(t, _)| to_pb(t)),
        next_powered: s.next_change.is_some_and(|(_, p)| p),
        r#override: s
            .override_
            .as_ref()
            .map(|o| override_to_pb(&s.load.name, o)),
        error: s.error.clone().unwrap_or_default(),
        since: Some(to_pb(s.since)),
        when_forecast_unknown: fallback_to_pb(s.load.when_forecast_unknown).into(),
        tempo_color: color_to_pb(s.reason.tempo_color()).into(),
        shed_on_tempo: color_to_pb(s.load.shed_on_tempo).into(),
        budget: s.budget.as_ref().map(|b| budget_to_pb(&s.load, b)),
        max_off: s.load.max_off.and_then(duration_to_pb),
        measured_va: s.measured.map(|(va, _)| va),
        measured_samples: s.measured.map_or(0, |(_, n)| n as u32),
        power_cut: s.reason == crate::policy::Reason::PowerLimit,
    }
}

fn budget_to_pb(load: &Load, b: &DayBudget) -> pb::DailyBudget {
    pb::DailyBudget {
        run_daily: duration_to_pb(b.run_daily),
        done: duration_to_pb(b.done),
        planned: duration_to_pb(b.planned),
        runs: b
            .runs
            .iter()
            .map(|(start, end)| pb::TimeRange {
                start: Some(to_pb(*start)),
                end: Some(to_pb(*end)),
            })
            .collect(),
        windows: load
            .run_daily
            .iter()
            .flat_map(|d| &d.windows)
            .filter(|w| **w != RunWindow::ALL_DAY)
            .map(ToString::to_string)
            .collect(),
    }
}

fn duration_to_pb(d: std::time::Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(d).ok()
}

pub(crate) fn status_to_pb(s: &enforce::Status) -> pb::ControllerStatus {
    pb::ControllerStatus {
        at: Some(to_pb(s.at)),
        level: level_to_pb(s.level).into(),
        forecast: Some(pb::ForecastState {
            usable: s.forecast.usable,
            fetched_at: s.forecast.fetched_at.map(to_pb),
            reason: s.forecast.reason.clone(),
            generated_at: s.forecast.generated_at.map(to_pb),
            stale: s.forecast.stale,
            forecast_service_reachable: s.forecast.reachable,
            note: s.forecast.note.clone(),
            tempo_today: color_to_pb(s.forecast.tempo_today).into(),
            tempo_tomorrow: color_to_pb(s.forecast.tempo_tomorrow).into(),
            tempo_source: tempo_source_to_pb(s.forecast.tempo_source).into(),
        }),
        loads: s.loads.iter().map(load_status_to_pb).collect(),
        relay_services: s
            .relay_services
            .iter()
            .map(|r| pb::RelayServiceStatus {
                name: r.name.clone(),
                endpoint: r.endpoint.clone(),
                reachable: r.reachable,
                board_attached: r.attached,
                error: r.error.clone().unwrap_or_default(),
            })
            .collect(),
        power_saved_w: s.power_saved_w,
        kept_off_today_wh: s.kept_off_today_wh,
        meter: s.meter.as_ref().map(|m| pb::MeterState {
            relay_service: m.relay_service.clone(),
            reading: m.reading.is_some(),
            at: m.reading.as_ref().map(|r| to_pb(r.at)),
            apparent_power_va: m.reading.as_ref().map_or(0, |r| r.apparent_power_va),
            subscribed_va: m.reading.as_ref().map_or(0, |r| r.subscribed_va),
            tariff_period: m
                .reading
                .as_ref()
                .map(|r| r.tariff_period.clone())
                .unwrap_or_default(),
            problem: m.problem.clone().unwrap_or_default(),
            tempo_today: color_to_pb(m.reading.as_ref().and_then(|r| r.tempo_today)).into(),
            tempo_tomorrow: color_to_pb(m.reading.as_ref().and_then(|r| r.tempo_tomorrow)).into(),
        }),
    }
}

pub(crate) fn plan_to_pb(plan: &Plan, loads: &[Load], only: Option<&str>) -> pb::GetPlanResponse {
    pb::GetPlanResponse {
        computed_at: Some(to_pb(plan.computed_at)),
        loads: plan
            .loads
            .iter()
            .filter(|l| only.is_none_or(|name| l.load == name))
            .map(|l| pb::LoadPlan {
                budget: l.budget.as_ref().and_then(|b| {
                    let load = loads.iter().find(|load| load.name == l.load)?;
                    Some(budget_to_pb(load, b))
                }),
                load: l.load.clone(),
                intervals: l
                    .intervals
                    .iter()
                    .map(|i| pb::PlanInterval {
                        start: Some(to_pb(i.start)),
                        end: Some(to_pb(i.end)),
                        powered: i.powered,
                        reason: reason_to_pb(i.reason).into(),
                        level: level_to_pb(i.reason.level()).into(),
                        tempo_color: color_to_pb(i.reason.tempo_color()).into(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub(crate) fn record_to_pb(r: &SwitchRecord) -> pb::SwitchRecord {
    pb::SwitchRecord {
        at: Some(to_pb(r.at)),
        load: r.load.clone(),
        relay: Some(pb::RelayAddress {
            relay_service: r.relay.relay_service.clone(),
            channel: r.relay.channel,
        }),
        from_powered: r.from_powered,
        to_powered: r.to_powered,
        reason: reason_to_pb(r.reason).into(),
        level: level_to_pb(r.level).into(),
        tempo_color: color_to_pb(r.reason.tempo_color()).into(),
        tempo_source: r
            .tempo_source
            .map_or(pb::TempoSource::Unspecified, tempo_source_to_pb)
            .into(),
        delta_va: r.delta_va,
    }
}

fn tempo_source_to_pb(s: TempoSource) -> pb::TempoSource {
    match s {
        TempoSource::Rte => pb::TempoSource::Rte,
        TempoSource::Meter => pb::TempoSource::Meter,
        TempoSource::None => pb::TempoSource::None,
    }
}

/// The Tempo days the controller follows, as the forecast-service sends
/// them.
pub(crate) fn tempo_to_pb(days: &[TariffDay]) -> Vec<delestage_proto::forecast::v1::TempoDay> {
    days.iter()
        .map(|d| delestage_proto::forecast::v1::TempoDay {
            date: d.date.to_string(),
            color: color_to_pb(Some(d.color)).into(),
            start: Some(to_pb(d.start)),
            end: Some(to_pb(d.end)),
            peak_end: Some(to_pb(d.peak_end)),
        })
        .collect()
}

fn color_to_pb(color: Option<TempoColor>) -> PbColor {
    color.map_or(PbColor::Unspecified, PbColor::from)
}

fn level_to_pb(level: Option<SignalLevel>) -> PbLevel {
    level.map_or(PbLevel::Unspecified, PbLevel::from)
}

fn fallback_to_pb(f: Fallback) -> pb::Fallback {
    f.into()
}

//! `[[load]]`: each load's settings checked and turned into a [`Load`];
//! an error names the load's index, name and field.

use std::collections::HashMap;
use std::time::Duration;

use delestage_runtime::options::Origins;

use super::{LoadConfig, Options, ShedAt, ShedOnTempo, WIRING_CHOICES, at, check_name};
use crate::Error;
use crate::model::{DailyRun, Load, RelayAddress, RunWindow, SignalLevel, TempoColor};

/// `[[load]]`: at least one; names and relays unique, relays on a
/// declared relay-service.
pub(super) fn loads(o: &Options, origins: &Origins) -> Result<Vec<Load>, Error> {
    if o.load.is_empty() {
        return Err(at(
            origins,
            "load",
            "no [[load]] tables: there is nothing to control".to_owned(),
        ));
    }
    let mut loads: Vec<Load> = Vec::new();
    let mut by_relay: HashMap<RelayAddress, String> = HashMap::new();
    for (i, l) in o.load.iter().enumerate() {
        let key = |field: &str| format!("load[{i}] ({:?}).{field}", l.name);
        let bad = |field: &str, why: String| at(origins, &key(field), why);
        check_name(&l.name).map_err(|why| at(origins, &format!("load[{i}].name"), why))?;
        if loads.iter().any(|other| other.name == l.name) {
            return Err(bad("name", "two loads have this name".to_owned()));
        }
        let relay = parse_relay(&l.relay).map_err(|why| bad("relay", why))?;
        check_relay_service(o, &relay).map_err(|why| bad("relay", why))?;
        if let Some(other) = by_relay.insert(relay.clone(), l.name.clone()) {
            return Err(bad(
                "relay",
                format!("{relay} is already the relay of load {other:?}; one load per relay"),
            ));
        }
        loads.push(load(l, relay).map_err(|(field, why)| bad(field, why))?);
    }
    Ok(loads)
}

/// The relay-service a load's relay names is declared.
fn check_relay_service(o: &Options, relay: &RelayAddress) -> Result<(), String> {
    if o.relays.contains_key(&relay.relay_service) {
        return Ok(());
    }
    let known: Vec<&str> = o.relays.keys().map(String::as_str).collect();
    Err(format!(
        "no relay-service named {:?}; declare it as [relays.{}] (known: {})",
        relay.relay_service,
        relay.relay_service,
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    ))
}

/// One load's own settings, checked: an error names the field.
fn load(l: &LoadConfig, relay: RelayAddress) -> Result<Load, (&'static str, String)> {
    let Some(wiring) = l.wiring else {
        return Err(("wiring", WIRING_CHOICES.to_owned()));
    };
    if l.shed_at.is_none() && l.shed_on_tempo.is_none() && l.run_daily.is_none() && !l.shed_on_power
    {
        return Err((
            "shed_at",
            "required unless shed_on_tempo, run_daily or shed_on_power is set: say when to cut the load, \"orange\" or \"red\" (Ecowatt), and/or shed_on_tempo = \"white\" or \"red\" (Tempo days), and/or run_daily = \"3h\" (so much a day, in the cleanest hours), and/or shed_on_power = true (when the house nears its subscribed power)"
                .to_owned(),
        ));
    }
    if l.power_w == Some(0) {
        return Err(("power_w", "must be more than zero (or left out)".to_owned()));
    }
    let run_daily = daily_run(l)?;
    let min_off = l.min_off.unwrap_or_default();
    if let Some(max_off) = l.max_off {
        if max_off.is_zero() {
            return Err(("max_off", "must be more than zero".to_owned()));
        }
        if max_off < min_off {
            return Err((
                "max_off",
                format!(
                    "{} is shorter than min_off ({}): the load could never be cut that long",
                    humantime::format_duration(max_off),
                    humantime::format_duration(min_off)
                ),
            ));
        }
    }
    Ok(Load {
        name: l.name.clone(),
        relay,
        wiring,
        shed_at: l.shed_at.map(|s| match s {
            ShedAt::Orange => SignalLevel::Orange,
            ShedAt::Red => SignalLevel::Red,
        }),
        shed_on_tempo: l.shed_on_tempo.map(|s| match s {
            ShedOnTempo::White => TempoColor::White,
            ShedOnTempo::Red => TempoColor::Red,
        }),
        priority: l.priority,
        min_on: l.min_on.unwrap_or_default(),
        min_off,
        anticipate: l.anticipate.unwrap_or_default(),
        when_forecast_unknown: l.when_forecast_unknown,
        when_controller_lost: l.when_controller_lost,
        max_off: l.max_off,
        run_daily,
        power_w: l.power_w,
        shed_on_power: l.shed_on_power,
    })
}

/// With MQTT: no two loads that Home Assistant would make one entity.
pub(super) fn check_entities(loads: &[Load], origins: &Origins) -> Result<(), Error> {
    for (i, l) in loads.iter().enumerate() {
        if let Some(other) = loads[..i]
            .iter()
            .find(|o| crate::model::object_id(&o.name) == crate::model::object_id(&l.name))
        {
            return Err(at(
                origins,
                &format!("load[{i}].name"),
                format!(
                    "{:?} and {:?} would be one entity in Home Assistant ('.' becomes '_'); rename one",
                    l.name, other.name
                ),
            ));
        }
    }
    Ok(())
}

/// `run_daily` and `run_window`, checked: an error names the field.
fn daily_run(l: &LoadConfig) -> Result<Option<DailyRun>, (&'static str, String)> {
    let Some(budget) = l.run_daily else {
        if l.run_window.is_some() {
            return Err((
                "run_window",
                "only means something with run_daily (so much a day, e.g. run_daily = \"3h\")"
                    .to_owned(),
            ));
        }
        return Ok(None);
    };
    if budget.is_zero() || budget > Duration::from_secs(24 * 3600) {
        return Err((
            "run_daily",
            format!(
                "{}: must be more than zero and at most 24h",
                humantime::format_duration(budget)
            ),
        ));
    }
    let windows = match &l.run_window {
        None => vec![RunWindow::ALL_DAY],
        Some(list) if list.is_empty() => {
            return Err((
                "run_window",
                "is empty: list at least one window, e.g. [\"22:00-06:00\"], or leave it out for the whole day"
                    .to_owned(),
            ));
        }
        Some(list) => list
            .iter()
            .map(|w| w.parse::<RunWindow>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| ("run_window", why))?,
    };
    // Overlapping windows count once; a day without a clock change is
    // the yardstick.
    let mut minutes = [false; 24 * 60];
    for w in &windows {
        let start = usize::from(w.start.hour() as u8) * 60 + usize::from(w.start.minute() as u8);
        let len = (w.nominal_length().as_secs() / 60) as usize;
        for m in 0..len {
            minutes[(start + m) % minutes.len()] = true;
        }
    }
    let room = Duration::from_secs(60 * minutes.iter().filter(|m| **m).count() as u64);
    if budget > room {
        return Err((
            "run_daily",
            format!(
                "{} does not fit in run_window, which gives {} a day",
                humantime::format_duration(budget),
                humantime::format_duration(room)
            ),
        ));
    }
    Ok(Some(DailyRun { budget, windows }))
}

/// Names end up in CLI arguments and URLs: keep them plain.
/// `"garage:0"` -> relay-service `garage`, channel 0.
fn parse_relay(text: &str) -> Result<RelayAddress, String> {
    let (name, channel) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: write RELAY_SERVICE:CHANNEL, e.g. \"garage:0\""))?;
    let channel = channel
        .parse::<u32>()
        .map_err(|_| format!("{text:?}: {channel:?} is not a channel number"))?;
    Ok(RelayAddress {
        relay_service: name.to_owned(),
        channel,
    })
}

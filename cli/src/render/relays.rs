//! A relay-service's relays.

use delestage_proto::relay::v1 as rpb;

use super::*;

pub(crate) fn relays_text(r: &rpb::GetRelaysResponse, paint: Paint, clock: &Clock) -> String {
    let mut out = String::new();
    if let Some(b) = &r.board {
        let mut facts = vec![
            if b.attached {
                "attached"
            } else {
                "NOT ATTACHED"
            }
            .to_owned(),
        ];
        if b.version != 0 {
            facts.push(format!("version {}", b.version));
        }
        match b.hardware_failsafe() {
            rpb::HardwareFailsafe::Armed => facts.push("hardware failsafe armed".into()),
            rpb::HardwareFailsafe::Unsupported => {
                facts.push("hardware failsafe UNSUPPORTED by this board".into())
            }
            rpb::HardwareFailsafe::Tripped => facts.push("hardware failsafe TRIPPED".into()),
            rpb::HardwareFailsafe::Off | rpb::HardwareFailsafe::Unspecified => {}
        }
        out.push_str(&format!("{} — {}\n\n", b.description, facts.join(", ")));
    }
    out.push_str(&paint.style(
        Style::new().bold(),
        "CH  STATE  SWITCHES/MIN  CHANGED  LABEL",
    ));
    out.push('\n');
    for relay in &r.relays {
        out.push_str(&format!(
            "{:<2}  {}  {:>5}/{:<6}  {:<7}  {}\n",
            relay.channel,
            if relay.energized {
                paint.style(Style::new().bold(), "on   ")
            } else {
                "off  ".to_owned()
            },
            relay.switches_last_minute,
            relay.max_switches_per_minute,
            time(relay.changed_at.as_ref()).map_or("-".to_owned(), |t| clock.show(t)),
            if relay.applied == Some(false) {
                format!("{} (not held by the board now)", relay.label)
            } else {
                relay.label.clone()
            }
            .trim_start()
        ));
    }
    out
}

// ---- meter ----

/// The Linky meter: power against the subscribed power, the tariff period,
/// the colours, where the reading comes from and how old it is.
pub(crate) fn meter_text(
    r: &delestage_proto::meter::v1::MeterReading,
    paint: Paint,
    clock: &Clock,
) -> String {
    use delestage_proto::json::meter_mode_name;
    let percent = if r.subscribed_va > 0 {
        format!(
            " ({}%)",
            u64::from(r.apparent_power_va) * 100 / u64::from(r.subscribed_va)
        )
    } else {
        String::new()
    };
    let mut out = format!(
        "{} {} VA of {} VA subscribed{percent}\n",
        paint.style(Style::new().bold(), "Power"),
        r.apparent_power_va,
        r.subscribed_va,
    );
    if !r.phase_power_va.is_empty() {
        let phases: Vec<String> = r.phase_power_va.iter().map(|p| format!("{p} VA")).collect();
        out.push_str(&format!("Phases {}\n", phases.join(" / ")));
    }
    if let Some(injected) = r.injected_va {
        out.push_str(&format!("Injected {injected} VA\n"));
    }
    out.push_str(&format!(
        "Tariff period {}\nTempo today {}, tomorrow {}\n",
        if r.tariff_period.is_empty() {
            "-"
        } else {
            &r.tariff_period
        },
        tempo_name(r.tempo_today()),
        tempo_name(r.tempo_tomorrow()),
    ));
    let age = time(r.at.as_ref()).map_or("-".to_owned(), |at| {
        let secs = clock.now.duration_since(at).as_secs().max(0);
        format!("{} ({secs} s ago)", clock.show(at))
    });
    out.push_str(&format!(
        "Meter {} ({} mode), read at {age}; frames {} ok, {} bad\n",
        r.meter_id,
        meter_mode_name(r.mode()),
        r.frames_ok,
        r.frames_bad,
    ));
    out
}

// ---- history ----

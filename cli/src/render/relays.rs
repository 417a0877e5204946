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

// ---- history ----

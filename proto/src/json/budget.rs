//! A `run_daily` load's day, as one line: `pool-pump 3h/day: 1h done, 2h
//! planned 13:00-15:00`, and the same as JSON.

use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::{rfc3339, time};
use crate::controller::v1 as cpb;

/// `pool-pump 3h/day: 1h done, 2h planned 13:00-15:00`; the windows follow
/// when the load has some, and a day that cannot fit its budget says so.
pub fn budget_line(load: &str, b: &cpb::DailyBudget) -> String {
    let run_daily = seconds(b.run_daily.as_ref());
    let done = seconds(b.done.as_ref());
    let planned = seconds(b.planned.as_ref());
    let mut line = format!(
        "{load} {}/day: {} done, {} planned",
        duration(run_daily),
        duration(done),
        duration(planned)
    );
    let runs: Vec<String> = b
        .runs
        .iter()
        .filter_map(|r| Some((time(r.start.as_ref())?, time(r.end.as_ref())?)))
        .map(|(start, end)| format!("{}-{}", clock(start), clock(end)))
        .collect();
    if !runs.is_empty() {
        line.push(' ');
        line.push_str(&runs.join(", "));
    }
    if !b.windows.is_empty() {
        line.push_str(&format!(" (in {})", b.windows.join(", ")));
    }
    // Minutes: the last few seconds of a run are not a shortfall.
    if (done + planned) / 60 < run_daily / 60 {
        line.push_str(&format!(
            "; {} short: it does not fit in what is left of today's windows",
            duration(run_daily - done - planned)
        ));
    }
    line
}

/// The same, for `--json`: durations in seconds, and the line.
pub fn budget_json(load: &str, b: &cpb::DailyBudget) -> Value {
    json!({
        "run_daily_seconds": seconds(b.run_daily.as_ref()),
        "done_seconds": seconds(b.done.as_ref()),
        "planned_seconds": seconds(b.planned.as_ref()),
        "runs": b.runs.iter().map(|r| json!({
            "start": rfc3339(r.start.as_ref()),
            "end": rfc3339(r.end.as_ref()),
        })).collect::<Vec<_>>(),
        "windows": b.windows,
        "summary": budget_line(load, b),
    })
}

fn seconds(d: Option<&prost_types::Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.seconds).unwrap_or(0))
}

/// `3h`, `1h30m`, `45m`, to the minute (rounded down); `40s` under a
/// minute.
fn duration(secs: u64) -> String {
    if secs < 60 {
        return format!("{secs}s");
    }
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    match (h, m) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m:02}m"),
    }
}

fn clock(t: jiff::Timestamp) -> String {
    t.to_zoned_datetime(TimeZone::system())
        .strftime("%H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> prost_types::Timestamp {
        let t: jiff::Timestamp = s.parse().expect("ts");
        prost_types::Timestamp {
            seconds: t.as_second(),
            nanos: 0,
        }
    }

    fn d(secs: i64) -> Option<prost_types::Duration> {
        Some(prost_types::Duration {
            seconds: secs,
            nanos: 0,
        })
    }

    #[test]
    fn the_line_says_done_and_planned() {
        let b = cpb::DailyBudget {
            run_daily: d(3 * 3600),
            done: d(3600 + 59),
            planned: d(2 * 3600),
            runs: vec![cpb::TimeRange {
                start: Some(ts("2026-12-08T13:00:00Z")),
                end: Some(ts("2026-12-08T15:00:00Z")),
            }],
            windows: vec![],
        };
        let line = budget_line("pool-pump", &b);
        // The clock is local time; the rest is fixed.
        assert!(
            line.starts_with("pool-pump 3h/day: 1h done, 2h planned "),
            "{line}"
        );
        assert!(!line.contains("short"), "{line}");
        let json = budget_json("pool-pump", &b);
        assert_eq!(json["run_daily_seconds"], 3 * 3600);
        assert_eq!(json["runs"][0]["start"], "2026-12-08T13:00:00Z");
        assert_eq!(json["summary"], line);
    }

    #[test]
    fn a_day_that_cannot_fit_says_so() {
        let b = cpb::DailyBudget {
            run_daily: d(3 * 3600),
            done: d(0),
            planned: d(5400),
            runs: vec![],
            windows: vec!["12:00-14:00".to_owned()],
        };
        assert_eq!(
            budget_line("charger", &b),
            "charger 3h/day: 0s done, 1h30m planned (in 12:00-14:00); 1h30m short: it does not fit in what is left of today's windows"
        );
    }
}

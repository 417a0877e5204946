//! Looking things up in a forecast's hours: the hour at an instant, and the
//! hours a forecast still governs before its expiry.

use jiff::Timestamp;

use super::Hour;

/// The hours of a forecast that it still governs at `until` and before:
/// those that start before it, the one that spans it cut there. A forecast
/// past its `forecast_max_age` governs nothing, so the plan shows each
/// load's fallback from its expiry on (and a load's next change says so).
pub(crate) fn hours_until(hours: &[Hour], until: Timestamp) -> Vec<Hour> {
    hours
        .iter()
        .take_while(|h| h.start < until)
        .map(|h| Hour {
            end: h.end.min(until),
            ..*h
        })
        .collect()
}

/// The hour containing `t`.
pub(crate) fn hour_at(hours: &[Hour], t: Timestamp) -> Option<&Hour> {
    let after = hours.partition_point(|h| h.start <= t);
    let hour = hours.get(after.checked_sub(1)?)?;
    (t < hour.end).then_some(hour)
}

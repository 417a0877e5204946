//! A load: an appliance on one relay, how it is wired, when it is shed, what
//! it does when the forecast is unknown (the words themselves are
//! `delestage_proto::vocabulary`'s).

use std::fmt;
use std::time::Duration;

pub use delestage_proto::vocabulary::{Fallback, SignalLevel, TempoColor, Wiring};

/// Where a load's relay is: a relay-service (by its name in the config) and
/// a channel on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayAddress {
    pub relay_service: String,
    pub channel: u32,
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.relay_service, self.channel)
    }
}

/// One appliance the controller manages.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub name: String,
    pub relay: RelayAddress,
    pub wiring: Wiring,
    /// ORANGE or RED: cut for every hour at or above it. `None`: the load
    /// sheds on Tempo only.
    pub shed_at: Option<SignalLevel>,
    /// WHITE or RED: cut in the peak hours (06:00-22:00 Paris time) of
    /// Tempo days of this colour or dearer. `None`: not on Tempo.
    pub shed_on_tempo: Option<TempoColor>,
    /// The order within one pass: higher is cut after and restored before
    /// lower ones (restores are staggered, so it decides who waits). Which
    /// loads are cut at all is `shed_at` / `shed_on_tempo`'s business.
    pub priority: i32,
    pub min_on: Duration,
    pub min_off: Duration,
    /// Cut this long before a tense hour (or a Tempo peak) begins.
    pub anticipate: Duration,
    pub when_forecast_unknown: Fallback,
    /// Where its relay goes once a relay box that lost its controller has
    /// followed the plan it was handed to its end.
    pub when_controller_lost: Fallback,
}

/// A level's name (`unknown` for unspecified), from the one vocabulary.
pub fn level_name(level: Option<SignalLevel>) -> &'static str {
    SignalLevel::name_or_unknown(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_by_tension() {
        assert!(SignalLevel::Red > SignalLevel::Orange);
        assert!(SignalLevel::Orange > SignalLevel::Green);
        assert!(SignalLevel::Green > SignalLevel::CarbonFree);
    }
}

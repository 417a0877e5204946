//! The controller's vocabulary: a load (an appliance on one relay), how it
//! is wired, when it is shed, what it does when the forecast is unknown.

use std::fmt;
use std::time::Duration;

pub use delestage_proto::forecast::v1::SignalLevel;

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

/// How the appliance hangs on the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wiring {
    /// Powered when the relay is energised.
    #[default]
    NormallyOpen,
    /// Powered when the relay is de-energised (fails powered).
    NormallyClosed,
}

impl Wiring {
    /// The relay state that gives `powered`.
    pub fn energized_for(self, powered: bool) -> bool {
        match self {
            Wiring::NormallyOpen => powered,
            Wiring::NormallyClosed => !powered,
        }
    }

    /// Whether the appliance is powered when the relay is `energized`.
    pub fn powered_when(self, energized: bool) -> bool {
        // The mapping is its own inverse.
        self.energized_for(energized)
    }
}

/// What a load does when the forecast is missing or too old.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Stay as it is.
    #[default]
    Keep,
    /// Be cut.
    Shed,
    /// Be powered.
    Restore,
}

/// One appliance the controller manages.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub name: String,
    pub relay: RelayAddress,
    pub wiring: Wiring,
    /// ORANGE or RED: cut for every hour at or above it.
    pub shed_at: SignalLevel,
    /// Higher is more important: shed last, restored first.
    pub priority: i32,
    pub min_on: Duration,
    pub min_off: Duration,
    /// Cut this long before a tense hour begins.
    pub anticipate: Duration,
    pub when_forecast_unknown: Fallback,
}

/// Short lower-case name of a level, for logs and configs.
pub fn level_name(level: SignalLevel) -> &'static str {
    match level {
        SignalLevel::Unspecified => "unknown",
        SignalLevel::CarbonFree => "carbon-free",
        SignalLevel::Green => "green",
        SignalLevel::Orange => "orange",
        SignalLevel::Red => "red",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wiring_maps_both_ways() {
        assert!(Wiring::NormallyOpen.energized_for(true));
        assert!(!Wiring::NormallyClosed.energized_for(true));
        for w in [Wiring::NormallyOpen, Wiring::NormallyClosed] {
            for p in [true, false] {
                assert_eq!(w.powered_when(w.energized_for(p)), p);
            }
        }
    }

    #[test]
    fn levels_are_ordered_by_tension() {
        assert!(SignalLevel::Red > SignalLevel::Orange);
        assert!(SignalLevel::Orange > SignalLevel::Green);
        assert!(SignalLevel::Green > SignalLevel::CarbonFree);
    }
}

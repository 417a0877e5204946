//! delestage's words, defined once: the names that the CLI, the history
//! file, the status, the config files and the logs all use, and the
//! conversions to and from the protobuf enums.
//!
//! Each name is snake_case and stable (`red`, `shed_for_level`): scripts
//! read them. Two older spellings are kept because files and configs
//! already hold them: the level `carbon-free` and the wirings
//! `normally-open` / `normally-closed`; the snake_case form is accepted too.
//!
//! Levels compare by tension, calmest first, whatever their protobuf
//! numbers.

use std::fmt;
use std::str::FromStr;

use crate::controller::v1 as cpb;
use crate::forecast::v1 as fpb;

/// A name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}; expected one of {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub expected: &'static str,
}

/// Display, FromStr and serde (as the name) for a vocabulary enum.
macro_rules! named {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl $ty {
            /// Its stable name.
            pub const fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($name $(| $alias)* => Ok($ty::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        name: s.to_owned(),
                        expected: concat!($("`", $name, "` "),+),
                    }),
                }
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                name.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// How tense the grid is, calmest first (`Ord` compares tension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SignalLevel {
    /// Ecowatt 0: low consumption, carbon-free production.
    CarbonFree,
    /// Ecowatt 1: normal.
    Green,
    /// Ecowatt 2: tense; saving energy is welcome.
    Orange,
    /// Ecowatt 3: very tense; cuts are likely without savings.
    Red,
}

named!(SignalLevel, "level", {
    CarbonFree => "carbon-free" | "carbon_free",
    Green => "green",
    Orange => "orange",
    Red => "red",
});

impl SignalLevel {
    /// Every level, calmest first.
    pub const ALL: [SignalLevel; 4] = [Self::CarbonFree, Self::Green, Self::Orange, Self::Red];

    /// Ecowatt's `hvalue`, 0..=3.
    pub fn from_hvalue(value: i64) -> Option<Self> {
        match value {
            0 => Some(Self::CarbonFree),
            1 => Some(Self::Green),
            2 => Some(Self::Orange),
            3 => Some(Self::Red),
            _ => None,
        }
    }

    /// Ecowatt's `dvalue`, 1..=3 (a day is never "carbon-free").
    pub fn from_dvalue(value: i64) -> Option<Self> {
        match value {
            1 => Some(Self::Green),
            2 => Some(Self::Orange),
            3 => Some(Self::Red),
            _ => None,
        }
    }

    /// From the wire: `None` for unspecified, or a value this build does
    /// not know (a newer peer).
    pub fn from_pb(value: i32) -> Option<Self> {
        match fpb::SignalLevel::try_from(value).ok()? {
            fpb::SignalLevel::Unspecified => None,
            fpb::SignalLevel::CarbonFree => Some(Self::CarbonFree),
            fpb::SignalLevel::Green => Some(Self::Green),
            fpb::SignalLevel::Orange => Some(Self::Orange),
            fpb::SignalLevel::Red => Some(Self::Red),
        }
    }

    /// The name of a level that may be unknown: `unknown` then.
    pub fn name_or_unknown(level: Option<Self>) -> &'static str {
        level.map_or("unknown", Self::name)
    }
}

impl From<SignalLevel> for fpb::SignalLevel {
    fn from(level: SignalLevel) -> Self {
        match level {
            SignalLevel::CarbonFree => Self::CarbonFree,
            SignalLevel::Green => Self::Green,
            SignalLevel::Orange => Self::Orange,
            SignalLevel::Red => Self::Red,
        }
    }
}

/// How an appliance hangs on its relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Wiring {
    /// Powered when the relay is energised.
    #[default]
    NormallyOpen,
    /// Powered when the relay is de-energised (fails powered).
    NormallyClosed,
}

named!(Wiring, "wiring", {
    NormallyOpen => "normally-open" | "normally_open",
    NormallyClosed => "normally-closed" | "normally_closed",
});

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

impl From<Wiring> for cpb::Wiring {
    fn from(w: Wiring) -> Self {
        match w {
            Wiring::NormallyOpen => Self::NormallyOpen,
            Wiring::NormallyClosed => Self::NormallyClosed,
        }
    }
}

/// What a load does when the forecast is missing or too old.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fallback {
    /// Stay as it is.
    #[default]
    Keep,
    /// Be cut.
    Shed,
    /// Be powered.
    Restore,
}

named!(Fallback, "fallback", {
    Keep => "keep",
    Shed => "shed",
    Restore => "restore",
});

impl From<Fallback> for cpb::Fallback {
    fn from(f: Fallback) -> Self {
        match f {
            Fallback::Keep => Self::Keep,
            Fallback::Shed => Self::Shed,
            Fallback::Restore => Self::Restore,
        }
    }
}

/// Why a load is in a state. The kind only: the level behind a shed travels
/// beside it (in the plan, the status and the history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonKind {
    /// Nothing to shed.
    Normal,
    /// The hour's level is at or above the load's `shed_at`.
    ShedForLevel,
    /// A tense hour starts within the load's `anticipate`.
    Anticipation,
    /// A person's override.
    Override,
    /// No usable forecast for this time: the load's fallback.
    ForecastUnknown,
    /// Kept powered until its minimum on time has passed.
    MinOnHold,
    /// Kept cut until its minimum off time has passed.
    MinOffHold,
    /// Waiting for its turn to be restored.
    RestoreStagger,
    /// In the peak hours of a Tempo day of the load's `shed_on_tempo`
    /// colour or above.
    ShedForTempo,
    /// Powered after being cut for its `max_off`.
    ComfortLimit,
    /// Powered for its daily runtime (`run_daily`).
    ScheduledRun,
    /// Cut with daily runtime left, until the hours chosen for it.
    WaitingForBestHours,
    /// Cut: its daily runtime is done.
    BudgetMet,
    /// Held cut for the restore jitter after a tense period.
    RestoreJitter,
    /// Cut now: the house draws close to its subscribed power.
    PowerLimit,
}

named!(ReasonKind, "reason", {
    Normal => "normal",
    ShedForLevel => "shed_for_level",
    Anticipation => "anticipation",
    Override => "override",
    ForecastUnknown => "forecast_unknown",
    MinOnHold => "min_on_hold",
    MinOffHold => "min_off_hold",
    RestoreStagger => "restore_stagger",
    ShedForTempo => "shed_for_tempo",
    ComfortLimit => "comfort_limit",
    ScheduledRun => "scheduled_run",
    WaitingForBestHours => "waiting_for_best_hours",
    BudgetMet => "budget_met",
    RestoreJitter => "restore_jitter",
    PowerLimit => "power_limit",
});

impl ReasonKind {
    /// From the wire: `None` for unspecified or unknown.
    pub fn from_pb(value: i32) -> Option<Self> {
        Some(match cpb::Reason::try_from(value).ok()? {
            cpb::Reason::Unspecified => return None,
            cpb::Reason::Normal => Self::Normal,
            cpb::Reason::ShedForLevel => Self::ShedForLevel,
            cpb::Reason::Anticipation => Self::Anticipation,
            cpb::Reason::Override => Self::Override,
            cpb::Reason::ForecastUnknown => Self::ForecastUnknown,
            cpb::Reason::MinOnHold => Self::MinOnHold,
            cpb::Reason::MinOffHold => Self::MinOffHold,
            cpb::Reason::RestoreStagger => Self::RestoreStagger,
            cpb::Reason::ShedForTempo => Self::ShedForTempo,
            cpb::Reason::ComfortLimit => Self::ComfortLimit,
            cpb::Reason::ScheduledRun => Self::ScheduledRun,
            cpb::Reason::WaitingForBestHours => Self::WaitingForBestHours,
            cpb::Reason::BudgetMet => Self::BudgetMet,
            cpb::Reason::RestoreJitter => Self::RestoreJitter,
            cpb::Reason::PowerLimit => Self::PowerLimit,
        })
    }

    /// The name of a reason that may be unknown: `unknown` then.
    pub fn name_or_unknown(kind: Option<Self>) -> &'static str {
        kind.map_or("unknown", Self::name)
    }
}

impl From<ReasonKind> for cpb::Reason {
    fn from(kind: ReasonKind) -> Self {
        match kind {
            ReasonKind::Normal => Self::Normal,
            ReasonKind::ShedForLevel => Self::ShedForLevel,
            ReasonKind::Anticipation => Self::Anticipation,
            ReasonKind::Override => Self::Override,
            ReasonKind::ForecastUnknown => Self::ForecastUnknown,
            ReasonKind::MinOnHold => Self::MinOnHold,
            ReasonKind::MinOffHold => Self::MinOffHold,
            ReasonKind::RestoreStagger => Self::RestoreStagger,
            ReasonKind::ShedForTempo => Self::ShedForTempo,
            ReasonKind::ComfortLimit => Self::ComfortLimit,
            ReasonKind::ScheduledRun => Self::ScheduledRun,
            ReasonKind::WaitingForBestHours => Self::WaitingForBestHours,
            ReasonKind::BudgetMet => Self::BudgetMet,
            ReasonKind::RestoreJitter => Self::RestoreJitter,
            ReasonKind::PowerLimit => Self::PowerLimit,
        }
    }
}

/// A Tempo day's colour, cheapest first (`Ord` compares cost: a load shed
/// on `white` is shed on `red` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TempoColor {
    /// Most days: cheap.
    Blue,
    /// 43 days a season: dearer peak hours.
    White,
    /// 22 winter weekdays a season: the dearest peak hours.
    Red,
}

named!(TempoColor, "Tempo colour", {
    Blue => "blue",
    White => "white",
    Red => "red",
});

impl TempoColor {
    /// Every colour, cheapest first.
    pub const ALL: [TempoColor; 3] = [Self::Blue, Self::White, Self::Red];

    /// RTE's `value` (`BLUE`, `WHITE`, `RED`).
    pub fn from_rte(value: &str) -> Option<Self> {
        match value {
            "BLUE" => Some(Self::Blue),
            "WHITE" => Some(Self::White),
            "RED" => Some(Self::Red),
            _ => None,
        }
    }

    /// RTE's spelling.
    pub fn rte_name(self) -> &'static str {
        match self {
            Self::Blue => "BLUE",
            Self::White => "WHITE",
            Self::Red => "RED",
        }
    }

    /// From the wire: `None` for unspecified or unknown.
    pub fn from_pb(value: i32) -> Option<Self> {
        match fpb::TempoColor::try_from(value).ok()? {
            fpb::TempoColor::Unspecified => None,
            fpb::TempoColor::Blue => Some(Self::Blue),
            fpb::TempoColor::White => Some(Self::White),
            fpb::TempoColor::Red => Some(Self::Red),
        }
    }

    /// The name of a colour that may be unknown: `unknown` then.
    pub fn name_or_unknown(color: Option<Self>) -> &'static str {
        color.map_or("unknown", Self::name)
    }
}

impl From<TempoColor> for fpb::TempoColor {
    fn from(color: TempoColor) -> Self {
        match color {
            TempoColor::Blue => Self::Blue,
            TempoColor::White => Self::White,
            TempoColor::Red => Self::Red,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_compare_by_tension() {
        let mut shuffled = [
            SignalLevel::Red,
            SignalLevel::CarbonFree,
            SignalLevel::Orange,
            SignalLevel::Green,
        ];
        shuffled.sort();
        assert_eq!(shuffled, SignalLevel::ALL);
    }

    #[test]
    fn every_name_round_trips_through_text_serde_and_protobuf() {
        for level in SignalLevel::ALL {
            assert_eq!(level.name().parse::<SignalLevel>(), Ok(level));
            let json = serde_json::to_string(&level).expect("serialize");
            assert_eq!(json, format!("\"{level}\""));
            assert_eq!(serde_json::from_str::<SignalLevel>(&json).ok(), Some(level));
            assert_eq!(
                SignalLevel::from_pb(fpb::SignalLevel::from(level) as i32),
                Some(level)
            );
        }
        for kind in [
            ReasonKind::Normal,
            ReasonKind::ShedForLevel,
            ReasonKind::Anticipation,
            ReasonKind::Override,
            ReasonKind::ForecastUnknown,
            ReasonKind::MinOnHold,
            ReasonKind::MinOffHold,
            ReasonKind::RestoreStagger,
            ReasonKind::ShedForTempo,
            ReasonKind::ComfortLimit,
            ReasonKind::ScheduledRun,
            ReasonKind::WaitingForBestHours,
            ReasonKind::BudgetMet,
            ReasonKind::RestoreJitter,
            ReasonKind::PowerLimit,
        ] {
            assert_eq!(kind.name().parse::<ReasonKind>(), Ok(kind));
            assert_eq!(
                ReasonKind::from_pb(cpb::Reason::from(kind) as i32),
                Some(kind)
            );
        }
        for w in [Wiring::NormallyOpen, Wiring::NormallyClosed] {
            assert_eq!(w.name().parse::<Wiring>(), Ok(w));
        }
        for c in TempoColor::ALL {
            assert_eq!(c.name().parse::<TempoColor>(), Ok(c));
            assert_eq!(TempoColor::from_rte(c.rte_name()), Some(c));
            assert_eq!(
                TempoColor::from_pb(fpb::TempoColor::from(c) as i32),
                Some(c)
            );
        }
        assert!(TempoColor::Blue < TempoColor::White && TempoColor::White < TempoColor::Red);
        for f in [Fallback::Keep, Fallback::Shed, Fallback::Restore] {
            assert_eq!(f.name().parse::<Fallback>(), Ok(f));
        }
        assert_eq!(ReasonKind::ShedForLevel.to_string(), "shed_for_level");
        assert_eq!("carbon_free".parse(), Ok(SignalLevel::CarbonFree));
        assert_eq!("normally_closed".parse(), Ok(Wiring::NormallyClosed));
    }

    #[test]
    fn grpc_numbers_are_the_contract() {
        assert_eq!(fpb::SignalLevel::from(SignalLevel::CarbonFree) as i32, 1);
        assert_eq!(fpb::SignalLevel::from(SignalLevel::Green) as i32, 2);
        assert_eq!(fpb::SignalLevel::from(SignalLevel::Orange) as i32, 3);
        assert_eq!(fpb::SignalLevel::from(SignalLevel::Red) as i32, 4);
    }

    #[test]
    fn an_unknown_name_says_what_was_expected() {
        let err = "purple".parse::<SignalLevel>().expect_err("unknown");
        assert!(err.to_string().contains("`red`"), "{err}");
        assert_eq!(SignalLevel::from_pb(0), None);
        assert_eq!(SignalLevel::from_pb(99), None);
    }

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
}

//! The grid-tension level of an hour or a day: Ecowatt's `hvalue` /
//! `dvalue`, and the gRPC `SignalLevel`.

use delestage_proto::forecast::v1 as pb;

/// How tense the grid is, calmest first (so `Ord` compares tension).
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

impl SignalLevel {
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

    /// The lower-case name used in logs and configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CarbonFree => "carbon-free",
            Self::Green => "green",
            Self::Orange => "orange",
            Self::Red => "red",
        }
    }
}

impl std::fmt::Display for SignalLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<SignalLevel> for pb::SignalLevel {
    fn from(level: SignalLevel) -> Self {
        match level {
            SignalLevel::CarbonFree => Self::CarbonFree,
            SignalLevel::Green => Self::Green,
            SignalLevel::Orange => Self::Orange,
            SignalLevel::Red => Self::Red,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hvalues_map_in_order_and_reject_the_rest() {
        let levels: Vec<_> = (0..4).filter_map(SignalLevel::from_hvalue).collect();
        assert_eq!(
            levels,
            [
                SignalLevel::CarbonFree,
                SignalLevel::Green,
                SignalLevel::Orange,
                SignalLevel::Red
            ]
        );
        assert!(levels.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(SignalLevel::from_hvalue(-1), None);
        assert_eq!(SignalLevel::from_hvalue(4), None);
        assert_eq!(SignalLevel::from_dvalue(0), None);
    }

    #[test]
    fn grpc_numbers_are_the_contract() {
        assert_eq!(pb::SignalLevel::from(SignalLevel::CarbonFree) as i32, 1);
        assert_eq!(pb::SignalLevel::from(SignalLevel::Green) as i32, 2);
        assert_eq!(pb::SignalLevel::from(SignalLevel::Orange) as i32, 3);
        assert_eq!(pb::SignalLevel::from(SignalLevel::Red) as i32, 4);
    }
}

//! What a valid frame says about the house.
//!
//! | | historic | standard |
//! |---|---|---|
//! | meter id | ADCO | ADSC |
//! | apparent power (VA) | PAPP | SINSTS (SINSTS1..3 per phase) |
//! | subscribed (VA) | ISOUSC × 200 | PREF × 1000 |
//! | tariff period | PTEC | LTARF |
//! | Tempo today | PTEC `..JB` `..JW` `..JR` | STGE bits 24–25 |
//! | Tempo tomorrow | DEMAIN `BLEU` `BLAN` `ROUG` (`----`: not known) | STGE bits 26–27 |
//! | injected (VA) | — | SINSTI |
//!
//! STGE's two-bit colours: 0 none, 1 blue, 2 white, 3 red. NJOURF and
//! NJOURF+1 are the supplier's calendar day numbers, not colours.

use crate::frame::Frame;
use crate::group::{Group, Mode};

/// A Tempo day's colour, as the meter says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TempoColor {
    Blue,
    White,
    Red,
}

impl TempoColor {
    pub fn name(self) -> &'static str {
        match self {
            TempoColor::Blue => "blue",
            TempoColor::White => "white",
            TempoColor::Red => "red",
        }
    }

    /// STGE's two bits (0: none).
    fn from_bits(bits: u32) -> Option<Self> {
        match bits & 0b11 {
            1 => Some(TempoColor::Blue),
            2 => Some(TempoColor::White),
            3 => Some(TempoColor::Red),
            _ => None,
        }
    }

    pub(crate) fn bits(color: Option<Self>) -> u32 {
        match color {
            None => 0,
            Some(TempoColor::Blue) => 1,
            Some(TempoColor::White) => 2,
            Some(TempoColor::Red) => 3,
        }
    }
}

/// A reading: one valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub mode: Mode,
    /// ADCO / ADSC: personal data (it identifies the home); never log it
    /// at info level.
    pub meter_id: String,
    pub apparent_power_va: u32,
    pub subscribed_va: u32,
    /// PTEC or LTARF, as sent (blanks at the ends trimmed).
    pub tariff_period: String,
    pub tempo_today: Option<TempoColor>,
    pub tempo_tomorrow: Option<TempoColor>,
    /// Per phase, on a three-phase meter in standard mode (SINSTS1..3).
    pub phase_power_va: Vec<u32>,
    /// SINSTI, on a meter that also injects (solar).
    pub injected_va: Option<u32>,
    /// Every group, in the meter's order: labels this reader does not know
    /// are kept.
    pub groups: Vec<Group>,
}

/// Why a frame is not a reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    #[error("{0} group(s) failed their checksum or shape")]
    BadGroups(usize),
    #[error("no group")]
    Empty,
    #[error("no {0} group")]
    Missing(&'static str),
    #[error("{label} is not a number: {data:?}")]
    NotANumber { label: &'static str, data: String },
}

impl Reading {
    /// The reading of a frame; an error if any of its groups was dropped
    /// or a value every frame carries is missing.
    pub fn from_frame(frame: &Frame) -> Result<Self, ReadingError> {
        if !frame.bad_groups.is_empty() {
            return Err(ReadingError::BadGroups(frame.bad_groups.len()));
        }
        let mode = frame.mode.ok_or(ReadingError::Empty)?;
        let get = |label: &'static str| {
            frame
                .groups
                .iter()
                .find(|g| g.label == label)
                .map(|g| g.data.trim())
        };
        let need = |label: &'static str| get(label).ok_or(ReadingError::Missing(label));
        let number = |label: &'static str| -> Result<Option<u32>, ReadingError> {
            get(label)
                .map(|data| {
                    data.parse::<u32>().map_err(|_| ReadingError::NotANumber {
                        label,
                        data: data.to_owned(),
                    })
                })
                .transpose()
        };
        let required = |label: &'static str| number(label)?.ok_or(ReadingError::Missing(label));
        let reading = match mode {
            Mode::Historic => {
                let period = need("PTEC")?;
                Reading {
                    mode,
                    meter_id: meter_id("ADCO", need("ADCO")?)?,
                    apparent_power_va: required("PAPP")?,
                    subscribed_va: required("ISOUSC")?.saturating_mul(200),
                    tariff_period: period.to_owned(),
                    tempo_today: tempo_of_period(period),
                    tempo_tomorrow: get("DEMAIN").and_then(tempo_of_demain),
                    phase_power_va: Vec::new(),
                    injected_va: None,
                    groups: frame.groups.clone(),
                }
            }
            Mode::Standard => {
                let status = get("STGE")
                    .map(|s| {
                        u32::from_str_radix(s, 16).map_err(|_| ReadingError::NotANumber {
                            label: "STGE",
                            data: s.to_owned(),
                        })
                    })
                    .transpose()?;
                let phases = ["SINSTS1", "SINSTS2", "SINSTS3"]
                    .into_iter()
                    .map(number)
                    .collect::<Result<Vec<_>, _>>()?;
                Reading {
                    mode,
                    meter_id: meter_id("ADSC", need("ADSC")?)?,
                    apparent_power_va: required("SINSTS")?,
                    subscribed_va: required("PREF")?.saturating_mul(1000),
                    tariff_period: get("LTARF").unwrap_or_default().to_owned(),
                    tempo_today: status.and_then(|s| TempoColor::from_bits(s >> 24)),
                    tempo_tomorrow: status.and_then(|s| TempoColor::from_bits(s >> 26)),
                    phase_power_va: phases.into_iter().flatten().collect(),
                    injected_va: number("SINSTI")?,
                    groups: frame.groups.clone(),
                }
            }
        };
        Ok(reading)
    }
}

/// A meter id is 12 digits.
fn meter_id(label: &'static str, data: &str) -> Result<String, ReadingError> {
    if data.len() == 12 && data.bytes().all(|b| b.is_ascii_digit()) {
        Ok(data.to_owned())
    } else {
        Err(ReadingError::NotANumber {
            label,
            data: data.to_owned(),
        })
    }
}

/// Today's colour from a Tempo PTEC (`HPJB`, `HCJR`...); none on another
/// option (`TH..`, `HP..`).
fn tempo_of_period(period: &str) -> Option<TempoColor> {
    match period.as_bytes() {
        [_, _, b'J', b'B'] => Some(TempoColor::Blue),
        [_, _, b'J', b'W'] => Some(TempoColor::White),
        [_, _, b'J', b'R'] => Some(TempoColor::Red),
        _ => None,
    }
}

fn tempo_of_demain(data: &str) -> Option<TempoColor> {
    match data {
        "BLEU" => Some(TempoColor::Blue),
        "BLAN" => Some(TempoColor::White),
        "ROUG" => Some(TempoColor::Red),
        _ => None,
    }
}

//! Frames for a meter state, as a Linky sends them: the groups a Tempo
//! contract's meter sends, in the meter's order, with real checksums. The
//! stand-in meter (tests, demo) writes these.

use crate::frame::encode_frame;
use crate::group::{Group, Mode};
use crate::reading::TempoColor;

/// What the meter measures and knows, to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterState {
    /// 12 digits.
    pub meter_id: String,
    pub apparent_power_va: u32,
    /// A multiple of 200 VA in historic mode (ISOUSC, amperes), of
    /// 1000 VA in standard mode (PREF, kVA); rounded down otherwise.
    pub subscribed_va: u32,
    /// Peak hours (heures pleines) or off-peak.
    pub peak: bool,
    pub tempo_today: Option<TempoColor>,
    pub tempo_tomorrow: Option<TempoColor>,
    /// Three-phase, standard mode: SINSTS1..3.
    pub phase_power_va: Vec<u32>,
    /// Standard mode: SINSTI.
    pub injected_va: Option<u32>,
}

impl MeterState {
    /// The tariff period the meter sends (PTEC in historic mode, LTARF in
    /// standard mode).
    pub fn tariff_period(&self, mode: Mode) -> String {
        let hours = if self.peak { "HP" } else { "HC" };
        match (mode, self.tempo_today) {
            (Mode::Historic, Some(c)) => format!("{hours}J{}", historic_letter(c)),
            (Mode::Historic, None) => "TH..".to_owned(),
            (Mode::Standard, Some(c)) => format!("{hours}  {}", standard_word(c)),
            (Mode::Standard, None) => "BASE".to_owned(),
        }
    }
}

fn historic_letter(c: TempoColor) -> char {
    match c {
        TempoColor::Blue => 'B',
        TempoColor::White => 'W',
        TempoColor::Red => 'R',
    }
}

fn standard_word(c: TempoColor) -> &'static str {
    match c {
        TempoColor::Blue => "BLEU",
        TempoColor::White => "BLANC",
        TempoColor::Red => "ROUGE",
    }
}

/// The groups of one frame for `state`.
pub fn groups_for(mode: Mode, state: &MeterState) -> Vec<Group> {
    match mode {
        Mode::Historic => historic(state),
        Mode::Standard => standard(state),
    }
}

/// One frame for `state`, STX to ETX.
pub fn frame_for(mode: Mode, state: &MeterState) -> Vec<u8> {
    encode_frame(mode, &groups_for(mode, state))
}

fn historic(s: &MeterState) -> Vec<Group> {
    let demain = match s.tempo_tomorrow {
        None => "----",
        Some(TempoColor::Blue) => "BLEU",
        Some(TempoColor::White) => "BLAN",
        Some(TempoColor::Red) => "ROUG",
    };
    let amps = s.subscribed_va / 200;
    vec![
        Group::new("ADCO", &s.meter_id),
        Group::new("OPTARIF", "BBR("),
        Group::new("ISOUSC", &format!("{amps:02}")),
        Group::new("BBRHCJB", "015736771"),
        Group::new("BBRHPJB", "002110855"),
        Group::new("BBRHCJW", "000242993"),
        Group::new("BBRHPJW", "000436619"),
        Group::new("BBRHCJR", "000080750"),
        Group::new("BBRHPJR", "000067067"),
        Group::new("PTEC", &s.tariff_period(Mode::Historic)),
        Group::new("DEMAIN", demain),
        Group::new("IINST", &format!("{:03}", s.apparent_power_va / 230)),
        Group::new("IMAX", "090"),
        Group::new("PAPP", &format!("{:05}", s.apparent_power_va.min(99_999))),
        Group::new("HHPHC", "A"),
        Group::new("MOTDETAT", "000000"),
    ]
}

fn standard(s: &MeterState) -> Vec<Group> {
    // STGE: the Tempo colours in bits 24-27, the rest as a quiet meter's
    // (contact closed, no overvoltage, ...).
    let stge = 0x003A_0001
        | (TempoColor::bits(s.tempo_today) << 24)
        | (TempoColor::bits(s.tempo_tomorrow) << 26);
    let horodate = "H261202120000";
    let mut groups = vec![
        Group::new("ADSC", &s.meter_id),
        Group::new("VTIC", "02"),
        Group::with_horodate("DATE", horodate, ""),
        Group::new("NGTF", "     TEMPO      "),
        Group::new("LTARF", &s.tariff_period(Mode::Standard)),
        Group::new("EAST", "006231973"),
        Group::new("IRMS1", &format!("{:03}", s.apparent_power_va / 230)),
        Group::new("URMS1", "235"),
        Group::new("PREF", &format!("{:02}", s.subscribed_va / 1000)),
        Group::new("PCOUP", &format!("{:02}", s.subscribed_va / 1000)),
        Group::new("SINSTS", &format!("{:05}", s.apparent_power_va.min(99_999))),
    ];
    for (i, p) in s.phase_power_va.iter().take(3).enumerate() {
        groups.push(Group::new(
            &format!("SINSTS{}", i + 1),
            &format!("{:05}", p.min(&99_999)),
        ));
    }
    if let Some(injected) = s.injected_va {
        groups.push(Group::new(
            "SINSTI",
            &format!("{:05}", injected.min(99_999)),
        ));
    }
    groups.extend([
        Group::with_horodate("SMAXSN", horodate, "06100"),
        Group::new("STGE", &format!("{stge:08X}")),
        Group::new("MSG1", "PAS DE          MESSAGE         "),
        Group::new("RELAIS", "000"),
        Group::new("NTARF", "01"),
        Group::new("NJOURF", "00"),
        Group::new("NJOURF+1", "00"),
    ]);
    groups
}

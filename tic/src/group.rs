//! One information group, in either mode, and its checksum.
//!
//! - Historic (1200 baud): `LABEL SP DATA SP C`; the checksum covers
//!   `LABEL SP DATA`.
//! - Standard (9600 baud, Linky only): `LABEL HT [HORODATE HT] DATA HT C`;
//!   the checksum covers everything up to and including the HT before it.
//!
//! Checksum: (sum of the covered bytes) & 0x3F, + 0x20.
//!
//! Beyond the checksum, every byte of a label, a horodate and data must be
//! in the TIC's character set (0x20..=0x5F: digits, capitals, space and
//! punctuation; a horodate's season letter may be lower case). A byte
//! changed by ±64, which the six-bit checksum cannot see, always leaves
//! that set, so a single changed byte is always caught.

use std::fmt;

/// The TIC's two modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Older meters, and Linky by default: 1200 baud, 7E1.
    Historic,
    /// Linky only, when the supplier switched it: 9600 baud, 7E1.
    Standard,
}

impl Mode {
    /// The line speed of the mode (7 data bits, even parity, 1 stop bit).
    pub fn baud(self) -> u32 {
        match self {
            Mode::Historic => 1200,
            Mode::Standard => 9600,
        }
    }

    /// The separator between a group's fields.
    pub fn separator(self) -> u8 {
        match self {
            Mode::Historic => b' ',
            Mode::Standard => b'\t',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Historic => "historic",
            Mode::Standard => "standard",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Start of a group.
pub const LF: u8 = 0x0A;
/// End of a group.
pub const CR: u8 = 0x0D;

/// One valid group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub label: String,
    /// Standard mode's date and time of the value (`E` summer / `H` winter
    /// + YYMMDDhhmmss), for the labels that carry one.
    pub horodate: Option<String>,
    pub data: String,
}

/// Why a group was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group does not have its fields and separators")]
    Shape,
    #[error("a byte outside the TIC's character set")]
    Charset,
    #[error("checksum {got:?} where {expected:?} was due")]
    Checksum { expected: char, got: char },
}

/// The TIC checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u8 {
    let sum = bytes.iter().fold(0u32, |s, b| s + u32::from(*b));
    // The mask keeps six bits: the result is 0x20..=0x5F.
    (sum & 0x3F) as u8 + 0x20
}

impl Group {
    pub fn new(label: &str, data: &str) -> Self {
        Self {
            label: label.to_owned(),
            horodate: None,
            data: data.to_owned(),
        }
    }

    pub fn with_horodate(label: &str, horodate: &str, data: &str) -> Self {
        Self {
            horodate: Some(horodate.to_owned()),
            ..Self::new(label, data)
        }
    }

    /// The group as sent, `LF` to `CR`.
    pub fn encode(&self, mode: Mode) -> Vec<u8> {
        let sep = mode.separator();
        let mut covered = Vec::with_capacity(self.label.len() + self.data.len() + 20);
        covered.extend_from_slice(self.label.as_bytes());
        covered.push(sep);
        if let Some(h) = &self.horodate {
            covered.extend_from_slice(h.as_bytes());
            covered.push(sep);
        }
        covered.extend_from_slice(self.data.as_bytes());
        if mode == Mode::Standard {
            covered.push(sep);
        }
        let sum = checksum(&covered);
        let mut out = Vec::with_capacity(covered.len() + 4);
        out.push(LF);
        out.extend_from_slice(&covered);
        if mode == Mode::Historic {
            out.push(sep);
        }
        out.push(sum);
        out.push(CR);
        out
    }

    /// Parses what lies between a group's `LF` and `CR` (both excluded).
    pub fn parse(content: &[u8], mode: Mode) -> Result<Self, GroupError> {
        let sep = mode.separator();
        let [rest @ .., last_sep, sum] = content else {
            return Err(GroupError::Shape);
        };
        if *last_sep != sep {
            return Err(GroupError::Shape);
        }
        // Historic: the checksum leaves the last separator out; standard
        // counts it.
        let covered = match mode {
            Mode::Historic => rest,
            Mode::Standard => &content[..content.len() - 1],
        };
        let expected = checksum(covered);
        if *sum != expected {
            return Err(GroupError::Checksum {
                expected: char::from(expected),
                got: char::from(*sum),
            });
        }
        let fields: Vec<&[u8]> = match mode {
            // The data of a historic group holds no space but the one
            // before the checksum; the label none at all.
            Mode::Historic => rest.splitn(2, |b| *b == sep).collect(),
            Mode::Standard => rest.split(|b| *b == sep).collect(),
        };
        let (label, horodate, data) = match fields.as_slice() {
            [label, data] => (*label, None, *data),
            [label, horodate, data] if mode == Mode::Standard => (*label, Some(*horodate), *data),
            _ => return Err(GroupError::Shape),
        };
        if label.is_empty() || !label.iter().all(|b| is_label_byte(*b)) {
            return Err(GroupError::Charset);
        }
        if !data.iter().all(|b| is_tic_byte(*b)) || (mode == Mode::Historic && data.is_empty()) {
            return Err(GroupError::Charset);
        }
        if let Some(h) = horodate
            && !is_horodate(h)
        {
            return Err(GroupError::Charset);
        }
        // Checked above: all ASCII.
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Ok(Self {
            label: text(label),
            horodate: horodate.map(text),
            data: text(data),
        })
    }
}

/// Capitals, digits, `+`, `-` and `_` (NJOURF+1, SMAXSN-1).
fn is_label_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'_')
}

/// Data: 0x20..=0x5F (no lower case, no control character).
fn is_tic_byte(b: u8) -> bool {
    (0x20..=0x5F).contains(&b)
}

/// A season letter (`E`/`H`, lower case when the meter's clock is
/// degraded) and 12 digits; or a blank horodate (some meters send spaces).
fn is_horodate(h: &[u8]) -> bool {
    match h {
        [season, digits @ ..] => {
            matches!(season, b'E' | b'H' | b'e' | b'h' | b' ')
                && digits.len() == 12
                && digits.iter().all(|b| b.is_ascii_digit() || *b == b' ')
        }
        [] => false,
    }
}
